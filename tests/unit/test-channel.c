/*
 * The transport suite: the same checks for every channel implementation (an in-process store,
 * TCP to a real blowfish-memnode, and RDMA to one where this host has an RDMA device and
 * $BLOWFISH_TEST_RDMA names its address): pages read back byte for byte, pipelined requests
 * complete in order, sessions survive reconnection, are shared by a client's connections and
 * isolated from others, the node's refusals (full, not stored) arrive as such, freed memory
 * goes back to the node, and a node that dies or a client that sends garbage, lies about
 * lengths or pages, leaves in the middle of a request or never reads its replies breaks only
 * that connection. Over RDMA, a connection reaches no memory it was not granted itself.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-channel-local.h"
#include "bf-error.h"
#include "bf-rdma.h"
#include "bf-socket.h"
#include "memnode-process.h"
#include "rdma-raw.h"

#include <sys/socket.h>
#include <unistd.h>

#define PAGE BF_PROTO_PAGE_SIZE
#define TIMEOUT_MS 10000

typedef struct {
    const char *name;
    BfStore *store;             /* local */
    MemnodeProcess *node;       /* tcp, rdma */
    BfEndpoint *endpoint;
    gboolean one_sided;         /* rdma: the node does not see reads */
    char *why;                  /* not available here: why */
} Transport;

static BfHello make_hello(uint8_t id, uint64_t pages)
{
    BfHello hello = { .pages = pages };

    memset(hello.session, id, sizeof(hello.session));
    g_snprintf(hello.name, sizeof(hello.name), "session-%u", id);
    return hello;
}

static BfChannel *transport_connect(Transport *t, const BfHello *hello, GError **errp)
{
    if (t->store) {
        return bf_channel_local_new(t->store, hello, errp);
    }
    return bf_channel_connect(t->endpoint, hello, NULL, NULL, TIMEOUT_MS, errp);
}

static BfChannel *connect_ok(Transport *t, const BfHello *hello)
{
    g_autoptr(GError) err = NULL;
    BfChannel *ch = transport_connect(t, hello, &err);

    g_assert_no_error(err);
    return ch;
}

/* Page @n of a session, as this suite writes it with @seed. */
static void fill_page(uint8_t *page, uint64_t n, uint32_t seed)
{
    for (uint32_t i = 0; i < PAGE; i += 4) {
        uint32_t v = (uint32_t)(n * 2654435761u) ^ (i * 40503u) ^ seed;

        memcpy(page + i, &v, 4);
    }
}

static void write_range(BfChannel *ch, uint64_t first, uint32_t count, uint32_t seed)
{
    g_autofree uint8_t *buf = g_malloc(BF_PROTO_MAX_PAGES * PAGE);
    g_autofree BfRequest *req = g_new0(BfRequest, 1);

    while (count) {
        uint32_t n = MIN(count, BF_PROTO_MAX_PAGES);
        g_autoptr(GError) err = NULL;

        req->type = BF_MSG_WRITE;
        req->count = n;
        for (uint32_t i = 0; i < n; i++) {
            req->pages[i] = first + i;
            req->data[i] = buf + i * PAGE;
            fill_page(buf + i * PAGE, first + i, seed);
        }
        bf_channel_call(ch, req, TIMEOUT_MS, &err);
        g_assert_no_error(err);
        first += n;
        count -= n;
    }
}

/* Reads @count pages from @first, @batch at a time, and compares every byte. */
static void check_range(BfChannel *ch, uint64_t first, uint32_t count, uint32_t batch,
                        uint32_t seed)
{
    g_autofree uint8_t *buf = g_malloc(BF_PROTO_MAX_PAGES * PAGE);
    g_autofree BfRequest *req = g_new0(BfRequest, 1);
    uint8_t expected[PAGE];

    while (count) {
        uint32_t n = MIN(count, batch);
        g_autoptr(GError) err = NULL;

        req->type = BF_MSG_READ;
        req->count = n;
        for (uint32_t i = 0; i < n; i++) {
            /* Scattered destinations, in reverse, to catch misplaced pages. */
            req->pages[i] = first + i;
            req->data[i] = buf + (n - 1 - i) * PAGE;
        }
        memset(buf, 0x5a, n * PAGE);
        bf_channel_call(ch, req, TIMEOUT_MS, &err);
        g_assert_no_error(err);
        for (uint32_t i = 0; i < n; i++) {
            fill_page(expected, first + i, seed);
            g_assert_cmpmem(req->data[i], PAGE, expected, PAGE);
        }
        first += n;
        count -= n;
    }
}

