/*
 * bf-socket: whole-message I/O on stream sockets.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-socket.h"
#include "bf-error.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

static gboolean bf_socket_fail(GError **errp, const char *what, int err)
{
    g_set_error(errp, BF_ERROR, BF_ERROR_UNREACHABLE, "%s: %s", what, g_strerror(err));
    return FALSE;
}

gboolean bf_socket_wait(int fd, short events, gint64 deadline, GError **errp)
{
    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = events };
        int timeout = -1;
        int ret;

        if (deadline >= 0) {
            gint64 left = deadline - g_get_monotonic_time();

            if (left <= 0) {
                g_set_error(errp, BF_ERROR, BF_ERROR_UNREACHABLE,
                            "the memory node did not answer in time");
                return FALSE;
            }
            timeout = (left + 999) / 1000;
        }
        ret = poll(&pfd, 1, timeout);
        if (ret > 0) {
            return TRUE;
        }
        if (ret < 0 && errno != EINTR) {
            return bf_socket_fail(errp, "poll", errno);
        }
    }
}

int bf_socket_connect(const char *host, uint16_t port, int timeout_ms, GError **errp)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
    struct addrinfo *res, *ai;
    char service[8];
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    int err, last_err = ECONNREFUSED;

    g_snprintf(service, sizeof(service), "%u", port);
    err = getaddrinfo(host, service, &hints, &res);
    if (err) {
        g_set_error(errp, BF_ERROR, BF_ERROR_UNREACHABLE, "cannot resolve '%s': %s", host,
                    gai_strerror(err));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                        ai->ai_protocol);
        int one = 1, so_error = 0;
        socklen_t len = sizeof(so_error);

        if (fd < 0) {
            last_err = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
            last_err = errno;
            close(fd);
            continue;
        }
        if (!bf_socket_wait(fd, POLLOUT, deadline, NULL) ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) < 0 || so_error) {
            last_err = so_error ? so_error : ETIMEDOUT;
            close(fd);
            continue;
        }
        /* Blocking sends; receives use MSG_DONTWAIT and poll. */
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        freeaddrinfo(res);
        return fd;
    }
    freeaddrinfo(res);
    g_set_error(errp, BF_ERROR, BF_ERROR_UNREACHABLE, "cannot connect to %s port %u: %s",
                host, port, g_strerror(last_err));
    return -1;
}

void bf_iov_advance(struct iovec **iov, int *iovcnt, size_t n)
{
    while (n > 0) {
        size_t step = MIN(n, (*iov)->iov_len);

        (*iov)->iov_base = (char *)(*iov)->iov_base + step;
        (*iov)->iov_len -= step;
        n -= step;
        if ((*iov)->iov_len == 0) {
            (*iov)++;
            (*iovcnt)--;
        }
    }
    while (*iovcnt > 0 && (*iov)->iov_len == 0) {
        (*iov)++;
        (*iovcnt)--;
    }
}

gboolean bf_socket_send_iov(int fd, struct iovec *iov, int iovcnt, GError **errp)
{
    bf_iov_advance(&iov, &iovcnt, 0);
    while (iovcnt > 0) {
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = MIN(iovcnt, IOV_MAX) };
        ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                /* A non-blocking socket whose buffer is full. */
                if (!bf_socket_wait(fd, POLLOUT, -1, errp)) {
                    return FALSE;
                }
                continue;
            }
            return bf_socket_fail(errp, "cannot send", errno);
        }
        bf_iov_advance(&iov, &iovcnt, n);
    }
    return TRUE;
}

gboolean bf_socket_send(int fd, const void *buf, size_t len, GError **errp)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

    return bf_socket_send_iov(fd, &iov, 1, errp);
}

/*
 * Nothing to read yet: while spinning (for @spin_us from the first call, *@spin_end 0
 * then), yields the CPU and returns; then waits for input on @fd until @deadline. The
 * yield lets a thread we woke onto this CPU run at once: often the one that will answer
 * (the scheduler puts a woken thread beside its waker).
 */
static gboolean bf_socket_await_input(int fd, gint64 deadline, int spin_us,
                                      gint64 *spin_end, GError **errp)
{
    if (spin_us > 0) {
        gint64 now = g_get_monotonic_time();

        if (!*spin_end) {
            *spin_end = now + spin_us;
        }
        if (now < *spin_end) {
            sched_yield();
            return TRUE;
        }
    }
    return bf_socket_wait(fd, POLLIN, deadline, errp);
}

gboolean bf_socket_recv_with(int fd, BfReadFunc read_some, void *opaque, struct iovec *iov,
                             int iovcnt, gint64 deadline, int spin_us, GError **errp)
{
    gint64 spin_end = 0;

    bf_iov_advance(&iov, &iovcnt, 0);
    while (iovcnt > 0) {
        ssize_t n = read_some(opaque, iov, iovcnt, errp);

        if (n < 0) {
            return FALSE;
        }
        if (n > 0) {
            bf_iov_advance(&iov, &iovcnt, n);
            spin_end = 0;
        } else if (!bf_socket_await_input(fd, deadline, spin_us, &spin_end, errp)) {
            return FALSE;
        }
    }
    return TRUE;
}

/* BfReadFunc of a plain socket (@opaque: the fd). */
static ssize_t bf_socket_read_some(void *opaque, struct iovec *iov, int iovcnt,
                                   GError **errp)
{
    struct msghdr msg = { .msg_iov = iov, .msg_iovlen = MIN(iovcnt, IOV_MAX) };

    for (;;) {
        ssize_t n = recvmsg(GPOINTER_TO_INT(opaque), &msg, MSG_DONTWAIT);

        if (n > 0) {
            return n;
        }
        if (n == 0) {
            g_set_error(errp, BF_ERROR, BF_ERROR_UNREACHABLE, "connection closed by peer");
            return -1;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 0;
        }
        if (errno != EINTR) {
            bf_socket_fail(errp, "cannot receive", errno);
            return -1;
        }
    }
}

gboolean bf_socket_recv_iov(int fd, struct iovec *iov, int iovcnt, gint64 deadline,
                            int spin_us, GError **errp)
{
    return bf_socket_recv_with(fd, bf_socket_read_some, GINT_TO_POINTER(fd), iov, iovcnt,
                               deadline, spin_us, errp);
}

gboolean bf_socket_recv(int fd, void *buf, size_t len, gint64 deadline, int spin_us,
                        GError **errp)
{
    struct iovec iov = { .iov_base = buf, .iov_len = len };

    return bf_socket_recv_iov(fd, &iov, 1, deadline, spin_us, errp);
}
