/*
 * bf-tls: X.509 credentials and the TLS handshake (GnuTLS), for bf-stream.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-tls.h"
#include "bf-error.h"
#include "bf-socket.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

struct BfTlsCreds {
    gnutls_certificate_credentials_t x509;
    gnutls_priority_t priority;
    gboolean server;
    gboolean verify_peer;
};

static gboolean bf_tls_fail(GError **errp, int code, const char *what, int err)
{
    g_set_error(errp, BF_ERROR, code, "%s: %s", what, gnutls_strerror(err));
    return FALSE;
}

void bf_tls_creds_free(BfTlsCreds *creds)
{
    if (creds) {
        if (creds->x509) {
            gnutls_certificate_free_credentials(creds->x509);
        }
        if (creds->priority) {
            gnutls_priority_deinit(creds->priority);
        }
        g_free(creds);
    }
}

BfTlsCreds *bf_tls_creds_load(const char *dir, gboolean server, gboolean verify_peer,
                              const char *priority, GError **errp)
{
    const char *side = server ? "server" : "client";
    g_autofree char *ca = g_build_filename(dir, "ca-cert.pem", NULL);
    g_autofree char *crl = g_build_filename(dir, "ca-crl.pem", NULL);
    g_autofree char *cert_name = g_strdup_printf("%s-cert.pem", side);
    g_autofree char *key_name = g_strdup_printf("%s-key.pem", side);
    g_autofree char *cert = g_build_filename(dir, cert_name, NULL);
    g_autofree char *key = g_build_filename(dir, key_name, NULL);
    g_autoptr(BfTlsCreds) creds = g_new0(BfTlsCreds, 1);
    const char *bad = NULL;
    int ret;

    creds->server = server;
    creds->verify_peer = verify_peer;
    ret = gnutls_certificate_allocate_credentials(&creds->x509);
    if (ret < 0) {
        bf_tls_fail(errp, BF_ERROR_INVALID, "TLS credentials", ret);
        return NULL;
    }
    if (verify_peer || g_file_test(ca, G_FILE_TEST_EXISTS)) {
        ret = gnutls_certificate_set_x509_trust_file(creds->x509, ca, GNUTLS_X509_FMT_PEM);
        if (ret <= 0) {
            g_set_error(errp, BF_ERROR, BF_ERROR_INVALID, "cannot load the CA certificate "
                        "%s: %s", ca, ret < 0 ? gnutls_strerror(ret) : "it holds none");
            return NULL;
        }
    }
    /* Revoked certificates, where QEMU would look for them. */
    if (g_file_test(crl, G_FILE_TEST_EXISTS)) {
        ret = gnutls_certificate_set_x509_crl_file(creds->x509, crl, GNUTLS_X509_FMT_PEM);
        if (ret < 0) {
            g_set_error(errp, BF_ERROR, BF_ERROR_INVALID, "cannot load the revocation list "
                        "%s: %s", crl, gnutls_strerror(ret));
            return NULL;
        }
    }
    /* A node needs its certificate; a client, only where the node asks for one. */
    if (server || g_file_test(cert, G_FILE_TEST_EXISTS)) {
        ret = gnutls_certificate_set_x509_key_file(creds->x509, cert, key, GNUTLS_X509_FMT_PEM);
        if (ret < 0) {
            g_set_error(errp, BF_ERROR, BF_ERROR_INVALID, "cannot load the certificate %s "
                        "and its key %s: %s", cert, key, gnutls_strerror(ret));
            return NULL;
        }
    }
    ret = priority ? gnutls_priority_init(&creds->priority, priority, &bad) :
                     gnutls_priority_init(&creds->priority, NULL, NULL);
    if (ret < 0) {
        g_set_error(errp, BF_ERROR, BF_ERROR_INVALID, "invalid TLS priority '%s'%s%s: %s",
                    priority ? priority : "", bad ? " at " : "", bad ? bad : "",
                    gnutls_strerror(ret));
        return NULL;
    }
    return g_steal_pointer(&creds);
}

/* Reads never block (the deadline is polled for); writes do. */
static ssize_t bf_tls_pull(gnutls_transport_ptr_t fd, void *buf, size_t len)
{
    return recv(GPOINTER_TO_INT(fd), buf, len, MSG_DONTWAIT);
}

