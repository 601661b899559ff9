/*
 * memory-backend-blowfish: blowfish-reclaim-free, free page hint rounds. The guest's
 * virtio-balloon driver is asked for its free pages (virtio_balloon_request_free_page_hints,
 * qemu-patches/0006), and every backend frees those it can (bf_engine_hint_*). The first
 * round costs the guest nothing and frees the hinted pages that read zero: guests with
 * init_on_alloc (Debian's default) zero all they hint. If hinted pages held data, the guest
 * does not zero them, and a second round asks again, tracking writes so as to free them.
 * BLOWFISH_FREE_RECLAIMED reports the end; a guest that does not finish a round within a
 * timeout ends it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/main-loop.h"
#include "qemu/timer.h"
#include "block/aio.h"
#include "qemu/error-report.h"
#include "qemu/units.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-blowfish.h"
#include "qapi/qapi-events-blowfish.h"
#include "hw/virtio/virtio-balloon.h"
#include "qom/object.h"
#include "system/hostmem.h"
#include "blowfish.h"
#include "trace.h"

/* A guest that has not named all its free memory by then is not going to. */
#define BLOWFISH_HINT_TIMEOUT_MS 30000
/* Hinted pages kept for holding data, worth a second round that tracks writes. */
#define BLOWFISH_HINT_RETRACK_BYTES (4 * MiB)
/*
 * The pause before that round, for the guest to take its pages back first: asked again at
 * once, its driver would see only the new request, still holding the pages it lent.
 */
#define BLOWFISH_HINT_PAUSE_MS 100

typedef struct {
    uint8_t *ram;                   /* the engine's guest RAM */
    uint64_t size;
    BfEngine *engine;
    uint64_t hinted_before;         /* its free_hinted and hint_kept when the round began */
    uint64_t kept_before;
} BlowfishHintTarget;

typedef struct {
    uint64_t id;
    VirtIOBalloon *balloon;         /* referenced */
    GPtrArray *backends;            /* HostMemoryBackendBlowfish, referenced */
    GArray *targets;                /* BlowfishHintTarget, read by the iothread */
    bool track_writes;              /* this round tracks writes (the second one) */
    bool pausing;                   /* between the rounds: @timeout starts the second */
    uint64_t freed;                 /* bytes freed by the rounds done */
    int64_t start_ms;
    QEMUTimer *timeout;
} BlowfishHintRound;

/* The round in progress (main loop only), and the last round's id. */
static BlowfishHintRound *blowfish_round;
static uint64_t blowfish_round_id;

static int blowfish_hint_add_backend(Object *obj, void *opaque)
{
    BlowfishHintRound *round = opaque;
    HostMemoryBackendBlowfish *bf = (HostMemoryBackendBlowfish *)
        object_dynamic_cast(obj, TYPE_MEMORY_BACKEND_BLOWFISH);
    BfEngine *engine = bf ? blowfish_backend_engine(bf) : NULL;

    if (engine) {
        BlowfishHintTarget target = {
            .ram = bf_engine_guest_ram(engine),
            .size = MEMORY_BACKEND(bf)->size,
            .engine = engine,
        };

        g_array_append_val(round->targets, target);
        g_ptr_array_add(round->backends, object_ref(obj));
    }
    return 0;
}

static void blowfish_hint_round_free(BlowfishHintRound *round)
{
    timer_free(round->timeout);
    g_ptr_array_free(round->backends, TRUE);
    g_array_free(round->targets, TRUE);
    object_unref(OBJECT(round->balloon));
    g_free(round);
}

static bool blowfish_hint_round_start(BlowfishHintRound *round, Error **errp);

/* The end of it all. */
static void blowfish_hint_done(bool timed_out)
{
    BlowfishHintRound *round = g_steal_pointer(&blowfish_round);
    uint64_t ms = qemu_clock_get_ms(QEMU_CLOCK_REALTIME) - round->start_ms;

    trace_blowfish_reclaim_free_done(round->freed, ms, timed_out);
    qapi_event_send_blowfish_free_reclaimed(round->freed, ms, timed_out);
    blowfish_hint_round_free(round);
}

/*
 * Ends the round: the engines first, so that the guest gets its pages back only after. Then
 * a second round if this one had to keep hinted pages for not knowing whether they were
 * written; else the end of it all.
 */
static void blowfish_hint_round_finish(bool timed_out)
{
    BlowfishHintRound *round = blowfish_round;
    uint64_t kept = 0;

    for (guint i = 0; i < round->targets->len; i++) {
        BlowfishHintTarget *t = &g_array_index(round->targets, BlowfishHintTarget, i);
        BfEngineStats stats;

        bf_engine_hint_end(t->engine);
        bf_engine_get_stats(t->engine, &stats);
        round->freed += stats.free_hinted - t->hinted_before;
        kept += stats.hint_kept - t->kept_before;
    }
    virtio_balloon_end_free_page_hints(round->balloon);
    trace_blowfish_reclaim_free_round(round->track_writes, round->freed, kept);
    if (!timed_out && !round->track_writes && kept >= BLOWFISH_HINT_RETRACK_BYTES) {
        round->track_writes = true;
        round->pausing = true;
        timer_mod(round->timeout,
                  qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + BLOWFISH_HINT_PAUSE_MS);
        return;
    }
    blowfish_hint_done(timed_out);
}

