/*
 * bf-rdma: queue pairs, message slots and completion waiting for the RDMA transport.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-rdma.h"
#include "bf-error.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sched.h>

G_STATIC_ASSERT(BF_RDMA_MSG_SLOTS <= 32);
G_STATIC_ASSERT(BF_RDMA_MSG_SIZE >= BF_PROTO_HEADER_SIZE + 8 + 8 * BF_PROTO_MAX_PAGES);

static gboolean bf_rdma_fail(GError **errp, int err, const char *what)
{
    g_set_error(errp, BF_ERROR, BF_ERROR_UNREACHABLE, "RDMA: %s: %s", what, g_strerror(err));
    return FALSE;
}

gboolean bf_rdma_queue_init(BfRdmaQueue *q, struct rdma_cm_id *id, struct ibv_pd *pd,
                            struct ibv_comp_channel *comp, void *cq_context, GError **errp)
{
    struct ibv_device_attr attr;
    struct ibv_qp_init_attr qp_attr = { 0 };
    uint32_t send_wr = BF_RDMA_MAX_DATA_WR + BF_RDMA_MSG_SLOTS;
    int cqe;

    memset(q, 0, sizeof(*q));
    q->id = id;
    q->comp = comp;
    if (ibv_query_device(id->verbs, &attr)) {
        return bf_rdma_fail(errp, errno, "cannot query the device");
    }
    send_wr = MIN(send_wr, (uint32_t)attr.max_qp_wr);
    cqe = MIN((int)(send_wr + BF_RDMA_MSG_SLOTS), attr.max_cqe);
    q->cq = ibv_create_cq(id->verbs, cqe, cq_context, comp, 0);
    if (!q->cq) {
        return bf_rdma_fail(errp, errno, "cannot create a completion queue");
    }
    if (ibv_req_notify_cq(q->cq, 0)) {
        bf_rdma_fail(errp, errno, "cannot arm the completion queue");
        goto fail;
    }
    qp_attr.send_cq = q->cq;
    qp_attr.recv_cq = q->cq;
    qp_attr.qp_type = IBV_QPT_RC;
    qp_attr.cap.max_send_wr = send_wr;
    qp_attr.cap.max_recv_wr = BF_RDMA_MSG_SLOTS;
    qp_attr.cap.max_send_sge = 1;
    qp_attr.cap.max_recv_sge = 1;
    if (rdma_create_qp(id, pd, &qp_attr)) {
        bf_rdma_fail(errp, errno, "cannot create a queue pair");
        goto fail;
    }
    q->msgs = g_malloc0(2 * BF_RDMA_MSG_SLOTS * BF_RDMA_MSG_SIZE);
    q->msgs_mr = ibv_reg_mr(pd, q->msgs, 2 * BF_RDMA_MSG_SLOTS * BF_RDMA_MSG_SIZE,
                            IBV_ACCESS_LOCAL_WRITE);
    if (!q->msgs_mr) {
        bf_rdma_fail(errp, errno, "cannot register message buffers");
        goto fail;
    }
    q->send_free = BF_RDMA_ALL_SENDS;
    for (uint32_t i = 0; i < BF_RDMA_MSG_SLOTS; i++) {
        if (!bf_rdma_post_recv(q, i, errp)) {
            goto fail;
        }
    }
    return TRUE;

fail:
    bf_rdma_queue_destroy(q);
    return FALSE;
}

void bf_rdma_queue_destroy(BfRdmaQueue *q)
{
    if (q->id && q->id->qp) {
        rdma_destroy_qp(q->id);
    }
    if (q->msgs_mr) {
        ibv_dereg_mr(q->msgs_mr);
    }
    if (q->cq) {
        ibv_destroy_cq(q->cq);
    }
    g_free(q->msgs);
    memset(q, 0, sizeof(*q));
}

gboolean bf_rdma_post_recv(BfRdmaQueue *q, uint32_t slot, GError **errp)
{
    struct ibv_sge sge = {
        .addr = (uintptr_t)bf_rdma_recv_buf(q, slot),
        .length = BF_RDMA_MSG_SIZE,
        .lkey = q->msgs_mr->lkey,
    };
    struct ibv_recv_wr wr = {
        .wr_id = bf_rdma_wr_id(BF_RDMA_WR_RECV, slot),
        .sg_list = &sge,
        .num_sge = 1,
    }, *bad;
    int err = ibv_post_recv(q->id->qp, &wr, &bad);

    return err ? bf_rdma_fail(errp, err, "cannot post a receive") : TRUE;
}

uint8_t *bf_rdma_send_buf(BfRdmaQueue *q, uint32_t *slot)
{
    if (!q->send_free) {
        return NULL;
    }
    *slot = __builtin_ctz(q->send_free);
    q->send_free &= ~(1u << *slot);
    return q->msgs + (uint64_t)(BF_RDMA_MSG_SLOTS + *slot) * BF_RDMA_MSG_SIZE;
}

gboolean bf_rdma_post_send(BfRdmaQueue *q, uint32_t slot, uint32_t length, GError **errp)
{
    struct ibv_sge sge = {
        .addr = (uintptr_t)(q->msgs + (uint64_t)(BF_RDMA_MSG_SLOTS + slot) * BF_RDMA_MSG_SIZE),
        .length = length,
        .lkey = q->msgs_mr->lkey,
    };
    struct ibv_send_wr wr = {
        .wr_id = bf_rdma_wr_id(BF_RDMA_WR_SEND, slot),
        .sg_list = &sge,
        .num_sge = 1,
        .opcode = IBV_WR_SEND,
        .send_flags = IBV_SEND_SIGNALED,
    }, *bad;
    int err;

    g_assert(length <= BF_RDMA_MSG_SIZE);
    err = ibv_post_send(q->id->qp, &wr, &bad);
    if (err) {
        bf_rdma_send_done(q, slot);
        return bf_rdma_fail(errp, err, "cannot post a send");
    }
    return TRUE;
}

void bf_rdma_send_done(BfRdmaQueue *q, uint32_t slot)
{
    q->send_free |= 1u << slot;
}

int bf_rdma_poll(BfRdmaQueue *q, struct ibv_wc *wc, int max, gint64 deadline, int spin_us,
                 GError **errp)
{
    gint64 spin_end = g_get_monotonic_time() + spin_us;
    int n;

    do {
        n = ibv_poll_cq(q->cq, max, wc);
        if (n) {
            goto out;
        }
        sched_yield();      /* to a thread woken onto this CPU, as bf-socket's spin does */
    } while (g_get_monotonic_time() < spin_end);

    for (;;) {
        struct pollfd pfd = { .fd = q->comp->fd, .events = POLLIN };
        struct ibv_cq *cq;
        void *context;
        int timeout = -1, ready;

        /* Arm first, then look again: a completion between the two is not missed. */
        if (ibv_req_notify_cq(q->cq, 0)) {
            bf_rdma_fail(errp, errno, "cannot arm the completion queue");
            return 0;
        }
        n = ibv_poll_cq(q->cq, max, wc);
        if (n) {
            goto out;
        }
        if (deadline >= 0) {
            gint64 left = deadline - g_get_monotonic_time();

            if (left <= 0) {
                g_set_error(errp, BF_ERROR, BF_ERROR_UNREACHABLE,
                            "the memory node did not answer in time");
                return 0;
            }
            timeout = (left + 999) / 1000;
        }
        ready = poll(&pfd, 1, timeout);
        if (ready < 0 && errno != EINTR) {
            bf_rdma_fail(errp, errno, "poll");
            return 0;
        }
        if (ready > 0 && ibv_get_cq_event(q->comp, &cq, &context) == 0) {
            ibv_ack_cq_events(cq, 1);
        }
    }

