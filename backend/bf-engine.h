/*
 * bf-engine: one Blowfish-managed guest RAM region. The engine owns the memfd that holds
 * guest RAM, the mapping handed to the guest (registered with a userfaultfd), the threads that
 * serve its faults and keep it under its local limit, and its link to the memory pool. It
 * knows nothing of QEMU: the QEMU glue (hw/) maps bf_engine_guest_ram() as a RAM block and
 * forwards QMP requests here. docs/design.md describes how it works.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_ENGINE_H
#define BF_ENGINE_H

#include "bf-channel.h"

#include <glib.h>
#include <stdint.h>

#define BF_PAGE_SIZE 4096ULL

/* The smallest local-limit: enough resident pages for any vCPU to make progress. */
#define BF_MIN_LOCAL_LIMIT (4ULL << 20)

typedef struct BfEngine BfEngine;

typedef enum {
    BF_POOL_NONE,          /* no pool configured: only free and zero pages can be reclaimed */
    BF_POOL_CONNECTING,    /* configured, not connected yet */
    BF_POOL_CONNECTED,
    BF_POOL_UNREACHABLE,   /* connection lost: retrying; faults on remote pages wait */
} BfPoolState;

/* How the engine finds cold pages and moves them; bf_engine_tunables_init() sets defaults. */
typedef struct BfEngineTunables {
    uint32_t scan_period_ms;   /* how often the scanner samples page use */
    uint32_t scan_budget;      /* pages sampled per period: bounds the scanner's faults */
    uint32_t cold_age;         /* periods a page goes unused before it is cold */
    uint32_t idle_age;         /* periods unused after which a page goes to the pool even
                                * under the local limit; 0: only the limit evicts */
    uint32_t evict_batch;      /* pages per eviction request, 1 .. 256 */
    uint32_t readahead;        /* most pages fetched ahead of a sequential fault; 0: none */
    uint32_t pool_timeout_ms;  /* a pool request or connection taking longer has failed */
} BfEngineTunables;

/* Opens a channel to the engine's session (instead of connecting to config->pool). */
typedef BfChannel *(*BfConnectFunc)(void *opaque, const BfHello *hello, GError **errp);

/* What the fault thread did with a fault (for tracing). */
typedef enum {
    BF_FAULT_ZERO_FILL,     /* never touched, zero, or freed: a zero page */
    BF_FAULT_MAP,           /* resident: mapped back */
    BF_FAULT_UNPROTECT,     /* first write to a clean page */
    BF_FAULT_FETCH,         /* remote: fetched */
    BF_FAULT_WAIT,          /* held by another thread, which will serve it */
    BF_FAULT_DEFER,         /* at the local limit: waits for room */
    BF_FAULT_AGAIN,         /* QEMU is discarding it: freed, to fault again after that */
} BfFaultAction;

/*
 * Called from the engine's threads: hand the news to your own thread before acting on it.
 * Every member may be NULL. The trace_* ones sit on hot paths: keep them cheap.
 */
typedef struct BfEngineEvents {
    void (*pool_state_changed)(void *opaque, BfPoolState state, const char *detail);
    void (*restore_done)(void *opaque, uint64_t bytes, uint64_t ns);
    /* The pool refused pages for lack of room (@full, and its reason), or took some again. */
    void (*pool_full)(void *opaque, gboolean full, const char *detail);
    void (*trace_fault)(void *opaque, uint64_t page, uint64_t flags, BfFaultAction action);
    void (*trace_fetch)(void *opaque, uint32_t pages, uint64_t ns);
    void (*trace_evict)(void *opaque, uint32_t pages, uint32_t sent, uint32_t zero,
                        uint64_t ns);
    void (*trace_scan)(void *opaque, uint64_t samples, uint64_t ns);
} BfEngineEvents;

typedef struct BfEngineConfig {
    const char *name;          /* names threads, messages and the pool session */
    uint64_t size;             /* bytes of guest RAM, a multiple of BF_PAGE_SIZE */
    uint64_t local_limit;      /* most bytes kept in host memory; 0 means size */
    const char *pool;          /* pool address (see bf-endpoint.h), or NULL */
    const BfKey *pool_key;     /* the key to prove to the pool (bf-auth.h; copied), or NULL */
    /* TLS to the pool: certificates in this directory (bf-tls.h), or NULL for plain TCP;
     * whether to verify the node's certificate; a GnuTLS priority string, or NULL. */
    const char *pool_tls_dir;
    gboolean pool_tls_verify_peer;
    const char *pool_tls_priority;
    BfConnectFunc connect;     /* or this, to reach a pool another way (tests) */
    void *connect_opaque;
    BfEngineTunables tunables;
    const BfEngineEvents *events;
    void *events_opaque;
} BfEngineConfig;

