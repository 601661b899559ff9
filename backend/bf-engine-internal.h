/*
 * bf-engine-internal: the engine's state, shared by its parts: bf-engine.c (lifecycle, API,
 * statistics), bf-fault.c (the fault thread) and bf-reclaim.c (the reclaim thread: scanning,
 * eviction, restore-all, pool connection). Not for use outside backend/.
 *
 * Threads and what they may touch:
 * - the fault thread reads the userfaultfd and resolves faults (zero-fill, map back, fetch),
 *   and frees what QEMU discarded or the guest hinted free; it never touches guest RAM
 *   through the registered mapping, and never blocks on anything but its own pool channel;
 * - the reclaim thread samples page use, evicts, restores everything on request, and
 *   (re)connects the pool, handing the fault thread its channel;
 * - any thread (QEMU's) may call the public API, which only reads counters, changes the
 *   limit, wakes the reclaim thread, queues free page hints for the fault thread and marks
 *   and write-protects pages for a hint round.
 * Page metadata changes only by compare-and-swap (bf-pages.h); the rest is below.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_ENGINE_INTERNAL_H
#define BF_ENGINE_INTERNAL_H

#include "bf-engine.h"
#include "bf-endpoint.h"
#include "bf-latency.h"
#include "bf-pages.h"

#include <stdatomic.h>
#include <xxhash.h>

/* The pages [first, last). */
typedef struct {
    uint64_t first, last;
} BfPageRange;

struct BfEngine {
    /* Set at creation, then read-only. */
    char *name;
    uint64_t size;
    uint64_t npages;
    BfEngineTunables tun;
    BfEndpoint *pool;
    BfKey *pool_key;
    BfTlsCreds *pool_tls;           /* NULL: plain TCP */
    char *pool_text;
    BfConnectFunc connect;
    void *connect_opaque;
    BfEngineEvents events;
    void *events_opaque;
    BfHello hello;                  /* the pool session: random id, our name, npages */

    int memfd;                      /* guest RAM; read by the engine with pread() */
    uint8_t *guest;                 /* its mapping, registered with @uffd */
    int uffd;
    bool continue_wp;               /* UFFDIO_CONTINUE_MODE_WP works (Linux 6.3+) */

    BfPageMeta *pages;              /* one per page */

    /* The scanner samples one page per region per period (bf-reclaim.c). */
    uint32_t region_shift;          /* a region is 1 << region_shift pages */
    uint64_t nregions;
    uint8_t *region_age;            /* periods since the region's sample was last used */
    uint64_t *region_sample;        /* its current sample page, or UINT64_MAX */

    /*
     * The hash of each page's pool copy, as last sent (meaningful while it has POOL_COPY):
     * eviction compares a CLEAN page's content with it, and sends it only if it changed
     * (bf-reclaim.c), and a page fetched is placed only if its content has it
     * (bf_engine_fetched_intact()). Written by the reclaim thread, when a send succeeds,
     * before the page is published REMOTE; read by the thread that holds the page for
     * eviction or fetching. Seeded at random: a guest cannot aim at a collision, which
     * would lose only its own write anyway.
     */
    XXH128_hash_t *pool_hash;
    uint64_t pool_hash_seed;

    GThread *fault_thread;
    GThread *reclaim_thread;
    int fault_wake_fd;              /* eventfd: wakes the fault thread (stop, channel, room) */

    /*
     * The engine's own MADV_DONTNEED (one at a time): the fault thread tells its REMOVE event
     * from a discard by QEMU (free page reporting, balloon), which frees the pages.
     */
    GMutex zap_lock;
    _Atomic uint64_t zap_start, zap_end;
    _Atomic bool zap_returned;      /* its madvise() has returned: its event was read */
    _Atomic bool zap_seen;          /* the fault thread has resolved the zap's event */

    /*
     * A page the guest frees must never show its old content again. QEMU's discard raises a
     * REMOVE event that completes when the fault thread reads it; MADV_DONTNEED then drops
     * the mappings, but the pages are freed only at the event's turn in the queue. Until
     * then no page of the range may be placed on the engine's own initiative (it would stay
     * mapped): the fault thread notes the range in @discarding as it reads the event, and
     * forgets it once it has freed the pages (or marked DISCARDED those a thread holds).
     * No page is mapped inside these ranges (BF_MAP_UNLESS_DISCARDING); this lock makes
     * reading-and-noting and checking-and-mapping each one step.
     */
    GMutex place_lock;
    GArray *discarding;             /* BfPageRange */

