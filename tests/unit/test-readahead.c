/*
 * Unit tests of bf-readahead and bf-latency: the engine's two pure decision helpers.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-latency.h"
#include "bf-readahead.h"

#include <glib.h>

/* Feeds @n faults from @first at @stride; returns the total pages fetched ahead. */
static uint32_t feed(BfReadahead *ra, uint64_t first, int64_t step, int n, int64_t *stride)
{
    uint32_t total = 0;

    for (int i = 0; i < n; i++) {
        total += bf_readahead_fault(ra, first + (uint64_t)(i * step), stride);
    }
    return total;
}

static void test_sequential(void)
{
    BfReadahead ra;
    int64_t stride = 0;
    uint64_t page = 1000;
    uint32_t n;

    bf_readahead_init(&ra, 32);
    g_assert_cmpuint(bf_readahead_fault(&ra, page, &stride), ==, 0);
    g_assert_cmpuint(bf_readahead_fault(&ra, page + 1, &stride), ==, 0);
    /* The third evenly spaced fault makes a stream: fetch the first window ahead. */
    n = bf_readahead_fault(&ra, page + 2, &stride);
    g_assert_cmpuint(n, ==, BF_READAHEAD_FIRST_WINDOW);
    g_assert_cmpint(stride, ==, 1);
    /* The stream faults right past the window: the window doubles, up to the maximum. */
    page += 2 + n + 1;
    n = bf_readahead_fault(&ra, page, &stride);
    g_assert_cmpuint(n, ==, 8);
    page += n + 1;
    n = bf_readahead_fault(&ra, page, &stride);
    g_assert_cmpuint(n, ==, 16);
    page += n + 1;
    g_assert_cmpuint(bf_readahead_fault(&ra, page, &stride), ==, 32);
    page += 33;
    g_assert_cmpuint(bf_readahead_fault(&ra, page, &stride), ==, 32);
}

static void test_strided_and_backwards(void)
{
    BfReadahead ra;
    int64_t stride = 0;

    bf_readahead_init(&ra, 16);
    g_assert_cmpuint(feed(&ra, 5000, 8, 3, &stride), ==, BF_READAHEAD_FIRST_WINDOW);
    g_assert_cmpint(stride, ==, 8);
    bf_readahead_init(&ra, 16);
    g_assert_cmpuint(feed(&ra, 5000, -3, 3, &stride), ==, BF_READAHEAD_FIRST_WINDOW);
    g_assert_cmpint(stride, ==, -3);
    /* Strides beyond BF_READAHEAD_MAX_STRIDE are not streams. */
    bf_readahead_init(&ra, 16);
    g_assert_cmpuint(feed(&ra, 5000, BF_READAHEAD_MAX_STRIDE + 1, 10, &stride), ==, 0);
}

static void test_random_and_off(void)
{
    BfReadahead ra;
    int64_t stride;
    GRand *rand = g_rand_new_with_seed(42);
    uint32_t total = 0;

    bf_readahead_init(&ra, 32);
    for (int i = 0; i < 10000; i++) {
        total += bf_readahead_fault(&ra, g_rand_int_range(rand, 0, 1 << 20), &stride);
    }
    g_assert_cmpuint(total, <, 100);
    g_rand_free(rand);

    bf_readahead_init(&ra, 0);
    g_assert_cmpuint(feed(&ra, 0, 1, 100, &stride), ==, 0);
}

/* Two interleaved sequential streams (two vCPUs) are both followed. */
static void test_two_streams(void)
{
    BfReadahead ra;
    int64_t stride;
    uint32_t a = 0, b = 0;

    bf_readahead_init(&ra, 8);
    for (int i = 0; i < 3; i++) {
        a += bf_readahead_fault(&ra, 100 + i, &stride);
        b += bf_readahead_fault(&ra, 900000 + 2 * i, &stride);
    }
    g_assert_cmpuint(a, ==, BF_READAHEAD_FIRST_WINDOW);
    g_assert_cmpuint(b, ==, BF_READAHEAD_FIRST_WINDOW);
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
