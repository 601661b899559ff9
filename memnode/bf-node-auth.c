/*
 * bf-node-auth: the node's side of the AUTH exchange, shared by the TCP and RDMA servers.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-node-auth.h"
#include "bf-error.h"

void bf_node_auth_init(BfNodeAuth *auth, const BfKeyring *keys, const char *peer)
{
    *auth = (BfNodeAuth) { .keys = keys, .peer = peer };
}

void bf_node_auth_clear(BfNodeAuth *auth)
{
    g_clear_pointer(&auth->decoy, bf_key_free);
}

gboolean bf_node_auth_challenge(BfNodeAuth *auth, const uint8_t *payload, uint32_t length,
                                uint8_t challenge[BF_PROTO_NONCE_SIZE + BF_PROTO_PROOF_SIZE],
                                const char **refusal, GError **errp)
{
    uint8_t proof[BF_PROTO_PROOF_SIZE];
    BfAuthHello hello;

    *refusal = NULL;
    if (!auth->keys) {
        g_message("%s: refused: it offers a key, this node has none (--keys)", auth->peer);
        *refusal = "this memory node takes no keys (no --keys): remove the backend's key";
        return FALSE;
    }
    if (auth->challenged) {
        return bf_proto_fail(errp, "a second AUTH");
    }
    if (!bf_proto_parse_auth(payload, length, &hello, errp) ||
        !bf_auth_nonce(auth->node_nonce, errp)) {
        return FALSE;
    }
    if (!bf_key_name_valid(hello.key_name)) {
        return bf_proto_fail(errp, "AUTH names no valid key name");
    }
    memcpy(auth->client_nonce, hello.nonce, sizeof(auth->client_nonce));
    g_strlcpy(auth->asked_name, hello.key_name, sizeof(auth->asked_name));
    auth->asked = bf_keyring_lookup(auth->keys, hello.key_name);
    if (!auth->asked) {
        uint8_t secret[32];

        if (!bf_auth_nonce(secret, errp)) {
            return FALSE;
        }
        auth->decoy = bf_key_new(hello.key_name, secret, sizeof(secret), errp);
        if (!auth->decoy) {
            return FALSE;
        }
    }
    bf_auth_proof(auth->asked ? auth->asked : auth->decoy, BF_AUTH_BY_NODE, auth->client_nonce,
                  auth->node_nonce, proof);
    auth->challenged = TRUE;
    bf_proto_put_challenge(challenge, auth->node_nonce, proof);
    return TRUE;
}

gboolean bf_node_auth_check(BfNodeAuth *auth, const uint8_t proof[BF_PROTO_PROOF_SIZE],
                            const char **refusal, GError **errp)
{
    uint8_t expected[BF_PROTO_PROOF_SIZE];

    *refusal = NULL;
    if (!auth->challenged || auth->key) {
        return bf_proto_fail(errp, "AUTH_PROOF %s", auth->key ? "after AUTH_OK" : "before AUTH");
    }
    /* The same work for a name it does not know, so that time does not tell. */
    bf_auth_proof(auth->asked ? auth->asked : auth->decoy, BF_AUTH_BY_CLIENT,
                  auth->client_nonce, auth->node_nonce, expected);
    if (!auth->asked || !bf_auth_proof_equal(proof, expected)) {
        g_message("%s: authentication failed: %s '%s'", auth->peer,
                  auth->asked ? "wrong proof for key" : "no key", auth->asked_name);
        *refusal = "authentication failed";
        return FALSE;
    }
    auth->key = auth->asked;
    g_info("%s: authenticated with key '%s'", auth->peer, auth->key->name);
    return TRUE;
}

void bf_node_auth_log_timeout(const BfNodeAuth *auth)
{
    g_message("%s: refused: no key proven in %d s", auth->peer,
              (int)(BF_NODE_AUTH_TIMEOUT_US / G_USEC_PER_SEC));
}
