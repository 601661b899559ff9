/*
 * bf-reclaim: the reclaim thread. Every scan period it samples which guest pages are in use;
 * whenever more pages are resident than the local limit allows (less a little headroom, so
 * that faults rarely wait), it evicts the coldest to the pool; with an idle age, it also
 * evicts, each period, the pages of regions unused that long, whatever the limit; on request
 * it brings every remote page back; and it keeps the pool connected, handing the fault thread
 * its channel.
 *
 * Sampling (bounded cost, after DAMON): guest RAM is cut into regions, as many as the scan
 * budget allows (one page each for small guests). Each period the scanner drops the mapping
 * of one resident page per region (MADV_DONTNEED keeps the page in the memfd); if the guest
 * touches it, a minor fault marks it ACCESSED. A region whose sample went untouched for a
 * whole period, and none of whose pages faulted in, ages by one; any other goes back to age
 * 0. Eviction under the limit takes first the pages a sequential stream has read past
 * (drop-behind, see bf-fault.c), then the pages of the oldest regions, skipping any page
 * faulted in during the last period.
 *
 * Eviction of a batch (see bf-pages.h for the states):
 *   claim RESIDENT -> EVICTING, drop the mappings of the pages the pool has no current copy
 *   of (write-protect the clean ones: they stay mapped until the punch) and read them
 *   through the memfd, send the ones not all zero, nor clean with the hash their pool copy
 *   had (a clean page may be mapped writable, its writes unseen until then; a READ_ONLY one
 *   is write-protected since it was placed, and neither read nor sent), then for each page:
 *   if a fault wants it, map it back; else EVICTING -> PUNCHING, punch it out of the memfd,
 *   and PUNCHING -> REMOTE (or ZERO), or place it right back from the copy read if a fault
 *   came meanwhile (a READ_ONLY page is published REMOTE and its fault woken, to fetch it).
 *
 * A page comes back from the pool write-protected (READ_ONLY) if it was not written in its
 * last stay, writable else: a page written once is likely written again, and a write to a
 * protected page costs a fault, where a look at a writable one costs a read and a hash.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-engine-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#define BF_RESTORE_INFLIGHT 4
#define BF_NO_SAMPLE UINT64_MAX
#define BF_CONNECT_BACKOFF_MIN_MS 100
#define BF_CONNECT_BACKOFF_MAX_MS 2000
/*
 * A connection lost sooner than this after it was made counts as a failed attempt: a node
 * that takes connections but fails what is asked of it (lost or altered pages) is retried
 * at the backoff's pace, not at once.
 */
#define BF_CONNECT_STABLE_MS 10000

/* One eviction batch, from claiming its pages to publishing them remote. */
typedef struct {
    uint32_t n;                     /* pages claimed (EVICTING) */
    uint64_t victims[BF_PROTO_MAX_PAGES];
    bool in_pool[BF_PROTO_MAX_PAGES];   /* clean and unchanged: the pool's copy is current, so
                                           the page is not sent */
    bool read_only[BF_PROTO_MAX_PAGES]; /* clean and READ_ONLY: unchanged without a look, so
                                           not even read (no copy in bounce) */
    bool zero[BF_PROTO_MAX_PAGES];
    bool punched[BF_PROTO_MAX_PAGES];
    XXH128_hash_t hash[BF_PROTO_MAX_PAGES];     /* of the content read */
    uint32_t zeros;
    uint32_t new_slots;             /* pages sent that the pool holds no copy of yet */
    bool submitted;                 /* req is in flight on the channel */
    gint64 start;
    BfRequest req;
    uint8_t *bounce;                /* BF_PROTO_MAX_PAGES pages */
} BfEvictBatch;

/* Batches in flight at once: the next is prepared while the pool stores the previous. */
#define BF_EVICT_INFLIGHT 2

typedef struct {
    BfEngine *e;
    BfChannel *channel;
    gint64 next_scan;               /* monotonic microseconds */
    gint64 next_connect;
    guint connect_delay_ms;
    gint64 connected_at;            /* when the current connection was made; 0: none */
    gint64 evict_pause_until;       /* after the pool refused a write for lack of room */
    bool restore_pending;
    uint64_t evict_cursor;          /* the region the victim search resumes at */
    uint64_t idle_cursor;           /* the same, for idle regions */
    BfEvictBatch *batches;          /* BF_EVICT_INFLIGHT */
} BfReclaimCtx;

void bf_reclaim_init(BfEngine *e)
{
    uint64_t region_pages = 1;

    while (e->npages / region_pages > e->tun.scan_budget) {
        region_pages *= 2;
    }
    e->region_shift = __builtin_ctzll(region_pages);
    e->nregions = (e->npages + region_pages - 1) >> e->region_shift;
    e->region_age = g_new0(uint8_t, e->nregions);
    e->region_sample = g_new(uint64_t, e->nregions);
    for (uint64_t r = 0; r < e->nregions; r++) {
        e->region_sample[r] = BF_NO_SAMPLE;
    }
    /* Left unwritten (so unallocated) until pages go to the pool. */
    e->pool_hash = g_new0(XXH128_hash_t, e->npages);
    e->pool_hash_seed = (uint64_t)g_random_int() << 32 | g_random_int();
}

void bf_reclaim_cleanup(BfEngine *e)
{
    g_free(e->region_age);
    g_free(e->region_sample);
    g_free(e->pool_hash);
}

