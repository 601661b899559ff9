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
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-engine-internal.h"
#include "bf-readahead.h"
#include "bf-uffd.h"

#include <errno.h>
#include <poll.h>
#include <unistd.h>

/* How long the thread polls the userfaultfd after a fault before it sleeps. */
#define BF_FAULT_SPIN_NS 20000
#define BF_FAULT_MAX_FETCH_REQUESTS 4

typedef struct {
    uint64_t page;
    gint64 t0;                  /* when its fault was read (ns); 0 for readahead */
} BfPending;

typedef struct {
    BfEngine *e;
    BfChannel *channel;
    BfReadahead ra;
    GArray *deferred;           /* BfPending: faults waiting for room under the limit */
    GArray *fetch;              /* BfPending: pages this thread set FETCHING */
    BfRequest *reqs;            /* BF_FAULT_MAX_FETCH_REQUESTS */
    uint8_t *bounce;            /* a page per request slot */
} BfFaultCtx;

static gint64 bf_now_ns(void)
{
    return g_get_monotonic_time() * 1000;
}

static void bf_fault_done(BfFaultCtx *c, gint64 t0)
{
    if (t0) {
        bf_latency_record(&c->e->fault_latency, bf_now_ns() - t0);
    }
}

static bool bf_fault_over_ceiling(BfEngine *e)
{
    return bf_counter(&e->nr_resident) >= bf_engine_ceiling(e);
}

static void bf_fault_defer(BfFaultCtx *c, uint64_t page, gint64 t0)
{
    BfPending p = { page, t0 };

    g_array_append_val(c->deferred, p);
    bf_engine_kick_reclaim(c->e);
}

/* Claims a remote page for fetching; FALSE if someone else changed it first. */
static bool bf_fault_claim_remote(BfFaultCtx *c, uint64_t page, uint16_t *m, gint64 t0)
{
    uint16_t new = BF_PAGE_FETCHING | (*m & BF_PAGE_POOL_COPY) | (t0 ? BF_PAGE_WANTED : 0);
    BfPending p = { page, t0 };

    if (!bf_page_cas(&c->e->pages[page], m, new)) {
        return false;
    }
    g_array_append_val(c->fetch, p);
    return true;
}

