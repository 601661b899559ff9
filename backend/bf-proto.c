/*
 * bf-proto: building and checking the messages of the engine <-> memory node protocol.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-proto.h"
#include "bf-error.h"

static const char *const bf_msg_type_names[BF_MSG_TYPE_MAX] = {
    [BF_MSG_HELLO] = "HELLO",
    [BF_MSG_HELLO_OK] = "HELLO_OK",
    [BF_MSG_WRITE] = "WRITE",
    [BF_MSG_WRITE_OK] = "WRITE_OK",
    [BF_MSG_READ] = "READ",
    [BF_MSG_READ_OK] = "READ_OK",
    [BF_MSG_FREE] = "FREE",
    [BF_MSG_FREE_OK] = "FREE_OK",
    [BF_MSG_BYE] = "BYE",
    [BF_MSG_BYE_OK] = "BYE_OK",
    [BF_MSG_ERROR] = "ERROR",
    [BF_MSG_STATS] = "STATS",
    [BF_MSG_STATS_OK] = "STATS_OK",
    [BF_MSG_GRANT] = "GRANT",
    [BF_MSG_GRANT_OK] = "GRANT_OK",
    [BF_MSG_COMMIT] = "COMMIT",
    [BF_MSG_COMMIT_OK] = "COMMIT_OK",
    [BF_MSG_RELEASE] = "RELEASE",
    [BF_MSG_RELEASE_OK] = "RELEASE_OK",
    [BF_MSG_AUTH] = "AUTH",
    [BF_MSG_AUTH_CHALLENGE] = "AUTH_CHALLENGE",
    [BF_MSG_AUTH_PROOF] = "AUTH_PROOF",
    [BF_MSG_AUTH_OK] = "AUTH_OK",
};

#define BF_HELLO_FIXED (BF_PROTO_SESSION_SIZE + 8 + 4 + 2 + 2)
#define BF_AUTH_FIXED (BF_PROTO_NONCE_SIZE + 2 + 2)

/* The payload length bounds of each type. */
static const struct {
    uint32_t min, max;
} bf_msg_lengths[BF_MSG_TYPE_MAX] = {
    [BF_MSG_HELLO] = { BF_HELLO_FIXED, BF_HELLO_FIXED + BF_PROTO_MAX_NAME },
    [BF_MSG_HELLO_OK] = { 16, 16 },
    [BF_MSG_WRITE] = { 8 + 8 + BF_PROTO_PAGE_SIZE, BF_PROTO_MAX_PAYLOAD },
    [BF_MSG_WRITE_OK] = { 8, 8 },
    [BF_MSG_READ] = { 8 + 8, 8 + 8 * BF_PROTO_MAX_PAGES },
    [BF_MSG_READ_OK] = { 8 + BF_PROTO_PAGE_SIZE, 8 + BF_PROTO_MAX_PAGES * BF_PROTO_PAGE_SIZE },
    [BF_MSG_FREE] = { 8 + 8, 8 + 8 * BF_PROTO_MAX_PAGES },
    [BF_MSG_FREE_OK] = { 8, 8 },
    [BF_MSG_BYE] = { 0, 0 },
    [BF_MSG_BYE_OK] = { 0, 0 },
    [BF_MSG_ERROR] = { 8, 8 + BF_PROTO_MAX_MESSAGE },
    [BF_MSG_STATS] = { 0, 0 },
    [BF_MSG_STATS_OK] = { 24, 24 },
    [BF_MSG_GRANT] = { 16, 16 },
    [BF_MSG_GRANT_OK] = { 24, 24 },
    [BF_MSG_COMMIT] = { 8 + 8, 8 + 8 * BF_PROTO_MAX_PAGES },
    [BF_MSG_COMMIT_OK] = { 8, 8 },
    [BF_MSG_RELEASE] = { 8 + 8, 8 + 8 * BF_PROTO_MAX_PAGES },
    [BF_MSG_RELEASE_OK] = { 8, 8 + 8 * BF_PROTO_MAX_PAGES },
    [BF_MSG_AUTH] = { BF_AUTH_FIXED + 1, BF_AUTH_FIXED + BF_PROTO_MAX_NAME },
    [BF_MSG_AUTH_CHALLENGE] = { BF_PROTO_NONCE_SIZE + BF_PROTO_PROOF_SIZE,
                                BF_PROTO_NONCE_SIZE + BF_PROTO_PROOF_SIZE },
    [BF_MSG_AUTH_PROOF] = { BF_PROTO_PROOF_SIZE, BF_PROTO_PROOF_SIZE },
    [BF_MSG_AUTH_OK] = { 0, 0 },
};