    GMutex pool_error_lock;
    char pool_error[256];           /* see BfEngineStats */

    GMutex lock;                    /* protects the fields up to @cond */
    bool stopping;
    bool reclaim_kicked;
    bool restore_requested;
    BfChannel *fault_channel;       /* a connected channel offered to the fault thread */
    GArray *refetch;                /* pages the fault thread must fetch (uint64_t) */
    GArray *pool_free;              /* pages whose pool copy the reclaim thread frees */
    GArray *streamed;               /* pages sequential streams fetched under the limit
                                     * (uint64_t), oldest first: for drop-behind */
    bool hinting;                   /* a free page hint round is on (bf_engine_hint_begin) */
    GArray *hinted;                 /* [first, end) page ranges hinted free, for the fault
                                     * thread to free (pairs of uint64_t) */
    uint64_t hints_queued;          /* ranges hinted and not freed yet */
    GCond hint_cond;                /* signalled when the fault thread has freed some */
    GCond cond;                     /* the reclaim thread sleeps on it */

    _Atomic bool fault_stop;
    _Atomic bool restoring;
    _Atomic bool idle_stopped;      /* by a restore, until the limit is set again */
    _Atomic uint64_t local_limit;   /* bytes */
    _Atomic BfPoolState pool_state;
    /* The pool refused the last eviction for lack of room (full, or our key's quota): until
     * it takes pages again, eviction is paused and faults may go past the local limit. */
    _Atomic bool pool_full;

    /* Page counts by where the content is. */
    _Atomic uint64_t nr_resident;   /* RESIDENT, EVICTING, PUNCHING */
    _Atomic uint64_t nr_remote;     /* REMOTE, FETCHING */
    _Atomic uint64_t nr_zero;
    _Atomic uint64_t nr_free;

    _Atomic uint64_t faults_missing;
    _Atomic uint64_t faults_minor;
    _Atomic uint64_t faults_wp;
    _Atomic uint64_t pages_evicted;
    _Atomic uint64_t pages_restored;
    _Atomic uint64_t clean_evictions;
    _Atomic uint64_t readahead_pages;
    _Atomic uint64_t drop_behind_pages;
    _Atomic uint64_t pool_bytes_sent;
    _Atomic uint64_t pool_bytes_received;
    _Atomic uint64_t scan_ns;
    _Atomic uint64_t scan_samples;
    _Atomic uint64_t free_reports;  /* discards by QEMU (free page reporting, balloon) */
    _Atomic uint64_t free_hinted;   /* resident or remote pages freed on a free page hint */
    _Atomic uint64_t hint_kept;     /* resident pages hinted, but kept: not zero */
    _Atomic uint64_t pool_stored;   /* pages the node says it holds for us (each period) */
    BfLatency fault_latency;
    BfLatency free_latency;         /* time to free a discarded range */
};

