/*
 * bf-channel-rdma: a channel to a memory node over RDMA.
 *
 * WRITE copies the pages into a registered bounce buffer, posts one RDMA WRITE per run of
 * neighbouring pages into the session's extents, then a COMMIT message: the queue pair keeps
 * order, so the node sees the COMMIT only once the data is in place, and its COMMIT_OK
 * completes the request. READ posts RDMA READs into the bounce buffer and completes on the
 * last one's completion. FREE sends FREE and then RELEASE of the extents it touched: the
 * node gives back those left empty. Until the RELEASE_OK arrives nothing is written to those
 * extents, so no write can land in memory the node has given back.
 *
 * The extents a session was lent are shared by all of this process's channels to that
 * session (a table keyed by node and session), so a channel never uses an extent another
 * one has released. The node registers an extent for each connection apart (a connection
 * reaches only what it was granted), so each channel has its own rkey for it, in a slot of
 * the table's entry.
 *
 * With a key, the channel proves it (bf_auth_client) before HELLO, in messages, as on TCP.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-channel-rdma.h"
#include "bf-error.h"
#include "bf-rdma.h"

#include <errno.h>

#define BF_RDMA_BOUNCE_SIZE ((uint64_t)BF_PROTO_MAX_PAGES * BF_PROTO_PAGE_SIZE)
#define BF_RDMA_EXPECT_RING (2 * BF_RDMA_MSG_SLOTS)
#define BF_RDMA_NO_SLOT UINT32_MAX
/* Channels of one process to one session at once (the engine has two). */
#define BF_GRANT_MAX_CHANNELS 16

/* The extents lent to one session, for every channel of this process to it. */
typedef struct {
    char *key;
    guint refs;                 /* under bf_grant_tables_lock */
    uint32_t channels;          /* a bit per slot a channel holds; under @lock */
    GMutex lock;
    GCond released;             /* a RELEASE finished */
    GHashTable *grants;         /* extent (uint64_t *) -> BfGrantEntry */
} BfGrantTable;

typedef struct {
    uint64_t extent;
    uint64_t addr;
    uint32_t granted;           /* a bit per channel slot granted it; 0: only a mark that
                                   @releaser is releasing it */
    uint32_t rkeys[BF_GRANT_MAX_CHANNELS];
    gpointer releaser;          /* the channel releasing it, or NULL */
} BfGrantEntry;

static GMutex bf_grant_tables_lock;
static GHashTable *bf_grant_tables;     /* key -> BfGrantTable */

/* A request in flight. */
typedef struct {
    BfRequest *req;             /* NULL: free */
    uint32_t waits;             /* completions and replies still due */
    uint32_t nr_release;
    uint64_t release[BF_PROTO_MAX_PAGES];   /* FREE: the extents its RELEASE names */
} BfRdmaPending;

/* A reply due, in the order the messages went out. */
typedef struct {
    uint32_t tag;
    BfMsgType reply;
    uint32_t pending;           /* BF_RDMA_NO_SLOT: the synchronous call's */
} BfRdmaExpect;

typedef struct {
    BfChannel parent;
    struct rdma_event_channel *events;
    struct rdma_cm_id *id;
    struct ibv_pd *pd;
    struct ibv_comp_channel *comp;
    BfRdmaQueue q;
    gboolean queue_ready;
    gboolean connected;
    char *broken;                       /* why the channel cannot be used any more */
    BfGrantTable *grants;
    uint32_t grant_slot;                /* this channel's in @grants' entries */
    uint64_t extents;                   /* the session's */
    int timeout_ms;                     /* for the node's answers within a submit */
    uint8_t *bounce;                    /* BF_CHANNEL_RDMA_MAX_INFLIGHT buffers */
    struct ibv_mr *bounce_mr;
    BfRdmaPending pending[BF_CHANNEL_RDMA_MAX_INFLIGHT];
    BfRdmaExpect expect[BF_RDMA_EXPECT_RING];
    uint32_t expect_head, expect_len;
    uint32_t next_tag;
    struct ibv_send_wr wrs[BF_PROTO_MAX_PAGES];     /* a request's transfers, chained */
    struct ibv_sge sges[BF_PROTO_MAX_PAGES];

    /* The synchronous call's reply (HELLO, GRANT, STATS, BYE). */
    gboolean call_done;
    BfMsgType call_reply;
    uint8_t call_payload[64];
    uint32_t call_length;
    BfProtoError call_error;
    char call_message[BF_PROTO_MAX_MESSAGE + 1];
} BfChannelRdma;

