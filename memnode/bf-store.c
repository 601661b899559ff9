/*
 * bf-store: a memory node's sessions and page slots.
 *
 * A session's page table has two levels: a directory of leaves, each mapping 1024 page
 * numbers to slot numbers (0: not stored), allocated when a page in its range is first
 * stored. Slots are numbered from 1 and live in 2 MiB chunks mapped on demand, or in a store
 * file (bf-store-file.c) that outlives the process; a freed slot goes back on a free list
 * and its memory back to the host. An owner's account counts the slots of its sessions.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-store.h"
#include "bf-error.h"
#include "bf-store-file.h"

#include <sys/mman.h>

#define BF_CHUNK_SLOTS 512u
#define BF_CHUNK_SIZE (BF_CHUNK_SLOTS * BF_PROTO_PAGE_SIZE)
#define BF_LEAF_PAGES 1024u

typedef struct {
    char *name;
    uint64_t quota;             /* pages; 0: the store's default */
    uint64_t used;              /* pages its sessions hold */
} BfStoreOwner;

struct BfStoreSession {
    char *key;                  /* the session id in hex */
    BfStoreOwner *owner;        /* NULL: none (yet, after a restart) */
    char *name;
    uint64_t pages;
    uint64_t stored;
    uint32_t **leaves;          /* DIV_ROUND_UP(pages, BF_LEAF_PAGES) */
    guint refs;                 /* connections attached */
    gboolean dropped;           /* its pages are gone; freed at the last detach */
    int file_index;             /* its entry in the store file */
};

struct BfStore {
    GMutex lock;
    uint64_t capacity_slots;
    uint64_t used_slots;
    uint32_t max_chunks;
    uint32_t nr_chunks;
    uint8_t **chunks;           /* fixed size: entries are published once, under @lock */
    GArray *free_slots;         /* uint32_t, a stack */
    GHashTable *sessions;       /* key -> BfStoreSession */
    GHashTable *owners;         /* name -> BfStoreOwner */
    uint64_t default_quota;     /* pages; 0: none */
    BfStoreFile *file;          /* NULL: slots in anonymous memory chunks */
};

static void bf_store_session_free_leaves(BfStoreSession *s)
{
    uint64_t nr_leaves = (s->pages + BF_LEAF_PAGES - 1) / BF_LEAF_PAGES;

    for (uint64_t i = 0; i < nr_leaves; i++) {
        g_free(s->leaves[i]);
        s->leaves[i] = NULL;
    }
}

static void bf_store_owner_free(gpointer data)
{
    BfStoreOwner *owner = data;

    g_free(owner->name);
    g_free(owner);
}

static void bf_store_session_free(gpointer data)
{
    BfStoreSession *s = data;

    bf_store_session_free_leaves(s);
    g_free(s->leaves);
    g_free(s->name);
    g_free(s->key);
    g_free(s);
}

BfStore *bf_store_new(uint64_t capacity_bytes)
{
    BfStore *store = g_new0(BfStore, 1);
    uint64_t max_chunks;

    g_mutex_init(&store->lock);
    store->capacity_slots = MIN(capacity_bytes / BF_PROTO_PAGE_SIZE, (uint64_t)UINT32_MAX - 1);
    max_chunks = (store->capacity_slots + BF_CHUNK_SLOTS - 1) / BF_CHUNK_SLOTS;
    store->max_chunks = max_chunks;
    store->chunks = g_new0(uint8_t *, max_chunks);
    store->free_slots = g_array_new(FALSE, FALSE, sizeof(uint32_t));
    store->sessions = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
                                            bf_store_session_free);
    store->owners = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, bf_store_owner_free);
    return store;
}

void bf_store_free(BfStore *store)
{
    if (!store) {
        return;
    }
    g_hash_table_destroy(store->sessions);
    g_hash_table_destroy(store->owners);
    bf_store_file_close(store->file);
    for (uint32_t i = 0; i < store->nr_chunks; i++) {
        munmap(store->chunks[i], BF_CHUNK_SIZE);
    }
    g_free(store->chunks);
    g_array_free(store->free_slots, TRUE);
    g_mutex_clear(&store->lock);
    g_free(store);
}

static uint8_t *bf_store_slot(BfStore *store, uint32_t slot)
{
    if (store->file) {
        return bf_store_file_slot(store->file, slot);
    }
    return store->chunks[(slot - 1) / BF_CHUNK_SLOTS] +
           (uint64_t)((slot - 1) % BF_CHUNK_SLOTS) * BF_PROTO_PAGE_SIZE;
}

