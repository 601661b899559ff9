/*
 * Unit tests of bf-extents, the memory node's bookkeeping for RDMA clients, with plain memory
 * standing in for registered memory: extents are lent once and found again, count against the
 * capacity and their owner's quota, hold only what was committed, go back only when empty,
 * and a session's connections, HELLO and BYE behave as on TCP.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-error.h"
#include "bf-extents.h"

typedef struct {
    int lent;
} FakeDevice;

static gpointer fake_lend(gpointer opaque, BfGrant *grant, GError **errp)
{
    FakeDevice *dev = opaque;
    void *mem = g_malloc(BF_EXTENT_SIZE);

    dev->lent++;
    grant->addr = (uintptr_t)mem;
    return mem;
}

static void fake_take_back(gpointer opaque, gpointer lent)
{
    FakeDevice *dev = opaque;

    dev->lent--;
    g_free(lent);
}

static const BfExtentOps fake_ops = {
    .lend = fake_lend,
    .take_back = fake_take_back,
};

static BfHello hello_for(uint8_t id, uint64_t pages)
{
    BfHello hello = { .pages = pages };

    memset(hello.session, id, sizeof(hello.session));
    g_strlcpy(hello.name, "test", sizeof(hello.name));
    return hello;
}

/* A page list in @buf (count | 0 | numbers), parsed. */
static BfPageList page_list(uint8_t *buf, const uint64_t *pages, uint32_t count)
{
    uint32_t len = bf_proto_put_count(buf, count);
    BfPageList list;

    len += bf_proto_put_u64s(buf + len, pages, count);
    g_assert_true(bf_proto_parse_page_list(BF_MSG_COMMIT, buf, len, UINT64_MAX, &list, NULL));
    return list;
}

static void test_lend_commit_release(void)
{
    FakeDevice dev = { 0 };
    g_autoptr(BfStore) store = bf_store_new(4 * BF_EXTENT_SIZE);
    BfExtents *x;
    BfExtentSession *s;
    BfHello hello = hello_for(1, 4000);
    BfGrant a, again;
    gpointer lent, lent_again;
    BfProtoError code;
    BfStoreStats stats;
    BfPageList list;
    uint8_t buf[8 + 8 * 8];
    uint64_t stored, released[4];
    uint64_t pages[] = { 0, 1, 511, 1 }, extents[] = { 0, 1 };
    g_autoptr(GError) err = NULL;

    x = bf_extents_new(store, &fake_ops, &dev);
    s = bf_extents_attach(x, hello.session, NULL, hello.pages, &stored, &code, &err);
    g_assert_nonnull(s);
    g_assert_cmpuint(stored, ==, 0);
    g_assert_cmpuint(bf_extents_session_size(s), ==, 4000);

    /* Not lent: a read-only grant is refused; a creating one lends, once. */
    g_assert_false(bf_extents_grant(x, s, 0, FALSE, &a, &lent, &code, &err));
    g_assert_cmpint(code, ==, BF_PROTO_ERR_NOT_STORED);
    g_clear_error(&err);
    g_assert_true(bf_extents_grant(x, s, 0, TRUE, &a, &lent, &code, &err));
    g_assert_true(bf_extents_grant(x, s, 0, FALSE, &again, &lent_again, &code, &err));
    g_assert_cmpuint(again.addr, ==, a.addr);
    g_assert_true(lent_again == lent);
    g_assert_cmpint(dev.lent, ==, 1);
    bf_store_get_stats(store, &stats);
    g_assert_cmpuint(stats.stored_pages, ==, BF_PROTO_EXTENT_PAGES);

    /* Committed pages count once; a page of an extent not lent is a protocol error. */
    list = page_list(buf, pages, 4);
    g_assert_true(bf_extents_commit(x, s, &list, &err));
    g_assert_cmpuint(bf_extents_session_pages(s), ==, 3);
    pages[3] = 512;
    list = page_list(buf, pages, 4);
    g_assert_false(bf_extents_commit(x, s, &list, &err));
    g_assert_error(err, BF_ERROR, BF_ERROR_PROTOCOL);
    g_clear_error(&err);
    g_assert_cmpuint(bf_extents_session_pages(s), ==, 3);

    /* An extent holding pages stays; emptied, it goes back. */
    list = page_list(buf, extents, 2);
    g_assert_cmpuint(bf_extents_release(x, s, &list, released), ==, 0);
    list = page_list(buf, pages, 2);            /* pages 0 and 1 */
    bf_extents_free_pages(x, s, &list);
    bf_extents_free_pages(x, s, &list);         /* not stored any more: ignored */
    g_assert_cmpuint(bf_extents_session_pages(s), ==, 1);
    list = page_list(buf, extents, 2);
    g_assert_cmpuint(bf_extents_release(x, s, &list, released), ==, 0);
    list = page_list(buf, &pages[2], 1);        /* page 511 */
    bf_extents_free_pages(x, s, &list);
    list = page_list(buf, extents, 2);
    g_assert_cmpuint(bf_extents_release(x, s, &list, released), ==, 1);
    g_assert_cmpuint(released[0], ==, 0);
    g_assert_cmpint(dev.lent, ==, 0);
    bf_store_get_stats(store, &stats);
    g_assert_cmpuint(stats.stored_pages, ==, 0);

    /* Holding nothing and without a connection, the session is gone: any size is new. */
    bf_extents_detach(x, s);
    s = bf_extents_attach(x, hello.session, NULL, 8000, &stored, &code, &err);
    g_assert_no_error(err);
    bf_extents_detach(x, s);
    bf_extents_free(x);
}

