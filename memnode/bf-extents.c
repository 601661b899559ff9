/*
 * bf-extents: sessions, lent extents and their committed pages, for the RDMA transport.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-extents.h"
#include "bf-error.h"

#define BF_EXTENT_WORDS (BF_PROTO_EXTENT_PAGES / 64)

typedef struct {
    gpointer lent;                          /* from ops->lend */
    BfGrant grant;
    uint32_t stored;
    uint64_t bits[BF_EXTENT_WORDS];         /* committed pages */
} BfExtent;

struct BfExtentSession {
    uint8_t id[BF_PROTO_SESSION_SIZE];
    char *owner;                            /* the key it is filed under, or NULL */
    guint connections;
    uint64_t pages;                         /* 0 until HELLO */
    uint64_t stored;
    uint64_t nr_lent;
    GHashTable *extents;                    /* extent number (uint64_t *) -> BfExtent */
};

struct BfExtents {
    BfStore *store;
    const BfExtentOps *ops;
    gpointer opaque;
    GHashTable *sessions;                   /* id (GBytes) -> BfExtentSession */
    uint64_t nr_lent;
};

static void bf_extent_take_back(BfExtents *x, BfExtentSession *s, BfExtent *e)
{
    x->ops->take_back(x->opaque, e->lent);
    bf_store_unreserve(x->store, s->owner, BF_PROTO_EXTENT_PAGES);
    s->stored -= e->stored;
    s->nr_lent--;
    x->nr_lent--;
}

BfExtents *bf_extents_new(BfStore *store, const BfExtentOps *ops, gpointer opaque)
{
    BfExtents *x = g_new0(BfExtents, 1);

    x->store = store;
    x->ops = ops;
    x->opaque = opaque;
    x->sessions = g_hash_table_new_full(g_bytes_hash, g_bytes_equal,
                                        (GDestroyNotify)g_bytes_unref, NULL);
    return x;
}

static void bf_extents_session_destroy(BfExtents *x, BfExtentSession *s)
{
    g_autoptr(GBytes) key = g_bytes_new(s->id, sizeof(s->id));

    bf_extents_drop(x, s);
    g_hash_table_remove(x->sessions, key);
    g_hash_table_destroy(s->extents);
    g_free(s->owner);
    g_free(s);
}

void bf_extents_free(BfExtents *x)
{
    GHashTableIter iter;
    gpointer value;

    if (!x) {
        return;
    }
    g_hash_table_iter_init(&iter, x->sessions);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        BfExtentSession *s = value;

        bf_extents_drop(x, s);
        g_hash_table_destroy(s->extents);
        g_free(s->owner);
        g_free(s);
        g_hash_table_iter_remove(&iter);
    }
    g_hash_table_destroy(x->sessions);
    g_free(x);
}

BfExtentSession *bf_extents_attach(BfExtents *x, const uint8_t id[BF_PROTO_SESSION_SIZE],
                                   const char *owner, uint64_t pages, uint64_t *stored,
                                   BfProtoError *code, GError **errp)
{
    g_autoptr(GBytes) key = g_bytes_new(id, BF_PROTO_SESSION_SIZE);
    BfExtentSession *s = g_hash_table_lookup(x->sessions, key);

    *code = 0;
    if (s && s->pages && s->pages != pages) {
        *code = BF_PROTO_ERR_NO_SESSION;
        g_set_error(errp, BF_ERROR, BF_ERROR_POOL, "the session exists with %"
                    G_GUINT64_FORMAT " pages, not %" G_GUINT64_FORMAT,
                    (guint64)s->pages, (guint64)pages);
        return NULL;
    }
    if (!s) {
        s = g_new0(BfExtentSession, 1);
        memcpy(s->id, id, sizeof(s->id));
        s->owner = g_strdup(owner);
        s->extents = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
        g_hash_table_insert(x->sessions, g_steal_pointer(&key), s);
    }
    /* Filed under the owner's key, a session has no other owner. */
    g_assert(g_strcmp0(s->owner, owner) == 0);
    s->pages = pages;
    s->connections++;
    *stored = s->stored;
    return s;
}

void bf_extents_detach(BfExtents *x, BfExtentSession *s)
{
    g_assert(s->connections > 0);
    if (--s->connections == 0 && s->nr_lent == 0) {
        bf_extents_session_destroy(x, s);
    }
}

uint64_t bf_extents_session_size(BfExtentSession *s)
{
    return s->pages;
}

