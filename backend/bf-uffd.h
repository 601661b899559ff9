/*
 * bf-uffd: the engine's userfaultfd. Opening it (with an error that says which permission to
 * grant), the feature handshake, registering guest RAM, and the ioctls that resolve faults.
 * The resolving calls are thin and report -errno: they sit on the fault path.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_UFFD_H
#define BF_UFFD_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <linux/userfaultfd.h>

/* Newer than Debian 12's linux-libc-dev: values from Linux's uapi header. */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif

/* What the engine cannot work without (kernel >= 5.19 for WP on shmem). */
#define BF_UFFD_REQUIRED_FEATURES \
    (UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_SHMEM | \
     UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_HUGETLBFS_SHMEM | \
     UFFD_FEATURE_EVENT_REMOVE)

#define BF_UFFD_REGISTER_MODE \
    (UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR | \
     UFFDIO_REGISTER_MODE_WP)

/*
 * Opens a non-blocking userfaultfd that also handles faults raised in the kernel (KVM's
 * guest accesses are), through /dev/userfaultfd when it is accessible, else the syscall, and
 * enables @features. Returns the fd, or -1 with @errp set.
 */
int bf_uffd_open(uint64_t features, GError **errp);

/* Registers [addr, addr + len) for missing, minor and write-protect faults. */
bool bf_uffd_register(int uffd, void *addr, uint64_t len, GError **errp);

/* Fault resolution: 0 or -errno. -EEXIST means the page was already there: wake instead. */
int bf_uffd_zeropage(int uffd, uint64_t addr, uint64_t len);
int bf_uffd_copy(int uffd, uint64_t addr, const void *src, uint64_t len, bool wp);
int bf_uffd_continue(int uffd, uint64_t addr, uint64_t len, bool wp);
/*
 * Whether UFFDIO_CONTINUE can map a page write-protected (Linux 6.3+). Probes with @addr, a
 * registered page not in the page cache (nothing is mapped either way).
 */
bool bf_uffd_continue_wp_supported(int uffd, uint64_t addr);
int bf_uffd_writeprotect(int uffd, uint64_t addr, uint64_t len, bool wp);
int bf_uffd_wake(int uffd, uint64_t addr, uint64_t len);

#endif
