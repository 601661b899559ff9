/*
 * bf-latency: a lock-free histogram of durations, for fault service latency percentiles.
 * Buckets are log-linear: 8 per power of two (about 9% wide), from 1 ns to hours. Recording
 * is one relaxed atomic increment; reading walks 512 counters.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_LATENCY_H
#define BF_LATENCY_H

#include <stdatomic.h>
#include <stdint.h>

#define BF_LATENCY_SUB_BITS 3
#define BF_LATENCY_BUCKETS (64 << BF_LATENCY_SUB_BITS)

typedef struct {
    _Atomic uint64_t buckets[BF_LATENCY_BUCKETS];
} BfLatency;

void bf_latency_record(BfLatency *h, uint64_t ns);
uint64_t bf_latency_count(BfLatency *h);
/* The @percent-th percentile (0 < percent <= 100) in ns, as its bucket's upper bound; 0 if
 * nothing was recorded. */
uint64_t bf_latency_percentile(BfLatency *h, double percent);
/* The non-empty buckets, ascending: bucket i holds @counts[i] durations of at most
 * @upper_ns[i] (each array holds BF_LATENCY_BUCKETS). Returns how many it filled. */
unsigned bf_latency_histogram(BfLatency *h, uint64_t *upper_ns, uint64_t *counts);

#endif
