/*
 * bf-node: the memory node's side of the protocol, one connection at a time.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-node.h"
#include "bf-error.h"
#include "bf-node-auth.h"
#include "bf-socket.h"
#include "bf-stream.h"

#include <poll.h>
#include <sys/socket.h>

/*
 * How long a connection polls for the next request before it sleeps: a client faulting
 * page after page then gets its answer without waiting for this thread to wake up.
 */
#define BF_NODE_SPIN_US 50

struct BfNode {
    BfStore *store;
    const BfKeyring *keys;                  /* NULL: the node takes anyone */
    const BfTlsCreds *tls;                  /* NULL: plain TCP */
    guint max_unauthenticated;
    gint unauthenticated;                   /* connections proving a key now (atomic) */
    GMutex lock;
    guint connections;                      /* being served; under @lock */
    gboolean closed;                        /* bf_node_close(): serve no more; under @lock */
};

typedef struct {
    BfStore *store;
    BfStream stream;
    const char *peer;
    BfNodeAuth auth;
    BfStoreSession *session;
    BfHello hello;
    uint8_t *payload;                       /* BF_PROTO_MAX_PAYLOAD */
    uint8_t *pages_out;                     /* READ replies: BF_PROTO_MAX_PAGES pages */
    uint64_t pages[BF_PROTO_MAX_PAGES];
    const void *data[BF_PROTO_MAX_PAGES];
} BfNodeConn;

static gboolean bf_node_reply(BfNodeConn *c, BfMsgType type, uint32_t tag,
                              const void *payload, uint32_t length,
                              const void *data, uint32_t data_length)
{
    uint8_t header[BF_PROTO_HEADER_SIZE];
    struct iovec iov[3] = {
        { .iov_base = header, .iov_len = sizeof(header) },
        { .iov_base = (void *)payload, .iov_len = length },
        { .iov_base = (void *)data, .iov_len = data_length },
    };
    g_autoptr(GError) err = NULL;

    bf_proto_put_header(header, type, length + data_length, tag);
    if (!bf_stream_send_iov(&c->stream, iov, 3, &err)) {
        g_info("%s: %s", c->peer, err->message);
        return FALSE;
    }
    return TRUE;
}

static gboolean bf_node_reply_error(BfNodeConn *c, uint32_t tag, BfProtoError code,
                                    const char *message)
{
    uint8_t payload[8 + BF_PROTO_MAX_MESSAGE];
    uint32_t length = bf_proto_put_error(payload, code, message);

    return bf_node_reply(c, BF_MSG_ERROR, tag, payload, length, NULL, 0);
}

static gboolean bf_node_reply_count(BfNodeConn *c, BfMsgType type, uint32_t tag,
                                    uint32_t count, const void *data, uint32_t data_length)
{
    uint8_t payload[8];

    bf_proto_put_count(payload, count);
    return bf_node_reply(c, type, tag, payload, sizeof(payload), data, data_length);
}

/* Refuses the client for want of a key; FALSE: the connection ends. */
static gboolean bf_node_refuse_auth(BfNodeConn *c, uint32_t tag, const char *message)
{
    bf_node_reply_error(c, tag, BF_PROTO_ERR_AUTH, message);
    return FALSE;
}

/* AUTH and AUTH_PROOF (bf-node-auth.h). */
static gboolean bf_node_auth(BfNodeConn *c, const BfMsgHeader *h, GError **errp)
{
    uint8_t challenge[BF_PROTO_NONCE_SIZE + BF_PROTO_PROOF_SIZE];
    const char *refusal;

    if (h->type == BF_MSG_AUTH) {
        if (!bf_node_auth_challenge(&c->auth, c->payload, h->length, challenge, &refusal,
                                    errp)) {
            return refusal ? bf_node_refuse_auth(c, h->tag, refusal) : FALSE;
        }
        return bf_node_reply(c, BF_MSG_AUTH_CHALLENGE, h->tag, challenge, sizeof(challenge),
                             NULL, 0);
    }
    if (!bf_node_auth_check(&c->auth, c->payload, &refusal, errp)) {
        return refusal ? bf_node_refuse_auth(c, h->tag, refusal) : FALSE;
    }
    return bf_node_reply(c, BF_MSG_AUTH_OK, h->tag, NULL, 0, NULL, 0);
}

