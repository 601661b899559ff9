/*
 * bf-fault: the fault thread. It reads the userfaultfd and serves each fault by the page's
 * state (bf-pages.h): a resident page is mapped back (UFFDIO_CONTINUE), a never-touched or
 * zero page is zero-filled (UFFDIO_ZEROPAGE), a remote page is fetched from the pool with the
 * other remote faults of the same round and any readahead, and placed (UFFDIO_COPY,
 * write-protected: it is clean). A page being evicted is marked WANTED: the reclaim thread
 * maps it back. When the region is at its local limit, faults that would bring a page in wait
 * for the reclaim thread to make room; when the pool is unreachable, remote faults wait for
 * it to come back while every other fault is still served.
 *
 * Drop-behind: under a local limit, the pages a sequential stream fetched (bf-readahead.h)
 * are handed to the reclaim thread, to go first once the stream is well past them
 * (bf_engine_queue_streamed()). A scan larger than the limit then keeps the rest of its data
 * resident from one pass to the next, where evicting the coldest would evict what it reads
 * next.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-engine-internal.h"
#include "bf-readahead.h"
#include "bf-uffd.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <unistd.h>

/* How long the thread polls the userfaultfd after a fault before it sleeps (yielding the
 * CPU between polls to any thread woken onto it). */
#define BF_FAULT_SPIN_NS 20000
#define BF_FAULT_MAX_FETCH_REQUESTS 4
/*
 * First touches are served in aligned blocks of this many pages, and of up to
 * BF_FAULT_ZERO_AROUND_MAX (2 MiB) for first touches that come in order.
 */
#define BF_FAULT_ZERO_AROUND 16
#define BF_FAULT_ZERO_AROUND_MAX 512
/*
 * Pages write-protected for a free page hint round are write-enabled in blocks of this many
 * (2 MiB: the guest hints aligned 4 MiB blocks, so such a block is all lent or all in use).
 */
#define BF_FAULT_UNPROTECT_AROUND 512

typedef struct {
    uint64_t page;
    gint64 t0;                  /* when its fault was read (ns); 0 for readahead */
    bool write;                 /* its fault was a write */
} BfPending;

typedef struct {
    struct uffd_msg msg;
    gint64 t0;                  /* when it was read (ns) */
} BfMessage;

typedef struct {
    BfEngine *e;
    GArray *queue;              /* BfMessage: read, not yet handled, in order */
    GArray *zap_events;         /* guint: places in @queue of events that may be a zap's */
    BfChannel *channel;
    BfReadahead ra;
    GArray *streamed;           /* uint64_t: pages streams fetched this round, for drop-behind */
    GArray *deferred;           /* BfPending: faults waiting for room under the limit */
    GArray *fetch;              /* BfPending: pages this thread set FETCHING */
    BfRequest *reqs;            /* BF_FAULT_MAX_FETCH_REQUESTS */
    uint8_t *bounce;            /* a page per request slot */
    bool placed[BF_PROTO_MAX_PAGES];    /* of the request being placed */
    uint64_t zero_first;        /* the aligned block the last first touch zero-filled */
    uint64_t zero_pages;        /* its size; 0 before the first */
} BfFaultCtx;

static gint64 bf_now_ns(void)
{
    return g_get_monotonic_time() * 1000;
}

/* The first page of guest RAM an event's range [start, end) covers, and the page past it. */
static uint64_t bf_fault_first_page(BfEngine *e, uint64_t start)
{
    return (start - (uintptr_t)e->guest) / BF_PAGE_SIZE;
}

static uint64_t bf_fault_last_page(BfEngine *e, uint64_t end)
{
    return MIN((end - (uintptr_t)e->guest) / BF_PAGE_SIZE, e->npages);
}

static void bf_fault_done(BfFaultCtx *c, gint64 t0)
{
    if (t0) {
        bf_latency_record(&c->e->fault_latency, bf_now_ns() - t0);
    }
}

/*
 * At the local limit, a fault waits for eviction to make room; with a full pool, none can.
 * The pages this thread is fetching count: they are resident once placed.
 */
static bool bf_fault_over_ceiling(BfFaultCtx *c)
{
    BfEngine *e = c->e;

    return bf_counter(&e->nr_resident) + c->fetch->len >= bf_engine_ceiling(e) &&
           !atomic_load(&e->pool_full);
}

/* Hands the pages streams fetched to the reclaim thread, for drop-behind. */
static void bf_fault_hand_over_streamed(BfFaultCtx *c)
{
    if (c->streamed->len) {
        bf_engine_queue_streamed(c->e, (uint64_t *)c->streamed->data, c->streamed->len);
        g_array_set_size(c->streamed, 0);
    }
}

