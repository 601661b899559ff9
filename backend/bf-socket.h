/*
 * bf-socket: stream socket helpers shared by the TCP channel and the memory node: connecting
 * with a timeout, sending a whole iovec, and receiving exactly so many bytes before a
 * deadline (spinning briefly before sleeping, which saves a wake-up on a fast reply).
 * Failures are BF_ERROR_UNREACHABLE errors that say what happened.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_SOCKET_H
#define BF_SOCKET_H

#include <glib.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* Waits for @events on @fd until @deadline; FALSE with @errp set on timeout or error. */
gboolean bf_socket_wait(int fd, short events, gint64 deadline, GError **errp);

/*
 * Reads what has come into @iov without waiting: the bytes read (> 0), 0 when nothing has
 * come yet, or -1 with @errp set (the peer closed, or an error).
 */
typedef ssize_t (*BfReadFunc)(void *opaque, struct iovec *iov, int iovcnt, GError **errp);

/*
 * Fills all of @iov through @read_some by @deadline, waiting for input on @fd whenever
 * nothing has come, as bf_socket_recv_iov() does (it reads @fd itself).
 */
gboolean bf_socket_recv_with(int fd, BfReadFunc read_some, void *opaque, struct iovec *iov,
                             int iovcnt, gint64 deadline, int spin_us, GError **errp);

/* Drops @n bytes from the front of @iov, and the elements left empty. */
void bf_iov_advance(struct iovec **iov, int *iovcnt, size_t n);

/* Connects a TCP socket (TCP_NODELAY) to @host:@port within @timeout_ms. */
int bf_socket_connect(const char *host, uint16_t port, int timeout_ms, GError **errp);

/* Sends all of @iov (which it consumes). */
gboolean bf_socket_send_iov(int fd, struct iovec *iov, int iovcnt, GError **errp);
gboolean bf_socket_send(int fd, const void *buf, size_t len, GError **errp);

/*
 * Fills all of @iov (which it consumes), by @deadline (g_get_monotonic_time() microseconds;
 * -1: none), polling for up to @spin_us before each sleep.
 */
gboolean bf_socket_recv_iov(int fd, struct iovec *iov, int iovcnt, gint64 deadline,
                            int spin_us, GError **errp);
gboolean bf_socket_recv(int fd, void *buf, size_t len, gint64 deadline, int spin_us,
                        GError **errp);

#endif
