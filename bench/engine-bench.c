/*
 * engine-bench: the engine's own benchmarks, without QEMU (a thread plays the guest):
 *
 *   latency     time to touch one remote 4 KiB page (random order, no readahead) from a real
 *               blowfish-memnode, next to the floors measured in the same run: a
 *               minor-fault round trip (the engine maps back a resident page), and the same
 *               remote fault against a store in this process (no network);
 *   throughput  eviction of cold, non-zero pages to the memnode, and blowfish-restore (every
 *               remote page back), per round; then eviction of the restored pages, which
 *               are clean (the pool's copy is current: none is sent);
 *   scan        slowdown of a workload that touches all its memory, with the cold-page
 *               scanner at its defaults against the scanner off;
 *   tls         the cost of TLS (blowfish-memnode --tls-dir, certificates made by
 *               tests/common/make-certs.sh): remote fault latency and eviction/restore
 *               throughput through a TLS node against a plain one, interleaved.
 *
 * The memnode listens on TCP loopback, or where --listen says: --listen rdma:ADDR:0 measures
 * the RDMA transport on a machine with an RDMA device (ADDR: the address of its interface).
 * --quick runs small sizes, as a functional check (Soft-RoCE under TCG, say).
 *
 * Results go to stdout as a table and, with --json, to a file. Latencies are measured by the
 * guest thread around its access (what a vCPU sees); ratios compare numbers from this run.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-channel-local.h"
#include "bf-engine.h"
#include "memnode-process.h"

#include <glib.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>

#define MiB (1024ULL * 1024)
#define PAGE BF_PAGE_SIZE

static gint64 now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static uint64_t percentile(uint64_t *v, size_t n, double p)
{
    qsort(v, n, sizeof(*v), cmp_u64);
    return v[MIN(n - 1, (size_t)(p / 100.0 * n))];
}

static BfChannel *local_connect(void *opaque, const BfHello *hello, GError **errp)
{
    return bf_channel_local_new(opaque, hello, errp);
}

/* Engines of the TLS benchmark speak TLS with the certificates there; NULL: plain. */
static const char *pool_tls_dir;

static BfEngine *new_engine(const char *name, uint64_t size, const char *pool, BfStore *store,
                            uint32_t scan_period_ms, uint32_t readahead)
{
    BfEngineConfig config = {
        .name = name, .size = size, .pool = pool,
        .connect = store ? local_connect : NULL, .connect_opaque = store,
        .pool_tls_dir = store ? NULL : pool_tls_dir, .pool_tls_verify_peer = TRUE,
    };
    g_autoptr(GError) err = NULL;
    BfEngine *e;

    bf_engine_tunables_init(&config.tunables);
    config.tunables.scan_period_ms = scan_period_ms;
    config.tunables.readahead = readahead;
    e = bf_engine_new(&config, &err);
    if (!e) {
        g_printerr("engine-bench: %s\n", err->message);
        exit(1);
    }
    return e;
}

static BfEngineStats stats_of(BfEngine *e)
{
    BfEngineStats s;

    bf_engine_get_stats(e, &s);
    return s;
}

static void wait_until_connected(BfEngine *e)
{
    while (stats_of(e).pool_state != BF_POOL_CONNECTED) {
        g_usleep(1000);
    }
}

/* Fills @len bytes with non-zero data (a different byte per page). */
static void fill(uint8_t *ram, uint64_t len)
{
    for (uint64_t off = 0; off < len; off += PAGE) {
        memset(ram + off, (uint8_t)(off / PAGE) | 1, PAGE);
    }
}

static void set_limit(BfEngine *e, uint64_t limit)
{
    g_autoptr(GError) err = NULL;

    if (!bf_engine_set_local_limit(e, limit, &err)) {
        g_printerr("engine-bench: %s\n", err->message);
        exit(1);
    }
}

/* Brings every remote page back (blowfish-restore); returns the seconds it took. */
static double restore_all(BfEngine *e)
{
    g_autoptr(GError) err = NULL;
    gint64 start = now_ns();

    if (!bf_engine_restore_all(e, &err)) {
        g_printerr("engine-bench: %s\n", err->message);
        exit(1);
    }
    while (stats_of(e).restoring) {
        g_usleep(200);
    }
    return (now_ns() - start) / 1e9;
}