static void bf_fault_readahead(BfFaultCtx *c, uint64_t page)
{
    BfEngine *e = c->e;
    int64_t stride;
    uint32_t n = bf_readahead_fault(&c->ra, page, &stride);

    for (uint32_t k = 1; k <= n; k++) {
        int64_t next = (int64_t)page + (int64_t)k * stride;
        uint16_t m;

        if (next < 0 || (uint64_t)next >= e->npages || bf_fault_over_ceiling(e)) {
            return;
        }
        m = bf_page_load(&e->pages[next]);
        if (bf_page_state(m) == BF_PAGE_REMOTE && bf_fault_claim_remote(c, next, &m, 0)) {
            bf_count(&e->readahead_pages, 1);
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
                /* First write to a clean page: its pool copy is stale from now on. */
                if (!bf_page_cas(meta, &m, (m & ~BF_PAGE_CLEAN) | BF_PAGE_BUSY |
                                 BF_PAGE_ACCESSED)) {
                    continue;
                }
                bf_uffd_writeprotect(e->uffd, bf_page_addr(e, page), BF_PAGE_SIZE, false);
                bf_engine_release(e, page);
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
            bf_engine_map_back(e, page, new & BF_PAGE_CLEAN);
            bf_engine_release(e, page);
            bf_fault_done(c, t0);
            return BF_FAULT_MAP;

        case BF_PAGE_NEVER:
        case BF_PAGE_ZERO:
        case BF_PAGE_FREE:
            if (bf_fault_over_ceiling(e)) {
                bf_fault_defer(c, page, t0);
                return BF_FAULT_DEFER;
            }
            new = BF_PAGE_RESIDENT | BF_PAGE_BUSY | BF_PAGE_ACCESSED |
                  (m & BF_PAGE_POOL_COPY);
            if (!bf_page_cas(meta, &m, new)) {
                continue;
            }
            bf_count(&e->nr_resident, 1);
            if (bf_page_state(m) == BF_PAGE_ZERO) {
                bf_count(&e->nr_zero, -1);
            } else if (bf_page_state(m) == BF_PAGE_FREE) {
                bf_count(&e->nr_free, -1);
            }
            bf_engine_zero_fill(e, page);
            bf_engine_release(e, page);
            bf_fault_done(c, t0);
            return BF_FAULT_ZERO_FILL;

        case BF_PAGE_REMOTE:
            if (bf_fault_over_ceiling(e)) {
                bf_fault_defer(c, page, t0);
                return BF_FAULT_DEFER;
            }
            if (!bf_fault_claim_remote(c, page, &m, t0)) {
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

/* The pages of @req arrived: place them (a run of consecutive pages per call). */
static void bf_fault_place(BfFaultCtx *c, BfRequest *req)
{
    for (uint32_t i = 0; i < req->count;) {
        uint32_t j = i + 1;

        while (j < req->count && req->pages[j] == req->pages[j - 1] + 1) {
            j++;
        }
        bf_engine_place_run(c->e, req->pages[i], req->data[i], j - i, true);
        i = j;
    }
}

/* The fetched page is placed: publish it resident and clean. */
static void bf_fault_fetched(BfFaultCtx *c, const BfPending *p)
{
    BfEngine *e = c->e;
    BfPageMeta *meta = &e->pages[p->page];
    uint16_t m = bf_page_load(meta);

    while (!bf_page_cas(meta, &m, BF_PAGE_RESIDENT | BF_PAGE_CLEAN | BF_PAGE_POOL_COPY |
                        ((m & BF_PAGE_WANTED) ? BF_PAGE_ACCESSED : 0))) {
    }
    bf_engine_wake_if_wanted(e, p->page, m);
    bf_count(&e->nr_resident, 1);
    bf_count(&e->nr_remote, -1);
    bf_count(&e->pages_restored, 1);
    bf_count(&e->pool_bytes_received, BF_PAGE_SIZE);
    bf_fault_done(c, p->t0);
}

static void bf_fault_lose_channel(BfFaultCtx *c, const char *why)
{
    bf_channel_close(c->channel, false);
    c->channel = NULL;
    bf_engine_set_pool_state(c->e, BF_POOL_UNREACHABLE, why);
    bf_engine_kick_reclaim(c->e);
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
            req->count = MIN(c->fetch->len - next, BF_PROTO_MAX_PAGES);
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
            BfRequest *req = bf_channel_complete(c->channel, e->tun.pool_timeout_ms, &err);

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
            bf_fault_place(c, req);
            for (uint32_t i = 0; i < req->count; i++) {
                bf_fault_fetched(c, &g_array_index(c->fetch, BfPending, done + i));
            }
            done += req->count;
        }
    }
    g_array_remove_range(c->fetch, 0, done);
    if (done) {
        BF_EVENT(e, trace_fetch, done, bf_now_ns() - start);
    }
}

static void bf_fault_read_messages(BfFaultCtx *c)
{
    BfEngine *e = c->e;
    struct uffd_msg msgs[64];
    gint64 spin_end = bf_now_ns() + BF_FAULT_SPIN_NS;

    for (;;) {
        ssize_t n = read(e->uffd, msgs, sizeof(msgs));
        gint64 t0 = bf_now_ns();

        if (n <= 0) {
            if (n < 0 && errno != EAGAIN && errno != EINTR) {
                g_error("blowfish %s: fault thread: read: %s", e->name, g_strerror(errno));
            }
            if (c->fetch->len) {
                bf_fault_fetch(c);
            }
            if (t0 >= spin_end) {
                return;
            }
            continue;
        }
        for (size_t i = 0; i < n / sizeof(msgs[0]); i++) {
            uint64_t flags, page;

            if (msgs[i].event != UFFD_EVENT_PAGEFAULT) {
                continue;
            }
            flags = msgs[i].arg.pagefault.flags;
            page = (msgs[i].arg.pagefault.address - (uintptr_t)e->guest) / BF_PAGE_SIZE;
            if (flags & UFFD_PAGEFAULT_FLAG_WP) {
                bf_count(&e->faults_wp, 1);
            } else if (flags & UFFD_PAGEFAULT_FLAG_MINOR) {
                bf_count(&e->faults_minor, 1);
            } else {
                bf_count(&e->faults_missing, 1);
            }
            bf_fault_dispatch(c, page, flags, t0);
        }
        bf_fault_fetch(c);
        spin_end = bf_now_ns() + BF_FAULT_SPIN_NS;
    }
}

/* A wake-up: a new channel, pages to refetch, or room under the limit. */
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
    /* Pages a failed restore-all gave back while faults waited on them. */
    for (guint i = 0; i < refetch->len; i++) {
        bf_fault_dispatch(c, g_array_index(refetch, uint64_t, i), 0, bf_now_ns());
    }
    c->deferred = g_array_new(FALSE, FALSE, sizeof(BfPending));
    for (guint i = 0; i < deferred->len; i++) {
        BfPending *p = &g_array_index(deferred, BfPending, i);

        bf_fault_dispatch(c, p->page, 0, p->t0);
    }
    bf_fault_fetch(c);
}

gpointer bf_fault_thread(gpointer opaque)
{
    BfEngine *e = opaque;
    BfFaultCtx c = {
        .e = e,
        .deferred = g_array_new(FALSE, FALSE, sizeof(BfPending)),
        .fetch = g_array_new(FALSE, FALSE, sizeof(BfPending)),
        .reqs = g_new0(BfRequest, BF_FAULT_MAX_FETCH_REQUESTS),
        .bounce = g_malloc((uint64_t)BF_FAULT_MAX_FETCH_REQUESTS * BF_PROTO_MAX_PAGES *
                           BF_PAGE_SIZE),
    };
    struct pollfd fds[2] = {
        { .fd = e->uffd, .events = POLLIN },
        { .fd = e->fault_wake_fd, .events = POLLIN },
    };

    bf_readahead_init(&c.ra, e->tun.readahead);
    while (!atomic_load(&e->fault_stop)) {
        /* Waiting work is retried now and then even if no wake-up comes. */
        int timeout = c.deferred->len || c.fetch->len ? 100 : -1;
        int ret = poll(fds, G_N_ELEMENTS(fds), timeout);

        if (ret < 0 && errno != EINTR) {
            g_error("blowfish %s: fault thread: poll: %s", e->name, g_strerror(errno));
        }
        if (fds[1].revents || ret == 0) {
            bf_fault_woken(&c);
        }
        if (fds[0].revents) {
            bf_fault_read_messages(&c);
        }
    }
    bf_channel_close(c.channel, false);
    g_array_free(c.deferred, TRUE);
    g_array_free(c.fetch, TRUE);
    g_free(c.reqs);
    g_free(c.bounce);
    return NULL;
}
