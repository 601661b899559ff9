/*
 * bf-channel-local: a channel to a session of a store in this process. Requests complete as
 * they are submitted. The engine's tests use it, and benchmarks use it as the floor that the
 * network transports are measured against.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-channel-local.h"
#include "bf-error.h"

typedef struct {
    BfChannel parent;
    BfStore *store;
    BfStoreSession *session;
} BfChannelLocal;

static gboolean bf_local_submit(BfChannel *channel, BfRequest *req, GError **errp)
{
    BfChannelLocal *ch = (BfChannelLocal *)channel;
    g_autoptr(GError) refusal = NULL;
    gboolean done = TRUE;

    switch (req->type) {
    case BF_MSG_WRITE:
        done = bf_store_write(ch->store, ch->session, req->count, req->pages,
                              (const void *const *)req->data, &req->pool_error, &refusal);
        break;
    case BF_MSG_READ:
        done = bf_store_read(ch->store, ch->session, req->count, req->pages, req->data,
                             &req->pool_error, &refusal);
        break;
    case BF_MSG_FREE:
        bf_store_free_pages(ch->store, ch->session, req->count, req->pages);
        break;
    default:
        g_assert_not_reached();
    }
    if (!done) {
        g_strlcpy(req->pool_message, refusal->message, sizeof(req->pool_message));
    }
    return TRUE;
}

static BfRequest *bf_local_complete(BfChannel *channel, int timeout_ms, GError **errp)
{
    return g_queue_peek_head(&channel->inflight);
}

static gboolean bf_local_stats(BfChannel *channel, int timeout_ms, BfPoolStats *stats,
                               GError **errp)
{
    BfChannelLocal *ch = (BfChannelLocal *)channel;
    BfStoreStats store;

    bf_store_get_stats(ch->store, &store);
    stats->session_pages = bf_store_session_pages(ch->store, ch->session);
    stats->stored_pages = store.stored_pages;
    stats->capacity_pages = store.capacity_pages;
    return TRUE;
}

static void bf_local_close(BfChannel *channel, gboolean drop_session)
{
    BfChannelLocal *ch = (BfChannelLocal *)channel;

    if (drop_session) {
        bf_store_drop(ch->store, ch->session);
    } else {
        bf_store_detach(ch->store, ch->session);
    }
    g_free(ch);
}

static const BfChannelOps bf_channel_local_ops = {
    .submit = bf_local_submit,
    .complete = bf_local_complete,
    .stats = bf_local_stats,
    .close = bf_local_close,
};

BfChannel *bf_channel_local_new(BfStore *store, const BfHello *hello, GError **errp)
{
    BfChannelLocal *ch = g_new0(BfChannelLocal, 1);
    BfProtoError code;

    ch->parent.ops = &bf_channel_local_ops;
    ch->store = store;
    ch->session = bf_store_attach(store, hello, NULL, &ch->parent.stored_at_hello, &code, errp);
    if (!ch->session) {
        g_free(ch);
        return NULL;
    }
    return &ch->parent;
}
