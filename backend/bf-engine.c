/*
 * bf-engine: one Blowfish-managed guest RAM region: its memfd, the guest mapping registered
 * with userfaultfd, the fault thread, the local-limit and the statistics.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-engine.h"
#include "bf-endpoint.h"
#include "bf-error.h"
#include "bf-uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct BfEngine {
    char *name;
    uint64_t size;
    BfEndpoint *pool;
    char *pool_text;        /* @pool in canonical form */

    int memfd;
    uint8_t *guest;         /* registered with @uffd; the fault thread never touches it */
    int uffd;

    int stop_fd;            /* eventfd: the fault thread exits when it becomes readable */
    GThread *fault_thread;

    _Atomic uint64_t local_limit;
    _Atomic BfPoolState pool_state;
    _Atomic uint64_t faults_missing;
    _Atomic uint64_t faults_minor;
    _Atomic uint64_t faults_wp;
};

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

static void bf_engine_resolve_fault(BfEngine *e, const struct uffd_msg *msg)
{
    uint64_t addr = msg->arg.pagefault.address & ~(BF_PAGE_SIZE - 1);
    uint64_t flags = msg->arg.pagefault.flags;
    int ret;

    if (flags & UFFD_PAGEFAULT_FLAG_WP) {
        atomic_fetch_add_explicit(&e->faults_wp, 1, memory_order_relaxed);
        ret = bf_uffd_writeprotect(e->uffd, addr, BF_PAGE_SIZE, false);
    } else if (flags & UFFD_PAGEFAULT_FLAG_MINOR) {
        atomic_fetch_add_explicit(&e->faults_minor, 1, memory_order_relaxed);
        ret = bf_uffd_continue(e->uffd, addr, BF_PAGE_SIZE);
    } else {
        atomic_fetch_add_explicit(&e->faults_missing, 1, memory_order_relaxed);
        ret = bf_uffd_zeropage(e->uffd, addr, BF_PAGE_SIZE);
    }
    if (ret == -EEXIST) {
        /* Someone else mapped the page between the fault and now. */
        ret = bf_uffd_wake(e->uffd, addr, BF_PAGE_SIZE);
    }
    if (ret < 0) {
        g_critical("blowfish %s: cannot resolve fault at offset 0x%" G_GINT64_MODIFIER
                   "x (flags 0x%" G_GINT64_MODIFIER "x): %s", e->name,
                   (guint64)(addr - (uintptr_t)e->guest), (guint64)flags, g_strerror(-ret));
    }
}

static gpointer bf_engine_fault_thread(gpointer opaque)
{
    BfEngine *e = opaque;
    struct pollfd fds[2] = {
        { .fd = e->uffd, .events = POLLIN },
        { .fd = e->stop_fd, .events = POLLIN },
    };
    struct uffd_msg msgs[32];

    for (;;) {
        ssize_t n;

        if (poll(fds, G_N_ELEMENTS(fds), -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            g_error("blowfish %s: fault thread: poll: %s", e->name, g_strerror(errno));
        }
        if (fds[1].revents) {
            return NULL;
        }
        n = read(e->uffd, msgs, sizeof(msgs));
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                continue;
            }
            g_error("blowfish %s: fault thread: read: %s", e->name, g_strerror(errno));
        }
        for (size_t i = 0; i < n / sizeof(msgs[0]); i++) {
            if (msgs[i].event == UFFD_EVENT_PAGEFAULT) {
                bf_engine_resolve_fault(e, &msgs[i]);
            }
        }
    }
}

/* Engine threads take no signals: the host process (QEMU) handles them elsewhere. */
static GThread *bf_engine_thread_new(const char *name, GThreadFunc fn, gpointer data,
                                     GError **errp)
{
    sigset_t all, old;
    GThread *thread;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    thread = g_thread_try_new(name, fn, data, errp);
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

BfEngine *bf_engine_new(const BfEngineConfig *config, GError **errp)
{
    g_autoptr(BfEngine) e = g_new0(BfEngine, 1);
    g_autofree char *thread_name = NULL;

    e->memfd = e->uffd = e->stop_fd = -1;
    e->name = g_strdup(config->name);
    e->size = config->size;

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
    if (config->pool) {
        e->pool = bf_endpoint_parse(config->pool, errp);
        if (!e->pool) {
            return NULL;
        }
        e->pool_text = bf_endpoint_to_string(e->pool);
    }
    e->local_limit = config->local_limit ? config->local_limit : e->size;
    if (!bf_engine_check_local_limit(e->size, e->local_limit, e->pool != NULL, errp)) {
        return NULL;
    }
    e->pool_state = e->pool ? BF_POOL_CONNECTING : BF_POOL_NONE;

    e->uffd = bf_uffd_open(BF_UFFD_REQUIRED_FEATURES, errp);
    if (e->uffd < 0) {
        return NULL;
    }
    if (!bf_engine_map(e, errp) || !bf_uffd_register(e->uffd, e->guest, e->size, errp)) {
        return NULL;
    }
    e->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (e->stop_fd < 0) {
        bf_engine_fail_errno("eventfd", errp);
        return NULL;
    }
    thread_name = g_strdup_printf("bf-fault-%s", e->name);
    e->fault_thread = bf_engine_thread_new(thread_name, bf_engine_fault_thread, e, errp);
    if (!e->fault_thread) {
        return NULL;
    }
    return g_steal_pointer(&e);
}

void bf_engine_free(BfEngine *e)
{
    if (!e) {
        return;
    }
    if (e->fault_thread) {
        uint64_t one = 1;

        if (write(e->stop_fd, &one, sizeof(one)) != sizeof(one)) {
            g_error("blowfish %s: cannot stop the fault thread: %s", e->name,
                    g_strerror(errno));
        }
        g_thread_join(e->fault_thread);
    }
    if (e->guest) {
        munmap(e->guest, e->size);
    }
    if (e->uffd >= 0) {
        close(e->uffd);
    }
    if (e->memfd >= 0) {
        close(e->memfd);
    }
    if (e->stop_fd >= 0) {
        close(e->stop_fd);
    }
    bf_endpoint_free(e->pool);
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
    if (!bf_engine_check_local_limit(e->size, local_limit, e->pool != NULL, errp)) {
        return FALSE;
    }
    atomic_store(&e->local_limit, local_limit);
    return TRUE;
}

int bf_engine_write_protect(BfEngine *e, uint64_t offset, uint64_t len)
{
    if (offset % BF_PAGE_SIZE || len % BF_PAGE_SIZE || offset > e->size ||
        len > e->size - offset) {
        return -EINVAL;
    }
    return bf_uffd_writeprotect(e->uffd, (uintptr_t)e->guest + offset, len, true);
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
    stats->faults_missing = atomic_load_explicit(&e->faults_missing, memory_order_relaxed);
    stats->faults_minor = atomic_load_explicit(&e->faults_minor, memory_order_relaxed);
    stats->faults_wp = atomic_load_explicit(&e->faults_wp, memory_order_relaxed);
    stats->pool_state = atomic_load(&e->pool_state);
}
