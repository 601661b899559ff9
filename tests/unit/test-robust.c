/*
 * Robustness of a memory pool shared by many VMs: engines (each the memory of one VM) against
 * one real blowfish-memnode. Many at once, each with a key of its own and all with the same
 * session name; the node killed and restarted while they write; a node that fills up; a key
 * at its quota. Every byte the guests wrote is checked, and no guest ever waits for room the
 * pool cannot give. The node must exit cleanly at the end (memnode_stop), which under
 * scripts/sanitize.sh means without a leak.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-auth.h"
#include "bf-engine.h"
#include "engine-test.h"
#include "memnode-process.h"

#include <glib/gstdio.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <unistd.h>

/* Keys named vm0, vm1, ...: the secret of key i is 32 bytes of value i + 1. */
static BfKey *test_key(unsigned i)
{
    g_autofree char *name = g_strdup_printf("vm%u", i);
    uint8_t secret[32];
    g_autoptr(GError) err = NULL;
    BfKey *key;

    memset(secret, i + 1, sizeof(secret));
    key = bf_key_new(name, secret, sizeof(secret), &err);
    g_assert_no_error(err);
    return key;
}

/* A keyring file holding test_key(0) .. test_key(n - 1). */
static char *write_keyring(unsigned n)
{
    g_autoptr(GString) text = g_string_new(NULL);
    g_autoptr(GError) err = NULL;
    char *path = NULL;
    int fd = g_file_open_tmp("blowfish-robust-keys-XXXXXX", &path, &err);

    g_assert_no_error(err);
    close(fd);
    for (unsigned i = 0; i < n; i++) {
        uint8_t secret[32];
        g_autofree char *base64 = NULL;

        memset(secret, i + 1, sizeof(secret));
        base64 = g_base64_encode(secret, sizeof(secret));
        g_string_append_printf(text, "vm%u %s\n", i, base64);
    }
    g_assert_true(g_file_set_contents(path, text->str, -1, &err));
    return path;
}

/* What the engine told of its pool filling up and emptying (from its threads). */
typedef struct {
    atomic_int full_events;
    atomic_int room_events;
    char detail[256];               /* of the first "full" */
} PoolFullLog;

static void on_pool_full(void *opaque, gboolean full, const char *detail)
{
    PoolFullLog *log = opaque;

    if (full && atomic_fetch_add(&log->full_events, 1) == 0) {
        g_strlcpy(log->detail, detail, sizeof(log->detail));
    } else if (!full) {
        atomic_fetch_add(&log->room_events, 1);
    }
}

static const BfEngineEvents pool_full_events = { .pool_full = on_pool_full };

/* An engine named "vm" of @size bytes keeping @limit local, with @node as its pool. */
static BfEngine *pool_engine(MemnodeProcess *node, uint64_t size, uint64_t limit,
                             const BfKey *key, PoolFullLog *log)
{
    BfEngineConfig config = {
        .name = "vm", .size = size, .local_limit = limit, .pool = node->address,
        .pool_key = key, .events = log ? &pool_full_events : NULL, .events_opaque = log,
    };
    BfEngine *e;

    bf_engine_tunables_init(&config.tunables);
    config.tunables.scan_period_ms = 20;
    e = engine_or_skip(&config);
    if (e) {
        WAIT_FOR(e, st, st.pool_state == BF_POOL_CONNECTED);
    }
    return e;
}

/* Runs @n writer jobs on their own threads, and waits for them all. */
static void run_writers(WriterJob *jobs, unsigned n)
{
    g_autofree GThread **threads = g_new(GThread *, n);

    for (unsigned i = 0; i < n; i++) {
        threads[i] = g_thread_new("writer", writer_thread, &jobs[i]);
    }
    for (unsigned i = 0; i < n; i++) {
        g_thread_join(threads[i]);
    }
}

/*
 * Sixteen VMs at once, each with its own key and all naming their session "vm": each one's
 * pages go to the pool and come back byte for byte, and no two see each other's.
 */
