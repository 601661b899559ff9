/*
 * Unit tests of bf-proto: every message builds and parses back, and every malformed field is
 * refused with a protocol error.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-error.h"
#include "bf-proto.h"

static void assert_protocol_error(GError *err, const char *needle)
{
    g_assert_error(err, BF_ERROR, BF_ERROR_PROTOCOL);
    if (!strstr(err->message, needle)) {
        g_test_message("expected '%s' in: %s", needle, err->message);
        g_assert_not_reached();
    }
}

static void test_header(void)
{
    uint8_t raw[BF_PROTO_HEADER_SIZE];
    BfMsgHeader h;
    g_autoptr(GError) err = NULL;

    bf_proto_put_header(raw, BF_MSG_READ, 8 + 8 * 3, 0xdeadbeef);
    g_assert_true(bf_proto_parse_header(raw, &h, &err));
    g_assert_cmpint(h.type, ==, BF_MSG_READ);
    g_assert_cmpuint(h.length, ==, 32);
    g_assert_cmphex(h.tag, ==, 0xdeadbeef);
    g_assert_cmpmem(raw, 4, "BFSH", 4);
}

static void test_header_errors(void)
{
    static const struct {
        BfMsgType type;
        uint32_t length;
        int byte;          /* a byte to corrupt, or -1 */
        uint8_t value;
        const char *error;
    } cases[] = {
        { BF_MSG_READ, 16, 0, 'X', "bad magic" },
        { BF_MSG_READ, 16, 4, 2, "version 2" },
        { BF_MSG_READ, 16, 6, 0, "unknown message type 0" },
        { BF_MSG_READ, 16, 6, BF_MSG_TYPE_MAX, "unknown message type" },
        { BF_MSG_READ, 8, -1, 0, "READ of 8 bytes" },
        { BF_MSG_READ, 8 + 8 * 257, -1, 0, "READ of 2064 bytes" },
        { BF_MSG_WRITE, BF_PROTO_MAX_PAYLOAD + 1, -1, 0, "WRITE of" },
        { BF_MSG_BYE, 1, -1, 0, "BYE of 1 bytes" },
        { BF_MSG_HELLO_OK, 15, -1, 0, "HELLO_OK of 15 bytes" },
        { BF_MSG_ERROR, 8 + BF_PROTO_MAX_MESSAGE + 1, -1, 0, "ERROR of" },
        { BF_MSG_READ_OK, 0xffffffff, -1, 0, "READ_OK of 4294967295 bytes" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        uint8_t raw[BF_PROTO_HEADER_SIZE];
        BfMsgHeader h;
        g_autoptr(GError) err = NULL;

        bf_proto_put_header(raw, cases[i].type, cases[i].length, 1);
        if (cases[i].byte >= 0) {
            raw[cases[i].byte] = cases[i].value;
        }
        g_assert_false(bf_proto_parse_header(raw, &h, &err));
        assert_protocol_error(err, cases[i].error);
    }
}

static void test_hello(void)
{
    BfHello in = { .pages = 262144 }, out;
    uint8_t payload[64 + BF_PROTO_MAX_NAME];
    uint32_t len;
    g_autoptr(GError) err = NULL;

    for (unsigned i = 0; i < BF_PROTO_SESSION_SIZE; i++) {
        in.session[i] = i * 17;
    }
    g_strlcpy(in.name, "mem0", sizeof(in.name));
    len = bf_proto_put_hello(payload, &in);
    g_assert_cmpuint(len, ==, 32 + 4);
    g_assert_true(bf_proto_parse_hello(payload, len, &out, &err));
    g_assert_cmpmem(out.session, 16, in.session, 16);
    g_assert_cmpuint(out.pages, ==, 262144);
    g_assert_cmpstr(out.name, ==, "mem0");

    /* Wrong page size, pages 0, a name length that disagrees, a NUL in the name. */
    payload[24] = 0;
    payload[25] = 0x20;
    g_assert_false(bf_proto_parse_hello(payload, len, &out, &err));
    assert_protocol_error(err, "page size 8192");
    g_clear_error(&err);

    len = bf_proto_put_hello(payload, &in);
    g_assert_false(bf_proto_parse_hello(payload, len - 1, &out, &err));
    assert_protocol_error(err, "name of 4 bytes in a 35-byte payload");
    g_clear_error(&err);

    payload[32 + 1] = '\0';
    g_assert_false(bf_proto_parse_hello(payload, len, &out, &err));
    assert_protocol_error(err, "not text");
    g_clear_error(&err);

    in.pages = 0;
    len = bf_proto_put_hello(payload, &in);
    g_assert_false(bf_proto_parse_hello(payload, len, &out, &err));
    assert_protocol_error(err, "HELLO for 0 pages");
    g_clear_error(&err);

    /* More than 16 TiB: the node would set up a page table for all of it (found by fuzzing). */
    in.pages = BF_PROTO_MAX_SESSION_PAGES;
    len = bf_proto_put_hello(payload, &in);
    g_assert_true(bf_proto_parse_hello(payload, len, &out, &err));
    in.pages = BF_PROTO_MAX_SESSION_PAGES + 1;
    len = bf_proto_put_hello(payload, &in);
    g_assert_false(bf_proto_parse_hello(payload, len, &out, &err));
    assert_protocol_error(err, "HELLO for 4294967297 pages");
}

