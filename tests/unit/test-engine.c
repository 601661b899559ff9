/*
 * Unit tests of bf-engine without QEMU: test threads play the guest, touching guest RAM
 * through the engine's userfaultfd, against an in-process store (and, for pool failures, a
 * real blowfish-memnode). Every byte written is checked when read back, across evictions and
 * restorations; zero pages must never reach the pool, clean pages must be evicted with no
 * transfer, and the local limit must hold.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-channel-local.h"
#include "bf-engine.h"
#include "bf-error.h"
#include "bf-uffd.h"
#include "engine-test.h"
#include "memnode-process.h"

#include <grp.h>
#include <stdatomic.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE BF_PAGE_SIZE

static BfChannel *local_connect(void *opaque, const BfHello *hello, GError **errp)
{
    return bf_channel_local_new(opaque, hello, errp);
}

/* A configuration with a fast scanner; @store (if any) is the pool. */
static BfEngineConfig make_config(const char *name, uint64_t size, uint64_t limit,
                                  BfStore *store)
{
    BfEngineConfig config = {
        .name = name, .size = size, .local_limit = limit,
        .connect = store ? local_connect : NULL, .connect_opaque = store,
    };

    bf_engine_tunables_init(&config.tunables);
    config.tunables.scan_period_ms = 20;
    config.tunables.pool_timeout_ms = 1000;
    return config;
}

/*
 * Eviction has brought resident down to @bytes, and no batch is in flight: its pages
 * (EVICTING, PUNCHING) would be neither freed nor discarded by what a test does next.
 * Resident counts the memfd's blocks, which a batch gives up when it punches its pages,
 * before it publishes them remote: until then they are in no count.
 */
#define SETTLED(st, bytes)                                                                  \
    ((st).resident <= (bytes) &&                                                            \
     (st).resident + (st).remote + (st).zero + (st).free == (st).size)

/*
 * Under a 16 MiB limit the reclaimer evicts down to the limit less its headroom (1 MiB here).
 * At 16 MiB, a batch may still be in flight.
 */
#define SETTLED_UNDER_16M (15 * MiB)

static void test_config_errors(void)
{
    static const struct {
        uint64_t size, limit;
        const char *pool;
        const char *error;
    } cases[] = {
        { 0, 0, NULL, "not a positive multiple of 4 KiB" },
        { 8 * MiB + 100, 0, NULL, "not a positive multiple of 4 KiB" },
        { 8 * MiB, 0, "nope", "invalid pool address 'nope'" },
        { 8 * MiB, 4 * MiB, NULL, "needs a memory pool" },
        { 8 * MiB, 16 * MiB, "tcp:h:1", "larger than size" },
        { 8 * MiB, 4 * MiB + 1, "tcp:h:1", "not a multiple of 4 KiB" },
        { 64 * MiB, 2 * MiB, "tcp:h:1", "below the minimum" },
    };
    BfEngineConfig config = make_config("e", 8 * MiB, 0, NULL);
    g_autoptr(GError) err = NULL;

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        config.size = cases[i].size;
        config.local_limit = cases[i].limit;
        config.pool = cases[i].pool;
        g_assert_null(bf_engine_new(&config, &err));
        g_assert_error(err, BF_ERROR, BF_ERROR_INVALID);
        if (!strstr(err->message, cases[i].error)) {
            g_printerr("case %zu: %s\n", i, err->message);
            g_assert_not_reached();
        }
        g_clear_error(&err);
    }
    config = make_config("e", 8 * MiB, 0, NULL);
    config.tunables.evict_batch = 257;
    g_assert_null(bf_engine_new(&config, &err));
    g_assert_nonnull(strstr(err->message, "evict-batch must be 1 to 256"));
    g_clear_error(&err);
    config = make_config("e", 8 * MiB, 0, NULL);
    config.tunables.idle_age = 251;
    g_assert_null(bf_engine_new(&config, &err));
    g_assert_nonnull(strstr(err->message, "idle-age must be 0 (off) to 250 periods"));
    g_clear_error(&err);
    config.tunables.idle_age = 5;
    g_assert_null(bf_engine_new(&config, &err));
    g_assert_nonnull(strstr(err->message, "idle-age needs a memory pool"));
}

/* First touches fault as MISSING and are zero; written data reads back. */
static void test_missing_faults(void)
{
    BfEngineConfig config = make_config("missing", 16 * MiB, 0, NULL);
    g_autoptr(BfEngine) e = NULL;
    BfEngineStats stats;
    uint8_t *ram;

    config.tunables.scan_period_ms = 3600000;   /* exact fault counts: no scanner */
    e = engine_or_skip(&config);
    if (!e) {
        return;
    }
    ram = bf_engine_guest_ram(e);
    stats = stats_of(e);
    g_assert_cmpuint(stats.resident, ==, 0);
    g_assert_cmpuint(stats.faults_missing, ==, 0);
    g_assert_cmpint(stats.pool_state, ==, BF_POOL_NONE);
    g_assert_null(bf_engine_pool(e));

    for (uint64_t off = 0; off < 4 * MiB; off += PAGE) {
        g_assert_cmpuint(ram[off + 123], ==, 0);
    }
    fill(ram, 0, 4 * MiB, 7);
    check(ram, 0, 4 * MiB, 7);

    /*
     * First touches are served an aligned block at a time: 16 pages, then twice the last
     * block's size (up to 512) while each touch lands just past it. Seven faults for 4 MiB
     * touched in order: blocks of 16, 32, 64, 128, 256, 512 and 512 pages.
     */
    stats = stats_of(e);
    g_assert_cmpuint(stats.faults_missing, ==, 7);
    g_assert_cmpuint(stats.resident, ==, 4 * MiB);

    /* A lone page touched far away brings in its 64 KiB block, and only that. */
    ram[12 * MiB + 5 * PAGE] = 1;
    stats = stats_of(e);
    g_assert_cmpuint(stats.faults_missing, ==, 8);
    g_assert_cmpuint(stats.resident, ==, 4 * MiB + 16 * PAGE);

    /* Sparse touches, a page in 32, each bring in their 64 KiB block only. */
    for (uint64_t off = 6 * MiB; off < 8 * MiB; off += 32 * PAGE) {
        ram[off] = 2;
    }
    stats = stats_of(e);
    g_assert_cmpuint(stats.faults_missing, ==, 8 + 16);
    g_assert_cmpuint(stats.resident, ==, 4 * MiB + 17 * 16 * PAGE);

    /* Touches in descending order grow the blocks as well: 16, 32, 64, 128, 256, 512 pages. */
    for (uint64_t off = 10 * MiB; off > 8 * MiB; off -= PAGE) {
        ram[off - PAGE] = 3;
    }
    stats = stats_of(e);
    g_assert_cmpuint(stats.faults_missing, ==, 8 + 16 + 6);
    g_assert_cmpuint(stats.resident, ==, 6 * MiB + 17 * 16 * PAGE);
    check(ram, 0, 4 * MiB, 7);
    for (uint64_t off = 8 * MiB; off < 10 * MiB; off += PAGE) {
        g_assert_cmpuint(ram[off], ==, 3);
        g_assert_cmpuint(ram[off + 1], ==, 0);
    }
    g_assert_cmpuint(stats.size, ==, 16 * MiB);
    g_assert_cmpuint(stats.local_limit, ==, 16 * MiB);
    g_assert_cmpuint(stats.fault_latency_p50_ns, >, 0);
    g_assert_cmpuint(stats.fault_latency_p99_ns, >=, stats.fault_latency_p50_ns);

    /*
     * The histogram behind them counts every fault (once timed: the fault thread times a
     * fault after waking its thread), and its median bucket is the p50.
     */
    for (int tries = 0;; tries++) {
        g_autofree uint64_t *upper = NULL, *counts = NULL;
        unsigned n = bf_engine_fault_latency_histogram(e, &upper, &counts);
        uint64_t total = 0, seen = 0, median = 0;

        for (unsigned i = 0; i < n; i++) {
            total += counts[i];
        }
        g_assert_cmpuint(total, <=, stats.faults_missing);
        if (total < stats.faults_missing && tries < 1000) {
            g_usleep(1000);
            continue;
        }
        g_assert_cmpuint(total, ==, stats.faults_missing);
        for (unsigned i = 0; i < n && !median; i++) {
            seen += counts[i];
            median = seen >= (total + 1) / 2 ? upper[i] : 0;
        }
        g_assert_cmpuint(median, ==, stats_of(e).fault_latency_p50_ns);
        break;
    }
}

/* Dropping a resident page's mapping keeps it: the next touch is a MINOR fault. */
static void test_minor_faults(void)
{
    BfEngineConfig config = make_config("minor", 8 * MiB, 0, NULL);
    g_autoptr(BfEngine) e = NULL;
    BfEngineStats before, after;
    uint8_t *ram;

    config.tunables.scan_period_ms = 3600000;   /* no scanner faults in the count */
    e = engine_or_skip(&config);
    if (!e) {
        return;
    }
    ram = bf_engine_guest_ram(e);
    fill(ram, 0, 8 * MiB, 3);
    before = stats_of(e);
    g_assert_true(bf_engine_drop_mappings(e, 0, 2 * MiB, NULL));
    check(ram, 0, 2 * MiB, 3);
    after = stats_of(e);
    g_assert_cmpuint(after.faults_minor - before.faults_minor, ==, 2 * MiB / PAGE);
    g_assert_cmpuint(after.faults_missing, ==, before.faults_missing);
    g_assert_cmpuint(after.resident, ==, 8 * MiB);
    check(ram, 0, 8 * MiB, 3);
}

