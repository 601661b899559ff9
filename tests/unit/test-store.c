/*
 * Unit tests of bf-store: pages read back as written, sessions are isolated and survive a
 * detach, capacity and quotas are all-or-nothing, and freeing returns slots.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-error.h"
#include "bf-store.h"

#include <unistd.h>

#define PAGE BF_PROTO_PAGE_SIZE

static BfHello make_hello(uint8_t id, uint64_t pages, const char *name)
{
    BfHello hello = { .pages = pages };

    memset(hello.session, id, sizeof(hello.session));
    g_strlcpy(hello.name, name, sizeof(hello.name));
    return hello;
}

/* Writes @count pages numbered from @first, page n filled with (n + seed). */
static gboolean write_pages(BfStore *store, BfStoreSession *s, uint64_t first, uint32_t count,
                            uint8_t seed, BfProtoError *code)
{
    g_autofree uint8_t *buf = g_malloc(count * PAGE);
    g_autofree uint64_t *pages = g_new(uint64_t, count);
    g_autofree const void **data = g_new(const void *, count);
    g_autoptr(GError) err = NULL;

    for (uint32_t i = 0; i < count; i++) {
        pages[i] = first + i;
        memset(buf + i * PAGE, (uint8_t)(first + i + seed), PAGE);
        data[i] = buf + i * PAGE;
    }
    return bf_store_write(store, s, count, pages, data, code, &err);
}

static void check_pages(BfStore *store, BfStoreSession *s, uint64_t first, uint32_t count,
                        uint8_t seed)
{
    g_autofree uint8_t *buf = g_malloc(count * PAGE);
    g_autofree uint64_t *pages = g_new(uint64_t, count);
    g_autofree void **dest = g_new(void *, count);
    g_autoptr(GError) err = NULL;
    BfProtoError code = 0;

    for (uint32_t i = 0; i < count; i++) {
        pages[i] = first + i;
        dest[i] = buf + i * PAGE;
    }
    g_assert_true(bf_store_read(store, s, count, pages, dest, &code, &err));
    g_assert_no_error(err);
    for (uint32_t i = 0; i < count; i++) {
        for (uint32_t j = 0; j < PAGE; j++) {
            g_assert_cmpuint(buf[i * PAGE + j], ==, (uint8_t)(first + i + seed));
        }
    }
}

static void test_write_read_free(void)
{
    g_autoptr(BfStore) store = bf_store_new(64 * PAGE);
    BfHello hello = make_hello(1, 10000, "vm1");
    g_autoptr(GError) err = NULL;
    BfProtoError code = 0;
    BfStoreStats stats;
    uint64_t stored, page = 5000;
    BfStoreSession *s = bf_store_attach(store, &hello, NULL, &stored, &code, &err);
    uint8_t buf[PAGE];
    void *dest[1] = { buf };

    g_assert_nonnull(s);
    g_assert_cmpuint(stored, ==, 0);
    g_assert_true(write_pages(store, s, 4990, 20, 3, &code));
    check_pages(store, s, 4990, 20, 3);
    /* Overwriting a page keeps its slot. */
    g_assert_true(write_pages(store, s, 5000, 1, 9, &code));
    check_pages(store, s, 5000, 1, 9);
    g_assert_cmpuint(bf_store_session_pages(store, s), ==, 20);

    bf_store_free_pages(store, s, 1, &page);
    g_assert_cmpuint(bf_store_session_pages(store, s), ==, 19);
    g_assert_false(bf_store_read(store, s, 1, &page, dest, &code, &err));
    g_assert_cmpint(code, ==, BF_PROTO_ERR_NOT_STORED);
    g_assert_error(err, BF_ERROR, BF_ERROR_POOL);
    g_clear_error(&err);

    /* A page beyond the session is a protocol error, not a crash. */
    page = 10000;
    g_assert_false(bf_store_read(store, s, 1, &page, dest, &code, &err));
    g_assert_cmpint(code, ==, BF_PROTO_ERR_PROTOCOL);

    bf_store_get_stats(store, &stats);
    g_assert_cmpuint(stats.capacity_pages, ==, 64);
    g_assert_cmpuint(stats.stored_pages, ==, 19);
    g_assert_cmpuint(stats.sessions, ==, 1);
    g_assert_cmpuint(stats.attached_sessions, ==, 1);
    bf_store_detach(store, s);
}

