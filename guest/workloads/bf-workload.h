/*
 * bf-workload: what the guest's workload programs share: a monotonic clock, and anonymous
 * memory that is either there or reported with the "bfwork: FAIL:" line the host's tests and
 * benchmarks look for.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_WORKLOAD_H
#define BF_WORKLOAD_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static inline double bf_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* @len bytes of private anonymous memory; on failure, says so for @who and exits. */
static inline void *bf_map(size_t len, const char *who)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED) {
        printf("bfwork: FAIL: %s: cannot allocate %zu MiB\n", who, len >> 20);
        exit(1);
    }
    return p;
}

#endif
