/*
 * libFuzzer target: what a client accepts from a memory node (backend/bf-proto.c's reply
 * parsers, as bf-channel-tcp.c and bf-channel-rdma.c call them). The input is a header and a
 * payload; every parser a reply of that type meets runs on it, and a parser that accepts must
 * have checked everything it returns.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-proto.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *payload = data + BF_PROTO_HEADER_SIZE;
    BfMsgHeader h;
    uint32_t length;
    uint64_t a, b;
    uint8_t nonce[BF_PROTO_NONCE_SIZE], proof[BF_PROTO_PROOF_SIZE];
    BfPoolStats stats;
    BfGrant grant;
    BfPageList list;
    BfProtoError code;
    char *message = NULL;

    if (size < BF_PROTO_HEADER_SIZE || !bf_proto_parse_header(data, &h, NULL)) {
        return 0;
    }
    /* The header bounds the payload's length; the input may hold less: use what is there. */
    length = MIN(h.length, size - BF_PROTO_HEADER_SIZE);
    switch (h.type) {
    case BF_MSG_HELLO_OK:
        bf_proto_parse_hello_ok(payload, length, &a, &b, NULL);
        break;
    case BF_MSG_WRITE_OK:
    case BF_MSG_FREE_OK:
    case BF_MSG_COMMIT_OK:
        bf_proto_parse_count(payload, length, 1, NULL);
        break;
    case BF_MSG_READ_OK:
        if (length >= 8) {
            bf_proto_parse_count(payload, 8, payload[0], NULL);
        }
        break;
    case BF_MSG_STATS_OK:
        bf_proto_parse_stats(payload, length, &stats, NULL);
        break;
    case BF_MSG_GRANT_OK:
        bf_proto_parse_grant_ok(payload, length, &grant, NULL);
        break;
    case BF_MSG_RELEASE_OK:
        if (bf_proto_parse_page_list(h.type, payload, length, 1024, &list, NULL)) {
            for (uint32_t i = 0; i < list.count; i++) {
                g_assert(bf_proto_page_number(&list, i) < 1024);
            }
        }
        break;
    case BF_MSG_AUTH_CHALLENGE:
        bf_proto_parse_challenge(payload, length, nonce, proof, NULL);
        break;
    case BF_MSG_ERROR:
        if (bf_proto_parse_error(payload, length, &code, &message, NULL)) {
            g_assert(g_utf8_validate(message, -1, NULL));
            g_free(message);
        }
        break;
    default:
        break;
    }
    return 0;
}