/* Waits until the engine keeps at most @limit bytes resident; returns the seconds it took. */
static double evict_to(BfEngine *e, uint64_t limit)
{
    gint64 start = now_ns();

    set_limit(e, limit);
    while (stats_of(e).resident > limit) {
        g_usleep(200);
    }
    return (now_ns() - start) / 1e9;
}

/* Touches @n random pages of [0, @len) one by one; per-access latency in @lat. */
static void touch_random(uint8_t *ram, uint64_t len, uint64_t *lat, size_t n, GRand *rand)
{
    volatile uint8_t *p = ram;

    for (size_t i = 0; i < n; i++) {
        uint64_t page = g_rand_int_range(rand, 0, len / PAGE);
        gint64 t0 = now_ns();

        (void)p[page * PAGE + 64];
        lat[i] = now_ns() - t0;
    }
}

typedef struct {
    uint64_t p50, p99;
} Percentiles;

static Percentiles summarize(uint64_t *lat, size_t n)
{
    return (Percentiles) { percentile(lat, n, 50), percentile(lat, n, 99) };
}

/* Remote-fault latency with the pool at @pool (or @store); readahead off, random order. */
static Percentiles remote_latency(const char *pool, BfStore *store, uint64_t size, size_t n)
{
    g_autoptr(BfEngine) e = new_engine("latency", size, pool, store, 3600000, 0);
    uint8_t *ram = bf_engine_guest_ram(e);
    uint64_t *lat = g_new(uint64_t, n);
    GRand *rand = g_rand_new_with_seed(1);
    Percentiles p;

    wait_until_connected(e);
    fill(ram, size);
    evict_to(e, BF_MIN_LOCAL_LIMIT);
    /* Most pages are remote now; lift the limit so that no eviction runs during the test. */
    set_limit(e, size);
    touch_random(ram, size, lat, n, rand);
    p = summarize(lat, n);
    g_free(lat);
    g_rand_free(rand);
    return p;
}

/* Minor-fault round trip: resident pages whose mapping was dropped, touched at random. */
static Percentiles minor_latency(uint64_t size, size_t n)
{
    g_autoptr(BfEngine) e = new_engine("minor", size, NULL, NULL, 3600000, 0);
    uint8_t *ram = bf_engine_guest_ram(e);
    uint64_t *lat = g_new(uint64_t, n);
    GRand *rand = g_rand_new_with_seed(1);
    Percentiles p;

    fill(ram, size);
    bf_engine_drop_mappings(e, 0, size, NULL);
    touch_random(ram, size, lat, n, rand);
    p = summarize(lat, n);
    g_free(lat);
    g_rand_free(rand);
    return p;
}

/* The memnode's transport, as its address names it ("tcp", "rdma"). */
static char *transport_of(MemnodeProcess *node)
{
    return g_strndup(node->address, strcspn(node->address, ":"));
}

static void bench_latency(GString *json, MemnodeProcess *node, gboolean quick)
{
    const uint64_t size = (quick ? 32 : 256) * MiB;
    const size_t n = quick ? 2000 : 20000;
    g_autoptr(BfStore) store = bf_store_new(2 * size);
    g_autofree char *transport = transport_of(node);
    g_autofree char *label = g_strdup_printf("remote, memnode at %s", node->address);
    Percentiles minor = minor_latency(size, n);
    Percentiles local = remote_latency(NULL, store, size, n);
    Percentiles remote = remote_latency(node->address, NULL, size, n);

    printf("remote fault latency as the guest thread sees it (%zu random 4 KiB touches, "
           "readahead off)\n", n);
    printf("  %-40s p50 %6.1f us   p99 %6.1f us\n", "minor fault (floor)", minor.p50 / 1e3,
           minor.p99 / 1e3);
    printf("  %-40s p50 %6.1f us   p99 %6.1f us\n", "remote, in-process store",
           local.p50 / 1e3, local.p99 / 1e3);
    printf("  %-40s p50 %6.1f us   p99 %6.1f us\n", label, remote.p50 / 1e3,
           remote.p99 / 1e3);
    printf("  %s p50 / minor-fault p50 = %.2f (target <= 2.5)\n", transport,
           (double)remote.p50 / minor.p50);
    g_string_append_printf(json, "  \"transport\": \"%s\",\n", transport);
    g_string_append_printf(json, "  \"latency\": {\"samples\": %zu, "
                           "\"minor_p50_ns\": %" G_GUINT64_FORMAT ", "
                           "\"minor_p99_ns\": %" G_GUINT64_FORMAT ", "
                           "\"local_p50_ns\": %" G_GUINT64_FORMAT ", "
                           "\"local_p99_ns\": %" G_GUINT64_FORMAT ", "
                           "\"remote_p50_ns\": %" G_GUINT64_FORMAT ", "
                           "\"remote_p99_ns\": %" G_GUINT64_FORMAT ", "
                           "\"remote_p50_over_minor_p50\": %.3f},\n", n,
                           minor.p50, minor.p99, local.p50, local.p99, remote.p50, remote.p99,
                           (double)remote.p50 / minor.p50);
}

