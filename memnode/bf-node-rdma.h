/*
 * bf-node-rdma: the memory node's RDMA listener. One thread serves every RDMA client: it
 * accepts connections (rdma_cm), checks their keys (the AUTH messages, as on TCP), lends
 * sessions their extents (bf-extents.c) and answers control messages. Each connection has a
 * protection domain of its own, in which the node registers only the extents of its session
 * that it was granted, after HELLO: a client reaches no other session's memory, and nothing
 * at all before it proved its key. Page data moves by the clients' one-sided READ and WRITE,
 * without this thread.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_NODE_RDMA_H
#define BF_NODE_RDMA_H

#include "bf-endpoint.h"
#include "bf-keyring.h"
#include "bf-store.h"

typedef struct BfNodeRdma BfNodeRdma;

/*
 * Listens on @listen (port 0: any) and starts serving; extents count against @store. With
 * @keys, as bf_node_new() says: a client proves a key first, its sessions are the key's, and
 * at most @max_unauthenticated connections may be proving one at once (the next are refused
 * as busy).
 */
BfNodeRdma *bf_node_rdma_start(BfStore *store, const BfKeyring *keys, guint max_unauthenticated,
                               const BfEndpoint *listen, GError **errp);
/* The port it listens on. */
uint16_t bf_node_rdma_port(BfNodeRdma *node);
/* Stops serving: connections are closed, sessions and their extents freed. */
void bf_node_rdma_stop(BfNodeRdma *node);

#endif
