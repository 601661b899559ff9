/*
 * engine-test: helpers of the tests that drive a BfEngine (see engine-test.h).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "engine-test.h"
#include "bf-error.h"

static uint8_t pattern_byte(uint64_t offset, uint8_t seed)
{
    return (uint8_t)((offset >> 12) * 131 + (offset & 0xfff) * 7 + seed);
}

void fill(uint8_t *ram, uint64_t start, uint64_t len, uint8_t seed)
{
    for (uint64_t i = start; i < start + len; i++) {
        ram[i] = pattern_byte(i, seed);
    }
}

void check(const uint8_t *ram, uint64_t start, uint64_t len, uint8_t seed)
{
    for (uint64_t i = start; i < start + len; i++) {
        if (ram[i] != pattern_byte(i, seed)) {
            g_printerr("offset 0x%" G_GINT64_MODIFIER "x reads 0x%02x, wrote 0x%02x\n",
                       (guint64)i, ram[i], pattern_byte(i, seed));
            g_assert_not_reached();
        }
    }
}

gpointer check_thread(gpointer opaque)
{
    WriterJob *job = opaque;

    check(job->ram, job->start, job->len, job->seed);
    return NULL;
}

gpointer writer_thread(gpointer opaque)
{
    WriterJob *job = opaque;

    for (int round = 0; round < job->rounds; round++) {
        fill(job->ram, job->start, job->len, job->seed + round);
        check(job->ram, job->start, job->len, job->seed + round);
    }
    return NULL;
}

BfEngine *engine_or_skip(const BfEngineConfig *config)
{
    g_autoptr(GError) err = NULL;
    BfEngine *e = bf_engine_new(config, &err);

    if (!e && g_error_matches(err, BF_ERROR, BF_ERROR_PERMISSION)) {
        g_test_skip(err->message);
        return NULL;
    }
    g_assert_no_error(err);
    return e;
}

BfEngine *connected_or_skip(const BfEngineConfig *config)
{
    BfEngine *e = engine_or_skip(config);

    if (e) {
        WAIT_FOR(e, st, st.pool_state == BF_POOL_CONNECTED);
    }
    return e;
}

BfEngineStats stats_of(BfEngine *e)
{
    BfEngineStats stats;

    bf_engine_get_stats(e, &stats);
    return stats;
}
