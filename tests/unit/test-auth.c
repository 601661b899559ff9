/*
 * Keys between backends and memory nodes (bf-auth, bf-keyring, the AUTH exchange of
 * bf-node-auth and both channels): proofs depend on every input, keyrings refuse what is not a
 * key, and a real blowfish-memnode with --keys takes only a client that proves its key,
 * refuses a wrong, unknown, missing or replayed one with a clear error, keeps each key's
 * sessions apart, and bounds the clients that are still proving one.
 *
 * The node listens where memnode_default_listen() says: tests/rdma runs these over RDMA too,
 * all but /auth/replay, whose raw messages are written on a TCP socket.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-auth.h"
#include "bf-channel.h"
#include "bf-error.h"
#include "bf-keyring.h"
#include "bf-socket.h"
#include "memnode-process.h"
#include "rdma-raw.h"

#include <glib/gstdio.h>
#include <unistd.h>

#define PAGE BF_PROTO_PAGE_SIZE
#define TIMEOUT_MS 10000

/* Two keys of 32 bytes, base64. */
#define KEY_VM1 "q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k="
#define KEY_VM2 "ESIzRFVmd4iZqrvM3e7/ABEiM0RVZneImaq7zN3u/wA="

static BfKey *key_from_base64(const char *name, const char *base64)
{
    g_autofree guchar *secret = NULL;
    gsize len;
    g_autoptr(GError) err = NULL;
    BfKey *key;

    secret = g_base64_decode(base64, &len);
    key = bf_key_new(name, secret, len, &err);
    g_assert_no_error(err);
    return key;
}

static void test_proofs(void)
{
    g_autoptr(BfKey) k1 = key_from_base64("vm1", KEY_VM1);
    g_autoptr(BfKey) k2 = key_from_base64("vm1", KEY_VM2);
    g_autoptr(BfKey) renamed = key_from_base64("vm2", KEY_VM1);
    uint8_t cn[BF_PROTO_NONCE_SIZE], nn[BF_PROTO_NONCE_SIZE], other[BF_PROTO_NONCE_SIZE];
    uint8_t a[BF_PROTO_PROOF_SIZE], b[BF_PROTO_PROOF_SIZE];
    uint8_t s1[BF_PROTO_SESSION_SIZE] = { 1 }, s2[BF_PROTO_SESSION_SIZE] = { 1 };
    g_autoptr(GError) err = NULL;

    g_assert_true(bf_auth_nonce(cn, &err));
    g_assert_true(bf_auth_nonce(nn, &err));
    g_assert_true(bf_auth_nonce(other, &err));
    g_assert_true(memcmp(cn, nn, sizeof(cn)) != 0);

    bf_auth_proof(k1, BF_AUTH_BY_CLIENT, cn, nn, a);
    bf_auth_proof(k1, BF_AUTH_BY_CLIENT, cn, nn, b);
    g_assert_true(bf_auth_proof_equal(a, b));
    /* Each input changes it: side, either nonce, the key, the key's name. */
    bf_auth_proof(k1, BF_AUTH_BY_NODE, cn, nn, b);
    g_assert_false(bf_auth_proof_equal(a, b));
    bf_auth_proof(k1, BF_AUTH_BY_CLIENT, other, nn, b);
    g_assert_false(bf_auth_proof_equal(a, b));
    bf_auth_proof(k1, BF_AUTH_BY_CLIENT, cn, other, b);
    g_assert_false(bf_auth_proof_equal(a, b));
    bf_auth_proof(k2, BF_AUTH_BY_CLIENT, cn, nn, b);
    g_assert_false(bf_auth_proof_equal(a, b));
    bf_auth_proof(renamed, BF_AUTH_BY_CLIENT, cn, nn, b);
    g_assert_false(bf_auth_proof_equal(a, b));

    /* The same session id lands in different places for different keys. */
    bf_auth_session_in_key("vm1", s1);
    bf_auth_session_in_key("vm2", s2);
    g_assert_true(memcmp(s1, s2, sizeof(s1)) != 0);

    g_assert_null(bf_key_new("vm1", "short", 5, &err));
    g_assert_error(err, BF_ERROR, BF_ERROR_INVALID);
    g_assert_nonnull(strstr(err->message, "has 5 bytes"));
    g_clear_error(&err);
    g_assert_null(bf_key_new("a/b", "0123456789abcdef", 16, &err));
    g_assert_nonnull(strstr(err->message, "invalid key name"));
}

