/*
 * bf-engine: one Blowfish-managed guest RAM region: creating and destroying it, its public
 * API and statistics, and the small helpers its threads share (mapping a page back into the
 * guest, pool state, wake-ups).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-engine-internal.h"
#include "bf-error.h"
#include "bf-uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

void bf_engine_tunables_init(BfEngineTunables *t)
{
    *t = (BfEngineTunables) {
        .scan_period_ms = 1000,
        .scan_budget = 256,
        .cold_age = 2,
        .evict_batch = BF_PROTO_MAX_PAGES,
        .readahead = BF_PROTO_MAX_PAGES,
        .pool_timeout_ms = 5000,
    };
}

static gboolean bf_engine_check_tunables(const BfEngineTunables *t, GError **errp)
{
    const char *bad = NULL;

    if (t->scan_period_ms < 10 || t->scan_period_ms > 3600000) {
        bad = "scan-period must be 10 ms to 1 hour";
    } else if (t->scan_budget < 1) {
        bad = "scan-budget must be at least 1 page";
    } else if (t->cold_age < 1 || t->cold_age > 250) {
        bad = "cold-age must be 1 to 250 periods";
    } else if (t->idle_age > 250) {
        bad = "idle-age must be 0 (off) to 250 periods";
    } else if (t->evict_batch < 1 || t->evict_batch > BF_PROTO_MAX_PAGES) {
        bad = "evict-batch must be 1 to 256 pages";
    } else if (t->readahead > BF_PROTO_MAX_PAGES) {
        bad = "readahead must be 0 to 256 pages";
    } else if (t->pool_timeout_ms < 100) {
        bad = "pool-timeout must be at least 100 ms";
    }
    if (bad) {
        g_set_error(errp, BF_ERROR, BF_ERROR_INVALID, "%s", bad);
        return FALSE;
    }
    return TRUE;
}

gboolean bf_engine_check_local_limit(uint64_t size, uint64_t local_limit,
                                     gboolean has_pool, GError **errp)
{
    if (local_limit == size) {
        return TRUE;
    }
    if (local_limit % BF_PAGE_SIZE) {
        g_set_error(errp, BF_ERROR, BF_ERROR_INVALID,
                    "local-limit %" G_GUINT64_FORMAT " is not a multiple of 4 KiB",
                    (guint64)local_limit);
        return FALSE;
    }
    if (local_limit > size) {
        g_set_error(errp, BF_ERROR, BF_ERROR_INVALID,
                    "local-limit %" G_GUINT64_FORMAT " is larger than size %"
                    G_GUINT64_FORMAT, (guint64)local_limit, (guint64)size);
        return FALSE;
    }
    if (local_limit < BF_MIN_LOCAL_LIMIT) {
        g_set_error(errp, BF_ERROR, BF_ERROR_INVALID,
                    "local-limit %" G_GUINT64_FORMAT " is below the minimum of %llu "
                    "bytes (4 MiB)", (guint64)local_limit, BF_MIN_LOCAL_LIMIT);
        return FALSE;
    }
    if (!has_pool) {
        g_set_error(errp, BF_ERROR, BF_ERROR_INVALID,
                    "local-limit below size needs a memory pool to hold the rest: "
                    "set pool=tcp:HOST:PORT");
        return FALSE;
    }
    return TRUE;
}

void bf_engine_set_pool_state(BfEngine *e, BfPoolState state, const char *detail)
{
    BfPoolState old;

    g_mutex_lock(&e->pool_error_lock);
    g_strlcpy(e->pool_error, state == BF_POOL_CONNECTED ? "" : detail, sizeof(e->pool_error));
    g_mutex_unlock(&e->pool_error_lock);
    old = atomic_exchange(&e->pool_state, state);

    if (old != state) {
        BF_EVENT(e, pool_state_changed, state, detail);
    }
}

void bf_engine_kick_reclaim(BfEngine *e)
{
    g_mutex_lock(&e->lock);
    e->reclaim_kicked = true;
    g_cond_signal(&e->cond);
    g_mutex_unlock(&e->lock);
}

void bf_engine_wake_fault_thread(BfEngine *e)
{
    uint64_t one = 1;

    if (write(e->fault_wake_fd, &one, sizeof(one)) != sizeof(one) && errno != EAGAIN) {
        g_error("blowfish %s: cannot wake the fault thread: %s", e->name, g_strerror(errno));
    }
}

/*
 * -EAGAIN from a resolving ioctl: an event (a REMOVE, from a MADV_DONTNEED) is pending, and
 * the userfaultfd refuses changes until it is read. The fault thread reads it (and queues
 * it); any other thread waits for the fault thread to.
 */
static void bf_engine_unblock(BfEngine *e)
{
    if (!bf_fault_thread_unblock()) {
        g_usleep(20);
    }
}