/* Only the engine's userfaultfd may track its RAM (why postcopy is vetoed). */
static void test_second_uffd_refused(void)
{
    BfEngineConfig config = make_config("second", 8 * MiB, 0, NULL);
    g_autoptr(BfEngine) e = engine_or_skip(&config);
    g_autoptr(GError) err = NULL;
    int uffd;

    if (!e) {
        return;
    }
    uffd = bf_uffd_open(BF_UFFD_REQUIRED_FEATURES, &err);
    g_assert_no_error(err);
    g_assert_false(bf_uffd_register(uffd, bf_engine_guest_ram(e), 8 * MiB, &err));
    g_assert_error(err, BF_ERROR, BF_ERROR_INVALID);
    g_assert_nonnull(strstr(err->message, "another userfaultfd already tracks it"));
    close(uffd);
}

/*
 * The guest writes more than its limit: pages go to the pool and come back, every byte
 * survives, the limit holds, and pages restored and only read are evicted again for free.
 */
static void test_evict_restore(void)
{
    g_autoptr(BfStore) store = bf_store_new(256 * MiB);
    BfEngineConfig config = make_config("evict", 32 * MiB, 8 * MiB, store);
    g_autoptr(BfEngine) e = connected_or_skip(&config);
    BfEngineStats stats, before;
    uint8_t *ram;

    if (!e) {
        return;
    }
    ram = bf_engine_guest_ram(e);

    fill(ram, 0, 32 * MiB, 11);
    WAIT_FOR(e, st, SETTLED(st, 8 * MiB));
    stats = stats_of(e);
    g_assert_cmpuint(stats.remote, >=, 24 * MiB - 64 * PAGE);
    g_assert_cmpuint(stats.remote + stats.resident + stats.zero, ==, 32 * MiB);
    g_assert_cmpuint(stats.pages_evicted, >=, stats.remote / PAGE);
    g_assert_cmpuint(stats.pool_bytes_sent, >=, stats.remote);

    /* Read it all back: faults restore what the pool holds, and eviction keeps going. */
    check(ram, 0, 32 * MiB, 11);
    stats = stats_of(e);
    g_assert_cmpuint(stats.pages_restored, >=, 16 * MiB / PAGE);
    g_assert_cmpuint(stats.resident, <=, 8 * MiB + 64 * PAGE);
    g_assert_cmpuint(stats.pool_bytes_received, ==, stats.pages_restored * PAGE);

    /*
     * Pages only read since their restoration go back without a transfer: in another pass,
     * only pages still resident (and dirty) from the writing may be sent.
     */
    before = stats_of(e);
    check(ram, 0, 32 * MiB, 11);
    stats = stats_of(e);
    g_assert_cmpuint(stats.clean_evictions - before.clean_evictions, >=,
                     (32 * MiB - 2 * 8 * MiB) / PAGE);
    g_assert_cmpuint(stats.pool_bytes_sent - before.pool_bytes_sent, <=, before.resident);
    g_assert_cmpuint(stats.faults_wp, ==, before.faults_wp);

    /*
     * Only read in their last stay, the pages came back write-protected (READ_ONLY): the
     * first write to each takes a write-protect fault, and makes it dirty again.
     * (/engine/evict/clean-write writes pages that came back writable.)
     */
    before = stats_of(e);
    fill(ram, 0, 32 * MiB, 12);
    check(ram, 0, 32 * MiB, 12);
    stats = stats_of(e);
    g_assert_cmpuint(stats.faults_wp - before.faults_wp, >, 16 * MiB / PAGE);
    g_assert_cmpuint(stats.pool_bytes_sent - before.pool_bytes_sent, >=, 24 * MiB);
}

/* Zero pages cost nothing anywhere: evicted without a transfer, held nowhere. */
static void test_zero_pages(void)
{
    g_autoptr(BfStore) store = bf_store_new(256 * MiB);
    BfEngineConfig config = make_config("zero", 32 * MiB, 32 * MiB, store);
    g_autoptr(BfEngine) e = connected_or_skip(&config);
    g_autoptr(GError) err = NULL;
    volatile uint8_t *ram;
    BfStoreStats store_stats;
    BfEngineStats stats;
    uint64_t sum = 0;

    if (!e) {
        return;
    }
    ram = bf_engine_guest_ram(e);
    for (uint64_t off = 0; off < 24 * MiB; off += PAGE) {
        sum += ram[off];                /* read: each page is zero-filled */
    }
    ram[0] = 1;                         /* and one dirty page */
    g_assert_cmpuint(sum, ==, 0);
    g_assert_true(bf_engine_set_local_limit(e, 4 * MiB, &err));
    WAIT_FOR(e, st, st.resident <= 4 * MiB);
    stats = stats_of(e);
    g_assert_cmpuint(stats.zero, >=, 19 * MiB);
    g_assert_cmpuint(stats.pool_bytes_sent, <=, PAGE);
    bf_store_get_stats(store, &store_stats);
    g_assert_cmpuint(store_stats.stored_pages, <=, 1);

    /* They read back as zeroes. */
    for (uint64_t off = PAGE; off < 24 * MiB; off += PAGE) {
        sum += ram[off + 17];
    }
    g_assert_cmpuint(sum, ==, 0);
    g_assert_cmpuint(ram[0], ==, 1);
}

/* blowfish-restore: everything comes back, the limit is lifted, data intact. */
static void test_restore_all(void)
{
    g_autoptr(BfStore) store = bf_store_new(256 * MiB);
    BfEngineConfig config = make_config("restore", 32 * MiB, 8 * MiB, store);
    g_autoptr(BfEngine) e = connected_or_skip(&config);
    g_autoptr(GError) err = NULL;
    BfEngineStats stats;
    uint8_t *ram;

    if (!e) {
        return;
    }
    ram = bf_engine_guest_ram(e);
    fill(ram, 0, 32 * MiB, 21);
    WAIT_FOR(e, st, SETTLED(st, 8 * MiB));
    g_assert_cmpuint(stats_of(e).remote, >, 16 * MiB);

    g_assert_true(bf_engine_restore_all(e, &err));
    WAIT_FOR(e, st, !st.restoring);
    stats = stats_of(e);
    g_assert_cmpuint(stats.remote, ==, 0);
    g_assert_cmpuint(stats.resident, ==, 32 * MiB);
    g_assert_cmpuint(stats.local_limit, ==, 32 * MiB);
    /* Reading causes no fault but the scanner's: everything is mapped and clean. */
    check(ram, 0, 32 * MiB, 21);
    g_assert_cmpuint(stats_of(e).pages_restored, <=, stats.pages_restored);
}

/* Waits (60 s at most) until @store holds at most @pages pages; returns its stats then. */
static BfStoreStats wait_store_at_most(BfStore *store, uint64_t pages)
{
    BfStoreStats stats;

    for (int tries = 0;; tries++) {
        bf_store_get_stats(store, &stats);
        if (stats.stored_pages <= pages) {
            return stats;
        }
        g_assert_cmpint(tries, <, 6000);
        g_usleep(10 * 1000);
    }
}

/*
 * A full pool refuses each eviction batch, which the engine then cancels; a range the guest
 * frees meanwhile must still read as zero, the pages of a cancelled batch included. Many
 * rounds, so that discards meet batches in flight.
 */
static void test_discard_pool_full(void)
{
    g_autoptr(BfStore) store = bf_store_new(2 * MiB);
    BfEngineConfig config = make_config("discard-full", 16 * MiB, 4 * MiB, store);
    g_autoptr(BfEngine) e = NULL;
    uint8_t *ram;

    config.tunables.scan_period_ms = 10;
    e = connected_or_skip(&config);
    if (!e) {
        return;
    }
    ram = bf_engine_guest_ram(e);
    for (int round = 0; round < 25; round++) {
        fill(ram, 0, 16 * MiB, 20 + round);
        WAIT_FOR(e, st, st.pool_full);
        g_assert_cmpint(madvise(ram, 16 * MiB, MADV_DONTNEED), ==, 0);
        for (uint64_t off = 0; off < 16 * MiB; off += PAGE) {
            if (ram[off] || ram[off + PAGE - 1]) {
                g_printerr("round %d: page %" G_GUINT64_FORMAT " kept its data after "
                           "the guest freed it\n", round, (guint64)(off / PAGE));
                g_assert_not_reached();
            }
        }
    }
}

/*
 * What QEMU does with pages the guest reported free (or a balloon took): MADV_DONTNEED on
 * guest RAM. Those pages leave host memory and the pool at once, and read as zero; the
 * others keep their bytes.
 */