/* The table of @hello's session (of @key) at @endpoint, and a slot in it for @ch. */
static gboolean bf_grant_table_get(BfChannelRdma *ch, const BfEndpoint *endpoint,
                                   const BfHello *hello, const BfKey *key, GError **errp)
{
    g_autofree char *where = bf_endpoint_to_string(endpoint);
    g_autofree char *session = g_base64_encode(hello->session, sizeof(hello->session));
    g_autofree char *name = g_strdup_printf("%s/%s/%s", where, key ? key->name : "", session);
    BfGrantTable *t;

    g_mutex_lock(&bf_grant_tables_lock);
    if (!bf_grant_tables) {
        bf_grant_tables = g_hash_table_new(g_str_hash, g_str_equal);
    }
    t = g_hash_table_lookup(bf_grant_tables, name);
    if (!t) {
        t = g_new0(BfGrantTable, 1);
        t->key = g_steal_pointer(&name);
        g_mutex_init(&t->lock);
        g_cond_init(&t->released);
        t->grants = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, g_free);
        g_hash_table_insert(bf_grant_tables, t->key, t);
    }
    t->refs++;
    ch->grants = t;
    g_mutex_unlock(&bf_grant_tables_lock);

    g_mutex_lock(&t->lock);
    /* The lowest free slot; BF_GRANT_MAX_CHANNELS when every one is taken. */
    ch->grant_slot = (uint32_t)__builtin_ctz(~t->channels);
    if (ch->grant_slot < BF_GRANT_MAX_CHANNELS) {
        t->channels |= 1u << ch->grant_slot;
    }
    g_mutex_unlock(&t->lock);
    if (ch->grant_slot >= BF_GRANT_MAX_CHANNELS) {
        g_set_error(errp, BF_ERROR, BF_ERROR_INVALID, "RDMA: more than %d channels to one "
                    "session", BF_GRANT_MAX_CHANNELS);
        return FALSE;
    }
    return TRUE;
}

/* @ch leaves its table: its rkeys (and the entries only it was granted) go. */
static void bf_grant_table_put(BfChannelRdma *ch)
{
    BfGrantTable *t = ch->grants;

    if (ch->grant_slot < BF_GRANT_MAX_CHANNELS) {
        uint32_t bit = 1u << ch->grant_slot;
        GHashTableIter iter;
        gpointer value;

        g_mutex_lock(&t->lock);
        g_hash_table_iter_init(&iter, t->grants);
        while (g_hash_table_iter_next(&iter, NULL, &value)) {
            BfGrantEntry *entry = value;

            entry->granted &= ~bit;
            if (!entry->granted && !entry->releaser) {
                g_hash_table_iter_remove(&iter);
            }
        }
        t->channels &= ~bit;
        g_mutex_unlock(&t->lock);
    }
    g_mutex_lock(&bf_grant_tables_lock);
    if (--t->refs == 0) {
        g_hash_table_remove(bf_grant_tables, t->key);
        g_hash_table_destroy(t->grants);
        g_cond_clear(&t->released);
        g_mutex_clear(&t->lock);
        g_free(t->key);
        g_free(t);
    }
    g_mutex_unlock(&bf_grant_tables_lock);
}

static gboolean bf_rdma_break(BfChannelRdma *ch, GError **errp, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);

/*
 * Marks the channel unusable, for the reason given (or the one it broke with before). What
 * the session was lent is forgotten: the node may have restarted, and the others re-ask.
 */
static gboolean bf_rdma_break(BfChannelRdma *ch, GError **errp, const char *fmt, ...)
{
    if (!ch->broken) {
        va_list ap;

        va_start(ap, fmt);
        ch->broken = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_mutex_lock(&ch->grants->lock);
        g_hash_table_remove_all(ch->grants->grants);
        g_cond_broadcast(&ch->grants->released);
        g_mutex_unlock(&ch->grants->lock);
    }
    g_set_error(errp, BF_ERROR, BF_ERROR_UNREACHABLE, "%s", ch->broken);
    return FALSE;
}