#define BF_RETRY(e, call) ({                                        \
        int ret_;                                                   \
        while ((ret_ = (call)) == -EAGAIN) {                        \
            bf_engine_unblock(e);                                   \
        }                                                           \
        ret_;                                                       \
    })

/* Wakes the threads faulting on @page: they retry their access. Returns the ioctl's -errno. */
static int bf_engine_wake(BfEngine *e, uint64_t page)
{
    return bf_uffd_wake(e->uffd, bf_page_addr(e, page), BF_PAGE_SIZE);
}

static void bf_engine_resolved(BfEngine *e, uint64_t page, int ret, const char *what)
{
    if (ret == -EEXIST) {
        /* Already mapped (a stale fault, or a racing resolution): just wake the waiters. */
        ret = bf_engine_wake(e, page);
    }
    if (ret < 0) {
        g_critical("blowfish %s: %s of page %" G_GUINT64_FORMAT " failed: %s", e->name,
                   what, (guint64)page, g_strerror(-ret));
    }
}

/*
 * Clears @marks of @npages pages from @page: BF_PAGE_PROTECTED_MARKS before they are mapped
 * writable (writes to them go unseen from then on, so a free page hint must no longer free
 * them, nor eviction take them as unchanged), HINTABLE at the end of a hint round.
 */
static void bf_engine_clear_marks(BfEngine *e, uint64_t page, uint64_t npages, uint16_t marks)
{
    for (uint64_t i = 0; i < npages; i++) {
        atomic_fetch_and_explicit(&e->pages[page + i], (uint16_t)~marks, memory_order_acq_rel);
    }
}

/* Does [first, last) meet a range being discarded? Under place_lock. */
static bool bf_engine_discarding_locked(BfEngine *e, uint64_t first, uint64_t last)
{
    for (guint i = 0; i < e->discarding->len; i++) {
        const BfPageRange *range = &g_array_index(e->discarding, BfPageRange, i);

        if (first < range->last && range->first < last) {
            return true;
        }
    }
    return false;
}

/*
 * Every call that maps pages into guest RAM goes through this: it runs @call, mapping
 * [page, page + npages), unless they meet a range QEMU is discarding: -ECANCELED then, and
 * nothing is mapped. A page mapped after QEMU's madvise() has dropped the range's mappings
 * would stay mapped, take the writes the guest makes once that madvise() has returned, and
 * lose them when the discard's turn came to punch it. The look and the call are one step
 * under place_lock, under which the fault thread reads events and notes the discards among
 * them: an event read before the look is noted, and one raised after either fails the call
 * (-EAGAIN: it is read, and the look made again) or cannot be read, so cannot let its
 * madvise() drop anything, before the call has mapped the pages.
 */
#define BF_MAP_UNLESS_DISCARDING(e, page, npages, call) ({                      \
        int ret_ = -ECANCELED;                                                  \
                                                                                \
        g_mutex_lock(&(e)->place_lock);                                         \
        while (!bf_engine_discarding_locked(e, page, (page) + (npages)) &&      \
               (ret_ = (call)) == -EAGAIN) {                                    \
            g_mutex_unlock(&(e)->place_lock);                                   \
            bf_engine_unblock(e);                                               \
            g_mutex_lock(&(e)->place_lock);                                     \
            ret_ = -ECANCELED;                                                  \
        }                                                                       \
        g_mutex_unlock(&(e)->place_lock);                                       \
        ret_;                                                                   \
    })

/*
 * Ends @page, which the caller holds BUSY and is resident (or claimed to be), FREE: what the
 * discard's turn would make of it, now that it may not be mapped. Punched out of the memfd
 * first (a fault that finds it FREE zero-fills it, which must not find the old page there),
 * its pool copy freed. Whoever waits on it faults again, and finds it free.
 */
static void bf_engine_free_discarding(BfEngine *e, uint64_t page)
{
    uint16_t old;

    bf_engine_punch(e, page, 1);
    old = atomic_exchange_explicit(&e->pages[page], BF_PAGE_FREE, memory_order_acq_rel);
    if (old & BF_PAGE_POOL_COPY) {
        bf_engine_free_pool_copy(e, page);
        bf_engine_kick_reclaim(e);
    }
    bf_count(&e->nr_resident, -1);
    bf_count(&e->nr_free, 1);
    bf_engine_wake(e, page);
}

/*
 * Ends the caller's hold on @page after a call that mapped it (@ret, of @what): released, or
 * ended FREE if it was left out for a discard (-ECANCELED). FALSE then.
 */
static bool bf_engine_hand_over(BfEngine *e, uint64_t page, int ret, const char *what)
{
    if (ret == -ECANCELED) {
        bf_engine_free_discarding(e, page);
        return false;
    }
    bf_engine_resolved(e, page, ret, what);
    bf_engine_release(e, page);
    return true;
}

