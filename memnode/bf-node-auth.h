/*
 * bf-node-auth: the memory node's side of the AUTH exchange (bf-auth.h) for one connection,
 * on either transport: the challenge to the key a client names, and the check of its proof.
 * For a key name the node does not know it answers with a random stand-in key, so that
 * neither its answers nor their timing tell which names exist.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_NODE_AUTH_H
#define BF_NODE_AUTH_H

#include "bf-keyring.h"

/* Before a client has proven a key, the node reads at most this much payload. */
#define BF_NODE_AUTH_PAYLOAD BF_AUTH_MAX_PAYLOAD
/* ... and gives it this long, in all, to prove one. */
#define BF_NODE_AUTH_TIMEOUT_US (10 * G_USEC_PER_SEC)

typedef struct BfNodeAuth {
    const BfKeyring *keys;                  /* NULL: the node takes no keys */
    const char *peer;                       /* names the client in log messages */
    const BfKey *key;                       /* proven, or NULL */
    gboolean challenged;
    const BfKey *asked;                     /* the key AUTH named, NULL if unknown */
    BfKey *decoy;                           /* stands in for an unknown key's proof */
    char asked_name[BF_PROTO_MAX_NAME + 1];
    uint8_t client_nonce[BF_PROTO_NONCE_SIZE];
    uint8_t node_nonce[BF_PROTO_NONCE_SIZE];
} BfNodeAuth;

/* The reply to a message refused before the client proved a key. */
#define BF_NODE_AUTH_NEEDED "this memory node takes only clients with a key: give the " \
    "backend one (secret=)"

void bf_node_auth_init(BfNodeAuth *auth, const BfKeyring *keys, const char *peer);
void bf_node_auth_clear(BfNodeAuth *auth);

/* Whether the client may go past authentication: proven, or the node takes no keys. */
static inline gboolean bf_node_auth_trusted(const BfNodeAuth *auth)
{
    return !auth->keys || auth->key;
}

/*
 * AUTH (@payload, @length bytes): TRUE with the AUTH_CHALLENGE payload in @challenge.
 * FALSE: a refusal (*refusal, to send as an ERROR of code BF_PROTO_ERR_AUTH before closing),
 * or a protocol error (@errp). Either way the connection ends.
 */
gboolean bf_node_auth_challenge(BfNodeAuth *auth, const uint8_t *payload, uint32_t length,
                                uint8_t challenge[BF_PROTO_NONCE_SIZE + BF_PROTO_PROOF_SIZE],
                                const char **refusal, GError **errp);
/* Logs that the client's BF_NODE_AUTH_TIMEOUT_US ran out before it proved a key. */
void bf_node_auth_log_timeout(const BfNodeAuth *auth);
/* AUTH_PROOF: TRUE if the proof holds (answer AUTH_OK); FALSE as above. */
gboolean bf_node_auth_check(BfNodeAuth *auth, const uint8_t proof[BF_PROTO_PROOF_SIZE],
                            const char **refusal, GError **errp);

#endif
