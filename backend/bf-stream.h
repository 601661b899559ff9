/*
 * bf-stream: a connection's byte stream, plain TCP or TLS over it (bf-tls.h): the TCP channel
 * and the memory node send and receive whole messages through it without knowing which.
 * Failures are BF_ERROR_UNREACHABLE errors, as in bf-socket.h.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_STREAM_H
#define BF_STREAM_H

#include <glib.h>
#include <gnutls/gnutls.h>
#include <sys/uio.h>

typedef struct BfStream {
    int fd;                     /* a connected stream socket */
    gnutls_session_t tls;       /* after bf_tls_start(); NULL: plain */
} BfStream;

/* Sends all of @iov (which it consumes). */
gboolean bf_stream_send_iov(BfStream *stream, struct iovec *iov, int iovcnt, GError **errp);
gboolean bf_stream_send(BfStream *stream, const void *buf, size_t len, GError **errp);

/* Fills all of @iov by @deadline (-1: none), as bf_socket_recv_iov() does. */
gboolean bf_stream_recv_iov(BfStream *stream, struct iovec *iov, int iovcnt, gint64 deadline,
                            int spin_us, GError **errp);
gboolean bf_stream_recv(BfStream *stream, void *buf, size_t len, gint64 deadline,
                        int spin_us, GError **errp);

#endif