/*
 * Whether to map the @npages pages from @page (all marked or none) write-protected: only
 * while they keep a mark of BF_PAGE_PROTECTED_MARKS, and not for a write fault (@write).
 * Otherwise their marks are cleared, as they are to be mapped writable.
 */
static bool bf_engine_map_protected(BfEngine *e, uint64_t page, uint64_t npages, bool write)
{
    if (!write && (bf_page_load(&e->pages[page]) & BF_PAGE_PROTECTED_MARKS)) {
        return true;
    }
    bf_engine_clear_marks(e, page, npages, BF_PAGE_PROTECTED_MARKS);
    return false;
}

bool bf_engine_map_back(BfEngine *e, uint64_t page, bool write)
{
    /* A kernel that cannot map back write-protected (before 6.3): the marks go. */
    bool wp = bf_engine_map_protected(e, page, 1, write || !e->continue_wp);

    return bf_engine_hand_over(e, page,
                               BF_MAP_UNLESS_DISCARDING(e, page, 1,
                                                        bf_uffd_continue(e->uffd,
                                                                         bf_page_addr(e, page),
                                                                         BF_PAGE_SIZE, wp)),
                               "UFFDIO_CONTINUE");
}

bool bf_engine_zero_fill(BfEngine *e, uint64_t page)
{
    bf_engine_clear_marks(e, page, 1, BF_PAGE_PROTECTED_MARKS);
    return bf_engine_hand_over(e, page,
                               BF_MAP_UNLESS_DISCARDING(e, page, 1,
                                                        bf_uffd_zeropage(e->uffd,
                                                                         bf_page_addr(e, page),
                                                                         BF_PAGE_SIZE)),
                               "UFFDIO_ZEROPAGE");
}

bool bf_engine_try_zero_fill_run(BfEngine *e, uint64_t page, uint64_t npages)
{
    bf_engine_clear_marks(e, page, npages, BF_PAGE_PROTECTED_MARKS);
    return BF_MAP_UNLESS_DISCARDING(e, page, npages,
                                    bf_uffd_zeropage(e->uffd, bf_page_addr(e, page),
                                                     npages * BF_PAGE_SIZE)) == 0;
}

bool bf_engine_place(BfEngine *e, uint64_t page, const void *data)
{
    bf_engine_clear_marks(e, page, 1, BF_PAGE_PROTECTED_MARKS);
    return bf_engine_hand_over(e, page,
                               BF_MAP_UNLESS_DISCARDING(e, page, 1,
                                                        bf_uffd_copy(e->uffd,
                                                                     bf_page_addr(e, page),
                                                                     data, BF_PAGE_SIZE,
                                                                     false)),
                               "UFFDIO_COPY");
}

void bf_engine_protect(BfEngine *e, uint64_t page, uint64_t npages)
{
    int ret = BF_RETRY(e, bf_uffd_writeprotect(e->uffd, bf_page_addr(e, page),
                                               npages * BF_PAGE_SIZE, true));

    if (ret < 0) {
        g_error("blowfish %s: cannot write-protect guest RAM: %s", e->name, g_strerror(-ret));
    }
}

void bf_engine_unprotect(BfEngine *e, uint64_t page, uint64_t npages)
{
    bf_engine_clear_marks(e, page, npages, BF_PAGE_PROTECTED_MARKS);
    bf_engine_resolved(e, page, BF_RETRY(e, bf_uffd_writeprotect(e->uffd,
                                                                 bf_page_addr(e, page),
                                                                 npages * BF_PAGE_SIZE,
                                                                 false)),
                       "UFFDIO_WRITEPROTECT");
}

void bf_engine_discard_begin_locked(BfEngine *e, uint64_t first, uint64_t last)
{
    BfPageRange range = { first, last };

    g_array_append_val(e->discarding, range);
}

void bf_engine_discard_end(BfEngine *e, uint64_t first, uint64_t last)
{
    g_mutex_lock(&e->place_lock);
    for (guint i = 0; i < e->discarding->len; i++) {
        const BfPageRange *range = &g_array_index(e->discarding, BfPageRange, i);

        if (range->first == first && range->last == last) {
            g_array_remove_index(e->discarding, i);
            break;
        }
    }
    g_mutex_unlock(&e->place_lock);
}

bool bf_engine_discarding(BfEngine *e, uint64_t first, uint64_t last)
{
    bool ret;

    g_mutex_lock(&e->place_lock);
    ret = bf_engine_discarding_locked(e, first, last);
    g_mutex_unlock(&e->place_lock);
    return ret;
}

