/*
 * bf-extents: the memory node's bookkeeping for the RDMA transport. A client there writes and
 * reads pages itself, so the node lends each session extents: BF_PROTO_EXTENT_PAGES pages of
 * the session at a time, each in memory of its own that only that session's connections can
 * reach. The node tracks which pages of an extent the client committed, so that it can count
 * them, and give an extent back when the client releases it empty.
 *
 * Lending is left to the caller's ops (allocating and registering memory with the RDMA device;
 * plain memory in the unit tests). Extents count against the store's capacity. Sessions are
 * named by the client's 16-byte session id and live as long as they hold extents or have
 * connections. Used from one thread.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_EXTENTS_H
#define BF_EXTENTS_H

#include "bf-store.h"

#define BF_EXTENT_SIZE ((size_t)BF_PROTO_EXTENT_PAGES * BF_PROTO_PAGE_SIZE)

typedef struct BfExtentOps {
    /* Session @id appears: what its extents are lent through (its protection domain). */
    gpointer (*session_new)(const uint8_t id[BF_PROTO_SESSION_SIZE], gpointer opaque,
                            GError **errp);
    void (*session_free)(gpointer session_data);
    /* Makes BF_EXTENT_SIZE bytes of memory reachable through @session_data. */
    gpointer (*lend)(gpointer session_data, BfGrant *grant, GError **errp);
    void (*take_back)(gpointer lent);
} BfExtentOps;

typedef struct BfExtents BfExtents;
typedef struct BfExtentSession BfExtentSession;

BfExtents *bf_extents_new(BfStore *store, const BfExtentOps *ops, gpointer opaque);
void bf_extents_free(BfExtents *x);

/* A connection to session @id starts: finds or makes it. NULL if ops->session_new fails. */
BfExtentSession *bf_extents_connect(BfExtents *x, const uint8_t id[BF_PROTO_SESSION_SIZE],
                                    GError **errp);
/* ... and ends. A session that holds nothing and has no connection goes. */
void bf_extents_disconnect(BfExtents *x, BfExtentSession *s);
gpointer bf_extents_session_data(BfExtentSession *s);

/*
 * HELLO for @s: @hello must name it; a new session takes its size, a known one must have
 * the same. *stored: the pages it holds.
 */
gboolean bf_extents_hello(BfExtents *x, BfExtentSession *s, const BfHello *hello,
                          uint64_t *stored, BfProtoError *code, GError **errp);
/* Whether @s said HELLO (and was not dropped since): its size in pages, else 0. */
uint64_t bf_extents_session_size(BfExtentSession *s);

/*
 * Where @extent of @s is, lending it first if @create. Refusals: BF_PROTO_ERR_NO_SPACE
 * (capacity reached), BF_PROTO_ERR_NOT_STORED (not lent and not @create).
 */
gboolean bf_extents_grant(BfExtents *x, BfExtentSession *s, uint64_t extent, gboolean create,
                          BfGrant *grant, BfProtoError *code, GError **errp);
/* The client wrote these pages: each must be in a lent extent (else a protocol error). */
gboolean bf_extents_commit(BfExtents *x, BfExtentSession *s, const BfPageList *pages,
                           GError **errp);
/* The client dropped these pages (those not stored are ignored). */
void bf_extents_free_pages(BfExtents *x, BfExtentSession *s, const BfPageList *pages);
/* Takes back those of @extents that hold no page; returns how many, listed in @released. */
uint32_t bf_extents_release(BfExtents *x, BfExtentSession *s, const BfPageList *extents,
                            uint64_t *released);
/* BYE: takes back everything @s holds; it needs a HELLO again. */
void bf_extents_drop(BfExtents *x, BfExtentSession *s);

uint64_t bf_extents_session_pages(BfExtentSession *s);
uint64_t bf_extents_lent(BfExtents *x);    /* extents lent, all sessions */

#endif
