/*
 * bf-store-file: the persistent form of a memory node's store.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-store-file.h"
#include "bf-error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define BF_STORE_FILE_MAGIC "BFSTORE1"
#define BF_STORE_FILE_ALIGN (2u << 20)

typedef struct {
    char magic[8];
    uint64_t capacity_slots;
    uint64_t max_sessions;
    uint64_t page_size;
} BfFileHeader;

typedef struct {
    uint64_t in_use;
    uint8_t id[BF_PROTO_SESSION_SIZE];
    uint64_t pages;
    char name[BF_PROTO_MAX_NAME + 1];
    uint8_t pad[127 - 8 - BF_PROTO_SESSION_SIZE - 8 - BF_PROTO_MAX_NAME];
} BfFileSession;

typedef struct {
    uint32_t session;               /* index + 1; 0: the slot is free */
    uint32_t pad;
    uint64_t page;
} BfFileSlot;

G_STATIC_ASSERT(sizeof(BfFileSession) == 128);

struct BfStoreFile {
    int fd;
    uint8_t *map;
    uint64_t size;
    uint64_t capacity_slots;
    uint64_t data_offset;
    BfFileHeader *header;
    BfFileSession *sessions;
    BfFileSlot *slots;
};

static uint64_t bf_align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) / a * a;
}

BfStoreFile *bf_store_file_open(const char *path, uint64_t capacity_slots, GError **errp)
{
    g_autofree BfStoreFile *f = g_new0(BfStoreFile, 1);
    uint64_t tables = sizeof(BfFileHeader) +
                      BF_STORE_FILE_MAX_SESSIONS * sizeof(BfFileSession) +
                      capacity_slots * sizeof(BfFileSlot);
    struct stat st;
    gboolean fresh;

    f->capacity_slots = capacity_slots;
    f->data_offset = bf_align_up(tables, BF_STORE_FILE_ALIGN);
    f->size = f->data_offset + capacity_slots * BF_PROTO_PAGE_SIZE;
    f->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (f->fd < 0 || fstat(f->fd, &st) < 0) {
        g_set_error(errp, BF_ERROR, BF_ERROR_FAILED, "cannot open store '%s': %s", path,
                    g_strerror(errno));
        goto fail;
    }
    fresh = st.st_size == 0;
    if (fresh && ftruncate(f->fd, f->size) < 0) {
        g_set_error(errp, BF_ERROR, BF_ERROR_FAILED, "cannot size store '%s': %s", path,
                    g_strerror(errno));
        goto fail;
    }
    if (!fresh && (uint64_t)st.st_size != f->size) {
        g_set_error(errp, BF_ERROR, BF_ERROR_INVALID, "store '%s' is %" G_GUINT64_FORMAT
                    " bytes, not the %" G_GUINT64_FORMAT " of this capacity: reuse it with "
                    "the capacity it was created with", path, (guint64)st.st_size,
                    (guint64)f->size);
        goto fail;
    }
    f->map = mmap(NULL, f->size, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        g_set_error(errp, BF_ERROR, BF_ERROR_FAILED, "cannot map store '%s': %s", path,
                    g_strerror(errno));
        goto fail;
    }
    f->header = (BfFileHeader *)f->map;
    f->sessions = (BfFileSession *)(f->map + sizeof(BfFileHeader));
    f->slots = (BfFileSlot *)(f->sessions + BF_STORE_FILE_MAX_SESSIONS);
    if (fresh) {
        memcpy(f->header->magic, BF_STORE_FILE_MAGIC, 8);
        f->header->capacity_slots = capacity_slots;
        f->header->max_sessions = BF_STORE_FILE_MAX_SESSIONS;
        f->header->page_size = BF_PROTO_PAGE_SIZE;
    } else if (memcmp(f->header->magic, BF_STORE_FILE_MAGIC, 8) ||
               f->header->capacity_slots != capacity_slots ||
               f->header->max_sessions != BF_STORE_FILE_MAX_SESSIONS ||
               f->header->page_size != BF_PROTO_PAGE_SIZE) {
        g_set_error(errp, BF_ERROR, BF_ERROR_INVALID, "'%s' is not a Blowfish store of this "
                    "capacity", path);
        goto fail;
    }
    return g_steal_pointer(&f);

fail:
    bf_store_file_close(g_steal_pointer(&f));
    return NULL;
}

void bf_store_file_close(BfStoreFile *f)
{
    if (!f) {
        return;
    }
    if (f->map) {
        munmap(f->map, f->size);
    }
    if (f->fd >= 0) {
        close(f->fd);
    }
    g_free(f);
}

uint8_t *bf_store_file_slot(BfStoreFile *f, uint32_t slot)
{
    return f->map + f->data_offset + (uint64_t)(slot - 1) * BF_PROTO_PAGE_SIZE;
}

int bf_store_file_add_session(BfStoreFile *f, const BfHello *hello)
{
    for (int i = 0; i < BF_STORE_FILE_MAX_SESSIONS; i++) {
        BfFileSession *s = &f->sessions[i];

        if (!s->in_use) {
            memcpy(s->id, hello->session, BF_PROTO_SESSION_SIZE);
            s->pages = hello->pages;
            g_strlcpy(s->name, hello->name, sizeof(s->name));
            s->in_use = 1;
            return i;
        }
    }
    return -1;
}

void bf_store_file_remove_session(BfStoreFile *f, int index)
{
    f->sessions[index].in_use = 0;
}

void bf_store_file_set_slot(BfStoreFile *f, uint32_t slot, int index, uint64_t page)
{
    BfFileSlot *e = &f->slots[slot - 1];

    e->page = page;
    /* Last: the entry names a session only once it is complete. */
    atomic_store_explicit((_Atomic uint32_t *)&e->session, index + 1, memory_order_release);
}

void bf_store_file_clear_slot(BfStoreFile *f, uint32_t slot)
{
    f->slots[slot - 1].session = 0;
    fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
              f->data_offset + (uint64_t)(slot - 1) * BF_PROTO_PAGE_SIZE, BF_PROTO_PAGE_SIZE);
}

void bf_store_file_recover(BfStoreFile *f, const BfStoreFileVisitor *v, void *opaque)
{
    for (int i = 0; i < BF_STORE_FILE_MAX_SESSIONS; i++) {
        BfFileSession *s = &f->sessions[i];

        if (s->in_use) {
            BfHello hello = { .pages = s->pages };

            memcpy(hello.session, s->id, BF_PROTO_SESSION_SIZE);
            g_strlcpy(hello.name, s->name, sizeof(hello.name));
            v->session(opaque, i, &hello);
        }
    }
    for (uint64_t slot = f->capacity_slots; slot >= 1; slot--) {
        BfFileSlot *e = &f->slots[slot - 1];

        if (e->session && f->sessions[e->session - 1].in_use &&
            e->page < f->sessions[e->session - 1].pages) {
            v->slot(opaque, slot, e->session - 1, e->page);
        } else {
            e->session = 0;
            v->free_slot(opaque, slot);
        }
    }
}
