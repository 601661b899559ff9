/*
 * TLS between the TCP channel and a real blowfish-memnode --tls-dir, with certificates made
 * for the test (tests/common/make-certs.sh): pages cross byte for byte, with and without keys,
 * and every way the two sides can disagree ends in a clear refusal, no pages exchanged: a
 * plain client or a plain node, a node certificate from another CA or for another name, a
 * client without a certificate or with one from another CA.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-channel.h"
#include "bf-error.h"
#include "bf-tls.h"
#include "memnode-process.h"

#include <glib/gstdio.h>
#include <unistd.h>

#define PAGE BF_PROTO_PAGE_SIZE
#define TIMEOUT_MS 10000

static char *certs;             /* made by make-certs.sh, or NULL: why in skip_reason */
static char *skip_reason;

static BfHello make_hello(uint8_t id)
{
    BfHello hello = { .pages = 4096 };

    memset(hello.session, id, sizeof(hello.session));
    g_strlcpy(hello.name, "mem0", sizeof(hello.name));
    return hello;
}

static char *cert_dir(const char *which)
{
    return g_build_filename(certs, which, NULL);
}

/* Client credentials from certs/@which. */
static BfTlsCreds *client_creds(const char *which)
{
    g_autofree char *dir = cert_dir(which);
    g_autoptr(GError) err = NULL;
    BfTlsCreds *creds = bf_tls_creds_load(dir, FALSE, TRUE, NULL, &err);

    g_assert_no_error(err);
    return creds;
}

/*
 * A node speaking TLS with the certificates of certs/@which (unless @plain), and @extra (an
 * option, or NULL).
 */
static MemnodeProcess *tls_node(const char *which, gboolean plain, const char *extra,
                                const char *keys)
{
    g_autofree char *dir = cert_dir(which);
    const char *args[] = { "--tls-dir", dir, extra, NULL };
    g_autofree char *why = NULL;
    MemnodeProcess *node;

    if (!certs) {
        g_test_skip(skip_reason);
        return NULL;
    }
    node = memnode_start_with_args(keys, "64M", plain ? NULL : args, &why);
    if (!node) {
        g_test_skip(why);
    }
    return node;
}

/* Writes 300 pages (a full batch and more) and reads them back. */
static void roundtrip(BfChannel *ch)
{
    g_autofree BfRequest *req = g_new0(BfRequest, 1);
    g_autofree uint8_t *out = g_malloc(BF_PROTO_MAX_PAGES * PAGE);
    g_autofree uint8_t *in = g_malloc(BF_PROTO_MAX_PAGES * PAGE);
    g_autoptr(GError) err = NULL;

    for (uint32_t i = 0; i < BF_PROTO_MAX_PAGES * PAGE; i++) {
        out[i] = (uint8_t)(i * 7 + i / PAGE);
    }
    for (uint64_t first = 0; first < 300; first += BF_PROTO_MAX_PAGES) {
        req->type = BF_MSG_WRITE;
        req->count = MIN(BF_PROTO_MAX_PAGES, 300 - first);
        for (uint32_t i = 0; i < req->count; i++) {
            req->pages[i] = first + i;
            req->data[i] = out + (uint64_t)i * PAGE;
        }
        g_assert_true(bf_channel_call(ch, req, TIMEOUT_MS, &err));
        req->type = BF_MSG_READ;
        for (uint32_t i = 0; i < req->count; i++) {
            req->data[i] = in + (uint64_t)i * PAGE;
        }
        memset(in, 0, BF_PROTO_MAX_PAGES * PAGE);
        g_assert_true(bf_channel_call(ch, req, TIMEOUT_MS, &err));
        g_assert_no_error(err);
        g_assert_cmpmem(in, req->count * PAGE, out, req->count * PAGE);
    }
}

static BfChannel *connect_to(MemnodeProcess *node, const BfKey *key, const BfTlsCreds *tls,
                             GError **errp)
{
    g_autoptr(BfEndpoint) endpoint = bf_endpoint_parse(node->address, NULL);
    BfHello hello = make_hello(1);

    return bf_channel_connect(endpoint, &hello, key, tls, TIMEOUT_MS, errp);
}

/* Pages cross TLS byte for byte; the node says it speaks TLS. */
static void test_roundtrip(void)
{
    MemnodeProcess *node = tls_node("node", FALSE, NULL, NULL);
    g_autoptr(BfTlsCreds) tls = NULL;
    g_autoptr(GError) err = NULL;
    BfChannel *ch;

    if (!node) {
        return;
    }
    tls = client_creds("client");
    ch = connect_to(node, NULL, tls, &err);
    g_assert_no_error(err);
    roundtrip(ch);
    bf_channel_close(ch, TRUE);
    memnode_stop(node);
}