static uint64_t bf_region_first(BfEngine *e, uint64_t r)
{
    return r << e->region_shift;
}

static uint64_t bf_region_end(BfEngine *e, uint64_t r)
{
    return MIN((r + 1) << e->region_shift, e->npages);
}

/* Drops the guest mappings of @pages (sorted or not), one call per contiguous run. */
static void bf_reclaim_zap(BfEngine *e, const uint64_t *pages, uint32_t n)
{
    for (uint32_t i = 0; i < n;) {
        uint32_t j = i + 1;

        while (j < n && pages[j] == pages[j - 1] + 1) {
            j++;
        }
        bf_engine_zap(e, pages[i], j - i);
        i = j;
    }
}

/* One scan period: age each region by its sample, then take and zap new samples. */
static void bf_reclaim_scan(BfReclaimCtx *c)
{
    BfEngine *e = c->e;
    gint64 start = g_get_monotonic_time();
    g_autoptr(GArray) zap = g_array_new(FALSE, FALSE, sizeof(uint64_t));

    for (uint64_t r = 0; r < e->nregions; r++) {
        uint64_t s = e->region_sample[r];
        uint16_t m;

        if (s == BF_NO_SAMPLE) {
            continue;
        }
        m = bf_page_load(&e->pages[s]);
        if (bf_page_state(m) != BF_PAGE_RESIDENT) {
            continue;       /* evicted meanwhile: no news */
        }
        if ((m & BF_PAGE_ZAPPED) && !(m & BF_PAGE_ACCESSED)) {
            e->region_age[r] = MIN(e->region_age[r] + 1, 255);
        } else {
            e->region_age[r] = 0;
        }
    }

    /*
     * A page faulted in during the period makes its region young whatever its sample said.
     * ACCESSED now means "faulted in during the coming period".
     */
    for (uint64_t p = 0; p < e->npages; p++) {
        uint16_t m = bf_page_load(&e->pages[p]);

        if (m & BF_PAGE_ACCESSED) {
            e->region_age[p >> e->region_shift] = 0;
        }
        while ((m & BF_PAGE_ACCESSED) &&
               !bf_page_cas(&e->pages[p], &m, m & ~BF_PAGE_ACCESSED)) {
        }
    }

    for (uint64_t r = 0; r < e->nregions; r++) {
        uint64_t first = bf_region_first(e, r), end = bf_region_end(e, r);
        uint64_t from = e->region_sample[r] == BF_NO_SAMPLE ? first : e->region_sample[r] + 1;
        uint64_t len = end - first;

        e->region_sample[r] = BF_NO_SAMPLE;
        for (uint64_t k = 0; k < len; k++) {
            uint64_t p = first + (from - first + k) % len;
            uint16_t m = bf_page_load(&e->pages[p]);

            if (bf_page_state(m) != BF_PAGE_RESIDENT || (m & BF_PAGE_BUSY)) {
                continue;
            }
            if ((m & BF_PAGE_ZAPPED) ||
                bf_page_cas(&e->pages[p], &m, m | BF_PAGE_ZAPPED)) {
                if (!(m & BF_PAGE_ZAPPED)) {
                    g_array_append_val(zap, p);
                }
                e->region_sample[r] = p;
                break;
            }
        }
    }
    bf_reclaim_zap(e, (uint64_t *)zap->data, zap->len);
    start = (g_get_monotonic_time() - start) * 1000;
    bf_count(&e->scan_samples, zap->len);
    bf_count(&e->scan_ns, start);
    BF_EVENT(e, trace_scan, zap->len, start);
}

/*
 * Adds to @victims[@n..] resident pages, not held by another thread, of the regions aged
 * @min_age up to (not including) @below_age, from *@cursor on (left where the search stopped),
 * until there are @want: pages faulted in this period only if @accessed, only those else.
 * Returns the new count.
 */
static uint32_t bf_reclaim_pick_regions(BfReclaimCtx *c, uint64_t *cursor, int min_age,
                                        int below_age, bool accessed, uint64_t *victims,
                                        uint32_t n, uint32_t want)
{
    BfEngine *e = c->e;

    for (uint64_t k = 0; k < e->nregions && n < want; k++) {
        uint64_t r = (*cursor + k) % e->nregions;

        if (e->region_age[r] < min_age || e->region_age[r] >= below_age) {
            continue;
        }
        for (uint64_t p = bf_region_first(e, r); p < bf_region_end(e, r) && n < want; p++) {
            uint16_t m = bf_page_load(&e->pages[p]);

            if (bf_page_state(m) == BF_PAGE_RESIDENT && !(m & BF_PAGE_BUSY) &&
                !!(m & BF_PAGE_ACCESSED) == accessed) {
                victims[n++] = p;
            }
        }
        if (n >= want) {
            *cursor = r;
        }
    }
    return n;
}

/*
 * Takes into @victims up to @want of the pages streams have since fetched
 * BF_ENGINE_BEHIND_DISTANCE pages past (bf_engine_queue_streamed()), oldest first, those
 * still resident and not held by another thread. Returns how many.
 */
