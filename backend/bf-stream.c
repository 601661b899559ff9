/*
 * bf-stream: whole-message I/O over plain TCP (bf-socket.c) or TLS (GnuTLS records).
 *
 * Under TLS the socket blocks on send and GnuTLS reads it with MSG_DONTWAIT (bf-tls.c), so a
 * receive polls for the deadline as a plain one does.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-stream.h"
#include "bf-error.h"
#include "bf-socket.h"

static gboolean bf_stream_tls_fail(BfStream *stream, GError **errp, const char *what,
                                   ssize_t err)
{
    if (err == GNUTLS_E_FATAL_ALERT_RECEIVED) {
        /* The other side ended TLS on purpose (e.g. it refused our certificate). */
        g_set_error(errp, BF_ERROR, BF_ERROR_POOL, "the other side ended TLS: %s",
                    gnutls_alert_get_name(gnutls_alert_get(stream->tls)));
    } else {
        g_set_error(errp, BF_ERROR, BF_ERROR_UNREACHABLE, "%s (TLS): %s", what,
                    gnutls_strerror(err));
    }
    return FALSE;
}

gboolean bf_stream_send_iov(BfStream *stream, struct iovec *iov, int iovcnt, GError **errp)
{
    ssize_t ret = 0;

    if (!stream->tls) {
        return bf_socket_send_iov(stream->fd, iov, iovcnt, errp);
    }
    /* One run of records for the whole message, not one per piece. */
    gnutls_record_cork(stream->tls);
    for (int i = 0; i < iovcnt; i++) {
        for (size_t done = 0; done < iov[i].iov_len; done += ret) {
            ret = gnutls_record_send(stream->tls, (char *)iov[i].iov_base + done,
                                     iov[i].iov_len - done);
            if (ret < 0) {
                gnutls_record_uncork(stream->tls, 0);
                break;
            }
        }
        if (ret < 0) {
            break;
        }
    }
    if (ret >= 0) {
        do {
            ret = gnutls_record_uncork(stream->tls, GNUTLS_RECORD_WAIT);
        } while (ret == GNUTLS_E_AGAIN || ret == GNUTLS_E_INTERRUPTED);
    }
    if (ret < 0) {
        uint8_t byte;

        /* The other side may have said why it closed: an alert waiting to be read. */
        if (gnutls_record_recv(stream->tls, &byte, 1) == GNUTLS_E_FATAL_ALERT_RECEIVED) {
            ret = GNUTLS_E_FATAL_ALERT_RECEIVED;
        }
        return bf_stream_tls_fail(stream, errp, "cannot send", ret);
    }
    return TRUE;
}


gboolean bf_stream_send(BfStream *stream, const void *buf, size_t len, GError **errp)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

    return bf_stream_send_iov(stream, &iov, 1, errp);
}

/* BfReadFunc of a TLS stream: the next record's bytes, into @iov's first buffer. */
static ssize_t bf_stream_tls_read_some(void *opaque, struct iovec *iov, int iovcnt,
                                       GError **errp)
{
    BfStream *stream = opaque;

    for (;;) {
        ssize_t n = gnutls_record_recv(stream->tls, iov->iov_base, iov->iov_len);

        if (n > 0) {
            return n;
        }
        if (n == 0) {
            g_set_error(errp, BF_ERROR, BF_ERROR_UNREACHABLE, "connection closed by peer");
            return -1;
        }
        if (n == GNUTLS_E_AGAIN) {
            return 0;
        }
        if (n != GNUTLS_E_INTERRUPTED) {
            bf_stream_tls_fail(stream, errp, "cannot receive", n);
            return -1;
        }
    }
}

gboolean bf_stream_recv_iov(BfStream *stream, struct iovec *iov, int iovcnt, gint64 deadline,
                            int spin_us, GError **errp)
{
    if (!stream->tls) {
        return bf_socket_recv_iov(stream->fd, iov, iovcnt, deadline, spin_us, errp);
    }
    return bf_socket_recv_with(stream->fd, bf_stream_tls_read_some, stream, iov, iovcnt,
                               deadline, spin_us, errp);
}

gboolean bf_stream_recv(BfStream *stream, void *buf, size_t len, gint64 deadline,
                        int spin_us, GError **errp)
{
    struct iovec iov = { .iov_base = buf, .iov_len = len };

    return bf_stream_recv_iov(stream, &iov, 1, deadline, spin_us, errp);
}
