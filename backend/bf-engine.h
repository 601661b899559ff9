/*
 * bf-engine: one Blowfish-managed guest RAM region. The engine owns the memfd that holds
 * guest RAM, the mapping handed to the guest (registered with a userfaultfd), the threads that
 * serve its faults, and the link to the memory pool. It knows nothing of QEMU: the QEMU glue
 * (hw/) maps bf_engine_guest_ram() as a RAM block and forwards QMP requests here.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_ENGINE_H
#define BF_ENGINE_H

#include <glib.h>
#include <stdint.h>

#define BF_PAGE_SIZE 4096ULL

/* The smallest local-limit: enough resident pages for any vCPU to make progress. */
#define BF_MIN_LOCAL_LIMIT (4ULL << 20)

typedef struct BfEngine BfEngine;

typedef enum {
    BF_POOL_NONE,          /* no pool configured: only free and zero pages can be reclaimed */
    BF_POOL_CONNECTING,    /* configured, not connected yet */
    BF_POOL_CONNECTED,
    BF_POOL_UNREACHABLE,   /* connection lost: retrying; faults on remote pages wait */
} BfPoolState;

typedef struct BfEngineConfig {
    const char *name;      /* names threads and messages, e.g. the QOM id */
    uint64_t size;         /* bytes of guest RAM, a multiple of BF_PAGE_SIZE */
    uint64_t local_limit;  /* most bytes kept in host memory; 0 means size */
    const char *pool;      /* pool address (see bf-endpoint.h), or NULL */
} BfEngineConfig;

typedef struct BfEngineStats {
    uint64_t size;
    uint64_t local_limit;
    uint64_t resident;         /* bytes of guest RAM in host memory */
    uint64_t remote;           /* bytes held by the pool */
    uint64_t free;             /* bytes the guest freed: held nowhere */
    uint64_t faults_missing;
    uint64_t faults_minor;
    uint64_t faults_wp;
    BfPoolState pool_state;
} BfEngineStats;

/* Checks that @local_limit (bytes) suits a region of @size bytes. */
gboolean bf_engine_check_local_limit(uint64_t size, uint64_t local_limit,
                                     gboolean has_pool, GError **errp);

/*
 * Creates the memfd and the guest mapping, registers it with a new userfaultfd and starts the
 * fault thread. On error (bad configuration, no userfaultfd permission, old kernel) returns
 * NULL with @errp set to a message that names the problem and what to do about it.
 */
BfEngine *bf_engine_new(const BfEngineConfig *config, GError **errp);

/* Stops the engine's threads and releases its memory. Nothing may touch guest RAM after. */
void bf_engine_free(BfEngine *engine);

/* The guest's view of its RAM: config->size bytes, page aligned. */
void *bf_engine_guest_ram(BfEngine *engine);

/* The canonical pool address, or NULL. */
const char *bf_engine_pool(BfEngine *engine);

gboolean bf_engine_set_local_limit(BfEngine *engine, uint64_t local_limit, GError **errp);

void bf_engine_get_stats(BfEngine *engine, BfEngineStats *stats);

/*
 * Write-protects the resident pages of [offset, offset + len) in guest RAM: the next write to
 * each faults once (a write-protect fault), then proceeds. 0 or -errno.
 */
int bf_engine_write_protect(BfEngine *engine, uint64_t offset, uint64_t len);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(BfEngine, bf_engine_free)

#endif