gboolean bf_proto_fail(GError **errp, const char *fmt, ...)
{
    va_list ap;
    char *msg;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(errp, BF_ERROR, BF_ERROR_PROTOCOL, "protocol error: %s", msg);
    g_free(msg);
    return FALSE;
}

static void bf_put_u16(uint8_t *p, uint16_t v)
{
    v = GUINT16_TO_LE(v);
    memcpy(p, &v, 2);
}

static void bf_put_u32(uint8_t *p, uint32_t v)
{
    v = GUINT32_TO_LE(v);
    memcpy(p, &v, 4);
}

static void bf_put_u64(uint8_t *p, uint64_t v)
{
    v = GUINT64_TO_LE(v);
    memcpy(p, &v, 8);
}

static uint16_t bf_get_u16(const uint8_t *p)
{
    uint16_t v;

    memcpy(&v, p, 2);
    return GUINT16_FROM_LE(v);
}

static uint32_t bf_get_u32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, 4);
    return GUINT32_FROM_LE(v);
}

static uint64_t bf_get_u64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, 8);
    return GUINT64_FROM_LE(v);
}

const char *bf_msg_type_name(BfMsgType type)
{
    return type > 0 && type < BF_MSG_TYPE_MAX ? bf_msg_type_names[type] : "unknown";
}

void bf_proto_put_header(uint8_t out[BF_PROTO_HEADER_SIZE], BfMsgType type,
                         uint32_t length, uint32_t tag)
{
    bf_put_u32(out, BF_PROTO_MAGIC);
    bf_put_u16(out + 4, BF_PROTO_VERSION);
    bf_put_u16(out + 6, type);
    bf_put_u32(out + 8, length);
    bf_put_u32(out + 12, tag);
}

gboolean bf_proto_parse_header(const uint8_t in[BF_PROTO_HEADER_SIZE], BfMsgHeader *header,
                               GError **errp)
{
    uint16_t version = bf_get_u16(in + 4), type = bf_get_u16(in + 6);
    uint32_t length = bf_get_u32(in + 8);

    if (bf_get_u32(in) != BF_PROTO_MAGIC) {
        return bf_proto_fail(errp, "bad magic 0x%08x (not a Blowfish memory node?)",
                             bf_get_u32(in));
    }
    if (version != BF_PROTO_VERSION) {
        return bf_proto_fail(errp, "version %u, this side speaks version %u", version,
                             BF_PROTO_VERSION);
    }
    if (type == 0 || type >= BF_MSG_TYPE_MAX) {
        return bf_proto_fail(errp, "unknown message type %u", type);
    }
    if (length < bf_msg_lengths[type].min || length > bf_msg_lengths[type].max) {
        return bf_proto_fail(errp, "%s of %u bytes (must be %u to %u)",
                             bf_msg_type_names[type], length, bf_msg_lengths[type].min,
                             bf_msg_lengths[type].max);
    }
    header->type = type;
    header->length = length;
    header->tag = bf_get_u32(in + 12);
    return TRUE;
}