static uint32_t bf_reclaim_pick_behind(BfReclaimCtx *c, uint64_t *victims, uint32_t want)
{
    BfEngine *e = c->e;
    uint32_t n = 0;
    guint taken = 0, passed;

    g_mutex_lock(&e->lock);
    passed = e->streamed->len - MIN(e->streamed->len, BF_ENGINE_BEHIND_DISTANCE);
    for (; taken < passed && n < want; taken++) {
        uint64_t p = g_array_index(e->streamed, uint64_t, taken);
        uint16_t m = bf_page_load(&e->pages[p]);

        if (bf_page_state(m) == BF_PAGE_RESIDENT && !(m & BF_PAGE_BUSY)) {
            victims[n++] = p;
        }
    }
    g_array_remove_range(e->streamed, 0, taken);
    g_mutex_unlock(&e->lock);
    bf_count(&e->drop_behind_pages, n);
    return n;
}

/*
 * Picks up to @want eviction candidates into @victims: pages streams have read past first,
 * then pages of the oldest regions (by descending age thresholds), skipping pages faulted in
 * this period; in a last, forced pass, those too. Each pass over the regions visits only the
 * regions the previous passes did not, so none of their pages is picked twice (one picked
 * twice, from the streams' and a region's, is claimed once and skipped the second time).
 */
static uint32_t bf_reclaim_pick(BfReclaimCtx *c, uint64_t *victims, uint32_t want)
{
    BfEngine *e = c->e;
    int oldest = 0, thresholds[5], nthresholds = 0, above = 256;
    uint32_t n = bf_reclaim_pick_behind(c, victims, want);

    if (n == want) {
        return n;
    }
    for (uint64_t r = 0; r < e->nregions; r++) {
        oldest = MAX(oldest, e->region_age[r]);
    }
    thresholds[nthresholds++] = oldest;
    if (oldest / 2 > (int)e->tun.cold_age) {
        thresholds[nthresholds++] = oldest / 2;
    }
    if (oldest > (int)e->tun.cold_age) {
        thresholds[nthresholds++] = e->tun.cold_age;
    }
    if (thresholds[nthresholds - 1] > 0) {
        thresholds[nthresholds++] = 0;
    }
    thresholds[nthresholds++] = -1;

    for (int t = 0; t < nthresholds && n < want; t++) {
        bool forced = thresholds[t] < 0;

        n = bf_reclaim_pick_regions(c, &c->evict_cursor, forced ? 0 : thresholds[t],
                                    forced ? 256 : above, forced, victims, n, want);
        above = thresholds[t];
    }
    return n;
}

/*
 * Picks up to @want pages of regions unused for the idle age into @victims, skipping pages
 * faulted in this period (at the next scan, their faults make the region young again).
 */
static uint32_t bf_reclaim_pick_idle(BfReclaimCtx *c, uint64_t *victims, uint32_t want)
{
    return bf_reclaim_pick_regions(c, &c->idle_cursor, c->e->tun.idle_age, 256, false,
                                   victims, 0, want);
}

/*
 * Hands a page that was WANTED back to the guest, from @data (or zero-filled), or ends it
 * FREE if QEMU is discarding it.
 */
static void bf_reclaim_give_back(BfEngine *e, uint64_t page, bool punched, bool zero,
                                 const void *data)
{
    if (!punched) {
        bf_engine_map_back(e, page, false);
    } else if (zero) {
        bf_engine_zero_fill(e, page);
    } else {
        bf_engine_place(e, page, data);
    }
}

/*
 * Ends a page of a batch that the guest freed while it was being evicted (DISCARDED, @m),
 * its memfd copy punched out already: FREE, or a fresh zero page if a fault wants it since.
 * FALSE if its metadata changed first (*@m then holds the new value).
 */
static bool bf_reclaim_end_discarded(BfEngine *e, uint64_t p, uint16_t *m)
{
    bool wanted = *m & BF_PAGE_WANTED;

    if (!bf_page_cas(&e->pages[p], m, wanted ?
                     BF_PAGE_RESIDENT | BF_PAGE_BUSY | BF_PAGE_ACCESSED : BF_PAGE_FREE)) {
        return false;
    }
    if (*m & BF_PAGE_POOL_COPY) {
        bf_engine_free_pool_copy(e, p);
    }
    if (wanted) {
        bf_reclaim_give_back(e, p, true, true, NULL);
    } else {
        bf_count(&e->nr_resident, -1);
        bf_count(&e->nr_free, 1);
    }
    return true;
}

/*
 * The eviction failed: the claimed pages stay resident (clean ones clean, the others dirty),
 * but for those the guest freed meanwhile, which end FREE as a finished eviction would end
 * them.
 */
static void bf_reclaim_cancel(BfEngine *e, BfEvictBatch *b)
{
    for (uint32_t i = 0; i < b->n; i++) {
        uint64_t p = b->victims[i];
        uint16_t m = bf_page_load(&e->pages[p]);
        bool punched = false;

        for (;;) {
            if (m & BF_PAGE_DISCARDED) {
                if (!punched) {
                    bf_engine_punch(e, p, 1);
                    punched = true;
                }
                if (bf_reclaim_end_discarded(e, p, &m)) {
                    break;
                }
                continue;
            }
            if (bf_page_cas(&e->pages[p], &m,
                            bf_page_with_state(m, BF_PAGE_RESIDENT) | BF_PAGE_BUSY)) {
                if (m & BF_PAGE_WANTED) {
                    bf_engine_map_back(e, p, false);
                } else {
                    bf_engine_release(e, p);
                }
                break;
            }
        }
    }
    b->n = 0;
    b->submitted = false;
}

static void bf_reclaim_lose_channel(BfReclaimCtx *c, const char *why)
{
    bf_channel_close(c->channel, false);
    c->channel = NULL;
    bf_engine_set_pool_state(c->e, BF_POOL_UNREACHABLE, why);
}

