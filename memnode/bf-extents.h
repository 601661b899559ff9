/*
 * bf-extents: the memory node's bookkeeping for the RDMA transport. A client there writes and
 * reads pages itself, so the node lends each session extents: BF_PROTO_EXTENT_PAGES pages of
 * the session at a time, each in memory of its own. The node tracks which pages of an extent
 * the client committed, so that it can count them, and give an extent back when the client
 * releases it empty.
 *
 * Lending is left to the caller's ops (allocating memory; plain memory in the unit tests); the
 * caller makes it reachable to each of the session's connections (bf-node-rdma.c registers it
 * in the connection's protection domain). Extents count against the store's capacity and
 * their owner's quota. Sessions are named by the client's 16-byte session id (within the
 * client's key) and live as long as they hold extents or have connections. Used from one
 * thread.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_EXTENTS_H
#define BF_EXTENTS_H

#include "bf-store.h"

#define BF_EXTENT_SIZE ((size_t)BF_PROTO_EXTENT_PAGES * BF_PROTO_PAGE_SIZE)

typedef struct BfExtentOps {
    /* Makes BF_EXTENT_SIZE bytes of memory to lend; its address goes to @grant->addr. */
    gpointer (*lend)(gpointer opaque, BfGrant *grant, GError **errp);
    void (*take_back)(gpointer opaque, gpointer lent);
} BfExtentOps;

typedef struct BfExtents BfExtents;
typedef struct BfExtentSession BfExtentSession;

BfExtents *bf_extents_new(BfStore *store, const BfExtentOps *ops, gpointer opaque);
void bf_extents_free(BfExtents *x);

/*
 * A connection's HELLO: attaches it to session @id (as the node files it: see
 * bf_auth_session_in_key), making the session if new, with @pages pages, on behalf of @owner
 * (the key the client proved, or NULL), whose quota its extents count against. A known
 * session must have the same size (else BF_PROTO_ERR_NO_SESSION). *stored: the pages it holds.
 */
BfExtentSession *bf_extents_attach(BfExtents *x, const uint8_t id[BF_PROTO_SESSION_SIZE],
                                   const char *owner, uint64_t pages, uint64_t *stored,
                                   BfProtoError *code, GError **errp);
/* The connection ends. A session that holds nothing and has no connection goes. */
void bf_extents_detach(BfExtents *x, BfExtentSession *s);

/* The size of @s in pages; 0 once dropped (BYE). */
uint64_t bf_extents_session_size(BfExtentSession *s);

/*
 * Where @extent of @s is (@grant's address; *lent: what ops->lend returned for it), lending
 * it first if @create. Refusals: BF_PROTO_ERR_NO_SPACE (capacity reached),
 * BF_PROTO_ERR_QUOTA (the owner's quota reached), BF_PROTO_ERR_NOT_STORED (not lent and not
 * @create).
 */
gboolean bf_extents_grant(BfExtents *x, BfExtentSession *s, uint64_t extent, gboolean create,
                          BfGrant *grant, gpointer *lent, BfProtoError *code, GError **errp);
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
