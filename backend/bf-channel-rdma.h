/*
 * bf-channel-rdma: a channel to a memory node over RDMA (rdma_cm and verbs, reliable
 * connected). Control messages are two-sided; pages move by one-sided RDMA READ and WRITE
 * into extents the node lends to the session (see bf-proto.h).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_CHANNEL_RDMA_H
#define BF_CHANNEL_RDMA_H

#include "bf-channel.h"

/* Requests one RDMA channel keeps in flight at most (each has a registered bounce buffer). */
#define BF_CHANNEL_RDMA_MAX_INFLIGHT 8
/* How long a wait for a completion spins before it sleeps. */
#define BF_CHANNEL_RDMA_SPIN_US 50

/* With @key, the channel proves it to the node before HELLO (bf_auth_client). */
BfChannel *bf_channel_rdma_connect(const BfEndpoint *endpoint, const BfHello *hello,
                                   const BfKey *key, int timeout_ms, GError **errp);

#endif