static void test_capacity(void)
{
    g_autoptr(BfStore) store = bf_store_new(600 * PAGE);  /* crosses a 512-slot chunk */
    BfHello hello = make_hello(2, 4096, "vm2");
    g_autoptr(GError) err = NULL;
    BfProtoError code = 0;
    BfStoreStats stats;
    uint64_t stored;
    BfStoreSession *s = bf_store_attach(store, &hello, NULL, &stored, &code, &err);

    g_assert_true(write_pages(store, s, 0, 256, 1, &code));
    g_assert_true(write_pages(store, s, 256, 256, 1, &code));
    g_assert_true(write_pages(store, s, 512, 80, 1, &code));
    /* 8 slots left: 10 new pages do not fit, and none of them is stored. */
    g_assert_false(write_pages(store, s, 1000, 10, 1, &code));
    g_assert_cmpint(code, ==, BF_PROTO_ERR_NO_SPACE);
    bf_store_get_stats(store, &stats);
    g_assert_cmpuint(stats.stored_pages, ==, 592);
    g_assert_cmpuint(bf_store_session_pages(store, s), ==, 592);
    /* Rewriting stored pages needs no room; 8 new ones fit exactly. */
    g_assert_true(write_pages(store, s, 0, 100, 2, &code));
    g_assert_true(write_pages(store, s, 1000, 8, 1, &code));
    check_pages(store, s, 0, 100, 2);
    check_pages(store, s, 100, 256, 1);
    check_pages(store, s, 1000, 8, 1);
    bf_store_get_stats(store, &stats);
    g_assert_cmpuint(stats.stored_pages, ==, 600);
    bf_store_detach(store, s);
}

/*
 * An owner's sessions share its quota; another owner, and sessions without an owner, are not
 * counted against it; freeing and dropping give quota back; an owner's own quota overrides
 * the default.
 */
static void test_quota(void)
{
    g_autoptr(BfStore) store = bf_store_new(4096 * PAGE);
    BfHello a1 = make_hello(1, 1024, "a1"), a2 = make_hello(2, 1024, "a2");
    BfHello b1 = make_hello(3, 1024, "b1"), c1 = make_hello(4, 1024, "c1");
    g_autoptr(GError) err = NULL;
    BfProtoError code = 0;
    uint64_t stored, first = 0;
    BfStoreSession *sa1, *sa2, *sb1, *sc1;

    bf_store_set_quota(store, NULL, 200 * PAGE);
    bf_store_set_quota(store, "a", 300 * PAGE);
    sa1 = bf_store_attach(store, &a1, "a", &stored, &code, &err);
    sa2 = bf_store_attach(store, &a2, "a", &stored, &code, &err);
    sb1 = bf_store_attach(store, &b1, "b", &stored, &code, &err);
    sc1 = bf_store_attach(store, &c1, NULL, &stored, &code, &err);

    g_assert_true(write_pages(store, sa1, 0, 200, 1, &code));
    g_assert_cmpuint(bf_store_session_room(store, sa2), ==, 100);
    /* 101 new pages would pass a's 300: none is stored. */
    g_assert_false(write_pages(store, sa2, 0, 101, 1, &code));
    g_assert_cmpint(code, ==, BF_PROTO_ERR_QUOTA);
    g_assert_cmpuint(bf_store_session_pages(store, sa2), ==, 0);
    g_assert_true(write_pages(store, sa2, 0, 100, 1, &code));
    /* Rewrites need no quota; b has the default 200; no owner, no quota. */
    g_assert_true(write_pages(store, sa1, 0, 200, 2, &code));
    g_assert_true(write_pages(store, sb1, 0, 200, 1, &code));
    g_assert_false(write_pages(store, sb1, 200, 1, 1, &code));
    g_assert_cmpint(code, ==, BF_PROTO_ERR_QUOTA);
    g_assert_true(write_pages(store, sc1, 0, 1024, 1, &code));

    /* Freeing, and dropping a session, give it back. */
    bf_store_free_pages(store, sa1, 1, &first);
    g_assert_cmpuint(bf_store_session_room(store, sa2), ==, 1);
    bf_store_drop(store, sa2);
    g_assert_true(write_pages(store, sa1, 200, 101, 1, &code));
    check_pages(store, sa1, 1, 199, 2);
    check_pages(store, sa1, 200, 101, 1);
    bf_store_detach(store, sa1);
    bf_store_detach(store, sb1);
    bf_store_detach(store, sc1);
}