static ssize_t bf_tls_push(gnutls_transport_ptr_t fd, const giovec_t *iov, int iovcnt)
{
    struct msghdr msg = { .msg_iov = (struct iovec *)iov, .msg_iovlen = iovcnt };

    return sendmsg(GPOINTER_TO_INT(fd), &msg, MSG_NOSIGNAL);
}

/* Why the other side's certificate was refused, for the error message. */
static char *bf_tls_verify_status(gnutls_session_t session)
{
    unsigned status = gnutls_session_get_verify_cert_status(session);
    gnutls_datum_t text = { 0 };
    char *message;

    if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0) < 0) {
        return g_strdup("it did not verify");
    }
    message = g_strstrip(g_strndup((char *)text.data, text.size));
    gnutls_free(text.data);
    return message;
}

gboolean bf_tls_start(BfStream *stream, const BfTlsCreds *creds, const char *hostname,
                      gint64 deadline, GError **errp)
{
    gnutls_session_t session;
    int ret;

    ret = gnutls_init(&session, creds->server ? GNUTLS_SERVER : GNUTLS_CLIENT);
    if (ret < 0) {
        return bf_tls_fail(errp, BF_ERROR_UNREACHABLE, "TLS", ret);
    }
    gnutls_priority_set(session, creds->priority);
    gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, creds->x509);
    if (creds->server) {
        gnutls_certificate_server_set_request(session, creds->verify_peer ?
                                              GNUTLS_CERT_REQUIRE : GNUTLS_CERT_IGNORE);
        if (creds->verify_peer) {
            gnutls_session_set_verify_cert(session, NULL, 0);
        }
    } else {
        if (hostname && !g_hostname_is_ip_address(hostname)) {
            gnutls_server_name_set(session, GNUTLS_NAME_DNS, hostname, strlen(hostname));
        }
        if (creds->verify_peer) {
            gnutls_session_set_verify_cert(session, hostname, 0);
        }
    }
    gnutls_transport_set_ptr(session, GINT_TO_POINTER(stream->fd));
    gnutls_transport_set_pull_function(session, bf_tls_pull);
    gnutls_transport_set_vec_push_function(session, bf_tls_push);
    fcntl(stream->fd, F_SETFL, fcntl(stream->fd, F_GETFL) & ~O_NONBLOCK);

    while ((ret = gnutls_handshake(session)) < 0) {
        if (ret == GNUTLS_E_AGAIN || ret == GNUTLS_E_INTERRUPTED) {
            if (!bf_socket_wait(stream->fd, gnutls_record_get_direction(session) ?
                                POLLOUT : POLLIN, deadline, errp)) {
                break;
            }
            continue;
        }
        if (ret == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
            g_autofree char *why = bf_tls_verify_status(session);

            g_set_error(errp, BF_ERROR, BF_ERROR_POOL, "the %s's certificate is refused: %s",
                        creds->server ? "client" : "memory node", why);
        } else if (ret == GNUTLS_E_FATAL_ALERT_RECEIVED) {
            g_set_error(errp, BF_ERROR, BF_ERROR_POOL, "TLS handshake: the other side ended "
                        "it: %s", gnutls_alert_get_name(gnutls_alert_get(session)));
        } else if (creds->server) {
            bf_tls_fail(errp, BF_ERROR_POOL, "TLS handshake", ret);
        } else if (ret == GNUTLS_E_PREMATURE_TERMINATION || ret == GNUTLS_E_PULL_ERROR ||
                   ret == GNUTLS_E_PUSH_ERROR) {
            bf_tls_fail(errp, BF_ERROR_UNREACHABLE, "TLS handshake", ret);
        } else {
            /* A node without TLS answers a ClientHello with a plain ERROR. */
            g_set_error(errp, BF_ERROR, BF_ERROR_POOL, "TLS handshake: %s (does the memory "
                        "node use TLS, --tls-dir?)", gnutls_strerror(ret));
        }
        /* Tell the other side why, where that is an alert (best effort). */
        gnutls_alert_send_appropriate(session, ret);
        break;
    }
    if (ret < 0) {
        gnutls_deinit(session);
        return FALSE;
    }
    stream->tls = session;
    return TRUE;
}

void bf_tls_end(BfStream *stream)
{
    if (stream->tls) {
        gnutls_deinit(stream->tls);
        stream->tls = NULL;
    }
}