static int bf_reclaim_page_order(const void *a, const void *b)
{
    uint64_t pa = *(const uint64_t *)a, pb = *(const uint64_t *)b;

    return pa < pb ? -1 : pa > pb;
}

/* The end of the run of @b's victims from @i: consecutive pages, all in the pool or none. */
static uint32_t bf_reclaim_run_end(const BfEvictBatch *b, uint32_t i)
{
    uint32_t j = i + 1;

    while (j < b->n && b->victims[j] == b->victims[j - 1] + 1 &&
           b->in_pool[j] == b->in_pool[i] && b->read_only[j] == b->read_only[i]) {
        j++;
    }
    return j;
}

/*
 * First half of an eviction: claims the @n candidates in b->victims (from now on no write
 * to them succeeds without us), copies them out through the memfd, and sends those that
 * are not all zero, nor clean and unchanged. A page the pool holds no current copy of has
 * its mapping dropped first; a clean one is write-protected instead, and sent only if its
 * hash shows that it changed since it was placed; a READ_ONLY one (write-protected since it
 * was placed) is known unchanged, and not even read. Reads of a clean page see what was
 * read, or what the pool holds, until the punch unmaps it. FALSE if nothing was claimed or
 * the pool failed.
 */
static bool bf_reclaim_evict_begin(BfReclaimCtx *c, BfEvictBatch *b, uint32_t n)
{
    BfEngine *e = c->e;
    BfRequest *req = &b->req;
    g_autoptr(GError) err = NULL;

    b->start = g_get_monotonic_time();
    b->n = b->zeros = 0;
    b->submitted = false;
    /*
     * In page order: each run of consecutive pages is zapped (or protected) and read (unless
     * READ_ONLY) and punched in one call, and each zap waits for the fault thread to read its
     * event.
     */
    qsort(b->victims, n, sizeof(b->victims[0]), bf_reclaim_page_order);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t p = b->victims[i];
        uint16_t m = bf_page_load(&e->pages[p]);

        if (bf_page_state(m) == BF_PAGE_RESIDENT && !(m & BF_PAGE_BUSY) &&
            bf_page_cas(&e->pages[p], &m,
                        (m & (BF_PAGE_CLEAN | BF_PAGE_POOL_COPY | BF_PAGE_READ_ONLY)) |
                        BF_PAGE_EVICTING)) {
            b->in_pool[b->n] = (m & BF_PAGE_CLEAN) && (m & BF_PAGE_POOL_COPY);
            b->read_only[b->n] = b->in_pool[b->n] && (m & BF_PAGE_READ_ONLY);
            b->victims[b->n++] = p;
        }
    }
    if (!b->n) {
        return false;
    }

    /* Zap (or, if clean, protect) each run, then copy it out through the memfd. */
    for (uint32_t i = 0, j; i < b->n; i = j) {
        ssize_t len;

        j = bf_reclaim_run_end(b, i);
        len = (j - i) * BF_PAGE_SIZE;
        if (b->read_only[i]) {
            continue;
        }
        if (b->in_pool[i]) {
            bf_engine_protect(e, b->victims[i], j - i);
        } else {
            bf_engine_zap(e, b->victims[i], j - i);
        }
        if (pread(e->memfd, b->bounce + (uint64_t)i * BF_PAGE_SIZE, len,
                  b->victims[i] * BF_PAGE_SIZE) != len) {
            g_critical("blowfish %s: cannot read page %" G_GUINT64_FORMAT ": %s", e->name,
                       (guint64)b->victims[i], g_strerror(errno));
            bf_reclaim_cancel(e, b);
            return false;
        }
    }

    /*
     * Decide each page: a clean one stays unsent if its hash is still its pool copy's, an
     * all-zero one is dropped, the others are sent, their hash kept for when they come back.
     */
    req->type = BF_MSG_WRITE;
    req->count = 0;
    b->new_slots = 0;
    for (uint32_t i = 0; i < b->n; i++) {
        uint64_t p = b->victims[i];
        uint8_t *copy = b->bounce + (uint64_t)i * BF_PAGE_SIZE;
        bool hashed = false;
        uint16_t m;

        b->zero[i] = false;
        if (b->read_only[i]) {
            continue;
        }
        if (b->in_pool[i]) {
            b->hash[i] = bf_engine_page_hash(e, copy);
            if (XXH128_isEqual(b->hash[i], e->pool_hash[p])) {
                continue;
            }
            /*
             * Written since it was placed: sent after all, and not clean from now on, should
             * the eviction fail (the pool's copy is then unknown).
             */
            b->in_pool[i] = false;
            hashed = true;
            m = bf_page_load(&e->pages[p]);
            while (!bf_page_cas(&e->pages[p], &m, m & ~BF_PAGE_CLEAN)) {
            }
        }
        b->zero[i] = bf_page_is_zero(copy);
        b->zeros += b->zero[i];
        if (b->zero[i]) {
            continue;
        }
        if (!hashed) {
            b->hash[i] = bf_engine_page_hash(e, copy);
        }
        m = bf_page_load(&e->pages[p]);
        b->new_slots += !(m & BF_PAGE_POOL_COPY);
        req->pages[req->count] = p;
        req->data[req->count++] = copy;
    }
    if (req->count) {
        if (!c->channel) {
            bf_reclaim_cancel(e, b);
            return false;
        }
        if (!bf_channel_submit(c->channel, req, &err)) {
            bf_reclaim_lose_channel(c, err->message);
            bf_reclaim_cancel(e, b);
            return false;
        }
        b->submitted = true;
    }
    return true;
}

