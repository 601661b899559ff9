/*
 * blowfish-memnode: the memory node daemon. Holds the pages that Blowfish backends evict,
 * for any number of VMs at once (a session each), in memory that grows with the pages stored
 * up to --capacity. Serves each TCP client connection on its own thread (bf-node.c), and
 * RDMA clients from one thread (bf-node-rdma.c).
 *
 *   blowfish-memnode --listen tcp:HOST:PORT|rdma:HOST:PORT [--listen ...] --capacity SIZE
 *                    [--store FILE] [--keys DIR|FILE [--quota [NAME=]SIZE ...]]
 *                    [--tls-dir DIR [--tls-any-client] [--tls-priority STRING]]
 *                    [--max-unauthenticated N] [--verbose]
 *
 * With --store, pages live in FILE (put it on tmpfs, e.g. /dev/shm): restarted on the same
 * file, the node still holds every page it acknowledged before it stopped or was killed.
 *
 * With --keys, a client must prove it holds one of the keys (bf-auth.h, bf-keyring.h) before
 * anything else, and each key's sessions are its own, over TCP and RDMA. --quota caps the
 * memory of one key's sessions together (NAME=SIZE), or of every key's (SIZE), within the
 * --capacity of all; --max-unauthenticated caps the connections proving a key at once.
 *
 * With --tls-dir, TCP clients speak TLS (bf-tls.h): the node's certificate is DIR/server-cert.pem
 * (and server-key.pem), and clients need a certificate signed by DIR/ca-cert.pem unless
 * --tls-any-client.
 *
 * RDMA clients' pages live in extents lent to them (registered memory); --store does not
 * apply to them, and they count against the same --capacity.
 *
 * With port 0 the system picks one; the daemon prints "listening on tcp:HOST:PORT" (or
 * rdma:) on stdout for each address once it accepts connections. SIGINT and SIGTERM stop it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-endpoint.h"
#include "bf-keyring.h"
#include "bf-node.h"
#include "bf-node-rdma.h"
#include "bf-store.h"

#include <gio/gio.h>
#include <glib-unix.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Connections proving a key at once, unless --max-unauthenticated says otherwise. */
#define DEFAULT_MAX_UNAUTHENTICATED 64

typedef struct {
    BfStore *store;
    BfKeyring *keys;            /* --keys, or NULL */
    BfTlsCreds *tls;            /* --tls-dir, or NULL */
    BfNode *node;
    GMainLoop *loop;
    GSocketService *service;    /* TCP, if asked for */
    GPtrArray *rdma;            /* BfNodeRdma */
    guint max_unauthenticated;
} Memnode;

/* "4G", "512M", "1048576": bytes, with binary K/M/G/T suffixes. */
static gboolean parse_size(const char *text, guint64 *bytes)
{
    char *end;
    guint64 value, unit = 1;

    if (!g_ascii_isdigit(text[0])) {
        return FALSE;
    }
    value = g_ascii_strtoull(text, &end, 10);
    switch (g_ascii_toupper(*end)) {
    case 'T':
        unit <<= 10;
        /* fall through */
    case 'G':
        unit <<= 10;
        /* fall through */
    case 'M':
        unit <<= 10;
        /* fall through */
    case 'K':
        unit <<= 10;
        end++;
        break;
    case '\0':
        break;
    default:
        return FALSE;
    }
    if (*end || value > G_MAXUINT64 / unit) {
        return FALSE;
    }
    *bytes = value * unit;
    return TRUE;
}

static gboolean on_connection(GThreadedSocketService *service, GSocketConnection *conn,
                              GObject *source, gpointer opaque)
{
    Memnode *node = opaque;
    GSocket *socket = g_socket_connection_get_socket(conn);
    g_autoptr(GSocketAddress) remote = g_socket_connection_get_remote_address(conn, NULL);
    g_autofree char *peer = NULL;
    int one = 1;

    if (G_IS_INET_SOCKET_ADDRESS(remote)) {
        g_autofree char *ip = g_inet_address_to_string(
            g_inet_socket_address_get_address(G_INET_SOCKET_ADDRESS(remote)));

        peer = g_strdup_printf("%s:%u", ip,
                               g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(remote)));
    } else {
        peer = g_strdup("client");
    }
    setsockopt(g_socket_get_fd(socket), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    bf_node_serve(node->node, g_socket_get_fd(socket), peer);
    return TRUE;
}