/* Ends a RELEASE: drops the extents the node gave back, unblocks the others. */
static void bf_rdma_release_done(BfChannelRdma *ch, BfRdmaPending *p, const BfPageList *done)
{
    g_mutex_lock(&ch->grants->lock);
    for (uint32_t i = 0; i < p->nr_release; i++) {
        BfGrantEntry *entry = g_hash_table_lookup(ch->grants->grants, &p->release[i]);

        if (entry && entry->releaser == ch) {
            entry->releaser = NULL;
            if (!entry->granted) {
                g_hash_table_remove(ch->grants->grants, &p->release[i]);
            }
        }
    }
    for (uint32_t i = 0; done && i < done->count; i++) {
        uint64_t extent = bf_proto_page_number(done, i);

        g_hash_table_remove(ch->grants->grants, &extent);
    }
    g_cond_broadcast(&ch->grants->released);
    g_mutex_unlock(&ch->grants->lock);
    p->nr_release = 0;
}

static gboolean bf_rdma_handle_reply(BfChannelRdma *ch, const uint8_t *msg, uint32_t length,
                                     GError **errp)
{
    BfRdmaExpect *expect = &ch->expect[ch->expect_head];
    const uint8_t *payload = msg + BF_PROTO_HEADER_SIZE;
    g_autoptr(GError) err = NULL;
    BfProtoError code = 0;
    g_autofree char *text = NULL;
    BfMsgHeader header;
    BfRdmaPending *p;

    if (length < BF_PROTO_HEADER_SIZE || !bf_proto_parse_header(msg, &header, &err) ||
        header.length != length - BF_PROTO_HEADER_SIZE) {
        return bf_rdma_break(ch, errp, "protocol error from the memory node: %s",
                             err ? err->message : "a message of the wrong length");
    }
    if (ch->expect_len == 0 || header.tag != expect->tag) {
        return bf_rdma_break(ch, errp, "protocol error from the memory node: a reply "
                             "tagged %u, expected %u", header.tag,
                             ch->expect_len ? expect->tag : 0);
    }
    if (header.type == BF_MSG_ERROR) {
        if (!bf_proto_parse_error(payload, header.length, &code, &text, &err) || !code) {
            return bf_rdma_break(ch, errp, "protocol error from the memory node: %s",
                                 err ? err->message : "ERROR without a code");
        }
    } else if (header.type != expect->reply) {
        return bf_rdma_break(ch, errp, "protocol error from the memory node: %s where %s "
                             "was due", bf_msg_type_name(header.type),
                             bf_msg_type_name(expect->reply));
    }
    ch->expect_head = (ch->expect_head + 1) % BF_RDMA_EXPECT_RING;
    ch->expect_len--;

    if (expect->pending == BF_RDMA_NO_SLOT) {
        ch->call_done = TRUE;
        ch->call_error = code;
        if (code) {
            g_strlcpy(ch->call_message, text, sizeof(ch->call_message));
            return TRUE;
        }
        if (header.length > sizeof(ch->call_payload)) {
            return bf_rdma_break(ch, errp, "protocol error from the memory node: %s of %u "
                                 "bytes", bf_msg_type_name(header.type), header.length);
        }
        memcpy(ch->call_payload, payload, header.length);
        ch->call_length = header.length;
        return TRUE;
    }

    p = &ch->pending[expect->pending];
    g_assert(p->req && p->waits > 0);
    p->waits--;
    if (code) {
        /* The first refusal is the one that says why. */
        if (!p->req->pool_error) {
            p->req->pool_error = code;
            g_strlcpy(p->req->pool_message, text, sizeof(p->req->pool_message));
        }
        if (expect->reply == BF_MSG_RELEASE_OK) {
            bf_rdma_release_done(ch, p, NULL);
        }
        return TRUE;
    }
    switch (header.type) {
    case BF_MSG_COMMIT_OK:
    case BF_MSG_FREE_OK:
        if (!bf_proto_parse_count(payload, header.length, p->req->count, &err)) {
            return bf_rdma_break(ch, errp, "protocol error from the memory node: %s",
                                 err->message);
        }
        return TRUE;
    case BF_MSG_RELEASE_OK: {
        BfPageList done;

        if (!bf_proto_parse_page_list(BF_MSG_RELEASE_OK, payload, header.length, ch->extents,
                                      &done, &err)) {
            return bf_rdma_break(ch, errp, "protocol error from the memory node: %s",
                                 err->message);
        }
        bf_rdma_release_done(ch, p, &done);
        return TRUE;
    }
    default:
        g_assert_not_reached();
    }
}