uint32_t bf_proto_put_hello(uint8_t *out, const BfHello *hello)
{
    size_t name_len = strnlen(hello->name, BF_PROTO_MAX_NAME);

    memcpy(out, hello->session, BF_PROTO_SESSION_SIZE);
    bf_put_u64(out + 16, hello->pages);
    bf_put_u32(out + 24, BF_PROTO_PAGE_SIZE);
    bf_put_u16(out + 28, name_len);
    bf_put_u16(out + 30, 0);
    memcpy(out + BF_HELLO_FIXED, hello->name, name_len);
    return BF_HELLO_FIXED + name_len;
}

uint32_t bf_proto_put_count(uint8_t *out, uint32_t count)
{
    bf_put_u32(out, count);
    bf_put_u32(out + 4, 0);
    return 8;
}

uint32_t bf_proto_put_u64s(uint8_t *out, const uint64_t *values, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        bf_put_u64(out + 8 * i, values[i]);
    }
    return 8 * count;
}

uint32_t bf_proto_put_error(uint8_t *out, BfProtoError code, const char *message)
{
    size_t len = strnlen(message, BF_PROTO_MAX_MESSAGE);

    bf_put_u32(out, code);
    bf_put_u16(out + 4, len);
    bf_put_u16(out + 6, 0);
    memcpy(out + 8, message, len);
    return 8 + len;
}

uint32_t bf_proto_put_auth(uint8_t *out, const BfAuthHello *auth)
{
    size_t name_len = strnlen(auth->key_name, BF_PROTO_MAX_NAME);

    memcpy(out, auth->nonce, BF_PROTO_NONCE_SIZE);
    bf_put_u16(out + BF_PROTO_NONCE_SIZE, name_len);
    bf_put_u16(out + BF_PROTO_NONCE_SIZE + 2, 0);
    memcpy(out + BF_AUTH_FIXED, auth->key_name, name_len);
    return BF_AUTH_FIXED + name_len;
}

uint32_t bf_proto_put_challenge(uint8_t *out, const uint8_t nonce[BF_PROTO_NONCE_SIZE],
                                const uint8_t proof[BF_PROTO_PROOF_SIZE])
{
    memcpy(out, nonce, BF_PROTO_NONCE_SIZE);
    memcpy(out + BF_PROTO_NONCE_SIZE, proof, BF_PROTO_PROOF_SIZE);
    return BF_PROTO_NONCE_SIZE + BF_PROTO_PROOF_SIZE;
}

gboolean bf_proto_parse_auth(const uint8_t *payload, uint32_t length, BfAuthHello *auth,
                             GError **errp)
{
    uint16_t name_len;

    if (length < BF_AUTH_FIXED) {
        return bf_proto_fail(errp, "AUTH too short");
    }
    name_len = bf_get_u16(payload + BF_PROTO_NONCE_SIZE);
    if (name_len == 0 || name_len > BF_PROTO_MAX_NAME || length != BF_AUTH_FIXED + name_len) {
        return bf_proto_fail(errp, "AUTH key name of %u bytes in a %u-byte payload", name_len,
                             length);
    }
    memcpy(auth->nonce, payload, BF_PROTO_NONCE_SIZE);
    memcpy(auth->key_name, payload + BF_AUTH_FIXED, name_len);
    auth->key_name[name_len] = '\0';
    if (strlen(auth->key_name) != name_len || !g_utf8_validate(auth->key_name, -1, NULL)) {
        return bf_proto_fail(errp, "AUTH key name is not text");
    }
    return TRUE;
}

gboolean bf_proto_parse_challenge(const uint8_t *payload, uint32_t length,
                                  uint8_t nonce[BF_PROTO_NONCE_SIZE],
                                  uint8_t proof[BF_PROTO_PROOF_SIZE], GError **errp)
{
    if (length != BF_PROTO_NONCE_SIZE + BF_PROTO_PROOF_SIZE) {
        return bf_proto_fail(errp, "AUTH_CHALLENGE of %u bytes", length);
    }
    memcpy(nonce, payload, BF_PROTO_NONCE_SIZE);
    memcpy(proof, payload + BF_PROTO_NONCE_SIZE, BF_PROTO_PROOF_SIZE);
    return TRUE;
}

