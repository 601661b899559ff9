/*
 * Unit tests of bf-readahead and bf-latency: the engine's two pure decision helpers.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-latency.h"
#include "bf-readahead.h"

#include <glib.h>

/* Feeds @n faults from @first at @step; returns the total pages fetched ahead. */
static uint32_t feed(BfReadahead *ra, uint64_t first, int64_t step, int n,
                     BfReadaheadPlan *plan)
{
    uint32_t total = 0;

    for (int i = 0; i < n; i++) {
        total += bf_readahead_fault(ra, first + (uint64_t)(i * step), plan);
    }
    return total;
}

/* Asserts that @plan fetches two windows of @window pages but the trigger, at @window. */
static void assert_two_windows(const BfReadaheadPlan *plan, uint32_t fetched, uint32_t window)
{
    g_assert_cmpuint(plan->count, ==, 2 * window);
    g_assert_cmpuint(plan->trigger, ==, window);
    g_assert_cmpuint(fetched, ==, 2 * window - 1);
}

static void test_sequential(void)
{
    BfReadahead ra;
    BfReadaheadPlan plan;
    uint64_t page = 1000;
    uint32_t n;

    bf_readahead_init(&ra, 32);
    g_assert_cmpuint(bf_readahead_fault(&ra, page, &plan), ==, 0);
    g_assert_cmpuint(plan.count, ==, 0);
    /* Its neighbour alone is not a stream (one request touches neighbouring pages). */
    g_assert_cmpuint(bf_readahead_fault(&ra, page + 1, &plan), ==, 0);
    /* The third evenly spaced fault makes a stream: fetch the first windows ahead. */
    page += 2;
    n = bf_readahead_fault(&ra, page, &plan);
    assert_two_windows(&plan, n, BF_READAHEAD_FIRST_WINDOW);
    g_assert_cmpint(plan.stride, ==, 1);
    /* The stream faults on its trigger: the window doubles, up to the maximum. */
    for (uint32_t window = 8; window <= 64; window *= 2) {
        page += plan.trigger;
        n = bf_readahead_fault(&ra, page, &plan);
        assert_two_windows(&plan, n, MIN(window, 32));
    }
    /*
     * A fault short of the trigger, on a page the stream planned to fetch (the fetch stopped
     * at the local limit): the same window, from there.
     */
    page += 5;
    n = bf_readahead_fault(&ra, page, &plan);
    assert_two_windows(&plan, n, 32);
    /* Past it (it was resident, and did not fault), up to 4 windows: the same, from there. */
    page += 4 * 32;
    n = bf_readahead_fault(&ra, page, &plan);
    assert_two_windows(&plan, n, 32);
    /* Further, the stream is lost: it starts again. */
    g_assert_cmpuint(bf_readahead_fault(&ra, page + 4 * 32 + 1, &plan), ==, 0);
    g_assert_cmpuint(plan.count, ==, 0);
}

static void test_strided_and_backwards(void)
{
    BfReadahead ra;
    BfReadaheadPlan plan;
    uint32_t n;

    bf_readahead_init(&ra, 16);
    n = feed(&ra, 5000, 8, 3, &plan);
    assert_two_windows(&plan, n, BF_READAHEAD_FIRST_WINDOW);
    g_assert_cmpint(plan.stride, ==, 8);
    /* Its trigger is counted in strides. */
    n = bf_readahead_fault(&ra, 5016 + 8 * BF_READAHEAD_FIRST_WINDOW, &plan);
    assert_two_windows(&plan, n, 2 * BF_READAHEAD_FIRST_WINDOW);
    bf_readahead_init(&ra, 16);
    n = feed(&ra, 5000, -3, 3, &plan);
    assert_two_windows(&plan, n, BF_READAHEAD_FIRST_WINDOW);
    g_assert_cmpint(plan.stride, ==, -3);
    /* Strides beyond BF_READAHEAD_MAX_STRIDE are not streams. */
    bf_readahead_init(&ra, 16);
    g_assert_cmpuint(feed(&ra, 5000, BF_READAHEAD_MAX_STRIDE + 1, 10, &plan), ==, 0);
}