static gboolean bf_rdma_handle_wc(BfChannelRdma *ch, const struct ibv_wc *wc, GError **errp)
{
    uint32_t index = bf_rdma_wr_index(wc->wr_id);
    BfRdmaWrKind kind = bf_rdma_wr_kind(wc->wr_id);

    if (wc->status != IBV_WC_SUCCESS) {
        return bf_rdma_break(ch, errp, "RDMA %s to the memory node failed: %s",
                             kind == BF_RDMA_WR_DATA ? "transfer" :
                             kind == BF_RDMA_WR_SEND ? "send" : "receive",
                             ibv_wc_status_str(wc->status));
    }
    switch (kind) {
    case BF_RDMA_WR_SEND:
        bf_rdma_send_done(&ch->q, index);
        return TRUE;
    case BF_RDMA_WR_RECV:
        return bf_rdma_handle_reply(ch, bf_rdma_recv_buf(&ch->q, index), wc->byte_len,
                                    errp) &&
               bf_rdma_post_recv(&ch->q, index, errp);
    case BF_RDMA_WR_DATA: {
        BfRdmaPending *p = &ch->pending[index];
        const uint8_t *bounce = ch->bounce + index * BF_RDMA_BOUNCE_SIZE;

        g_assert(p->req && p->req->type == BF_MSG_READ && p->waits > 0);
        for (uint32_t i = 0; i < p->req->count; i++) {
            memcpy(p->req->data[i], bounce + (uint64_t)i * BF_PROTO_PAGE_SIZE,
                   BF_PROTO_PAGE_SIZE);
        }
        p->waits--;
        return TRUE;
    }
    }
    return bf_rdma_break(ch, errp, "RDMA: a completion nobody asked for");
}

/* Handles the completions that arrive by @deadline (at least one). */
static gboolean bf_rdma_progress(BfChannelRdma *ch, gint64 deadline, GError **errp)
{
    struct ibv_wc wc[32];
    g_autoptr(GError) err = NULL;
    int n;

    if (ch->broken) {
        return bf_rdma_break(ch, errp, "%s", ch->broken);
    }
    n = bf_rdma_poll(&ch->q, wc, G_N_ELEMENTS(wc), deadline, BF_CHANNEL_RDMA_SPIN_US, &err);
    if (n == 0) {
        return bf_rdma_break(ch, errp, "%s", err->message);
    }
    for (int i = 0; i < n; i++) {
        if (!bf_rdma_handle_wc(ch, &wc[i], errp)) {
            return FALSE;
        }
    }
    return TRUE;
}

/*
 * Sends a message of @type whose payload @fill writes, expecting @reply for the request in
 * pending slot @pending (BF_RDMA_NO_SLOT: the synchronous call).
 */
static gboolean bf_rdma_send(BfChannelRdma *ch, BfMsgType type, const uint8_t *payload,
                             uint32_t length, BfMsgType reply, uint32_t pending,
                             gint64 deadline, GError **errp)
{
    uint32_t slot;
    uint8_t *buf;

    /* A reply per message, and the node has BF_RDMA_MSG_SLOTS receives posted. */
    while (ch->expect_len >= BF_RDMA_MSG_SLOTS || !(buf = bf_rdma_send_buf(&ch->q, &slot))) {
        if (!bf_rdma_progress(ch, deadline, errp)) {
            return FALSE;
        }
    }
    bf_proto_put_header(buf, type, length, ch->next_tag);
    memcpy(buf + BF_PROTO_HEADER_SIZE, payload, length);
    if (!bf_rdma_post_send(&ch->q, slot, BF_PROTO_HEADER_SIZE + length, errp)) {
        return bf_rdma_break(ch, NULL, "RDMA: cannot send to the memory node");
    }
    ch->expect[(ch->expect_head + ch->expect_len) % BF_RDMA_EXPECT_RING] = (BfRdmaExpect) {
        .tag = ch->next_tag++, .reply = reply, .pending = pending,
    };
    ch->expect_len++;
    return TRUE;
}

/* Sends a message and waits for its reply; a refusal is in ch->call_error. */
static gboolean bf_rdma_call(BfChannelRdma *ch, BfMsgType type, const uint8_t *payload,
                             uint32_t length, BfMsgType reply, gint64 deadline, GError **errp)
{
    ch->call_done = FALSE;
    if (!bf_rdma_send(ch, type, payload, length, reply, BF_RDMA_NO_SLOT, deadline, errp)) {
        return FALSE;
    }
    while (!ch->call_done) {
        if (!bf_rdma_progress(ch, deadline, errp)) {
            return FALSE;
        }
    }
    return TRUE;
}