static void bf_fault_defer(BfFaultCtx *c, uint64_t page, gint64 t0, bool write)
{
    BfPending p = { page, t0, write };

    g_array_append_val(c->deferred, p);
    bf_fault_hand_over_streamed(c);
    bf_engine_kick_reclaim(c->e);
}

/*
 * Claims a remote page for fetching, for a fault read at @t0 (0: ahead of one), a write if
 * @write; FALSE if someone else changed it first.
 */
static bool bf_fault_claim_remote(BfFaultCtx *c, uint64_t page, uint16_t *m, gint64 t0,
                                  bool write)
{
    uint16_t new = BF_PAGE_FETCHING | (*m & (BF_PAGE_POOL_COPY | BF_PAGE_PROTECTED_MARKS)) |
                   (t0 ? BF_PAGE_WANTED : 0);
    BfPending p = { page, t0, write };

    if (!bf_page_cas(&c->e->pages[page], m, new)) {
        return false;
    }
    g_array_append_val(c->fetch, p);
    return true;
}

/*
 * Claims the pages a stream through @page will want next, if it is one, but its trigger
 * (bf-readahead.h). Not while the pool is unreachable: they would only hold room under the
 * limit that other faults can use.
 */
static void bf_fault_readahead(BfFaultCtx *c, uint64_t page)
{
    BfEngine *e = c->e;
    BfReadaheadPlan plan;
    bool drop_behind = bf_readahead_fault(&c->ra, page, &plan) && bf_engine_limited(e);

    if (!c->channel) {
        return;
    }
    if (drop_behind) {
        g_array_append_val(c->streamed, page);
    }
    for (uint32_t k = 1; k <= plan.count; k++) {
        int64_t next = (int64_t)page + (int64_t)k * plan.stride;
        uint16_t m;

        if (next < 0 || (uint64_t)next >= e->npages || bf_fault_over_ceiling(c)) {
            return;
        }
        if (k == plan.trigger) {
            continue;
        }
        m = bf_page_load(&e->pages[next]);
        if (bf_page_state(m) == BF_PAGE_REMOTE &&
            bf_fault_claim_remote(c, next, &m, 0, false)) {
            bf_count(&e->readahead_pages, 1);
            if (drop_behind) {
                g_array_append_val(c->streamed, next);
            }
        }
    }
}

/*
 * Claims a page held nowhere (NEVER, ZERO, FREE) for zero-filling: RESIDENT and BUSY from
 * now on. FALSE if it changed first (*m then holds its new metadata).
 */
static bool bf_fault_claim_empty(BfFaultCtx *c, uint64_t page, uint16_t *m, uint16_t flags)
{
    BfEngine *e = c->e;
    BfPageState state = bf_page_state(*m);

    if (!bf_page_cas(&e->pages[page], m, BF_PAGE_RESIDENT | BF_PAGE_BUSY | flags |
                     (*m & BF_PAGE_POOL_COPY))) {
        return false;
    }
    bf_count(&e->nr_resident, 1);
    if (state == BF_PAGE_ZERO) {
        bf_count(&e->nr_zero, -1);
    } else if (state == BF_PAGE_FREE) {
        bf_count(&e->nr_free, -1);
    }
    return true;
}

/*
 * The aligned block to zero-fill around a first touch of @page: BF_FAULT_ZERO_AROUND pages,
 * or twice the last one's size (up to BF_FAULT_ZERO_AROUND_MAX) if @page lies just past it,
 * either way: the guest is filling memory it allocated in order, and fewer, larger fills
 * serve it. A guest touching fewer than one page in 2 * BF_FAULT_ZERO_AROUND never leaves
 * the base size.
 */
static uint64_t bf_fault_zero_block(BfFaultCtx *c, uint64_t page)
{
    uint64_t first = c->zero_first, size = c->zero_pages;
    bool in_order = size && ((page >= first + size && page < first + 2 * size) ||
                             (page < first && page + size >= first));

    c->zero_pages = in_order ? MIN(2 * size, BF_FAULT_ZERO_AROUND_MAX) : BF_FAULT_ZERO_AROUND;
    c->zero_first = page & ~(c->zero_pages - 1);
    return c->zero_pages;
}

/*
 * Zero-fills @page, claimed, and with it the pages around it (its aligned block,
 * bf_fault_zero_block()) that were never touched or freed: memory is first touched in runs,
 * and one fault then serves a run. Pages found zero by eviction are not included: they went
 * out for being cold. Nor are pages QEMU is discarding, whether the block meets such a range
 * from the start or an event read during the fill says so, @page included: those end FREE
 * (bf_engine_zero_fill()), and the fault on @page comes again, after the event.
 */