static void test_random_and_off(void)
{
    BfReadahead ra;
    BfReadaheadPlan plan;
    GRand *rand = g_rand_new_with_seed(42);
    uint32_t total = 0;

    bf_readahead_init(&ra, 32);
    for (int i = 0; i < 10000; i++) {
        total += bf_readahead_fault(&ra, g_rand_int_range(rand, 0, 1 << 20), &plan);
    }
    g_assert_cmpuint(total, <, 100);
    g_rand_free(rand);

    bf_readahead_init(&ra, 0);
    g_assert_cmpuint(feed(&ra, 0, 1, 100, &plan), ==, 0);
}

/* Two interleaved sequential streams (two vCPUs) are both followed. */
static void test_two_streams(void)
{
    BfReadahead ra;
    BfReadaheadPlan plan;
    uint32_t a = 0, b = 0;

    bf_readahead_init(&ra, 8);
    for (int i = 0; i < 3; i++) {
        a += bf_readahead_fault(&ra, 100 + i, &plan);
        b += bf_readahead_fault(&ra, 900000 + 2 * i, &plan);
    }
    g_assert_cmpuint(a, ==, 2 * BF_READAHEAD_FIRST_WINDOW - 1);
    g_assert_cmpuint(b, ==, 2 * BF_READAHEAD_FIRST_WINDOW - 1);
}

static void test_latency(void)
{
    static BfLatency h;

    g_assert_cmpuint(bf_latency_percentile(&h, 50), ==, 0);
    for (uint64_t ns = 1000; ns <= 100000; ns += 1000) {
        bf_latency_record(&h, ns);
    }
    g_assert_cmpuint(bf_latency_count(&h), ==, 100);
    /* Within a bucket's width (12.5%) above the exact value, never below. */
    g_assert_cmpuint(bf_latency_percentile(&h, 50), >=, 50000);
    g_assert_cmpuint(bf_latency_percentile(&h, 50), <=, 50000 * 1.125);
    g_assert_cmpuint(bf_latency_percentile(&h, 99), >=, 99000);
    g_assert_cmpuint(bf_latency_percentile(&h, 99), <=, 99000 * 1.125);
    g_assert_cmpuint(bf_latency_percentile(&h, 100), >=, 100000);
    /* The histogram: ascending buckets that hold every duration, each within its bound. */
    {
        static uint64_t upper[BF_LATENCY_BUCKETS], counts[BF_LATENCY_BUCKETS];
        unsigned n = bf_latency_histogram(&h, upper, counts);
        uint64_t total = 0, ns = 1000;

        g_assert_cmpuint(n, >, 16);
        g_assert_cmpuint(n, <=, 100);
        for (unsigned i = 0; i < n; i++) {
            g_assert_cmpuint(counts[i], >, 0);
            g_assert_true(i == 0 || upper[i] > upper[i - 1]);
            /* The durations recorded, in order, fill the buckets in order. */
            for (uint64_t c = 0; c < counts[i]; c++, ns += 1000) {
                g_assert_cmpuint(ns, <=, upper[i]);
                g_assert_true(i == 0 || ns > upper[i - 1]);
            }
            total += counts[i];
        }
        g_assert_cmpuint(total, ==, 100);
    }
    for (uint64_t ns = 0; ns < 8; ns++) {
        static BfLatency exact;

        bf_latency_record(&exact, ns);
        g_assert_cmpuint(bf_latency_percentile(&exact, 100), ==, ns);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/readahead/sequential", test_sequential);
    g_test_add_func("/readahead/strided-and-backwards", test_strided_and_backwards);
    g_test_add_func("/readahead/random-and-off", test_random_and_off);
    g_test_add_func("/readahead/two-streams", test_two_streams);
    g_test_add_func("/latency/percentiles", test_latency);
    return g_test_run();
}
