/*
 * bf-node-rdma: the memory node's RDMA listener and its control-message server.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-node-rdma.h"
#include "bf-error.h"
#include "bf-extents.h"
#include "bf-rdma.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

struct BfNodeRdma {
    BfStore *store;
    BfExtents *extents;
    struct rdma_event_channel *events;
    struct rdma_cm_id *listen_id;
    int wake_fd;                    /* eventfd: stop */
    GThread *thread;
    GPtrArray *conns;               /* BfNodeRdmaConn */
    struct ibv_context *accepting;  /* the device of the connection being accepted */
};

/* What a session's extents are lent through. */
typedef struct {
    struct ibv_context *verbs;
    struct ibv_pd *pd;
} BfNodeRdmaSession;

typedef struct {
    void *mem;
    struct ibv_mr *mr;
} BfNodeRdmaLent;

typedef struct {
    BfNodeRdma *node;
    struct rdma_cm_id *id;
    struct ibv_comp_channel *comp;
    BfRdmaQueue q;
    gboolean queue_ready;
    BfExtentSession *session;
    gboolean said_hello;
    gboolean closing;               /* disconnect asked; waiting for the event */
    char *peer;
} BfNodeRdmaConn;

static gpointer bf_node_rdma_session_new(const uint8_t id[BF_PROTO_SESSION_SIZE],
                                         gpointer opaque, GError **errp)
{
    BfNodeRdma *node = opaque;
    BfNodeRdmaSession *s = g_new0(BfNodeRdmaSession, 1);

    /* A session is made for its first connection, on that connection's device. */
    s->verbs = node->accepting;
    s->pd = ibv_alloc_pd(s->verbs);
    if (!s->pd) {
        g_set_error(errp, BF_ERROR, BF_ERROR_FAILED, "cannot allocate a protection domain: "
                    "%s", g_strerror(errno));
        g_free(s);
        return NULL;
    }
    return s;
}

static void bf_node_rdma_session_free(gpointer data)
{
    BfNodeRdmaSession *s = data;

    ibv_dealloc_pd(s->pd);
    g_free(s);
}