/* --quota NAME=SIZE (a key's) or SIZE (every key's): applied to @store. */
static gboolean apply_quota(BfStore *store, const BfKeyring *keys, const char *text,
                            GError **errp)
{
    const char *eq = strchr(text, '=');
    g_autofree char *name = eq ? g_strndup(text, eq - text) : NULL;
    guint64 bytes;

    if (!parse_size(eq ? eq + 1 : text, &bytes) || bytes < BF_PROTO_PAGE_SIZE) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "invalid size in '%s': "
                    "[NAME=]SIZE, a size such as 512M", text);
        return FALSE;
    }
    if (name && !bf_keyring_lookup(keys, name)) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "'%s': --keys has no "
                    "key '%s'", text, name);
        return FALSE;
    }
    bf_store_set_quota(store, name, bytes);
    return TRUE;
}

static gboolean on_signal(gpointer opaque)
{
    g_main_loop_quit(((Memnode *)opaque)->loop);
    return G_SOURCE_REMOVE;
}

/* The address to listen on: numeric, or resolved (first answer). */
static GInetAddress *resolve_listen_host(const char *host, GError **errp)
{
    GInetAddress *addr = g_inet_address_new_from_string(host);
    GList *answers;

    if (addr) {
        return addr;
    }
    answers = g_resolver_lookup_by_name(g_resolver_get_default(), host, NULL, errp);
    if (!answers) {
        return NULL;
    }
    addr = g_object_ref(answers->data);
    g_resolver_free_addresses(answers);
    return addr;
}

static char *format_address(const char *transport, const char *host, uint16_t port)
{
    gboolean v6 = strchr(host, ':') != NULL;

    return g_strdup_printf("%s:%s%s%s:%u", transport, v6 ? "[" : "", host, v6 ? "]" : "",
                           port);
}

/* Starts accepting TCP clients on @endpoint; returns the address bound. */
static char *listen_tcp(Memnode *node, const BfEndpoint *endpoint, GError **errp)
{
    g_autoptr(GInetAddress) host = resolve_listen_host(endpoint->host, errp);
    g_autoptr(GSocketAddress) wanted = NULL;
    g_autoptr(GSocketAddress) bound = NULL;
    g_autofree char *bound_host = NULL;

    if (!host) {
        return NULL;
    }
    wanted = g_inet_socket_address_new(host, endpoint->port);
    if (!node->service) {
        node->service = g_threaded_socket_service_new(-1);
        g_signal_connect(node->service, "run", G_CALLBACK(on_connection), node);
    }
    if (!g_socket_listener_add_address(G_SOCKET_LISTENER(node->service), wanted,
                                       G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL,
                                       &bound, errp)) {
        return NULL;
    }
    bound_host = g_inet_address_to_string(
        g_inet_socket_address_get_address(G_INET_SOCKET_ADDRESS(bound)));
    return format_address("tcp", bound_host,
                          g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(bound)));
}

/* Starts serving RDMA clients on @endpoint; returns the address bound. */
static char *listen_rdma(Memnode *node, const BfEndpoint *endpoint, GError **errp)
{
    BfNodeRdma *rdma = bf_node_rdma_start(node->store, node->keys, node->max_unauthenticated,
                                          endpoint, errp);

    if (!rdma) {
        return NULL;
    }
    g_ptr_array_add(node->rdma, rdma);
    return format_address("rdma", endpoint->host, bf_node_rdma_port(rdma));
}

