/*
 * bf-scan: the benchmarks' sequential scan and compression job. Fills MB of memory with
 * compressible data (runs of repeated 64-bit words), then PASSES times (or as many passes as
 * start within SECONDS, if that is given) reads all of it in order, run-length encodes it
 * into a small buffer that is flushed as it fills, and checksums the encoded stream; every
 * pass must give the same size and checksum as the data it was generated from. Prints
 *   "bf-scan ready: ..." once filled, then
 *   "bf-scan done: P passes over MB MiB in S s (R MiB/s), validated"
 * and exits 0, or prints "bfwork: FAIL: ..." and exits 1.
 *
 *   bf-scan MB PASSES [SECONDS]
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include "bf-workload.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define MiB (1024UL * 1024)
#define OUT_WORDS 4096

typedef struct {
    uint64_t out[OUT_WORDS];    /* (word, run length) pairs, flushed into the checksum */
    size_t used;
    uint64_t size;              /* words written out */
    uint64_t sum;
} Encoder;

static void emit(Encoder *enc, uint64_t word, uint64_t run)
{
    enc->out[enc->used++] = word;
    enc->out[enc->used++] = run;
    if (enc->used == OUT_WORDS) {
        for (size_t i = 0; i < OUT_WORDS; i++) {
            enc->sum = (enc->sum ^ enc->out[i]) * 0x100000001b3ULL;
        }
        enc->size += OUT_WORDS;
        enc->used = 0;
    }
}

static void finish(Encoder *enc)
{
    for (size_t i = 0; i < enc->used; i++) {
        enc->sum = (enc->sum ^ enc->out[i]) * 0x100000001b3ULL;
    }
    enc->size += enc->used;
    enc->used = 0;
}

/* The data: runs of 1 to 64 equal words; each value and length from a fixed sequence. */
static uint64_t generate(uint64_t *data, size_t words, Encoder *expected)
{
    uint64_t s = 0x2545f4914f6cdd1dULL, runs = 0;

    for (size_t i = 0; i < words;) {
        uint64_t value, len;

        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        value = s;
        len = 1 + (s >> 58);
        for (uint64_t k = 0; k < len && i < words; k++) {
            data[i++] = value;
        }
        runs++;
    }
    /* Encoding it is the reference: done once, as the data is made. */
    for (size_t i = 0; i < words;) {
        size_t j = i + 1;

        while (j < words && data[j] == data[i]) {
            j++;
        }
        emit(expected, data[i], j - i);
        i = j;
    }
    finish(expected);
    return runs;
}

int main(int argc, char **argv)
{
    size_t mb, words;
    int passes, p;
    double seconds = 0;
    uint64_t *data;
    Encoder expected = { 0 };
    double t0, elapsed;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 3 || argc > 4 || (mb = strtoul(argv[1], NULL, 0)) < 1 ||
        (passes = atoi(argv[2])) < 1 || (argc == 4 && (seconds = atof(argv[3])) <= 0)) {
        printf("bfwork: FAIL: usage: bf-scan MB PASSES [SECONDS]\n");
        return 2;
    }
    words = mb * MiB / 8;
    data = bf_map(mb * MiB, "bf-scan");
    generate(data, words, &expected);
    printf("bf-scan ready: %zu MiB, encoded to %llu KiB\n", mb,
           (unsigned long long)(expected.size * 8 >> 10));
    t0 = bf_now();
    for (p = 0; p < passes && (!seconds || bf_now() - t0 < seconds); p++) {
        Encoder enc = { 0 };

        for (size_t i = 0; i < words;) {
            size_t j = i + 1;

            while (j < words && data[j] == data[i]) {
                j++;
            }
            emit(&enc, data[i], j - i);
            i = j;
        }
        finish(&enc);
        if (enc.size != expected.size || enc.sum != expected.sum) {
            printf("bfwork: FAIL: bf-scan: pass %d encoded %llu words (sum %016llx), "
                   "expected %llu (sum %016llx)\n", p, (unsigned long long)enc.size,
                   (unsigned long long)enc.sum, (unsigned long long)expected.size,
                   (unsigned long long)expected.sum);
            return 1;
        }
    }
    elapsed = bf_now() - t0;
    printf("bf-scan done: %d passes over %zu MiB in %.2f s (%.1f MiB/s), validated\n", p, mb,
           elapsed, p * mb / elapsed);
    return 0;
}