static void test_discard_frees(void)
{
    g_autoptr(BfStore) store = bf_store_new(256 * MiB);
    BfEngineConfig config = make_config("discard", 32 * MiB, 32 * MiB, store);
    g_autoptr(BfEngine) e = connected_or_skip(&config);
    g_autoptr(GError) err = NULL;
    BfStoreStats pool_before, pool_after;
    BfEngineStats before, after;
    uint8_t *ram;

    if (!e) {
        return;
    }
    ram = bf_engine_guest_ram(e);
    fill(ram, 0, 32 * MiB, 91);
    /* Half of it to the pool, so that the discarded range is resident and remote both. */
    g_assert_true(bf_engine_set_local_limit(e, 16 * MiB, &err));
    WAIT_FOR(e, st, SETTLED(st, SETTLED_UNDER_16M));
    g_assert_true(bf_engine_set_local_limit(e, 32 * MiB, &err));
    before = stats_of(e);
    bf_store_get_stats(store, &pool_before);
    g_assert_cmpuint(before.remote, >=, 12 * MiB);

    g_assert_cmpint(madvise(ram + 4 * MiB, 24 * MiB, MADV_DONTNEED), ==, 0);
    WAIT_FOR(e, st, st.free_reports > before.free_reports);
    after = stats_of(e);
    g_assert_cmpuint(after.free, ==, 24 * MiB);
    g_assert_cmpuint(after.free_reports, ==, before.free_reports + 1);
    g_assert_cmpuint(after.resident + after.remote + after.zero + after.free, ==, 32 * MiB);
    g_assert_cmpuint(after.resident + after.remote, <=, 8 * MiB);
    /* The pool lets go of the copies of freed pages. */
    pool_after = wait_store_at_most(store, 8 * MiB / PAGE);
    g_assert_cmpuint(pool_before.stored_pages, >, pool_after.stored_pages);
    /* ...and says so: the engine asks each scan period. */
    WAIT_FOR(e, st, st.pool_stored <= 8 * MiB);

    check(ram, 0, 4 * MiB, 91);
    check(ram, 28 * MiB, 4 * MiB, 91);
    for (uint64_t off = 4 * MiB; off < 28 * MiB; off += 512) {
        g_assert_cmpuint(ram[off], ==, 0);
    }
    /* Freed pages written again are ordinary pages. */
    fill(ram, 4 * MiB, 24 * MiB, 92);
    check(ram, 4 * MiB, 24 * MiB, 92);
    g_assert_cmpuint(stats_of(e).free, ==, 0);
}

/*
 * The guest frees pages and writes them again while eviction runs under a low limit (what
 * alloc-free does under its limit): the pool lets go of a freed page's copy, never of a copy
 * written since.
 */
static void test_discard_under_eviction(void)
{
    g_autoptr(BfStore) store = bf_store_new(256 * MiB);
    BfEngineConfig config = make_config("discard-evict", 32 * MiB, 4 * MiB, store);
    g_autoptr(BfEngine) e = connected_or_skip(&config);
    uint8_t *ram;

    if (!e) {
        return;
    }
    ram = bf_engine_guest_ram(e);
    for (uint8_t round = 0; round < 8; round++) {
        fill(ram, 0, 32 * MiB, 100 + round);
        for (uint64_t off = 0; off < 32 * MiB; off += 2 * MiB) {
            g_assert_cmpint(madvise(ram + off, MiB, MADV_DONTNEED), ==, 0);
            fill(ram, off, MiB, 200 + round);
        }
        for (uint64_t off = 0; off < 32 * MiB; off += 2 * MiB) {
            check(ram, off, MiB, 200 + round);
            check(ram, off + MiB, MiB, 100 + round);
        }
    }
    g_assert_cmpuint(stats_of(e).free_reports, >=, 8 * 16);
}

/*
 * Free page hinting: the pages hinted free go (resident or remote, their pool copies too)
 * unless written since the round began; outside a round a hint does nothing.
 */
static void test_free_hints(void)
{
    g_autoptr(BfStore) store = bf_store_new(256 * MiB);
    BfEngineConfig config = make_config("hints", 32 * MiB, 32 * MiB, store);
    g_autoptr(BfEngine) e = connected_or_skip(&config);
    g_autoptr(GError) err = NULL;
    BfEngineStats before, after;
    uint8_t *ram;

    if (!e) {
        return;
    }
    ram = bf_engine_guest_ram(e);
    fill(ram, 0, 32 * MiB, 61);
    g_assert_true(bf_engine_set_local_limit(e, 16 * MiB, &err));
    WAIT_FOR(e, st, SETTLED(st, SETTLED_UNDER_16M));
    g_assert_true(bf_engine_set_local_limit(e, 32 * MiB, &err));
    before = stats_of(e);
    g_assert_cmpuint(before.remote, >=, 12 * MiB);

    g_assert_true(bf_engine_hint_begin(e, TRUE, &err));
    g_assert_false(bf_engine_hint_begin(e, TRUE, &err));
    g_assert_error(err, BF_ERROR, BF_ERROR_INVALID);
    g_clear_error(&err);
    /*
     * Written after the round began: kept, whether resident or remote before. The engine
     * tracks writes by 2 MiB block (the guest hints 4 MiB ones): write whole blocks.
     */
    fill(ram, 8 * MiB, 2 * MiB, 62);
    fill(ram, 24 * MiB, 2 * MiB, 62);
    /* Written with zeroes (a guest with init_on_alloc zeroes what it hints): freed. */
    memset(ram + 12 * MiB, 0, 2 * MiB);
    memset(ram + 28 * MiB, 0, 2 * MiB);
    ram[28 * MiB + 5 * PAGE + 17] = 1;
    /* Partial pages at the ends of a hint are kept too. */
    bf_engine_hint_free(e, 100, 32 * MiB - 4 * PAGE);
    bf_engine_hint_free(e, 32 * MiB - 4 * PAGE, 3 * PAGE);
    bf_engine_hint_end(e);

    after = stats_of(e);
    g_assert_cmpuint(after.free, ==, 32 * MiB - 4 * MiB - 3 * PAGE);
    g_assert_cmpuint(after.free_hinted - before.free_hinted, ==, after.free);
    g_assert_cmpuint(after.free_reports, ==, before.free_reports);
    g_assert_cmpuint(after.resident + after.remote + after.zero + after.free, ==, 32 * MiB);
    check(ram, 0, PAGE, 61);
    check(ram, 8 * MiB, 2 * MiB, 62);
    check(ram, 24 * MiB, 2 * MiB, 62);
    check(ram, 32 * MiB - PAGE, PAGE, 61);
    g_assert_cmpuint(ram[28 * MiB + 5 * PAGE + 17], ==, 1);
    for (uint64_t off = PAGE; off < 32 * MiB - PAGE; off += 512) {
        if ((off < 8 * MiB || off >= 10 * MiB) && (off < 24 * MiB || off >= 26 * MiB) &&
            off != 28 * MiB + 5 * PAGE) {
            g_assert_cmpuint(ram[off], ==, 0);
        }
    }
    /*
     * The pool lets go of the copies of freed pages. (Asked first, the engine could answer
     * from a figure older than the eviction above: it asks the node each scan period.)
     */
    wait_store_at_most(store, 4 * MiB / PAGE);
    WAIT_FOR(e, st, st.pool_stored <= 4 * MiB);

    /* Outside a round, hints do nothing. */
    fill(ram, 0, 32 * MiB, 63);
    bf_engine_hint_free(e, 0, 32 * MiB);
    g_usleep(50 * 1000);
    check(ram, 0, 32 * MiB, 63);
    g_assert_cmpuint(stats_of(e).free, ==, 0);
}

/*
 * A round that does not track writes costs nothing: of the hinted pages it frees those that
 * read zero (a guest with init_on_alloc zeroes what it hints), and counts the others kept.
 */
static void test_free_hints_untracked(void)
{
    BfEngineConfig config = make_config("hint-zero", 8 * MiB, 8 * MiB, NULL);
    g_autoptr(BfEngine) e = engine_or_skip(&config);
    g_autoptr(GError) err = NULL;
    BfEngineStats stats;
    uint8_t *ram;

    if (!e) {
        return;
    }
    ram = bf_engine_guest_ram(e);
    fill(ram, 0, 8 * MiB, 65);
    g_assert_true(bf_engine_hint_begin(e, FALSE, &err));
    memset(ram + 2 * MiB, 0, 4 * MiB);
    ram[3 * MiB + 9] = 1;
    bf_engine_hint_free(e, 1 * MiB, 6 * MiB);
    bf_engine_hint_end(e);

    stats = stats_of(e);
    g_assert_cmpuint(stats.free, ==, 4 * MiB - PAGE);
    g_assert_cmpuint(stats.free_hinted, ==, 4 * MiB - PAGE);
    g_assert_cmpuint(stats.hint_kept, ==, 2 * MiB + PAGE);
    check(ram, 0, 2 * MiB, 65);
    check(ram, 6 * MiB, 2 * MiB, 65);
    g_assert_cmpuint(ram[3 * MiB + 9], ==, 1);
    for (uint64_t off = 2 * MiB; off < 6 * MiB; off++) {
        g_assert_cmpuint(ram[off], ==, off == 3 * MiB + 9);
    }
}

/*
 * The guest's balloon driver hands hinted pages back early under memory pressure, and the
 * guest writes them while the hints are still on their way: whatever is written after the
 * round began is never lost, however the hints and the writes interleave.
 */
static void test_free_hints_race(void)
{
    BfEngineConfig config = make_config("hint-race", 32 * MiB, 32 * MiB, NULL);
    g_autoptr(BfEngine) e = engine_or_skip(&config);
    g_autoptr(GError) err = NULL;
    uint8_t *ram;

    if (!e) {
        return;
    }
    ram = bf_engine_guest_ram(e);
    fill(ram, 0, 32 * MiB, 71);
    for (int round = 0; round < 4; round++) {
        WriterJob job = {
            .ram = ram, .start = 16 * MiB, .len = 16 * MiB, .seed = 72 + round, .rounds = 1,
        };
        GThread *writer;

        g_assert_true(bf_engine_hint_begin(e, TRUE, &err));
        writer = g_thread_new("writer", writer_thread, &job);
        /* From the end, towards the writer: it writes some pages before their hint comes. */
        for (uint64_t off = 32 * MiB; off > 16 * MiB; off -= 256 * 1024) {
            bf_engine_hint_free(e, off - 256 * 1024, 256 * 1024);
            g_usleep(500);
        }
        g_thread_join(writer);
        bf_engine_hint_end(e);
        check(ram, 0, 16 * MiB, 71);
        check(ram, 16 * MiB, 16 * MiB, 72 + round);
    }
    g_test_message("of 64 MiB hinted, %" G_GUINT64_FORMAT " MiB freed, the rest kept: "
                   "written first", (guint64)(stats_of(e).free_hinted / MiB));
}