gboolean bf_proto_parse_hello(const uint8_t *payload, uint32_t length, BfHello *hello,
                              GError **errp)
{
    uint32_t page_size;
    uint16_t name_len;

    if (length < BF_HELLO_FIXED) {
        return bf_proto_fail(errp, "HELLO too short");
    }
    page_size = bf_get_u32(payload + 24);
    name_len = bf_get_u16(payload + 28);
    if (page_size != BF_PROTO_PAGE_SIZE) {
        return bf_proto_fail(errp, "page size %u (only %u is supported)", page_size,
                             BF_PROTO_PAGE_SIZE);
    }
    if (name_len > BF_PROTO_MAX_NAME || length != BF_HELLO_FIXED + name_len) {
        return bf_proto_fail(errp, "HELLO name of %u bytes in a %u-byte payload", name_len,
                             length);
    }
    memcpy(hello->session, payload, BF_PROTO_SESSION_SIZE);
    hello->pages = bf_get_u64(payload + 16);
    if (hello->pages == 0 || hello->pages > BF_PROTO_MAX_SESSION_PAGES) {
        return bf_proto_fail(errp, "HELLO for %" G_GUINT64_FORMAT " pages",
                             (guint64)hello->pages);
    }
    memcpy(hello->name, payload + BF_HELLO_FIXED, name_len);
    hello->name[name_len] = '\0';
    if (strlen(hello->name) != name_len || !g_utf8_validate(hello->name, -1, NULL)) {
        return bf_proto_fail(errp, "HELLO name is not text");
    }
    return TRUE;
}

gboolean bf_proto_parse_hello_ok(const uint8_t *payload, uint32_t length, uint64_t *stored,
                                 uint64_t *free_pages, GError **errp)
{
    if (length != 16) {
        return bf_proto_fail(errp, "HELLO_OK of %u bytes", length);
    }
    *stored = bf_get_u64(payload);
    *free_pages = bf_get_u64(payload + 8);
    return TRUE;
}

uint32_t bf_proto_page_list_length(BfMsgType type, uint32_t count)
{
    return 8 + count * (type == BF_MSG_WRITE ? 8 + BF_PROTO_PAGE_SIZE : 8);
}

gboolean bf_proto_parse_page_list(BfMsgType type, const uint8_t *payload, uint32_t length,
                                  uint64_t pages, BfPageList *list, GError **errp)
{
    uint32_t count;

    g_assert(type == BF_MSG_WRITE || type == BF_MSG_READ || type == BF_MSG_FREE ||
             type == BF_MSG_COMMIT || type == BF_MSG_RELEASE || type == BF_MSG_RELEASE_OK);
    if (length < 8) {
        return bf_proto_fail(errp, "%s too short", bf_msg_type_names[type]);
    }
    count = bf_get_u32(payload);
    if ((count == 0 && type != BF_MSG_RELEASE_OK) || count > BF_PROTO_MAX_PAGES) {
        return bf_proto_fail(errp, "%s of %u pages (must be 1 to %u)",
                             bf_msg_type_names[type], count, BF_PROTO_MAX_PAGES);
    }
    if (bf_get_u32(payload + 4) != 0) {
        return bf_proto_fail(errp, "%s reserved field is not 0", bf_msg_type_names[type]);
    }
    if (length != bf_proto_page_list_length(type, count)) {
        return bf_proto_fail(errp, "%s of %u pages in %u bytes", bf_msg_type_names[type],
                             count, length);
    }
    list->count = count;
    list->page_numbers = payload + 8;
    list->data = type == BF_MSG_WRITE ? payload + 8 + 8 * count : NULL;
    for (uint32_t i = 0; i < count; i++) {
        uint64_t page = bf_proto_page_number(list, i);

        if (page >= pages) {
            return bf_proto_fail(errp, "%s of page %" G_GUINT64_FORMAT ", beyond the "
                                 "session's %" G_GUINT64_FORMAT " pages",
                                 bf_msg_type_names[type], (guint64)page, (guint64)pages);
        }
    }
    return TRUE;
}