/*
 * The pool has no room for us (@full: it refused a write with @detail), or took pages again.
 * While it is full, faults go past the local limit rather than wait for room that eviction
 * cannot make: the guest runs on, and the event tells the operator.
 */
static void bf_reclaim_set_pool_full(BfEngine *e, bool full, const char *detail)
{
    if (atomic_exchange(&e->pool_full, full) == full) {
        return;
    }
    if (full) {
        g_message("blowfish %s: eviction paused, the guest may go past its local limit: the "
                  "memory node has no room: %s", e->name, detail);
        bf_engine_wake_fault_thread(e);     /* faults waiting for room go on */
    } else {
        g_message("blowfish %s: eviction resumed: the memory node takes pages again",
                  e->name);
    }
    BF_EVENT(e, pool_full, full, detail);
}

/*
 * Second half: once the pool has the pages, each goes back to a fault that wants it, or is
 * punched out of the memfd and published remote (zero pages: held nowhere; READ_ONLY if it
 * was not sent: it comes back write-protected). A page wanted while it was punched goes
 * back from the copy read, or, if it was READ_ONLY and not read, is published remote all
 * the same and its fault woken, to fault again and fetch it. FALSE if the pool failed or
 * refused (the pages stay resident).
 */
static bool bf_reclaim_evict_finish(BfReclaimCtx *c, BfEvictBatch *b)
{
    BfEngine *e = c->e;
    BfRequest *req = &b->req;
    g_autoptr(GError) err = NULL;

    if (b->submitted) {
        BfRequest *done = c->channel ? bf_channel_complete(c->channel, e->tun.pool_timeout_ms,
                                                           &err) : NULL;

        b->submitted = false;
        if (!done) {
            if (c->channel) {
                bf_reclaim_lose_channel(c, err->message);
            }
            bf_reclaim_cancel(e, b);
            return false;
        }
        g_assert(done == req);
        if (req->pool_error == BF_PROTO_ERR_NO_SPACE || req->pool_error == BF_PROTO_ERR_QUOTA) {
            bf_reclaim_set_pool_full(e, true, req->pool_message);
        } else if (req->pool_error) {
            g_warning("blowfish %s: eviction paused: the memory node refused %u pages: %s",
                      e->name, req->count, req->pool_message);
        }
        if (req->pool_error) {
            c->evict_pause_until = g_get_monotonic_time() + e->tun.scan_period_ms * 1000;
            bf_reclaim_cancel(e, b);
            return false;
        }
        if (b->new_slots) {
            /* Overwriting copies it holds shows no room: taking new pages does. */
            bf_reclaim_set_pool_full(e, false, "");
        }
        bf_count(&e->pool_bytes_sent, (uint64_t)req->count * BF_PAGE_SIZE);
        for (uint32_t i = 0; i < b->n; i++) {
            if (!b->zero[i] && !b->in_pool[i]) {
                e->pool_hash[b->victims[i]] = b->hash[i];
            }
        }
    }

    /* Decide each page: back to a waiting fault, or out of the memfd. */
    for (uint32_t i = 0; i < b->n; i++) {
        uint64_t p = b->victims[i];
        uint16_t m = bf_page_load(&e->pages[p]), keep;

        b->punched[i] = false;
        for (;;) {
            keep = b->zero[i] ? (m & BF_PAGE_POOL_COPY) : BF_PAGE_POOL_COPY;
            if ((m & BF_PAGE_WANTED) && !(m & BF_PAGE_DISCARDED)) {
                if (bf_page_cas(&e->pages[p], &m, BF_PAGE_RESIDENT | BF_PAGE_BUSY |
                                BF_PAGE_ACCESSED | keep |
                                (b->zero[i] ? 0 : BF_PAGE_CLEAN))) {
                    bf_reclaim_give_back(e, p, false, b->zero[i], NULL);
                    break;
                }
            } else if (bf_page_cas(&e->pages[p], &m, BF_PAGE_PUNCHING | keep |
                                   (m & (BF_PAGE_WANTED | BF_PAGE_DISCARDED)))) {
                b->punched[i] = true;
                break;
            }
        }
    }
    for (uint32_t i = 0; i < b->n; i++) {
        uint32_t j = i;

        if (!b->punched[i]) {
            continue;
        }
        while (j + 1 < b->n && b->punched[j + 1] && b->victims[j + 1] == b->victims[j] + 1) {
            j++;
        }
        bf_engine_punch(e, b->victims[i], j - i + 1);
        i = j;
    }

    /* Publish: remote (or zero), unless a fault came while we punched. */
    for (uint32_t i = 0; i < b->n; i++) {
        uint64_t p = b->victims[i];
        uint16_t m = bf_page_load(&e->pages[p]);
        bool clean = !b->zero[i] && (m & BF_PAGE_POOL_COPY);

        if (!b->punched[i]) {
            continue;
        }
        for (;;) {
            uint16_t keep = m & BF_PAGE_POOL_COPY;

            if (m & BF_PAGE_DISCARDED) {
                /* Freed by the guest meanwhile. */
                if (bf_reclaim_end_discarded(e, p, &m)) {
                    break;
                }
                continue;
            }
            if ((m & BF_PAGE_WANTED) && !b->read_only[i]) {
                if (bf_page_cas(&e->pages[p], &m, BF_PAGE_RESIDENT | BF_PAGE_BUSY |
                                BF_PAGE_ACCESSED | keep | (clean ? BF_PAGE_CLEAN : 0))) {
                    bf_reclaim_give_back(e, p, true, b->zero[i],
                                         b->bounce + (uint64_t)i * BF_PAGE_SIZE);
                    break;
                }
            } else if (bf_page_cas(&e->pages[p], &m, keep |
                                   (b->zero[i] ? BF_PAGE_ZERO : BF_PAGE_REMOTE) |
                                   (b->in_pool[i] ? BF_PAGE_READ_ONLY : 0))) {
                bf_count(&e->nr_resident, -1);
                bf_count(b->zero[i] ? &e->nr_zero : &e->nr_remote, 1);
                bf_count(&e->pages_evicted, 1);
                /* Clean: evicted with no transfer at all. */
                bf_count(&e->clean_evictions, b->in_pool[i]);
                bf_engine_wake_if_wanted(e, p, m);
                break;
            }
        }
    }
    BF_EVENT(e, trace_evict, b->n, req->count, b->zeros,
             (g_get_monotonic_time() - b->start) * 1000);
    b->n = 0;
    return true;
}