static void test_sessions(void)
{
    g_autoptr(BfStore) store = bf_store_new(1024 * PAGE);
    BfHello a = make_hello(0xa, 100, "a"), b = make_hello(0xb, 100, "b");
    BfHello a_resized = make_hello(0xa, 200, "a");
    g_autoptr(GError) err = NULL;
    BfProtoError code = 0;
    BfStoreStats stats;
    uint64_t stored;
    BfStoreSession *sa = bf_store_attach(store, &a, NULL, &stored, &code, &err);
    BfStoreSession *sb = bf_store_attach(store, &b, NULL, &stored, &code, &err);

    g_assert_true(write_pages(store, sa, 0, 10, 1, &code));
    g_assert_true(write_pages(store, sb, 0, 10, 2, &code));
    check_pages(store, sa, 0, 10, 1);
    check_pages(store, sb, 0, 10, 2);

    /* A second connection shares the session; dropping it through one ends it for both. */
    {
        BfStoreSession *again = bf_store_attach(store, &a, NULL, &stored, &code, &err);
        BfStoreSession *other;
        uint64_t page = 3;
        uint8_t buf[PAGE];
        void *dest[1] = { buf };

        g_assert_true(again == sa);
        g_assert_cmpuint(stored, ==, 10);
        check_pages(store, again, 0, 10, 1);
        bf_store_drop(store, again);
        g_assert_false(bf_store_read(store, sa, 1, &page, dest, &code, &err));
        g_assert_cmpint(code, ==, BF_PROTO_ERR_NO_SESSION);
        g_clear_error(&err);
        g_assert_false(write_pages(store, sa, 0, 1, 1, &code));
        g_assert_cmpint(code, ==, BF_PROTO_ERR_NO_SESSION);
        /* The same id now names a new, empty session. */
        other = bf_store_attach(store, &a, NULL, &stored, &code, &err);
        g_assert_true(other != sa);
        g_assert_cmpuint(stored, ==, 0);
        g_assert_true(write_pages(store, other, 0, 10, 1, &code));
        bf_store_detach(store, sa);
        sa = other;
    }

    /* A detached session keeps its pages for the next attach. */
    bf_store_detach(store, sa);
    g_assert_null(bf_store_attach(store, &a_resized, NULL, &stored, &code, &err));
    g_clear_error(&err);
    sa = bf_store_attach(store, &a, NULL, &stored, &code, &err);
    g_assert_nonnull(sa);
    g_assert_cmpuint(stored, ==, 10);
    check_pages(store, sa, 0, 10, 1);

    /* Dropping a session frees its slots and forgets it. */
    bf_store_drop(store, sb);
    bf_store_get_stats(store, &stats);
    g_assert_cmpuint(stats.stored_pages, ==, 10);
    g_assert_cmpuint(stats.sessions, ==, 1);
    sb = bf_store_attach(store, &b, NULL, &stored, &code, &err);
    g_assert_cmpuint(stored, ==, 0);
    bf_store_detach(store, sa);
    bf_store_detach(store, sb);
}

/* A store file keeps what was acknowledged: sessions, pages, frees and drops. */
static void test_persistent(void)
{
    g_autofree char *path = g_strdup_printf("%s/blowfish-store-%d", g_get_tmp_dir(),
                                            getpid());
    BfHello a = make_hello(0xa, 5000, "a"), b = make_hello(0xb, 100, "b");
    g_autoptr(GError) err = NULL;
    BfProtoError code = 0;
    BfStoreStats stats;
    uint64_t stored, freed[2] = { 1000, 1001 };
    BfStore *store = bf_store_open(path, 4096 * PAGE, &err);
    BfStoreSession *sa, *sb;

    g_assert_no_error(err);
    sa = bf_store_attach(store, &a, NULL, &stored, &code, &err);
    sb = bf_store_attach(store, &b, NULL, &stored, &code, &err);
    g_assert_true(write_pages(store, sa, 900, 300, 5, &code));
    g_assert_true(write_pages(store, sb, 0, 50, 6, &code));
    bf_store_free_pages(store, sa, 2, freed);
    bf_store_drop(store, sb);
    bf_store_detach(store, sa);
    bf_store_free(store);       /* as if killed: nothing more is written */

    store = bf_store_open(path, 4096 * PAGE, &err);
    g_assert_no_error(err);
    bf_store_get_stats(store, &stats);
    g_assert_cmpuint(stats.sessions, ==, 1);
    g_assert_cmpuint(stats.stored_pages, ==, 298);
    sa = bf_store_attach(store, &a, NULL, &stored, &code, &err);
    g_assert_cmpuint(stored, ==, 298);
    check_pages(store, sa, 900, 100, 5);
    check_pages(store, sa, 1002, 198, 5);
    sb = bf_store_attach(store, &b, NULL, &stored, &code, &err);
    g_assert_cmpuint(stored, ==, 0);
    /* The slots freed before the restart are usable again: fill the store up. */
    g_assert_true(write_pages(store, sb, 0, 100, 7, &code));
    g_assert_true(write_pages(store, sa, 1200, 4096 - 298 - 100, 8, &code));
    g_assert_false(write_pages(store, sa, 4950, 1, 8, &code));
    g_assert_cmpint(code, ==, BF_PROTO_ERR_NO_SPACE);
    check_pages(store, sa, 900, 100, 5);
    bf_store_detach(store, sa);
    bf_store_detach(store, sb);
    bf_store_free(store);

    /* Reopening with another capacity is refused, not misread. */
    g_assert_null(bf_store_open(path, 8192 * PAGE, &err));
    g_assert_error(err, BF_ERROR, BF_ERROR_INVALID);
    g_assert_nonnull(strstr(err->message, "capacity"));
    unlink(path);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/store/write-read-free", test_write_read_free);
    g_test_add_func("/store/capacity", test_capacity);
    g_test_add_func("/store/quota", test_quota);
    g_test_add_func("/store/sessions", test_sessions);
    g_test_add_func("/store/persistent", test_persistent);
    return g_test_run();
}