typedef struct BfEngineStats {
    uint64_t size;
    uint64_t local_limit;
    uint64_t resident;             /* bytes of guest RAM in host memory (the memfd) */
    uint64_t remote;               /* bytes held only by the pool */
    uint64_t zero;                 /* bytes found all zero and dropped: held nowhere */
    uint64_t free;                 /* bytes the guest freed: held nowhere */
    uint64_t faults_missing;
    uint64_t faults_minor;
    uint64_t faults_wp;
    uint64_t pages_evicted;        /* moved out of host memory (to the pool, or zero) */
    uint64_t pages_restored;       /* brought back from the pool */
    uint64_t clean_evictions;      /* evicted with no transfer: the pool copy was current */
    uint64_t readahead_pages;      /* restored ahead of a fault */
    uint64_t drop_behind_pages;    /* picked to be evicted first under the limit: a
                                    * sequential stream had read past them */
    uint64_t pool_bytes_sent;
    uint64_t pool_bytes_received;
    uint64_t pool_stored;          /* bytes the node holds for this region (as it last said) */
    uint64_t fault_latency_p50_ns; /* time to serve a fault, from reading it to resolving it */
    uint64_t fault_latency_p99_ns;
    uint64_t scan_ns;              /* time the scanner spent */
    uint64_t scan_samples;         /* mappings it dropped to sample use */
    uint64_t free_reports;         /* ranges QEMU discarded (free page reporting, balloon) */
    uint64_t free_hinted;          /* bytes of host memory and pool freed on free page hints */
    uint64_t hint_kept;            /* bytes hinted free but kept: written, not zero, and the
                                    * round did not track writes */
    uint64_t free_latency_p50_ns;  /* time to free a discarded range */
    uint64_t free_latency_p99_ns;
    BfPoolState pool_state;
    gboolean pool_full;            /* eviction paused: the pool has no room for us */
    /* Why the pool is not connected (the last error reaching it), "" when it is or none. */
    char pool_error[256];
    gboolean restoring;            /* a bf_engine_restore_all() is in progress */
} BfEngineStats;

void bf_engine_tunables_init(BfEngineTunables *tunables);

/* Checks that @local_limit (bytes) suits a region of @size bytes. */
gboolean bf_engine_check_local_limit(uint64_t size, uint64_t local_limit,
                                     gboolean has_pool, GError **errp);

/*
 * Creates the memfd and the guest mapping, registers it with a new userfaultfd and starts the
 * engine's threads; the pool is connected in the background. On error (bad configuration, no
 * userfaultfd permission, old kernel) returns NULL with @errp set to a message that names the
 * problem and what to do about it.
 */
BfEngine *bf_engine_new(const BfEngineConfig *config, GError **errp);

/*
 * Stops the engine's threads, drops its pool session and releases its memory. Nothing may
 * touch guest RAM after.
 */
void bf_engine_free(BfEngine *engine);

/*
 * Drops the guest's mappings of [offset, offset + len) while keeping the pages: the next
 * touch of each is a minor fault (tests and benchmarks use it; the scanner does the same).
 * Any other MADV_DONTNEED of guest RAM (QEMU discarding reported free pages, a balloon
 * inflating) frees the pages: they read as zero from then on.
 */
gboolean bf_engine_drop_mappings(BfEngine *engine, uint64_t offset, uint64_t len,
                                 GError **errp);

/*
 * For a process about to exit without freeing the engine: stops evicting and drops the pool
 * session, so that the memory node frees this region's pages. Nothing may touch a remote
 * page after.
 */
void bf_engine_leave_pool(BfEngine *engine);

/* The guest's view of its RAM: config->size bytes, page aligned. */
void *bf_engine_guest_ram(BfEngine *engine);

/* The canonical pool address, or NULL. */
const char *bf_engine_pool(BfEngine *engine);

/*
 * Lowering the limit evicts cold pages until it holds; raising it lets pages come back.
 * Either way, idle eviction (tunables.idle_age) goes on if a restore stopped it.
 */
gboolean bf_engine_set_local_limit(BfEngine *engine, uint64_t local_limit, GError **errp);

/*
 * Raises the local limit to the size, stops idle eviction until the limit is set again, and
 * brings every remote page back, in the background and at full bandwidth;
 * events->restore_done reports the end.
 */
gboolean bf_engine_restore_all(BfEngine *engine, GError **errp);

/*
 * Free page hinting (virtio-balloon's, asked for on demand): the guest lends its free pages
 * to its balloon driver for a while and names them. The guest's driver does not touch them,
 * but it may hand them back to the guest early under memory pressure, and a guest with
 * init_on_alloc (the default of Debian's kernels) zeroes each as it lends it.
 *
 * bf_engine_hint_begin() starts a round, before the guest is asked; it fails if one is on.
 * With @track_writes, every page nobody wrote since is freed when hinted: guest RAM is
 * write-protected for the round, and a page's first write after costs a fault (one per
 * 2 MiB block where the engine sees the guest writing). Either way a hinted page that reads
 * all zero is freed: a round without tracking costs nothing, and suits a zeroing guest.
 * bf_engine_hint_free() (any thread) frees the whole pages of [offset, offset + len) that
 * qualify; outside a round it does nothing. bf_engine_hint_end() waits until every hinted
 * range is done and ends the round: call it before the guest gets its pages back.
 */
gboolean bf_engine_hint_begin(BfEngine *engine, gboolean track_writes, GError **errp);
void bf_engine_hint_free(BfEngine *engine, uint64_t offset, uint64_t len);
void bf_engine_hint_end(BfEngine *engine);

void bf_engine_get_stats(BfEngine *engine, BfEngineStats *stats);
/*
 * The faults timed so far by service time (fault_latency_*_ns's histogram; a fault that
 * waits for another thread moving its page is not timed): its non-empty buckets, ascending,
 * log-linear (8 to a power of two). Sets @upper_ns (each bucket's longest time) and @counts
 * to new arrays (g_free them) and returns their length.
 */
unsigned bf_engine_fault_latency_histogram(BfEngine *engine, uint64_t **upper_ns,
                                           uint64_t **counts);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(BfEngine, bf_engine_free)

#endif
