/*
 * bf-node: the memory node's side of the protocol: serves one client connection against a
 * store until the client leaves or breaks the protocol. Every message is checked before it
 * touches the store; a malformed one gets an ERROR and ends the connection.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_NODE_H
#define BF_NODE_H

#include "bf-keyring.h"
#include "bf-store.h"
#include "bf-tls.h"

typedef struct BfNode BfNode;

/*
 * A node serving @store. With @tls, every connection starts with a TLS handshake (bf-tls.h).
 * With @keys, a client must prove it holds one of them (bf-auth.h) before anything else, and
 * its sessions are the key's own and count against the key's quota (bf_store_set_quota).
 * With either, at most @max_unauthenticated connections may be in the handshake or proving
 * a key at once, and the next ones are turned away at once with BF_PROTO_ERR_BUSY.
 */
BfNode *bf_node_new(BfStore *store, const BfKeyring *keys, const BfTlsCreds *tls,
                    guint max_unauthenticated);
void bf_node_free(BfNode *node);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(BfNode, bf_node_free)

/*
 * Serves @fd (a connected stream socket) until it closes; @peer names it in log messages.
 * Any number of connections may be served at once, each on its own thread.
 */
void bf_node_serve(BfNode *node, int fd, const char *peer);
/*
 * Serves no more connections: bf_node_serve() returns at once from now on. Returns how many
 * it is still serving; while any, @node and what it was made with must stay.
 */
guint bf_node_close(BfNode *node);

#endif
