/*
 * bf-store-file: the persistent form of a memory node's store (blowfish-memnode --store), so
 * that a node killed and restarted on the same file still holds every page it acknowledged.
 * Put the file on tmpfs (/dev/shm) for memory speed: its pages are allocated as slots are
 * written and given back (hole punched) as they are freed.
 *
 * Layout: a header, a session table, a slot table (which session page each slot holds), then
 * the slots' data. The store writes a slot's data before its table entry, and acknowledges a
 * write only after both, so a crash leaves no entry pointing at data not yet written.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_STORE_FILE_H
#define BF_STORE_FILE_H

#include "bf-proto.h"

#define BF_STORE_FILE_MAX_SESSIONS 4096

typedef struct BfStoreFile BfStoreFile;

/* Opens (or creates) the store file at @path for @capacity_slots slots. */
BfStoreFile *bf_store_file_open(const char *path, uint64_t capacity_slots, GError **errp);
void bf_store_file_close(BfStoreFile *file);

uint8_t *bf_store_file_slot(BfStoreFile *file, uint32_t slot);

/* Records a new session; returns its index, or -1 if the table is full. */
int bf_store_file_add_session(BfStoreFile *file, const BfHello *hello);
void bf_store_file_remove_session(BfStoreFile *file, int index);

/* Records that @slot (its data written) holds @page of session @index. */
void bf_store_file_set_slot(BfStoreFile *file, uint32_t slot, int index, uint64_t page);
/* Forgets @slot and gives its memory back. */
void bf_store_file_clear_slot(BfStoreFile *file, uint32_t slot);

typedef struct {
    void (*session)(void *opaque, int index, const BfHello *hello);
    void (*slot)(void *opaque, uint32_t slot, int index, uint64_t page);
    void (*free_slot)(void *opaque, uint32_t slot);
} BfStoreFileVisitor;

/* Walks what the file holds: every session, then every slot (used or free, descending). */
void bf_store_file_recover(BfStoreFile *file, const BfStoreFileVisitor *visitor,
                           void *opaque);

#endif