typedef struct {
    uint8_t *ram;
    uint64_t start, len;
    _Atomic bool zeroed, stop;
} SweepJob;

/*
 * A guest that zeroes pages (init_on_alloc) and then uses them: zeroes its range, then
 * sweeps it until told to stop, each sweep checking the counter the last one left in every
 * page and writing the next: a write lost in a sweep shows in the next.
 */
static gpointer sweep_thread(gpointer opaque)
{
    SweepJob *job = opaque;
    uint8_t expect = 0;
    bool last = false;

    memset(job->ram + job->start, 0, job->len);
    atomic_store(&job->zeroed, true);
    while (!last) {
        last = atomic_load(&job->stop);
        for (uint64_t off = job->start; off < job->start + job->len; off += PAGE) {
            g_assert_cmpuint(job->ram[off + 100], ==, expect);
            job->ram[off + 100] = expect + 1;
            if (off % (64 * PAGE) == 0) {
                g_usleep(20);
            }
        }
        expect++;
    }
    return NULL;
}

/*
 * Pages zeroed after the round began are freed on their hint, and a write landing while the
 * engine looks at one is not lost.
 */
static void test_free_hints_zeroed_race(void)
{
    BfEngineConfig config = make_config("hint-zero", 32 * MiB, 32 * MiB, NULL);
    g_autoptr(BfEngine) e = engine_or_skip(&config);
    g_autoptr(GError) err = NULL;
    uint8_t *ram;

    if (!e) {
        return;
    }
    ram = bf_engine_guest_ram(e);
    fill(ram, 0, 32 * MiB, 81);
    for (int round = 0; round < 8; round++) {
        SweepJob job = { .ram = ram, .start = 16 * MiB, .len = 16 * MiB };
        GThread *sweeper;

        g_assert_true(bf_engine_hint_begin(e, round % 2, &err));
        sweeper = g_thread_new("sweeper", sweep_thread, &job);
        while (!atomic_load(&job.zeroed)) {
            g_usleep(100);
        }
        for (uint64_t off = 16 * MiB; off < 32 * MiB; off += 16 * PAGE) {
            bf_engine_hint_free(e, off, 16 * PAGE);
        }
        bf_engine_hint_end(e);
        atomic_store(&job.stop, true);
        g_thread_join(sweeper);
        check(ram, 0, 16 * MiB, 81);
    }
    g_test_message("%" G_GUINT64_FORMAT " MiB freed on hints in 8 rounds of 16 MiB",
                   (guint64)(stats_of(e).free_hinted / MiB));
}

/* Writers hammer their pages while eviction runs under them: no byte may be lost. */
static void test_stress_writers(void)
{
    enum { THREADS = 4 };
    g_autoptr(BfStore) store = bf_store_new(256 * MiB);
    BfEngineConfig config = make_config("stress", 32 * MiB, 6 * MiB, store);
    g_autoptr(BfEngine) e = connected_or_skip(&config);
    WriterJob jobs[THREADS];
    GThread *threads[THREADS];
    BfEngineStats stats;

    if (!e) {
        return;
    }
    for (int i = 0; i < THREADS; i++) {
        /* Interleaved 1 MiB slices, so that threads share eviction batches. */
        jobs[i] = (WriterJob) {
            .ram = bf_engine_guest_ram(e), .start = i * 8 * MiB, .len = 8 * MiB,
            .seed = 17 * i, .rounds = 4,
        };
        threads[i] = g_thread_new("writer", writer_thread, &jobs[i]);
    }
    for (int i = 0; i < THREADS; i++) {
        g_thread_join(threads[i]);
    }
    for (int i = 0; i < THREADS; i++) {
        check(jobs[i].ram, jobs[i].start, jobs[i].len, jobs[i].seed + jobs[i].rounds - 1);
    }
    stats = stats_of(e);
    g_assert_cmpuint(stats.pages_evicted, >, 8 * MiB / PAGE);
    g_assert_cmpuint(stats.pages_restored, >, 8 * MiB / PAGE);
    g_assert_cmpuint(stats.resident, <=, 6 * MiB + 64 * PAGE);
}

/* In a PageJob's model, a page the guest freed: it must read as zero. */
#define FREED 0

/* Guest threads working on 32 MiB of guest RAM, each on every PAGE_JOBS-th page. */
enum { PAGE_JOBS = 4, PAGE_JOB_RAM = 32 * MiB };

typedef struct {
    BfEngine *e;
    uint8_t *ram;
    uint32_t first, pages;         /* its pages: first, first + PAGE_JOBS, ... */
    uint8_t *seeds;                /* the seed each was last written with, or FREED */
    uint32_t seed;                 /* of its random walk */
    int accesses;
} PageJob;

static uint64_t page_job_offset(const PageJob *job, uint32_t k)
{
    return (uint64_t)(job->first + k * PAGE_JOBS) * PAGE;
}

/* The next seed to write page @k with (never FREED). */
static uint8_t page_job_next_seed(PageJob *job, uint32_t k)
{
    job->seeds[k] = job->seeds[k] == 255 ? 1 : job->seeds[k] + 1;
    return job->seeds[k];
}

static void check_model(const uint8_t *ram, uint64_t start, uint8_t seed)
{
    if (seed != FREED) {
        check(ram, start, PAGE, seed);
        return;
    }
    for (uint64_t off = start; off < start + PAGE; off++) {
        if (ram[off]) {
            g_printerr("offset 0x%" G_GINT64_MODIFIER "x reads 0x%02x after it was freed\n",
                       (guint64)off, ram[off]);
            g_assert_not_reached();
        }
    }
}

/*
 * Fills the jobs' RAM with @seed and reads it back (past the local limit, so that most pages
 * are evicted and come back clean), then starts the jobs, each running @fn. Returns the
 * engine's stats from just before they started.
 */
static BfEngineStats page_jobs_start(PageJob *jobs, GThread **threads, BfEngine *e, uint8_t *seeds,
                            uint8_t seed, int accesses, GThreadFunc fn)
{
    uint8_t *ram = bf_engine_guest_ram(e);
    BfEngineStats before;

    memset(seeds, seed, PAGE_JOB_RAM / PAGE);
    fill(ram, 0, PAGE_JOB_RAM, seed);
    check(ram, 0, PAGE_JOB_RAM, seed);
    before = stats_of(e);
    for (int i = 0; i < PAGE_JOBS; i++) {
        jobs[i] = (PageJob) {
            .e = e, .ram = ram, .first = i, .pages = PAGE_JOB_RAM / PAGE / PAGE_JOBS,
            .seeds = seeds + i * (PAGE_JOB_RAM / PAGE / PAGE_JOBS),
            .seed = g_test_rand_int(), .accesses = accesses,
        };
        threads[i] = g_thread_new("page-job", fn, &jobs[i]);
    }
    return before;
}

/* Waits for the jobs, then checks every page against what its job did last. */
static void page_jobs_finish(PageJob *jobs, GThread **threads)
{
    for (int i = 0; i < PAGE_JOBS; i++) {
        g_thread_join(threads[i]);
    }
    for (int i = 0; i < PAGE_JOBS; i++) {
        for (uint32_t k = 0; k < jobs[i].pages; k++) {
            check_model(jobs[i].ram, page_job_offset(&jobs[i], k), jobs[i].seeds[k]);
        }
    }
}

typedef struct {
    uint8_t *ram;
    uint64_t blocks;
    _Atomic bool stop;
} FaultAroundJob;

/* Frees the first page of each 64 KiB block and reads it again: a fault per block. */
static gpointer fault_around_thread(gpointer opaque)
{
    FaultAroundJob *job = opaque;

    while (!atomic_load(&job->stop)) {
        for (uint64_t b = 0; b < job->blocks; b++) {
            volatile uint8_t *first = job->ram + b * 16 * PAGE;

            g_assert_cmpint(madvise((void *)first, PAGE, MADV_DONTNEED), ==, 0);
            g_assert_cmpuint(*first, ==, 0);
        }
    }
    return NULL;
}

typedef struct {
    BfEngine *e;
    uint64_t pages;
    bool touch;                 /* read each page after dropping its mapping */
    _Atomic bool stop;
} ZapJob;

/*
 * Drops the mappings of one page after another, as the scanner drops its samples', and with
 * @touch reads the page at once: a fault that maps it back.
 */
static gpointer zap_thread(gpointer opaque)
{
    ZapJob *job = opaque;
    uint8_t *ram = bf_engine_guest_ram(job->e);

    while (!atomic_load(&job->stop)) {
        for (uint64_t p = 0; p < job->pages; p++) {
            g_assert_true(bf_engine_drop_mappings(job->e, p * PAGE, PAGE, NULL));
            if (job->touch) {
                (void)*(volatile uint8_t *)(ram + p * PAGE);
            }
        }
    }
    return NULL;
}

/*
 * QEMU discards a page (the guest freed it) while the engine drops that very page's mapping,
 * then the guest writes it at once: the write stays. The two REMOVE events look the same;
 * QEMU's taken for the engine's would free the page late, after the write.
 */