static void bf_fault_zero_fill_around(BfFaultCtx *c, uint64_t page)
{
    BfEngine *e = c->e;
    uint64_t size = bf_fault_zero_block(c, page);
    uint64_t first = c->zero_first;
    uint64_t end = MIN(first + size, e->npages);
    bool claimed[BF_FAULT_ZERO_AROUND_MAX] = { false };
    bool around = !bf_engine_discarding(e, first, end);

    claimed[page - first] = true;
    for (uint64_t p = first; around && p < end; p++) {
        uint16_t m = bf_page_load(&e->pages[p]);
        BfPageState state = bf_page_state(m);

        if (p != page && (state == BF_PAGE_NEVER || state == BF_PAGE_FREE) &&
            !bf_fault_over_ceiling(c)) {
            claimed[p - first] = bf_fault_claim_empty(c, p, &m, 0);
        }
    }
    for (uint64_t p = first; p < end;) {
        uint64_t run = p;
        bool whole;

        if (!claimed[p - first]) {
            p++;
            continue;
        }
        while (p < end && claimed[p - first]) {
            p++;
        }
        whole = bf_engine_try_zero_fill_run(e, run, p - run);
        for (uint64_t q = run; q < p; q++) {
            if (whole) {
                bf_engine_release(e, q);
            } else {
                bf_engine_zero_fill(e, q);
            }
        }
    }
}

/*
 * Claims BUSY the idle resident pages from @page on, up to @end, until one is not (or has
 * one of @skip's flags); returns where that run ends (@page if none was claimed).
 */
static uint64_t bf_fault_claim_resident_run(BfEngine *e, uint64_t page, uint64_t end,
                                            uint16_t skip)
{
    for (; page < end; page++) {
        BfPageMeta *meta = &e->pages[page];
        uint16_t m = bf_page_load(meta);

        if (bf_page_state(m) != BF_PAGE_RESIDENT || (m & (BF_PAGE_BUSY | skip)) ||
            !bf_page_cas(meta, &m, m | BF_PAGE_BUSY)) {
            break;
        }
    }
    return page;
}

/*
 * A write to a page write-protected for a free page hint round: the guest is writing that
 * part of its RAM, so write-enable the other idle pages of its aligned block at once, rather
 * than take a fault for each. They are no longer HINTABLE: if hinted, they go only if zero.
 * READ_ONLY pages stay protected: eviction takes them as unchanged.
 */
static void bf_fault_unprotect_around(BfFaultCtx *c, uint64_t page)
{
    BfEngine *e = c->e;
    uint64_t first = page & ~(uint64_t)(BF_FAULT_UNPROTECT_AROUND - 1);
    uint64_t end = MIN(first + BF_FAULT_UNPROTECT_AROUND, e->npages);

    for (uint64_t p = first; p < end;) {
        uint64_t run = p;

        p = bf_fault_claim_resident_run(e, p, end, BF_PAGE_READ_ONLY);
        if (run == p) {
            p++;
            continue;
        }
        bf_engine_unprotect(e, run, p - run);
        for (uint64_t q = run; q < p; q++) {
            bf_engine_release(e, q);
        }
    }
}

static BfFaultAction bf_fault_serve(BfFaultCtx *c, uint64_t page, uint64_t flags, gint64 t0);

/* Serves a fault on @page (@flags: UFFD_PAGEFAULT_FLAG_*), read at @t0. */
static void bf_fault_dispatch(BfFaultCtx *c, uint64_t page, uint64_t flags, gint64 t0)
{
    BfFaultAction action = bf_fault_serve(c, page, flags, t0);

    BF_EVENT(c->e, trace_fault, page, flags, action);
}

