/*
 * bf-auth: proving to a memory node, and the node proving back, that both hold the same key,
 * without sending it (the AUTH messages of bf-proto.h). Each side sends a fresh random nonce;
 * a proof is HMAC-SHA256(key, label | client nonce | node nonce | key name), with a label per
 * side, so a proof is good for one connection and one direction only. Sessions of a key are
 * its own: the node files them under bf_auth_session_in_key(), which no other key reaches.
 * The cryptography is GnuTLS's.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_AUTH_H
#define BF_AUTH_H

#include "bf-proto.h"

#include <glib.h>
#include <stdint.h>

/* 128 bits at least; a 32-byte key from /dev/urandom, base64-encoded, is the documented form. */
#define BF_AUTH_MIN_KEY 16
#define BF_AUTH_MAX_KEY 1024
/* The largest payload of the AUTH messages: an AUTH with the longest key name. */
#define BF_AUTH_MAX_PAYLOAD (BF_PROTO_NONCE_SIZE + 4 + BF_PROTO_MAX_NAME)

typedef struct BfKey {
    char name[BF_PROTO_MAX_NAME + 1];
    uint8_t *secret;
    size_t len;
} BfKey;

/* 1 .. BF_PROTO_MAX_NAME of letters, digits, '-', '_' and '.'. */
gboolean bf_key_name_valid(const char *name);

/*
 * A key named @name (1 .. BF_PROTO_MAX_NAME of letters, digits, '-', '_' and '.') holding
 * @len bytes of @secret (BF_AUTH_MIN_KEY .. BF_AUTH_MAX_KEY).
 */
BfKey *bf_key_new(const char *name, const void *secret, size_t len, GError **errp);
void bf_key_free(BfKey *key);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(BfKey, bf_key_free)

gboolean bf_auth_nonce(uint8_t nonce[BF_PROTO_NONCE_SIZE], GError **errp);

typedef enum {
    BF_AUTH_BY_CLIENT,
    BF_AUTH_BY_NODE,
} BfAuthSide;

void bf_auth_proof(const BfKey *key, BfAuthSide side,
                   const uint8_t client_nonce[BF_PROTO_NONCE_SIZE],
                   const uint8_t node_nonce[BF_PROTO_NONCE_SIZE],
                   uint8_t proof[BF_PROTO_PROOF_SIZE]);

/* Compares in constant time. */
gboolean bf_auth_proof_equal(const uint8_t a[BF_PROTO_PROOF_SIZE],
                             const uint8_t b[BF_PROTO_PROOF_SIZE]);

/*
 * Sends a message of @type with @payload to the node, and gives back the payload of its reply
 * of type @reply (at most @size bytes) in @out, its length in *out_length, by @deadline.
 * FALSE, with @errp set, on a refusal (an ERROR) or a failure.
 */
typedef gboolean (*BfAuthCall)(gpointer channel, BfMsgType type, const uint8_t *payload,
                               uint32_t length, BfMsgType reply, uint8_t *out, uint32_t size,
                               uint32_t *out_length, gint64 deadline, GError **errp);

/*
 * The client's side of the AUTH exchange over any transport, through @call on @channel: the
 * node proves @key first.
 */
gboolean bf_auth_client(const BfKey *key, BfAuthCall call, gpointer channel, gint64 deadline,
                        GError **errp);

/* Replaces @session (a client's session id) by the id the node files it under for @key. */
void bf_auth_session_in_key(const char *key_name, uint8_t session[BF_PROTO_SESSION_SIZE]);

#endif