static bool bf_reclaim_stopping(BfEngine *e)
{
    bool stopping;

    g_mutex_lock(&e->lock);
    stopping = e->stopping;
    g_mutex_unlock(&e->lock);
    return stopping;
}

/*
 * Evicts batches, two in flight: the coldest pages until the resident ones fit under the
 * limit less the headroom; or with @idle, the pages of idle regions, at most as many as were
 * resident when it began (a page the guest keeps taking back is not chased round), and for
 * at most half a scan period (the limit and the next scan wait meanwhile; a large idle guest
 * drains over several periods).
 */
static void bf_reclaim_evict(BfReclaimCtx *c, bool idle)
{
    BfEngine *e = c->e;
    uint64_t limit = bf_engine_ceiling(e);
    uint64_t target = limit - bf_engine_headroom(e);
    uint64_t idle_left = bf_counter(&e->nr_resident);
    gint64 idle_until = g_get_monotonic_time() + e->tun.scan_period_ms * 500;
    BfEvictBatch *pending = NULL;
    unsigned next = 0;

    if (!c->channel ||
        (idle ? !e->tun.idle_age || atomic_load(&e->idle_stopped) : limit >= e->npages) ||
        g_get_monotonic_time() < c->evict_pause_until) {
        return;
    }
    for (;;) {
        uint64_t resident = bf_counter(&e->nr_resident) - (pending ? pending->n : 0);
        BfEvictBatch *b = &c->batches[next];
        uint32_t n;

        if ((idle ? !idle_left || g_get_monotonic_time() >= idle_until : resident <= target) ||
            bf_reclaim_stopping(e)) {
            break;
        }
        n = idle ? bf_reclaim_pick_idle(c, b->victims, MIN(idle_left, e->tun.evict_batch)) :
            bf_reclaim_pick(c, b->victims, MIN(resident - target, e->tun.evict_batch));
        if (!n || !bf_reclaim_evict_begin(c, b, n)) {
            break;
        }
        idle_left -= MIN(idle_left, n);
        /* Two batches in flight: finish the older while the pool takes the newer. */
        if (pending && !bf_reclaim_evict_finish(c, pending)) {
            pending = b;
            break;
        }
        bf_engine_wake_fault_thread(e);     /* room for faults that waited */
        pending = b;
        next = (next + 1) % BF_EVICT_INFLIGHT;
    }
    if (pending) {
        bf_reclaim_evict_finish(c, pending);
        bf_engine_wake_fault_thread(e);
    }
}

/* Places a restored batch: clean and resident from now on (FREE if the guest freed them). */
static void bf_reclaim_restored(BfEngine *e, BfRequest *req)
{
    bool placed[BF_PROTO_MAX_PAGES];

    bf_engine_place_fetched(e, req, false, placed);
    for (uint32_t i = 0; i < req->count; i++) {
        bf_engine_fetched(e, req->pages[i], placed[i], false);
    }
}

/*
 * A restore batch that cannot complete: its pages go back to REMOTE (FREE if the guest freed
 * them meanwhile); waiters refetch.
 */
static void bf_reclaim_unclaim(BfEngine *e, BfRequest *req)
{
    bool wake = false;

    for (uint32_t i = 0; i < req->count; i++) {
        uint64_t p = req->pages[i];
        uint16_t m = bf_page_load(&e->pages[p]);

        while (!bf_page_cas(&e->pages[p], &m, (m & BF_PAGE_DISCARDED) ? BF_PAGE_FREE :
                            BF_PAGE_REMOTE | (m & BF_PAGE_POOL_COPY))) {
        }
        if (m & BF_PAGE_DISCARDED) {
            bf_engine_free_pool_copy(e, p);
            bf_count(&e->nr_remote, -1);
            bf_count(&e->nr_free, 1);
        }
        if (m & BF_PAGE_WANTED) {
            g_mutex_lock(&e->lock);
            g_array_append_val(e->refetch, p);
            g_mutex_unlock(&e->lock);
            wake = true;
        }
    }
    if (wake) {
        bf_engine_wake_fault_thread(e);
    }
}