static BfFaultAction bf_fault_serve(BfFaultCtx *c, uint64_t page, uint64_t flags, gint64 t0)
{
    BfEngine *e = c->e;
    BfPageMeta *meta = &e->pages[page];
    uint16_t m = bf_page_load(meta), new;

    for (;;) {
        switch (bf_page_state(m)) {
        case BF_PAGE_RESIDENT:
            if (m & BF_PAGE_BUSY) {
                /* Another thread is mapping it; its release wakes us. */
                if ((m & BF_PAGE_WANTED) || bf_page_cas(meta, &m, m | BF_PAGE_WANTED)) {
                    return BF_FAULT_WAIT;
                }
                continue;
            }
            if (flags & UFFD_PAGEFAULT_FLAG_WP) {
                /*
                 * A write to a page placed READ_ONLY, protected for a free page hint round,
                 * or left protected by an eviction that looked at it: written now, so no
                 * longer CLEAN (its next eviction sends it without comparing).
                 */
                if (!bf_page_cas(meta, &m, (m & ~(BF_PAGE_CLEAN | BF_PAGE_READ_ONLY)) |
                                 BF_PAGE_BUSY | BF_PAGE_ACCESSED)) {
                    continue;
                }
                bf_engine_unprotect(e, page, 1);
                bf_engine_release(e, page);
                if (!(m & BF_PAGE_READ_ONLY)) {
                    bf_fault_unprotect_around(c, page);
                }
                bf_fault_done(c, t0);
                return BF_FAULT_UNPROTECT;
            }
            new = (m | BF_PAGE_BUSY | BF_PAGE_ACCESSED) & ~BF_PAGE_ZAPPED;
            if (flags & UFFD_PAGEFAULT_FLAG_WRITE) {
                new &= ~BF_PAGE_CLEAN;
            }
            if (!bf_page_cas(meta, &m, new)) {
                continue;
            }
            if (!bf_engine_map_back(e, page, flags & UFFD_PAGEFAULT_FLAG_WRITE)) {
                return BF_FAULT_AGAIN;
            }
            bf_fault_done(c, t0);
            return BF_FAULT_MAP;

        case BF_PAGE_NEVER:
        case BF_PAGE_ZERO:
        case BF_PAGE_FREE:
            if (bf_fault_over_ceiling(c)) {
                bf_fault_defer(c, page, t0, flags & UFFD_PAGEFAULT_FLAG_WRITE);
                return BF_FAULT_DEFER;
            }
            if (!bf_fault_claim_empty(c, page, &m, BF_PAGE_ACCESSED)) {
                continue;
            }
            bf_fault_zero_fill_around(c, page);
            bf_fault_done(c, t0);
            return BF_FAULT_ZERO_FILL;

        case BF_PAGE_REMOTE:
            if (bf_fault_over_ceiling(c)) {
                bf_fault_defer(c, page, t0, flags & UFFD_PAGEFAULT_FLAG_WRITE);
                return BF_FAULT_DEFER;
            }
            if (!bf_fault_claim_remote(c, page, &m, t0, flags & UFFD_PAGEFAULT_FLAG_WRITE)) {
                continue;
            }
            if (t0) {
                bf_fault_readahead(c, page);
            }
            return BF_FAULT_FETCH;

        case BF_PAGE_FETCHING:
        case BF_PAGE_EVICTING:
        case BF_PAGE_PUNCHING:
            /* Whoever holds the page maps it when done; WANTED says someone waits. */
            if ((m & BF_PAGE_WANTED) || bf_page_cas(meta, &m, m | BF_PAGE_WANTED)) {
                return BF_FAULT_WAIT;
            }
            continue;
        }
        g_assert_not_reached();
    }
}

/*
 * Frees the idle pages of [first, last): each becomes FREE, punched out of the memfd, its
 * pool copy freed, and zero on its next touch. A page being mapped is kept (harmlessly: the
 * guest does not use it). @hinted: the guest hinted the range free, and only pages still
 * HINTABLE go (punching drops their mappings); a page being evicted or fetched is kept too.
 * Otherwise QEMU discarded the range and its mappings are gone: a page being evicted or
 * fetched is marked DISCARDED and ends FREE (a fetched one is not placed, or is punched
 * again: its old content would show). Returns how many pages held memory (here or in the
 * pool).
 */
static uint64_t bf_fault_free_pages(BfFaultCtx *c, uint64_t first, uint64_t last,
                                    bool hinted)
{
    BfEngine *e = c->e;
    uint64_t run_start = 0, run_len = 0, held = 0;
    bool pool_copies = false;

    for (uint64_t p = first; p <= last; p++) {
        uint16_t m = p < last ? bf_page_load(&e->pages[p]) : 0;
        bool punch = false;

        while (p < last) {
            BfPageState state = bf_page_state(m);

            if (hinted && !(m & BF_PAGE_HINTABLE)) {
                break;      /* written since the round began, or held by a thread */
            }
            if (state == BF_PAGE_EVICTING || state == BF_PAGE_PUNCHING ||
                state == BF_PAGE_FETCHING) {
                /* The eviction, or the fetch, finishes a discarded page as FREE. */
                if (hinted || (m & BF_PAGE_DISCARDED) ||
                    bf_page_cas(&e->pages[p], &m, m | BF_PAGE_DISCARDED)) {
                    break;
                }
                continue;
            }
            if (!bf_page_can_free(m)) {
                break;      /* free already, or being mapped: kept, harmlessly */
            }
            if (!bf_page_cas(&e->pages[p], &m, BF_PAGE_FREE)) {
                continue;
            }
            if (m & BF_PAGE_POOL_COPY) {
                bf_engine_free_pool_copy(e, p);
                pool_copies = true;
            }
            punch = state == BF_PAGE_RESIDENT;
            held += state == BF_PAGE_RESIDENT || state == BF_PAGE_REMOTE;
            bf_count(state == BF_PAGE_RESIDENT ? &e->nr_resident :
                     state == BF_PAGE_REMOTE ? &e->nr_remote :
                     state == BF_PAGE_ZERO ? &e->nr_zero : &e->nr_free,
                     state == BF_PAGE_NEVER ? 0 : -1);
            bf_count(&e->nr_free, 1);
            break;
        }
        /* Punch the resident ones, a run per call. */
        if (punch && run_len && run_start + run_len == p) {
            run_len++;
            continue;
        }
        if (run_len) {
            bf_engine_punch(e, run_start, run_len);
        }
        run_start = p;
        run_len = punch;
    }
    if (pool_copies) {
        bf_engine_kick_reclaim(e);
    }
    return held;
}