out:
    if (n < 0) {
        bf_rdma_fail(errp, EIO, "cannot poll the completion queue");
        return 0;
    }
    return n;
}

gboolean bf_rdma_cm_wait(struct rdma_event_channel *channel, enum rdma_cm_event_type expected,
                         gint64 deadline, struct rdma_cm_event **event, GError **errp)
{
    struct pollfd pfd = { .fd = channel->fd, .events = POLLIN };
    BfProtoError refusal;
    int timeout = -1;

    if (deadline >= 0) {
        timeout = MAX(0, (deadline - g_get_monotonic_time() + 999) / 1000);
    }
    if (poll(&pfd, 1, timeout) <= 0) {
        g_set_error(errp, BF_ERROR, BF_ERROR_UNREACHABLE,
                    "RDMA: no answer while waiting for %s", rdma_event_str(expected));
        return FALSE;
    }
    if (rdma_get_cm_event(channel, event)) {
        return bf_rdma_fail(errp, errno, "cannot read a connection event");
    }
    if ((*event)->event == RDMA_CM_EVENT_REJECTED &&
        bf_rdma_parse_connect_data((*event)->param.conn.private_data,
                                   (*event)->param.conn.private_data_len, &refusal, NULL) &&
        refusal == BF_PROTO_ERR_BUSY) {
        g_set_error(errp, BF_ERROR, BF_ERROR_POOL, "the memory node refused the connection: "
                    "%s", BF_PROTO_BUSY_MESSAGE);
        rdma_ack_cm_event(*event);
        *event = NULL;
        return FALSE;
    }
    if ((*event)->event != expected) {
        g_set_error(errp, BF_ERROR, BF_ERROR_UNREACHABLE, "RDMA: %s (status %d) while "
                    "waiting for %s", rdma_event_str((*event)->event), (*event)->status,
                    rdma_event_str(expected));
        rdma_ack_cm_event(*event);
        *event = NULL;
        return FALSE;
    }
    return TRUE;
}

gboolean bf_rdma_resolve(const BfEndpoint *endpoint, void *context, gint64 deadline,
                         int timeout_ms, struct rdma_event_channel **events,
                         struct rdma_cm_id **id, GError **errp)
{
    struct rdma_addrinfo hints = { .ai_port_space = RDMA_PS_TCP }, *addr = NULL;
    g_autofree char *port = g_strdup_printf("%u", endpoint->port);
    struct rdma_cm_event *event;
    int err;

