/*
 * bf-node-rdma: the memory node's RDMA listener and its control-message server.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-node-rdma.h"
#include "bf-error.h"
#include "bf-extents.h"
#include "bf-node-auth.h"
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
    const BfKeyring *keys;          /* NULL: the node takes anyone */
    guint max_unauthenticated;
    guint unauthenticated;          /* connections proving a key now */
    BfExtents *extents;
    struct rdma_event_channel *events;
    struct rdma_cm_id *listen_id;
    int wake_fd;                    /* eventfd: stop */
    GThread *thread;
    GPtrArray *conns;               /* BfNodeRdmaConn */
};

/* An extent's memory, and its registrations: one per connection it was granted to. */
typedef struct {
    void *mem;
    GSList *reaches;                /* BfNodeRdmaReach */
} BfNodeRdmaLent;

typedef struct BfNodeRdmaConn BfNodeRdmaConn;

typedef struct {
    BfNodeRdmaConn *conn;
    BfNodeRdmaLent *lent;
    struct ibv_mr *mr;              /* in the connection's protection domain */
} BfNodeRdmaReach;

struct BfNodeRdmaConn {
    BfNodeRdma *node;
    struct rdma_cm_id *id;
    struct ibv_pd *pd;              /* its own: holds only the extents granted to it */
    struct ibv_comp_channel *comp;
    BfRdmaQueue q;
    gboolean queue_ready;
    BfNodeAuth auth;
    gboolean counted;               /* among node->unauthenticated */
    gint64 auth_deadline;
    BfExtentSession *session;
    GHashTable *reaches;            /* BfNodeRdmaLent -> BfNodeRdmaReach */
    gboolean ending;                /* serves no more; disconnects once its sends are out */
    gboolean closing;               /* disconnect asked; waiting for the event */
    char *peer;
};