/*
 * Evicts what restore-all left resident: clean pages (the pool's copy is current, none is
 * sent), but for the few that eviction never took (those under the least limit).
 */
static void bench_clean_eviction(GString *json, BfEngine *e)
{
    BfEngineStats before = stats_of(e), after;
    double seconds = evict_to(e, BF_MIN_LOCAL_LIMIT), gib, clean;

    after = stats_of(e);
    gib = (after.pages_evicted - before.pages_evicted) * PAGE / (double)(1 << 30);
    clean = (after.clean_evictions - before.clean_evictions) * PAGE / (double)(1 << 30);
    printf("eviction of restored pages: %.2f GiB/s (%.1f%% of them clean: not sent)\n",
           gib / seconds, 100 * clean / gib);
    g_string_append_printf(json, "  \"clean_eviction\": {\"gib\": %.3f, \"clean_gib\": %.3f, "
                           "\"s\": %.3f, \"gib_per_s\": %.3f},\n", gib, clean, seconds,
                           gib / seconds);
}

/*
 * Eviction and restore-all of 1 GiB, three rounds: in the first the memnode allocates its
 * memory (on this VM a fresh huge page costs more than the copy into it); the next rounds
 * show the steady state of a memnode that already has memory.
 */
static void bench_throughput(GString *json, MemnodeProcess *node, gboolean quick)
{
    const uint64_t size = (quick ? 64 : 1024) * MiB;
    const int rounds = quick ? 2 : 3;
    g_autoptr(BfEngine) e = new_engine("throughput", size, node->address, NULL, 1000, 32);
    uint8_t *ram = bf_engine_guest_ram(e);

    wait_until_connected(e);
    g_string_append(json, "  \"throughput\": [\n");
    for (int round = 0; round < rounds; round++) {
        BfEngineStats before, after;
        double evict_s, restore_s, evict_gib, restore_gib;

        for (uint64_t off = 0; off < size; off += PAGE) {
            memset(ram + off, (uint8_t)(off / PAGE + round) | 1, PAGE);
        }
        before = stats_of(e);
        evict_s = evict_to(e, BF_MIN_LOCAL_LIMIT);
        after = stats_of(e);
        evict_gib = (after.pool_bytes_sent - before.pool_bytes_sent) / (double)(1 << 30);

        restore_s = restore_all(e);
        restore_gib = (stats_of(e).pool_bytes_received - after.pool_bytes_received) /
                      (double)(1 << 30);
        printf("round %d (%s): eviction %.2f GiB/s, restore-all %.2f GiB/s (targets >= 1)\n",
               round, round ? "memnode memory warm" : "memnode allocating",
               evict_gib / evict_s, restore_gib / restore_s);
        g_string_append_printf(json, "    {\"round\": %d, \"evict_gib\": %.3f, "
                               "\"evict_s\": %.3f, \"evict_gib_per_s\": %.3f, "
                               "\"restore_gib\": %.3f, \"restore_s\": %.3f, "
                               "\"restore_gib_per_s\": %.3f}%s\n", round, evict_gib, evict_s,
                               evict_gib / evict_s, restore_gib, restore_s,
                               restore_gib / restore_s, round < rounds - 1 ? "," : "");
    }
    g_string_append(json, "  ],\n");
    bench_clean_eviction(json, e);
}

