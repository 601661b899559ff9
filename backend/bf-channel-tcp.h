/*
 * bf-channel-tcp: a channel to a memory node over TCP, in TLS if asked. Pages are sent
 * straight from where the engine points (no copy: in plain TCP) and received straight into
 * their destination.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_CHANNEL_TCP_H
#define BF_CHANNEL_TCP_H

#include "bf-channel.h"

/* How long a receive polls before it sleeps: a fast reply then costs no wake-up. */
#define BF_CHANNEL_TCP_SPIN_US 20

BfChannel *bf_channel_tcp_connect(const BfEndpoint *endpoint, const BfHello *hello,
                                  const BfKey *key, const BfTlsCreds *tls, int timeout_ms,
                                  GError **errp);

#endif