/* A free slot, or 0 when the store is full. Called with @lock held. */
static uint32_t bf_store_alloc_slot(BfStore *store)
{
    uint32_t slot;

    if (store->used_slots >= store->capacity_slots) {
        return 0;
    }
    if (store->free_slots->len == 0) {
        void *chunk;

        g_assert(!store->file);     /* its free list holds every free slot */

        g_assert(store->nr_chunks < store->max_chunks);
        /*
         * Populated at once, as a huge page where the host has one: a fault per 4 KiB slot
         * would cost more than the copy into it. Freed slots still go back one by one.
         */
        chunk = mmap(NULL, BF_CHUNK_SIZE, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (chunk == MAP_FAILED) {
            return 0;
        }
        madvise(chunk, BF_CHUNK_SIZE, MADV_HUGEPAGE);
        madvise(chunk, BF_CHUNK_SIZE, MADV_POPULATE_WRITE);
        store->chunks[store->nr_chunks++] = chunk;
        /* Push in reverse so that slots are handed out in address order. */
        for (uint32_t i = BF_CHUNK_SLOTS; i > 0; i--) {
            uint32_t s = (store->nr_chunks - 1) * BF_CHUNK_SLOTS + i;

            if (s <= store->capacity_slots) {
                g_array_append_val(store->free_slots, s);
            }
        }
    }
    slot = g_array_index(store->free_slots, uint32_t, store->free_slots->len - 1);
    g_array_set_size(store->free_slots, store->free_slots->len - 1);
    store->used_slots++;
    return slot;
}

/* Frees @slot of @s and gives its memory back to the host. Called with @lock held. */
static void bf_store_release_slot(BfStore *store, BfStoreSession *s, uint32_t slot)
{
    if (s->owner) {
        s->owner->used--;
    }
    if (store->file) {
        bf_store_file_clear_slot(store->file, slot);
    } else {
        madvise(bf_store_slot(store, slot), BF_PROTO_PAGE_SIZE, MADV_DONTNEED);
    }
    g_array_append_val(store->free_slots, slot);
    store->used_slots--;
}

static gboolean bf_store_check_pages(BfStoreSession *s, uint32_t count, const uint64_t *pages,
                                     BfProtoError *code, GError **errp)
{
    for (uint32_t i = 0; i < count; i++) {
        if (pages[i] >= s->pages) {
            *code = BF_PROTO_ERR_PROTOCOL;
            g_set_error(errp, BF_ERROR, BF_ERROR_PROTOCOL, "page %" G_GUINT64_FORMAT
                        " is beyond the session's %" G_GUINT64_FORMAT " pages",
                        (guint64)pages[i], (guint64)s->pages);
            return FALSE;
        }
    }
    return TRUE;
}

static uint32_t *bf_store_entry(BfStoreSession *s, uint64_t page, gboolean create)
{
    uint32_t **leaf = &s->leaves[page / BF_LEAF_PAGES];

    if (!*leaf) {
        if (!create) {
            return NULL;
        }
        *leaf = g_new0(uint32_t, BF_LEAF_PAGES);
    }
    return &(*leaf)[page % BF_LEAF_PAGES];
}

static char *bf_store_key(const uint8_t id[BF_PROTO_SESSION_SIZE])
{
    GString *key = g_string_sized_new(2 * BF_PROTO_SESSION_SIZE);

    for (unsigned i = 0; i < BF_PROTO_SESSION_SIZE; i++) {
        g_string_append_printf(key, "%02x", id[i]);
    }
    return g_string_free(key, FALSE);
}

/* A session with no pages, in the session table. Called with @lock held. */
static BfStoreSession *bf_store_session_new(BfStore *store, const BfHello *hello,
                                            int file_index)
{
    BfStoreSession *s = g_new0(BfStoreSession, 1);

    s->key = bf_store_key(hello->session);
    s->name = g_strdup(hello->name);
    s->pages = hello->pages;
    s->leaves = g_new0(uint32_t *, (s->pages + BF_LEAF_PAGES - 1) / BF_LEAF_PAGES);
    s->file_index = file_index;
    g_hash_table_insert(store->sessions, s->key, s);
    return s;
}

static BfStoreOwner *bf_store_owner(BfStore *store, const char *name)
{
    BfStoreOwner *owner = g_hash_table_lookup(store->owners, name);

    if (!owner) {
        owner = g_new0(BfStoreOwner, 1);
        owner->name = g_strdup(name);
        g_hash_table_insert(store->owners, owner->name, owner);
    }
    return owner;
}

/* The pages @owner may hold (G_MAXUINT64: no quota). Called with @lock held. */
static uint64_t bf_store_owner_quota(BfStore *store, const BfStoreOwner *owner)
{
    uint64_t quota = owner->quota ? owner->quota : store->default_quota;

    return quota ? quota : G_MAXUINT64;
}

/* Refuses pages that would take @owner past its quota. Called with @lock held. */
static gboolean bf_store_over_quota(BfStore *store, const BfStoreOwner *owner,
                                    BfProtoError *code, GError **errp)
{
    *code = BF_PROTO_ERR_QUOTA;
    g_set_error(errp, BF_ERROR, BF_ERROR_POOL, "key '%s' is at its quota (%" G_GUINT64_FORMAT
                " pages)", owner->name, (guint64)bf_store_owner_quota(store, owner));
    return FALSE;
}

void bf_store_set_quota(BfStore *store, const char *owner, uint64_t bytes)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&store->lock);
    uint64_t pages = bytes / BF_PROTO_PAGE_SIZE;

    if (owner) {
        bf_store_owner(store, owner)->quota = pages;
    } else {
        store->default_quota = pages;
    }
}

