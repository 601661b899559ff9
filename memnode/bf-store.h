/*
 * bf-store: the page store of a memory node. A store holds sessions (one per guest RAM region,
 * named by the client's 16-byte session id); a session maps its page numbers to 4 KiB slots.
 * Memory grows with the pages stored, in 2 MiB chunks, up to the store's capacity; freed
 * slots give their memory back to the host at once.
 *
 * A client may attach several connections to its session (the engine has one per thread);
 * the store serializes them, and all sessions, under one lock.
 *
 * A session may belong to an owner (the key its client proved): the pages of all an owner's
 * sessions count against the owner's quota, if it has one.
 * blowfish-memnode serves a store over the network; the engine's unit tests and benchmarks
 * use one in-process (bf-channel-local).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_STORE_H
#define BF_STORE_H

#include "bf-proto.h"

typedef struct BfStore BfStore;
typedef struct BfStoreSession BfStoreSession;

typedef struct BfStoreStats {
    uint64_t capacity_pages;
    uint64_t stored_pages;
    uint64_t sessions;
    uint64_t attached_sessions;
} BfStoreStats;

/* A store in anonymous memory: its pages go with the process. */
BfStore *bf_store_new(uint64_t capacity_bytes);
/* A store in the file at @path (see bf-store-file.h), with what it held last time. */
BfStore *bf_store_open(const char *path, uint64_t capacity_bytes, GError **errp);
void bf_store_free(BfStore *store);

/*
 * The most bytes the sessions of @owner may hold together (0: no quota); with @owner NULL,
 * the quota of every owner not given one of its own. Takes effect for later writes.
 */
void bf_store_set_quota(BfStore *store, const char *owner, uint64_t bytes);

/*
 * Attaches to the session @hello names, creating it if new, on behalf of @owner (NULL: none).
 * Fails (BfProtoError in *code) if it exists with another size. *stored is the number of
 * pages it already holds. A session belongs to the first owner that attaches it; after a
 * restart on a store file, its pages count against that owner again from its first attach.
 */
BfStoreSession *bf_store_attach(BfStore *store, const BfHello *hello, const char *owner,
                                uint64_t *stored, BfProtoError *code, GError **errp);
/* Detaches, keeping the pages for the next attach. */
void bf_store_detach(BfStore *store, BfStoreSession *session);
/* Frees the session and all its pages (BYE), and detaches. Its other connections get
 * BF_PROTO_ERR_NO_SESSION from then on. */
void bf_store_drop(BfStore *store, BfStoreSession *session);

/*
 * Stores @count pages (numbers below the session's size) from @data. All or nothing: if the
 * store lacks room for the pages not stored yet, returns FALSE with BF_PROTO_ERR_NO_SPACE,
 * or BF_PROTO_ERR_QUOTA if they would take the session's owner past its quota, and stores
 * none.
 */
gboolean bf_store_write(BfStore *store, BfStoreSession *session, uint32_t count,
                        const uint64_t *pages, const void *const *data,
                        BfProtoError *code, GError **errp);
/* Copies @count pages to @dest; every page must be stored (else BF_PROTO_ERR_NOT_STORED). */
gboolean bf_store_read(BfStore *store, BfStoreSession *session, uint32_t count,
                       const uint64_t *pages, void *const *dest,
                       BfProtoError *code, GError **errp);
/* Frees the pages (those not stored are ignored). */
void bf_store_free_pages(BfStore *store, BfStoreSession *session, uint32_t count,
                         const uint64_t *pages);

/*
 * Counts @pages of capacity as used by @owner (NULL: none), for memory held outside the store
 * (the RDMA transport's extents). FALSE when the store lacks the room (BF_PROTO_ERR_NO_SPACE)
 * or the pages would take @owner past its quota (BF_PROTO_ERR_QUOTA).
 */
gboolean bf_store_reserve(BfStore *store, const char *owner, uint64_t pages,
                          BfProtoError *code, GError **errp);
void bf_store_unreserve(BfStore *store, const char *owner, uint64_t pages);

uint64_t bf_store_session_pages(BfStore *store, BfStoreSession *session);
/* How many more pages @session may store now: the store's room, or its owner's if less. */
uint64_t bf_store_session_room(BfStore *store, BfStoreSession *session);
/* The same for any session of @owner (NULL: none). */
uint64_t bf_store_room(BfStore *store, const char *owner);
void bf_store_get_stats(BfStore *store, BfStoreStats *stats);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(BfStore, bf_store_free)

#endif