int main(int argc, char **argv)
{
    g_auto(GStrv) listens = NULL;
    g_auto(GStrv) quotas = NULL;
    g_autofree char *capacity_text = NULL, *store_path = NULL, *keys_path = NULL;
    g_autofree char *tls_dir = NULL, *tls_priority = NULL;
    gint max_unauthenticated = DEFAULT_MAX_UNAUTHENTICATED;
    gboolean verbose = FALSE, tls_any_client = FALSE;
    GOptionEntry entries[] = {
        { "listen", 'l', 0, G_OPTION_ARG_STRING_ARRAY, &listens,
          "Where to accept clients: tcp:HOST:PORT or rdma:HOST:PORT (port 0: any free port); "
          "may be repeated", "ADDRESS" },
        { "capacity", 'c', 0, G_OPTION_ARG_STRING, &capacity_text,
          "Most guest memory to hold, all VMs together (e.g. 16G)", "SIZE" },
        { "store", 's', 0, G_OPTION_ARG_FILENAME, &store_path,
          "Keep TCP clients' pages in FILE (on tmpfs), to survive a restart", "FILE" },
        { "keys", 'k', 0, G_OPTION_ARG_FILENAME, &keys_path,
          "Take only clients that prove they hold one of these keys: a directory of files "
          "NAME holding a base64 key each, or a file of NAME KEY lines",
          "DIR|FILE" },
        { "quota", 'q', 0, G_OPTION_ARG_STRING_ARRAY, &quotas,
          "Most memory the sessions of key NAME may hold together, or without NAME= of "
          "each key without a quota of its own; may be repeated (needs --keys)",
          "[NAME=]SIZE" },
        { "tls-dir", 0, 0, G_OPTION_ARG_FILENAME, &tls_dir,
          "Speak TLS with TCP clients: server-cert.pem, server-key.pem and the clients' CA "
          "ca-cert.pem in DIR (as for QEMU's tls-creds-x509)", "DIR" },
        { "tls-any-client", 0, 0, G_OPTION_ARG_NONE, &tls_any_client,
          "With --tls-dir, take clients without a certificate (use --keys then)", NULL },
        { "tls-priority", 0, 0, G_OPTION_ARG_STRING, &tls_priority,
          "GnuTLS priority string (default: the system's)", "STRING" },
        { "max-unauthenticated", 0, 0, G_OPTION_ARG_INT, &max_unauthenticated,
          "Most connections that may be in their TLS handshake or proving a key at once; "
          "more are turned away (default 64)", "N" },
        { "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose,
          "Log every connection event", NULL },
        { NULL },
    };
    g_autoptr(GOptionContext) context =
        g_option_context_new("- the Blowfish memory node: holds evicted guest pages");
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) endpoints = g_ptr_array_new_with_free_func(
        (GDestroyNotify)bf_endpoint_free);
    g_autoptr(GPtrArray) bound = NULL;
    static Memnode node;    /* static: what connections still use stays reachable */
    guint64 capacity;

    g_option_context_add_main_entries(context, entries, NULL);
    if (!g_option_context_parse(context, &argc, &argv, &err)) {
        g_printerr("blowfish-memnode: %s\n", err->message);
        return 2;
    }
    if (!listens || !capacity_text) {
        g_printerr("blowfish-memnode: --listen and --capacity are required (see --help)\n");
        return 2;
    }
    if (!parse_size(capacity_text, &capacity) || capacity < BF_PROTO_PAGE_SIZE) {
        g_printerr("blowfish-memnode: invalid --capacity '%s': a size such as 512M or 16G\n",
                   capacity_text);
        return 2;
    }
    for (char **l = listens; *l; l++) {
        BfEndpoint *endpoint = bf_endpoint_parse_listen(*l, &err);

        if (!endpoint) {
            g_printerr("blowfish-memnode: --listen: %s\n", err->message);
            return 2;
        }
        if (tls_dir && endpoint->transport == BF_TRANSPORT_RDMA) {
            g_printerr("blowfish-memnode: --tls-dir covers TCP clients only: it cannot be "
                       "used with --listen %s\n", *l);
            return 2;
        }
        g_ptr_array_add(endpoints, endpoint);
    }
    if (keys_path) {
        node.keys = bf_keyring_load(keys_path, &err);
        if (!node.keys) {
            g_printerr("blowfish-memnode: --keys: %s\n", err->message);
            return 2;
        }
    } else if (quotas) {
        g_printerr("blowfish-memnode: --quota is per key: it needs --keys\n");
        return 2;
    }
    if (tls_dir) {
        node.tls = bf_tls_creds_load(tls_dir, TRUE, !tls_any_client, tls_priority, &err);
        if (!node.tls) {
            g_printerr("blowfish-memnode: --tls-dir: %s\n", err->message);
            return 2;
        }
    } else if (tls_any_client || tls_priority) {
        g_printerr("blowfish-memnode: --tls-any-client and --tls-priority need --tls-dir\n");
        return 2;
    }
    if (max_unauthenticated < 1) {
        g_printerr("blowfish-memnode: --max-unauthenticated must be at least 1\n");
        return 2;
    }
    if (verbose) {
        g_setenv("G_MESSAGES_DEBUG", "all", TRUE);
    }

    if (store_path) {
        node.store = bf_store_open(store_path, capacity, &err);
        if (!node.store) {
            g_printerr("blowfish-memnode: --store: %s\n", err->message);
            return 1;
        }
    } else {
        node.store = bf_store_new(capacity);
    }
    for (char **q = quotas; q && *q; q++) {
        if (!apply_quota(node.store, node.keys, *q, &err)) {
            g_printerr("blowfish-memnode: --quota %s\n", err->message);
            return 2;
        }
    }
    node.max_unauthenticated = max_unauthenticated;
    node.node = bf_node_new(node.store, node.keys, node.tls, max_unauthenticated);
    node.rdma = g_ptr_array_new();
    bound = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < endpoints->len; i++) {
        BfEndpoint *endpoint = g_ptr_array_index(endpoints, i);
        char *address = endpoint->transport == BF_TRANSPORT_TCP ?
            listen_tcp(&node, endpoint, &err) : listen_rdma(&node, endpoint, &err);

        if (!address) {
            g_printerr("blowfish-memnode: cannot listen on %s: %s\n", listens[i],
                       err->message);
            return 1;
        }
        g_ptr_array_add(bound, address);
    }
    node.loop = g_main_loop_new(NULL, FALSE);
    g_unix_signal_add(SIGINT, on_signal, &node);
    g_unix_signal_add(SIGTERM, on_signal, &node);
    if (node.service) {
        g_socket_service_start(node.service);
    }
    for (guint i = 0; i < bound->len; i++) {
        printf("blowfish-memnode: listening on %s, capacity %" G_GUINT64_FORMAT " bytes%s%s\n",
               (char *)g_ptr_array_index(bound, i), capacity,
               node.tls ? ", TLS" : "", node.keys ? ", clients need a key" : "");
    }
    fflush(stdout);

    g_main_loop_run(node.loop);

    /* Stop accepting. */
    if (node.service) {
        g_socket_service_stop(node.service);
        g_socket_listener_close(G_SOCKET_LISTENER(node.service));
        g_object_unref(node.service);
    }
    for (guint i = 0; i < node.rdma->len; i++) {
        bf_node_rdma_stop(g_ptr_array_index(node.rdma, i));
    }
    g_ptr_array_free(node.rdma, TRUE);
    g_main_loop_unref(node.loop);
    /*
     * Without TCP connections left, everything is freed (but the node: a connection accepted
     * just now may still reach it, to be turned away), so that leak checkers see what the node
     * holds per connection. Connections still served keep their threads, and what they use,
     * until the process ends: their pages go with it, and so that no library is torn down
     * under them, it ends without exit handlers.
     */
    if (bf_node_close(node.node) > 0) {
        fflush(stdout);
        _exit(0);
    }
    bf_store_free(node.store);
    bf_keyring_free(node.keys);
    bf_tls_creds_free(node.tls);
    return 0;
}
