/*
 * bf-proto: the wire protocol between the engine and the memory node (blowfish-memnode),
 * version 1. Every message is a 16-byte header and a payload; integers are little-endian.
 *
 *   header:    magic u32 ("BFSH") | version u16 | type u16 | length u32 | tag u32
 *
 * The client sends requests, the node answers each one in order, echoing its tag:
 *
 *   HELLO      session[16] | pages u64 | page_size u32 | name_len u16 | 0 u16 | name
 *   HELLO_OK   stored u64 (pages the node holds for this session) | free u64 (node pages free)
 *   WRITE      count u32 | 0 u32 | page u64 [count] | data [count][4096]
 *   READ       count u32 | 0 u32 | page u64 [count]
 *   FREE       count u32 | 0 u32 | page u64 [count]
 *   WRITE_OK, FREE_OK   count u32 | 0 u32
 *   READ_OK    count u32 | 0 u32 | data [count][4096]
 *   BYE        (empty: drop the session's pages)     BYE_OK (empty)
 *   STATS      (empty)
 *   STATS_OK   session u64 (pages held for the session) | stored u64 | capacity u64 (node)
 *   ERROR      code u32 | message_len u16 | 0 u16 | message
 *
 * A node with keys (blowfish-memnode --keys) first wants proof that the client holds one
 * (bf-auth.h): a challenge-response with nonces from both sides, each side proving the key
 * with an HMAC-SHA256 over both nonces, so neither proof can be replayed:
 *
 *   AUTH           nonce[32] | name_len u16 | 0 u16 | name  (the client's nonce, the key's name)
 *   AUTH_CHALLENGE nonce[32] | proof[32]    (the node's nonce, the node's proof of the key)
 *   AUTH_PROOF     proof[32]                (the client's proof)
 *   AUTH_OK        (empty)
 *
 * On the RDMA transport page data never travels in messages: the node lends the client
 * extents (BF_PROTO_EXTENT_PAGES pages of a session, each registered memory of its own) and
 * the client moves pages with one-sided RDMA READ and WRITE. Its messages are then:
 *
 *   GRANT      extent u64 | create u32 | 0 u32     (create 0: only if it exists)
 *   GRANT_OK   extent u64 | addr u64 | rkey u32 | 0 u32   (page p at addr + (p % 512) * 4096;
 *                                                       the rkey is this connection's)
 *   COMMIT     count u32 | 0 u32 | page u64 [count]  (written by RDMA, now stored)
 *   COMMIT_OK  count u32 | 0 u32
 *   RELEASE    count u32 | 0 u32 | extent u64 [count]  (give back those holding no page)
 *   RELEASE_OK count u32 | 0 u32 | extent u64 [count]  (the ones given back)
 * and AUTH, HELLO, FREE, STATS and BYE as above; WRITE and READ are refused.
 *
 * A session is a guest RAM region: it names its pages 0 .. pages-1. A page-list message
 * carries 1 .. BF_PROTO_MAX_PAGES pages. Parsers check every length, count and page number.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_PROTO_H
#define BF_PROTO_H

#include <glib.h>
#include <stdint.h>
#include <string.h>

#define BF_PROTO_MAGIC 0x48534642u      /* "BFSH" read as a little-endian u32 */
#define BF_PROTO_VERSION 1
#define BF_PROTO_PAGE_SIZE 4096u
#define BF_PROTO_HEADER_SIZE 16u
#define BF_PROTO_MAX_PAGES 256u
#define BF_PROTO_SESSION_SIZE 16u
#define BF_PROTO_MAX_NAME 64u
#define BF_PROTO_MAX_MESSAGE 256u
#define BF_PROTO_EXTENT_PAGES 512u
/*
 * The largest session: 16 TiB of guest RAM. It bounds what a HELLO makes the node set up (a
 * page table directory of 8 bytes per 4 MiB: 32 MiB at most).
 */