static void discard_meets_zap(bool touch)
{
    enum { PAGES = 4, ROUNDS = 5000 };
    BfEngineConfig config = make_config("discard-zap", 64 * PAGE, 0, NULL);
    g_autoptr(BfEngine) e = engine_or_skip(&config);
    uint8_t seeds[PAGES];
    ZapJob job;
    GThread *thread;
    uint8_t *ram;

    if (!e) {
        return;
    }
    ram = bf_engine_guest_ram(e);
    job = (ZapJob) { .e = e, .pages = PAGES, .touch = touch };
    memset(seeds, 1, sizeof(seeds));
    fill(ram, 0, PAGES * PAGE, 1);
    thread = g_thread_new("zap", zap_thread, &job);
    for (int round = 0; round < ROUNDS; round++) {
        uint64_t page = round % PAGES;

        g_assert_cmpint(madvise(ram + page * PAGE, PAGE, MADV_DONTNEED), ==, 0);
        seeds[page] = 2 + round % 250;
        fill(ram, page * PAGE, PAGE, seeds[page]);
        for (uint64_t p = 0; p < PAGES; p++) {
            check(ram, p * PAGE, PAGE, seeds[p]);
        }
    }
    atomic_store(&job.stop, true);
    g_thread_join(thread);
    /* Each discard was freed once, and no zap was taken for one in the end. */
    WAIT_FOR(e, st, st.free_reports >= ROUNDS);
    g_assert_cmpuint(stats_of(e).free_reports, ==, ROUNDS);
}

static void test_discard_meets_zap(void)
{
    discard_meets_zap(false);
}

/*
 * The same, with each page read again as soon as its mapping is dropped: QEMU's discard then
 * meets the fault thread mapping the page back. Mapped after QEMU's madvise(), the page would
 * take the guest's write, and lose it when the discard's turn came.
 */
static void test_discard_meets_map_back(void)
{
    discard_meets_zap(true);
}

/*
 * The guest frees a page and writes it at once (QEMU has discarded it: the guest may use it
 * again) while faults on its block zero-fill the free pages around them: the write stays.
 * A page zero-filled there after QEMU's madvise() would take the write, and lose it when
 * the discard's turn came.
 */
static void test_discard_under_fill_around(void)
{
    enum { BLOCKS = 64, ROUNDS = 300 };
    BfEngineConfig config = make_config("fill-around", BLOCKS * 16 * PAGE, 0, NULL);
    g_autoptr(BfEngine) e = engine_or_skip(&config);
    uint8_t seeds[BLOCKS * 16] = { 0 };
    FaultAroundJob job;
    GThread *thread;

    if (!e) {
        return;
    }
    job = (FaultAroundJob) { .ram = bf_engine_guest_ram(e), .blocks = BLOCKS };
    thread = g_thread_new("fault-around", fault_around_thread, &job);
    for (int round = 0; round < ROUNDS; round++) {
        for (uint64_t b = 0; b < BLOCKS; b++) {
            uint64_t page = b * 16 + 1 + round % 15;

            /* Twice: the second discard may meet the page free, and a fault filling it. */
            g_assert_cmpint(madvise(job.ram + page * PAGE, PAGE, MADV_DONTNEED), ==, 0);
            g_assert_cmpint(madvise(job.ram + page * PAGE, PAGE, MADV_DONTNEED), ==, 0);
            seeds[page] = 1 + round % 250;
            fill(job.ram, page * PAGE, PAGE, seeds[page]);
        }
    }
    atomic_store(&job.stop, true);
    g_thread_join(thread);
    for (uint64_t page = 0; page < BLOCKS * 16; page++) {
        check_model(job.ram, page * PAGE, seeds[page]);
    }
}

/*
 * Reads and rewrites its pages at random, three reads to a write, each a whole page: pages
 * come back clean, are evicted again while it reads and writes them, and must read back as
 * last written.
 */
static gpointer clean_job_thread(gpointer opaque)
{
    PageJob *job = opaque;
    GRand *rand = g_rand_new_with_seed(job->seed);

    for (int i = 0; i < job->accesses; i++) {
        uint32_t k = g_rand_int_range(rand, 0, job->pages);
        uint64_t start = page_job_offset(job, k);

        if (g_rand_int_range(rand, 0, 4)) {
            check(job->ram, start, PAGE, job->seeds[k]);
        } else {
            fill(job->ram, start, PAGE, page_job_next_seed(job, k));
        }
    }
    g_rand_free(rand);
    return NULL;
}

/*
 * A clean page (its pool copy current) is mapped writable, or write-protected if READ_ONLY,
 * and write-protected while it is evicted: writes landing on it before, while and after its
 * hash is compared, and reads of it until the punch, must lose nothing.
 */
static void test_clean_under_access(void)
{
    g_autoptr(BfStore) store = bf_store_new(256 * MiB);
    BfEngineConfig config = make_config("clean", PAGE_JOB_RAM, 6 * MiB, store);
    g_autoptr(BfEngine) e = connected_or_skip(&config);
    g_autofree uint8_t *seeds = g_malloc(PAGE_JOB_RAM / PAGE);
    PageJob jobs[PAGE_JOBS];
    GThread *threads[PAGE_JOBS];
    BfEngineStats before, after;

    if (!e) {
        return;
    }
    before = page_jobs_start(jobs, threads, e, seeds, 61, 20000, clean_job_thread);
    page_jobs_finish(jobs, threads);
    after = stats_of(e);
    g_test_message("%" G_GUINT64_FORMAT " clean evictions, %" G_GUINT64_FORMAT
                   " pages sent, %" G_GUINT64_FORMAT " write-protect faults",
                   after.clean_evictions - before.clean_evictions,
                   (guint64)((after.pool_bytes_sent - before.pool_bytes_sent) / PAGE),
                   after.faults_wp - before.faults_wp);
    g_assert_cmpuint(after.clean_evictions - before.clean_evictions, >, 4 * MiB / PAGE);
    g_assert_cmpuint(after.pool_bytes_sent - before.pool_bytes_sent, >, 4 * MiB);
    g_assert_cmpuint(after.resident, <=, 6 * MiB + 64 * PAGE);
}

/*
 * A guest thread doing a bit of everything to its pages, at random: reading a page whole or
 * one byte of it, rewriting it, freeing it (QEMU discarding a reported free page), or dropping
 * its mapping (as the scanner does). Each read is checked against what it last did.
 */
static gpointer mixed_job_thread(gpointer opaque)
{
    PageJob *job = opaque;
    GRand *rand = g_rand_new_with_seed(job->seed);

    for (int i = 0; i < job->accesses; i++) {
        uint32_t k = g_rand_int_range(rand, 0, job->pages);
        uint64_t start = page_job_offset(job, k);
        int op = g_rand_int_range(rand, 0, 100);

        if (op < 45) {
            check_model(job->ram, start, job->seeds[k]);
        } else if (op < 55) {
            uint64_t off = start + g_rand_int_range(rand, 0, PAGE);
            uint8_t byte = job->ram[off];

            if (job->seeds[k] == FREED) {
                g_assert_cmpuint(byte, ==, 0);
            } else {
                check(job->ram, off, 1, job->seeds[k]);
            }
        } else if (op < 80) {
            fill(job->ram, start, PAGE, page_job_next_seed(job, k));
        } else if (op < 92) {
            g_assert_cmpint(madvise(job->ram + start, PAGE, MADV_DONTNEED), ==, 0);
            job->seeds[k] = FREED;
        } else {
            g_autoptr(GError) err = NULL;

            g_assert_true(bf_engine_drop_mappings(job->e, start, PAGE, &err));
        }
    }
    g_rand_free(rand);
    return NULL;
}

/*
 * Guest threads read, write, free and rewrite their pages at random while the operator moves
 * the local limit and restores everything now and then: whatever they did last to a page is
 * what it holds, through every eviction, restoration, discard and clean punch.
 */
static void test_mixed_ops(void)
{
    static const uint64_t limits[] = { 4 * MiB, 12 * MiB, 6 * MiB, 0, 5 * MiB };
    g_autoptr(BfStore) store = bf_store_new(256 * MiB);
    BfEngineConfig config = make_config("mixed", PAGE_JOB_RAM, 6 * MiB, store);
    g_autoptr(BfEngine) e = connected_or_skip(&config);
    g_autofree uint8_t *seeds = g_malloc(PAGE_JOB_RAM / PAGE);
    PageJob jobs[PAGE_JOBS];
    GThread *threads[PAGE_JOBS];
    BfEngineStats before, after;

    if (!e) {
        return;
    }
    before = page_jobs_start(jobs, threads, e, seeds, 31, 30000, mixed_job_thread);
    /* The operator: a limit (0: restore everything) every 20 ms while the threads run. */
    for (guint n = 0; stats_of(e).faults_missing - before.faults_missing < 20000 && n < 500;
         n++) {
        g_autoptr(GError) err = NULL;
        uint64_t limit = limits[n % G_N_ELEMENTS(limits)];

        if (limit) {
            g_assert_true(bf_engine_set_local_limit(e, limit, &err));
        } else {
            g_assert_true(bf_engine_restore_all(e, &err));
        }
        g_usleep(20 * 1000);
    }
    page_jobs_finish(jobs, threads);
    after = stats_of(e);
    g_test_message("%" G_GUINT64_FORMAT " pages evicted (%" G_GUINT64_FORMAT " clean), %"
                   G_GUINT64_FORMAT " restored, %" G_GUINT64_FORMAT " ranges freed",
                   after.pages_evicted - before.pages_evicted,
                   after.clean_evictions - before.clean_evictions,
                   after.pages_restored - before.pages_restored,
                   after.free_reports - before.free_reports);
    g_assert_cmpuint(after.pages_restored - before.pages_restored, >, 4 * MiB / PAGE);
    g_assert_cmpuint(after.clean_evictions - before.clean_evictions, >, MiB / PAGE);
    g_assert_cmpuint(after.free_reports - before.free_reports, >, 1000);
}