    *events = rdma_create_event_channel();
    if (!*events || rdma_create_id(*events, id, context, RDMA_PS_TCP)) {
        g_set_error(errp, BF_ERROR, BF_ERROR_UNREACHABLE, "RDMA: cannot create a connection "
                    "identifier: %s", g_strerror(errno));
        return FALSE;
    }
    err = rdma_getaddrinfo(endpoint->host, port, &hints, &addr);
    if (err) {
        g_set_error(errp, BF_ERROR, BF_ERROR_UNREACHABLE, "RDMA: cannot resolve '%s': %s",
                    endpoint->host, err == -1 ? g_strerror(errno) : gai_strerror(err));
        return FALSE;
    }
    err = rdma_resolve_addr(*id, NULL, addr->ai_dst_addr, MAX(timeout_ms, 1));
    rdma_freeaddrinfo(addr);
    if (err) {
        g_set_error(errp, BF_ERROR, BF_ERROR_UNREACHABLE, "RDMA: no RDMA device reaches "
                    "%s: %s", endpoint->host, g_strerror(errno));
        return FALSE;
    }
    if (!bf_rdma_cm_wait(*events, RDMA_CM_EVENT_ADDR_RESOLVED, deadline, &event, errp)) {
        return FALSE;
    }
    rdma_ack_cm_event(event);
    if (rdma_resolve_route(*id, MAX(timeout_ms, 1)) ||
        !bf_rdma_cm_wait(*events, RDMA_CM_EVENT_ROUTE_RESOLVED, deadline, &event, errp)) {
        if (errp && !*errp) {
            g_set_error(errp, BF_ERROR, BF_ERROR_UNREACHABLE, "RDMA: no route to %s: %s",
                        endpoint->host, g_strerror(errno));
        }
        return FALSE;
    }
    rdma_ack_cm_event(event);
    return TRUE;
}

gboolean bf_rdma_connect(struct rdma_event_channel *events, struct rdma_cm_id *id,
                         const BfEndpoint *endpoint, gint64 deadline, GError **errp)
{
    uint8_t private_data[BF_RDMA_CONNECT_DATA_SIZE];
    struct rdma_conn_param param = { 0 };
    struct ibv_device_attr attr;
    struct rdma_cm_event *event;

    if (ibv_query_device(id->verbs, &attr)) {
        return bf_rdma_fail(errp, errno, "cannot query the device");
    }
    bf_rdma_put_connect_data(private_data, 0);
    param.private_data = private_data;
    param.private_data_len = sizeof(private_data);
    param.initiator_depth = MIN(attr.max_qp_init_rd_atom, 16);
    param.responder_resources = 0;
    param.retry_count = 7;
    param.rnr_retry_count = 7;
    if (rdma_connect(id, &param)) {
        g_set_error(errp, BF_ERROR, BF_ERROR_UNREACHABLE, "RDMA: cannot connect to %s: %s",
                    endpoint->host, g_strerror(errno));
        return FALSE;
    }
    if (!bf_rdma_cm_wait(events, RDMA_CM_EVENT_ESTABLISHED, deadline, &event, errp)) {
        return FALSE;
    }
    rdma_ack_cm_event(event);
    return TRUE;
}

gboolean bf_rdma_have_device(GError **errp)
{
    int n = 0;
    struct ibv_device **list = ibv_get_device_list(&n);

    if (list) {
        ibv_free_device_list(list);
    }
    if (n > 0) {
        return TRUE;
    }
    g_set_error(errp, BF_ERROR, BF_ERROR_UNSUPPORTED,
                "RDMA: this host has no RDMA device (no /sys/class/infiniband entry: load the "
                "NIC's RDMA driver, or rdma_rxe for Soft-RoCE, and ib_uverbs)");
    return FALSE;
}

void bf_rdma_put_connect_data(uint8_t out[BF_RDMA_CONNECT_DATA_SIZE], BfProtoError refusal)
{
    uint32_t magic = GUINT32_TO_LE(BF_PROTO_MAGIC);
    uint16_t version = GUINT16_TO_LE(BF_PROTO_VERSION);
    uint16_t code = GUINT16_TO_LE(refusal);

    memcpy(out, &magic, 4);
    memcpy(out + 4, &version, 2);
    memcpy(out + 6, &code, 2);
}

gboolean bf_rdma_parse_connect_data(const void *data, size_t length, BfProtoError *refusal,
                                    GError **errp)
{
    uint8_t expected[BF_RDMA_CONNECT_DATA_SIZE];
    uint16_t code;

    bf_rdma_put_connect_data(expected, 0);
    if (!data || length < BF_RDMA_CONNECT_DATA_SIZE || memcmp(data, expected, 6) != 0) {
        g_set_error(errp, BF_ERROR, BF_ERROR_PROTOCOL,
                    "protocol error: a connection request that is not Blowfish's (or of "
                    "another protocol version)");
        return FALSE;
    }
    memcpy(&code, (const uint8_t *)data + 6, 2);
    *refusal = GUINT16_FROM_LE(code);
    return TRUE;
}