static gboolean bf_node_hello(BfNodeConn *c, const BfMsgHeader *h, GError **errp)
{
    uint8_t payload[16];
    uint64_t values[2];
    BfProtoError code;
    g_autoptr(GError) refusal = NULL;

    if (c->session) {
        g_set_error(errp, BF_ERROR, BF_ERROR_PROTOCOL, "protocol error: a second HELLO");
        return FALSE;
    }
    if (!bf_proto_parse_hello(c->payload, h->length, &c->hello, errp)) {
        return FALSE;
    }
    if (c->auth.key) {
        /* The key's own namespace: no other key can name this session. */
        bf_auth_session_in_key(c->auth.key->name, c->hello.session);
    }
    c->session = bf_store_attach(c->store, &c->hello, c->auth.key ? c->auth.key->name : NULL,
                                 &values[0], &code, &refusal);
    if (!c->session) {
        g_message("%s: session refused: %s", c->peer, refusal->message);
        return bf_node_reply_error(c, h->tag, code, refusal->message);
    }
    values[1] = bf_store_session_room(c->store, c->session);
    g_message("%s: session '%s' (%" G_GUINT64_FORMAT " pages) attached, %" G_GUINT64_FORMAT
              " pages stored", c->peer, c->hello.name, (guint64)c->hello.pages,
              (guint64)values[0]);
    bf_proto_put_u64s(payload, values, 2);
    return bf_node_reply(c, BF_MSG_HELLO_OK, h->tag, payload, sizeof(payload), NULL, 0);
}

static gboolean bf_node_pages(BfNodeConn *c, const BfMsgHeader *h, GError **errp)
{
    g_autoptr(GError) refusal = NULL;
    BfProtoError code = 0;
    BfPageList list;
    gboolean done = TRUE;

    if (!c->session) {
        return bf_node_reply_error(c, h->tag, BF_PROTO_ERR_NO_SESSION,
                                   "no session: send HELLO first");
    }
    if (!bf_proto_parse_page_list(h->type, c->payload, h->length, c->hello.pages, &list,
                                  errp)) {
        return FALSE;
    }
    for (uint32_t i = 0; i < list.count; i++) {
        c->pages[i] = bf_proto_page_number(&list, i);
    }
    switch (h->type) {
    case BF_MSG_WRITE:
        for (uint32_t i = 0; i < list.count; i++) {
            c->data[i] = list.data + (uint64_t)i * BF_PROTO_PAGE_SIZE;
        }
        done = bf_store_write(c->store, c->session, list.count, c->pages, c->data, &code,
                              &refusal);
        if (done) {
            return bf_node_reply_count(c, BF_MSG_WRITE_OK, h->tag, list.count, NULL, 0);
        }
        break;
    case BF_MSG_READ: {
        void *dest[BF_PROTO_MAX_PAGES];

        for (uint32_t i = 0; i < list.count; i++) {
            dest[i] = c->pages_out + (uint64_t)i * BF_PROTO_PAGE_SIZE;
        }
        done = bf_store_read(c->store, c->session, list.count, c->pages, dest, &code,
                             &refusal);
        if (done) {
            return bf_node_reply_count(c, BF_MSG_READ_OK, h->tag, list.count, c->pages_out,
                                       list.count * BF_PROTO_PAGE_SIZE);
        }
        break;
    }
    case BF_MSG_FREE:
        bf_store_free_pages(c->store, c->session, list.count, c->pages);
        return bf_node_reply_count(c, BF_MSG_FREE_OK, h->tag, list.count, NULL, 0);
    default:
        g_assert_not_reached();
    }
    g_info("%s: %s refused: %s", c->peer, bf_msg_type_name(h->type), refusal->message);
    return bf_node_reply_error(c, h->tag, code, refusal->message);
}