void bf_engine_place_fetched(BfEngine *e, const BfRequest *req, bool writable, bool *placed)
{
    uint32_t max_run = req->count;

    for (uint32_t i = 0, n; i < req->count; i += n) {
        bool marked = bf_page_load(&e->pages[req->pages[i]]) & BF_PAGE_PROTECTED_MARKS;
        bool wp;
        int ret;

        /*
         * The run of consecutive pages from i that the guest has not freed, all marked to
         * be placed write-protected or none.
         */
        for (n = 0; i + n < req->count && n < max_run; n++) {
            uint16_t m = bf_page_load(&e->pages[req->pages[i + n]]);

            if ((n > 0 && req->pages[i + n] != req->pages[i + n - 1] + 1) ||
                (m & BF_PAGE_DISCARDED) || !!(m & BF_PAGE_PROTECTED_MARKS) != marked) {
                break;
            }
        }
        if (n == 0) {
            placed[i] = false;
            n = 1;
            continue;
        }
        wp = bf_engine_map_protected(e, req->pages[i], n, writable);
        ret = BF_MAP_UNLESS_DISCARDING(e, req->pages[i], n,
                                       bf_uffd_copy(e->uffd, bf_page_addr(e, req->pages[i]),
                                                    req->data[i], (uint64_t)n * BF_PAGE_SIZE,
                                                    wp));
        if (ret < 0 && n > 1) {
            /* A page was there already, or QEMU is discarding one: page by page from here. */
            max_run = 1;
            n = 0;
            continue;
        }
        if (ret == -ECANCELED) {
            placed[i] = false;
            continue;
        }
        bf_engine_resolved(e, req->pages[i], ret, "UFFDIO_COPY");
        for (uint32_t k = 0; k < n; k++) {
            placed[i + k] = true;
        }
    }
}

bool bf_engine_fetched_intact(BfEngine *e, const BfRequest *req, char **why)
{
    for (uint32_t i = 0; i < req->count; i++) {
        uint64_t page = req->pages[i];

        /* A page the guest freed meanwhile is not placed: what came back does not matter. */
        if (bf_page_load(&e->pages[page]) & BF_PAGE_DISCARDED) {
            continue;
        }
        if (!XXH128_isEqual(bf_engine_page_hash(e, req->data[i]), e->pool_hash[page])) {
            *why = g_strdup_printf("the memory node returned the page at 0x%"
                                   G_GINT64_MODIFIER "x altered: it is not what was sent",
                                   (guint64)(page * BF_PAGE_SIZE));
            return false;
        }
    }
    return true;
}

void bf_engine_fetched(BfEngine *e, uint64_t page, bool placed, bool writable)
{
    BfPageMeta *meta = &e->pages[page];
    uint16_t m = bf_page_load(meta), new;

    if (!placed) {
        /* A run cut short by an event (-EAGAIN) may have placed it all the same. */
        bf_engine_punch(e, page, 1);
    }
    do {
        if (placed && (m & BF_PAGE_DISCARDED)) {
            /*
             * QEMU discarded it after it was placed: its mapping is gone, but its memfd
             * copy would be mapped again on the next touch. Punched while still held: once
             * FREE, a fault may zero-fill it and the guest write there.
             */
            bf_engine_punch(e, page, 1);
            placed = false;
        }
        new = placed ? BF_PAGE_RESIDENT | BF_PAGE_POOL_COPY |
                       (writable ? 0 : BF_PAGE_CLEAN | (m & BF_PAGE_PROTECTED_MARKS)) |
                       ((m & BF_PAGE_WANTED) ? BF_PAGE_ACCESSED : 0)
                     : BF_PAGE_FREE;
    } while (!bf_page_cas(meta, &m, new));
    bf_engine_wake_if_wanted(e, page, m);
    bf_count(&e->nr_remote, -1);
    if (!placed) {
        bf_engine_free_pool_copy(e, page);
        bf_engine_kick_reclaim(e);
        bf_count(&e->nr_free, 1);
        return;
    }
    bf_count(&e->nr_resident, 1);
    bf_count(&e->pages_restored, 1);
    bf_count(&e->pool_bytes_received, BF_PAGE_SIZE);
}

void bf_engine_wake_if_wanted(BfEngine *e, uint64_t page, uint16_t old)
{
    if (old & BF_PAGE_WANTED) {
        bf_engine_wake(e, page);
    }
}

void bf_engine_release(BfEngine *e, uint64_t page)
{
    uint16_t old = atomic_fetch_and_explicit(&e->pages[page],
                                             (uint16_t)~(BF_PAGE_BUSY | BF_PAGE_WANTED),
                                             memory_order_acq_rel);

    bf_engine_wake_if_wanted(e, page, old);
}

