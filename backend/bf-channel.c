/*
 * bf-channel: the transport-independent part of a channel (dispatch, in-flight bookkeeping).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-channel.h"
#include "bf-channel-rdma.h"
#include "bf-channel-tcp.h"
#include "bf-error.h"

BfChannel *bf_channel_connect(const BfEndpoint *endpoint, const BfHello *hello,
                              const BfKey *key, const BfTlsCreds *tls, int timeout_ms,
                              GError **errp)
{
    switch (endpoint->transport) {
    case BF_TRANSPORT_TCP:
        return bf_channel_tcp_connect(endpoint, hello, key, tls, timeout_ms, errp);
    case BF_TRANSPORT_RDMA:
        if (tls) {
            g_set_error(errp, BF_ERROR, BF_ERROR_INVALID,
                        "TLS is not supported over RDMA: use a tcp: pool");
            return NULL;
        }
        return bf_channel_rdma_connect(endpoint, hello, key, timeout_ms, errp);
    }
    g_assert_not_reached();
}

gboolean bf_channel_submit(BfChannel *channel, BfRequest *req, GError **errp)
{
    g_assert(req->count >= 1 && req->count <= BF_PROTO_MAX_PAGES);
    g_assert(req->type == BF_MSG_WRITE || req->type == BF_MSG_READ ||
             req->type == BF_MSG_FREE);
    req->pool_error = 0;
    req->pool_message[0] = '\0';
    if (!channel->ops->submit(channel, req, errp)) {
        return FALSE;
    }
    g_queue_push_tail(&channel->inflight, req);
    return TRUE;
}

BfRequest *bf_channel_complete(BfChannel *channel, int timeout_ms, GError **errp)
{
    BfRequest *req;

    g_assert(!g_queue_is_empty(&channel->inflight));
    req = channel->ops->complete(channel, timeout_ms, errp);
    if (req) {
        g_assert(req == g_queue_peek_head(&channel->inflight));
        g_queue_pop_head(&channel->inflight);
    }
    return req;
}

gboolean bf_channel_call(BfChannel *channel, BfRequest *req, int timeout_ms, GError **errp)
{
    if (!bf_channel_submit(channel, req, errp) ||
        !bf_channel_complete(channel, timeout_ms, errp)) {
        return FALSE;
    }
    if (req->pool_error) {
        g_set_error(errp, BF_ERROR, BF_ERROR_POOL, "the memory node refused %s of %u pages: "
                    "%s", bf_msg_type_name(req->type), req->count, req->pool_message);
        return FALSE;
    }
    return TRUE;
}

gboolean bf_channel_stats(BfChannel *channel, int timeout_ms, BfPoolStats *stats,
                          GError **errp)
{
    g_assert(g_queue_is_empty(&channel->inflight));
    return channel->ops->stats(channel, timeout_ms, stats, errp);
}

guint bf_channel_inflight(BfChannel *channel)
{
    return g_queue_get_length(&channel->inflight);
}

void bf_channel_close(BfChannel *channel, gboolean drop_session)
{
    if (channel) {
        g_queue_clear(&channel->inflight);
        channel->ops->close(channel, drop_session);
    }
}
