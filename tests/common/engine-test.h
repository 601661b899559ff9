/*
 * engine-test: what the tests that drive a BfEngine share: a byte pattern to write guest RAM
 * with and check it against, writer threads that play the guest, and waits on the engine's
 * statistics.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef ENGINE_TEST_H
#define ENGINE_TEST_H

#include "bf-engine.h"

#define MiB (1024ULL * 1024)

/* Writes [start, start + len) of @ram with the pattern of @seed; check() compares each byte. */
void fill(uint8_t *ram, uint64_t start, uint64_t len, uint8_t seed);
void check(const uint8_t *ram, uint64_t start, uint64_t len, uint8_t seed);

typedef struct {
    uint8_t *ram;
    uint64_t start, len;
    uint8_t seed;
    int rounds;
} WriterJob;

/* Fills and checks the job's range @rounds times, with seeds seed, seed + 1, ... */
gpointer writer_thread(gpointer opaque);
/* Checks the job's range against its seed. */
gpointer check_thread(gpointer opaque);

/* An engine, or NULL after marking the test skipped when userfaultfd is not permitted. */
BfEngine *engine_or_skip(const BfEngineConfig *config);
/* The same, once connected to its pool (within WAIT_FOR's time). */
BfEngine *connected_or_skip(const BfEngineConfig *config);
BfEngineStats stats_of(BfEngine *e);

/*
 * Waits up to 60 s for @cond on the engine's statistics: these take a fraction of that
 * alone, but seconds in a TCG guest (tests/rdma) on a machine busy with other tests.
 */
#define WAIT_FOR(e, st, cond) do {                                  \
        BfEngineStats st;                                           \
        int tries_ = 0;                                             \
        for (;;) {                                                  \
            bf_engine_get_stats((e), &st);                          \
            if (cond) {                                             \
                break;                                              \
            }                                                       \
            g_assert_cmpint(++tries_, <, 6000);                     \
            g_usleep(10 * 1000);                                    \
        }                                                           \
    } while (0)

#endif
