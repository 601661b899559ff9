/*
 * bf-channel: the transport interface between the engine and a memory pool. A channel is one
 * connection to one session on a memory node: connect (HELLO), submit page requests (write,
 * read, free), and collect their completions in submission order. Several requests may be in
 * flight on a channel; a channel is used by one thread at a time.
 *
 * Implementations: TCP (bf-channel-tcp.c) and a store in this process
 * (memnode/bf-channel-local.c, for tests and as a benchmark floor); RDMA plugs in beside them.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_CHANNEL_H
#define BF_CHANNEL_H

#include "bf-auth.h"
#include "bf-endpoint.h"
#include "bf-proto.h"
#include "bf-tls.h"

typedef struct BfRequest {
    BfMsgType type;                     /* BF_MSG_WRITE, BF_MSG_READ or BF_MSG_FREE */
    uint32_t count;                     /* 1 .. BF_PROTO_MAX_PAGES */
    uint64_t pages[BF_PROTO_MAX_PAGES];
    void *data[BF_PROTO_MAX_PAGES];     /* WRITE: where each page is; READ: where it goes */
    void *opaque;                       /* the submitter's */
    uint32_t tag;                       /* set by the channel */

    /* Set when the request completes: 0, or why the node refused it (nothing was done). */
    BfProtoError pool_error;
    char pool_message[BF_PROTO_MAX_MESSAGE + 1];
} BfRequest;

typedef struct BfChannel BfChannel;

typedef struct BfChannelOps {
    gboolean (*submit)(BfChannel *channel, BfRequest *req, GError **errp);
    BfRequest *(*complete)(BfChannel *channel, int timeout_ms, GError **errp);
    gboolean (*stats)(BfChannel *channel, int timeout_ms, BfPoolStats *stats, GError **errp);
    void (*close)(BfChannel *channel, gboolean drop_session);
} BfChannelOps;

struct BfChannel {
    const BfChannelOps *ops;
    uint64_t stored_at_hello;           /* pages the node held for the session at connect */
    GQueue inflight;                    /* submitted, not completed: BfRequest */
};

/*
 * Connects to the node at @endpoint, over TLS with @tls (if not NULL: bf-tls.h), proves it
 * holds @key (if not NULL: bf-auth.h), and opens the session @hello names. Fails with
 * BF_ERROR_UNREACHABLE (no node there, or it did not answer within @timeout_ms),
 * BF_ERROR_PROTOCOL, or BF_ERROR_POOL (the node refused the key, the certificate or the
 * session, or did not prove it holds @key, or its certificate did not verify).
 */
BfChannel *bf_channel_connect(const BfEndpoint *endpoint, const BfHello *hello,
                              const BfKey *key, const BfTlsCreds *tls, int timeout_ms,
                              GError **errp);

/* Sends @req. On error the channel is broken: close it. */
gboolean bf_channel_submit(BfChannel *channel, BfRequest *req, GError **errp);

/*
 * The oldest in-flight request, completed (its pool_error says whether the node did it),
 * waiting up to @timeout_ms. NULL with @errp set when the channel broke or timed out.
 */
BfRequest *bf_channel_complete(BfChannel *channel, int timeout_ms, GError **errp);

/* Submits and completes @req; a refusal by the node is a BF_ERROR_POOL error. */
gboolean bf_channel_call(BfChannel *channel, BfRequest *req, int timeout_ms, GError **errp);

guint bf_channel_inflight(BfChannel *channel);

/* The monotonic time (us) @timeout_ms from now; -1 (no deadline) for a negative timeout. */
static inline gint64 bf_channel_deadline(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : g_get_monotonic_time() + (gint64)timeout_ms * 1000;
}

/* What the node holds, for this session and in all. Only with nothing in flight. */
gboolean bf_channel_stats(BfChannel *channel, int timeout_ms, BfPoolStats *stats,
                          GError **errp);

/* Closes the channel; with @drop_session, first tells the node to free the session (BYE). */
void bf_channel_close(BfChannel *channel, gboolean drop_session);

#endif
