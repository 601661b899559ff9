/*
 * rdma-raw: a hand-driven RDMA client for tests (see rdma-raw.h).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "rdma-raw.h"

#define RAW_TIMEOUT_MS 10000

RawRdma *raw_rdma_connect(const BfEndpoint *endpoint)
{
    RawRdma *r = g_new0(RawRdma, 1);
    gint64 deadline = g_get_monotonic_time() + RAW_TIMEOUT_MS * 1000;
    g_autoptr(GError) err = NULL;

    g_assert_true(bf_rdma_resolve(endpoint, r, deadline, RAW_TIMEOUT_MS, &r->events, &r->id,
                                  &err));
    r->pd = ibv_alloc_pd(r->id->verbs);
    r->comp = ibv_create_comp_channel(r->id->verbs);
    g_assert_true(r->pd && r->comp);
    r->page = g_malloc0(BF_PROTO_PAGE_SIZE);
    r->page_mr = ibv_reg_mr(r->pd, r->page, BF_PROTO_PAGE_SIZE, IBV_ACCESS_LOCAL_WRITE);
    g_assert_nonnull(r->page_mr);
    g_assert_true(bf_rdma_queue_init(&r->q, r->id, r->pd, r->comp, r, &err));
    g_assert_true(bf_rdma_connect(r->events, r->id, endpoint, deadline, &err));
    g_assert_no_error(err);
    return r;
}

void raw_rdma_close(RawRdma *r)
{
    rdma_disconnect(r->id);
    bf_rdma_queue_destroy(&r->q);
    ibv_dereg_mr(r->page_mr);
    g_free(r->page);
    ibv_destroy_comp_channel(r->comp);
    ibv_dealloc_pd(r->pd);
    rdma_destroy_id(r->id);
    rdma_destroy_event_channel(r->events);
    g_free(r);
}

/* The next completion, by the deadline: FALSE if none came or it failed. */
static gboolean raw_rdma_next(RawRdma *r, struct ibv_wc *wc)
{
    gint64 deadline = g_get_monotonic_time() + RAW_TIMEOUT_MS * 1000;

    return bf_rdma_poll(&r->q, wc, 1, deadline, 0, NULL) == 1 &&
           wc->status == IBV_WC_SUCCESS;
}

BfMsgType raw_rdma_call_bytes(RawRdma *r, const uint8_t *msg, uint32_t length, uint8_t *reply,
                              uint32_t *reply_length)
{
    g_autoptr(GError) err = NULL;
    uint32_t slot;
    uint8_t *buf = bf_rdma_send_buf(&r->q, &slot);
    struct ibv_wc wc;

    g_assert_nonnull(buf);
    g_assert_cmpuint(length, <=, BF_RDMA_MSG_SIZE);
    memcpy(buf, msg, length);
    g_assert_true(bf_rdma_post_send(&r->q, slot, length, &err));
    while (raw_rdma_next(r, &wc)) {
        uint32_t index = bf_rdma_wr_index(wc.wr_id);
        BfMsgHeader h;

        if (bf_rdma_wr_kind(wc.wr_id) == BF_RDMA_WR_SEND) {
            bf_rdma_send_done(&r->q, index);
            continue;
        }
        g_assert_cmpint(bf_rdma_wr_kind(wc.wr_id), ==, BF_RDMA_WR_RECV);
        g_assert_true(bf_proto_parse_header(bf_rdma_recv_buf(&r->q, index), &h, &err));
        g_assert_cmpuint(wc.byte_len, ==, BF_PROTO_HEADER_SIZE + h.length);
        memcpy(reply, bf_rdma_recv_buf(&r->q, index) + BF_PROTO_HEADER_SIZE, h.length);
        *reply_length = h.length;
        g_assert_true(bf_rdma_post_recv(&r->q, index, &err));
        return h.type;
    }
    return 0;
}

BfMsgType raw_rdma_call(RawRdma *r, BfMsgType type, const void *payload, uint32_t length,
                        uint8_t *reply, uint32_t *reply_length)
{
    uint8_t msg[BF_RDMA_MSG_SIZE];

    g_assert_cmpuint(length, <=, sizeof(msg) - BF_PROTO_HEADER_SIZE);
    bf_proto_put_header(msg, type, length, 0);
    memcpy(msg + BF_PROTO_HEADER_SIZE, payload, length);
    return raw_rdma_call_bytes(r, msg, BF_PROTO_HEADER_SIZE + length, reply, reply_length);
}

enum ibv_wc_status raw_rdma_write(RawRdma *r, uint64_t addr, uint32_t rkey)
{
    struct ibv_sge sge = {
        .addr = (uintptr_t)r->page, .length = BF_PROTO_PAGE_SIZE, .lkey = r->page_mr->lkey,
    };
    struct ibv_send_wr wr = {
        .wr_id = bf_rdma_wr_id(BF_RDMA_WR_DATA, 0), .sg_list = &sge, .num_sge = 1,
        .opcode = IBV_WR_RDMA_WRITE, .send_flags = IBV_SEND_SIGNALED,
        .wr.rdma = { .remote_addr = addr, .rkey = rkey },
    }, *bad;
    gint64 deadline = g_get_monotonic_time() + RAW_TIMEOUT_MS * 1000;
    struct ibv_wc wc;

    g_assert_cmpint(ibv_post_send(r->q.id->qp, &wr, &bad), ==, 0);
    for (;;) {
        g_assert_cmpint(bf_rdma_poll(&r->q, &wc, 1, deadline, 0, NULL), ==, 1);
        if (bf_rdma_wr_kind(wc.wr_id) == BF_RDMA_WR_DATA) {
            return wc.status;
        }
        if (bf_rdma_wr_kind(wc.wr_id) == BF_RDMA_WR_SEND && wc.status == IBV_WC_SUCCESS) {
            bf_rdma_send_done(&r->q, bf_rdma_wr_index(wc.wr_id));
        }
    }
}
