/*
 * bf-endpoint: the address of a memory pool, "tcp:HOST:PORT" or "rdma:HOST:PORT" (HOST may be
 * a bracketed IPv6 address). The backend's pool= property and the memory node's --listen
 * option both take this syntax.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_ENDPOINT_H
#define BF_ENDPOINT_H

#include <glib.h>
#include <stdint.h>

typedef enum {
    BF_TRANSPORT_TCP,
    BF_TRANSPORT_RDMA,
} BfTransportKind;

typedef struct BfEndpoint {
    BfTransportKind transport;
    char *host;       /* without IPv6 brackets */
    uint16_t port;
} BfEndpoint;

BfEndpoint *bf_endpoint_parse(const char *text, GError **errp);
/* The same, for an address to listen on: port 0 picks any free port. */
BfEndpoint *bf_endpoint_parse_listen(const char *text, GError **errp);
/* The canonical text form, as parsed. */
char *bf_endpoint_to_string(const BfEndpoint *ep);
void bf_endpoint_free(BfEndpoint *ep);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(BfEndpoint, bf_endpoint_free)

#endif
