/*
 * bf-auth: the key proofs of the AUTH messages (see bf-auth.h), with GnuTLS's HMAC, hash,
 * random numbers and constant-time comparison.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-auth.h"
#include "bf-error.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <string.h>

static const char bf_auth_labels[][24] = {
    [BF_AUTH_BY_CLIENT] = "blowfish client proof",
    [BF_AUTH_BY_NODE] = "blowfish node proof",
};

gboolean bf_key_name_valid(const char *name)
{
    size_t len = strlen(name);

    if (len == 0 || len > BF_PROTO_MAX_NAME) {
        return FALSE;
    }
    for (size_t i = 0; i < len; i++) {
        if (!g_ascii_isalnum(name[i]) && !strchr("-_.", name[i])) {
            return FALSE;
        }
    }
    return TRUE;
}

BfKey *bf_key_new(const char *name, const void *secret, size_t len, GError **errp)
{
    BfKey *key;

    if (!bf_key_name_valid(name)) {
        g_set_error(errp, BF_ERROR, BF_ERROR_INVALID,
                    "invalid key name '%s': 1 to %u letters, digits, '-', '_' or '.'", name,
                    BF_PROTO_MAX_NAME);
        return NULL;
    }
    if (len < BF_AUTH_MIN_KEY || len > BF_AUTH_MAX_KEY) {
        g_set_error(errp, BF_ERROR, BF_ERROR_INVALID,
                    "key '%s' has %zu bytes: a key has %u to %u (e.g. head -c 32 /dev/urandom "
                    "| base64)", name, len, BF_AUTH_MIN_KEY, BF_AUTH_MAX_KEY);
        return NULL;
    }
    key = g_new0(BfKey, 1);
    g_strlcpy(key->name, name, sizeof(key->name));
    key->secret = g_memdup2(secret, len);
    key->len = len;
    return key;
}

void bf_key_free(BfKey *key)
{
    if (key) {
        gnutls_memset(key->secret, 0, key->len);
        g_free(key->secret);
        g_free(key);
    }
}

gboolean bf_auth_nonce(uint8_t nonce[BF_PROTO_NONCE_SIZE], GError **errp)
{
    int ret = gnutls_rnd(GNUTLS_RND_NONCE, nonce, BF_PROTO_NONCE_SIZE);

    if (ret < 0) {
        g_set_error(errp, BF_ERROR, BF_ERROR_INVALID, "cannot draw a random nonce: %s",
                    gnutls_strerror(ret));
        return FALSE;
    }
    return TRUE;
}

void bf_auth_proof(const BfKey *key, BfAuthSide side,
                   const uint8_t client_nonce[BF_PROTO_NONCE_SIZE],
                   const uint8_t node_nonce[BF_PROTO_NONCE_SIZE],
                   uint8_t proof[BF_PROTO_PROOF_SIZE])
{
    uint8_t text[sizeof(bf_auth_labels[0]) + 2 * BF_PROTO_NONCE_SIZE + BF_PROTO_MAX_NAME];
    size_t name_len = strlen(key->name), len = 0;
    int ret;

    memcpy(text, bf_auth_labels[side], sizeof(bf_auth_labels[side]));
    len += sizeof(bf_auth_labels[side]);
    memcpy(text + len, client_nonce, BF_PROTO_NONCE_SIZE);
    len += BF_PROTO_NONCE_SIZE;
    memcpy(text + len, node_nonce, BF_PROTO_NONCE_SIZE);
    len += BF_PROTO_NONCE_SIZE;
    memcpy(text + len, key->name, name_len);
    len += name_len;
    ret = gnutls_hmac_fast(GNUTLS_MAC_SHA256, key->secret, key->len, text, len, proof);
    g_assert(ret == 0);    /* SHA-256 HMAC is always there; it fails only without memory */
}

gboolean bf_auth_proof_equal(const uint8_t a[BF_PROTO_PROOF_SIZE],
                             const uint8_t b[BF_PROTO_PROOF_SIZE])
{
    return gnutls_memcmp(a, b, BF_PROTO_PROOF_SIZE) == 0;
}

void bf_auth_session_in_key(const char *key_name, uint8_t session[BF_PROTO_SESSION_SIZE])
{
    uint8_t text[BF_PROTO_MAX_NAME + 1 + BF_PROTO_SESSION_SIZE];
    uint8_t digest[32];
    size_t name_len = strnlen(key_name, BF_PROTO_MAX_NAME);
    int ret;

    memcpy(text, key_name, name_len);
    text[name_len] = '\0';
    memcpy(text + name_len + 1, session, BF_PROTO_SESSION_SIZE);
    ret = gnutls_hash_fast(GNUTLS_DIG_SHA256, text, name_len + 1 + BF_PROTO_SESSION_SIZE,
                           digest);
    g_assert(ret == 0);
    memcpy(session, digest, BF_PROTO_SESSION_SIZE);
}

gboolean bf_auth_client(const BfKey *key, BfAuthCall call, gpointer channel, gint64 deadline,
                        GError **errp)
{
    uint8_t msg[BF_AUTH_MAX_PAYLOAD];
    uint8_t reply[BF_PROTO_NONCE_SIZE + BF_PROTO_PROOF_SIZE];
    uint8_t node_nonce[BF_PROTO_NONCE_SIZE], node_proof[BF_PROTO_PROOF_SIZE];
    uint8_t expected[BF_PROTO_PROOF_SIZE], proof[BF_PROTO_PROOF_SIZE];
    BfAuthHello auth = { 0 };
    uint32_t length;

    g_strlcpy(auth.key_name, key->name, sizeof(auth.key_name));
    if (!bf_auth_nonce(auth.nonce, errp) ||
        !call(channel, BF_MSG_AUTH, msg, bf_proto_put_auth(msg, &auth), BF_MSG_AUTH_CHALLENGE,
              reply, sizeof(reply), &length, deadline, errp) ||
        !bf_proto_parse_challenge(reply, length, node_nonce, node_proof, errp)) {
        return FALSE;
    }
    bf_auth_proof(key, BF_AUTH_BY_NODE, auth.nonce, node_nonce, expected);
    if (!bf_auth_proof_equal(node_proof, expected)) {
        g_set_error(errp, BF_ERROR, BF_ERROR_POOL,
                    "the memory node did not prove it holds key '%s': its key differs, or "
                    "it has no key of that name", key->name);
        return FALSE;
    }
    bf_auth_proof(key, BF_AUTH_BY_CLIENT, auth.nonce, node_nonce, proof);
    return call(channel, BF_MSG_AUTH_PROOF, proof, sizeof(proof), BF_MSG_AUTH_OK, reply,
                sizeof(reply), &length, deadline, errp);
}