BfStoreSession *bf_store_attach(BfStore *store, const BfHello *hello, const char *owner,
                                uint64_t *stored, BfProtoError *code, GError **errp)
{
    g_autofree char *key = bf_store_key(hello->session);
    BfStoreSession *s;
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&store->lock);

    s = g_hash_table_lookup(store->sessions, key);
    if (s && s->pages != hello->pages) {
        *code = BF_PROTO_ERR_PROTOCOL;
        g_set_error(errp, BF_ERROR, BF_ERROR_PROTOCOL, "session %s ('%s') has %"
                    G_GUINT64_FORMAT " pages, not %" G_GUINT64_FORMAT, key, s->name,
                    (guint64)s->pages, (guint64)hello->pages);
        return NULL;
    }
    if (!s) {
        int file_index = store->file ? bf_store_file_add_session(store->file, hello) : -1;

        if (store->file && file_index < 0) {
            *code = BF_PROTO_ERR_NO_SPACE;
            g_set_error(errp, BF_ERROR, BF_ERROR_POOL, "the store holds %d sessions, its "
                        "most", BF_STORE_FILE_MAX_SESSIONS);
            return NULL;
        }
        s = bf_store_session_new(store, hello, file_index);
    }
    if (owner && !s->owner) {
        s->owner = bf_store_owner(store, owner);
        s->owner->used += s->stored;
    }
    s->refs++;
    *stored = s->stored;
    return s;
}

/* Called with @lock held. */
static void bf_store_unref(BfStoreSession *s)
{
    if (--s->refs == 0 && s->dropped) {
        bf_store_session_free(s);
    }
}

void bf_store_detach(BfStore *store, BfStoreSession *session)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&store->lock);

    bf_store_unref(session);
}

void bf_store_drop(BfStore *store, BfStoreSession *s)
{
    uint64_t nr_leaves = (s->pages + BF_LEAF_PAGES - 1) / BF_LEAF_PAGES;
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&store->lock);

    if (!s->dropped) {
        for (uint64_t i = 0; i < nr_leaves; i++) {
            for (uint32_t j = 0; s->leaves[i] && j < BF_LEAF_PAGES; j++) {
                uint32_t slot = s->leaves[i][j];

                if (slot) {
                    bf_store_release_slot(store, s, slot);
                }
            }
        }
        bf_store_session_free_leaves(s);
        if (store->file) {
            bf_store_file_remove_session(store->file, s->file_index);
        }
        s->stored = 0;
        s->dropped = TRUE;
        g_hash_table_steal(store->sessions, s->key);
    }
    bf_store_unref(s);
}

/* Refuses requests on a session another connection dropped. Called with @lock held. */
static gboolean bf_store_check_live(BfStoreSession *s, BfProtoError *code, GError **errp)
{
    if (s->dropped) {
        *code = BF_PROTO_ERR_NO_SESSION;
        g_set_error(errp, BF_ERROR, BF_ERROR_POOL, "session '%s' was dropped", s->name);
        return FALSE;
    }
    return TRUE;
}