/*
 * Where @extent is: from the table, or lent by the node (@create: make it if the session has
 * none yet). A refusal by the node goes to @code and @message; FALSE and @errp set when the
 * channel broke.
 */
static gboolean bf_rdma_grant(BfChannelRdma *ch, uint64_t extent, gboolean create,
                              gint64 deadline, BfGrant *grant, BfProtoError *code,
                              char *message, GError **errp)
{
    BfGrantTable *t = ch->grants;
    uint8_t payload[16];
    BfGrantEntry *entry;

    *code = 0;
    g_mutex_lock(&t->lock);
    while ((entry = g_hash_table_lookup(t->grants, &extent)) && entry->releaser) {
        /* Being released: wait for the node's answer (our own, or another channel's). */
        if (entry->releaser == ch) {
            g_mutex_unlock(&t->lock);
            if (!bf_rdma_progress(ch, deadline, errp)) {
                return FALSE;
            }
            g_mutex_lock(&t->lock);
        } else if (!g_cond_wait_until(&t->released, &t->lock, deadline < 0 ? G_MAXINT64 :
                                      deadline)) {
            g_mutex_unlock(&t->lock);
            return bf_rdma_break(ch, errp, "RDMA: an extent stayed in release too long");
        }
    }
    if (entry && (entry->granted & (1u << ch->grant_slot))) {
        *grant = (BfGrant) {
            .extent = extent, .addr = entry->addr, .rkey = entry->rkeys[ch->grant_slot],
        };
        g_mutex_unlock(&t->lock);
        return TRUE;
    }
    g_mutex_unlock(&t->lock);

    bf_proto_put_grant(payload, extent, create);
    if (!bf_rdma_call(ch, BF_MSG_GRANT, payload, sizeof(payload), BF_MSG_GRANT_OK, deadline,
                      errp)) {
        return FALSE;
    }
    if (ch->call_error) {
        *code = ch->call_error;
        g_strlcpy(message, ch->call_message, BF_PROTO_MAX_MESSAGE + 1);
        return TRUE;
    }
    {
        g_autoptr(GError) err = NULL;

        if (!bf_proto_parse_grant_ok(ch->call_payload, ch->call_length, grant, &err) ||
            grant->extent != extent) {
            return bf_rdma_break(ch, errp, "protocol error from the memory node: %s",
                                 err ? err->message : "GRANT_OK of another extent");
        }
    }
    g_mutex_lock(&t->lock);
    entry = g_hash_table_lookup(t->grants, &extent);
    if (!entry) {
        entry = g_new0(BfGrantEntry, 1);
        entry->extent = extent;
        g_hash_table_insert(t->grants, &entry->extent, entry);
    }
    entry->addr = grant->addr;
    entry->rkeys[ch->grant_slot] = grant->rkey;
    entry->granted |= 1u << ch->grant_slot;
    g_mutex_unlock(&t->lock);
    return TRUE;
}

/* How many pages from @first on are neighbours in one extent: one work request moves them. */
static uint32_t bf_rdma_run(const BfRequest *req, uint32_t first)
{
    uint64_t extent = req->pages[first] / BF_PROTO_EXTENT_PAGES;
    uint32_t run = 1;

    while (first + run < req->count && req->pages[first + run] == req->pages[first] + run &&
           req->pages[first + run] / BF_PROTO_EXTENT_PAGES == extent) {
        run++;
    }
    return run;
}

/*
 * Posts the RDMA READs or WRITEs moving @req's pages between its bounce buffer and the
 * extents, as one chain. Every extent is looked up (or lent) first: a refusal leaves nothing
 * posted.
 */
