/*
 * bf-uffd: the engine's userfaultfd. Opening it (with an error that says which permission to
 * grant), the feature handshake, registering guest RAM, and the ioctls that resolve faults.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-uffd.h"
#include "bf-error.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BF_UFFD_PERMISSION_HINT \
    "give this process's user read-write access to /dev/userfaultfd " \
    "(for example: setfacl -m u:USER:rw /dev/userfaultfd), " \
    "or set the sysctl vm.unprivileged_userfaultfd=1, or grant CAP_SYS_PTRACE"

/* A userfaultfd that takes kernel-mode faults too: never UFFD_USER_MODE_ONLY. */
static int bf_uffd_create(GError **errp)
{
    int dev_errno;
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    int fd;

    if (dev >= 0) {
        fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
        dev_errno = errno;
        close(dev);
        if (fd >= 0) {
            return fd;
        }
    } else {
        dev_errno = errno;
    }

    fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0) {
        return fd;
    }
    if (errno == EPERM || errno == EACCES) {
        g_set_error(errp, BF_ERROR, BF_ERROR_PERMISSION,
                    "userfaultfd is not permitted (/dev/userfaultfd: %s; "
                    "userfaultfd(2): %s): %s", g_strerror(dev_errno),
                    g_strerror(errno), BF_UFFD_PERMISSION_HINT);
    } else {
        g_set_error(errp, BF_ERROR, BF_ERROR_UNSUPPORTED,
                    "cannot create a userfaultfd: %s", g_strerror(errno));
    }
    return -1;
}

/* The features this kernel offers, from a throw-away userfaultfd. */
static uint64_t bf_uffd_available_features(void)
{
    struct uffdio_api api = { .api = UFFD_API };
    int fd = bf_uffd_create(NULL);

    if (fd < 0) {
        return 0;
    }
    if (ioctl(fd, UFFDIO_API, &api) < 0) {
        api.features = 0;
    }
    close(fd);
    return api.features;
}

int bf_uffd_open(uint64_t features, GError **errp)
{
    struct uffdio_api api = { .api = UFFD_API, .features = features };
    int fd = bf_uffd_create(errp);

    if (fd < 0) {
        return -1;
    }
    if (ioctl(fd, UFFDIO_API, &api) < 0) {
        int err = errno;
        uint64_t missing = features & ~bf_uffd_available_features();

        close(fd);
        if (err == EINVAL && missing) {
            g_set_error(errp, BF_ERROR, BF_ERROR_UNSUPPORTED,
                        "this kernel's userfaultfd lacks features 0x%" G_GINT64_MODIFIER
                        "x (missing/minor faults and write-protection on shmem: "
                        "Linux 5.19 or later)", missing);
        } else {
            g_set_error(errp, BF_ERROR, BF_ERROR_FAILED,
                        "userfaultfd handshake (UFFDIO_API) failed: %s",
                        g_strerror(err));
        }
        return -1;
    }
    return fd;
}

bool bf_uffd_register(int uffd, void *addr, uint64_t len, GError **errp)
{
    struct uffdio_register reg = {
        .range = { .start = (uintptr_t)addr, .len = len },
        .mode = BF_UFFD_REGISTER_MODE,
    };
    const uint64_t needed = (1ULL << _UFFDIO_COPY) | (1ULL << _UFFDIO_ZEROPAGE) |
                            (1ULL << _UFFDIO_CONTINUE) | (1ULL << _UFFDIO_WRITEPROTECT) |
                            (1ULL << _UFFDIO_WAKE);

    if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
        g_set_error(errp, BF_ERROR, errno == EBUSY ? BF_ERROR_INVALID : BF_ERROR_FAILED,
                    "cannot register guest RAM with userfaultfd: %s%s", g_strerror(errno),
                    errno == EBUSY ? " (another userfaultfd already tracks it)" : "");
        return false;
    }
    if ((reg.ioctls & needed) != needed) {
        g_set_error(errp, BF_ERROR, BF_ERROR_UNSUPPORTED,
                    "userfaultfd registration lacks ioctls 0x%" G_GINT64_MODIFIER "x",
                    (guint64)(needed & ~reg.ioctls));
        return false;
    }
    return true;
}

static int bf_uffd_ioctl(int uffd, unsigned long request, void *arg)
{
    return ioctl(uffd, request, arg) < 0 ? -errno : 0;
}

int bf_uffd_zeropage(int uffd, uint64_t addr, uint64_t len)
{
    struct uffdio_zeropage z = { .range = { .start = addr, .len = len } };

    return bf_uffd_ioctl(uffd, UFFDIO_ZEROPAGE, &z);
}

int bf_uffd_copy(int uffd, uint64_t addr, const void *src, uint64_t len, bool wp)
{
    struct uffdio_copy c = {
        .dst = addr, .src = (uintptr_t)src, .len = len,
        .mode = wp ? UFFDIO_COPY_MODE_WP : 0,
    };

    return bf_uffd_ioctl(uffd, UFFDIO_COPY, &c);
}

int bf_uffd_continue(int uffd, uint64_t addr, uint64_t len, bool wp)
{
    struct uffdio_continue c = {
        .range = { .start = addr, .len = len },
        .mode = wp ? UFFDIO_CONTINUE_MODE_WP : 0,
    };

    return bf_uffd_ioctl(uffd, UFFDIO_CONTINUE, &c);
}

bool bf_uffd_continue_wp_supported(int uffd, uint64_t addr)
{
    struct uffdio_continue c = {
        .range = { .start = addr, .len = 4096 },
        .mode = UFFDIO_CONTINUE_MODE_WP | UFFDIO_CONTINUE_MODE_DONTWAKE,
    };

    /* Linux < 6.3 refuses the mode before it looks at the page (absent here: EFAULT). */
    return bf_uffd_ioctl(uffd, UFFDIO_CONTINUE, &c) != -EINVAL;
}

int bf_uffd_writeprotect(int uffd, uint64_t addr, uint64_t len, bool wp)
{
    struct uffdio_writeprotect w = {
        .range = { .start = addr, .len = len },
        .mode = wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
    };

    return bf_uffd_ioctl(uffd, UFFDIO_WRITEPROTECT, &w);
}

int bf_uffd_wake(int uffd, uint64_t addr, uint64_t len)
{
    struct uffdio_range r = { .start = addr, .len = len };

    return bf_uffd_ioctl(uffd, UFFDIO_WAKE, &r);
}