/* TLS and keys together: the key is proven inside TLS; a wrong one is still refused. */
static void test_with_keys(void)
{
    static const uint8_t secret[32] = { 1, 2, 3 };
    g_autofree char *b64 = g_base64_encode(secret, sizeof(secret));
    g_autofree char *line = g_strdup_printf("vm1 %s\n", b64);
    g_autofree char *keys = NULL;
    MemnodeProcess *node;
    g_autoptr(BfTlsCreds) tls = NULL;
    g_autoptr(BfKey) key = NULL, wrong = NULL;
    g_autoptr(GError) err = NULL;
    BfChannel *ch;
    int fd;

    if (!certs) {
        g_test_skip(skip_reason);
        return;
    }
    fd = g_file_open_tmp("blowfish-tls-keys-XXXXXX", &keys, &err);
    g_assert_no_error(err);
    close(fd);
    g_assert_true(g_file_set_contents(keys, line, -1, &err));
    node = tls_node("node", FALSE, NULL, keys);
    if (!node) {
        g_unlink(keys);
        return;
    }
    tls = client_creds("client");
    key = bf_key_new("vm1", secret, sizeof(secret), &err);
    ch = connect_to(node, key, tls, &err);
    g_assert_no_error(err);
    roundtrip(ch);
    bf_channel_close(ch, TRUE);

    wrong = bf_key_new("vm1", (const uint8_t *)"another key, another key, again", 32, &err);
    g_assert_null(connect_to(node, wrong, tls, &err));
    g_assert_error(err, BF_ERROR, BF_ERROR_POOL);
    g_assert_nonnull(strstr(err->message, "did not prove it holds key 'vm1'"));
    memnode_stop(node);
    g_unlink(keys);
}

/* A refusal: no channel, an error of @code saying @needle; the node logs @log if not NULL. */
static void expect_refused(MemnodeProcess *node, const BfTlsCreds *tls, int code,
                           const char *needle, const char *log)
{
    g_autoptr(GError) err = NULL;

    g_assert_null(connect_to(node, NULL, tls, &err));
    g_assert_nonnull(err);
    g_test_message("refused: %s", err->message);
    g_assert_cmpint(err->code, ==, code);
    if (!strstr(err->message, needle)) {
        g_error("refusal '%s' lacks '%s'", err->message, needle);
    }
    for (int tries = 0; log && !memnode_log_contains(node, log); tries++) {
        g_assert_cmpint(tries, <, 500);
        g_usleep(10 * 1000);
    }
}

static void test_refusals(void)
{
    MemnodeProcess *node = tls_node("node", FALSE, NULL, NULL), *plain;
    g_autoptr(BfTlsCreds) tls = NULL, anonymous = NULL, rogue = NULL, wrong_ca = NULL;
    g_autoptr(BfTlsCreds) no_verify = NULL;
    g_autofree char *anonymous_dir = NULL;
    g_autoptr(BfEndpoint) endpoint = NULL, by_name = NULL;
    BfHello hello = make_hello(2);
    g_autoptr(GError) err = NULL;
    BfChannel *ch;

    if (!node) {
        return;
    }
    tls = client_creds("client");
    anonymous = client_creds("anonymous");
    rogue = client_creds("rogue");
    wrong_ca = client_creds("wrong-ca");

    /* A plain client: the node tells it, in plain, to use TLS. */
    expect_refused(node, NULL, BF_ERROR_POOL, "this memory node speaks TLS",
                   "refused: a client without TLS");
    /* The node's certificate from a CA the client does not trust. */
    expect_refused(node, wrong_ca, BF_ERROR_POOL, "the memory node's certificate is refused",
                   NULL);
    /* No client certificate; one from another CA, which GnuTLS then does not offer. */
    expect_refused(node, anonymous, BF_ERROR_POOL, "ended TLS: Certificate is required",
                   "refused: TLS handshake");
    expect_refused(node, rogue, BF_ERROR_POOL, "ended TLS: Certificate is required", NULL);

    /* The node's certificate names 127.0.0.1, not localhost. */
    endpoint = bf_endpoint_parse(node->address, NULL);
    by_name = bf_endpoint_parse(node->address, NULL);
    g_free(by_name->host);
    by_name->host = g_strdup("localhost");
    g_assert_null(bf_channel_connect(by_name, &hello, NULL, tls, TIMEOUT_MS, &err));
    g_assert_error(err, BF_ERROR, BF_ERROR_POOL);
    g_test_message("refused: %s", err->message);
    g_assert_nonnull(strstr(err->message, "name in the certificate does not match"));
    g_clear_error(&err);
    /* ... which a client that does not verify ignores (QEMU's verify-peer=off). */
    anonymous_dir = cert_dir("client");
    no_verify = bf_tls_creds_load(anonymous_dir, FALSE, FALSE, NULL, &err);
    ch = bf_channel_connect(by_name, &hello, NULL, no_verify, TIMEOUT_MS, &err);
    g_assert_no_error(err);
    bf_channel_close(ch, TRUE);
    memnode_stop(node);

    /* A TLS client and a plain node. */
    plain = tls_node("node", TRUE, NULL, NULL);
    expect_refused(plain, tls, BF_ERROR_POOL, "does the memory node use TLS", NULL);
    memnode_stop(plain);

    /* --tls-any-client takes a client without a certificate. */
    node = tls_node("node", FALSE, "--tls-any-client", NULL);
    ch = connect_to(node, NULL, anonymous, &err);
    g_assert_no_error(err);
    roundtrip(ch);
    bf_channel_close(ch, TRUE);
    memnode_stop(node);
}