void bf_engine_zap(BfEngine *e, uint64_t page, uint64_t npages)
{
    uint64_t start = bf_page_addr(e, page), len = npages * BF_PAGE_SIZE;

    g_mutex_lock(&e->zap_lock);
    atomic_store(&e->zap_seen, false);
    atomic_store(&e->zap_returned, false);
    atomic_store(&e->zap_start, start);
    atomic_store(&e->zap_end, start + len);
    /*
     * The REMOVE event this raises completes as soon as the fault thread's read() takes it,
     * which may be before that thread looks at it: keep the marker until it has. It tells
     * this zap's event from QEMU's for the same range by when this call returns.
     */
    if (madvise((void *)(uintptr_t)start, len, MADV_DONTNEED) < 0) {
        g_error("blowfish %s: cannot drop the mappings of guest RAM: %s", e->name,
                g_strerror(errno));
    }
    atomic_store(&e->zap_returned, true);
    while (!atomic_load(&e->zap_seen)) {
        sched_yield();
    }
    atomic_store(&e->zap_end, 0);
    atomic_store(&e->zap_start, 0);
    g_mutex_unlock(&e->zap_lock);
}

void bf_engine_punch(BfEngine *e, uint64_t page, uint64_t npages)
{
    if (fallocate(e->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, page * BF_PAGE_SIZE,
                  npages * BF_PAGE_SIZE) < 0) {
        g_error("blowfish %s: cannot punch guest RAM out of its memfd: %s", e->name,
                g_strerror(errno));
    }
}

bool bf_engine_is_zap_event(BfEngine *e, uint64_t start, uint64_t end)
{
    return start == atomic_load(&e->zap_start) && end == atomic_load(&e->zap_end) &&
           !atomic_load(&e->zap_seen);
}

void bf_engine_zap_resolved(BfEngine *e)
{
    atomic_store(&e->zap_seen, true);
}

void bf_engine_free_pool_copy(BfEngine *e, uint64_t page)
{
    g_mutex_lock(&e->lock);
    g_array_append_val(e->pool_free, page);
    g_mutex_unlock(&e->lock);
}

void bf_engine_queue_streamed(BfEngine *e, const uint64_t *pages, guint n)
{
    g_mutex_lock(&e->lock);
    g_array_append_vals(e->streamed, pages, n);
    if (e->streamed->len > BF_ENGINE_STREAMED_MAX) {
        g_array_remove_range(e->streamed, 0, e->streamed->len - BF_ENGINE_STREAMED_MAX);
    }
    g_mutex_unlock(&e->lock);
}

BfChannel *bf_engine_connect_channel(BfEngine *e, GError **errp)
{
    if (e->connect) {
        return e->connect(e->connect_opaque, &e->hello, errp);
    }
    return bf_channel_connect(e->pool, &e->hello, e->pool_key, e->pool_tls,
                              e->tun.pool_timeout_ms, errp);
}

/* Engine threads take no signals: the host process (QEMU) handles them elsewhere. */
static GThread *bf_engine_thread_new(const char *prefix, const char *name, GThreadFunc fn,
                                     gpointer data, GError **errp)
{
    g_autofree char *thread_name = g_strdup_printf("%s-%s", prefix, name);
    sigset_t all, old;
    GThread *thread;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    thread = g_thread_try_new(thread_name, fn, data, errp);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return thread;
}

static gboolean bf_engine_fail_errno(const char *what, GError **errp)
{
    g_set_error(errp, BF_ERROR, BF_ERROR_FAILED, "%s: %s", what, g_strerror(errno));
    return FALSE;
}