uint32_t bf_proto_put_grant(uint8_t *out, uint64_t extent, gboolean create)
{
    bf_put_u64(out, extent);
    bf_put_u32(out + 8, create ? 1 : 0);
    bf_put_u32(out + 12, 0);
    return 16;
}

uint32_t bf_proto_put_grant_ok(uint8_t *out, const BfGrant *grant)
{
    bf_put_u64(out, grant->extent);
    bf_put_u64(out + 8, grant->addr);
    bf_put_u32(out + 16, grant->rkey);
    bf_put_u32(out + 20, 0);
    return 24;
}

gboolean bf_proto_parse_grant(const uint8_t *payload, uint32_t length, uint64_t extents,
                              uint64_t *extent, gboolean *create, GError **errp)
{
    uint32_t flags;

    if (length != 16) {
        return bf_proto_fail(errp, "GRANT of %u bytes", length);
    }
    *extent = bf_get_u64(payload);
    flags = bf_get_u32(payload + 8);
    if (*extent >= extents) {
        return bf_proto_fail(errp, "GRANT of extent %" G_GUINT64_FORMAT ", beyond the "
                             "session's %" G_GUINT64_FORMAT, (guint64)*extent,
                             (guint64)extents);
    }
    if (flags > 1 || bf_get_u32(payload + 12) != 0) {
        return bf_proto_fail(errp, "GRANT with unknown flags");
    }
    *create = flags == 1;
    return TRUE;
}

gboolean bf_proto_parse_grant_ok(const uint8_t *payload, uint32_t length, BfGrant *grant,
                                 GError **errp)
{
    if (length != 24) {
        return bf_proto_fail(errp, "GRANT_OK of %u bytes", length);
    }
    grant->extent = bf_get_u64(payload);
    grant->addr = bf_get_u64(payload + 8);
    grant->rkey = bf_get_u32(payload + 16);
    if (grant->addr % BF_PROTO_PAGE_SIZE || bf_get_u32(payload + 20) != 0) {
        return bf_proto_fail(errp, "GRANT_OK of a misaligned extent");
    }
    return TRUE;
}

gboolean bf_proto_parse_count(const uint8_t *payload, uint32_t length, uint32_t expected,
                              GError **errp)
{
    uint32_t count;

    if (length < 8) {
        return bf_proto_fail(errp, "reply too short");
    }
    count = bf_get_u32(payload);
    if (count != expected) {
        return bf_proto_fail(errp, "reply for %u pages, expected %u", count, expected);
    }
    return TRUE;
}

uint32_t bf_proto_put_stats(uint8_t *out, const BfPoolStats *stats)
{
    bf_put_u64(out, stats->session_pages);
    bf_put_u64(out + 8, stats->stored_pages);
    bf_put_u64(out + 16, stats->capacity_pages);
    return 24;
}

gboolean bf_proto_parse_stats(const uint8_t *payload, uint32_t length, BfPoolStats *stats,
                              GError **errp)
{
    if (length != 24) {
        return bf_proto_fail(errp, "STATS_OK of %u bytes", length);
    }
    stats->session_pages = bf_get_u64(payload);
    stats->stored_pages = bf_get_u64(payload + 8);
    stats->capacity_pages = bf_get_u64(payload + 16);
    return TRUE;
}

gboolean bf_proto_parse_error(const uint8_t *payload, uint32_t length, BfProtoError *code,
                              char **message, GError **errp)
{
    uint16_t len;

    if (length < 8) {
        return bf_proto_fail(errp, "ERROR too short");
    }
    len = bf_get_u16(payload + 4);
    if (len > BF_PROTO_MAX_MESSAGE || length != 8u + len) {
        return bf_proto_fail(errp, "ERROR message of %u bytes in a %u-byte payload", len,
                             length);
    }
    *code = bf_get_u32(payload);
    *message = g_utf8_make_valid((const char *)payload + 8, len);
    return TRUE;
}