static gboolean bf_rdma_post_data(BfChannelRdma *ch, BfRequest *req, uint32_t index,
                                  gint64 deadline, GError **errp)
{
    uint8_t *bounce = ch->bounce + index * BF_RDMA_BOUNCE_SIZE;
    gboolean reading = req->type == BF_MSG_READ;
    struct ibv_send_wr *bad;
    uint32_t n = 0;
    int err;

    for (uint32_t first = 0, run; first < req->count; first += run) {
        BfProtoError code;
        BfGrant grant;

        run = bf_rdma_run(req, first);
        if (!bf_rdma_grant(ch, req->pages[first] / BF_PROTO_EXTENT_PAGES, !reading, deadline,
                           &grant, &code, req->pool_message, errp)) {
            return FALSE;
        }
        if (code) {
            req->pool_error = code;
            return TRUE;
        }
        ch->sges[n] = (struct ibv_sge) {
            .addr = (uintptr_t)(bounce + (uint64_t)first * BF_PROTO_PAGE_SIZE),
            .length = run * BF_PROTO_PAGE_SIZE,
            .lkey = ch->bounce_mr->lkey,
        };
        ch->wrs[n] = (struct ibv_send_wr) {
            .wr_id = bf_rdma_wr_id(BF_RDMA_WR_DATA, index),
            .next = NULL,
            .sg_list = &ch->sges[n],
            .num_sge = 1,
            .opcode = reading ? IBV_WR_RDMA_READ : IBV_WR_RDMA_WRITE,
            .wr.rdma.remote_addr = grant.addr +
                (req->pages[first] % BF_PROTO_EXTENT_PAGES) * BF_PROTO_PAGE_SIZE,
            .wr.rdma.rkey = grant.rkey,
        };
        if (n > 0) {
            ch->wrs[n - 1].next = &ch->wrs[n];
        }
        n++;
    }
    /* A READ completes on its last work request; a WRITE on its COMMIT's reply. */
    if (reading) {
        ch->wrs[n - 1].send_flags = IBV_SEND_SIGNALED;
    }
    err = ibv_post_send(ch->q.id->qp, &ch->wrs[0], &bad);
    if (err) {
        return bf_rdma_break(ch, errp, "RDMA: cannot post a transfer: %s", g_strerror(err));
    }
    return TRUE;
}

static gboolean bf_rdma_submit(BfChannel *channel, BfRequest *req, GError **errp)
{
    BfChannelRdma *ch = (BfChannelRdma *)channel;
    gint64 deadline = bf_channel_deadline(ch->timeout_ms);
    uint8_t payload[8 + 8 * BF_PROTO_MAX_PAGES];
    uint32_t index, length;
    BfRdmaPending *p = NULL;

    if (ch->broken) {
        return bf_rdma_break(ch, errp, "%s", ch->broken);
    }
    for (index = 0; index < BF_CHANNEL_RDMA_MAX_INFLIGHT; index++) {
        if (!ch->pending[index].req) {
            p = &ch->pending[index];
            break;
        }
    }
    g_assert(p);    /* callers keep at most BF_CHANNEL_RDMA_MAX_INFLIGHT in flight */
    req->tag = index;
    p->req = req;
    p->waits = 0;
    p->nr_release = 0;
    length = bf_proto_put_count(payload, req->count);
    length += bf_proto_put_u64s(payload + length, req->pages, req->count);

    switch (req->type) {
    case BF_MSG_WRITE:
        for (uint32_t i = 0; i < req->count; i++) {
            memcpy(ch->bounce + index * BF_RDMA_BOUNCE_SIZE + (uint64_t)i * BF_PROTO_PAGE_SIZE,
                   req->data[i], BF_PROTO_PAGE_SIZE);
        }
        if (!bf_rdma_post_data(ch, req, index, deadline, errp)) {
            return FALSE;
        }
        if (!req->pool_error) {
            p->waits = 1;
            return bf_rdma_send(ch, BF_MSG_COMMIT, payload, length, BF_MSG_COMMIT_OK, index,
                                deadline, errp);
        }
        return TRUE;
    case BF_MSG_READ:
        if (!bf_rdma_post_data(ch, req, index, deadline, errp)) {
            return FALSE;
        }
        p->waits = req->pool_error ? 0 : 1;
        return TRUE;
    case BF_MSG_FREE: {
        uint8_t release[8 + 8 * BF_PROTO_MAX_PAGES];
        uint32_t release_length;

        /*
         * Writes to these extents wait until the node said which it gave back. (Extents not
         * in the table too: lent before a reconnection, say.)
         */
        g_mutex_lock(&ch->grants->lock);
        for (uint32_t i = 0; i < req->count; i++) {
            uint64_t extent = req->pages[i] / BF_PROTO_EXTENT_PAGES;
            BfGrantEntry *entry = g_hash_table_lookup(ch->grants->grants, &extent);

            if (!entry) {
                entry = g_new0(BfGrantEntry, 1);
                entry->extent = extent;
                g_hash_table_insert(ch->grants->grants, &entry->extent, entry);
            }
            if (!entry->releaser) {
                entry->releaser = ch;
                p->release[p->nr_release++] = extent;
            }
        }
        g_mutex_unlock(&ch->grants->lock);
        p->waits = 1;
        if (!bf_rdma_send(ch, BF_MSG_FREE, payload, length, BF_MSG_FREE_OK, index, deadline,
                          errp)) {
            return FALSE;
        }
        if (p->nr_release) {
            release_length = bf_proto_put_count(release, p->nr_release);
            release_length += bf_proto_put_u64s(release + release_length, p->release,
                                                p->nr_release);
            p->waits++;
            return bf_rdma_send(ch, BF_MSG_RELEASE, release, release_length,
                                BF_MSG_RELEASE_OK, index, deadline, errp);
        }
        return TRUE;
    }
    default:
        g_assert_not_reached();
    }
}