typedef struct {
    uint8_t *ram;
    uint64_t len;
    _Atomic bool stop;
} HotLoop;

static gpointer hot_thread(gpointer opaque)
{
    HotLoop *hot = opaque;

    while (!atomic_load(&hot->stop)) {
        for (uint64_t off = 0; off < hot->len; off += PAGE) {
            hot->ram[off + 8]++;
        }
        g_usleep(1000);
    }
    return NULL;
}

/* How many pages of [start, start + len) are in host memory (the memfd's page cache). */
static uint64_t resident_pages(uint8_t *ram, uint64_t start, uint64_t len)
{
    g_autofree unsigned char *vec = g_malloc(len / PAGE);
    uint64_t n = 0;

    g_assert_cmpint(mincore(ram + start, len, vec), ==, 0);
    for (uint64_t i = 0; i < len / PAGE; i++) {
        n += vec[i] & 1;
    }
    return n;
}

/*
 * An engine of @config (64 MiB, connected to its pool) whose RAM holds the pattern of @seed,
 * and a thread that keeps using its 40..48 MiB; NULL if the test is skipped.
 */
static BfEngine *start_with_hot_loop(const BfEngineConfig *config, uint8_t seed,
                                     HotLoop *hot, GThread **thread)
{
    BfEngine *e = connected_or_skip(config);
    uint8_t *ram;

    if (!e) {
        return NULL;
    }
    ram = bf_engine_guest_ram(e);
    fill(ram, 0, 64 * MiB, seed);
    *hot = (HotLoop) { .ram = ram + 40 * MiB, .len = 8 * MiB };
    *thread = g_thread_new("hot", hot_thread, hot);
    return e;
}

/*
 * The scanner ages what the guest leaves alone: lowering the limit evicts the pages nobody
 * touched, and keeps the ones a thread keeps using.
 */
static void test_coldest_first(void)
{
    g_autoptr(BfStore) store = bf_store_new(256 * MiB);
    BfEngineConfig config = make_config("coldest", 64 * MiB, 0, store);
    g_autoptr(BfEngine) e = NULL;
    g_autoptr(GError) err = NULL;
    HotLoop hot;
    GThread *thread;
    uint8_t *ram;

    config.tunables.scan_budget = 16384;        /* a page per region: exact ages */
    e = start_with_hot_loop(&config, 5, &hot, &thread);
    if (!e) {
        return;
    }
    ram = bf_engine_guest_ram(e);
    /* Let the scanner see a few periods: the cold pages age, the hot ones do not. */
    WAIT_FOR(e, st, st.scan_samples >= 3 * 64 * MiB / PAGE);

    g_assert_true(bf_engine_set_local_limit(e, 24 * MiB, &err));
    WAIT_FOR(e, st, st.resident <= 24 * MiB);
    atomic_store(&hot.stop, true);
    g_thread_join(thread);
    /* Nearly all of the hot 8 MiB stayed; what went out was cold. */
    g_assert_cmpuint(resident_pages(ram, 40 * MiB, 8 * MiB), >=, 8 * MiB / PAGE * 9 / 10);
    g_assert_cmpuint(stats_of(e).pages_restored, <, 8 * MiB / PAGE / 10);
    check(ram, 0, 40 * MiB, 5);
}

/*
 * With an idle age and no limit, the pages left unused that long go to the pool while busy
 * ones stay; a restore brings them back and stops that until the limit is set again.
 */
static void test_idle_eviction(void)
{
    g_autoptr(BfStore) store = bf_store_new(256 * MiB);
    BfEngineConfig config = make_config("idle", 64 * MiB, 0, store);
    g_autoptr(BfEngine) e = NULL;
    g_autoptr(GError) err = NULL;
    HotLoop hot;
    GThread *thread;
    uint8_t *ram;

    /* 16 pages per region: the hot loop takes few sampling faults, and is never 200 ms late */
    config.tunables.scan_budget = 1024;
    config.tunables.idle_age = 10;
    e = start_with_hot_loop(&config, 9, &hot, &thread);
    if (!e) {
        return;
    }
    ram = bf_engine_guest_ram(e);
    WAIT_FOR(e, st, st.resident <= 12 * MiB);
    /* Nearly all of the hot 8 MiB stayed; what went out was idle. */
    g_assert_cmpuint(resident_pages(ram, 40 * MiB, 8 * MiB), >=, 8 * MiB / PAGE * 9 / 10);
    atomic_store(&hot.stop, true);
    g_thread_join(thread);
    g_assert_cmpuint(stats_of(e).pages_restored, <, 8 * MiB / PAGE / 10);
    check(ram, 0, 40 * MiB, 9);
    check(ram, 48 * MiB, 16 * MiB, 9);

    g_assert_true(bf_engine_restore_all(e, &err));
    WAIT_FOR(e, st, !st.restoring && st.resident == 64 * MiB);
    g_usleep(15 * 20 * 1000);                   /* idle for longer than the idle age */
    g_assert_cmpuint(stats_of(e).resident, ==, 64 * MiB);

    g_assert_true(bf_engine_set_local_limit(e, 64 * MiB, &err));
    WAIT_FOR(e, st, st.resident <= 4 * MiB);
    check(ram, 0, 40 * MiB, 9);
    check(ram, 48 * MiB, 16 * MiB, 9);
}

/*
 * A write that faults on a remote page: the page comes back writable and dirty. The write
 * takes no second, write-protect fault, and the page's next eviction sends it: left clean,
 * it would go back for free, and come back without the write.
 */
static void test_remote_write(void)
{
    g_autoptr(BfStore) store = bf_store_new(256 * MiB);
    BfEngineConfig config = make_config("remote-write", 16 * MiB, 16 * MiB, store);
    g_autoptr(BfEngine) e = NULL;
    g_autoptr(GError) err = NULL;
    BfEngineStats before, stats;
    uint8_t *ram;

    config.tunables.readahead = 0;      /* each write faults on its own page */
    e = connected_or_skip(&config);
    if (!e) {
        return;
    }
    ram = bf_engine_guest_ram(e);
    fill(ram, 0, 16 * MiB, 41);
    g_assert_true(bf_engine_set_local_limit(e, 4 * MiB, &err));
    WAIT_FOR(e, st, SETTLED(st, 4 * MiB));
    g_assert_true(bf_engine_set_local_limit(e, 16 * MiB, &err));

    before = stats_of(e);
    for (uint64_t off = 0; off < 16 * MiB; off += 16 * PAGE) {
        fill(ram, off, PAGE, 42);
    }
    stats = stats_of(e);
    g_assert_cmpuint(stats.faults_missing - before.faults_missing, >=, 128);
    g_assert_cmpuint(stats.faults_wp, ==, before.faults_wp);

    /*
     * Out and back again: the written pages go out while the others are read, and come back
     * with their writes. Evicted clean, they would have come back without.
     */
    g_assert_true(bf_engine_set_local_limit(e, 4 * MiB, &err));
    for (uint64_t off = 0; off < 16 * MiB; off += PAGE) {
        if (off % (16 * PAGE)) {
            check(ram, off, PAGE, 41);
        }
    }
    before = stats_of(e);
    for (uint64_t off = 0; off < 16 * MiB; off += 16 * PAGE) {
        check(ram, off, PAGE, 42);
    }
    stats = stats_of(e);
    g_assert_cmpuint(stats.faults_missing - before.faults_missing, >=, 128);
}

/*
 * A page written in its last stay comes back from the pool clean, and writable: writing it
 * takes no fault. Its next eviction compares it with its pool copy, and sends it only if it
 * changed. Evicted clean without that look, the written pages would come back without their
 * writes; always sent, the others would cost a transfer each.
 */
static void test_clean_write(void)
{
    g_autoptr(BfStore) store = bf_store_new(256 * MiB);
    BfEngineConfig config = make_config("clean-write", 32 * MiB, 32 * MiB, store);
    g_autoptr(BfEngine) e = connected_or_skip(&config);
    g_autoptr(GError) err = NULL;
    BfEngineStats before, stats;
    uint64_t dirty, resident, written = 0;
    uint8_t *ram;

    if (!e) {
        return;
    }
    ram = bf_engine_guest_ram(e);
    fill(ram, 0, 32 * MiB, 51);
    g_assert_true(bf_engine_set_local_limit(e, 4 * MiB, &err));
    WAIT_FOR(e, st, SETTLED(st, 4 * MiB));
    dirty = stats_of(e).resident / PAGE;        /* never evicted: not clean */
    g_assert_true(bf_engine_set_local_limit(e, 32 * MiB, &err));
    check(ram, 0, 32 * MiB, 51);

    before = stats_of(e);
    for (uint64_t off = 0; off < 32 * MiB; off += 4 * PAGE) {
        fill(ram, off, PAGE, 52);
        written++;
    }
    stats = stats_of(e);
    g_assert_cmpuint(stats.faults_wp, ==, before.faults_wp);
    g_assert_cmpuint(stats.faults_missing, ==, before.faults_missing);

    before = stats_of(e);
    g_assert_true(bf_engine_set_local_limit(e, 4 * MiB, &err));
    WAIT_FOR(e, st, SETTLED(st, 4 * MiB));
    stats = stats_of(e);
    resident = stats.resident / PAGE;
    g_test_message("%" G_GUINT64_FORMAT " pages sent, %" G_GUINT64_FORMAT " clean evictions, %"
                   G_GUINT64_FORMAT " resident",
                   (guint64)((stats.pool_bytes_sent - before.pool_bytes_sent) / PAGE),
                   (guint64)(stats.clean_evictions - before.clean_evictions),
                   (guint64)resident);
    /* Every written page evicted was sent; every other clean one went for free. */
    g_assert_cmpuint((stats.pool_bytes_sent - before.pool_bytes_sent) / PAGE, >=,
                     written - MIN(written, resident));
    g_assert_cmpuint(stats.clean_evictions - before.clean_evictions, >=,
                     32 * MiB / PAGE - written - resident - dirty);
    for (uint64_t off = 0; off < 32 * MiB; off += PAGE) {
        check(ram, off, PAGE, off % (4 * PAGE) ? 51 : 52);
    }
}

