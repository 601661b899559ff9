/*
 * Unit tests of bf-engine without QEMU: configuration errors, and guest RAM touched by test
 * threads through the engine's userfaultfd (missing, minor and write-protect faults), with
 * every byte checked.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-engine.h"
#include "bf-error.h"
#include "bf-uffd.h"

#include <grp.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB (1024ULL * 1024)

static uint8_t pattern_byte(uint64_t offset, uint8_t seed)
{
    return (uint8_t)((offset >> 12) * 131 + (offset & 0xfff) * 7 + seed);
}

static void fill(uint8_t *ram, uint64_t start, uint64_t len, uint8_t seed)
{
    for (uint64_t i = start; i < start + len; i++) {
        ram[i] = pattern_byte(i, seed);
    }
}

static void check(const uint8_t *ram, uint64_t start, uint64_t len, uint8_t seed)
{
    for (uint64_t i = start; i < start + len; i++) {
        if (ram[i] != pattern_byte(i, seed)) {
            g_test_message("offset 0x%" G_GINT64_MODIFIER "x reads 0x%02x, wrote 0x%02x",
                           (guint64)i, ram[i], pattern_byte(i, seed));
            g_assert_not_reached();
        }
    }
}

/* An engine, or NULL after marking the test skipped when userfaultfd is not permitted. */
static BfEngine *engine_or_skip(const BfEngineConfig *config)
{
    g_autoptr(GError) err = NULL;
    BfEngine *e = bf_engine_new(config, &err);

    if (!e && g_error_matches(err, BF_ERROR, BF_ERROR_PERMISSION)) {
        g_test_skip(err->message);
        return NULL;
    }
    g_assert_no_error(err);
    return e;
}

static void test_config_errors(void)
{
    static const struct {
        BfEngineConfig config;
        const char *error;
    } cases[] = {
        { { "e", 0, 0, NULL }, "not a positive multiple of 4 KiB" },
        { { "e", 8 * MiB + 100, 0, NULL }, "not a positive multiple of 4 KiB" },
        { { "e", 8 * MiB, 0, "nope" }, "invalid pool address 'nope'" },
        { { "e", 8 * MiB, 4 * MiB, NULL }, "needs a memory pool" },
        { { "e", 8 * MiB, 16 * MiB, "tcp:h:1" }, "larger than size" },
        { { "e", 8 * MiB, 4 * MiB + 1, "tcp:h:1" }, "not a multiple of 4 KiB" },
        { { "e", 64 * MiB, 2 * MiB, "tcp:h:1" }, "below the minimum" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GError) err = NULL;
        BfEngine *e = bf_engine_new(&cases[i].config, &err);

        g_assert_null(e);
        g_assert_error(err, BF_ERROR, BF_ERROR_INVALID);
        if (!strstr(err->message, cases[i].error)) {
            g_test_message("case %zu: %s", i, err->message);
            g_assert_not_reached();
        }
    }
}

/* First touches fault as MISSING and are zero; written data reads back. */
static void test_missing_faults(void)
{
    BfEngineConfig config = { .name = "missing", .size = 16 * MiB };
    g_autoptr(BfEngine) e = engine_or_skip(&config);
    BfEngineStats stats;
    uint8_t *ram;

    if (!e) {
        return;
    }
    ram = bf_engine_guest_ram(e);
    bf_engine_get_stats(e, &stats);
    g_assert_cmpuint(stats.resident, ==, 0);
    g_assert_cmpuint(stats.faults_missing, ==, 0);
    g_assert_cmpint(stats.pool_state, ==, BF_POOL_NONE);
    g_assert_null(bf_engine_pool(e));

    /* Never-touched pages read as zeroes. */
    for (uint64_t off = 0; off < 4 * MiB; off += BF_PAGE_SIZE) {
        g_assert_cmpuint(ram[off + 123], ==, 0);
    }
    fill(ram, 0, 4 * MiB, 7);
    check(ram, 0, 4 * MiB, 7);

    bf_engine_get_stats(e, &stats);
    g_assert_cmpuint(stats.faults_missing, ==, 4 * MiB / BF_PAGE_SIZE);
    g_assert_cmpuint(stats.resident, ==, 4 * MiB);
    g_assert_cmpuint(stats.size, ==, 16 * MiB);
    g_assert_cmpuint(stats.local_limit, ==, 16 * MiB);
}