static BfRequest *bf_rdma_complete(BfChannel *channel, int timeout_ms, GError **errp)
{
    BfChannelRdma *ch = (BfChannelRdma *)channel;
    BfRequest *req = g_queue_peek_head(&channel->inflight);
    BfRdmaPending *p = &ch->pending[req->tag];
    gint64 deadline = bf_channel_deadline(timeout_ms);

    g_assert(p->req == req);
    while (p->waits) {
        if (!bf_rdma_progress(ch, deadline, errp)) {
            return NULL;
        }
    }
    p->req = NULL;
    return req;
}

static gboolean bf_rdma_stats(BfChannel *channel, int timeout_ms, BfPoolStats *stats,
                              GError **errp)
{
    BfChannelRdma *ch = (BfChannelRdma *)channel;

    if (!bf_rdma_call(ch, BF_MSG_STATS, NULL, 0, BF_MSG_STATS_OK, bf_channel_deadline(timeout_ms),
                      errp)) {
        return FALSE;
    }
    if (ch->call_error) {
        g_set_error(errp, BF_ERROR, BF_ERROR_POOL, "the memory node refused STATS: %s",
                    ch->call_message);
        return FALSE;
    }
    return bf_proto_parse_stats(ch->call_payload, ch->call_length, stats, errp);
}

static void bf_rdma_destroy(BfChannelRdma *ch)
{
    if (ch->connected) {
        rdma_disconnect(ch->id);
    }
    if (ch->queue_ready) {
        bf_rdma_queue_destroy(&ch->q);
    }
    if (ch->bounce_mr) {
        ibv_dereg_mr(ch->bounce_mr);
    }
    g_free(ch->bounce);
    if (ch->comp) {
        ibv_destroy_comp_channel(ch->comp);
    }
    if (ch->pd) {
        ibv_dealloc_pd(ch->pd);
    }
    if (ch->id) {
        rdma_destroy_id(ch->id);
    }
    if (ch->events) {
        rdma_destroy_event_channel(ch->events);
    }
    if (ch->grants) {
        bf_grant_table_put(ch);
    }
    g_free(ch->broken);
    g_free(ch);
}

static void bf_rdma_close(BfChannel *channel, gboolean drop_session)
{
    BfChannelRdma *ch = (BfChannelRdma *)channel;

    /* Requests not completed are abandoned: nothing of theirs is waited for. */
    for (uint32_t i = 0; i < BF_CHANNEL_RDMA_MAX_INFLIGHT; i++) {
        if (ch->pending[i].req && ch->pending[i].nr_release) {
            bf_rdma_release_done(ch, &ch->pending[i], NULL);
        }
    }
    if (drop_session && !ch->broken) {
        /* Best effort: a node that is gone keeps the pages until it drops the session. */
        bf_rdma_call(ch, BF_MSG_BYE, NULL, 0, BF_MSG_BYE_OK, bf_channel_deadline(1000), NULL);
        if (!ch->broken) {
            g_mutex_lock(&ch->grants->lock);
            g_hash_table_remove_all(ch->grants->grants);
            g_mutex_unlock(&ch->grants->lock);
        }
    }
    bf_rdma_destroy(ch);
}

static const BfChannelOps bf_channel_rdma_ops = {
    .submit = bf_rdma_submit,
    .complete = bf_rdma_complete,
    .stats = bf_rdma_stats,
    .close = bf_rdma_close,
};

