/*
 * bf-node-rdma: the memory node's RDMA listener. One thread serves every RDMA client: it
 * accepts connections (rdma_cm), lends sessions their extents (bf-extents.c), registered in a
 * protection domain per session so that no client reaches another session's memory, and
 * answers control messages. Page data moves by the clients' one-sided READ and WRITE, without
 * this thread.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_NODE_RDMA_H
#define BF_NODE_RDMA_H

#include "bf-endpoint.h"
#include "bf-store.h"

typedef struct BfNodeRdma BfNodeRdma;

/* Listens on @listen (port 0: any) and starts serving; extents count against @store. */
BfNodeRdma *bf_node_rdma_start(BfStore *store, const BfEndpoint *listen, GError **errp);
/* The port it listens on. */
uint16_t bf_node_rdma_port(BfNodeRdma *node);
/* Stops serving: connections are closed, sessions and their extents freed. */
void bf_node_rdma_stop(BfNodeRdma *node);

#endif