/* Dropping a resident page's mapping keeps it: the next touch is a MINOR fault. */
static void test_minor_faults(void)
{
    BfEngineConfig config = { .name = "minor", .size = 8 * MiB };
    g_autoptr(BfEngine) e = engine_or_skip(&config);
    BfEngineStats before, after;
    uint8_t *ram;

    if (!e) {
        return;
    }
    ram = bf_engine_guest_ram(e);
    fill(ram, 0, 8 * MiB, 3);
    bf_engine_get_stats(e, &before);
    g_assert_cmpint(madvise(ram, 2 * MiB, MADV_DONTNEED), ==, 0);
    check(ram, 0, 8 * MiB, 3);
    bf_engine_get_stats(e, &after);
    g_assert_cmpuint(after.faults_minor - before.faults_minor, ==, 2 * MiB / BF_PAGE_SIZE);
    g_assert_cmpuint(after.faults_missing, ==, before.faults_missing);
    g_assert_cmpuint(after.resident, ==, 8 * MiB);
}

/* Writes to write-protected pages fault once each and land. */
static void test_wp_faults(void)
{
    BfEngineConfig config = { .name = "wp", .size = 8 * MiB };
    g_autoptr(BfEngine) e = engine_or_skip(&config);
    g_autoptr(GError) err = NULL;
    BfEngineStats before, after;
    uint8_t *ram;
    int uffd;

    if (!e) {
        return;
    }
    ram = bf_engine_guest_ram(e);
    fill(ram, 0, 8 * MiB, 5);
    /* Only the engine's userfaultfd may track this range (why postcopy is vetoed). */
    uffd = bf_uffd_open(BF_UFFD_REQUIRED_FEATURES, &err);
    g_assert_no_error(err);
    g_assert_false(bf_uffd_register(uffd, ram, 8 * MiB, &err));
    g_assert_error(err, BF_ERROR, BF_ERROR_INVALID);
    g_assert_nonnull(strstr(err->message, "another userfaultfd already tracks it"));
    close(uffd);

    g_assert_cmpint(bf_engine_write_protect(e, 0, MiB), ==, 0);
    bf_engine_get_stats(e, &before);
    check(ram, 0, 8 * MiB, 5);              /* reads do not fault */
    fill(ram, 0, MiB, 6);
    check(ram, 0, MiB, 6);
    check(ram, MiB, 7 * MiB, 5);
    bf_engine_get_stats(e, &after);
    g_assert_cmpuint(after.faults_wp - before.faults_wp, ==, MiB / BF_PAGE_SIZE);
}

typedef struct {
    uint8_t *ram;
    uint64_t start, len;
    uint8_t seed;
} WriterJob;

static gpointer writer_thread(gpointer opaque)
{
    WriterJob *job = opaque;

    for (int round = 0; round < 3; round++) {
        fill(job->ram, job->start, job->len, job->seed + round);
        check(job->ram, job->start, job->len, job->seed + round);
    }
    return NULL;
}

/* Several threads fault concurrently on interleaved pages; every byte lands. */
static void test_concurrent_writers(void)
{
    enum { THREADS = 4 };
    BfEngineConfig config = { .name = "concurrent", .size = 32 * MiB };
    g_autoptr(BfEngine) e = engine_or_skip(&config);
    WriterJob jobs[THREADS];
    GThread *threads[THREADS];
    BfEngineStats stats;

    if (!e) {
        return;
    }
    for (int i = 0; i < THREADS; i++) {
        jobs[i] = (WriterJob) {
            .ram = bf_engine_guest_ram(e), .start = i * 8 * MiB, .len = 8 * MiB,
            .seed = 17 * i,
        };
        threads[i] = g_thread_new("writer", writer_thread, &jobs[i]);
    }
    for (int i = 0; i < THREADS; i++) {
        g_thread_join(threads[i]);
    }
    bf_engine_get_stats(e, &stats);
    g_assert_cmpuint(stats.faults_missing, ==, 32 * MiB / BF_PAGE_SIZE);
    g_assert_cmpuint(stats.resident, ==, 32 * MiB);
}