static gpointer bf_node_rdma_lend(gpointer session_data, BfGrant *grant, GError **errp)
{
    BfNodeRdmaSession *s = session_data;
    BfNodeRdmaLent *lent = g_new0(BfNodeRdmaLent, 1);

    lent->mem = mmap(NULL, BF_EXTENT_SIZE, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (lent->mem == MAP_FAILED) {
        g_set_error(errp, BF_ERROR, BF_ERROR_POOL, "cannot allocate an extent: %s",
                    g_strerror(errno));
        g_free(lent);
        return NULL;
    }
    lent->mr = ibv_reg_mr(s->pd, lent->mem, BF_EXTENT_SIZE, IBV_ACCESS_LOCAL_WRITE |
                          IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE);
    if (!lent->mr) {
        g_set_error(errp, BF_ERROR, BF_ERROR_POOL, "cannot register an extent (is "
                    "RLIMIT_MEMLOCK too low?): %s", g_strerror(errno));
        munmap(lent->mem, BF_EXTENT_SIZE);
        g_free(lent);
        return NULL;
    }
    grant->addr = (uintptr_t)lent->mem;
    grant->rkey = lent->mr->rkey;
    return lent;
}

static void bf_node_rdma_take_back(gpointer data)
{
    BfNodeRdmaLent *lent = data;

    ibv_dereg_mr(lent->mr);
    munmap(lent->mem, BF_EXTENT_SIZE);
    g_free(lent);
}

static const BfExtentOps bf_node_rdma_extent_ops = {
    .session_new = bf_node_rdma_session_new,
    .session_free = bf_node_rdma_session_free,
    .lend = bf_node_rdma_lend,
    .take_back = bf_node_rdma_take_back,
};

static void bf_node_rdma_close(BfNodeRdmaConn *c, const char *why)
{
    if (!c->closing) {
        g_info("%s: %s", c->peer, why);
        c->closing = TRUE;
        rdma_disconnect(c->id);
    }
}

static void bf_node_rdma_conn_free(BfNodeRdmaConn *c)
{
    if (c->queue_ready) {
        bf_rdma_queue_destroy(&c->q);
    }
    if (c->comp) {
        ibv_destroy_comp_channel(c->comp);
    }
    if (c->session) {
        bf_extents_disconnect(c->node->extents, c->session);
    }
    rdma_destroy_id(c->id);
    g_free(c->peer);
    g_free(c);
}

static gboolean bf_node_rdma_reply(BfNodeRdmaConn *c, BfMsgType type, uint32_t tag,
                                   const uint8_t *payload, uint32_t length)
{
    g_autoptr(GError) err = NULL;
    uint32_t slot;
    uint8_t *buf = bf_rdma_send_buf(&c->q, &slot);

    if (!buf) {
        bf_node_rdma_close(c, "more requests outstanding than the protocol allows");
        return FALSE;
    }
    bf_proto_put_header(buf, type, length, tag);
    memcpy(buf + BF_PROTO_HEADER_SIZE, payload, length);
    if (!bf_rdma_post_send(&c->q, slot, BF_PROTO_HEADER_SIZE + length, &err)) {
        bf_node_rdma_close(c, err->message);
        return FALSE;
    }
    return TRUE;
}

static gboolean bf_node_rdma_refuse(BfNodeRdmaConn *c, uint32_t tag, BfProtoError code,
                                    const char *message)
{
    uint8_t payload[8 + BF_PROTO_MAX_MESSAGE];

    return bf_node_rdma_reply(c, BF_MSG_ERROR, tag, payload,
                              bf_proto_put_error(payload, code, message));
}

static gboolean bf_node_rdma_reply_count(BfNodeRdmaConn *c, BfMsgType type, uint32_t tag,
                                         uint32_t count)
{
    uint8_t payload[8];

    return bf_node_rdma_reply(c, type, tag, payload, bf_proto_put_count(payload, count));
}

static gboolean bf_node_rdma_hello(BfNodeRdmaConn *c, const BfMsgHeader *h,
                                   const uint8_t *payload, GError **errp)
{
    BfHello hello;
    BfStoreStats stats;
    BfProtoError code;
    g_autoptr(GError) refusal = NULL;
    uint64_t values[2];
    uint8_t out[16];

    if (c->said_hello) {
        g_set_error(errp, BF_ERROR, BF_ERROR_PROTOCOL, "protocol error: a second HELLO");
        return FALSE;
    }
    if (!bf_proto_parse_hello(payload, h->length, &hello, errp)) {
        return FALSE;
    }
    if (!bf_extents_hello(c->node->extents, c->session, &hello, &values[0], &code,
                          &refusal)) {
        if (!code) {
            g_propagate_error(errp, g_steal_pointer(&refusal));
            return FALSE;
        }
        return bf_node_rdma_refuse(c, h->tag, code, refusal->message);
    }
    c->said_hello = TRUE;
    g_free(c->peer);
    c->peer = g_strdup_printf("session '%s' (rdma)", hello.name);
    g_info("%s: attached, %" G_GUINT64_FORMAT " pages stored", c->peer, (guint64)values[0]);
    bf_store_get_stats(c->node->store, &stats);
    values[1] = stats.capacity_pages - stats.stored_pages;
    bf_proto_put_u64s(out, values, 2);
    return bf_node_rdma_reply(c, BF_MSG_HELLO_OK, h->tag, out, sizeof(out));
}

/* Handles one message; FALSE with @errp set ends the connection. */
static gboolean bf_node_rdma_message(BfNodeRdmaConn *c, const uint8_t *msg, uint32_t length,
                                     GError **errp)
{
    BfNodeRdma *node = c->node;
    const uint8_t *payload = msg + BF_PROTO_HEADER_SIZE;
    g_autoptr(GError) refusal = NULL;
    BfMsgHeader h;
    BfPageList list;
    BfProtoError code;
    uint64_t size;

    if (length < BF_PROTO_HEADER_SIZE || !bf_proto_parse_header(msg, &h, errp)) {
        if (errp && !*errp) {
            g_set_error(errp, BF_ERROR, BF_ERROR_PROTOCOL, "protocol error: a short message");
        }
        return FALSE;
    }
    if (h.length != length - BF_PROTO_HEADER_SIZE) {
        g_set_error(errp, BF_ERROR, BF_ERROR_PROTOCOL, "protocol error: %s says %u bytes, "
                    "carries %u", bf_msg_type_name(h.type), h.length,
                    length - BF_PROTO_HEADER_SIZE);
        return FALSE;
    }
    if (h.type == BF_MSG_HELLO) {
        return bf_node_rdma_hello(c, &h, payload, errp);
    }
    size = bf_extents_session_size(c->session);
    if (!c->said_hello || !size) {
        return bf_node_rdma_refuse(c, h.tag, BF_PROTO_ERR_NO_SESSION,
                                   c->said_hello ? "the session was dropped" :
                                   "no session: HELLO first");
    }

    switch (h.type) {
    case BF_MSG_GRANT: {
        uint64_t extent;
        gboolean create;
        BfGrant grant;
        uint8_t out[24];

        if (!bf_proto_parse_grant(payload, h.length, bf_proto_extents(size), &extent, &create,
                                  errp)) {
            return FALSE;
        }
        if (!bf_extents_grant(node->extents, c->session, extent, create, &grant, &code,
                              &refusal)) {
            return bf_node_rdma_refuse(c, h.tag, code, refusal->message);
        }
        return bf_node_rdma_reply(c, BF_MSG_GRANT_OK, h.tag, out,
                                  bf_proto_put_grant_ok(out, &grant));
    }
    case BF_MSG_COMMIT:
        if (!bf_proto_parse_page_list(BF_MSG_COMMIT, payload, h.length, size, &list, errp) ||
            !bf_extents_commit(node->extents, c->session, &list, errp)) {
            return FALSE;
        }
        return bf_node_rdma_reply_count(c, BF_MSG_COMMIT_OK, h.tag, list.count);
    case BF_MSG_FREE:
        if (!bf_proto_parse_page_list(BF_MSG_FREE, payload, h.length, size, &list, errp)) {
            return FALSE;
        }
        bf_extents_free_pages(node->extents, c->session, &list);
        return bf_node_rdma_reply_count(c, BF_MSG_FREE_OK, h.tag, list.count);
    case BF_MSG_RELEASE: {
        uint64_t released[BF_PROTO_MAX_PAGES];
        uint8_t out[8 + 8 * BF_PROTO_MAX_PAGES];
        uint32_t n, out_length;

        if (!bf_proto_parse_page_list(BF_MSG_RELEASE, payload, h.length,
                                      bf_proto_extents(size), &list, errp)) {
            return FALSE;
        }
        n = bf_extents_release(node->extents, c->session, &list, released);
        out_length = bf_proto_put_count(out, n);
        out_length += bf_proto_put_u64s(out + out_length, released, n);
        return bf_node_rdma_reply(c, BF_MSG_RELEASE_OK, h.tag, out, out_length);
    }
    case BF_MSG_STATS: {
        BfStoreStats store;
        BfPoolStats stats;
        uint8_t out[24];

        bf_store_get_stats(node->store, &store);
        stats.session_pages = bf_extents_session_pages(c->session);
        stats.stored_pages = store.stored_pages;
        stats.capacity_pages = store.capacity_pages;
        return bf_node_rdma_reply(c, BF_MSG_STATS_OK, h.tag, out,
                                  bf_proto_put_stats(out, &stats));
    }
    case BF_MSG_BYE:
        g_info("%s: session dropped", c->peer);
        bf_extents_drop(node->extents, c->session);
        return bf_node_rdma_reply(c, BF_MSG_BYE_OK, h.tag, NULL, 0);
    default:
        g_set_error(errp, BF_ERROR, BF_ERROR_PROTOCOL, "protocol error: %s on the RDMA "
                    "transport (page data moves by RDMA READ and WRITE)",
                    bf_msg_type_name(h.type));
        return FALSE;
    }
}

static void bf_node_rdma_completion(BfNodeRdmaConn *c, const struct ibv_wc *wc)
{
    uint32_t index = bf_rdma_wr_index(wc->wr_id);
    g_autoptr(GError) err = NULL;

    if (wc->status != IBV_WC_SUCCESS) {
        if (wc->status != IBV_WC_WR_FLUSH_ERR) {
            bf_node_rdma_close(c, ibv_wc_status_str(wc->status));
        }
        return;
    }
    if (bf_rdma_wr_kind(wc->wr_id) == BF_RDMA_WR_SEND) {
        bf_rdma_send_done(&c->q, index);
        return;
    }
    if (c->closing) {
        return;
    }
    if (!bf_node_rdma_message(c, bf_rdma_recv_buf(&c->q, index), wc->byte_len, &err)) {
        if (err && err->code == BF_ERROR_PROTOCOL) {
            bf_node_rdma_refuse(c, 0, BF_PROTO_ERR_PROTOCOL, err->message);
        }
        bf_node_rdma_close(c, err ? err->message : "cannot answer");
        return;
    }
    if (!c->closing && !bf_rdma_post_recv(&c->q, index, &err)) {
        bf_node_rdma_close(c, err->message);
    }
}

static void bf_node_rdma_drain(BfNodeRdmaConn *c)
{
    struct ibv_cq *cq;
    void *context;
    struct ibv_wc wc[32];
    int n;

    if (ibv_get_cq_event(c->comp, &cq, &context) == 0) {
        ibv_ack_cq_events(cq, 1);
    }
    ibv_req_notify_cq(c->q.cq, 0);
    while ((n = ibv_poll_cq(c->q.cq, G_N_ELEMENTS(wc), wc)) > 0) {
        for (int i = 0; i < n; i++) {
            bf_node_rdma_completion(c, &wc[i]);
        }
    }
}

static void bf_node_rdma_accept(BfNodeRdma *node, struct rdma_cm_event *event)
{
    struct rdma_cm_id *id = event->id;
    BfNodeRdmaConn *c = g_new0(BfNodeRdmaConn, 1);
    g_autoptr(GError) err = NULL;
    uint8_t session[BF_PROTO_SESSION_SIZE];
    struct rdma_conn_param param = { 0 };
    struct ibv_device_attr attr;
    BfNodeRdmaSession *s;
    char host[NI_MAXHOST] = "?";
    int flags;

    c->node = node;
    c->id = id;

    getnameinfo(rdma_get_peer_addr(id), sizeof(struct sockaddr_storage), host, sizeof(host),
                NULL, 0, NI_NUMERICHOST);
    c->peer = g_strdup_printf("rdma client %s", host);
    if (!bf_rdma_parse_connect_data(event->param.conn.private_data,
                                    event->param.conn.private_data_len, session, &err)) {
        goto reject;
    }
    node->accepting = id->verbs;
    c->session = bf_extents_connect(node->extents, session, &err);
    if (!c->session) {
        goto reject;
    }
    s = bf_extents_session_data(c->session);
    if (s->verbs != id->verbs) {
        g_set_error(&err, BF_ERROR, BF_ERROR_UNSUPPORTED, "the session is served on device "
                    "%s already", ibv_get_device_name(s->verbs->device));
        goto reject;
    }
    c->comp = ibv_create_comp_channel(id->verbs);
    if (!c->comp || ibv_query_device(id->verbs, &attr)) {
        g_set_error(&err, BF_ERROR, BF_ERROR_FAILED, "cannot set up the device: %s",
                    g_strerror(errno));
        goto reject;
    }
    flags = fcntl(c->comp->fd, F_GETFL);
    fcntl(c->comp->fd, F_SETFL, flags | O_NONBLOCK);
    if (!bf_rdma_queue_init(&c->q, id, s->pd, c->comp, c, &err)) {
        goto reject;
    }
    c->queue_ready = TRUE;
    id->context = c;
    /* The request is seen from this side: its responder_resources is the client's depth. */
    param.responder_resources = MIN(event->param.conn.responder_resources,
                                    attr.max_qp_rd_atom);
    param.initiator_depth = 0;
    param.rnr_retry_count = 7;
    if (rdma_accept(id, &param)) {
        g_set_error(&err, BF_ERROR, BF_ERROR_FAILED, "cannot accept: %s", g_strerror(errno));
        goto reject;
    }
    g_ptr_array_add(node->conns, c);
    g_info("%s: connected", c->peer);
    return;

reject:
    g_info("%s: refused: %s", c->peer, err->message);
    rdma_reject(id, NULL, 0);
    id->context = NULL;
    c->closing = TRUE;
    /* Freed once its event is acknowledged. */
    g_ptr_array_add(node->conns, c);
}

/* Handles the pending connection events. */
static void bf_node_rdma_cm_events(BfNodeRdma *node)
{
    struct rdma_cm_event *event;

    while (rdma_get_cm_event(node->events, &event) == 0) {
        BfNodeRdmaConn *c = event->id->context;
        enum rdma_cm_event_type type = event->event;

        if (type == RDMA_CM_EVENT_CONNECT_REQUEST) {
            bf_node_rdma_accept(node, event);
            rdma_ack_cm_event(event);
            continue;
        }
        rdma_ack_cm_event(event);
        if (!c || event->id == node->listen_id) {
            continue;
        }
        switch (type) {
        case RDMA_CM_EVENT_ESTABLISHED:
            break;
        case RDMA_CM_EVENT_DISCONNECTED:
        case RDMA_CM_EVENT_REJECTED:
        case RDMA_CM_EVENT_UNREACHABLE:
        case RDMA_CM_EVENT_CONNECT_ERROR:
        case RDMA_CM_EVENT_DEVICE_REMOVAL:
            if (!c->closing) {
                g_info("%s: %s", c->peer, rdma_event_str(type));
            }
            g_ptr_array_remove(node->conns, c);
            bf_node_rdma_conn_free(c);
            break;
        default:
            break;
        }
    }
}

/* Frees the connections refused at accept: their ids have no more events to deliver. */
static void bf_node_rdma_reap_refused(BfNodeRdma *node)
{
    for (guint i = 0; i < node->conns->len;) {
        BfNodeRdmaConn *c = g_ptr_array_index(node->conns, i);

        if (c->closing && !c->queue_ready && c->id->context == NULL) {
            g_ptr_array_remove_index_fast(node->conns, i);
            bf_node_rdma_conn_free(c);
        } else {
            i++;
        }
    }
}

static gpointer bf_node_rdma_thread(gpointer opaque)
{
    BfNodeRdma *node = opaque;
    g_autoptr(GArray) fds = g_array_new(FALSE, FALSE, sizeof(struct pollfd));
    g_autoptr(GPtrArray) polled = g_ptr_array_new();

    for (;;) {
        struct pollfd fd;

        bf_node_rdma_reap_refused(node);
        g_array_set_size(fds, 0);
        g_ptr_array_set_size(polled, 0);
        fd = (struct pollfd) { .fd = node->wake_fd, .events = POLLIN };
        g_array_append_val(fds, fd);
        fd = (struct pollfd) { .fd = node->events->fd, .events = POLLIN };
        g_array_append_val(fds, fd);
        for (guint i = 0; i < node->conns->len; i++) {
            BfNodeRdmaConn *c = g_ptr_array_index(node->conns, i);

            if (c->queue_ready) {
                fd = (struct pollfd) { .fd = c->comp->fd, .events = POLLIN };
                g_array_append_val(fds, fd);
                g_ptr_array_add(polled, c);
            }
        }
        if (poll((struct pollfd *)fds->data, fds->len, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            g_warning("rdma: poll: %s", g_strerror(errno));
            break;
        }
        if (g_array_index(fds, struct pollfd, 0).revents) {
            break;
        }
        /* Completions first: a connection's last messages before its disconnect event. */
        for (guint i = 0; i < polled->len; i++) {
            if (g_array_index(fds, struct pollfd, i + 2).revents) {
                bf_node_rdma_drain(g_ptr_array_index(polled, i));
            }
        }
        if (g_array_index(fds, struct pollfd, 1).revents) {
            bf_node_rdma_cm_events(node);
        }
    }
    return NULL;
}

BfNodeRdma *bf_node_rdma_start(BfStore *store, const BfEndpoint *listen, GError **errp)
{
    BfNodeRdma *node;
    struct rdma_addrinfo hints = { .ai_flags = RAI_PASSIVE, .ai_port_space = RDMA_PS_TCP };
    struct rdma_addrinfo *addr = NULL;
    g_autofree char *port = g_strdup_printf("%u", listen->port);
    int err, flags;

    if (!bf_rdma_have_device(errp)) {
        return NULL;
    }
    node = g_new0(BfNodeRdma, 1);
    node->store = store;
    node->wake_fd = -1;
    node->conns = g_ptr_array_new();
    node->extents = bf_extents_new(store, &bf_node_rdma_extent_ops, node);
    node->events = rdma_create_event_channel();
    if (!node->events || rdma_create_id(node->events, &node->listen_id, NULL, RDMA_PS_TCP)) {
        g_set_error(errp, BF_ERROR, BF_ERROR_FAILED, "RDMA: cannot create a listener: %s",
                    g_strerror(errno));
        goto fail;
    }
    err = rdma_getaddrinfo(listen->host, port, &hints, &addr);
    if (err) {
        g_set_error(errp, BF_ERROR, BF_ERROR_INVALID, "RDMA: cannot resolve '%s': %s",
                    listen->host, err == -1 ? g_strerror(errno) : gai_strerror(err));
        goto fail;
    }
    err = rdma_bind_addr(node->listen_id, addr->ai_src_addr);
    rdma_freeaddrinfo(addr);
    if (err || rdma_listen(node->listen_id, 64)) {
        g_set_error(errp, BF_ERROR, BF_ERROR_FAILED, "RDMA: cannot listen on %s:%u: %s",
                    listen->host, listen->port, g_strerror(errno));
        goto fail;
    }
    flags = fcntl(node->events->fd, F_GETFL);
    fcntl(node->events->fd, F_SETFL, flags | O_NONBLOCK);
    node->wake_fd = eventfd(0, EFD_CLOEXEC);
    node->thread = g_thread_new("memnode-rdma", bf_node_rdma_thread, node);
    return node;

fail:
    bf_node_rdma_stop(node);
    return NULL;
}

uint16_t bf_node_rdma_port(BfNodeRdma *node)
{
    return ntohs(rdma_get_src_port(node->listen_id));
}

void bf_node_rdma_stop(BfNodeRdma *node)
{
    if (!node) {
        return;
    }
    if (node->thread) {
        uint64_t one = 1;

        if (write(node->wake_fd, &one, sizeof(one)) != sizeof(one)) {
            g_warning("rdma: cannot stop the listener thread");
        }
        g_thread_join(node->thread);
    }
    for (guint i = 0; i < node->conns->len; i++) {
        BfNodeRdmaConn *c = g_ptr_array_index(node->conns, i);

        rdma_disconnect(c->id);
        bf_node_rdma_conn_free(c);
    }
    g_ptr_array_free(node->conns, TRUE);
    bf_extents_free(node->extents);
    if (node->listen_id) {
        rdma_destroy_id(node->listen_id);
    }
    if (node->events) {
        rdma_destroy_event_channel(node->events);
    }
    if (node->wake_fd >= 0) {
        close(node->wake_fd);
    }
    g_free(node);
}