static void test_page_list(void)
{
    const uint64_t pages[3] = { 7, 0, 99 };
    uint8_t payload[8 + 3 * (8 + BF_PROTO_PAGE_SIZE)];
    uint32_t len;
    BfPageList list;
    g_autoptr(GError) err = NULL;

    len = bf_proto_put_count(payload, 3);
    len += bf_proto_put_u64s(payload + len, pages, 3);
    memset(payload + len, 0xab, 3 * BF_PROTO_PAGE_SIZE);
    g_assert_cmpuint(len + 3 * BF_PROTO_PAGE_SIZE, ==,
                     bf_proto_page_list_length(BF_MSG_WRITE, 3));

    g_assert_true(bf_proto_parse_page_list(BF_MSG_READ, payload, len, 100, &list, &err));
    g_assert_cmpuint(list.count, ==, 3);
    g_assert_null(list.data);
    for (unsigned i = 0; i < 3; i++) {
        g_assert_cmpuint(bf_proto_page_number(&list, i), ==, pages[i]);
    }
    g_assert_true(bf_proto_parse_page_list(BF_MSG_WRITE, payload,
                                           len + 3 * BF_PROTO_PAGE_SIZE, 100, &list, &err));
    g_assert_true(list.data == payload + len);

    g_assert_false(bf_proto_parse_page_list(BF_MSG_READ, payload, len, 99, &list, &err));
    assert_protocol_error(err, "page 99, beyond the session's 99 pages");
    g_clear_error(&err);

    g_assert_false(bf_proto_parse_page_list(BF_MSG_FREE, payload, len + 8, 100, &list,
                                            &err));
    assert_protocol_error(err, "FREE of 3 pages in 40 bytes");
    g_clear_error(&err);

    g_assert_false(bf_proto_parse_page_list(BF_MSG_WRITE, payload, len, 100, &list, &err));
    assert_protocol_error(err, "WRITE of 3 pages in 32 bytes");
    g_clear_error(&err);

    bf_proto_put_count(payload, 0);
    g_assert_false(bf_proto_parse_page_list(BF_MSG_READ, payload, 8, 100, &list, &err));
    assert_protocol_error(err, "READ of 0 pages");
    g_clear_error(&err);

    bf_proto_put_count(payload, BF_PROTO_MAX_PAGES + 1);
    g_assert_false(bf_proto_parse_page_list(BF_MSG_READ, payload, len, 100, &list, &err));
    assert_protocol_error(err, "READ of 257 pages");
    g_clear_error(&err);

    bf_proto_put_count(payload, 3);
    payload[4] = 1;
    g_assert_false(bf_proto_parse_page_list(BF_MSG_READ, payload, len, 100, &list, &err));
    assert_protocol_error(err, "reserved field");
}