static void test_local_limit(void)
{
    BfEngineConfig config = {
        .name = "limit", .size = 64 * MiB, .local_limit = 32 * MiB, .pool = "tcp:[::1]:9",
    };
    g_autoptr(BfEngine) e = engine_or_skip(&config);
    g_autoptr(GError) err = NULL;
    BfEngineStats stats;

    if (!e) {
        return;
    }
    g_assert_cmpstr(bf_engine_pool(e), ==, "tcp:[::1]:9");
    bf_engine_get_stats(e, &stats);
    g_assert_cmpuint(stats.local_limit, ==, 32 * MiB);
    g_assert_cmpint(stats.pool_state, !=, BF_POOL_NONE);

    g_assert_true(bf_engine_set_local_limit(e, 16 * MiB, &err));
    bf_engine_get_stats(e, &stats);
    g_assert_cmpuint(stats.local_limit, ==, 16 * MiB);
    g_assert_false(bf_engine_set_local_limit(e, 128 * MiB, &err));
    g_assert_error(err, BF_ERROR, BF_ERROR_INVALID);
    g_clear_error(&err);
    g_assert_false(bf_engine_set_local_limit(e, 0, &err));
    g_assert_error(err, BF_ERROR, BF_ERROR_INVALID);
    bf_engine_get_stats(e, &stats);
    g_assert_cmpuint(stats.local_limit, ==, 16 * MiB);
}

/* Without the permission, the error names what to grant. */
static void test_permission_error(void)
{
    g_autofree char *sysctl = NULL;
    pid_t child;
    int status;

    if (geteuid() != 0) {
        g_test_skip("needs root to drop to an unprivileged user");
        return;
    }
    if (g_file_get_contents("/proc/sys/vm/unprivileged_userfaultfd", &sysctl, NULL, NULL) &&
        sysctl[0] == '1') {
        g_test_skip("vm.unprivileged_userfaultfd=1");
        return;
    }
    child = fork();
    g_assert_cmpint(child, >=, 0);
    if (child == 0) {
        BfEngineConfig config = { .name = "noperm", .size = 8 * MiB };
        GError *err = NULL;

        if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) ||
            setresuid(65534, 65534, 65534)) {
            _exit(2);
        }
        if (access("/dev/userfaultfd", W_OK) == 0) {
            _exit(3);   /* the device is open to everyone: nothing to test */
        }
        if (bf_engine_new(&config, &err) || !g_error_matches(err, BF_ERROR,
                                                             BF_ERROR_PERMISSION)) {
            _exit(1);
        }
        _exit(strstr(err->message, "/dev/userfaultfd") &&
              strstr(err->message, "vm.unprivileged_userfaultfd=1") ? 0 : 1);
    }
    g_assert_cmpint(waitpid(child, &status, 0), ==, child);
    g_assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 3) {
        g_test_skip("/dev/userfaultfd is writable by everyone");
        return;
    }
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/engine/config-errors", test_config_errors);
    g_test_add_func("/engine/faults/missing", test_missing_faults);
    g_test_add_func("/engine/faults/minor", test_minor_faults);
    g_test_add_func("/engine/faults/write-protect", test_wp_faults);
    g_test_add_func("/engine/faults/concurrent", test_concurrent_writers);
    g_test_add_func("/engine/local-limit", test_local_limit);
    g_test_add_func("/engine/permission-error", test_permission_error);
    return g_test_run();
}
