/*
 * memory-backend-blowfish: what its parts share (the QOM object, the QMP/HMP handlers, the
 * engine event glue).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef HW_BLOWFISH_H
#define HW_BLOWFISH_H

#include "system/hostmem.h"
#include "qapi/qapi-types-blowfish.h"
#include "../backend/bf-engine.h"

#define TYPE_MEMORY_BACKEND_BLOWFISH "memory-backend-blowfish"
OBJECT_DECLARE_SIMPLE_TYPE(HostMemoryBackendBlowfish, MEMORY_BACKEND_BLOWFISH)

/* The backend's state for query-blowfish; NULL before the backend is complete. */
BlowfishInfo *blowfish_backend_query(HostMemoryBackendBlowfish *bf);

bool blowfish_backend_set_local_limit(HostMemoryBackendBlowfish *bf,
                                      uint64_t local_limit, Error **errp);

bool blowfish_backend_restore(HostMemoryBackendBlowfish *bf, Error **errp);

/* The backend's engine; NULL before the backend is complete. */
BfEngine *blowfish_backend_engine(HostMemoryBackendBlowfish *bf);

/* blowfish-events.c: engine events as QMP events and trace points; opaque: the id. */
extern const BfEngineEvents blowfish_engine_events;
BlowfishPoolState blowfish_pool_state(BfPoolState state);

#endif