static gpointer bf_node_rdma_lend(gpointer opaque, BfGrant *grant, GError **errp)
{
    BfNodeRdmaLent *lent = g_new0(BfNodeRdmaLent, 1);

    lent->mem = mmap(NULL, BF_EXTENT_SIZE, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (lent->mem == MAP_FAILED) {
        g_set_error(errp, BF_ERROR, BF_ERROR_POOL, "cannot allocate an extent: %s",
                    g_strerror(errno));
        g_free(lent);
        return NULL;
    }
    grant->addr = (uintptr_t)lent->mem;
    return lent;
}

static void bf_node_rdma_unreach(BfNodeRdmaReach *r)
{
    ibv_dereg_mr(r->mr);
    r->lent->reaches = g_slist_remove(r->lent->reaches, r);
    g_hash_table_remove(r->conn->reaches, r->lent);
    g_free(r);
}

static void bf_node_rdma_take_back(gpointer opaque, gpointer data)
{
    BfNodeRdmaLent *lent = data;

    while (lent->reaches) {
        bf_node_rdma_unreach(lent->reaches->data);
    }
    munmap(lent->mem, BF_EXTENT_SIZE);
    g_free(lent);
}

static const BfExtentOps bf_node_rdma_extent_ops = {
    .lend = bf_node_rdma_lend,
    .take_back = bf_node_rdma_take_back,
};

/* The rkey through which @c reaches @lent: registered in its protection domain once. */
static gboolean bf_node_rdma_reach(BfNodeRdmaConn *c, BfNodeRdmaLent *lent, uint32_t *rkey,
                                   GError **errp)
{
    BfNodeRdmaReach *r = g_hash_table_lookup(c->reaches, lent);

    if (!r) {
        struct ibv_mr *mr = ibv_reg_mr(c->pd, lent->mem, BF_EXTENT_SIZE,
                                       IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ |
                                       IBV_ACCESS_REMOTE_WRITE);

        if (!mr) {
            g_set_error(errp, BF_ERROR, BF_ERROR_POOL, "cannot register an extent (is "
                        "RLIMIT_MEMLOCK too low?): %s", g_strerror(errno));
            return FALSE;
        }
        r = g_new(BfNodeRdmaReach, 1);
        *r = (BfNodeRdmaReach) { .conn = c, .lent = lent, .mr = mr };
        lent->reaches = g_slist_prepend(lent->reaches, r);
        g_hash_table_insert(c->reaches, lent, r);
    }
    *rkey = r->mr->rkey;
    return TRUE;
}

/* Counts @c among the connections proving a key, or no longer. */
static void bf_node_rdma_count(BfNodeRdmaConn *c, gboolean counted)
{
    if (c->counted != counted) {
        c->counted = counted;
        if (counted) {
            c->node->unauthenticated++;
        } else {
            c->node->unauthenticated--;
        }
    }
}

static void bf_node_rdma_close(BfNodeRdmaConn *c)
{
    if (!c->closing) {
        c->closing = TRUE;
        rdma_disconnect(c->id);
    }
}

/*
 * Serves @c no more: it is disconnected once the messages it was sent (a refusal that says
 * why, say) are out, so that they are not lost to the disconnect.
 */
static void bf_node_rdma_end(BfNodeRdmaConn *c, const char *why)
{
    if (!c->ending) {
        g_info("%s: %s", c->peer, why);
        c->ending = TRUE;
        bf_node_rdma_count(c, FALSE);
    }
    if (!c->queue_ready || bf_rdma_sends_idle(&c->q)) {
        bf_node_rdma_close(c);
    }
}

static void bf_node_rdma_conn_free(BfNodeRdmaConn *c)
{
    g_autoptr(GList) reaches = g_hash_table_get_values(c->reaches);

    bf_node_rdma_count(c, FALSE);
    for (GList *l = reaches; l; l = l->next) {
        bf_node_rdma_unreach(l->data);
    }
    g_hash_table_destroy(c->reaches);
    if (c->queue_ready) {
        bf_rdma_queue_destroy(&c->q);
    }
    if (c->comp) {
        ibv_destroy_comp_channel(c->comp);
    }
    if (c->pd) {
        ibv_dealloc_pd(c->pd);
    }
    if (c->session) {
        bf_extents_detach(c->node->extents, c->session);
    }
    bf_node_auth_clear(&c->auth);
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
        bf_node_rdma_end(c, "more requests outstanding than the protocol allows");
        return FALSE;
    }
    bf_proto_put_header(buf, type, length, tag);
    memcpy(buf + BF_PROTO_HEADER_SIZE, payload, length);
    if (!bf_rdma_post_send(&c->q, slot, BF_PROTO_HEADER_SIZE + length, &err)) {
        bf_node_rdma_end(c, err->message);
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

/* Refuses the client for want of a key and ends the connection; FALSE. */
static gboolean bf_node_rdma_refuse_auth(BfNodeRdmaConn *c, uint32_t tag, const char *message)
{
    bf_node_rdma_refuse(c, tag, BF_PROTO_ERR_AUTH, message);
    bf_node_rdma_end(c, message);
    return FALSE;
}

/* AUTH and AUTH_PROOF (bf-node-auth.h). */
static gboolean bf_node_rdma_auth(BfNodeRdmaConn *c, const BfMsgHeader *h,
                                  const uint8_t *payload, GError **errp)
{
    uint8_t challenge[BF_PROTO_NONCE_SIZE + BF_PROTO_PROOF_SIZE];
    const char *refusal;

    if (h->type == BF_MSG_AUTH) {
        if (!bf_node_auth_challenge(&c->auth, payload, h->length, challenge, &refusal, errp)) {
            return refusal ? bf_node_rdma_refuse_auth(c, h->tag, refusal) : FALSE;
        }
        return bf_node_rdma_reply(c, BF_MSG_AUTH_CHALLENGE, h->tag, challenge,
                                  sizeof(challenge));
    }
    if (!bf_node_auth_check(&c->auth, payload, &refusal, errp)) {
        return refusal ? bf_node_rdma_refuse_auth(c, h->tag, refusal) : FALSE;
    }
    bf_node_rdma_count(c, FALSE);
    return bf_node_rdma_reply(c, BF_MSG_AUTH_OK, h->tag, NULL, 0);
}

static gboolean bf_node_rdma_hello(BfNodeRdmaConn *c, const BfMsgHeader *h,
                                   const uint8_t *payload, GError **errp)
{
    const char *owner = c->auth.key ? c->auth.key->name : NULL;
    g_autoptr(GError) refusal = NULL;
    BfProtoError code;
    BfHello hello;
    uint64_t values[2];
    uint8_t out[16];

    if (c->session) {
        return bf_proto_fail(errp, "a second HELLO");
    }
    if (!bf_proto_parse_hello(payload, h->length, &hello, errp)) {
        return FALSE;
    }
    if (owner) {
        /* The key's own namespace: no other key can name this session. */
        bf_auth_session_in_key(owner, hello.session);
    }
    c->session = bf_extents_attach(c->node->extents, hello.session, owner, hello.pages,
                                   &values[0], &code, &refusal);
    if (!c->session) {
        g_message("%s: session refused: %s", c->peer, refusal->message);
        return bf_node_rdma_refuse(c, h->tag, code, refusal->message);
    }
    g_free(c->peer);
    c->peer = g_strdup_printf("session '%s' (rdma)", hello.name);
    c->auth.peer = c->peer;
    g_info("%s: attached, %" G_GUINT64_FORMAT " pages stored", c->peer, (guint64)values[0]);
    values[1] = bf_store_room(c->node->store, owner);
    bf_proto_put_u64s(out, values, 2);
    return bf_node_rdma_reply(c, BF_MSG_HELLO_OK, h->tag, out, sizeof(out));
}

/* GRANT: where the extent is, reachable through this connection. */
static gboolean bf_node_rdma_grant(BfNodeRdmaConn *c, const BfMsgHeader *h,
                                   const uint8_t *payload, GError **errp)
{
    uint64_t size = bf_extents_session_size(c->session);
    g_autoptr(GError) refusal = NULL;
    BfProtoError code;
    uint64_t extent;
    gboolean create;
    gpointer lent;
    BfGrant grant;
    uint8_t out[24];

    if (!bf_proto_parse_grant(payload, h->length, bf_proto_extents(size), &extent, &create,
                              errp)) {
        return FALSE;
    }
    if (!bf_extents_grant(c->node->extents, c->session, extent, create, &grant, &lent, &code,
                          &refusal)) {
        return bf_node_rdma_refuse(c, h->tag, code, refusal->message);
    }
    if (!bf_node_rdma_reach(c, lent, &grant.rkey, &refusal)) {
        g_message("%s: %s", c->peer, refusal->message);
        return bf_node_rdma_refuse(c, h->tag, BF_PROTO_ERR_NO_SPACE, refusal->message);
    }
    return bf_node_rdma_reply(c, BF_MSG_GRANT_OK, h->tag, out,
                              bf_proto_put_grant_ok(out, &grant));
}

/* Handles one message; FALSE with @errp set ends the connection. */
static gboolean bf_node_rdma_message(BfNodeRdmaConn *c, const uint8_t *msg, uint32_t length,
                                     GError **errp)
{
    BfNodeRdma *node = c->node;
    const uint8_t *payload = msg + BF_PROTO_HEADER_SIZE;
    BfMsgHeader h;
    BfPageList list;
    uint64_t size;

    if (length < BF_PROTO_HEADER_SIZE || !bf_proto_parse_header(msg, &h, errp)) {
        if (errp && !*errp) {
            bf_proto_fail(errp, "a short message");
        }
        return FALSE;
    }
    if (h.length != length - BF_PROTO_HEADER_SIZE) {
        return bf_proto_fail(errp, "%s says %u bytes, carries %u", bf_msg_type_name(h.type),
                             h.length, length - BF_PROTO_HEADER_SIZE);
    }
    if (h.type == BF_MSG_AUTH || h.type == BF_MSG_AUTH_PROOF) {
        return bf_node_rdma_auth(c, &h, payload, errp);
    }
    if (!bf_node_auth_trusted(&c->auth)) {
        g_message("%s: refused: %s without a key", c->peer, bf_msg_type_name(h.type));
        return bf_node_rdma_refuse_auth(c, h.tag, BF_NODE_AUTH_NEEDED);
    }
    if (h.type == BF_MSG_HELLO) {
        return bf_node_rdma_hello(c, &h, payload, errp);
    }
    size = c->session ? bf_extents_session_size(c->session) : 0;
    if (!size) {
        return bf_node_rdma_refuse(c, h.tag, BF_PROTO_ERR_NO_SESSION,
                                   c->session ? "the session was dropped" :
                                   "no session: HELLO first");
    }

    switch (h.type) {
    case BF_MSG_GRANT:
        return bf_node_rdma_grant(c, &h, payload, errp);
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
        return bf_proto_fail(errp, "%s on the RDMA transport (page data moves by RDMA READ "
                             "and WRITE)", bf_msg_type_name(h.type));
    }
}

static void bf_node_rdma_completion(BfNodeRdmaConn *c, const struct ibv_wc *wc)
{
    uint32_t index = bf_rdma_wr_index(wc->wr_id);
    g_autoptr(GError) err = NULL;

    if (wc->status != IBV_WC_SUCCESS) {
        if (wc->status != IBV_WC_WR_FLUSH_ERR) {
            bf_node_rdma_end(c, ibv_wc_status_str(wc->status));
        }
        bf_node_rdma_close(c);
        return;
    }
    if (bf_rdma_wr_kind(wc->wr_id) == BF_RDMA_WR_SEND) {
        bf_rdma_send_done(&c->q, index);
        if (c->ending) {
            bf_node_rdma_end(c, NULL);
        }
        return;
    }
    if (c->ending) {
        return;
    }
    if (!bf_node_rdma_message(c, bf_rdma_recv_buf(&c->q, index), wc->byte_len, &err)) {
        if (err && err->code == BF_ERROR_PROTOCOL) {
            g_message("%s: %s: disconnecting", c->peer, err->message);
            bf_node_rdma_refuse(c, 0, BF_PROTO_ERR_PROTOCOL, err->message);
        }
        bf_node_rdma_end(c, err ? err->message : "cannot answer");
        return;
    }
    if (!c->ending && !bf_rdma_post_recv(&c->q, index, &err)) {
        bf_node_rdma_end(c, err->message);
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

/* Refuses a connection request, with a Blowfish refusal code the client can tell (or 0). */
static void bf_node_rdma_reject(BfNodeRdmaConn *c, BfProtoError refusal, const char *why)
{
    uint8_t data[BF_RDMA_CONNECT_DATA_SIZE];

    g_message("%s: refused: %s", c->peer, why);
    bf_rdma_put_connect_data(data, refusal);
    rdma_reject(c->id, data, sizeof(data));
    c->id->context = NULL;
    c->closing = TRUE;
    /* Freed once its event is acknowledged. */
    g_ptr_array_add(c->node->conns, c);
}

static void bf_node_rdma_accept(BfNodeRdma *node, struct rdma_cm_event *event)
{
    struct rdma_cm_id *id = event->id;
    BfNodeRdmaConn *c = g_new0(BfNodeRdmaConn, 1);
    g_autoptr(GError) err = NULL;
    struct rdma_conn_param param = { 0 };
    struct ibv_device_attr attr;
    char host[NI_MAXHOST] = "?";
    BfProtoError refusal;
    int flags;

    c->node = node;
    c->id = id;
    c->reaches = g_hash_table_new(NULL, NULL);
    getnameinfo(rdma_get_peer_addr(id), sizeof(struct sockaddr_storage), host, sizeof(host),
                NULL, 0, NI_NUMERICHOST);
    c->peer = g_strdup_printf("rdma client %s", host);
    bf_node_auth_init(&c->auth, node->keys, c->peer);
    if (!bf_rdma_parse_connect_data(event->param.conn.private_data,
                                    event->param.conn.private_data_len, &refusal, &err)) {
        bf_node_rdma_reject(c, 0, err->message);
        return;
    }
    if (node->keys && node->unauthenticated >= node->max_unauthenticated) {
        g_autofree char *why = g_strdup_printf("turned away: %u connections are "
                                               "authenticating already",
                                               node->max_unauthenticated);

        bf_node_rdma_reject(c, BF_PROTO_ERR_BUSY, why);
        return;
    }
    c->pd = ibv_alloc_pd(id->verbs);
    c->comp = c->pd ? ibv_create_comp_channel(id->verbs) : NULL;
    if (!c->comp || ibv_query_device(id->verbs, &attr)) {
        g_autofree char *why = g_strdup_printf("cannot set up the device: %s",
                                               g_strerror(errno));

        bf_node_rdma_reject(c, 0, why);
        return;
    }
    flags = fcntl(c->comp->fd, F_GETFL);
    fcntl(c->comp->fd, F_SETFL, flags | O_NONBLOCK);
    if (!bf_rdma_queue_init(&c->q, id, c->pd, c->comp, c, &err)) {
        bf_node_rdma_reject(c, 0, err->message);
        return;
    }
    c->queue_ready = TRUE;
    /* The request is seen from this side: its responder_resources is the client's depth. */
    param.responder_resources = MIN(event->param.conn.responder_resources,
                                    attr.max_qp_rd_atom);
    param.initiator_depth = 0;
    param.rnr_retry_count = 7;
    if (rdma_accept(id, &param)) {
        g_autofree char *why = g_strdup_printf("cannot accept: %s", g_strerror(errno));

        bf_node_rdma_reject(c, 0, why);
        return;
    }
    id->context = c;
    if (node->keys) {
        bf_node_rdma_count(c, TRUE);
        c->auth_deadline = g_get_monotonic_time() + BF_NODE_AUTH_TIMEOUT_US;
    }
    g_ptr_array_add(node->conns, c);
    g_info("%s: connected", c->peer);
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

/* Frees the connections refused at accept (no context): their ids have no more events. */
static void bf_node_rdma_reap_refused(BfNodeRdma *node)
{
    for (guint i = 0; i < node->conns->len;) {
        BfNodeRdmaConn *c = g_ptr_array_index(node->conns, i);

        if (c->id->context == NULL) {
            g_ptr_array_remove_index_fast(node->conns, i);
            bf_node_rdma_conn_free(c);
        } else {
            i++;
        }
    }
}

/*
 * Ends the connections that did not prove a key in time; returns the poll timeout (ms) until
 * the next one's deadline, or -1.
 */
static int bf_node_rdma_auth_deadlines(BfNodeRdma *node)
{
    gint64 now = g_get_monotonic_time(), next = -1;

    for (guint i = 0; i < node->conns->len; i++) {
        BfNodeRdmaConn *c = g_ptr_array_index(node->conns, i);

        if (!c->counted) {
            continue;
        }
        if (c->auth_deadline <= now) {
            bf_node_auth_log_timeout(&c->auth);
            bf_node_rdma_end(c, "authentication timed out");
        } else if (next < 0 || c->auth_deadline < next) {
            next = c->auth_deadline;
        }
    }
    return next < 0 ? -1 : (int)((next - now + 999) / 1000);
}

static gpointer bf_node_rdma_thread(gpointer opaque)
{
    BfNodeRdma *node = opaque;
    g_autoptr(GArray) fds = g_array_new(FALSE, FALSE, sizeof(struct pollfd));
    g_autoptr(GPtrArray) polled = g_ptr_array_new();

    for (;;) {
        struct pollfd fd;
        int timeout;

        bf_node_rdma_reap_refused(node);
        timeout = bf_node_rdma_auth_deadlines(node);
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
        if (poll((struct pollfd *)fds->data, fds->len, timeout) < 0) {
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

BfNodeRdma *bf_node_rdma_start(BfStore *store, const BfKeyring *keys, guint max_unauthenticated,
                               const BfEndpoint *listen, GError **errp)
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
    node->keys = keys;
    node->max_unauthenticated = max_unauthenticated;
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