gboolean bf_store_write(BfStore *store, BfStoreSession *s, uint32_t count,
                        const uint64_t *pages, const void *const *data,
                        BfProtoError *code, GError **errp)
{
    uint32_t *fresh = g_newa(uint32_t, count);
    uint32_t nr_fresh = 0;
    g_autoptr(GMutexLocker) locker = NULL;

    if (!bf_store_check_pages(s, count, pages, code, errp)) {
        return FALSE;
    }
    /* Connections of one session run concurrently: its table and slots need the lock. */
    locker = g_mutex_locker_new(&store->lock);
    if (!bf_store_check_live(s, code, errp)) {
        return FALSE;
    }
    if (s->owner) {
        uint64_t quota = bf_store_owner_quota(store, s->owner), new_pages = 0;

        for (uint32_t i = 0; i < count; i++) {
            uint32_t *entry = bf_store_entry(s, pages[i], FALSE);

            /* A page named twice in one request counts twice here: the stricter answer. */
            new_pages += !entry || !*entry;
        }
        if (s->owner->used + new_pages > quota) {
            return bf_store_over_quota(store, s->owner, code, errp);
        }
    }
    for (uint32_t i = 0; i < count; i++) {
        uint32_t *entry = bf_store_entry(s, pages[i], TRUE);

        if (!*entry) {
            *entry = bf_store_alloc_slot(store);
            if (!*entry) {
                /* Full: undo this request's new slots, store nothing. */
                for (uint32_t j = 0; j < i; j++) {
                    uint32_t *e = bf_store_entry(s, pages[j], FALSE);

                    for (uint32_t k = 0; k < nr_fresh; k++) {
                        if (*e == fresh[k]) {
                            *e = 0;
                        }
                    }
                }
                for (uint32_t k = 0; k < nr_fresh; k++) {
                    bf_store_release_slot(store, s, fresh[k]);
                }
                s->stored -= nr_fresh;
                *code = BF_PROTO_ERR_NO_SPACE;
                g_set_error(errp, BF_ERROR, BF_ERROR_POOL, "the memory node is full "
                            "(%" G_GUINT64_FORMAT " pages)", (guint64)store->capacity_slots);
                return FALSE;
            }
            fresh[nr_fresh++] = *entry;
            s->stored++;
            if (s->owner) {
                s->owner->used++;
            }
        }
    }
    for (uint32_t i = 0; i < count; i++) {
        memcpy(bf_store_slot(store, *bf_store_entry(s, pages[i], FALSE)), data[i],
               BF_PROTO_PAGE_SIZE);
    }
    /* The data first, then what names it: a crash between leaves the slot free. */
    for (uint32_t i = 0; store->file && i < count; i++) {
        uint32_t slot = *bf_store_entry(s, pages[i], FALSE);

        for (uint32_t k = 0; k < nr_fresh; k++) {
            if (fresh[k] == slot) {
                bf_store_file_set_slot(store->file, slot, s->file_index, pages[i]);
                fresh[k] = 0;
            }
        }
    }
    return TRUE;
}

gboolean bf_store_read(BfStore *store, BfStoreSession *s, uint32_t count,
                       const uint64_t *pages, void *const *dest,
                       BfProtoError *code, GError **errp)
{
    g_autoptr(GMutexLocker) locker = NULL;

    if (!bf_store_check_pages(s, count, pages, code, errp)) {
        return FALSE;
    }
    locker = g_mutex_locker_new(&store->lock);
    if (!bf_store_check_live(s, code, errp)) {
        return FALSE;
    }
    for (uint32_t i = 0; i < count; i++) {
        uint32_t *entry = bf_store_entry(s, pages[i], FALSE);

        if (!entry || !*entry) {
            *code = BF_PROTO_ERR_NOT_STORED;
            g_set_error(errp, BF_ERROR, BF_ERROR_POOL, "page %" G_GUINT64_FORMAT
                        " is not stored", (guint64)pages[i]);
            return FALSE;
        }
        memcpy(dest[i], bf_store_slot(store, *entry), BF_PROTO_PAGE_SIZE);
    }
    return TRUE;
}

void bf_store_free_pages(BfStore *store, BfStoreSession *s, uint32_t count,
                         const uint64_t *pages)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&store->lock);

    if (s->dropped) {
        return;
    }
    for (uint32_t i = 0; i < count; i++) {
        uint32_t *entry = pages[i] < s->pages ? bf_store_entry(s, pages[i], FALSE) : NULL;

        if (entry && *entry) {
            bf_store_release_slot(store, s, *entry);
            *entry = 0;
            s->stored--;
        }
    }
}