/* Sequential faults on remote pages fetch ahead; random ones do not. */
static void test_readahead(void)
{
    g_autoptr(BfStore) store = bf_store_new(256 * MiB);
    BfEngineConfig config = make_config("readahead", 64 * MiB, 64 * MiB, store);
    g_autoptr(BfEngine) e = connected_or_skip(&config);
    g_autoptr(GError) err = NULL;
    BfEngineStats before, stats;
    uint8_t *ram;
    GRand *rand = g_rand_new_with_seed(7);

    if (!e) {
        return;
    }
    ram = bf_engine_guest_ram(e);
    fill(ram, 0, 64 * MiB, 31);
    g_assert_true(bf_engine_set_local_limit(e, 4 * MiB, &err));
    WAIT_FOR(e, st, st.resident <= 4 * MiB);
    g_assert_true(bf_engine_set_local_limit(e, 64 * MiB, &err));

    before = stats_of(e);
    check(ram, 0, 16 * MiB, 31);        /* sequential */
    stats = stats_of(e);
    g_assert_cmpuint(stats.readahead_pages - before.readahead_pages, >, 2048);
    /* Most of the range came in without a fault of its own. */
    g_assert_cmpuint(stats.faults_missing - before.faults_missing, <, 1024);

    before = stats_of(e);
    for (int i = 0; i < 500; i++) {     /* random, in the untouched 16..64 MiB */
        uint64_t page = g_rand_int_range(rand, 16 * MiB / PAGE, 64 * MiB / PAGE);

        check(ram, page * PAGE, 64, 31);
    }
    stats = stats_of(e);
    g_assert_cmpuint(stats.readahead_pages - before.readahead_pages, <, 64);
    g_rand_free(rand);
}

typedef struct {
    BfEngine *e;
    uint64_t peak;              /* the most resident bytes seen */
    _Atomic bool stop;
} ResidentWatch;

static gpointer resident_watch_thread(gpointer opaque)
{
    ResidentWatch *w = opaque;

    while (!atomic_load(&w->stop)) {
        w->peak = MAX(w->peak, stats_of(w->e).resident);
        g_usleep(50);
    }
    return NULL;
}

/*
 * A sequential scan larger than the limit, pass after pass: the pages the scan has read past
 * go out first, so each pass finds the rest of its data where the last one left it. Evicting
 * the coldest instead evicts exactly what the scan reads next: every pass faults every page.
 */
static void test_drop_behind(void)
{
    g_autoptr(BfStore) store = bf_store_new(256 * MiB);
    BfEngineConfig config = make_config("drop-behind", 64 * MiB, 0, store);
    g_autoptr(BfEngine) e = connected_or_skip(&config);
    g_autoptr(GError) err = NULL;
    BfEngineStats before, stats;
    ResidentWatch watch;
    GThread *watcher;
    uint8_t *ram;

    if (!e) {
        return;
    }
    ram = bf_engine_guest_ram(e);
    fill(ram, 0, 64 * MiB, 41);
    g_assert_true(bf_engine_set_local_limit(e, 32 * MiB, &err));
    WAIT_FOR(e, st, st.resident <= 32 * MiB);

    /* Readahead goes no further than the limit either: pages in flight count. */
    watch = (ResidentWatch) { .e = e };
    watcher = g_thread_new("watch", resident_watch_thread, &watch);
    for (int pass = 0; pass < 3; pass++) {
        before = stats_of(e);
        check(ram, 0, 64 * MiB, 41);
        stats = stats_of(e);
        g_test_message("pass %d: %" G_GUINT64_FORMAT " pages restored", pass,
                       (guint64)(stats.pages_restored - before.pages_restored));
    }
    atomic_store(&watch.stop, true);
    g_thread_join(watcher);
    g_assert_cmpuint(watch.peak, <=, 32 * MiB);
    /* Half the data stays: the last pass restores about the other half, not all of it. */
    g_assert_cmpuint(stats.pages_restored - before.pages_restored, <, 64 * MiB / PAGE * 3 / 4);
    g_assert_cmpuint(stats.drop_behind_pages - before.drop_behind_pages, >, 0);
    g_assert_cmpuint(stats.resident, <=, 32 * MiB + 64 * PAGE);
    check(ram, 0, 64 * MiB, 41);
}

/*
 * The whole cycle against a real memory node, over the transport $BLOWFISH_MEMNODE_LISTEN
 * picks (TCP by default; tests/rdma runs it over RDMA): writers hammer their pages under a
 * low limit, every byte survives, everything comes back, and freed pages leave the node.
 */
static void test_pool_node(void)
{
    enum { THREADS = 4 };
    g_autofree char *why = NULL;
    MemnodeProcess *node = memnode_start("256M", &why);
    BfEngineConfig config = make_config("node", 32 * MiB, 6 * MiB, NULL);
    g_autoptr(BfEngine) e = NULL;
    g_autoptr(GError) err = NULL;
    WriterJob jobs[THREADS];
    GThread *threads[THREADS];
    BfEngineStats stats;
    uint8_t *ram;

    if (!node) {
        g_test_skip(why);
        return;
    }
    g_test_message("memory node at %s", node->address);
    config.pool = node->address;
    e = connected_or_skip(&config);
    if (!e) {
        memnode_stop(node);
        return;
    }
    ram = bf_engine_guest_ram(e);
    for (int i = 0; i < THREADS; i++) {
        jobs[i] = (WriterJob) {
            .ram = ram, .start = i * 8 * MiB, .len = 8 * MiB, .seed = 50 + 17 * i, .rounds = 3,
        };
        threads[i] = g_thread_new("writer", writer_thread, &jobs[i]);
    }
    for (int i = 0; i < THREADS; i++) {
        g_thread_join(threads[i]);
    }
    for (int i = 0; i < THREADS; i++) {
        check(ram, jobs[i].start, jobs[i].len, jobs[i].seed + jobs[i].rounds - 1);
    }
    stats = stats_of(e);
    g_assert_cmpuint(stats.pages_evicted, >, 16 * MiB / PAGE);
    g_assert_cmpuint(stats.pages_restored, >, 16 * MiB / PAGE);
    g_assert_cmpuint(stats.resident, <=, 6 * MiB + 64 * PAGE);
    WAIT_FOR(e, st, st.pool_stored >= 16 * MiB);

    g_assert_true(bf_engine_restore_all(e, &err));
    WAIT_FOR(e, st, !st.restoring);
    g_assert_cmpuint(stats_of(e).remote, ==, 0);
    for (int i = 0; i < THREADS; i++) {
        check(ram, jobs[i].start, jobs[i].len, jobs[i].seed + jobs[i].rounds - 1);
    }

    /* Restored pages keep their pool copy until written or freed: free them all. */
    g_assert_cmpint(madvise(ram, 32 * MiB, MADV_DONTNEED), ==, 0);
    WAIT_FOR(e, st, st.pool_stored == 0);
    for (uint64_t off = 0; off < 32 * MiB; off += 512) {
        g_assert_cmpuint(ram[off], ==, 0);
    }
    g_clear_pointer(&e, bf_engine_free);
    memnode_stop(node);
}

/*
 * The memory node goes away with pages of ours (stopped; or killed, then restarted on its
 * store): a fault on a remote page waits, the state says so, and when the node is back
 * everything resumes, every byte intact.
 */
static void pool_outage(bool kill_it)
{
    g_autofree char *why = NULL;
    MemnodeProcess *node;
    BfEngineConfig config = make_config("outage", 32 * MiB, 8 * MiB, NULL);
    g_autoptr(BfEngine) e = NULL;
    WriterJob job;
    GThread *reader;
    uint8_t *ram;

    if (kill_it && g_str_has_prefix(memnode_default_listen(), "rdma:")) {
        g_test_skip("a killed node keeps RDMA clients' pages nowhere (--store is TCP's)");
        return;
    }
    node = kill_it ? memnode_start_persistent("256M", &why) : memnode_start("256M", &why);
    if (!node) {
        g_test_skip(why);
        return;
    }
    config.pool = node->address;
    config.tunables.pool_timeout_ms = 300;
    e = connected_or_skip(&config);
    if (!e) {
        memnode_stop(node);
        return;
    }
    ram = bf_engine_guest_ram(e);
    fill(ram, 0, 32 * MiB, 41);
    WAIT_FOR(e, st, st.resident <= 8 * MiB);

    if (kill_it) {
        memnode_kill(node);
    } else {
        kill(node->pid, SIGSTOP);
    }
    /* Reading remote pages waits now: in a thread. */
    job = (WriterJob) { .ram = ram, .start = 0, .len = 32 * MiB, .seed = 41 };
    reader = g_thread_new("reader", check_thread, &job);
    WAIT_FOR(e, st, st.pool_state == BF_POOL_UNREACHABLE);
    if (kill_it) {
        memnode_restart(node);
    } else {
        kill(node->pid, SIGCONT);
    }
    WAIT_FOR(e, st, st.pool_state == BF_POOL_CONNECTED);
    g_thread_join(reader);
    check(ram, 0, 32 * MiB, 41);
    g_clear_pointer(&e, bf_engine_free);
    memnode_stop(node);
}