static gboolean bf_engine_map(BfEngine *e, GError **errp)
{
    e->memfd = memfd_create(e->name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (e->memfd < 0) {
        return bf_engine_fail_errno("memfd_create", errp);
    }
    if (ftruncate(e->memfd, e->size) < 0 ||
        fcntl(e->memfd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0) {
        return bf_engine_fail_errno("cannot size the guest RAM memfd", errp);
    }
    e->guest = mmap(NULL, e->size, PROT_READ | PROT_WRITE, MAP_SHARED, e->memfd, 0);
    if (e->guest == MAP_FAILED) {
        e->guest = NULL;
        return bf_engine_fail_errno("cannot map guest RAM", errp);
    }
    /* Transparent huge pages would hide 4 KiB accesses and make eviction all-or-nothing. */
    madvise(e->guest, e->size, MADV_NOHUGEPAGE);
    return TRUE;
}

static void bf_engine_init_session(BfEngine *e)
{
    for (unsigned i = 0; i < BF_PROTO_SESSION_SIZE; i += 4) {
        guint32 r = g_random_int();

        memcpy(e->hello.session + i, &r, 4);
    }
    e->hello.pages = e->npages;
    g_strlcpy(e->hello.name, e->name, sizeof(e->hello.name));
}

BfEngine *bf_engine_new(const BfEngineConfig *config, GError **errp)
{
    g_autoptr(BfEngine) e = g_new0(BfEngine, 1);
    uint64_t local_limit;

    e->memfd = e->uffd = e->fault_wake_fd = -1;
    e->name = g_strdup(config->name);
    e->size = config->size;
    e->npages = config->size / BF_PAGE_SIZE;
    e->tun = config->tunables;
    e->connect = config->connect;
    e->connect_opaque = config->connect_opaque;
    if (config->events) {
        e->events = *config->events;
    }
    e->events_opaque = config->events_opaque;
    g_mutex_init(&e->lock);
    g_mutex_init(&e->pool_error_lock);
    g_mutex_init(&e->zap_lock);
    g_mutex_init(&e->place_lock);
    g_cond_init(&e->cond);
    g_cond_init(&e->hint_cond);
    e->hinted = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    e->discarding = g_array_new(FALSE, FALSE, sizeof(BfPageRange));
    e->refetch = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    e->pool_free = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    e->streamed = g_array_new(FALSE, FALSE, sizeof(uint64_t));

    if (sysconf(_SC_PAGESIZE) != BF_PAGE_SIZE) {
        g_set_error(errp, BF_ERROR, BF_ERROR_UNSUPPORTED,
                    "host page size %ld is not supported (4 KiB only)",
                    sysconf(_SC_PAGESIZE));
        return NULL;
    }
    if (!e->size || e->size % BF_PAGE_SIZE) {
        g_set_error(errp, BF_ERROR, BF_ERROR_INVALID,
                    "size %" G_GUINT64_FORMAT " is not a positive multiple of 4 KiB",
                    (guint64)e->size);
        return NULL;
    }
    if (!bf_engine_check_tunables(&e->tun, errp)) {
        return NULL;
    }
    if (config->pool) {
        e->pool = bf_endpoint_parse(config->pool, errp);
        if (!e->pool) {
            return NULL;
        }
        e->pool_text = bf_endpoint_to_string(e->pool);
    }
    if (config->pool_key || config->pool_tls_dir) {
        const char *what = config->pool_key ? "a key" : "TLS";

        if (!config->pool) {
            g_set_error(errp, BF_ERROR, BF_ERROR_INVALID, "%s needs a pool", what);
            return NULL;
        }
        if (config->pool_tls_dir && e->pool->transport != BF_TRANSPORT_TCP) {
            g_set_error(errp, BF_ERROR, BF_ERROR_INVALID,
                        "TLS is not supported over RDMA: use a tcp: pool");
            return NULL;
        }
    }
    if (config->pool_key) {
        e->pool_key = bf_key_new(config->pool_key->name, config->pool_key->secret,
                                 config->pool_key->len, errp);
        if (!e->pool_key) {
            return NULL;
        }
    }
    if (config->pool_tls_dir) {
        e->pool_tls = bf_tls_creds_load(config->pool_tls_dir, FALSE,
                                        config->pool_tls_verify_peer,
                                        config->pool_tls_priority, errp);
        if (!e->pool_tls) {
            return NULL;
        }
    }
    local_limit = config->local_limit ? config->local_limit : e->size;
    if (!bf_engine_check_local_limit(e->size, local_limit, bf_engine_has_pool(e), errp)) {
        return NULL;
    }
    if (e->tun.idle_age && !bf_engine_has_pool(e)) {
        g_set_error(errp, BF_ERROR, BF_ERROR_INVALID,
                    "idle-age needs a memory pool to move idle pages to: give pool");
        return NULL;
    }
    e->local_limit = local_limit;
    e->pool_state = bf_engine_has_pool(e) ? BF_POOL_CONNECTING : BF_POOL_NONE;
    bf_engine_init_session(e);

    e->uffd = bf_uffd_open(BF_UFFD_REQUIRED_FEATURES, errp);
    if (e->uffd < 0) {
        return NULL;
    }
    if (!bf_engine_map(e, errp) || !bf_uffd_register(e->uffd, e->guest, e->size, errp)) {
        return NULL;
    }
    e->continue_wp = bf_uffd_continue_wp_supported(e->uffd, (uintptr_t)e->guest);
    e->pages = g_new0(BfPageMeta, e->npages);
    bf_reclaim_init(e);

    e->fault_wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (e->fault_wake_fd < 0) {
        bf_engine_fail_errno("eventfd", errp);
        return NULL;
    }
    e->fault_thread = bf_engine_thread_new("bf-fault", e->name, bf_fault_thread, e, errp);
    if (!e->fault_thread) {
        return NULL;
    }
    e->reclaim_thread = bf_engine_thread_new("bf-reclaim", e->name, bf_reclaim_thread, e,
                                             errp);
    if (!e->reclaim_thread) {
        return NULL;
    }
    return g_steal_pointer(&e);
}

void bf_engine_leave_pool(BfEngine *e)
{
    /* The reclaim thread drops the pool session on its way out. */
    if (e->reclaim_thread) {
        g_mutex_lock(&e->lock);
        e->stopping = true;
        g_cond_signal(&e->cond);
        g_mutex_unlock(&e->lock);
        g_thread_join(e->reclaim_thread);
        e->reclaim_thread = NULL;
    }
}

void bf_engine_free(BfEngine *e)
{
    if (!e) {
        return;
    }
    bf_engine_leave_pool(e);
    if (e->fault_thread) {
        atomic_store(&e->fault_stop, true);
        bf_engine_wake_fault_thread(e);
        g_thread_join(e->fault_thread);
    }
    bf_channel_close(e->fault_channel, false);
    bf_reclaim_cleanup(e);
    if (e->guest) {
        munmap(e->guest, e->size);
    }
    if (e->uffd >= 0) {
        close(e->uffd);
    }
    if (e->memfd >= 0) {
        close(e->memfd);
    }
    if (e->fault_wake_fd >= 0) {
        close(e->fault_wake_fd);
    }
    g_array_free(e->refetch, TRUE);
    g_array_free(e->pool_free, TRUE);
    g_array_free(e->streamed, TRUE);
    g_array_free(e->hinted, TRUE);
    g_array_free(e->discarding, TRUE);
    g_cond_clear(&e->hint_cond);
    g_cond_clear(&e->cond);
    g_mutex_clear(&e->zap_lock);
    g_mutex_clear(&e->place_lock);
    g_mutex_clear(&e->lock);
    g_mutex_clear(&e->pool_error_lock);
    g_free(e->pages);
    bf_endpoint_free(e->pool);
    bf_key_free(e->pool_key);
    bf_tls_creds_free(e->pool_tls);
    g_free(e->pool_text);
    g_free(e->name);
    g_free(e);
}

void *bf_engine_guest_ram(BfEngine *e)
{
    return e->guest;
}

const char *bf_engine_pool(BfEngine *e)
{
    return e->pool_text;
}

gboolean bf_engine_set_local_limit(BfEngine *e, uint64_t local_limit, GError **errp)
{
    if (!bf_engine_check_local_limit(e->size, local_limit, bf_engine_has_pool(e), errp)) {
        return FALSE;
    }
    atomic_store(&e->local_limit, local_limit);
    atomic_store(&e->idle_stopped, false);
    /* What streams read past before is no guide under a new limit. */
    g_mutex_lock(&e->lock);
    g_array_set_size(e->streamed, 0);
    g_mutex_unlock(&e->lock);
    bf_engine_kick_reclaim(e);
    bf_engine_wake_fault_thread(e);     /* faults waiting for room may go on */
    return TRUE;
}

gboolean bf_engine_drop_mappings(BfEngine *e, uint64_t offset, uint64_t len, GError **errp)
{
    if (offset % BF_PAGE_SIZE || len % BF_PAGE_SIZE || offset > e->size ||
        len > e->size - offset) {
        g_set_error(errp, BF_ERROR, BF_ERROR_INVALID, "range 0x%" G_GINT64_MODIFIER "x+0x%"
                    G_GINT64_MODIFIER "x is not page aligned inside guest RAM",
                    (guint64)offset, (guint64)len);
        return FALSE;
    }
    bf_engine_zap(e, offset / BF_PAGE_SIZE, len / BF_PAGE_SIZE);
    return TRUE;
}

gboolean bf_engine_restore_all(BfEngine *e, GError **errp)
{
    if (!bf_engine_has_pool(e)) {
        g_set_error(errp, BF_ERROR, BF_ERROR_INVALID,
                    "nothing to restore: no memory pool is configured");
        return FALSE;
    }
    atomic_store(&e->local_limit, e->size);
    atomic_store(&e->idle_stopped, true);
    atomic_store(&e->restoring, true);
    g_mutex_lock(&e->lock);
    e->restore_requested = true;
    g_cond_signal(&e->cond);
    g_mutex_unlock(&e->lock);
    bf_engine_wake_fault_thread(e);
    return TRUE;
}

gboolean bf_engine_hint_begin(BfEngine *e, gboolean track_writes, GError **errp)
{
    int ret;

    g_mutex_lock(&e->lock);
    if (e->hinting) {
        g_mutex_unlock(&e->lock);
        g_set_error(errp, BF_ERROR, BF_ERROR_INVALID, "a free page hint round is in progress");
        return FALSE;
    }
    e->hinting = true;
    g_mutex_unlock(&e->lock);
    if (!track_writes) {
        return TRUE;
    }

    /*
     * Mark the idle pages, then write-protect all of guest RAM: a page written after this
     * faults first, and mapping it writable clears its mark (bf_engine_clear_marks()). A page
     * held by a thread now is left unmarked: it may be mapped writable without a fault.
     */
    for (uint64_t p = 0; p < e->npages; p++) {
        BfPageMeta *meta = &e->pages[p];
        uint16_t m = bf_page_load(meta);

        while (bf_page_can_free(m) && !(m & BF_PAGE_HINTABLE) &&
               !bf_page_cas(meta, &m, m | BF_PAGE_HINTABLE)) {
        }
    }
    ret = BF_RETRY(e, bf_uffd_writeprotect(e->uffd, (uintptr_t)e->guest, e->size, true));
    if (ret < 0) {
        bf_engine_clear_marks(e, 0, e->npages, BF_PAGE_HINTABLE);
        g_mutex_lock(&e->lock);
        e->hinting = false;
        g_mutex_unlock(&e->lock);
        g_set_error(errp, BF_ERROR, BF_ERROR_FAILED,
                    "cannot write-protect guest RAM: %s", g_strerror(-ret));
        return FALSE;
    }
    return TRUE;
}

void bf_engine_hint_free(BfEngine *e, uint64_t offset, uint64_t len)
{
    uint64_t start = MIN(offset, e->size);
    /* Whole pages only: a partial page at either end is kept. */
    uint64_t range[2] = {
        (start + BF_PAGE_SIZE - 1) / BF_PAGE_SIZE,
        (start + MIN(len, e->size - start)) / BF_PAGE_SIZE,
    };

    if (range[0] >= range[1]) {
        return;
    }
    g_mutex_lock(&e->lock);
    if (e->hinting) {
        g_array_append_vals(e->hinted, range, 2);
        e->hints_queued++;
    }
    g_mutex_unlock(&e->lock);
    bf_engine_wake_fault_thread(e);
}

void bf_engine_hint_end(BfEngine *e)
{
    g_mutex_lock(&e->lock);
    while (e->hints_queued) {
        g_cond_wait(&e->hint_cond, &e->lock);
    }
    e->hinting = false;
    g_mutex_unlock(&e->lock);
    bf_engine_clear_marks(e, 0, e->npages, BF_PAGE_HINTABLE);
}

void bf_engine_get_stats(BfEngine *e, BfEngineStats *stats)
{
    struct stat st;

    memset(stats, 0, sizeof(*stats));
    stats->size = e->size;
    stats->local_limit = atomic_load(&e->local_limit);
    /* The memfd's allocated blocks are exactly the guest pages held in host memory. */
    if (fstat(e->memfd, &st) == 0) {
        stats->resident = MIN((uint64_t)st.st_blocks * 512, e->size);
    }
    stats->remote = bf_counter(&e->nr_remote) * BF_PAGE_SIZE;
    stats->zero = bf_counter(&e->nr_zero) * BF_PAGE_SIZE;
    stats->free = bf_counter(&e->nr_free) * BF_PAGE_SIZE;
    stats->faults_missing = bf_counter(&e->faults_missing);
    stats->faults_minor = bf_counter(&e->faults_minor);
    stats->faults_wp = bf_counter(&e->faults_wp);
    stats->pages_evicted = bf_counter(&e->pages_evicted);
    stats->pages_restored = bf_counter(&e->pages_restored);
    stats->clean_evictions = bf_counter(&e->clean_evictions);
    stats->readahead_pages = bf_counter(&e->readahead_pages);
    stats->drop_behind_pages = bf_counter(&e->drop_behind_pages);
    stats->pool_bytes_sent = bf_counter(&e->pool_bytes_sent);
    stats->pool_bytes_received = bf_counter(&e->pool_bytes_received);
    stats->pool_stored = bf_counter(&e->pool_stored) * BF_PAGE_SIZE;
    stats->fault_latency_p50_ns = bf_latency_percentile(&e->fault_latency, 50);
    stats->fault_latency_p99_ns = bf_latency_percentile(&e->fault_latency, 99);
    stats->scan_ns = bf_counter(&e->scan_ns);
    stats->scan_samples = bf_counter(&e->scan_samples);
    stats->free_reports = bf_counter(&e->free_reports);
    stats->free_hinted = bf_counter(&e->free_hinted) * BF_PAGE_SIZE;
    stats->hint_kept = bf_counter(&e->hint_kept) * BF_PAGE_SIZE;
    stats->free_latency_p50_ns = bf_latency_percentile(&e->free_latency, 50);
    stats->free_latency_p99_ns = bf_latency_percentile(&e->free_latency, 99);
    g_mutex_lock(&e->pool_error_lock);
    g_strlcpy(stats->pool_error, e->pool_error, sizeof(stats->pool_error));
    g_mutex_unlock(&e->pool_error_lock);
    stats->pool_state = atomic_load(&e->pool_state);
    stats->pool_full = atomic_load(&e->pool_full);
    stats->restoring = atomic_load(&e->restoring);
}

unsigned bf_engine_fault_latency_histogram(BfEngine *e, uint64_t **upper_ns, uint64_t **counts)
{
    *upper_ns = g_new(uint64_t, BF_LATENCY_BUCKETS);
    *counts = g_new(uint64_t, BF_LATENCY_BUCKETS);
    return bf_latency_histogram(&e->fault_latency, *upper_ns, *counts);
}