static void test_many_clients(void)
{
    enum { CLIENTS = 16 };
    g_autofree char *keys = write_keyring(CLIENTS);
    g_autofree char *why = NULL;
    MemnodeProcess *node = memnode_start_with_keys(keys, "512M", &why);
    BfEngine *engines[CLIENTS] = { NULL };
    BfKey *client_keys[CLIENTS];
    WriterJob jobs[CLIENTS];
    g_autoptr(GError) err = NULL;

    if (!node) {
        g_test_skip(why);
        g_unlink(keys);
        return;
    }
    for (unsigned i = 0; i < CLIENTS; i++) {
        client_keys[i] = test_key(i);
        engines[i] = pool_engine(node, 8 * MiB, 4 * MiB, client_keys[i], NULL);
        if (!engines[i]) {
            goto out;
        }
        jobs[i] = (WriterJob) {
            .ram = bf_engine_guest_ram(engines[i]), .len = 8 * MiB, .seed = 7 * i,
            .rounds = 1,
        };
    }
    run_writers(jobs, CLIENTS);
    for (unsigned i = 0; i < CLIENTS; i++) {
        BfEngineStats stats = stats_of(engines[i]);

        g_assert_cmpuint(stats.pages_evicted, >=, 4 * MiB / BF_PAGE_SIZE);
        WAIT_FOR(engines[i], st, st.resident <= 4 * MiB && st.pool_stored >= 4 * MiB);
        check(jobs[i].ram, 0, 8 * MiB, jobs[i].seed);
    }
    for (unsigned i = 0; i < CLIENTS; i++) {
        g_assert_true(bf_engine_restore_all(engines[i], &err));
        g_assert_no_error(err);
    }
    for (unsigned i = 0; i < CLIENTS; i++) {
        WAIT_FOR(engines[i], st, !st.restoring && st.remote == 0);
        check(jobs[i].ram, 0, 8 * MiB, jobs[i].seed);
        g_assert_cmpuint(stats_of(engines[i]).pool_bytes_received, >=, 4 * MiB);
    }
out:
    for (unsigned i = 0; i < CLIENTS; i++) {
        g_clear_pointer(&engines[i], bf_engine_free);
        bf_key_free(client_keys[i]);
    }
    memnode_stop(node);
    g_unlink(keys);
}

/* The node is killed while four VMs write, and restarted on its store: nothing is lost. */
static void test_restart_under_load(void)
{
    enum { CLIENTS = 4 };
    g_autofree char *why = NULL;
    MemnodeProcess *node = memnode_start_persistent("256M", &why);
    BfEngine *engines[CLIENTS] = { NULL };
    WriterJob jobs[CLIENTS];
    GThread *threads[CLIENTS];

    if (!node) {
        g_test_skip(why);
        return;
    }
    if (g_str_has_prefix(node->address, "rdma:")) {
        g_test_skip("a killed node keeps RDMA clients' pages nowhere (--store is TCP's)");
        goto out;
    }
    for (unsigned i = 0; i < CLIENTS; i++) {
        engines[i] = pool_engine(node, 16 * MiB, 4 * MiB, NULL, NULL);
        if (!engines[i]) {
            goto out;
        }
        jobs[i] = (WriterJob) {
            .ram = bf_engine_guest_ram(engines[i]), .len = 16 * MiB, .seed = 30 + 11 * i,
            .rounds = 3,
        };
    }
    for (unsigned i = 0; i < CLIENTS; i++) {
        threads[i] = g_thread_new("writer", writer_thread, &jobs[i]);
    }
    WAIT_FOR(engines[0], st, st.pool_stored >= 4 * MiB);
    memnode_kill(node);
    WAIT_FOR(engines[0], st, st.pool_state == BF_POOL_UNREACHABLE);
    memnode_restart(node);
    for (unsigned i = 0; i < CLIENTS; i++) {
        g_thread_join(threads[i]);
    }
    for (unsigned i = 0; i < CLIENTS; i++) {
        WAIT_FOR(engines[i], st, st.pool_state == BF_POOL_CONNECTED);
        check(jobs[i].ram, 0, 16 * MiB, jobs[i].seed + 2);
        g_assert_true(bf_engine_restore_all(engines[i], NULL));
        WAIT_FOR(engines[i], st, !st.restoring && st.remote == 0);
        check(jobs[i].ram, 0, 16 * MiB, jobs[i].seed + 2);
    }
out:
    for (unsigned i = 0; i < CLIENTS; i++) {
        g_clear_pointer(&engines[i], bf_engine_free);
    }
    memnode_stop(node);
}