static void test_roundtrip(gconstpointer opaque)
{
    Transport *t = (Transport *)opaque;
    BfHello hello = make_hello(1, 100000);
    BfChannel *ch = connect_ok(t, &hello);

    BfPoolStats stats;
    g_autoptr(GError) err = NULL;

    g_assert_cmpuint(ch->stored_at_hello, ==, 0);
    write_range(ch, 50000, 1000, 1);
    g_assert_true(bf_channel_stats(ch, TIMEOUT_MS, &stats, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(stats.session_pages, ==, 1000);
    g_assert_cmpuint(stats.stored_pages, >=, 1000);
    g_assert_cmpuint(stats.capacity_pages, ==, (64 << 20) / PAGE);
    check_range(ch, 50000, 1000, 256, 1);
    check_range(ch, 50100, 77, 7, 1);
    check_range(ch, 50999, 1, 1, 1);
    write_range(ch, 50500, 10, 2);      /* overwrite */
    check_range(ch, 50500, 10, 10, 2);
    check_range(ch, 50490, 10, 10, 1);
    bf_channel_close(ch, TRUE);
}

static void test_pipelined(gconstpointer opaque)
{
    Transport *t = (Transport *)opaque;
    BfHello hello = make_hello(2, 4096);
    BfChannel *ch = connect_ok(t, &hello);
    g_autofree uint8_t *buf = g_malloc(8 * 64 * PAGE);
    BfRequest *reqs = g_new0(BfRequest, 8);
    uint8_t expected[PAGE];

    write_range(ch, 0, 8 * 64, 3);
    for (int r = 0; r < 8; r++) {
        g_autoptr(GError) err = NULL;

        reqs[r].type = BF_MSG_READ;
        reqs[r].count = 64;
        reqs[r].opaque = GINT_TO_POINTER(r);
        for (int i = 0; i < 64; i++) {
            reqs[r].pages[i] = (7 - r) * 64 + i;
            reqs[r].data[i] = buf + (r * 64 + i) * PAGE;
        }
        g_assert_true(bf_channel_submit(ch, &reqs[r], &err));
    }
    g_assert_cmpuint(bf_channel_inflight(ch), ==, 8);
    for (int r = 0; r < 8; r++) {
        g_autoptr(GError) err = NULL;
        BfRequest *done = bf_channel_complete(ch, TIMEOUT_MS, &err);

        g_assert_no_error(err);
        g_assert_true(done == &reqs[r]);
        g_assert_cmpint(done->pool_error, ==, 0);
        for (int i = 0; i < 64; i++) {
            fill_page(expected, done->pages[i], 3);
            g_assert_cmpmem(done->data[i], PAGE, expected, PAGE);
        }
    }
    g_assert_cmpuint(bf_channel_inflight(ch), ==, 0);
    g_free(reqs);
    bf_channel_close(ch, TRUE);
}

static void test_sessions(gconstpointer opaque)
{
    Transport *t = (Transport *)opaque;
    BfHello a = make_hello(3, 1000), b = make_hello(4, 1000);
    BfChannel *ca = connect_ok(t, &a), *cb, *second;
    g_autofree BfRequest *req = g_new0(BfRequest, 1);
    uint8_t page[PAGE];
    g_autoptr(GError) err = NULL;

    write_range(ca, 0, 300, 4);
    /* A second connection to the session (the engine opens one per thread) shares it. */
    second = connect_ok(t, &a);
    g_assert_cmpuint(second->stored_at_hello, ==, 300);
    check_range(second, 0, 300, 256, 4);
    write_range(second, 300, 10, 4);
    check_range(ca, 300, 10, 10, 4);
    bf_channel_close(second, FALSE);

    /* The session outlives its connection... */
    bf_channel_close(ca, FALSE);
    ca = connect_ok(t, &a);
    g_assert_cmpuint(ca->stored_at_hello, ==, 310);
    check_range(ca, 0, 310, 100, 4);

    /* ...and another session cannot see its pages. */
    cb = connect_ok(t, &b);
    req->type = BF_MSG_READ;
    req->count = 1;
    req->pages[0] = 10;
    req->data[0] = page;
    g_assert_false(bf_channel_call(cb, req, TIMEOUT_MS, &err));
    g_assert_error(err, BF_ERROR, BF_ERROR_POOL);
    g_assert_cmpint(req->pool_error, ==, BF_PROTO_ERR_NOT_STORED);
    g_clear_error(&err);

    /* Freed pages are gone; the session goes on. */
    req->type = BF_MSG_FREE;
    req->count = 2;
    req->pages[1] = 11;
    g_assert_true(bf_channel_call(ca, req, TIMEOUT_MS, &err));
    if (!t->one_sided) {
        /* (Over RDMA the node is not asked: a freed page reads as anything.) */
        req->type = BF_MSG_READ;
        req->count = 1;
        g_assert_false(bf_channel_call(ca, req, TIMEOUT_MS, &err));
        g_assert_cmpint(req->pool_error, ==, BF_PROTO_ERR_NOT_STORED);
        g_clear_error(&err);
    }
    check_range(ca, 12, 298, 256, 4);

    /* Dropping the session forgets it. */
    bf_channel_close(ca, TRUE);
    ca = connect_ok(t, &a);
    g_assert_cmpuint(ca->stored_at_hello, ==, 0);
    bf_channel_close(ca, TRUE);
    bf_channel_close(cb, TRUE);
}

/* A full node refuses a write whole, and keeps serving. */
static void test_full(gconstpointer opaque)
{
    Transport *t = (Transport *)opaque;
    BfHello hello = make_hello(5, 1000000);
    BfChannel *ch = connect_ok(t, &hello);
    g_autofree BfRequest *req = g_new0(BfRequest, 1);
    g_autofree uint8_t *buf = g_malloc0(BF_PROTO_MAX_PAGES * PAGE);
    g_autoptr(GError) err = NULL;
    uint64_t written = 0;

    /* Every transport here has 64 MiB: 16384 pages. */
    req->type = BF_MSG_WRITE;
    req->count = BF_PROTO_MAX_PAGES;
    for (;;) {
        for (uint32_t i = 0; i < req->count; i++) {
            req->pages[i] = written + i;
            req->data[i] = buf + i * PAGE;
        }
        if (!bf_channel_call(ch, req, TIMEOUT_MS, &err)) {
            break;
        }
        written += req->count;
        g_assert_cmpuint(written, <=, 16384);
    }
    g_assert_error(err, BF_ERROR, BF_ERROR_POOL);
    g_assert_cmpint(req->pool_error, ==, BF_PROTO_ERR_NO_SPACE);
    g_assert_cmpuint(written, ==, 16384);
    g_clear_error(&err);

    /*
     * Nothing of the refused write was kept: after freeing the first 512 pages (an RDMA
     * extent, which RDMA gives back whole), 512 pages fit elsewhere, and no more.
     */
    bf_channel_close(ch, FALSE);
    ch = connect_ok(t, &hello);
    g_assert_cmpuint(ch->stored_at_hello, ==, 16384);
    req->type = BF_MSG_FREE;
    g_assert_true(bf_channel_call(ch, req, TIMEOUT_MS, &err));   /* not stored: ignored */
    for (uint32_t b = 0; b < 2; b++) {
        for (uint32_t i = 0; i < req->count; i++) {
            req->pages[i] = b * BF_PROTO_MAX_PAGES + i;
        }
        g_assert_true(bf_channel_call(ch, req, TIMEOUT_MS, &err));
    }
    req->type = BF_MSG_WRITE;
    for (uint32_t b = 0; b < 3; b++) {
        uint64_t first = b < 2 ? 977 * BF_PROTO_EXTENT_PAGES + b * BF_PROTO_MAX_PAGES :
                                 1172 * BF_PROTO_EXTENT_PAGES;

        for (uint32_t i = 0; i < req->count; i++) {
            req->pages[i] = first + i;
        }
        g_assert_cmpint(bf_channel_call(ch, req, TIMEOUT_MS, &err), ==, b < 2);
    }
    g_assert_error(err, BF_ERROR, BF_ERROR_POOL);
    g_assert_cmpint(req->pool_error, ==, BF_PROTO_ERR_NO_SPACE);
    bf_channel_close(ch, TRUE);
}

static uint64_t node_stored(BfChannel *ch)
{
    g_autoptr(GError) err = NULL;
    BfPoolStats stats;

    g_assert_true(bf_channel_stats(ch, TIMEOUT_MS, &stats, &err));
    g_assert_no_error(err);
    return stats.stored_pages;
}

/*
 * Freed pages give their memory back to the node, and the session goes on with the same
 * pages in new memory; a second connection of the session follows.
 */
static void test_give_back(gconstpointer opaque)
{
    Transport *t = (Transport *)opaque;
    BfHello hello = make_hello(8, 4096);
    BfChannel *ch = connect_ok(t, &hello), *reader;
    g_autofree BfRequest *req = g_new0(BfRequest, 1);
    g_autoptr(GError) err = NULL;
    uint64_t before = node_stored(ch);

    write_range(ch, 1024, 1024, 8);
    reader = connect_ok(t, &hello);
    check_range(reader, 1024, 1024, 256, 8);
    g_assert_cmpuint(node_stored(ch), ==, before + 1024);

    req->type = BF_MSG_FREE;
    for (uint32_t b = 0; b < 1024 / BF_PROTO_MAX_PAGES; b++) {
        req->count = BF_PROTO_MAX_PAGES;
        for (uint32_t i = 0; i < req->count; i++) {
            req->pages[i] = 1024 + b * BF_PROTO_MAX_PAGES + i;
        }
        bf_channel_call(ch, req, TIMEOUT_MS, &err);
        g_assert_no_error(err);
    }
    g_assert_cmpuint(node_stored(ch), ==, before);

    write_range(ch, 1024, 1024, 9);
    check_range(reader, 1024, 1024, 100, 9);
    write_range(ch, 1500, 1, 10);
    check_range(reader, 1500, 1, 1, 10);
    check_range(reader, 1501, 547, 256, 9);
    bf_channel_close(reader, FALSE);
    bf_channel_close(ch, TRUE);
}

/* A node that dies breaks the channel with a clear error; a new node is empty. */
static void test_node_dies(gconstpointer opaque)
{
    Transport *t = (Transport *)opaque;
    BfHello hello = make_hello(6, 1000);
    BfChannel *ch = connect_ok(t, &hello);
    g_autofree BfRequest *req = g_new0(BfRequest, 1);
    uint8_t page[PAGE];
    g_autoptr(GError) err = NULL;

    write_range(ch, 0, 10, 6);
    memnode_kill(t->node);
    req->type = BF_MSG_READ;
    req->count = 1;
    req->data[0] = page;
    g_assert_false(bf_channel_call(ch, req, TIMEOUT_MS, &err));
    g_assert_error(err, BF_ERROR, BF_ERROR_UNREACHABLE);
    g_clear_error(&err);
    bf_channel_close(ch, FALSE);

    g_assert_null(bf_channel_connect(t->endpoint, &hello, NULL, NULL, 1000, &err));
    g_assert_error(err, BF_ERROR, BF_ERROR_UNREACHABLE);
    if (!t->one_sided) {
        g_assert_nonnull(strstr(err->message, "cannot connect to 127.0.0.1"));
    }
    g_clear_error(&err);

    memnode_restart(t->node);
    ch = connect_ok(t, &hello);
    g_assert_cmpuint(ch->stored_at_hello, ==, 0);
    bf_channel_close(ch, TRUE);
}

/* TCP only: garbage gets an ERROR and a closed connection; the node serves others on. */
static void test_garbage(gconstpointer opaque)
{
    Transport *t = (Transport *)opaque;
    static const uint8_t garbage[BF_PROTO_HEADER_SIZE] = "GET / HTTP/1.1\r";
    uint8_t raw[BF_PROTO_HEADER_SIZE], payload[8 + BF_PROTO_MAX_MESSAGE], byte;
    BfMsgHeader header;
    BfProtoError code;
    g_autofree char *message = NULL;
    g_autoptr(GError) err = NULL;
    BfHello hello = make_hello(7, 10);
    BfChannel *ch;
    int fd = bf_socket_connect(t->endpoint->host, t->endpoint->port, TIMEOUT_MS, &err);

    g_assert_no_error(err);
    g_assert_true(bf_socket_send(fd, garbage, sizeof(garbage), &err));
    g_assert_true(bf_socket_recv(fd, raw, sizeof(raw), -1, 0, &err));
    g_assert_true(bf_proto_parse_header(raw, &header, &err));
    g_assert_cmpint(header.type, ==, BF_MSG_ERROR);
    g_assert_true(bf_socket_recv(fd, payload, header.length, -1, 0, &err));
    g_assert_true(bf_proto_parse_error(payload, header.length, &code, &message, &err));
    g_assert_cmpint(code, ==, BF_PROTO_ERR_PROTOCOL);
    g_assert_nonnull(strstr(message, "bad magic"));
    g_assert_false(bf_socket_recv(fd, &byte, 1, -1, 0, &err));
    g_assert_nonnull(strstr(err->message, "closed"));
    close(fd);

    ch = connect_ok(t, &hello);
    write_range(ch, 0, 10, 7);
    check_range(ch, 0, 10, 10, 7);
    bf_channel_close(ch, TRUE);
}

/* Sends a message with a header of its own and @length bytes of @payload. */
static void raw_send(int fd, BfMsgType type, uint32_t header_length, const void *payload,
                     uint32_t length)
{
    uint8_t header[BF_PROTO_HEADER_SIZE];
    g_autoptr(GError) err = NULL;

    bf_proto_put_header(header, type, header_length, 0);
    g_assert_true(bf_socket_send(fd, header, sizeof(header), &err));
    g_assert_true(!length || bf_socket_send(fd, payload, length, &err));
}

/* Reads the next reply, which must be of @type; returns its payload's length. */
static uint32_t raw_reply(int fd, BfMsgType type, uint8_t *payload)
{
    uint8_t header[BF_PROTO_HEADER_SIZE];
    BfMsgHeader h;
    g_autoptr(GError) err = NULL;

    g_assert_true(bf_socket_recv(fd, header, sizeof(header), -1, 0, &err));
    g_assert_true(bf_proto_parse_header(header, &h, &err));
    g_assert_cmpint(h.type, ==, type);
    g_assert_true(bf_socket_recv(fd, payload, h.length, -1, 0, &err));
    return h.length;
}

/* A raw connection attached to @hello's session. */
static int raw_attach(Transport *t, const BfHello *hello)
{
    uint8_t payload[64 + BF_PROTO_MAX_NAME];
    uint32_t length = bf_proto_put_hello(payload, hello);
    g_autoptr(GError) err = NULL;
    int fd = bf_socket_connect(t->endpoint->host, t->endpoint->port, TIMEOUT_MS, &err);

    g_assert_no_error(err);
    raw_send(fd, BF_MSG_HELLO, length, payload, length);
    raw_reply(fd, BF_MSG_HELLO_OK, payload);
    return fd;
}

/* The node answers a protocol error with ERROR naming it, and closes the connection. */
static void expect_protocol_error(int fd, const char *needle)
{
    uint8_t payload[8 + BF_PROTO_MAX_MESSAGE], byte;
    g_autofree char *message = NULL;
    g_autoptr(GError) err = NULL;
    uint32_t length = raw_reply(fd, BF_MSG_ERROR, payload);
    BfProtoError code;

    g_assert_true(bf_proto_parse_error(payload, length, &code, &message, &err));
    g_assert_cmpint(code, ==, BF_PROTO_ERR_PROTOCOL);
    g_test_message("refused: %s", message);
    g_assert_nonnull(strstr(message, needle));
    g_assert_false(bf_socket_recv(fd, &byte, 1, -1, 0, &err));
    close(fd);
}

/* A page-list message's payload: @count pages from @first. */
static uint32_t put_page_list(uint8_t *out, BfMsgType type, uint64_t first, uint32_t count)
{
    bf_proto_put_count(out, count);
    for (uint32_t i = 0; i < count; i++) {
        uint64_t le = GUINT64_TO_LE(first + i);

        memcpy(out + 8 + 8 * i, &le, 8);
    }
    return bf_proto_page_list_length(type, count);
}

/*
 * TCP only: a client that claims more than the largest message, names a page beyond its
 * session, leaves in the middle of a WRITE or floods READs it never reads is cut off, or
 * served until it leaves; nothing of the broken WRITE is stored, and others are served on.
 */
static void test_hostile(gconstpointer opaque)
{
    Transport *t = (Transport *)opaque;
    BfHello victim = make_hello(10, 64), other = make_hello(11, 4096);
    g_autofree uint8_t *write = g_malloc0(BF_PROTO_MAX_PAYLOAD);
    uint8_t read[8 + 8 * BF_PROTO_MAX_PAGES];
    BfChannel *ch;
    uint32_t length;
    int fd;

    /* A length past the largest message: refused on the header. */
    fd = raw_attach(t, &victim);
    raw_send(fd, BF_MSG_WRITE, BF_PROTO_MAX_PAYLOAD + 1, NULL, 0);
    expect_protocol_error(fd, "WRITE of");

    /* Page 64 of a 64-page session. */
    fd = raw_attach(t, &victim);
    length = put_page_list(write, BF_MSG_WRITE, 64, 1);
    raw_send(fd, BF_MSG_WRITE, length, write, length);
    expect_protocol_error(fd, "beyond the");

    /* A WRITE of 64 pages, of which 10 arrive before the client goes. */
    fd = raw_attach(t, &victim);
    length = put_page_list(write, BF_MSG_WRITE, 0, 64);
    raw_send(fd, BF_MSG_WRITE, length, write, length - 54 * PAGE);
    close(fd);

    /* Reads of 1 MiB each, never read back, then gone. */
    ch = connect_ok(t, &other);
    write_range(ch, 0, 4096, 11);
    fd = raw_attach(t, &other);
    length = put_page_list(read, BF_MSG_READ, 0, BF_PROTO_MAX_PAGES);
    for (int i = 0; i < 64; i++) {
        uint8_t header[BF_PROTO_HEADER_SIZE];

        /* Until the node stops reading us: its replies fill both socket buffers. */
        bf_proto_put_header(header, BF_MSG_READ, length, 0);
        if (send(fd, header, sizeof(header), MSG_DONTWAIT | MSG_NOSIGNAL) != sizeof(header) ||
            send(fd, read, length, MSG_DONTWAIT | MSG_NOSIGNAL) != length) {
            break;
        }
    }
    close(fd);

    /* Nothing of the broken WRITE was kept; the others are served as before. */
    bf_channel_close(ch, FALSE);
    ch = connect_ok(t, &victim);
    g_assert_cmpuint(ch->stored_at_hello, ==, 0);
    bf_channel_close(ch, TRUE);
    ch = connect_ok(t, &other);
    g_assert_cmpuint(ch->stored_at_hello, ==, 4096);
    check_range(ch, 0, 4096, 256, 11);
    bf_channel_close(ch, TRUE);
}

/* A raw RDMA message's reply is an ERROR of @code that says @needle. */
static void expect_rdma_error(BfMsgType type, const uint8_t *reply, uint32_t length,
                              BfProtoError code, const char *needle)
{
    g_autofree char *message = NULL;
    BfProtoError got;

    g_assert_cmpint(type, ==, BF_MSG_ERROR);
    g_assert_true(bf_proto_parse_error(reply, length, &got, &message, NULL));
    g_assert_cmpint(got, ==, code);
    if (!strstr(message, needle)) {
        g_error("ERROR '%s' lacks '%s'", message, needle);
    }
}

/*
 * Sends @length bytes of @payload under a header of @type that claims @claimed, on @r: the
 * node answers with a protocol error that says @needle, and ends the connection (closed here).
 */
static void expect_cut_off(RawRdma *r, BfMsgType type, uint32_t claimed, const uint8_t *payload,
                           uint32_t length, const char *needle)
{
    uint8_t msg[BF_RDMA_MSG_SIZE], reply[BF_RDMA_MSG_SIZE];
    BfMsgType got;
    uint32_t len;

    bf_proto_put_header(msg, type, claimed, 0);
    memcpy(msg + BF_PROTO_HEADER_SIZE, payload, length);
    got = raw_rdma_call_bytes(r, msg, BF_PROTO_HEADER_SIZE + length, reply, &len);
    expect_rdma_error(got, reply, len, BF_PROTO_ERR_PROTOCOL, needle);
    g_assert_cmpint(raw_rdma_call_bytes(r, msg, BF_PROTO_HEADER_SIZE, reply, &len), ==, 0);
    raw_rdma_close(r);
}

/* A raw RDMA connection that said HELLO for @hello. */
static RawRdma *raw_rdma_attach(Transport *t, const BfHello *hello)
{
    RawRdma *r = raw_rdma_connect(t->endpoint);
    uint8_t msg[BF_PROTO_MAX_NAME + 32], reply[BF_RDMA_MSG_SIZE];
    uint32_t len;

    g_assert_cmpint(raw_rdma_call(r, BF_MSG_HELLO, msg, bf_proto_put_hello(msg, hello), reply,
                                  &len), ==, BF_MSG_HELLO_OK);
    return r;
}

/*
 * RDMA only: a connection reaches no memory it was not granted itself, whatever address and
 * rkey it tries (before HELLO, for another session, or for its own through another
 * connection), and one that breaks the protocol is cut off; the pages of others hold.
 */
static void test_rdma_hostile(gconstpointer opaque)
{
    Transport *t = (Transport *)opaque;
    BfHello victim = make_hello(20, 1024), other = make_hello(21, 1024);
    uint8_t msg[BF_RDMA_MSG_SIZE], reply[BF_RDMA_MSG_SIZE];
    uint32_t length, len;
    BfMsgType type;
    BfGrant grant;
    RawRdma *v, *a;
    BfChannel *ch;

    /* Before HELLO, GRANT is refused and the connection stays. */
    v = raw_rdma_connect(t->endpoint);
    length = bf_proto_put_grant(msg, 0, TRUE);
    type = raw_rdma_call(v, BF_MSG_GRANT, msg, length, reply, &len);
    expect_rdma_error(type, reply, len, BF_PROTO_ERR_NO_SESSION, "HELLO first");

    /* The victim writes page 3 into its extent 0 by RDMA, and commits it. */
    length = bf_proto_put_hello(msg, &victim);
    g_assert_cmpint(raw_rdma_call(v, BF_MSG_HELLO, msg, length, reply, &len), ==,
                    BF_MSG_HELLO_OK);
    length = bf_proto_put_grant(msg, 0, TRUE);
    g_assert_cmpint(raw_rdma_call(v, BF_MSG_GRANT, msg, length, reply, &len), ==,
                    BF_MSG_GRANT_OK);
    g_assert_true(bf_proto_parse_grant_ok(reply, len, &grant, NULL));
    fill_page(v->page, 3, 20);
    g_assert_cmpint(raw_rdma_write(v, grant.addr + 3 * PAGE, grant.rkey), ==, IBV_WC_SUCCESS);
    length = put_page_list(msg, BF_MSG_COMMIT, 3, 1);
    g_assert_cmpint(raw_rdma_call(v, BF_MSG_COMMIT, msg, length, reply, &len), ==,
                    BF_MSG_COMMIT_OK);

    /* Its address and rkey, tried by a connection that said nothing, ... */
    a = raw_rdma_connect(t->endpoint);
    memset(a->page, 0xee, PAGE);
    g_assert_cmpint(raw_rdma_write(a, grant.addr + 3 * PAGE, grant.rkey), !=, IBV_WC_SUCCESS);
    raw_rdma_close(a);
    /* ... by another session's, ... */
    a = raw_rdma_attach(t, &other);
    memset(a->page, 0xee, PAGE);
    g_assert_cmpint(raw_rdma_write(a, grant.addr + 3 * PAGE, grant.rkey), !=, IBV_WC_SUCCESS);
    raw_rdma_close(a);
    /* ... and by another connection to the same session, not granted the extent itself. */
    a = raw_rdma_attach(t, &victim);
    memset(a->page, 0xee, PAGE);
    g_assert_cmpint(raw_rdma_write(a, grant.addr + 3 * PAGE, grant.rkey), !=, IBV_WC_SUCCESS);
    raw_rdma_close(a);

    /* Each a protocol error that cuts the connection off: an extent past the session's end, */
    length = bf_proto_put_grant(msg, 2, TRUE);
    expect_cut_off(raw_rdma_attach(t, &other), BF_MSG_GRANT, length, msg, length,
                   "GRANT of extent 2, beyond");
    /* a COMMIT of a page in an extent it was not lent, */
    length = put_page_list(msg, BF_MSG_COMMIT, 600, 1);
    expect_cut_off(raw_rdma_attach(t, &other), BF_MSG_COMMIT, length, msg, length,
                   "which the session was not lent");
    /* a header that claims more than the message carries, */
    expect_cut_off(raw_rdma_connect(t->endpoint), BF_MSG_HELLO, 64, msg, 10,
                   "HELLO says 64 bytes, carries 10");
    /* and READ, whose pages come back in the reply: TCP's, not RDMA's. */
    length = put_page_list(msg, BF_MSG_READ, 0, 1);
    expect_cut_off(raw_rdma_attach(t, &other), BF_MSG_READ, length, msg, length,
                   "on the RDMA transport");

    /* Through it all the victim's page held. */
    raw_rdma_close(v);
    ch = connect_ok(t, &victim);
    g_assert_cmpuint(ch->stored_at_hello, ==, 1);
    check_range(ch, 3, 1, 1, 20);
    bf_channel_close(ch, TRUE);
}

/* Without an RDMA device, an rdma: pool is refused with a clear error, at once. */
static void test_rdma_no_device(void)
{
    g_autoptr(BfEndpoint) endpoint = bf_endpoint_parse("rdma:127.0.0.1:7777", NULL);
    BfHello hello = make_hello(9, 10);
    g_autoptr(GError) err = NULL;

    g_assert_null(bf_channel_connect(endpoint, &hello, NULL, NULL, TIMEOUT_MS, &err));
    g_assert_error(err, BF_ERROR, BF_ERROR_UNSUPPORTED);
    g_assert_nonnull(strstr(err->message, "this host has no RDMA device"));
}

/* The RDMA transport, where $BLOWFISH_TEST_RDMA names this host's address on a device. */
static void rdma_setup(Transport *rdma)
{
    const char *host = g_getenv("BLOWFISH_TEST_RDMA");
    g_autofree char *listen = NULL;

    if (!host || !*host) {
        rdma->why = g_strdup("no RDMA device here: set BLOWFISH_TEST_RDMA=ADDRESS where there "
                             "is one (tests/rdma runs this in a Soft-RoCE guest)");
        return;
    }
    listen = g_strdup_printf("rdma:%s:0", host);
    rdma->node = memnode_start_on(listen, "64M", &rdma->why);
    if (rdma->node) {
        rdma->endpoint = bf_endpoint_parse(rdma->node->address, NULL);
    }
}

int main(int argc, char **argv)
{
    Transport local = { .name = "local", .store = bf_store_new(64 << 20) };
    Transport tcp = { .name = "tcp" };
    Transport rdma = { .name = "rdma", .one_sided = TRUE };
    Transport *transports[] = { &local, &tcp, &rdma };
    int ret;

    g_test_init(&argc, &argv, NULL);
    tcp.node = memnode_start_on("tcp:127.0.0.1:0", "64M", &tcp.why);
    if (tcp.node) {
        tcp.endpoint = bf_endpoint_parse(tcp.node->address, NULL);
    }
    rdma_setup(&rdma);
    for (size_t n = 0; n < G_N_ELEMENTS(transports); n++) {
        Transport *t = transports[n];
        static const struct {
            const char *name;
            GTestDataFunc fn;
            gboolean node_only;
            gboolean tcp_only;
            gboolean rdma_only;
        } tests[] = {
            { .name = "roundtrip", .fn = test_roundtrip },
            { .name = "pipelined", .fn = test_pipelined },
            { .name = "sessions", .fn = test_sessions },
            { .name = "full", .fn = test_full },
            { .name = "give-back", .fn = test_give_back },
            { .name = "garbage", .fn = test_garbage, .node_only = TRUE, .tcp_only = TRUE },
            { .name = "hostile", .fn = test_hostile, .node_only = TRUE, .tcp_only = TRUE },
            { .name = "hostile", .fn = test_rdma_hostile, .rdma_only = TRUE },
            { .name = "node-dies", .fn = test_node_dies, .node_only = TRUE },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(tests); i++) {
            g_autofree char *path = g_strdup_printf("/channel/%s/%s", t->name, tests[i].name);

            if ((tests[i].node_only && t == &local) || (tests[i].tcp_only && t != &tcp) ||
                (tests[i].rdma_only && t != &rdma)) {
                continue;
            }
            if (t->why) {
                g_test_add_data_func(path, t->why, (GTestDataFunc)g_test_skip);
            } else {
                g_test_add_data_func(path, t, tests[i].fn);
            }
        }
    }
    if (!g_getenv("BLOWFISH_TEST_RDMA")) {
        if (bf_rdma_have_device(NULL)) {
            g_test_add_data_func("/channel/rdma/no-device", "this host has an RDMA device",
                                 (GTestDataFunc)g_test_skip);
        } else {
            g_test_add_func("/channel/rdma/no-device", test_rdma_no_device);
        }
    }
    ret = g_test_run();
    for (size_t n = 0; n < G_N_ELEMENTS(transports); n++) {
        memnode_stop(transports[n]->node);
        bf_endpoint_free(transports[n]->endpoint);
        g_free(transports[n]->why);
    }
    bf_store_free(local.store);
    return ret;
}