/* Revoked certificates (ca-crl.pem) are refused, on both sides. */
static void test_revoked(void)
{
    MemnodeProcess *node = tls_node("node-crl", FALSE, NULL, NULL);
    g_autoptr(BfTlsCreds) tls = NULL, revoked = NULL, client_crl = NULL;
    g_autoptr(GError) err = NULL;
    BfChannel *ch;

    if (!node) {
        return;
    }
    tls = client_creds("client");
    revoked = client_creds("revoked");
    client_crl = client_creds("client-crl");
    expect_refused(node, revoked, BF_ERROR_POOL, "ended TLS",
                   "the client's certificate is refused: The certificate is NOT trusted. "
                   "The certificate chain is revoked.");
    ch = connect_to(node, NULL, tls, &err);
    g_assert_no_error(err);
    roundtrip(ch);
    bf_channel_close(ch, TRUE);
    memnode_stop(node);

    /* A client that has the list refuses the node whose certificate it revokes. */
    node = tls_node("node", FALSE, NULL, NULL);
    expect_refused(node, client_crl, BF_ERROR_POOL, "The certificate chain is revoked", NULL);
    memnode_stop(node);
}

/* Credentials that cannot be loaded say which file and why. */
static void test_creds_errors(void)
{
    g_autofree char *empty = g_dir_make_tmp("blowfish-tls-XXXXXX", NULL);
    g_autofree char *anonymous = NULL;
    g_autoptr(GError) err = NULL;

    g_assert_null(bf_tls_creds_load(empty, FALSE, TRUE, NULL, &err));
    g_assert_error(err, BF_ERROR, BF_ERROR_INVALID);
    g_assert_nonnull(strstr(err->message, "ca-cert.pem"));
    g_clear_error(&err);
    g_assert_null(bf_tls_creds_load(empty, TRUE, FALSE, NULL, &err));
    g_assert_nonnull(strstr(err->message, "server-cert.pem"));
    g_clear_error(&err);
    g_rmdir(empty);
    if (!certs) {
        return;
    }
    anonymous = cert_dir("anonymous");
    g_assert_null(bf_tls_creds_load(anonymous, FALSE, TRUE, "NORMAL:-NOTHING-AT-ALL", &err));
    g_assert_nonnull(strstr(err->message, "invalid TLS priority"));
}

int main(int argc, char **argv)
{
    const char *make_certs = g_getenv("BLOWFISH_MAKE_CERTS");
    g_autofree char *openssl = g_find_program_in_path("openssl");
    int ret;

    g_test_init(&argc, &argv, NULL);
    if (!make_certs) {
        skip_reason = g_strdup("BLOWFISH_MAKE_CERTS is not set");
    } else if (!openssl) {
        skip_reason = g_strdup("no openssl here to make the test's certificates");
    } else {
        g_autofree char *cmd = NULL;

        certs = g_dir_make_tmp("blowfish-certs-XXXXXX", NULL);
        cmd = g_strdup_printf("sh '%s' '%s'", make_certs, certs);
        if (system(cmd) != 0) {
            g_error("%s failed", cmd);
        }
    }
    g_test_add_func("/tls/roundtrip", test_roundtrip);
    g_test_add_func("/tls/with-keys", test_with_keys);
    g_test_add_func("/tls/refusals", test_refusals);
    g_test_add_func("/tls/revoked", test_revoked);
    g_test_add_func("/tls/creds-errors", test_creds_errors);
    ret = g_test_run();
    if (certs) {
        g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", certs);

        if (system(cmd) != 0) {
            g_warning("could not remove %s", certs);
        }
    }
    return ret;
}