/*
 * A VM whose pool refuses its pages for lack of room (@node's, or its key's quota: 16 MiB)
 * keeps running past its limit: its writer never waits for room, the event says why, and
 * every byte holds. When the guest frees half its memory, the rest fits: eviction resumes
 * and the limit holds again.
 */
static void expect_full_then_room(MemnodeProcess *node, const BfKey *key, const char *why)
{
    PoolFullLog log = { 0 };
    g_autoptr(BfEngine) e = pool_engine(node, 32 * MiB, 4 * MiB, key, &log);
    WriterJob job;
    uint8_t *ram;

    if (!e) {
        return;
    }
    ram = bf_engine_guest_ram(e);
    job = (WriterJob) { .ram = ram, .len = 32 * MiB, .seed = 90, .rounds = 2 };
    run_writers(&job, 1);
    WAIT_FOR(e, st, st.pool_full);
    g_assert_cmpint(atomic_load(&log.full_events), >=, 1);
    g_test_message("pool full: %s", log.detail);
    g_assert_nonnull(strstr(log.detail, why));
    g_assert_cmpuint(stats_of(e).resident, >=, 16 * MiB);
    g_assert_cmpuint(stats_of(e).pool_stored, <=, 16 * MiB);
    check(ram, 0, 32 * MiB, 91);

    /* Half of it freed: the rest fits, and eviction takes resident to the limit again. */
    g_assert_cmpint(madvise(ram, 16 * MiB, MADV_DONTNEED), ==, 0);
    WAIT_FOR(e, st, !st.pool_full && st.resident <= 4 * MiB);
    g_assert_cmpint(atomic_load(&log.room_events), >=, 1);
    check(ram, 16 * MiB, 16 * MiB, 91);
    for (uint64_t off = 0; off < 16 * MiB; off += 4096) {
        g_assert_cmpuint(ram[off], ==, 0);
    }
}

static void test_pool_full(void)
{
    g_autofree char *why = NULL;
    MemnodeProcess *node = memnode_start("16M", &why);

    if (!node) {
        g_test_skip(why);
        return;
    }
    expect_full_then_room(node, NULL, "the memory node is full");
    memnode_stop(node);
}

/*
 * A key at its quota (--quota vm0=16M) is refused like a full node, while another key's VM
 * on the same node evicts all it needs.
 */
static void test_quota(void)
{
    static const char *const args[] = { "--quota", "vm0=16M", NULL };
    g_autofree char *keys = write_keyring(2);
    g_autofree char *why = NULL;
    MemnodeProcess *node = memnode_start_with_args(keys, "256M", args, &why);
    BfKey *capped = test_key(0), *other = test_key(1);
    BfEngine *e;

    if (!node) {
        g_test_skip(why);
        goto out;
    }
    expect_full_then_room(node, capped, "key 'vm0' is at its quota");

    e = pool_engine(node, 32 * MiB, 4 * MiB, other, NULL);
    if (e) {
        WriterJob job = { .ram = bf_engine_guest_ram(e), .len = 32 * MiB, .seed = 5,
                          .rounds = 1 };

        run_writers(&job, 1);
        WAIT_FOR(e, st, st.resident <= 4 * MiB && st.pool_stored >= 24 * MiB);
        g_assert_false(stats_of(e).pool_full);
        check(job.ram, 0, 32 * MiB, 5);
        bf_engine_free(e);
    }
    memnode_stop(node);
out:
    bf_key_free(capped);
    bf_key_free(other);
    g_unlink(keys);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/robust/many-clients", test_many_clients);
    g_test_add_func("/robust/restart-under-load", test_restart_under_load);
    g_test_add_func("/robust/pool-full", test_pool_full);
    g_test_add_func("/robust/quota", test_quota);
    return g_test_run();
}