static inline uint64_t bf_counter(_Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static inline void bf_count(_Atomic uint64_t *c, int64_t delta)
{
    atomic_fetch_add_explicit(c, (uint64_t)delta, memory_order_relaxed);
}

static inline bool bf_page_is_zero(const uint8_t *page)
{
    const uint64_t *w = (const uint64_t *)page;

    for (unsigned i = 0; i < BF_PAGE_SIZE / 8; i++) {
        if (w[i]) {
            return false;
        }
    }
    return true;
}

static inline uint64_t bf_page_addr(BfEngine *e, uint64_t page)
{
    return (uintptr_t)e->guest + page * BF_PAGE_SIZE;
}

/* Above this many resident pages the fault thread waits for the reclaim thread. */
static inline uint64_t bf_engine_ceiling(BfEngine *e)
{
    return atomic_load(&e->local_limit) / BF_PAGE_SIZE;
}

/*
 * The reclaim thread keeps the resident pages under the ceiling by this headroom, 1/16 of
 * it, at most two eviction batches, so that faults rarely wait for it.
 */
static inline uint64_t bf_engine_headroom(BfEngine *e)
{
    return MIN(bf_engine_ceiling(e) / 16, 2 * (uint64_t)e->tun.evict_batch);
}

/* Is there a local limit below guest RAM? */
static inline bool bf_engine_limited(BfEngine *e)
{
    return bf_engine_ceiling(e) < e->npages;
}

/*
 * Half the headroom is used: pages brought in should wake the reclaim thread now, so that
 * it evicts while the guest uses them, not when a fault finds no room and waits for it.
 */
static inline bool bf_engine_reclaim_due(BfEngine *e)
{
    return bf_engine_limited(e) &&
           bf_counter(&e->nr_resident) > bf_engine_ceiling(e) - bf_engine_headroom(e) / 2;
}

static inline bool bf_engine_has_pool(BfEngine *e)
{
    return e->pool || e->connect;
}

/* Calls an optional event callback. */
#define BF_EVENT(e, name, ...) do {                                         \
        if ((e)->events.name) {                                             \
            (e)->events.name((e)->events_opaque, __VA_ARGS__);              \
        }                                                                   \
    } while (0)

/* bf-engine.c */
void bf_engine_set_pool_state(BfEngine *e, BfPoolState state, const char *detail);
void bf_engine_kick_reclaim(BfEngine *e);
void bf_engine_wake_fault_thread(BfEngine *e);
/*
 * The three calls below map a page the caller holds BUSY (resident, or claimed to be) into
 * guest RAM, and end that hold: released, waking whoever waits on it. No page is mapped where
 * QEMU is discarding: mapped after QEMU's madvise(), it would stay mapped, and the guest's
 * writes to it would be punched with the range. Such a page is ended FREE instead, as the
 * discard's turn would end it (punched, its pool copy freed), and they return FALSE: its
 * faults come again after the event, and find it free.
 *
 * Pages are mapped writable, clean ones too (eviction finds out by their hash whether they
 * changed), but for those with a mark of BF_PAGE_PROTECTED_MARKS (READ_ONLY, or HINTABLE in
 * a free page hint round): those are mapped back, or placed from the pool, write-protected,
 * so that their first write clears the marks.
 *
 * Maps @page back from the memfd: UFFDIO_CONTINUE. @write: for a write fault, writable
 * whatever its marks (write-protected, the write would only fault again).
 */
bool bf_engine_map_back(BfEngine *e, uint64_t page, bool write);
/* Zero-fills @page (absent from the memfd) with UFFDIO_ZEROPAGE. */
bool bf_engine_zero_fill(BfEngine *e, uint64_t page);
/* Places @data as @page (absent from the memfd) with UFFDIO_COPY, writable. */
bool bf_engine_place(BfEngine *e, uint64_t page, const void *data);
/*
 * Zero-fills @npages consecutive pages (absent from the memfd) with one call, the caller's
 * hold on them kept; FALSE if they meet a range QEMU is discarding, or the call failed (a
 * page was there already): nothing was filled then, or, if the process is being killed,
 * only a part.
 */
bool bf_engine_try_zero_fill_run(BfEngine *e, uint64_t page, uint64_t npages);
/* Write-protects @npages pages from @page (those mapped). */
void bf_engine_protect(BfEngine *e, uint64_t page, uint64_t npages);
/* Write-enables @npages pages from @page (held by the caller) and wakes their waiters. */
void bf_engine_unprotect(BfEngine *e, uint64_t page, uint64_t npages);
/*
 * Places the pages of @req, fetched from the pool (their data at req->data), writable (those
 * marked READ_ONLY or HINTABLE write-protected, unless @writable: for a write fault). A page
 * the guest freed while it was fetched (DISCARDED, or in a range being discarded) is left
 * out, so that its old content never shows. @placed[i] says whether req->pages[i] was placed.
 */
