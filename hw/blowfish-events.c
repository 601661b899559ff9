/*
 * memory-backend-blowfish: what the engine reports from its threads, turned into QEMU's
 * terms: QMP events (emitted from the main loop) and trace points.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/main-loop.h"
#include "block/aio.h"
#include "qapi/qapi-events-blowfish.h"
#include "blowfish.h"
#include "trace.h"

static const BlowfishPoolState blowfish_pool_states[] = {
    [BF_POOL_NONE] = BLOWFISH_POOL_STATE_NONE,
    [BF_POOL_CONNECTING] = BLOWFISH_POOL_STATE_CONNECTING,
    [BF_POOL_CONNECTED] = BLOWFISH_POOL_STATE_CONNECTED,
    [BF_POOL_UNREACHABLE] = BLOWFISH_POOL_STATE_UNREACHABLE,
};

static const char *const blowfish_fault_actions[] = {
    [BF_FAULT_ZERO_FILL] = "zero-fill",
    [BF_FAULT_MAP] = "map",
    [BF_FAULT_UNPROTECT] = "unprotect",
    [BF_FAULT_FETCH] = "fetch",
    [BF_FAULT_WAIT] = "wait",
    [BF_FAULT_DEFER] = "defer",
    [BF_FAULT_AGAIN] = "again",
};

BlowfishPoolState blowfish_pool_state(BfPoolState state)
{
    return blowfish_pool_states[state];
}

typedef struct {
    char *id;
    BlowfishPoolState state;
    bool full;
    char *detail;
    uint64_t bytes;
    uint64_t ms;
} BlowfishEvent;

static void blowfish_event_free(BlowfishEvent *ev)
{
    g_free(ev->id);
    g_free(ev->detail);
    g_free(ev);
}

static void blowfish_emit_pool_state(void *opaque)
{
    BlowfishEvent *ev = opaque;

    qapi_event_send_blowfish_pool_state_changed(ev->id, ev->state, ev->detail);
    blowfish_event_free(ev);
}

static void blowfish_emit_pool_full(void *opaque)
{
    BlowfishEvent *ev = opaque;

    qapi_event_send_blowfish_pool_full(ev->id, ev->full, ev->detail);
    blowfish_event_free(ev);
}

static void blowfish_emit_restore_done(void *opaque)
{
    BlowfishEvent *ev = opaque;

    qapi_event_send_blowfish_restore_completed(ev->id, ev->bytes, ev->ms);
    blowfish_event_free(ev);
}

/* The engine's threads must not emit QMP events: the main loop does, a bottom half later. */
static void blowfish_on_pool_state(void *opaque, BfPoolState state, const char *detail)
{
    BlowfishEvent *ev = g_new0(BlowfishEvent, 1);

    ev->id = g_strdup(opaque);
    ev->state = blowfish_pool_state(state);
    ev->detail = g_strdup(detail);
    trace_blowfish_pool_state(ev->id, BlowfishPoolState_str(ev->state), detail);
    aio_bh_schedule_oneshot(qemu_get_aio_context(), blowfish_emit_pool_state, ev);
}

static void blowfish_on_pool_full(void *opaque, gboolean full, const char *detail)
{
    BlowfishEvent *ev = g_new0(BlowfishEvent, 1);

    ev->id = g_strdup(opaque);
    ev->full = full;
    ev->detail = g_strdup(detail);
    trace_blowfish_pool_full(ev->id, full, detail);
    aio_bh_schedule_oneshot(qemu_get_aio_context(), blowfish_emit_pool_full, ev);
}

static void blowfish_on_restore_done(void *opaque, uint64_t bytes, uint64_t ns)
{
    BlowfishEvent *ev = g_new0(BlowfishEvent, 1);

    ev->id = g_strdup(opaque);
    ev->bytes = bytes;
    ev->ms = ns / 1000000;
    trace_blowfish_restore_done(ev->id, bytes, ns);
    aio_bh_schedule_oneshot(qemu_get_aio_context(), blowfish_emit_restore_done, ev);
}

static void blowfish_on_fault(void *opaque, uint64_t page, uint64_t flags,
                              BfFaultAction action)
{
    trace_blowfish_fault(opaque, page, flags, blowfish_fault_actions[action]);
}

static void blowfish_on_fetch(void *opaque, uint32_t pages, uint64_t ns)
{
    trace_blowfish_fetch(opaque, pages, ns);
}

static void blowfish_on_evict(void *opaque, uint32_t pages, uint32_t sent, uint32_t zero,
                              uint64_t ns)
{
    trace_blowfish_evict(opaque, pages, sent, zero, ns);
}

static void blowfish_on_scan(void *opaque, uint64_t samples, uint64_t ns)
{
    trace_blowfish_scan(opaque, samples, ns);
}

const BfEngineEvents blowfish_engine_events = {
    .pool_state_changed = blowfish_on_pool_state,
    .pool_full = blowfish_on_pool_full,
    .restore_done = blowfish_on_restore_done,
    .trace_fault = blowfish_on_fault,
    .trace_fetch = blowfish_on_fetch,
    .trace_evict = blowfish_on_evict,
    .trace_scan = blowfish_on_scan,
};