#define BF_PROTO_MAX_SESSION_PAGES (UINT64_C(1) << 32)
#define BF_PROTO_NONCE_SIZE 32u
#define BF_PROTO_PROOF_SIZE 32u
/* The largest payload: a full WRITE. */
#define BF_PROTO_MAX_PAYLOAD (8u + BF_PROTO_MAX_PAGES * (8u + BF_PROTO_PAGE_SIZE))

typedef enum {
    BF_MSG_HELLO = 1,
    BF_MSG_HELLO_OK,
    BF_MSG_WRITE,
    BF_MSG_WRITE_OK,
    BF_MSG_READ,
    BF_MSG_READ_OK,
    BF_MSG_FREE,
    BF_MSG_FREE_OK,
    BF_MSG_BYE,
    BF_MSG_BYE_OK,
    BF_MSG_ERROR,
    BF_MSG_STATS,
    BF_MSG_STATS_OK,
    BF_MSG_GRANT,
    BF_MSG_GRANT_OK,
    BF_MSG_COMMIT,
    BF_MSG_COMMIT_OK,
    BF_MSG_RELEASE,
    BF_MSG_RELEASE_OK,
    BF_MSG_AUTH,
    BF_MSG_AUTH_CHALLENGE,
    BF_MSG_AUTH_PROOF,
    BF_MSG_AUTH_OK,
    BF_MSG_TYPE_MAX,
} BfMsgType;

/* Error codes carried by ERROR. */
typedef enum {
    BF_PROTO_ERR_PROTOCOL = 1,  /* malformed or unexpected message: the node disconnects */
    BF_PROTO_ERR_NO_SESSION,    /* a request before HELLO, or after the session's BYE */
    BF_PROTO_ERR_NO_SPACE,      /* the node is full: nothing of this request was stored */
    BF_PROTO_ERR_NOT_STORED,    /* READ of a page the node does not hold */
    BF_PROTO_ERR_AUTH,          /* no or failed authentication: the node disconnects */
    BF_PROTO_ERR_QUOTA,         /* the client's key is at its quota: nothing was stored */
    BF_PROTO_ERR_BUSY,          /* too many clients are authenticating: retry later */
} BfProtoError;

/* What a node says when it turns a client away with BF_PROTO_ERR_BUSY. */
#define BF_PROTO_BUSY_MESSAGE \
    "the memory node is busy authenticating other clients: try again later"

typedef struct {
    BfMsgType type;
    uint32_t length;
    uint32_t tag;
} BfMsgHeader;

typedef struct {
    uint8_t session[BF_PROTO_SESSION_SIZE];
    uint64_t pages;
    char name[BF_PROTO_MAX_NAME + 1];
} BfHello;

/* A page-list message's pages; @data is the WRITE payload's pages, else NULL. */
typedef struct {
    uint32_t count;
    const uint8_t *page_numbers;    /* count little-endian u64s, unaligned */
    const uint8_t *data;
} BfPageList;

const char *bf_msg_type_name(BfMsgType type);

