/*
 * bf-channel-local: a channel to a session of a store in this process (tests, benchmarks).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_CHANNEL_LOCAL_H
#define BF_CHANNEL_LOCAL_H

#include "bf-channel.h"
#include "bf-store.h"

BfChannel *bf_channel_local_new(BfStore *store, const BfHello *hello, GError **errp);

#endif
