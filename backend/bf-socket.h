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
#include <sys/uio.h>

/* Waits for @events on @fd until @deadline; FALSE with @errp set on timeout or error. */
gboolean bf_socket_wait(int fd, short events, gint64 deadline, GError **errp);

/*
 * Nothing to read yet: returns at once while spinning (for @spin_us from the first call,
 * *@spin_end 0 then), then waits for input on @fd until @deadline.
 */
gboolean bf_socket_await_input(int fd, gint64 deadline, int spin_us, gint64 *spin_end,
                               GError **errp);

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
