/*
 * bf-node: the memory node's side of the protocol: serves one client connection against a
 * store until the client leaves or breaks the protocol. Every message is checked before it
 * touches the store; a malformed one gets an ERROR and ends the connection.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_NODE_H
#define BF_NODE_H

#include "bf-store.h"

/* Serves @fd (a connected stream socket) until it closes; @peer names it in log messages. */
void bf_node_serve(BfStore *store, int fd, const char *peer);

#endif
