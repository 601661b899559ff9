/*
 * rdma-raw: a client of a memory node's RDMA listener that speaks the protocol by hand, for
 * tests that must send what the real channel never would (messages out of order, lies about
 * lengths, RDMA WRITEs to memory it was not granted) or nothing at all.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef RDMA_RAW_H
#define RDMA_RAW_H

#include "bf-rdma.h"

typedef struct {
    struct rdma_event_channel *events;
    struct rdma_cm_id *id;
    struct ibv_pd *pd;
    struct ibv_comp_channel *comp;
    BfRdmaQueue q;
    uint8_t *page;              /* BF_PROTO_PAGE_SIZE, registered: what raw_rdma_write sends */
    struct ibv_mr *page_mr;
} RawRdma;

/* Connects to the node at @endpoint (asserting that it works), and says nothing. */
RawRdma *raw_rdma_connect(const BfEndpoint *endpoint);
void raw_rdma_close(RawRdma *r);

/*
 * Sends the @length bytes of @msg (a header and its payload) and waits for the reply: its
 * type, with its payload in @reply (at most BF_RDMA_MSG_SIZE bytes) and its length in
 * *@reply_length. 0 if the connection ended instead.
 */
BfMsgType raw_rdma_call_bytes(RawRdma *r, const uint8_t *msg, uint32_t length, uint8_t *reply,
                              uint32_t *reply_length);
/* The same for a message of @type with @payload. */
BfMsgType raw_rdma_call(RawRdma *r, BfMsgType type, const void *payload, uint32_t length,
                        uint8_t *reply, uint32_t *reply_length);

/* One RDMA WRITE of r->page to @addr with @rkey: the status of its completion. */
enum ibv_wc_status raw_rdma_write(RawRdma *r, uint64_t addr, uint32_t rkey);

#endif