/* Resolves the node's address and route and connects the queue pair. */
static gboolean bf_rdma_connect_qp(BfChannelRdma *ch, const BfEndpoint *endpoint,
                                   gint64 deadline, int timeout_ms, GError **errp)
{
    if (!bf_rdma_resolve(endpoint, ch, deadline, timeout_ms, &ch->events, &ch->id, errp)) {
        return FALSE;
    }
    ch->pd = ibv_alloc_pd(ch->id->verbs);
    ch->comp = ch->pd ? ibv_create_comp_channel(ch->id->verbs) : NULL;
    if (!ch->comp) {
        g_set_error(errp, BF_ERROR, BF_ERROR_UNREACHABLE, "RDMA: cannot set up device %s: %s",
                    ibv_get_device_name(ch->id->verbs->device), g_strerror(errno));
        return FALSE;
    }
    if (!bf_rdma_queue_init(&ch->q, ch->id, ch->pd, ch->comp, ch, errp)) {
        return FALSE;
    }
    ch->queue_ready = TRUE;
    ch->bounce = g_malloc(BF_CHANNEL_RDMA_MAX_INFLIGHT * BF_RDMA_BOUNCE_SIZE);
    ch->bounce_mr = ibv_reg_mr(ch->pd, ch->bounce,
                               BF_CHANNEL_RDMA_MAX_INFLIGHT * BF_RDMA_BOUNCE_SIZE,
                               IBV_ACCESS_LOCAL_WRITE);
    if (!ch->bounce_mr) {
        g_set_error(errp, BF_ERROR, BF_ERROR_UNREACHABLE, "RDMA: cannot register %"
                    G_GUINT64_FORMAT " bytes of buffers (is RLIMIT_MEMLOCK too low?): %s",
                    (guint64)(BF_CHANNEL_RDMA_MAX_INFLIGHT * BF_RDMA_BOUNCE_SIZE),
                    g_strerror(errno));
        return FALSE;
    }
    if (!bf_rdma_connect(ch->events, ch->id, endpoint, deadline, errp)) {
        return FALSE;
    }
    ch->connected = TRUE;
    return TRUE;
}

/* A BfAuthCall over RDMA. */
static gboolean bf_rdma_auth_call(gpointer channel, BfMsgType type, const uint8_t *payload,
                                  uint32_t length, BfMsgType reply, uint8_t *out, uint32_t size,
                                  uint32_t *out_length, gint64 deadline, GError **errp)
{
    BfChannelRdma *ch = channel;

    if (!bf_rdma_call(ch, type, payload, length, reply, deadline, errp)) {
        return FALSE;
    }
    if (ch->call_error) {
        g_set_error(errp, BF_ERROR, BF_ERROR_POOL, "the memory node refused the key: %s",
                    ch->call_message);
        return FALSE;
    }
    if (ch->call_length > size) {
        return bf_rdma_break(ch, errp, "protocol error from the memory node: %s of %u bytes",
                             bf_msg_type_name(reply), ch->call_length);
    }
    memcpy(out, ch->call_payload, ch->call_length);
    *out_length = ch->call_length;
    return TRUE;
}

BfChannel *bf_channel_rdma_connect(const BfEndpoint *endpoint, const BfHello *hello,
                                   const BfKey *key, int timeout_ms, GError **errp)
{
    BfChannelRdma *ch;
    gint64 deadline = bf_channel_deadline(timeout_ms);
    uint8_t payload[BF_PROTO_MAX_NAME + 32];
    uint64_t free_pages;
    uint32_t length;

    if (!bf_rdma_have_device(errp)) {
        return NULL;
    }
    ch = g_new0(BfChannelRdma, 1);
    ch->parent.ops = &bf_channel_rdma_ops;
    ch->extents = bf_proto_extents(hello->pages);
    ch->timeout_ms = timeout_ms;
    if (!bf_grant_table_get(ch, endpoint, hello, key, errp) ||
        !bf_rdma_connect_qp(ch, endpoint, deadline, timeout_ms, errp) ||
        (key && !bf_auth_client(key, bf_rdma_auth_call, ch, deadline, errp))) {
        goto fail;
    }
    length = bf_proto_put_hello(payload, hello);
    if (!bf_rdma_call(ch, BF_MSG_HELLO, payload, length, BF_MSG_HELLO_OK, deadline, errp)) {
        goto fail;
    }
    if (ch->call_error) {
        g_set_error(errp, BF_ERROR, BF_ERROR_POOL, "the memory node refused the session: %s",
                    ch->call_message);
        goto fail;
    }
    if (!bf_proto_parse_hello_ok(ch->call_payload, ch->call_length,
                                 &ch->parent.stored_at_hello, &free_pages, errp)) {
        goto fail;
    }
    return &ch->parent;

fail:
    bf_rdma_destroy(ch);
    return NULL;
}