/* Seconds to write every 64th byte of @len bytes @passes times. */
static double touch_all(uint8_t *ram, uint64_t len, int passes)
{
    gint64 start = now_ns();

    for (int pass = 0; pass < passes; pass++) {
        for (uint64_t off = 0; off < len; off += 64) {
            ram[off] += 1;
        }
    }
    return (now_ns() - start) / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/*
 * A workload that writes all of its memory, over and over, for a few seconds: with the
 * scanner at its defaults, and off. Runs alternate, and medians are compared: this machine's
 * noise is larger than the effect.
 */
static void bench_scan(GString *json)
{
    enum { PAIRS = 5 };
    const uint64_t size = 256 * MiB;
    const int passes = 300;
    double with[PAIRS], without[PAIRS], faults = 0, scan_s = 0, slowdown;

    for (int r = 0; r < PAIRS; r++) {
        for (int on = 0; on <= 1; on++) {
            BfEngineTunables defaults;
            g_autoptr(BfEngine) e = NULL;
            uint8_t *ram;

            bf_engine_tunables_init(&defaults);
            e = new_engine(on ? "scan-on" : "scan-off", size, NULL, NULL,
                           on ? defaults.scan_period_ms : 3600000, defaults.readahead);
            ram = bf_engine_guest_ram(e);
            touch_all(ram, size, 1);
            if (on) {
                BfEngineStats before = stats_of(e), after;

                with[r] = touch_all(ram, size, passes);
                after = stats_of(e);
                faults += after.faults_minor - before.faults_minor;
                scan_s += (after.scan_ns - before.scan_ns) / 1e9;
            } else {
                without[r] = touch_all(ram, size, passes);
            }
        }
    }
    qsort(with, PAIRS, sizeof(double), cmp_double);
    qsort(without, PAIRS, sizeof(double), cmp_double);
    slowdown = (with[PAIRS / 2] / without[PAIRS / 2] - 1) * 100;
    printf("scanner overhead, a workload writing all of %" G_GUINT64_FORMAT " MiB for ~%.0f s "
           "(median of %d runs each): %.2f s with, %.2f s without, slowdown %.2f%% "
           "(target < 3%%); the scanner took %.0f ms and caused %.0f minor faults per "
           "run\n", (guint64)(size / MiB), without[PAIRS / 2], PAIRS, with[PAIRS / 2],
           without[PAIRS / 2], slowdown, scan_s * 1000 / PAIRS, faults / PAIRS);
    g_string_append_printf(json, "  \"scan\": {\"seconds_with\": %.3f, "
                           "\"seconds_without\": %.3f, \"slowdown_percent\": %.2f, "
                           "\"scanner_ms_per_run\": %.1f, \"minor_faults_per_run\": %.0f}\n",
                           with[PAIRS / 2], without[PAIRS / 2], slowdown,
                           scan_s * 1000 / PAIRS, faults / PAIRS);
}

/* Evicts all but the minimum of @size bytes to @pool, then restores it all: GiB/s of each. */
static void evict_restore(const char *pool, uint64_t size, double *evict_gibs,
                          double *restore_gibs)
{
    /* Scanning every 20 ms: pages go cold at once, and the transport sets the pace. */
    g_autoptr(BfEngine) e = new_engine("tls", size, pool, NULL, 20, 32);
    double gib = (size - BF_MIN_LOCAL_LIMIT) / (double)(1 << 30);

    wait_until_connected(e);
    fill(bf_engine_guest_ram(e), size);
    *evict_gibs = gib / evict_to(e, BF_MIN_LOCAL_LIMIT);
    *restore_gibs = gib / restore_all(e);
}

/*
 * The same remote faults and transfers through a plain node and a TLS one, alternating
 * (two rounds each), so that the machine's drift hits both; means of the rounds.
 */
static void bench_tls(GString *json, gboolean quick)
{
    const char *make_certs = g_getenv("BLOWFISH_MAKE_CERTS");
    const uint64_t size = (quick ? 32 : 256) * MiB;
    const size_t n = quick ? 1000 : 10000;
    g_autofree char *certs = g_dir_make_tmp("blowfish-bench-certs-XXXXXX", NULL);
    g_autofree char *cmd = g_strdup_printf("sh '%s' '%s'", make_certs ? make_certs :
                                           "tests/common/make-certs.sh", certs);
    g_autofree char *node_dir = g_build_filename(certs, "node", NULL);
    g_autofree char *client_dir = g_build_filename(certs, "client", NULL);
    const char *args[] = { "--tls-dir", node_dir, NULL };
    g_autofree char *why = NULL;
    MemnodeProcess *nodes[2];
    const char *names[2] = { "plain", "tls" };
    double p50[2][2], evict[2][2], restore[2][2];

    if (system(cmd) != 0) {
        g_printerr("engine-bench: %s failed: no TLS benchmark\n", cmd);
        g_string_append(json, "  \"tls\": null,\n");
        return;
    }
    nodes[0] = memnode_start_on("tcp:127.0.0.1:0", "4G", &why);
    nodes[1] = memnode_start_with_args(NULL, "4G", args, &why);
    for (int round = 0; round < 2; round++) {
        for (int t = 0; t < 2; t++) {
            pool_tls_dir = t ? client_dir : NULL;
            p50[t][round] = remote_latency(nodes[t]->address, NULL, size, n).p50;
            evict_restore(nodes[t]->address, size, &evict[t][round], &restore[t][round]);
        }
    }
    pool_tls_dir = NULL;
    printf("TLS (%" G_GUINT64_FORMAT " MiB, %zu remote faults; mean of 2 alternating rounds)\n",
           (guint64)(size / MiB), n);
    for (int t = 0; t < 2; t++) {
        printf("  %-6s remote fault p50 %6.1f us   evict %5.2f GiB/s   restore %5.2f GiB/s\n",
               names[t], (p50[t][0] + p50[t][1]) / 2e3, (evict[t][0] + evict[t][1]) / 2,
               (restore[t][0] + restore[t][1]) / 2);
    }
    printf("  tls / plain: fault p50 x%.2f, evict x%.2f, restore x%.2f\n",
           (p50[1][0] + p50[1][1]) / (p50[0][0] + p50[0][1]),
           (evict[1][0] + evict[1][1]) / (evict[0][0] + evict[0][1]),
           (restore[1][0] + restore[1][1]) / (restore[0][0] + restore[0][1]));
    g_string_append(json, "  \"tls\": {");
    for (int t = 0; t < 2; t++) {
        g_string_append_printf(json, "\"%s\": {\"remote_p50_ns\": [%.0f, %.0f], "
                               "\"evict_gibs\": [%.3f, %.3f], \"restore_gibs\": [%.3f, %.3f]}%s",
                               names[t], p50[t][0], p50[t][1], evict[t][0], evict[t][1],
                               restore[t][0], restore[t][1], t ? "" : ", ");
    }
    g_string_append(json, "},\n");
    memnode_stop(nodes[0]);
    memnode_stop(nodes[1]);
    g_free(cmd);
    cmd = g_strdup_printf("rm -rf '%s'", certs);
    if (system(cmd) != 0) {
        g_printerr("engine-bench: cannot remove %s\n", certs);
    }
}

int main(int argc, char **argv)
{
    g_autofree char *json_path = NULL, *why = NULL, *listen = NULL;
    gboolean quick = FALSE;
    GOptionEntry entries[] = {
        { "json", 'j', 0, G_OPTION_ARG_FILENAME, &json_path, "Write results here", "FILE" },
        { "listen", 'l', 0, G_OPTION_ARG_STRING, &listen,
          "Where the memnode listens (default tcp:127.0.0.1:0; rdma:ADDR:0 for RDMA)",
          "ADDRESS" },
        { "quick", 'q', 0, G_OPTION_ARG_NONE, &quick,
          "Small sizes, no scanner benchmark: a functional check", NULL },
        { NULL },
    };
    g_autoptr(GOptionContext) context = g_option_context_new("- Blowfish engine benchmarks");
    g_autoptr(GError) err = NULL;
    g_autoptr(GString) json = g_string_new("{\n");
    g_autoptr(GDateTime) date = g_date_time_new_now_utc();
    g_autofree char *when = g_date_time_format_iso8601(date);
    MemnodeProcess *node;

    g_option_context_add_main_entries(context, entries, NULL);
    if (!g_option_context_parse(context, &argc, &argv, &err)) {
        g_printerr("engine-bench: %s\n", err->message);
        return 2;
    }
    node = memnode_start_on(listen ? listen : memnode_default_listen(), "4G", &why);
    if (!node) {
        g_printerr("engine-bench: %s\n", why);
        return 2;
    }
    g_string_append_printf(json, "  \"date\": \"%s\",\n", when);
    g_string_append_printf(json, "  \"quick\": %s,\n", quick ? "true" : "false");
    bench_latency(json, node, quick);
    bench_throughput(json, node, quick);
    if (g_str_has_prefix(node->address, "tcp:")) {
        bench_tls(json, quick);
    }
    if (!quick) {
        bench_scan(json);
    } else {
        g_string_append(json, "  \"scan\": null\n");
    }
    g_string_append(json, "}\n");
    memnode_stop(node);
    if (json_path && !g_file_set_contents(json_path, json->str, -1, &err)) {
        g_printerr("engine-bench: %s\n", err->message);
        return 1;
    }
    return 0;
}