/* Handles one message; FALSE ends the connection (@errp set on a protocol error). */
static gboolean bf_node_handle(BfNodeConn *c, const BfMsgHeader *h, GError **errp)
{
    if (h->type == BF_MSG_AUTH || h->type == BF_MSG_AUTH_PROOF) {
        return bf_node_auth(c, h, errp);
    }
    g_assert(bf_node_auth_trusted(&c->auth));   /* bf_node_serve() let nothing else through */
    switch (h->type) {
    case BF_MSG_HELLO:
        return bf_node_hello(c, h, errp);
    case BF_MSG_WRITE:
    case BF_MSG_READ:
    case BF_MSG_FREE:
        return bf_node_pages(c, h, errp);
    case BF_MSG_STATS: {
        uint8_t payload[24];
        BfStoreStats store;
        BfPoolStats stats = { 0 };

        bf_store_get_stats(c->store, &store);
        stats.session_pages = c->session ? bf_store_session_pages(c->store, c->session) : 0;
        stats.stored_pages = store.stored_pages;
        stats.capacity_pages = store.capacity_pages;
        bf_proto_put_stats(payload, &stats);
        return bf_node_reply(c, BF_MSG_STATS_OK, h->tag, payload, sizeof(payload), NULL, 0);
    }
    case BF_MSG_BYE:
        if (c->session) {
            g_message("%s: session '%s' dropped", c->peer, c->hello.name);
            bf_store_drop(c->store, c->session);
            c->session = NULL;
        }
        return bf_node_reply(c, BF_MSG_BYE_OK, h->tag, NULL, 0, NULL, 0);
    default:
        g_set_error(errp, BF_ERROR, BF_ERROR_PROTOCOL, "protocol error: unexpected %s",
                    bf_msg_type_name(h->type));
        return FALSE;
    }
}

/* Does the client, on a node that speaks TLS, begin with a plain Blowfish header? */
static gboolean bf_node_plain_client(BfNodeConn *c, gint64 deadline)
{
    uint8_t magic[4];

    return bf_socket_wait(c->stream.fd, POLLIN, deadline, NULL) &&
           recv(c->stream.fd, magic, sizeof(magic), MSG_PEEK | MSG_DONTWAIT) == sizeof(magic) &&
           memcmp(magic, "BFSH", sizeof(magic)) == 0;
}

BfNode *bf_node_new(BfStore *store, const BfKeyring *keys, const BfTlsCreds *tls,
                    guint max_unauthenticated)
{
    BfNode *node = g_new0(BfNode, 1);

    node->store = store;
    node->keys = keys;
    node->tls = tls;
    node->max_unauthenticated = max_unauthenticated;
    g_mutex_init(&node->lock);
    return node;
}

void bf_node_free(BfNode *node)
{
    g_mutex_clear(&node->lock);
    g_free(node);
}

guint bf_node_close(BfNode *node)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&node->lock);

    node->closed = TRUE;
    return node->connections;
}

/*
 * Before closing on a refusal: closes our side and drains the client's for a moment, so
 * that our last words (an ERROR, a TLS alert) reach it rather than a reset for the bytes it
 * sent that we left unread.
 */
static void bf_node_linger(BfNodeConn *c)
{
    gint64 until = g_get_monotonic_time() + 200 * 1000;
    uint8_t buf[4096];

    shutdown(c->stream.fd, SHUT_WR);
    while (bf_socket_wait(c->stream.fd, POLLIN, until, NULL) &&
           recv(c->stream.fd, buf, sizeof(buf), MSG_DONTWAIT) > 0) {
    }
}

/*
 * The start of a connection that must earn trust: within the cap on such connections
 * (@before of them were there already) and, on a node with TLS, through the handshake.
 * FALSE: the connection ends.
 */
static gboolean bf_node_admit(BfNode *node, BfNodeConn *c, guint before, gint64 deadline)
{
    g_autoptr(GError) err = NULL;

    if (before >= node->max_unauthenticated) {
        g_message("%s: turned away: %u connections are authenticating already", c->peer,
                  node->max_unauthenticated);
        if (!node->tls) {
            bf_node_reply_error(c, 0, BF_PROTO_ERR_BUSY, BF_PROTO_BUSY_MESSAGE);
        }
        bf_node_linger(c);
        return FALSE;
    }
    if (!node->tls) {
        return TRUE;
    }
    if (bf_node_plain_client(c, deadline)) {
        g_message("%s: refused: a client without TLS", c->peer);
        bf_node_reply_error(c, 0, BF_PROTO_ERR_PROTOCOL, "this memory node speaks TLS: "
                            "give the backend tls-creds (a tls-creds-x509 object)");
        bf_node_linger(c);
        return FALSE;
    }
    if (!bf_tls_start(&c->stream, node->tls, NULL, deadline, &err)) {
        g_message("%s: refused: %s", c->peer, err->message);
        bf_node_linger(c);
        return FALSE;
    }
    return TRUE;
}