/* Brings every remote page back, BF_RESTORE_INFLIGHT requests in flight. */
static bool bf_reclaim_restore_all(BfReclaimCtx *c)
{
    BfEngine *e = c->e;
    BfRequest *reqs = g_new0(BfRequest, BF_RESTORE_INFLIGHT);
    uint8_t *bounce = g_malloc((uint64_t)BF_RESTORE_INFLIGHT * BF_PROTO_MAX_PAGES *
                               BF_PAGE_SIZE);
    gint64 start = g_get_monotonic_time();
    uint64_t restored = 0, page = 0;
    guint head = 0, inflight = 0;
    bool ok = true;

    while (ok && c->channel && (page < e->npages || inflight)) {
        g_autoptr(GError) err = NULL;
        g_autofree char *altered = NULL;
        const char *why;
        BfRequest *req = &reqs[(head + inflight) % BF_RESTORE_INFLIGHT];

        /* Fill and submit the next request while there is room in flight. */
        if (inflight < BF_RESTORE_INFLIGHT && page < e->npages) {
            uint8_t *slot = bounce + (uint64_t)((head + inflight) % BF_RESTORE_INFLIGHT) *
                            BF_PROTO_MAX_PAGES * BF_PAGE_SIZE;

            req->type = BF_MSG_READ;
            req->count = 0;
            for (; page < e->npages && req->count < BF_PROTO_MAX_PAGES; page++) {
                uint16_t m = bf_page_load(&e->pages[page]);

                if (bf_page_state(m) == BF_PAGE_REMOTE &&
                    bf_page_cas(&e->pages[page], &m, bf_page_with_state(m,
                                                                        BF_PAGE_FETCHING))) {
                    req->data[req->count] = slot + (uint64_t)req->count * BF_PAGE_SIZE;
                    req->pages[req->count++] = page;
                }
            }
            if (req->count) {
                if (!bf_channel_submit(c->channel, req, &err)) {
                    bf_reclaim_unclaim(e, req);
                    bf_reclaim_lose_channel(c, err->message);
                    ok = false;
                    break;
                }
                inflight++;
            }
            continue;
        }
        req = bf_channel_complete(c->channel, e->tun.pool_timeout_ms, &err);
        if (!req) {
            why = err->message;
        } else if (req->pool_error) {
            why = req->pool_message;
        } else {
            why = bf_engine_fetched_intact(e, req, &altered) ? NULL : altered;
        }
        if (why) {
            /* An altered page is a node that corrupts memory, not one that went away. */
            g_log(G_LOG_DOMAIN, altered ? G_LOG_LEVEL_CRITICAL : G_LOG_LEVEL_WARNING,
                  "blowfish %s: restore interrupted: %s", e->name, why);
            for (guint i = 0; i < inflight; i++) {
                bf_reclaim_unclaim(e, &reqs[(head + i) % BF_RESTORE_INFLIGHT]);
            }
            bf_reclaim_lose_channel(c, why);
            ok = false;
            break;
        }
        bf_reclaim_restored(e, req);
        restored += req->count;
        head = (head + 1) % BF_RESTORE_INFLIGHT;
        inflight--;
    }
    if (!c->channel) {
        ok = false;
    }
    if (ok) {
        atomic_store(&e->restoring, false);
        BF_EVENT(e, restore_done, restored * BF_PAGE_SIZE,
                 (g_get_monotonic_time() - start) * 1000);
    }
    g_free(reqs);
    g_free(bounce);
    return ok;
}

/* Asks the node how much it holds for us. */
static void bf_reclaim_pool_stats(BfReclaimCtx *c)
{
    g_autoptr(GError) err = NULL;
    BfPoolStats stats;

    if (!c->channel) {
        return;
    }
    if (!bf_channel_stats(c->channel, c->e->tun.pool_timeout_ms, &stats, &err)) {
        bf_reclaim_lose_channel(c, err->message);
        return;
    }
    atomic_store(&c->e->pool_stored, stats.session_pages);
}

/*
 * Frees at the pool the copies of pages the guest freed. A page written and evicted again
 * since it was freed has a new copy (POOL_COPY): freeing the old one would delete it, so
 * it is left out. Only this thread writes to the pool, and no eviction of its is in flight
 * here, so no new copy can appear while the frees are sent.
 */
static void bf_reclaim_free_pool_copies(BfReclaimCtx *c)
{
    BfEngine *e = c->e;
    g_autoptr(GArray) pages = NULL;
    g_autofree BfRequest *req = NULL;
    guint done = 0;

    g_mutex_lock(&e->lock);
    if (e->pool_free->len && c->channel) {
        pages = e->pool_free;
        e->pool_free = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    }
    g_mutex_unlock(&e->lock);
    if (!pages) {
        return;
    }
    for (guint i = pages->len; i-- > 0;) {
        if (bf_page_load(&e->pages[g_array_index(pages, uint64_t, i)]) & BF_PAGE_POOL_COPY) {
            g_array_remove_index_fast(pages, i);
        }
    }
    req = g_new0(BfRequest, 1);
    while (done < pages->len) {
        g_autoptr(GError) err = NULL;

        req->type = BF_MSG_FREE;
        req->count = MIN(pages->len - done, BF_PROTO_MAX_PAGES);
        memcpy(req->pages, &g_array_index(pages, uint64_t, done), req->count * 8);
        if (!bf_channel_call(c->channel, req, e->tun.pool_timeout_ms, &err)) {
            if (!req->pool_error) {
                bf_reclaim_lose_channel(c, err->message);
            }
            break;
        }
        done += req->count;
    }
    if (done < pages->len) {
        /* Try again once the pool is back. */
        g_mutex_lock(&e->lock);
        g_array_append_vals(e->pool_free, &g_array_index(pages, uint64_t, done),
                            pages->len - done);
        g_mutex_unlock(&e->lock);
    }
}

