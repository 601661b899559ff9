/*
 * bf-endpoint: parsing and printing "tcp:HOST:PORT" / "rdma:HOST:PORT".
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-endpoint.h"
#include "bf-error.h"

#include <string.h>

static const char *const bf_transport_names[] = {
    [BF_TRANSPORT_TCP] = "tcp",
    [BF_TRANSPORT_RDMA] = "rdma",
};

static void bf_endpoint_fail(const char *text, const char *why, GError **errp)
{
    g_set_error(errp, BF_ERROR, BF_ERROR_INVALID,
                "invalid pool address '%s': %s (expected tcp:HOST:PORT or rdma:HOST:PORT)",
                text, why);
}

static BfEndpoint *bf_endpoint_parse_port_from(const char *text, guint64 min_port,
                                               GError **errp)
{
    g_autoptr(BfEndpoint) ep = g_new0(BfEndpoint, 1);
    const char *rest = NULL, *port;
    guint64 port_number;
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(bf_transport_names); i++) {
        size_t n = strlen(bf_transport_names[i]);

        if (!strncmp(text, bf_transport_names[i], n) && text[n] == ':') {
            ep->transport = i;
            rest = text + n + 1;
        }
    }
    if (!rest) {
        bf_endpoint_fail(text, "unknown transport", errp);
        return NULL;
    }

    if (rest[0] == '[') {
        const char *close = strchr(rest, ']');

        if (!close) {
            bf_endpoint_fail(text, "unterminated IPv6 address", errp);
            return NULL;
        }
        if (close[1] != ':') {
            bf_endpoint_fail(text, "no port", errp);
            return NULL;
        }
        ep->host = g_strndup(rest + 1, close - rest - 1);
        port = close + 2;
    } else {
        const char *colon = strrchr(rest, ':');

        if (!colon) {
            bf_endpoint_fail(text, "no port", errp);
            return NULL;
        }
        ep->host = g_strndup(rest, colon - rest);
        if (strchr(ep->host, ':')) {
            bf_endpoint_fail(text, "IPv6 addresses must be in brackets", errp);
            return NULL;
        }
        port = colon + 1;
    }
    if (!ep->host[0] || strpbrk(ep->host, " \t/[]")) {
        bf_endpoint_fail(text, "bad host", errp);
        return NULL;
    }
    if (!g_ascii_string_to_unsigned(port, 10, min_port, 65535, &port_number, NULL)) {
        bf_endpoint_fail(text, min_port ? "port must be a number from 1 to 65535" :
                         "port must be a number from 0 to 65535", errp);
        return NULL;
    }
    ep->port = port_number;
    return g_steal_pointer(&ep);
}

BfEndpoint *bf_endpoint_parse(const char *text, GError **errp)
{
    return bf_endpoint_parse_port_from(text, 1, errp);
}

BfEndpoint *bf_endpoint_parse_listen(const char *text, GError **errp)
{
    return bf_endpoint_parse_port_from(text, 0, errp);
}

char *bf_endpoint_to_string(const BfEndpoint *ep)
{
    gboolean v6 = strchr(ep->host, ':') != NULL;

    return g_strdup_printf("%s:%s%s%s:%u", bf_transport_names[ep->transport],
                           v6 ? "[" : "", ep->host, v6 ? "]" : "", ep->port);
}

void bf_endpoint_free(BfEndpoint *ep)
{
    if (ep) {
        g_free(ep->host);
        g_free(ep);
    }
}