gboolean bf_extents_grant(BfExtents *x, BfExtentSession *s, uint64_t extent, gboolean create,
                          BfGrant *grant, gpointer *lent, BfProtoError *code, GError **errp)
{
    BfExtent *e = g_hash_table_lookup(s->extents, &extent);
    uint64_t *key;

    *code = 0;
    g_assert(extent < bf_proto_extents(s->pages));
    if (e) {
        *grant = e->grant;
        *lent = e->lent;
        return TRUE;
    }
    if (!create) {
        *code = BF_PROTO_ERR_NOT_STORED;
        g_set_error(errp, BF_ERROR, BF_ERROR_POOL, "extent %" G_GUINT64_FORMAT " holds no "
                    "page of this session", (guint64)extent);
        return FALSE;
    }
    if (!bf_store_reserve(x->store, s->owner, BF_PROTO_EXTENT_PAGES, code, errp)) {
        return FALSE;
    }
    e = g_new0(BfExtent, 1);
    e->lent = x->ops->lend(x->opaque, &e->grant, errp);
    if (!e->lent) {
        bf_store_unreserve(x->store, s->owner, BF_PROTO_EXTENT_PAGES);
        g_free(e);
        *code = BF_PROTO_ERR_NO_SPACE;
        return FALSE;
    }
    e->grant.extent = extent;
    key = g_new(uint64_t, 1);
    *key = extent;
    g_hash_table_insert(s->extents, key, e);
    s->nr_lent++;
    x->nr_lent++;
    *grant = e->grant;
    *lent = e->lent;
    return TRUE;
}

gboolean bf_extents_commit(BfExtents *x, BfExtentSession *s, const BfPageList *pages,
                           GError **errp)
{
    /* Check everything first: a refused COMMIT changes nothing. */
    for (uint32_t i = 0; i < pages->count; i++) {
        uint64_t extent = bf_proto_page_number(pages, i) / BF_PROTO_EXTENT_PAGES;

        if (!g_hash_table_contains(s->extents, &extent)) {
            return bf_proto_fail(errp, "COMMIT of page %" G_GUINT64_FORMAT " in extent %"
                                   G_GUINT64_FORMAT ", which the session was not lent",
                                   (guint64)bf_proto_page_number(pages, i), (guint64)extent);
        }
    }
    for (uint32_t i = 0; i < pages->count; i++) {
        uint64_t page = bf_proto_page_number(pages, i);
        uint64_t extent = page / BF_PROTO_EXTENT_PAGES;
        uint32_t bit = page % BF_PROTO_EXTENT_PAGES;
        BfExtent *e = g_hash_table_lookup(s->extents, &extent);

        if (!(e->bits[bit / 64] & (UINT64_C(1) << (bit % 64)))) {
            e->bits[bit / 64] |= UINT64_C(1) << (bit % 64);
            e->stored++;
            s->stored++;
        }
    }
    return TRUE;
}

void bf_extents_free_pages(BfExtents *x, BfExtentSession *s, const BfPageList *pages)
{
    for (uint32_t i = 0; i < pages->count; i++) {
        uint64_t page = bf_proto_page_number(pages, i);
        uint64_t extent = page / BF_PROTO_EXTENT_PAGES;
        uint32_t bit = page % BF_PROTO_EXTENT_PAGES;
        BfExtent *e = g_hash_table_lookup(s->extents, &extent);

        if (e && (e->bits[bit / 64] & (UINT64_C(1) << (bit % 64)))) {
            e->bits[bit / 64] &= ~(UINT64_C(1) << (bit % 64));
            e->stored--;
            s->stored--;
        }
    }
}

uint32_t bf_extents_release(BfExtents *x, BfExtentSession *s, const BfPageList *extents,
                            uint64_t *released)
{
    uint32_t n = 0;

    for (uint32_t i = 0; i < extents->count; i++) {
        uint64_t extent = bf_proto_page_number(extents, i);
        BfExtent *e = g_hash_table_lookup(s->extents, &extent);

        if (e && e->stored == 0) {
            bf_extent_take_back(x, s, e);
            g_hash_table_remove(s->extents, &extent);
            released[n++] = extent;
        }
    }
    return n;
}

void bf_extents_drop(BfExtents *x, BfExtentSession *s)
{
    GHashTableIter iter;
    gpointer value;

    g_hash_table_iter_init(&iter, s->extents);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        bf_extent_take_back(x, s, value);
        g_hash_table_iter_remove(&iter);
    }
    g_assert(s->stored == 0 && s->nr_lent == 0);
    s->pages = 0;
}

uint64_t bf_extents_session_pages(BfExtentSession *s)
{
    return s->stored;
}

uint64_t bf_extents_lent(BfExtents *x)
{
    return x->nr_lent;
}
