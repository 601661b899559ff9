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

/*
 * Serves @fd (a connected stream socket) until it closes; @peer names it in log messages.
 * With @keys, the client must prove it holds one of them (bf-auth.h) before anything else,
 * and its sessions are the key's own.
 */
void bf_node_serve(BfStore *store, const BfKeyring *keys, int fd, const char *peer);

#endif