/* A pool in this process that remembers the session the engine opened on it. */
typedef struct {
    BfStore *store;
    BfHello hello;              /* the same at every connection: read once connected */
    atomic_uint connects;       /* channels opened */
} RecordingPool;

static BfChannel *recording_connect(void *opaque, const BfHello *hello, GError **errp)
{
    RecordingPool *pool = opaque;

    pool->hello = *hello;
    atomic_fetch_add(&pool->connects, 1);
    return bf_channel_local_new(pool->store, hello, errp);
}

/* Reads (@get) or writes the pool's copy of @page of the engine's session. */
static bool pool_page(RecordingPool *pool, uint64_t page, uint8_t *data, bool get)
{
    g_autoptr(GError) err = NULL;
    BfProtoError code;
    uint64_t stored;
    BfStoreSession *s = bf_store_attach(pool->store, &pool->hello, NULL, &stored, &code, &err);
    bool ok;

    g_assert_nonnull(s);
    ok = get ? bf_store_read(pool->store, s, 1, &page, (void *const *)&data, &code, &err) :
               bf_store_write(pool->store, s, 1, &page, (const void *const *)&data, &code,
                              &err);
    bf_store_detach(pool->store, s);
    return ok;
}

/* The first page from @page on that is remote: the pool holds it and the memfd does not. */
static uint64_t remote_page(RecordingPool *pool, uint8_t *ram, uint64_t page, uint8_t *data)
{
    for (;; page++) {
        unsigned char in_memfd;

        g_assert_cmpint(mincore(ram + page * PAGE, PAGE, &in_memfd), ==, 0);
        if (!(in_memfd & 1) && pool_page(pool, page, data, true)) {
            return page;
        }
    }
}

/* The engine's critical message on an altered page is expected: any other stays fatal. */
static void altered_page_logged(const gchar *domain, GLogLevelFlags level,
                                const gchar *message, gpointer data)
{
    if (!strstr(message, "is not what was sent")) {
        g_log_default_handler(domain, level, message, data);
        abort();
    }
}

static atomic_bool page_checked;
static atomic_int byte_read = -1;

static gpointer read_byte(gpointer opaque)
{
    atomic_store(&byte_read, *(volatile uint8_t *)opaque);
    return NULL;
}

static gpointer check_then_flag(gpointer opaque)
{
    check_thread(opaque);
    atomic_store(&page_checked, true);
    return NULL;
}

/*
 * The node returns a page other than the one it was sent. It is not placed, for a fault nor
 * for a restore: the pool is reported unreachable, with the reason, and what needs the page
 * waits. Once the node has it right again, everything resumes, every byte intact.
 */
static void test_pool_altered_page(void)
{
    g_autoptr(BfStore) store = bf_store_new(64 * MiB);
    RecordingPool pool = { .store = store };
    BfEngineConfig config = make_config("altered", 16 * MiB, 4 * MiB, NULL);
    g_autoptr(BfEngine) e = NULL;
    g_autoptr(GError) err = NULL;
    uint8_t good[PAGE], bad[PAGE];
    uint64_t page;
    GLogLevelFlags fatal;
    unsigned connects;
    WriterJob job;
    GThread *reader;
    guint handler;
    uint8_t *ram;

    config.connect = recording_connect;
    config.connect_opaque = &pool;
    e = connected_or_skip(&config);
    if (!e) {
        return;
    }
    ram = bf_engine_guest_ram(e);
    fill(ram, 0, 16 * MiB, 61);
    WAIT_FOR(e, st, SETTLED(st, 4 * MiB));
    fatal = g_log_set_always_fatal(G_LOG_FATAL_MASK | G_LOG_LEVEL_WARNING);
    handler = g_log_set_handler(NULL, G_LOG_LEVEL_CRITICAL, altered_page_logged, NULL);

    /* A fault on an altered page waits. */
    page = remote_page(&pool, ram, 0, good);
    memcpy(bad, good, PAGE);
    bad[100] ^= 1;
    g_assert_true(pool_page(&pool, page, bad, false));
    job = (WriterJob) { .ram = ram, .start = page * PAGE, .len = PAGE, .seed = 61 };
    atomic_store(&page_checked, false);
    reader = g_thread_new("reader", check_then_flag, &job);
    WAIT_FOR(e, st, st.pool_state == BF_POOL_UNREACHABLE && strstr(st.pool_error, "altered"));
    connects = atomic_load(&pool.connects);
    g_usleep(500 * 1000);
    g_assert_false(atomic_load(&page_checked));
    /* The node is retried at the backoff's pace (from 100 ms), not at once. */
    g_assert_cmpuint(atomic_load(&pool.connects) - connects, <=, 2 * 4);
    /* Right again: the fault is served. */
    g_assert_true(pool_page(&pool, page, good, false));
    WAIT_FOR(e, st, atomic_load(&page_checked));
    g_thread_join(reader);
    WAIT_FOR(e, st, st.pool_state == BF_POOL_CONNECTED);

    /* A restore stops at an altered page, and resumes once it is right. */
    page = remote_page(&pool, ram, page + 1, good);
    memcpy(bad, good, PAGE);
    bad[PAGE - 1] ^= 0x80;
    g_assert_true(pool_page(&pool, page, bad, false));
    g_assert_true(bf_engine_restore_all(e, &err));
    WAIT_FOR(e, st, st.pool_state == BF_POOL_UNREACHABLE && strstr(st.pool_error, "altered"));
    g_assert_true(stats_of(e).restoring);
    g_assert_cmpuint(stats_of(e).remote, >=, PAGE);
    g_assert_true(pool_page(&pool, page, good, false));
    WAIT_FOR(e, st, !st.restoring);
    g_assert_cmpuint(stats_of(e).remote, ==, 0);
    check(ram, 0, 16 * MiB, 61);

    /* A page the guest frees while a fault waits on it is not held up by its altered copy. */
    g_assert_true(bf_engine_set_local_limit(e, 4 * MiB, &err));
    WAIT_FOR(e, st, SETTLED(st, 4 * MiB));
    page = remote_page(&pool, ram, 0, good);
    memcpy(bad, good, PAGE);
    bad[0] ^= 1;
    g_assert_true(pool_page(&pool, page, bad, false));
    reader = g_thread_new("reader", read_byte, ram + page * PAGE);
    WAIT_FOR(e, st, st.pool_state == BF_POOL_UNREACHABLE && strstr(st.pool_error, "altered"));
    g_assert_cmpint(madvise(ram + page * PAGE, PAGE, MADV_DONTNEED), ==, 0);
    WAIT_FOR(e, st, atomic_load(&byte_read) >= 0);
    g_thread_join(reader);
    g_assert_cmpint(atomic_load(&byte_read), ==, 0);
    WAIT_FOR(e, st, st.pool_state == BF_POOL_CONNECTED);
    g_log_remove_handler(NULL, handler);
    g_log_set_always_fatal(fatal);
}

static void test_pool_stopped(void)
{
    pool_outage(false);
}

static void test_pool_killed(void)
{
    pool_outage(true);
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
        BfEngineConfig config = make_config("noperm", 8 * MiB, 0, NULL);
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
    g_test_add_func("/engine/permission-error", test_permission_error);
    g_test_add_func("/engine/faults/missing", test_missing_faults);
    g_test_add_func("/engine/faults/minor", test_minor_faults);
    g_test_add_func("/engine/faults/second-uffd-refused", test_second_uffd_refused);
    g_test_add_func("/engine/evict/restore", test_evict_restore);
    g_test_add_func("/engine/evict/zero-pages", test_zero_pages);
    g_test_add_func("/engine/evict/restore-all", test_restore_all);
    g_test_add_func("/engine/evict/stress-writers", test_stress_writers);
    g_test_add_func("/engine/evict/clean-under-access", test_clean_under_access);
    g_test_add_func("/engine/evict/mixed-ops", test_mixed_ops);
    g_test_add_func("/engine/evict/remote-write", test_remote_write);
    g_test_add_func("/engine/evict/clean-write", test_clean_write);
    g_test_add_func("/engine/evict/readahead", test_readahead);
    g_test_add_func("/engine/evict/coldest-first", test_coldest_first);
    g_test_add_func("/engine/evict/drop-behind", test_drop_behind);
    g_test_add_func("/engine/evict/idle", test_idle_eviction);
    g_test_add_func("/engine/free/discard", test_discard_frees);
    g_test_add_func("/engine/free/discard-pool-full", test_discard_pool_full);
    g_test_add_func("/engine/free/hints", test_free_hints);
    g_test_add_func("/engine/free/hints-untracked", test_free_hints_untracked);
    g_test_add_func("/engine/free/discard-under-eviction", test_discard_under_eviction);
    g_test_add_func("/engine/free/discard-under-fill-around", test_discard_under_fill_around);
    g_test_add_func("/engine/free/discard-meets-zap", test_discard_meets_zap);
    g_test_add_func("/engine/free/discard-meets-map-back", test_discard_meets_map_back);
    g_test_add_func("/engine/free/hints-race", test_free_hints_race);
    g_test_add_func("/engine/free/hints-zeroed-race", test_free_hints_zeroed_race);
    g_test_add_func("/engine/pool/node", test_pool_node);
    g_test_add_func("/engine/pool/stopped", test_pool_stopped);
    g_test_add_func("/engine/pool/killed", test_pool_killed);
    g_test_add_func("/engine/pool/altered-page", test_pool_altered_page);
    return g_test_run();
}