/*
 * QEMU discarded [start, end) of guest RAM (the guest reported it free, or a balloon took
 * it): its mappings are already gone, and faults on these pages are read after this event,
 * so they find them FREE.
 */
static void bf_fault_discarded(BfFaultCtx *c, uint64_t start, uint64_t end, gint64 t0)
{
    BfEngine *e = c->e;
    uint64_t first = bf_fault_first_page(e, start), last = bf_fault_last_page(e, end);

    bf_fault_free_pages(c, first, last, false);
    bf_engine_discard_end(e, first, last);
    bf_count(&e->free_reports, 1);
    bf_latency_record(&e->free_latency, bf_now_ns() - t0);
}

/*
 * Of the hinted pages in [first, last) written since the round began, frees those that read
 * all zero: a guest that initializes memory on allocation (init_on_alloc, on by default in
 * Debian's kernels) zeroes every page it hints. Each run is claimed BUSY and write-protected
 * before it is read, so a write meanwhile faults, and is served (on a zero page: nothing
 * lost) only after. Up to BF_FAULT_MAX_FETCH_REQUESTS * BF_PROTO_MAX_PAGES pages at a time,
 * read into the bounce buffer. Returns how many pages it freed.
 */
static uint64_t bf_fault_free_zeroed(BfFaultCtx *c, uint64_t first, uint64_t last)
{
    BfEngine *e = c->e;
    uint64_t freed = 0;
    bool pool_copies = false;

    for (uint64_t chunk = first; chunk < last;) {
        uint64_t end = MIN(last, chunk + BF_FAULT_MAX_FETCH_REQUESTS * BF_PROTO_MAX_PAGES);

        for (uint64_t p = chunk; p < end;) {
            uint64_t run = p;
            uint64_t punch_start = 0, punch_len = 0;

            p = bf_fault_claim_resident_run(e, p, end, 0);
            if (run == p) {
                p++;
                continue;
            }
            bf_engine_protect(e, run, p - run);
            if (pread(e->memfd, c->bounce, (p - run) * BF_PAGE_SIZE,
                      run * BF_PAGE_SIZE) != (ssize_t)((p - run) * BF_PAGE_SIZE)) {
                g_error("blowfish %s: cannot read guest RAM from its memfd: %s", e->name,
                        g_strerror(errno));
            }
            for (uint64_t q = run; q <= p; q++) {
                BfPageMeta *meta = &e->pages[q];
                uint16_t m;

                if (q < p && bf_page_is_zero(c->bounce + (q - run) * BF_PAGE_SIZE)) {
                    m = atomic_exchange(meta, BF_PAGE_FREE);
                    if (m & BF_PAGE_POOL_COPY) {
                        bf_engine_free_pool_copy(e, q);
                        pool_copies = true;
                    }
                    bf_count(&e->nr_resident, -1);
                    bf_count(&e->nr_free, 1);
                    freed++;
                    if (!punch_len) {
                        punch_start = q;
                    }
                    punch_len++;
                    continue;
                }
                if (punch_len) {
                    bf_engine_punch(e, punch_start, punch_len);
                    punch_len = 0;
                }
                if (q < p) {
                    bf_engine_release(e, q);    /* in use, or not written this round: kept */
                    bf_count(&e->hint_kept, 1);
                }
            }
        }
        chunk = end;
    }
    if (pool_copies) {
        bf_engine_kick_reclaim(e);
    }
    return freed;
}

/*
 * The ranges the guest hinted free (bf_engine_hint_free()). Freed here, between faults: a
 * fault on one of their pages raised meanwhile is read after, and finds it FREE and punched.
 */
static void bf_fault_free_hinted(BfFaultCtx *c)
{
    BfEngine *e = c->e;
    g_autoptr(GArray) hinted = NULL;
    uint64_t held = 0;

    g_mutex_lock(&e->lock);
    if (!e->hinted->len) {
        g_mutex_unlock(&e->lock);
        return;     /* woken for something else: the common case */
    }
    hinted = e->hinted;
    e->hinted = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    g_mutex_unlock(&e->lock);

    for (guint i = 0; i + 1 < hinted->len; i += 2) {
        uint64_t first = g_array_index(hinted, uint64_t, i);
        uint64_t last = g_array_index(hinted, uint64_t, i + 1);

        held += bf_fault_free_pages(c, first, last, true);
        held += bf_fault_free_zeroed(c, first, last);
    }
    bf_count(&e->free_hinted, held);

    g_mutex_lock(&e->lock);
    e->hints_queued -= hinted->len / 2;
    g_cond_broadcast(&e->hint_cond);
    g_mutex_unlock(&e->lock);
}