static void test_capacity_and_sessions(void)
{
    FakeDevice dev = { 0 };
    g_autoptr(BfStore) store = bf_store_new(2 * BF_EXTENT_SIZE);
    BfExtents *x;
    BfExtentSession *s, *other;
    BfHello hello = hello_for(2, 10000), b = hello_for(3, 10);
    BfProtoError code;
    BfGrant g;
    gpointer lent;
    BfPageList list;
    uint8_t buf[16];
    uint64_t stored, page = 600;
    g_autoptr(GError) err = NULL;

    x = bf_extents_new(store, &fake_ops, &dev);
    s = bf_extents_attach(x, hello.session, NULL, hello.pages, &stored, &code, &err);
    g_assert_true(bf_extents_grant(x, s, 1, TRUE, &g, &lent, &code, &err));
    g_assert_true(bf_extents_grant(x, s, 5, TRUE, &g, &lent, &code, &err));
    g_assert_false(bf_extents_grant(x, s, 6, TRUE, &g, &lent, &code, &err));
    g_assert_cmpint(code, ==, BF_PROTO_ERR_NO_SPACE);
    g_clear_error(&err);
    list = page_list(buf, &page, 1);
    g_assert_true(bf_extents_commit(x, s, &list, &err));

    /* The session and its pages outlive the connection; its size is fixed. */
    bf_extents_detach(x, s);
    g_assert_null(bf_extents_attach(x, hello.session, NULL, 20000, &stored, &code, &err));
    g_assert_cmpint(code, ==, BF_PROTO_ERR_NO_SESSION);
    g_assert_nonnull(strstr(err->message, "exists with 10000 pages"));
    g_clear_error(&err);
    s = bf_extents_attach(x, hello.session, NULL, hello.pages, &stored, &code, &err);
    g_assert_nonnull(s);
    g_assert_cmpuint(stored, ==, 1);

    /* Another session is apart, and BYE takes back everything. */
    other = bf_extents_attach(x, b.session, NULL, b.pages, &stored, &code, &err);
    g_assert_cmpuint(stored, ==, 0);
    g_assert_false(bf_extents_grant(x, other, 0, FALSE, &g, &lent, &code, &err));
    g_clear_error(&err);
    g_assert_cmpuint(bf_extents_lent(x), ==, 2);
    bf_extents_drop(x, s);
    g_assert_cmpuint(bf_extents_lent(x), ==, 0);
    g_assert_cmpuint(bf_extents_session_size(s), ==, 0);
    g_assert_true(bf_extents_grant(x, other, 0, TRUE, &g, &lent, &code, &err));
    bf_extents_detach(x, s);
    bf_extents_detach(x, other);
    g_assert_cmpint(dev.lent, ==, 1);           /* other still holds an extent */
    bf_extents_free(x);
    g_assert_cmpint(dev.lent, ==, 0);
}

/* Extents count against their owner's quota, as pages written over TCP do. */
static void test_quota(void)
{
    FakeDevice dev = { 0 };
    g_autoptr(BfStore) store = bf_store_new(8 * BF_EXTENT_SIZE);
    BfExtents *x = bf_extents_new(store, &fake_ops, &dev);
    BfHello hello = hello_for(4, 10000);
    BfExtentSession *vm1, *vm2;
    BfProtoError code;
    BfPageList list;
    BfGrant g;
    gpointer lent;
    uint8_t buf[16];
    uint64_t stored, released, extent = 0;
    g_autoptr(GError) err = NULL;

    bf_store_set_quota(store, "vm1", 2 * BF_EXTENT_SIZE);
    vm1 = bf_extents_attach(x, hello.session, "vm1", hello.pages, &stored, &code, &err);
    g_assert_cmpuint(bf_store_room(store, "vm1"), ==, 2 * BF_PROTO_EXTENT_PAGES);
    g_assert_true(bf_extents_grant(x, vm1, 0, TRUE, &g, &lent, &code, &err));
    g_assert_true(bf_extents_grant(x, vm1, 1, TRUE, &g, &lent, &code, &err));
    g_assert_cmpuint(bf_store_room(store, "vm1"), ==, 0);
    g_assert_false(bf_extents_grant(x, vm1, 2, TRUE, &g, &lent, &code, &err));
    g_assert_cmpint(code, ==, BF_PROTO_ERR_QUOTA);
    g_assert_nonnull(strstr(err->message, "key 'vm1' is at its quota"));
    g_clear_error(&err);

    /* Another owner (its own session for the same id) is not held back by vm1's quota. */
    hello.session[0] ^= 1;
    vm2 = bf_extents_attach(x, hello.session, "vm2", hello.pages, &stored, &code, &err);
    g_assert_true(bf_extents_grant(x, vm2, 2, TRUE, &g, &lent, &code, &err));

    /* An extent given back makes room under the quota again. */
    list = page_list(buf, &extent, 1);
    g_assert_cmpuint(bf_extents_release(x, vm1, &list, &released), ==, 1);
    g_assert_true(bf_extents_grant(x, vm1, 2, TRUE, &g, &lent, &code, &err));
    g_assert_no_error(err);
    bf_extents_detach(x, vm1);
    bf_extents_detach(x, vm2);
    bf_extents_free(x);
    g_assert_cmpint(dev.lent, ==, 0);
    g_assert_cmpuint(bf_store_room(store, "vm1"), ==, 2 * BF_PROTO_EXTENT_PAGES);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/extents/lend-commit-release", test_lend_commit_release);
    g_test_add_func("/extents/capacity-and-sessions", test_capacity_and_sessions);
    g_test_add_func("/extents/quota", test_quota);
    return g_test_run();
}
