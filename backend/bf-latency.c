/*
 * bf-latency: log-linear latency histogram.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-latency.h"

/* Bucket of @ns: its power of two, then the next BF_LATENCY_SUB_BITS bits below the top. */
static unsigned bf_latency_bucket(uint64_t ns)
{
    unsigned top, sub;

    if (ns < (1u << BF_LATENCY_SUB_BITS)) {
        return ns;
    }
    top = 63 - __builtin_clzll(ns);
    sub = (ns >> (top - BF_LATENCY_SUB_BITS)) & ((1u << BF_LATENCY_SUB_BITS) - 1);
    return ((top - BF_LATENCY_SUB_BITS + 1) << BF_LATENCY_SUB_BITS) + sub;
}

/* The largest duration that falls in bucket @b. */
static uint64_t bf_latency_upper(unsigned b)
{
    unsigned octave = b >> BF_LATENCY_SUB_BITS, sub = b & ((1u << BF_LATENCY_SUB_BITS) - 1);
    unsigned top;

    if (octave == 0) {
        return sub;
    }
    top = octave + BF_LATENCY_SUB_BITS - 1;
    return ((uint64_t)((1u << BF_LATENCY_SUB_BITS) + sub + 1) << (top - BF_LATENCY_SUB_BITS))
           - 1;
}

void bf_latency_record(BfLatency *h, uint64_t ns)
{
    atomic_fetch_add_explicit(&h->buckets[bf_latency_bucket(ns)], 1, memory_order_relaxed);
}

uint64_t bf_latency_count(BfLatency *h)
{
    uint64_t n = 0;

    for (unsigned b = 0; b < BF_LATENCY_BUCKETS; b++) {
        n += atomic_load_explicit(&h->buckets[b], memory_order_relaxed);
    }
    return n;
}

uint64_t bf_latency_percentile(BfLatency *h, double percent)
{
    uint64_t upper[BF_LATENCY_BUCKETS], counts[BF_LATENCY_BUCKETS], total = 0, rank, seen = 0;
    unsigned n = bf_latency_histogram(h, upper, counts);

    for (unsigned i = 0; i < n; i++) {
        total += counts[i];
    }
    if (!total) {
        return 0;
    }
    rank = (uint64_t)(percent / 100.0 * total + 0.5);
    rank = rank < 1 ? 1 : rank > total ? total : rank;
    for (unsigned i = 0; i + 1 < n; i++) {
        seen += counts[i];
        if (seen >= rank) {
            return upper[i];
        }
    }
    return upper[n - 1];
}

unsigned bf_latency_histogram(BfLatency *h, uint64_t *upper_ns, uint64_t *counts)
{
    unsigned n = 0;

    for (unsigned b = 0; b < BF_LATENCY_BUCKETS; b++) {
        uint64_t count = atomic_load_explicit(&h->buckets[b], memory_order_relaxed);

        if (count) {
            upper_ns[n] = bf_latency_upper(b);
            counts[n++] = count;
        }
    }
    return n;
}