/* Sets a BF_ERROR_PROTOCOL error, "protocol error: " and the message; returns FALSE. */
gboolean bf_proto_fail(GError **errp, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

void bf_proto_put_header(uint8_t out[BF_PROTO_HEADER_SIZE], BfMsgType type,
                         uint32_t length, uint32_t tag);
/* Checks magic, version, type and that the length is within the type's bounds. */
gboolean bf_proto_parse_header(const uint8_t in[BF_PROTO_HEADER_SIZE], BfMsgHeader *header,
                               GError **errp);

/* Payload builders: write into @out (large enough), return the payload length. */
uint32_t bf_proto_put_hello(uint8_t *out, const BfHello *hello);
uint32_t bf_proto_put_count(uint8_t *out, uint32_t count);     /* count | 0 */
uint32_t bf_proto_put_u64s(uint8_t *out, const uint64_t *values, uint32_t count);
uint32_t bf_proto_put_error(uint8_t *out, BfProtoError code, const char *message);

typedef struct {
    uint64_t session_pages;     /* held for this session */
    uint64_t stored_pages;      /* held for all sessions */
    uint64_t capacity_pages;
} BfPoolStats;

uint32_t bf_proto_put_stats(uint8_t *out, const BfPoolStats *stats);

/* An extent as the node lends it: page p of the session is at addr + (p % 512) * 4096. */
typedef struct {
    uint64_t extent;
    uint64_t addr;
    uint32_t rkey;
} BfGrant;

uint32_t bf_proto_put_grant(uint8_t *out, uint64_t extent, gboolean create);
uint32_t bf_proto_put_grant_ok(uint8_t *out, const BfGrant *grant);

static inline uint64_t bf_proto_extents(uint64_t pages)
{
    return (pages + BF_PROTO_EXTENT_PAGES - 1) / BF_PROTO_EXTENT_PAGES;
}

/* AUTH: the client's nonce and the key's name (1 .. BF_PROTO_MAX_NAME bytes of text). */
typedef struct {
    uint8_t nonce[BF_PROTO_NONCE_SIZE];
    char key_name[BF_PROTO_MAX_NAME + 1];
} BfAuthHello;

uint32_t bf_proto_put_auth(uint8_t *out, const BfAuthHello *auth);
/* AUTH_CHALLENGE is a nonce and a proof; AUTH_PROOF a proof. */
uint32_t bf_proto_put_challenge(uint8_t *out, const uint8_t nonce[BF_PROTO_NONCE_SIZE],
                                const uint8_t proof[BF_PROTO_PROOF_SIZE]);

/* Payload parsers: check the exact length and every field. */
gboolean bf_proto_parse_auth(const uint8_t *payload, uint32_t length, BfAuthHello *auth,
                             GError **errp);
gboolean bf_proto_parse_challenge(const uint8_t *payload, uint32_t length,
                                  uint8_t nonce[BF_PROTO_NONCE_SIZE],
                                  uint8_t proof[BF_PROTO_PROOF_SIZE], GError **errp);
gboolean bf_proto_parse_hello(const uint8_t *payload, uint32_t length, BfHello *hello,
                              GError **errp);
gboolean bf_proto_parse_hello_ok(const uint8_t *payload, uint32_t length, uint64_t *stored,
                                 uint64_t *free_pages, GError **errp);
/* GRANT of an extent below @extents. */
gboolean bf_proto_parse_grant(const uint8_t *payload, uint32_t length, uint64_t extents,
                              uint64_t *extent, gboolean *create, GError **errp);
gboolean bf_proto_parse_grant_ok(const uint8_t *payload, uint32_t length, BfGrant *grant,
                                 GError **errp);
/*
 * WRITE, READ, FREE and COMMIT: 1 .. BF_PROTO_MAX_PAGES pages, each below @pages.
 * RELEASE and RELEASE_OK: extents, each below @pages (pass the session's extents); a
 * RELEASE_OK may list none.
 */
gboolean bf_proto_parse_page_list(BfMsgType type, const uint8_t *payload, uint32_t length,
                                  uint64_t pages, BfPageList *list, GError **errp);
/* WRITE_OK, FREE_OK and READ_OK's count, which must be @expected. */
gboolean bf_proto_parse_count(const uint8_t *payload, uint32_t length, uint32_t expected,
                              GError **errp);
gboolean bf_proto_parse_stats(const uint8_t *payload, uint32_t length, BfPoolStats *stats,
                              GError **errp);
gboolean bf_proto_parse_error(const uint8_t *payload, uint32_t length, BfProtoError *code,
                              char **message, GError **errp);

static inline uint64_t bf_proto_page_number(const BfPageList *list, uint32_t i)
{
    uint64_t le;

    memcpy(&le, list->page_numbers + 8 * i, 8);
    return GUINT64_FROM_LE(le);
}

/* The payload length of a page-list message (WRITE includes its data). */
uint32_t bf_proto_page_list_length(BfMsgType type, uint32_t count);

#endif