/* Connects both channels (ours and the fault thread's) if the pool is not connected. */
static void bf_reclaim_connect(BfReclaimCtx *c)
{
    BfEngine *e = c->e;
    g_autoptr(GError) err = NULL;
    BfChannel *fault_channel;
    gint64 now = g_get_monotonic_time();

    if (atomic_load(&e->pool_state) == BF_POOL_CONNECTED && c->channel) {
        return;
    }
    if (c->connected_at) {
        /* The connection was lost: at once after a stable one, else after the backoff. */
        c->connect_delay_ms = now - c->connected_at < BF_CONNECT_STABLE_MS * 1000 ?
            CLAMP(c->connect_delay_ms * 2, BF_CONNECT_BACKOFF_MIN_MS,
                  BF_CONNECT_BACKOFF_MAX_MS) : 0;
        c->next_connect = now + (gint64)c->connect_delay_ms * 1000;
        c->connected_at = 0;
    }
    if (now < c->next_connect) {
        return;
    }
    bf_channel_close(c->channel, false);
    c->channel = bf_engine_connect_channel(e, &err);
    fault_channel = c->channel ? bf_engine_connect_channel(e, &err) : NULL;
    if (!fault_channel) {
        bf_channel_close(c->channel, false);
        c->channel = NULL;
        c->connect_delay_ms = CLAMP(c->connect_delay_ms * 2, BF_CONNECT_BACKOFF_MIN_MS,
                                    BF_CONNECT_BACKOFF_MAX_MS);
        c->next_connect = now + (gint64)c->connect_delay_ms * 1000;
        bf_engine_set_pool_state(e, atomic_load(&e->pool_state) == BF_POOL_CONNECTING ?
                                 BF_POOL_CONNECTING : BF_POOL_UNREACHABLE, err->message);
        return;
    }
    if (c->channel->stored_at_hello < bf_counter(&e->nr_remote)) {
        g_critical("blowfish %s: the memory node holds %" G_GUINT64_FORMAT " pages of this "
                   "VM, %" G_GUINT64_FORMAT " are remote: pages were lost", e->name,
                   (guint64)c->channel->stored_at_hello, (guint64)bf_counter(&e->nr_remote));
    }
    c->connected_at = now;
    /*
     * Connected before the fault thread has its channel: if the channel fails at once (an
     * altered page it refetches), that thread's "unreachable" comes after, and stands.
     */
    bf_engine_set_pool_state(e, BF_POOL_CONNECTED, "connected");
    g_mutex_lock(&e->lock);
    bf_channel_close(e->fault_channel, false);
    e->fault_channel = fault_channel;
    g_mutex_unlock(&e->lock);
    bf_engine_wake_fault_thread(e);
}

gpointer bf_reclaim_thread(gpointer opaque)
{
    BfEngine *e = opaque;
    BfReclaimCtx c = {
        .e = e,
        .batches = g_new0(BfEvictBatch, BF_EVICT_INFLIGHT),
    };

    for (unsigned i = 0; i < BF_EVICT_INFLIGHT; i++) {
        c.batches[i].bounce = g_malloc((uint64_t)BF_PROTO_MAX_PAGES * BF_PAGE_SIZE);
    }
    c.next_scan = g_get_monotonic_time() + e->tun.scan_period_ms * 1000;
    for (;;) {
        gint64 wake = c.next_scan;
        bool scanned;

        if (bf_engine_has_pool(e) &&
            (!c.channel || atomic_load(&e->pool_state) != BF_POOL_CONNECTED)) {
            wake = MIN(wake, MAX(c.next_connect, g_get_monotonic_time()));
        }
        g_mutex_lock(&e->lock);
        while (!e->stopping && !e->reclaim_kicked && !e->restore_requested &&
               g_get_monotonic_time() < wake) {
            g_cond_wait_until(&e->cond, &e->lock, wake);
        }
        if (e->stopping) {
            g_mutex_unlock(&e->lock);
            break;
        }
        e->reclaim_kicked = false;
        c.restore_pending |= e->restore_requested;
        e->restore_requested = false;
        g_mutex_unlock(&e->lock);

        if (bf_engine_has_pool(e)) {
            bf_reclaim_connect(&c);
        }
        scanned = g_get_monotonic_time() >= c.next_scan;
        if (scanned) {
            bf_reclaim_scan(&c);
            bf_reclaim_pool_stats(&c);
            c.next_scan = g_get_monotonic_time() + e->tun.scan_period_ms * 1000;
        }
        if (c.restore_pending && c.channel) {
            c.restore_pending = !bf_reclaim_restore_all(&c);
        }
        bf_reclaim_free_pool_copies(&c);
        if (scanned) {
            bf_reclaim_evict(&c, true);
        }
        bf_reclaim_evict(&c, false);
    }
    /* Leaving: the session's pages at the node are no use to anyone now. */
    bf_channel_close(c.channel, true);
    for (unsigned i = 0; i < BF_EVICT_INFLIGHT; i++) {
        g_free(c.batches[i].bounce);
    }
    g_free(c.batches);
    return NULL;
}