static void blowfish_hint_timeout(void *opaque)
{
    BlowfishHintRound *round = blowfish_round;
    Error *err = NULL;

    if (!round->pausing) {
        blowfish_hint_round_finish(true);
        return;
    }
    round->pausing = false;
    if (!blowfish_hint_round_start(round, &err)) {
        warn_report_err(err);
        blowfish_hint_done(false);
    }
}

/* The guest named all it had; @opaque is the round's id, in case it ended meanwhile. */
static void blowfish_hint_guest_done(void *opaque)
{
    if (blowfish_round && blowfish_round->id == (uintptr_t)opaque &&
        !blowfish_round->pausing) {
        blowfish_hint_round_finish(false);
    }
}

/* In the balloon's iothread: a range the guest hinted free, or (@len 0) the end. */
static void blowfish_hinted(void *opaque, void *addr, size_t len)
{
    BlowfishHintRound *round = opaque;
    uint8_t *start = addr;

    if (!len) {
        aio_bh_schedule_oneshot(qemu_get_aio_context(), blowfish_hint_guest_done,
                                (void *)(uintptr_t)round->id);
        return;
    }
    for (guint i = 0; i < round->targets->len; i++) {
        BlowfishHintTarget *t = &g_array_index(round->targets, BlowfishHintTarget, i);
        uint8_t *from = MAX(start, t->ram), *to = MIN(start + len, t->ram + t->size);

        if (from < to) {
            bf_engine_hint_free(t->engine, from - t->ram, to - from);
        }
    }
}

static VirtIOBalloon *blowfish_find_balloon(Error **errp)
{
    bool ambiguous = false;
    Object *obj = object_resolve_path_type("", TYPE_VIRTIO_BALLOON, &ambiguous);

    if (ambiguous) {
        error_setg(errp, "there is more than one virtio-balloon device");
        return NULL;
    }
    if (!obj) {
        error_setg(errp, "reclaiming free memory needs a virtio-balloon device with "
                   "free-page-hint=on (and an iothread)");
        return NULL;
    }
    return VIRTIO_BALLOON(obj);
}

/* Begins a round in every engine, then asks the guest: writes from now on are seen. */
static bool blowfish_hint_round_start(BlowfishHintRound *round, Error **errp)
{
    guint begun;

    round->id = ++blowfish_round_id;
    for (begun = 0; begun < round->targets->len; begun++) {
        BlowfishHintTarget *t = &g_array_index(round->targets, BlowfishHintTarget, begun);
        BfEngineStats stats;
        GError *gerr = NULL;

        bf_engine_get_stats(t->engine, &stats);
        t->hinted_before = stats.free_hinted;
        t->kept_before = stats.hint_kept;
        if (!bf_engine_hint_begin(t->engine, round->track_writes, &gerr)) {
            error_setg(errp, "cannot start a free page hint round: %s", gerr->message);
            g_error_free(gerr);
            goto fail;
        }
    }
    if (!virtio_balloon_request_free_page_hints(round->balloon, blowfish_hinted, round,
                                                errp)) {
        goto fail;
    }
    timer_mod(round->timeout,
              qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + BLOWFISH_HINT_TIMEOUT_MS);
    return true;

fail:
    while (begun) {
        bf_engine_hint_end(g_array_index(round->targets, BlowfishHintTarget, --begun).engine);
    }
    return false;
}

void qmp_blowfish_reclaim_free(Error **errp)
{
    VirtIOBalloon *balloon;
    BlowfishHintRound *round;

    if (blowfish_round) {
        error_setg(errp, "a blowfish-reclaim-free round is in progress");
        return;
    }
    balloon = blowfish_find_balloon(errp);
    if (!balloon) {
        return;
    }
    round = g_new0(BlowfishHintRound, 1);
    round->balloon = VIRTIO_BALLOON(object_ref(OBJECT(balloon)));
    round->backends = g_ptr_array_new_with_free_func((GDestroyNotify)object_unref);
    round->targets = g_array_new(FALSE, FALSE, sizeof(BlowfishHintTarget));
    round->timeout = timer_new_ms(QEMU_CLOCK_REALTIME, blowfish_hint_timeout, NULL);
    object_child_foreach(object_get_objects_root(), blowfish_hint_add_backend, round);
    if (!round->targets->len) {
        error_setg(errp, "there is no memory-backend-blowfish object");
        blowfish_hint_round_free(round);
        return;
    }
    round->start_ms = qemu_clock_get_ms(QEMU_CLOCK_REALTIME);
    if (!blowfish_hint_round_start(round, errp)) {
        blowfish_hint_round_free(round);
        return;
    }
    blowfish_round = round;
    trace_blowfish_reclaim_free_start(round->targets->len);
}