static void bf_fault_lose_channel(BfFaultCtx *c, const char *why)
{
    bf_channel_close(c->channel, false);
    c->channel = NULL;
    bf_engine_set_pool_state(c->e, BF_POOL_UNREACHABLE, why);
    bf_engine_kick_reclaim(c->e);
}

static bool bf_fault_read_into_queue(BfFaultCtx *c);

/*
 * How many pages of c->fetch from @first go in one request. Faulting pages and the pages
 * fetched ahead of them go in separate requests, so that a fault's own page arrives, and
 * its vCPU resumes, before the readahead behind it does. Pages written and read go in
 * separate requests too: they are placed writable, and the others write-protected.
 */
static uint32_t bf_fault_request_length(BfFaultCtx *c, guint first)
{
    const BfPending *p = &g_array_index(c->fetch, BfPending, first);
    uint32_t n = 1;

    while (n < BF_PROTO_MAX_PAGES && first + n < c->fetch->len &&
           (p[n].t0 != 0) == (p->t0 != 0) && p[n].write == p->write) {
        n++;
    }
    return n;
}

/*
 * Fetches the pages in c->fetch, several requests in flight. Without a channel they wait in
 * the list for the next one.
 */
static void bf_fault_fetch(BfFaultCtx *c)
{
    BfEngine *e = c->e;
    guint done = 0;
    gint64 start = bf_now_ns();

    while (c->channel && done < c->fetch->len) {
        guint submitted = 0, next = done;
        g_autoptr(GError) err = NULL;

        for (; submitted < BF_FAULT_MAX_FETCH_REQUESTS && next < c->fetch->len; submitted++) {
            BfRequest *req = &c->reqs[submitted];
            uint8_t *bounce = c->bounce + (uint64_t)submitted * BF_PROTO_MAX_PAGES *
                              BF_PAGE_SIZE;

            req->type = BF_MSG_READ;
            req->count = bf_fault_request_length(c, next);
            for (uint32_t i = 0; i < req->count; i++) {
                req->pages[i] = g_array_index(c->fetch, BfPending, next + i).page;
                req->data[i] = bounce + (uint64_t)i * BF_PAGE_SIZE;
            }
            next += req->count;
            if (!bf_channel_submit(c->channel, req, &err)) {
                bf_fault_lose_channel(c, err->message);
                break;
            }
        }
        for (guint r = 0; c->channel && r < submitted; r++) {
            BfRequest *req;
            g_autofree char *altered = NULL;
            bool written;

            /*
             * The reclaim thread's zap waits until its event is read: read it now, not after
             * the whole fetch (the messages read wait in the queue for their turn).
             */
            if (atomic_load(&e->zap_start)) {
                bf_fault_read_into_queue(c);
            }
            req = bf_channel_complete(c->channel, e->tun.pool_timeout_ms, &err);
            if (!req) {
                bf_fault_lose_channel(c, err->message);
                break;
            }
            if (req->pool_error) {
                /* The node lost pages it acknowledged: nothing can bring them back. */
                g_critical("blowfish %s: the memory node cannot return %u pages: %s", e->name,
                           req->count, req->pool_message);
                bf_fault_lose_channel(c, req->pool_message);
                break;
            }
            if (!bf_engine_fetched_intact(e, req, &altered)) {
                /* Placed, it would corrupt guest RAM: its faults wait for a node that has it. */
                g_critical("blowfish %s: %s", e->name, altered);
                bf_fault_lose_channel(c, altered);
                break;
            }
            written = g_array_index(c->fetch, BfPending, done).write;
            bf_engine_place_fetched(e, req, written, c->placed);
            for (uint32_t i = 0; i < req->count; i++) {
                const BfPending *p = &g_array_index(c->fetch, BfPending, done + i);

                bf_engine_fetched(e, p->page, c->placed[i], written);
                bf_fault_done(c, p->t0);
            }
            done += req->count;
        }
    }
    g_array_remove_range(c->fetch, 0, done);
    if (done) {
        BF_EVENT(e, trace_fetch, done, bf_now_ns() - start);
    }
    bf_fault_hand_over_streamed(c);
    if (done && bf_engine_reclaim_due(e)) {
        bf_engine_kick_reclaim(e);
    }
}