void bf_engine_place_fetched(BfEngine *e, const BfRequest *req, bool writable, bool *placed);
/* The hash of a page's content @data, as e->pool_hash keeps it. */
static inline XXH128_hash_t bf_engine_page_hash(BfEngine *e, const void *data)
{
    return XXH3_128bits_withSeed(data, BF_PAGE_SIZE, e->pool_hash_seed);
}
/*
 * Whether every page of @req, fetched from the pool by a thread that holds its pages
 * (FETCHING), came back as it was sent; if not, FALSE with a message naming the first that
 * did not in @why (g_free() it). A node that alters or mixes up pages is caught here, before
 * any of them is placed. Pages the guest freed while they were fetched (DISCARDED: never
 * placed) are not looked at, so that one the node keeps altered does not hold up its faults.
 */
bool bf_engine_fetched_intact(BfEngine *e, const BfRequest *req, char **why);
/*
 * Publishes a page its caller fetched: RESIDENT if it was @placed, CLEAN unless fetched
 * @writable for a write fault (which changes it at once), unless the guest has freed it
 * since (DISCARDED: punched again); else FREE, its pool copy to be freed. Wakes its waiters.
 */
void bf_engine_fetched(BfEngine *e, uint64_t page, bool placed, bool writable);
/*
 * The rule that keeps faults from being lost: a fault that finds a page held by a thread
 * (BUSY, FETCHING, EVICTING, PUNCHING) marks it WANTED and leaves it to that thread, and
 * whoever clears WANTED wakes the page's waiters (a stale wake-up only makes the guest retry
 * its access, which faults again if it must).
 */
void bf_engine_wake_if_wanted(BfEngine *e, uint64_t page, uint16_t old);
/* Clears BUSY and WANTED, waking the waiters if WANTED was set. */
void bf_engine_release(BfEngine *e, uint64_t page);
BfChannel *bf_engine_connect_channel(BfEngine *e, GError **errp);
/* Drops the guest mappings of @npages pages from @page (they stay in the memfd). */
void bf_engine_zap(BfEngine *e, uint64_t page, uint64_t npages);
/* Drops @npages pages from @page out of the memfd (their memory goes back to the host). */
void bf_engine_punch(BfEngine *e, uint64_t page, uint64_t npages);
/*
 * Does a REMOVE event for [start, end) have the range of the engine's zap in progress, whose
 * event the fault thread has not resolved yet? It may be the zap's, or QEMU's.
 */
bool bf_engine_is_zap_event(BfEngine *e, uint64_t start, uint64_t end);
/* The fault thread has told the zap's event from QEMU's: the zap may end. */
void bf_engine_zap_resolved(BfEngine *e);
/*
 * QEMU is discarding the pages [first, last): none is placed until bf_engine_discard_end().
 * The fault thread calls it as it reads the REMOVE event, holding place_lock.
 */
void bf_engine_discard_begin_locked(BfEngine *e, uint64_t first, uint64_t last);
/* The fault thread has freed the discarded pages [first, last) (or marked them DISCARDED). */
void bf_engine_discard_end(BfEngine *e, uint64_t first, uint64_t last);
/* Does [first, last) meet a range QEMU is discarding? */
bool bf_engine_discarding(BfEngine *e, uint64_t first, uint64_t last);
/* Queues @page's pool copy to be freed by the reclaim thread. */
void bf_engine_free_pool_copy(BfEngine *e, uint64_t page);
/*
 * Drop-behind: queues @n pages sequential streams fetched under the limit. The reclaim
 * thread evicts first those the streams have since fetched BF_ENGINE_BEHIND_DISTANCE pages
 * past: the two largest readahead windows a stream fetches ahead of its faults
 * (bf-readahead.h), and one more behind them. The queue keeps the newest
 * BF_ENGINE_STREAMED_MAX.
 */
#define BF_ENGINE_BEHIND_DISTANCE (3 * BF_PROTO_MAX_PAGES)
#define BF_ENGINE_STREAMED_MAX 16384
void bf_engine_queue_streamed(BfEngine *e, const uint64_t *pages, guint n);

/* bf-fault.c */
gpointer bf_fault_thread(gpointer opaque);
/* On the fault thread: reads pending userfaultfd messages (queued for later), so that a
 * pending event no longer blocks ioctls, and returns TRUE. Elsewhere: FALSE. */
bool bf_fault_thread_unblock(void);

/* bf-reclaim.c */
void bf_reclaim_init(BfEngine *e);
void bf_reclaim_cleanup(BfEngine *e);
gpointer bf_reclaim_thread(gpointer opaque);

#endif
