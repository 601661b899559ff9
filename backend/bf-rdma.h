/*
 * bf-rdma: what both ends of the RDMA transport share. A BfRdmaQueue is one reliable-connected
 * queue pair (made by rdma_cm) with its completion queue and the registered buffers that carry
 * protocol messages as two-sided SEND/RECV. Page data does not go through it: the client posts
 * one-sided RDMA READ and WRITE on the same queue pair (bf-channel-rdma.c).
 *
 * Work request ids say what completed: BF_RDMA_WR_RECV or BF_RDMA_WR_SEND with a message slot,
 * or BF_RDMA_WR_DATA with the client's own index.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_RDMA_H
#define BF_RDMA_H

#include "bf-endpoint.h"
#include "bf-proto.h"

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

/* A message slot: a header and the largest payload a message carries on this transport. */
#define BF_RDMA_MSG_SIZE 4096u
/* Messages each side may have outstanding; the peer keeps as many receives posted. */
#define BF_RDMA_MSG_SLOTS 32u
/* Page data work requests a client keeps in flight on one queue pair. */
#define BF_RDMA_MAX_DATA_WR (8u * BF_PROTO_MAX_PAGES)
/*
 * The private data of a connection request, and of the node's refusal of one: magic, version,
 * and the refusal's BfProtoError (0 in a request).
 */
#define BF_RDMA_CONNECT_DATA_SIZE (4u + 2u + 2u)

typedef enum {
    BF_RDMA_WR_RECV = 1,
    BF_RDMA_WR_SEND,
    BF_RDMA_WR_DATA,
} BfRdmaWrKind;

static inline uint64_t bf_rdma_wr_id(BfRdmaWrKind kind, uint32_t index)
{
    return ((uint64_t)kind << 32) | index;
}

static inline BfRdmaWrKind bf_rdma_wr_kind(uint64_t wr_id)
{
    return wr_id >> 32;
}

static inline uint32_t bf_rdma_wr_index(uint64_t wr_id)
{
    return (uint32_t)wr_id;
}

typedef struct BfRdmaQueue {
    struct rdma_cm_id *id;
    struct ibv_cq *cq;
    struct ibv_comp_channel *comp;  /* the one the CQ reports to (owned by the caller) */
    uint8_t *msgs;                  /* BF_RDMA_MSG_SLOTS receives, then as many sends */
    struct ibv_mr *msgs_mr;
    uint32_t send_free;             /* a bit per send slot not in flight */
} BfRdmaQueue;

/*
 * Creates @id's queue pair in @pd with a completion queue reporting to @comp (its
 * cq_context is @cq_context), registers the message slots and posts every receive.
 */
gboolean bf_rdma_queue_init(BfRdmaQueue *q, struct rdma_cm_id *id, struct ibv_pd *pd,
                            struct ibv_comp_channel *comp, void *cq_context, GError **errp);
/* Destroys what bf_rdma_queue_init made (not @id itself). */
void bf_rdma_queue_destroy(BfRdmaQueue *q);

static inline uint8_t *bf_rdma_recv_buf(BfRdmaQueue *q, uint32_t slot)
{
    return q->msgs + (uint64_t)slot * BF_RDMA_MSG_SIZE;
}

gboolean bf_rdma_post_recv(BfRdmaQueue *q, uint32_t slot, GError **errp);

/* A free send slot's buffer (its index in *slot), or NULL when every slot is in flight. */
uint8_t *bf_rdma_send_buf(BfRdmaQueue *q, uint32_t *slot);
/* Sends the first @length bytes of send slot @slot, signalled. */
gboolean bf_rdma_post_send(BfRdmaQueue *q, uint32_t slot, uint32_t length, GError **errp);
/* Called on the send's completion: the slot is free again. */
void bf_rdma_send_done(BfRdmaQueue *q, uint32_t slot);
/* A bit per send slot: what send_free holds when no send is in flight. */
#define BF_RDMA_ALL_SENDS \
    (BF_RDMA_MSG_SLOTS == 32 ? UINT32_MAX : (UINT32_C(1) << BF_RDMA_MSG_SLOTS) - 1)

static inline gboolean bf_rdma_sends_idle(const BfRdmaQueue *q)
{
    return q->send_free == BF_RDMA_ALL_SENDS;
}

/*
 * Completions of @q, at most @max: spins for @spin_us, then sleeps on the completion channel
 * until @deadline (monotonic us, -1: none). 0 with @errp set on timeout or failure.
 */
int bf_rdma_poll(BfRdmaQueue *q, struct ibv_wc *wc, int max, gint64 deadline, int spin_us,
                 GError **errp);

/*
 * Waits for the next event on @channel; fails unless it is @expected. A node's refusal of a
 * connection as busy (BF_PROTO_ERR_BUSY) is a BF_ERROR_POOL error that says so.
 */
gboolean bf_rdma_cm_wait(struct rdma_event_channel *channel, enum rdma_cm_event_type expected,
                         gint64 deadline, struct rdma_cm_event **event, GError **errp);

/*
 * The client's way to a node: creates *@events and *@id (whose context is @context), and
 * resolves @endpoint's address and route by @deadline.
 */
gboolean bf_rdma_resolve(const BfEndpoint *endpoint, void *context, gint64 deadline,
                         int timeout_ms, struct rdma_event_channel **events,
                         struct rdma_cm_id **id, GError **errp);
/* Then, its queue pair made: sends the connection request, waits until it is established. */
gboolean bf_rdma_connect(struct rdma_event_channel *events, struct rdma_cm_id *id,
                         const BfEndpoint *endpoint, gint64 deadline, GError **errp);

/* Whether this host has any RDMA device, and if not why, for error messages. */
gboolean bf_rdma_have_device(GError **errp);

void bf_rdma_put_connect_data(uint8_t out[BF_RDMA_CONNECT_DATA_SIZE], BfProtoError refusal);
/* FALSE if @data is not Blowfish's, of this version; else its refusal (or 0) in *refusal. */
gboolean bf_rdma_parse_connect_data(const void *data, size_t length, BfProtoError *refusal,
                                    GError **errp);

#endif