/* Notes the range of the REMOVE event @msg as being discarded. Under place_lock. */
static void bf_fault_discard_begin_locked(BfFaultCtx *c, const struct uffd_msg *msg)
{
    bf_engine_discard_begin_locked(c->e, bf_fault_first_page(c->e, msg->arg.remove.start),
                                   bf_fault_last_page(c->e, msg->arg.remove.end));
}

/*
 * Reads one batch of messages into the queue; returns what read() did. Each REMOVE event is
 * noted as a discard at once, but one with the range of the engine's zap in progress: its
 * place in the queue goes to c->zap_events, for bf_fault_resolve_zap(). Under place_lock.
 */
static ssize_t bf_fault_read_batch(BfFaultCtx *c)
{
    BfEngine *e = c->e;
    struct uffd_msg msgs[64];
    ssize_t n = read(e->uffd, msgs, sizeof(msgs));
    int err = errno;
    gint64 t0 = bf_now_ns();

    if (n < 0 && err != EAGAIN && err != EINTR) {
        g_error("blowfish %s: fault thread: read: %s", e->name, g_strerror(err));
    }
    for (ssize_t i = 0; i < n / (ssize_t)sizeof(msgs[0]); i++) {
        BfMessage m = { msgs[i], t0 };

        if (msgs[i].event == UFFD_EVENT_REMOVE) {
            if (bf_engine_is_zap_event(e, msgs[i].arg.remove.start, msgs[i].arg.remove.end)) {
                g_array_append_val(c->zap_events, c->queue->len);
            } else {
                bf_fault_discard_begin_locked(c, &msgs[i]);
            }
        }
        g_array_append_val(c->queue, m);
    }
    return n;
}

/*
 * The events in c->zap_events have the range of the engine's zap in progress: one is the
 * zap's, any other QEMU's, discarding the very same range meanwhile. They look the same, and
 * QEMU's may come first. So read on, serving nothing, until the zap's madvise() has
 * returned: its event is among those read then. The last is taken for the zap's and
 * dropped; the others are discards, each in its place in the queue. Taking QEMU's for the
 * zap's would free the range late, after the accesses the guest made once QEMU's madvise()
 * returned, and lose their writes. Taking the zap's for a discard is harmless: QEMU discards
 * that very range, and no access to it was served in between. Under place_lock.
 */
static void bf_fault_resolve_zap(BfFaultCtx *c)
{
    BfEngine *e = c->e;
    guint *at;

    while (!atomic_load(&e->zap_returned)) {
        if (bf_fault_read_batch(c) <= 0) {
            sched_yield();
        }
    }
    at = &g_array_index(c->zap_events, guint, 0);
    g_array_remove_index(c->queue, at[c->zap_events->len - 1]);
    for (guint i = 0; i + 1 < c->zap_events->len; i++) {
        bf_fault_discard_begin_locked(c, &g_array_index(c->queue, BfMessage, at[i]).msg);
    }
    g_array_set_size(c->zap_events, 0);
    bf_engine_zap_resolved(e);
}

/* Reads what the userfaultfd has into the message queue; FALSE if it had nothing. */
static bool bf_fault_read_into_queue(BfFaultCtx *c)
{
    BfEngine *e = c->e;
    ssize_t n;

    g_mutex_lock(&e->place_lock);
    n = bf_fault_read_batch(c);
    if (c->zap_events->len) {
        bf_fault_resolve_zap(c);
    }
    g_mutex_unlock(&e->place_lock);
    return n > 0;
}

/* The fault thread's way out of an -EAGAIN (see bf_engine_unblock()). */
static __thread BfFaultCtx *bf_fault_current;

bool bf_fault_thread_unblock(void)
{
    if (!bf_fault_current) {
        return false;
    }
    /* Reading the pending event completes it; its turn in the queue comes later. */
    bf_fault_read_into_queue(bf_fault_current);
    return true;
}

static void bf_fault_handle(BfFaultCtx *c, const BfMessage *m)
{
    BfEngine *e = c->e;
    uint64_t flags, page;

    if (m->msg.event == UFFD_EVENT_REMOVE) {
        bf_fault_discarded(c, m->msg.arg.remove.start, m->msg.arg.remove.end, m->t0);
        return;
    }
    if (m->msg.event != UFFD_EVENT_PAGEFAULT) {
        return;
    }
    flags = m->msg.arg.pagefault.flags;
    page = (m->msg.arg.pagefault.address - (uintptr_t)e->guest) / BF_PAGE_SIZE;
    if (flags & UFFD_PAGEFAULT_FLAG_WP) {
        bf_count(&e->faults_wp, 1);
    } else if (flags & UFFD_PAGEFAULT_FLAG_MINOR) {
        bf_count(&e->faults_minor, 1);
    } else {
        bf_count(&e->faults_missing, 1);
    }
    bf_fault_dispatch(c, page, flags, m->t0);
}

