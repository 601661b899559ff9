/*
 * bf-tls: TLS for the TCP transport, with X.509 certificates in a directory laid out as for
 * QEMU's tls-creds-x509 object: ca-cert.pem (the CA that signs the other side's certificate),
 * optionally ca-crl.pem (the certificates it revoked), and client-cert.pem + client-key.pem
 * for a client, server-cert.pem + server-key.pem for the memory node. A client checks the
 * node's certificate against the CA and the node's address; the node requires clients'
 * certificates unless told not to verify them.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_TLS_H
#define BF_TLS_H

#include "bf-stream.h"

typedef struct BfTlsCreds BfTlsCreds;

/*
 * Loads the credentials of a client (@server FALSE) or a node from @dir. @verify_peer checks
 * the other side's certificate (a client that does not check talks to anyone who answers);
 * @priority is a GnuTLS priority string, or NULL for the system's default.
 */
BfTlsCreds *bf_tls_creds_load(const char *dir, gboolean server, gboolean verify_peer,
                              const char *priority, GError **errp);
void bf_tls_creds_free(BfTlsCreds *creds);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(BfTlsCreds, bf_tls_creds_free)

/*
 * Runs the TLS handshake on @stream (connected, plain) by @deadline; from then on its I/O is
 * TLS. A client checks the node's certificate against @hostname. A certificate that does not
 * verify is a BF_ERROR_POOL error saying why; broken connections are BF_ERROR_UNREACHABLE.
 */
gboolean bf_tls_start(BfStream *stream, const BfTlsCreds *creds, const char *hostname,
                      gint64 deadline, GError **errp);
/* Ends TLS on @stream (without waiting for the peer), leaving its socket open. */
void bf_tls_end(BfStream *stream);

#endif