static char *write_temp(const char *text)
{
    g_autoptr(GError) err = NULL;
    char *path = NULL;
    int fd = g_file_open_tmp("blowfish-keys-XXXXXX", &path, &err);

    g_assert_no_error(err);
    close(fd);
    g_assert_true(g_file_set_contents(path, text, -1, &err));
    return path;
}

static void expect_keyring_error(const char *text, const char *needle)
{
    g_autofree char *path = write_temp(text);
    g_autoptr(GError) err = NULL;

    g_assert_null(bf_keyring_load(path, &err));
    g_assert_nonnull(err);
    if (!strstr(err->message, needle)) {
        g_error("keyring error '%s' lacks '%s'", err->message, needle);
    }
    g_unlink(path);
}

static void test_keyring(void)
{
    g_autofree char *file = write_temp("# keys\nvm1 " KEY_VM1 "\n\nvm2\t" KEY_VM2 "\n");
    g_autofree char *dir = g_dir_make_tmp("blowfish-keys-XXXXXX", NULL);
    g_autofree char *dir_key = g_build_filename(dir, "tenant-a", NULL);
    g_autoptr(BfKeyring) ring = NULL;
    g_autoptr(GError) err = NULL;

    ring = bf_keyring_load(file, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(bf_keyring_size(ring), ==, 2);
    g_assert_cmpuint(bf_keyring_lookup(ring, "vm2")->len, ==, 32);
    g_assert_null(bf_keyring_lookup(ring, "vm3"));
    g_clear_pointer(&ring, bf_keyring_free);

    g_assert_true(g_file_set_contents(dir_key, KEY_VM1 "\n", -1, &err));
    ring = bf_keyring_load(dir, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(bf_keyring_size(ring), ==, 1);
    g_assert_nonnull(bf_keyring_lookup(ring, "tenant-a"));

    expect_keyring_error("vm1 not*base64\n", "is not base64");
    expect_keyring_error("vm1 c2hvcnQ=\n", "has 5 bytes");
    expect_keyring_error("vm1 " KEY_VM1 "\nvm1 " KEY_VM2 "\n", "appears twice");
    expect_keyring_error("vm1\n", ":1: expected NAME KEY");
    expect_keyring_error("# nothing\n", "holds no key");
    g_unlink(file);
    g_unlink(dir_key);
    g_rmdir(dir);
}

typedef struct {
    MemnodeProcess *node;
    BfEndpoint *endpoint;
    char *keys;
} KeyedNode;

/* A node with keys vm1 and vm2, and @args (NULL-terminated, or NULL). */
static KeyedNode *keyed_node_start(const char *const *args)
{
    KeyedNode *k = g_new0(KeyedNode, 1);
    g_autofree char *why = NULL;

    k->keys = write_temp("vm1 " KEY_VM1 "\nvm2 " KEY_VM2 "\n");
    k->node = memnode_start_with_args(k->keys, "64M", args, &why);
    if (!k->node) {
        g_test_skip(why);
        g_unlink(k->keys);
        g_free(k->keys);
        g_free(k);
        return NULL;
    }
    k->endpoint = bf_endpoint_parse(k->node->address, NULL);
    return k;
}

static void keyed_node_stop(KeyedNode *k)
{
    memnode_stop(k->node);
    bf_endpoint_free(k->endpoint);
    g_unlink(k->keys);
    g_free(k->keys);
    g_free(k);
}

static BfHello make_hello(void)
{
    BfHello hello = { .pages = 64 };

    memset(hello.session, 0x5a, sizeof(hello.session));
    g_strlcpy(hello.name, "mem0", sizeof(hello.name));
    return hello;
}

static void page_call(BfChannel *ch, BfMsgType type, uint64_t page, void *data,
                      BfProtoError expected)
{
    g_autofree BfRequest *req = g_new0(BfRequest, 1);
    g_autoptr(GError) err = NULL;

    req->type = type;
    req->count = 1;
    req->pages[0] = page;
    req->data[0] = data;
    g_assert_true(bf_channel_submit(ch, req, &err));
    g_assert_nonnull(bf_channel_complete(ch, TIMEOUT_MS, &err));
    g_assert_no_error(err);
    g_assert_cmpint(req->pool_error, ==, expected);
}

static void expect_refused(KeyedNode *k, const BfKey *key, const char *needle)
{
    BfHello hello = make_hello();
    g_autoptr(GError) err = NULL;

    g_assert_null(bf_channel_connect(k->endpoint, &hello, key, NULL, TIMEOUT_MS, &err));
    g_assert_error(err, BF_ERROR, BF_ERROR_POOL);
    if (!strstr(err->message, needle)) {
        g_error("refusal '%s' lacks '%s'", err->message, needle);
    }
}

static void test_node_keys(void)
{
    KeyedNode *k = keyed_node_start(NULL);
    g_autoptr(BfKey) vm1 = NULL, vm2 = NULL, wrong = NULL, unknown = NULL;
    uint8_t page[PAGE], back[PAGE];
    BfHello hello = make_hello();
    BfPoolStats stats;
    g_autoptr(GError) err = NULL;
    BfChannel *ch;

    if (!k) {
        return;
    }
    vm1 = key_from_base64("vm1", KEY_VM1);
    vm2 = key_from_base64("vm2", KEY_VM2);
    wrong = key_from_base64("vm1", KEY_VM2);
    unknown = key_from_base64("vm3", KEY_VM1);

    /* The right key: pages go in and come back. */
    ch = bf_channel_connect(k->endpoint, &hello, vm1, NULL, TIMEOUT_MS, &err);
    g_assert_no_error(err);
    memset(page, 0xa5, sizeof(page));
    page_call(ch, BF_MSG_WRITE, 3, page, 0);
    page_call(ch, BF_MSG_READ, 3, back, 0);
    g_assert_cmpmem(page, PAGE, back, PAGE);
    bf_channel_close(ch, FALSE);

    /* Another key, the same session id: none of vm1's pages. */
    ch = bf_channel_connect(k->endpoint, &hello, vm2, NULL, TIMEOUT_MS, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(ch->stored_at_hello, ==, 0);
    page_call(ch, BF_MSG_READ, 3, back, BF_PROTO_ERR_NOT_STORED);
    g_assert_true(bf_channel_stats(ch, TIMEOUT_MS, &stats, &err));
    g_assert_cmpuint(stats.session_pages, ==, 0);
    /* (Over RDMA the node counts the extent it lent: 512 pages.) */
    g_assert_cmpuint(stats.stored_pages, ==,
                     k->endpoint->transport == BF_TRANSPORT_RDMA ? BF_PROTO_EXTENT_PAGES : 1);
    bf_channel_close(ch, TRUE);

    /* vm1 again: its page is still there. */
    ch = bf_channel_connect(k->endpoint, &hello, vm1, NULL, TIMEOUT_MS, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(ch->stored_at_hello, ==, 1);
    bf_channel_close(ch, TRUE);

    expect_refused(k, wrong, "did not prove it holds key 'vm1'");
    expect_refused(k, unknown, "did not prove it holds key 'vm3'");
    expect_refused(k, NULL, "takes only clients with a key");
    g_assert_true(memnode_log_contains(k->node, "refused: HELLO without a key"));
    keyed_node_stop(k);
}

/* A node without --keys refuses a client that offers one, rather than ignore it. */
static void test_node_without_keys(void)
{
    g_autofree char *why = NULL;
    MemnodeProcess *node = memnode_start("16M", &why);
    g_autoptr(BfKey) vm1 = NULL;
    g_autoptr(BfEndpoint) endpoint = NULL;
    BfHello hello = make_hello();
    g_autoptr(GError) err = NULL;

    if (!node) {
        g_test_skip(why);
        return;
    }
    vm1 = key_from_base64("vm1", KEY_VM1);
    endpoint = bf_endpoint_parse(node->address, NULL);
    g_assert_null(bf_channel_connect(endpoint, &hello, vm1, NULL, TIMEOUT_MS, &err));
    g_assert_error(err, BF_ERROR, BF_ERROR_POOL);
    g_assert_nonnull(strstr(err->message, "takes no keys"));
    memnode_stop(node);
}

/* One message on a raw connection; returns its type, payload in @payload. */
static BfMsgType raw_call(int fd, BfMsgType type, const void *payload, uint32_t length,
                          uint8_t *reply, uint32_t *reply_length)
{
    uint8_t header[BF_PROTO_HEADER_SIZE];
    BfMsgHeader h;
    g_autoptr(GError) err = NULL;

    bf_proto_put_header(header, type, length, 0);
    g_assert_true(bf_socket_send(fd, header, sizeof(header), &err));
    g_assert_true(!length || bf_socket_send(fd, payload, length, &err));
    g_assert_true(bf_socket_recv(fd, header, sizeof(header), -1, 0, &err));
    g_assert_true(bf_proto_parse_header(header, &h, &err));
    g_assert_true(bf_socket_recv(fd, reply, h.length, -1, 0, &err));
    *reply_length = h.length;
    return h.type;
}

static void expect_auth_error(uint8_t *reply, uint32_t length, BfProtoError expected,
                              const char *needle)
{
    g_autofree char *message = NULL;
    BfProtoError code;
    g_autoptr(GError) err = NULL;

    g_assert_true(bf_proto_parse_error(reply, length, &code, &message, &err));
    g_assert_cmpint(code, ==, expected);
    g_assert_nonnull(strstr(message, needle));
}

/*
 * A proof recorded from one connection is worth nothing on another: the node's nonce differs,
 * even when the client sends the same nonce again. And the exchange cannot be skipped.
 */
static void test_replay(void)
{
    KeyedNode *k = keyed_node_start(NULL);
    g_autoptr(BfKey) vm1 = NULL;
    BfAuthHello auth = { 0 };
    uint8_t msg[BF_PROTO_NONCE_SIZE + 4 + BF_PROTO_MAX_NAME];
    uint8_t reply[8 + BF_PROTO_MAX_MESSAGE];
    uint8_t nonce1[BF_PROTO_NONCE_SIZE], nonce2[BF_PROTO_NONCE_SIZE];
    uint8_t node_proof[BF_PROTO_PROOF_SIZE], proof[BF_PROTO_PROOF_SIZE];
    g_autoptr(GError) err = NULL;
    uint32_t length, len;
    int fd;

    if (!k) {
        return;
    }
    if (k->endpoint->transport != BF_TRANSPORT_TCP) {
        g_test_skip("its raw messages are written on a TCP socket");
        keyed_node_stop(k);
        return;
    }
    vm1 = key_from_base64("vm1", KEY_VM1);
    g_strlcpy(auth.key_name, "vm1", sizeof(auth.key_name));
    g_assert_true(bf_auth_nonce(auth.nonce, &err));
    length = bf_proto_put_auth(msg, &auth);

    /* A genuine exchange, recorded. */
    fd = bf_socket_connect(k->endpoint->host, k->endpoint->port, TIMEOUT_MS, &err);
    g_assert_cmpint(raw_call(fd, BF_MSG_AUTH, msg, length, reply, &len), ==,
                    BF_MSG_AUTH_CHALLENGE);
    g_assert_true(bf_proto_parse_challenge(reply, len, nonce1, node_proof, &err));
    bf_auth_proof(vm1, BF_AUTH_BY_CLIENT, auth.nonce, nonce1, proof);
    g_assert_cmpint(raw_call(fd, BF_MSG_AUTH_PROOF, proof, sizeof(proof), reply, &len), ==,
                    BF_MSG_AUTH_OK);
    close(fd);

    /* Replayed on a new connection, with the same client nonce. */
    fd = bf_socket_connect(k->endpoint->host, k->endpoint->port, TIMEOUT_MS, &err);
    g_assert_cmpint(raw_call(fd, BF_MSG_AUTH, msg, length, reply, &len), ==,
                    BF_MSG_AUTH_CHALLENGE);
    g_assert_true(bf_proto_parse_challenge(reply, len, nonce2, node_proof, &err));
    g_assert_true(memcmp(nonce1, nonce2, sizeof(nonce1)) != 0);
    g_assert_cmpint(raw_call(fd, BF_MSG_AUTH_PROOF, proof, sizeof(proof), reply, &len), ==,
                    BF_MSG_ERROR);
    expect_auth_error(reply, len, BF_PROTO_ERR_AUTH, "authentication failed");
    close(fd);
    g_assert_true(memnode_log_contains(k->node, "wrong proof for key 'vm1'"));

    /* A WRITE's header before AUTH_OK: refused on the header, its 1 MiB never awaited. */
    fd = bf_socket_connect(k->endpoint->host, k->endpoint->port, TIMEOUT_MS, &err);
    {
        uint8_t header[BF_PROTO_HEADER_SIZE];
        BfMsgHeader h;

        bf_proto_put_header(header, BF_MSG_WRITE, BF_PROTO_MAX_PAYLOAD, 0);
        g_assert_true(bf_socket_send(fd, header, sizeof(header), &err));
        g_assert_true(bf_socket_recv(fd, header, sizeof(header),
                                     g_get_monotonic_time() + 5 * G_USEC_PER_SEC, 0, &err));
        g_assert_true(bf_proto_parse_header(header, &h, &err));
        g_assert_cmpint(h.type, ==, BF_MSG_ERROR);
        g_assert_true(bf_socket_recv(fd, reply, h.length, -1, 0, &err));
        expect_auth_error(reply, h.length, BF_PROTO_ERR_AUTH, "takes only clients with a key");
    }
    close(fd);

    /* A key name that no key can have (it would go to the node's log): a protocol error. */
    g_strlcpy(auth.key_name, "vm1\nforged log line", sizeof(auth.key_name));
    fd = bf_socket_connect(k->endpoint->host, k->endpoint->port, TIMEOUT_MS, &err);
    g_assert_cmpint(raw_call(fd, BF_MSG_AUTH, msg, bf_proto_put_auth(msg, &auth), reply, &len),
                    ==, BF_MSG_ERROR);
    expect_auth_error(reply, len, BF_PROTO_ERR_PROTOCOL, "no valid key name");
    close(fd);

    /* A proof without a challenge is a protocol error. */
    fd = bf_socket_connect(k->endpoint->host, k->endpoint->port, TIMEOUT_MS, &err);
    g_assert_cmpint(raw_call(fd, BF_MSG_AUTH_PROOF, proof, sizeof(proof), reply, &len), ==,
                    BF_MSG_ERROR);
    expect_auth_error(reply, len, BF_PROTO_ERR_PROTOCOL, "AUTH_PROOF before AUTH");
    close(fd);
    keyed_node_stop(k);
}

/*
 * A client that connected and never proves a key. Over TCP it asked for a challenge and does
 * not answer it; over RDMA its connection is established and it says nothing.
 */
typedef struct {
    int fd;
    RawRdma *rdma;
} IdleClient;

static IdleClient *idle_client_new(const BfEndpoint *endpoint)
{
    IdleClient *c = g_new0(IdleClient, 1);
    g_autoptr(GError) err = NULL;

    c->fd = -1;
    if (endpoint->transport == BF_TRANSPORT_TCP) {
        BfAuthHello auth = { 0 };
        uint8_t msg[BF_AUTH_MAX_PAYLOAD];
        uint8_t reply[BF_PROTO_NONCE_SIZE + BF_PROTO_PROOF_SIZE];
        uint32_t len;

        g_strlcpy(auth.key_name, "vm1", sizeof(auth.key_name));
        g_assert_true(bf_auth_nonce(auth.nonce, &err));
        c->fd = bf_socket_connect(endpoint->host, endpoint->port, TIMEOUT_MS, &err);
        g_assert_no_error(err);
        g_assert_cmpint(raw_call(c->fd, BF_MSG_AUTH, msg, bf_proto_put_auth(msg, &auth),
                                 reply, &len), ==, BF_MSG_AUTH_CHALLENGE);
        return c;
    }
    c->rdma = raw_rdma_connect(endpoint);
    return c;
}

static void idle_client_free(IdleClient *c)
{
    if (c->fd >= 0) {
        close(c->fd);
    } else {
        raw_rdma_close(c->rdma);
    }
    g_free(c);
}

/*
 * At most --max-unauthenticated connections may be proving a key: the next is turned away at
 * once, as busy. One that proves its key, or leaves, makes room; a proven one takes none. One
 * that has not proven a key after 10 s is cut off.
 */
static void test_unauthenticated_cap(void)
{
    static const char *const args[] = { "--max-unauthenticated", "2", NULL };
    KeyedNode *k = keyed_node_start(args);
    g_autoptr(BfKey) vm1 = NULL;
    BfHello hello = make_hello();
    g_autoptr(GError) err = NULL;
    BfChannel *ch = NULL;
    IdleClient *idle[2];

    if (!k) {
        return;
    }
    vm1 = key_from_base64("vm1", KEY_VM1);
    /* Two clients that never prove a key: the node counts them. */
    for (int i = 0; i < 2; i++) {
        idle[i] = idle_client_new(k->endpoint);
    }
    g_assert_null(bf_channel_connect(k->endpoint, &hello, vm1, NULL, TIMEOUT_MS, &err));
    g_assert_error(err, BF_ERROR, BF_ERROR_POOL);
    g_assert_nonnull(strstr(err->message, "the memory node is busy"));
    g_assert_true(memnode_log_contains(k->node, "turned away"));

    /* One idle client leaves: the key holder gets in, and once in takes no place. */
    idle_client_free(idle[0]);
    for (int tries = 0; !ch; tries++) {
        g_assert_cmpint(tries, <, 500);
        g_clear_error(&err);
        g_usleep(10 * 1000);
        ch = bf_channel_connect(k->endpoint, &hello, vm1, NULL, TIMEOUT_MS, &err);
    }
    bf_channel_close(bf_channel_connect(k->endpoint, &hello, vm1, NULL, TIMEOUT_MS, &err), FALSE);
    g_assert_no_error(err);
    bf_channel_close(ch, TRUE);

    /* The other is cut off when its 10 s are up. */
    for (int tries = 0; !memnode_log_contains(k->node, "no key proven in 10 s"); tries++) {
        g_assert_cmpint(tries, <, 150);
        g_usleep(100 * 1000);
    }
    idle_client_free(idle[1]);
    keyed_node_stop(k);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/auth/proofs", test_proofs);
    g_test_add_func("/auth/keyring", test_keyring);
    g_test_add_func("/auth/node-keys", test_node_keys);
    g_test_add_func("/auth/node-without-keys", test_node_without_keys);
    g_test_add_func("/auth/replay", test_replay);
    g_test_add_func("/auth/unauthenticated-cap", test_unauthenticated_cap);
    return g_test_run();
}