/* Serves messages in order until none came for a little while. */
static void bf_fault_serve_messages(BfFaultCtx *c)
{
    gint64 spin_end = bf_now_ns() + BF_FAULT_SPIN_NS;

    for (;;) {
        if (!c->queue->len && !bf_fault_read_into_queue(c)) {
            if (c->fetch->len) {
                bf_fault_fetch(c);
            }
            if (bf_now_ns() >= spin_end) {
                return;
            }
            sched_yield();
            continue;
        }
        /* One round: what was read so far (handling may read more), then its fetches. */
        for (guint i = 0; i < c->queue->len; i++) {
            BfMessage m = g_array_index(c->queue, BfMessage, i);

            bf_fault_handle(c, &m);
        }
        g_array_set_size(c->queue, 0);
        bf_fault_fetch(c);
        spin_end = bf_now_ns() + BF_FAULT_SPIN_NS;
    }
}

/* A wake-up: a new channel, free page hints, pages to refetch, or room under the limit. */
static void bf_fault_woken(BfFaultCtx *c)
{
    BfEngine *e = c->e;
    g_autoptr(GArray) refetch = NULL;
    g_autoptr(GArray) deferred = c->deferred;
    BfChannel *offered;
    uint64_t counter;

    if (read(e->fault_wake_fd, &counter, sizeof(counter)) < 0 && errno != EAGAIN) {
        g_error("blowfish %s: fault thread: eventfd: %s", e->name, g_strerror(errno));
    }
    g_mutex_lock(&e->lock);
    offered = g_steal_pointer(&e->fault_channel);
    refetch = e->refetch;
    e->refetch = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    g_mutex_unlock(&e->lock);

    if (offered) {
        bf_channel_close(c->channel, false);
        c->channel = offered;
    }
    bf_fault_free_hinted(c);
    /* Pages a failed restore-all gave back while faults waited on them. */
    for (guint i = 0; i < refetch->len; i++) {
        bf_fault_dispatch(c, g_array_index(refetch, uint64_t, i), 0, bf_now_ns());
    }
    c->deferred = g_array_new(FALSE, FALSE, sizeof(BfPending));
    for (guint i = 0; i < deferred->len; i++) {
        BfPending *p = &g_array_index(deferred, BfPending, i);

        bf_fault_dispatch(c, p->page, p->write ? UFFD_PAGEFAULT_FLAG_WRITE : 0, p->t0);
    }
    bf_fault_fetch(c);
}

gpointer bf_fault_thread(gpointer opaque)
{
    BfEngine *e = opaque;
    BfFaultCtx c = {
        .e = e,
        .queue = g_array_new(FALSE, FALSE, sizeof(BfMessage)),
        .zap_events = g_array_new(FALSE, FALSE, sizeof(guint)),
        .deferred = g_array_new(FALSE, FALSE, sizeof(BfPending)),
        .fetch = g_array_new(FALSE, FALSE, sizeof(BfPending)),
        .streamed = g_array_new(FALSE, FALSE, sizeof(uint64_t)),
        .reqs = g_new0(BfRequest, BF_FAULT_MAX_FETCH_REQUESTS),
        .bounce = g_malloc((uint64_t)BF_FAULT_MAX_FETCH_REQUESTS * BF_PROTO_MAX_PAGES *
                           BF_PAGE_SIZE),
    };
    struct pollfd fds[2] = {
        { .fd = e->uffd, .events = POLLIN },
        { .fd = e->fault_wake_fd, .events = POLLIN },
    };

    bf_readahead_init(&c.ra, e->tun.readahead);
    bf_fault_current = &c;
    while (!atomic_load(&e->fault_stop)) {
        /*
         * Waiting work is retried now and then even if no wake-up comes; messages read
         * while fetching are served without waiting for more.
         */
        int timeout = c.queue->len ? 0 : c.deferred->len || c.fetch->len ? 100 : -1;
        int ret = poll(fds, G_N_ELEMENTS(fds), timeout);

        if (ret < 0 && errno != EINTR) {
            g_error("blowfish %s: fault thread: poll: %s", e->name, g_strerror(errno));
        }
        if (fds[1].revents || (ret == 0 && timeout > 0)) {
            bf_fault_woken(&c);
        }
        if (fds[0].revents || c.queue->len) {
            bf_fault_serve_messages(&c);
        }
    }
    bf_fault_current = NULL;
    bf_channel_close(c.channel, false);
    g_array_free(c.queue, TRUE);
    g_array_free(c.zap_events, TRUE);
    g_array_free(c.deferred, TRUE);
    g_array_free(c.fetch, TRUE);
    g_array_free(c.streamed, TRUE);
    g_free(c.reqs);
    g_free(c.bounce);
    return NULL;
}