static void bf_node_serve_conn(BfNode *node, int fd, const char *peer)
{
    uint8_t auth_payload[BF_NODE_AUTH_PAYLOAD];
    const BfKeyring *keys = node->keys;
    BfStore *store = node->store;
    BfNodeConn c = { .store = store, .stream = { .fd = fd }, .peer = peer };
    gint64 auth_deadline = g_get_monotonic_time() + BF_NODE_AUTH_TIMEOUT_US;
    /* Counted among the untrusted until its handshake is done and its key proven, or gone. */
    gboolean counted = keys || node->tls;
    guint before = counted ? (guint)g_atomic_int_add(&node->unauthenticated, 1) : 0;

    bf_node_auth_init(&c.auth, keys, peer);
    if (counted && !bf_node_admit(node, &c, before, auth_deadline)) {
        goto end;
    }
    for (;;) {
        uint8_t raw[BF_PROTO_HEADER_SIZE];
        g_autoptr(GError) err = NULL;
        BfMsgHeader h = { 0 };
        /* Until a client proves its key it gets a deadline, and no buffers of its own. */
        gboolean trusted = bf_node_auth_trusted(&c.auth);
        gint64 deadline = trusted ? -1 : auth_deadline;
        gboolean ok;

        if (trusted && counted) {
            g_atomic_int_dec_and_test(&node->unauthenticated);
            counted = FALSE;
        }
        if (trusted && !c.pages_out) {
            c.payload = g_malloc(BF_PROTO_MAX_PAYLOAD);
            c.pages_out = g_malloc(BF_PROTO_MAX_PAGES * BF_PROTO_PAGE_SIZE);
        } else if (!trusted) {
            c.payload = auth_payload;
        }
        if (!bf_stream_recv(&c.stream, raw, sizeof(raw), deadline, BF_NODE_SPIN_US, &err)) {
            if (!trusted && g_get_monotonic_time() >= deadline) {
                bf_node_auth_log_timeout(&c.auth);
            } else {
                g_info("%s: %s", peer, err->message);
            }
            break;
        }
        ok = bf_proto_parse_header(raw, &h, &err);
        if (ok && !trusted && h.type != BF_MSG_AUTH && h.type != BF_MSG_AUTH_PROOF) {
            /* Refused on its header: its payload is never read. */
            g_message("%s: refused: %s without a key", c.peer, bf_msg_type_name(h.type));
            bf_node_refuse_auth(&c, h.tag, BF_NODE_AUTH_NEEDED);
            break;
        }
        if (!ok || !bf_stream_recv(&c.stream, c.payload, h.length, deadline, 0, &err) ||
            !bf_node_handle(&c, &h, &err)) {
            if (err && err->code == BF_ERROR_PROTOCOL) {
                g_message("%s: %s: disconnecting", peer, err->message);
                bf_node_reply_error(&c, h.tag, BF_PROTO_ERR_PROTOCOL, err->message);
            } else if (err) {
                g_info("%s: %s", peer, err->message);
            }
            break;
        }
    }
end:
    if (counted) {
        g_atomic_int_dec_and_test(&node->unauthenticated);
    }
    if (c.session) {
        g_message("%s: session '%s' detached", peer, c.hello.name);
        bf_store_detach(store, c.session);
    }
    if (c.pages_out) {
        g_free(c.payload);
        g_free(c.pages_out);
    }
    bf_node_auth_clear(&c.auth);
    bf_tls_end(&c.stream);
}

void bf_node_serve(BfNode *node, int fd, const char *peer)
{
    g_mutex_lock(&node->lock);
    if (node->closed) {
        g_mutex_unlock(&node->lock);
        return;
    }
    node->connections++;
    g_mutex_unlock(&node->lock);

    bf_node_serve_conn(node, fd, peer);

    g_mutex_lock(&node->lock);
    node->connections--;
    g_mutex_unlock(&node->lock);
}