gboolean bf_store_reserve(BfStore *store, const char *owner, uint64_t pages,
                          BfProtoError *code, GError **errp)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&store->lock);
    BfStoreOwner *o = owner ? bf_store_owner(store, owner) : NULL;

    if (pages > store->capacity_slots - store->used_slots) {
        *code = BF_PROTO_ERR_NO_SPACE;
        g_set_error(errp, BF_ERROR, BF_ERROR_POOL, "the memory node is full");
        return FALSE;
    }
    if (o && o->used + pages > bf_store_owner_quota(store, o)) {
        return bf_store_over_quota(store, o, code, errp);
    }
    store->used_slots += pages;
    if (o) {
        o->used += pages;
    }
    return TRUE;
}

void bf_store_unreserve(BfStore *store, const char *owner, uint64_t pages)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&store->lock);

    g_assert(pages <= store->used_slots);
    store->used_slots -= pages;
    if (owner) {
        BfStoreOwner *o = bf_store_owner(store, owner);

        g_assert(pages <= o->used);
        o->used -= pages;
    }
}

uint64_t bf_store_session_pages(BfStore *store, BfStoreSession *session)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&store->lock);

    return session->stored;
}

/* The pages @owner (NULL: none) may still store. Called with @lock held. */
static uint64_t bf_store_owner_room(BfStore *store, const BfStoreOwner *owner)
{
    uint64_t room = store->capacity_slots - store->used_slots;

    if (owner) {
        uint64_t quota = bf_store_owner_quota(store, owner);

        room = MIN(room, quota > owner->used ? quota - owner->used : 0);
    }
    return room;
}

uint64_t bf_store_session_room(BfStore *store, BfStoreSession *session)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&store->lock);

    return bf_store_owner_room(store, session->owner);
}

uint64_t bf_store_room(BfStore *store, const char *owner)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&store->lock);

    return bf_store_owner_room(store, owner ? bf_store_owner(store, owner) : NULL);
}

void bf_store_get_stats(BfStore *store, BfStoreStats *stats)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&store->lock);
    GHashTableIter iter;
    gpointer value;

    stats->capacity_pages = store->capacity_slots;
    stats->stored_pages = store->used_slots;
    stats->sessions = g_hash_table_size(store->sessions);
    stats->attached_sessions = 0;
    g_hash_table_iter_init(&iter, store->sessions);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        stats->attached_sessions += ((BfStoreSession *)value)->refs > 0;
    }
}

typedef struct {
    BfStore *store;
    GPtrArray *by_index;        /* file index -> BfStoreSession */
} BfStoreRecovery;

static void bf_store_recover_session(void *opaque, int index, const BfHello *hello)
{
    BfStoreRecovery *r = opaque;

    g_ptr_array_set_size(r->by_index, MAX(r->by_index->len, (guint)index + 1));
    r->by_index->pdata[index] = bf_store_session_new(r->store, hello, index);
}

static void bf_store_recover_slot(void *opaque, uint32_t slot, int index, uint64_t page)
{
    BfStoreRecovery *r = opaque;
    BfStoreSession *s = r->by_index->pdata[index];

    *bf_store_entry(s, page, TRUE) = slot;
    s->stored++;
    r->store->used_slots++;
}

static void bf_store_recover_free_slot(void *opaque, uint32_t slot)
{
    BfStoreRecovery *r = opaque;

    g_array_append_val(r->store->free_slots, slot);
}

BfStore *bf_store_open(const char *path, uint64_t capacity_bytes, GError **errp)
{
    static const BfStoreFileVisitor visitor = {
        .session = bf_store_recover_session,
        .slot = bf_store_recover_slot,
        .free_slot = bf_store_recover_free_slot,
    };
    BfStore *store = bf_store_new(capacity_bytes);
    BfStoreRecovery recovery = { .store = store, .by_index = g_ptr_array_new() };

    store->file = bf_store_file_open(path, store->capacity_slots, errp);
    if (!store->file) {
        bf_store_free(store);
        g_ptr_array_free(recovery.by_index, TRUE);
        return NULL;
    }
    bf_store_file_recover(store->file, &visitor, &recovery);
    g_ptr_array_free(recovery.by_index, TRUE);
    return store;
}