static void test_replies(void)
{
    uint8_t payload[8 + BF_PROTO_MAX_MESSAGE];
    g_autofree char *message = NULL;
    BfProtoError code;
    uint64_t values[2] = { 5, 6 }, stored, free_pages;
    uint32_t len;
    g_autoptr(GError) err = NULL;

    len = bf_proto_put_count(payload, 4);
    g_assert_true(bf_proto_parse_count(payload, len, 4, &err));
    g_assert_false(bf_proto_parse_count(payload, len, 5, &err));
    assert_protocol_error(err, "reply for 4 pages, expected 5");
    g_clear_error(&err);

    len = bf_proto_put_u64s(payload, values, 2);
    g_assert_true(bf_proto_parse_hello_ok(payload, len, &stored, &free_pages, &err));
    g_assert_cmpuint(stored, ==, 5);
    g_assert_cmpuint(free_pages, ==, 6);

    len = bf_proto_put_error(payload, BF_PROTO_ERR_NO_SPACE, "full");
    g_assert_true(bf_proto_parse_error(payload, len, &code, &message, &err));
    g_assert_cmpint(code, ==, BF_PROTO_ERR_NO_SPACE);
    g_assert_cmpstr(message, ==, "full");
    g_assert_false(bf_proto_parse_error(payload, len + 1, &code, &message, &err));
    assert_protocol_error(err, "ERROR message of 4 bytes in a 13-byte payload");
}

/* The RDMA transport's messages: GRANT, GRANT_OK, COMMIT, RELEASE and RELEASE_OK. */
static void test_rdma_messages(void)
{
    uint8_t payload[8 + 8 * BF_PROTO_MAX_PAGES];
    uint64_t extent, values[3] = { 1, 7, 3 };
    gboolean create;
    BfGrant grant = { .extent = 9, .addr = 0x7f0000201000, .rkey = 0x1234 }, back;
    BfPageList list;
    uint32_t len;
    g_autoptr(GError) err = NULL;

    g_assert_cmpuint(bf_proto_extents(1), ==, 1);
    g_assert_cmpuint(bf_proto_extents(512), ==, 1);
    g_assert_cmpuint(bf_proto_extents(513), ==, 2);

    len = bf_proto_put_grant(payload, 9, TRUE);
    g_assert_true(bf_proto_parse_grant(payload, len, 10, &extent, &create, &err));
    g_assert_cmpuint(extent, ==, 9);
    g_assert_true(create);
    g_assert_false(bf_proto_parse_grant(payload, len, 9, &extent, &create, &err));
    assert_protocol_error(err, "GRANT of extent 9, beyond the session's 9");
    g_clear_error(&err);
    payload[8] = 2;
    g_assert_false(bf_proto_parse_grant(payload, len, 10, &extent, &create, &err));
    assert_protocol_error(err, "unknown flags");
    g_clear_error(&err);

    len = bf_proto_put_grant_ok(payload, &grant);
    g_assert_true(bf_proto_parse_grant_ok(payload, len, &back, &err));
    g_assert_cmpuint(back.extent, ==, 9);
    g_assert_cmpuint(back.addr, ==, grant.addr);
    g_assert_cmpuint(back.rkey, ==, 0x1234);
    payload[8] |= 1;
    g_assert_false(bf_proto_parse_grant_ok(payload, len, &back, &err));
    assert_protocol_error(err, "misaligned");
    g_clear_error(&err);

    /* COMMIT and RELEASE are page lists; RELEASE_OK may list nothing. */
    len = bf_proto_put_count(payload, 3);
    len += bf_proto_put_u64s(payload + len, values, 3);
    g_assert_true(bf_proto_parse_page_list(BF_MSG_COMMIT, payload, len, 8, &list, &err));
    g_assert_cmpuint(list.count, ==, 3);
    g_assert_cmpuint(bf_proto_page_number(&list, 1), ==, 7);
    g_assert_false(bf_proto_parse_page_list(BF_MSG_RELEASE, payload, len, 7, &list, &err));
    assert_protocol_error(err, "RELEASE of page 7, beyond the session's 7 pages");
    g_clear_error(&err);
    len = bf_proto_put_count(payload, 0);
    g_assert_true(bf_proto_parse_page_list(BF_MSG_RELEASE_OK, payload, len, 8, &list, &err));
    g_assert_cmpuint(list.count, ==, 0);
    g_assert_false(bf_proto_parse_page_list(BF_MSG_RELEASE, payload, len, 8, &list, &err));
    assert_protocol_error(err, "RELEASE of 0 pages");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/proto/header", test_header);
    g_test_add_func("/proto/header-errors", test_header_errors);
    g_test_add_func("/proto/hello", test_hello);
    g_test_add_func("/proto/page-list", test_page_list);
    g_test_add_func("/proto/replies", test_replies);
    g_test_add_func("/proto/rdma-messages", test_rdma_messages);
    return g_test_run();
}
