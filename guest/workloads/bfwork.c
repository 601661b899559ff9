/*
 * bfwork: the test guest's workloads. Each checks its own data and exits 0 only if every byte
 * it wrote read back as written; it prints progress lines ("bfwork: ...") that the host's
 * tests wait for. Static, no libc extras: it runs from a busybox initramfs.
 *
 *   bfwork pattern MB [ROUNDS]            write MB with a pattern, verify; ROUNDS times
 *   bfwork working-set HOT COLD SECONDS   keep HOT MB busy; check COLD MB every 5 s; verify both
 *   bfwork alloc-free MB ROUNDS PAUSE     allocate, fill, verify, free, pause PAUSE s; new
 *                                         memory must read as zero (bench/run.py also runs
 *                                         bf-graph and bf-scan, programs of their own)
 *   bfwork random-writer THREADS MB SECS  threads write random 4 KiB blocks with checksums
 *   bfwork free-and-wait MB PAUSE         fill MB, free it, print "freed", pause PAUSE s, then
 *                                         allocate MB again and check it reads as zero
 *   bfwork hold-and-free MB               fill MB and print "filled"; on a line from the host
 *                                         (the console) free it and print "freed"; on another
 *                                         allocate MB again, check it reads as zero, write it
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include "bf-workload.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MiB (1024UL * 1024)
#define PAGE 4096UL

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
    va_list ap;

    printf("bfwork: ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}


/* A 64-bit word that depends on where it lives and on a seed. */
static uint64_t word(uint64_t index, uint64_t seed)
{
    uint64_t x = index * 0x9e3779b97f4a7c15ULL ^ seed;

    x ^= x >> 31;
    return x * 0xbf58476d1ce4e5b9ULL;
}

static void fill(uint8_t *p, size_t len, uint64_t seed)
{
    uint64_t *w = (uint64_t *)p;

    for (size_t i = 0; i < len / 8; i++) {
        w[i] = word(i, seed);
    }
}

static int verify(const uint8_t *p, size_t len, uint64_t seed, const char *what)
{
    const uint64_t *w = (const uint64_t *)p;

    for (size_t i = 0; i < len / 8; i++) {
        if (w[i] != word(i, seed)) {
            say("FAIL: %s: word %zu (offset 0x%zx) is %016llx, wrote %016llx", what, i, i * 8,
                (unsigned long long)w[i], (unsigned long long)word(i, seed));
            return 1;
        }
    }
    return 0;
}

static int check_zero(const uint8_t *p, size_t len, const char *what)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i]) {
            say("FAIL: %s: byte 0x%zx of new memory is 0x%02x, not 0", what, i, p[i]);
            return 1;
        }
    }
    return 0;
}

static int pattern(size_t mb, int rounds)
{
    size_t len = mb * MiB;
    uint8_t *p = bf_map(len, "bfwork");

    for (int r = 0; r < rounds; r++) {
        double t = bf_now();

        fill(p, len, r + 1);
        if (verify(p, len, r + 1, "pattern")) {
            return 1;
        }
        say("pattern round %d: %zu MiB written and verified in %.2f s", r, mb, bf_now() - t);
    }
    munmap(p, len);
    return 0;
}

static int working_set(size_t hot_mb, size_t cold_mb, int seconds)
{
    uint8_t *hot = bf_map(hot_mb * MiB, "bfwork"), *cold = bf_map(cold_mb * MiB, "bfwork");
    double end, t0 = bf_now(), next_cold_check = t0 + 5;
    unsigned long passes = 0, cold_checks = 0;

    fill(cold, cold_mb * MiB, 77);
    fill(hot, hot_mb * MiB, 0);
    say("working-set ready: hot %zu MiB, cold %zu MiB", hot_mb, cold_mb);
    end = bf_now() + seconds;
    while (bf_now() < end) {
        /* The hot part changes every pass and is checked every pass. */
        passes++;
        fill(hot, hot_mb * MiB, passes);
        if (verify(hot, hot_mb * MiB, passes, "hot")) {
            return 1;
        }
        /* The cold part is read back now and then: all of it faults back in. */
        if (bf_now() >= next_cold_check) {
            if (verify(cold, cold_mb * MiB, 77, "cold")) {
                return 1;
            }
            cold_checks++;
            next_cold_check = bf_now() + 5;
        }
    }
    if (verify(cold, cold_mb * MiB, 77, "cold")) {
        return 1;
    }
    say("working-set done: %lu hot passes in %.1f s (%.1f passes/s), %lu cold checks", passes,
        bf_now() - t0, passes / (bf_now() - t0), cold_checks);
    return 0;
}

static int alloc_free(size_t mb, int rounds, int pause)
{
    size_t len = mb * MiB;
    double work = 0;

    for (int r = 0; r < rounds; r++) {
        double t = bf_now();
        uint8_t *p = bf_map(len, "bfwork");

        if (check_zero(p, len, "alloc-free") ) {
            return 1;
        }
        fill(p, len, 100 + r);
        if (verify(p, len, 100 + r, "alloc-free")) {
            return 1;
        }
        munmap(p, len);
        work += bf_now() - t;
        say("alloc-free round %d: %zu MiB used and freed", r, mb);
        sleep(pause);
    }
    say("alloc-free done: %d rounds of %zu MiB in %.2f s of work (%.1f MiB/s)", rounds, mb,
        work, rounds * mb / work);
    return 0;
}

typedef struct {
    uint8_t *base;
    size_t blocks;
    uint64_t *generation;       /* per block: how many times it was written */
    unsigned seed;
    double end;
    unsigned long writes;
} Writer;

/* A block: its generation in its first word, the rest derived from block and generation. */
static void write_block(Writer *w, size_t b)
{
    uint64_t *p = (uint64_t *)(w->base + b * PAGE), gen = ++w->generation[b];

    p[0] = gen;
    for (size_t i = 1; i < PAGE / 8; i++) {
        p[i] = word(b * 512 + i, gen);
    }
}

static int check_block(Writer *w, size_t b)
{
    uint64_t *p = (uint64_t *)(w->base + b * PAGE), gen = w->generation[b];

    if (!gen) {
        return 0;
    }
    if (p[0] != gen) {
        say("FAIL: block %zu has generation %llu, expected %llu", b,
            (unsigned long long)p[0], (unsigned long long)gen);
        return 1;
    }
    for (size_t i = 1; i < PAGE / 8; i++) {
        if (p[i] != word(b * 512 + i, gen)) {
            say("FAIL: block %zu word %zu is corrupt", b, i);
            return 1;
        }
    }
    return 0;
}

static void *writer_thread(void *opaque)
{
    Writer *w = opaque;

    while (bf_now() < w->end) {
        size_t b = rand_r(&w->seed) % w->blocks;

        if (check_block(w, b)) {
            return (void *)1;
        }
        write_block(w, b);
        w->writes++;
    }
    for (size_t b = 0; b < w->blocks; b++) {
        if (check_block(w, b)) {
            return (void *)1;
        }
    }
    return NULL;
}

static int random_writer(int threads, size_t mb, int seconds)
{
    size_t per = mb * MiB / threads / PAGE;
    pthread_t tid[64];
    Writer w[64];
    unsigned long writes = 0;
    int failed = 0;

    if (threads < 1 || threads > 64) {
        say("FAIL: 1 to 64 threads");
        return 1;
    }
    for (int i = 0; i < threads; i++) {
        w[i] = (Writer) {
            .base = bf_map(per * PAGE, "bfwork"), .blocks = per,
            .generation = calloc(per, sizeof(uint64_t)), .seed = 12345 + i,
            .end = bf_now() + seconds,
        };
        pthread_create(&tid[i], NULL, writer_thread, &w[i]);
    }
    for (int i = 0; i < threads; i++) {
        void *ret;

        pthread_join(tid[i], &ret);
        failed |= ret != NULL;
        writes += w[i].writes;
    }
    if (!failed) {
        say("random-writer: %d threads, %lu block writes, all verified", threads, writes);
    }
    return failed;
}

static int free_and_wait(size_t mb, int pause)
{
    size_t len = mb * MiB;
    uint8_t *p = bf_map(len, "bfwork");

    fill(p, len, 55);
    if (verify(p, len, 55, "free-and-wait")) {
        return 1;
    }
    say("filled %zu MiB", mb);
    munmap(p, len);
    say("freed %zu MiB", mb);
    sleep(pause);
    p = bf_map(len, "bfwork");
    if (check_zero(p, len, "free-and-wait")) {
        return 1;
    }
    fill(p, len, 56);
    if (verify(p, len, 56, "free-and-wait again")) {
        return 1;
    }
    say("reallocated %zu MiB: zero, then written and verified", mb);
    munmap(p, len);
    return 0;
}

/* Waits for a line on the console: the host's go-ahead. */
static void wait_for_host(void)
{
    char line[64];

    if (!fgets(line, sizeof(line), stdin)) {
        say("FAIL: the console closed");
        exit(1);
    }
}

static int hold_and_free(size_t mb)
{
    size_t len = mb * MiB;
    uint8_t *p = bf_map(len, "bfwork");

    fill(p, len, 57);
    if (verify(p, len, 57, "hold-and-free")) {
        return 1;
    }
    say("filled %zu MiB", mb);
    wait_for_host();
    if (verify(p, len, 57, "hold-and-free before freeing")) {
        return 1;
    }
    munmap(p, len);
    say("freed %zu MiB", mb);
    wait_for_host();
    p = bf_map(len, "bfwork");
    if (check_zero(p, len, "hold-and-free")) {
        return 1;
    }
    fill(p, len, 58);
    if (verify(p, len, 58, "hold-and-free again")) {
        return 1;
    }
    say("reallocated %zu MiB: zero, then written and verified", mb);
    munmap(p, len);
    return 0;
}

int main(int argc, char **argv)
{
    int ret;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 3 && !strcmp(argv[1], "pattern")) {
        ret = pattern(atol(argv[2]), argc > 3 ? atoi(argv[3]) : 1);
    } else if (argc == 5 && !strcmp(argv[1], "working-set")) {
        ret = working_set(atol(argv[2]), atol(argv[3]), atoi(argv[4]));
    } else if (argc == 5 && !strcmp(argv[1], "alloc-free")) {
        ret = alloc_free(atol(argv[2]), atoi(argv[3]), atoi(argv[4]));
    } else if (argc == 5 && !strcmp(argv[1], "random-writer")) {
        ret = random_writer(atoi(argv[2]), atol(argv[3]), atoi(argv[4]));
    } else if (argc == 4 && !strcmp(argv[1], "free-and-wait")) {
        ret = free_and_wait(atol(argv[2]), atoi(argv[3]));
    } else if (argc == 3 && !strcmp(argv[1], "hold-and-free")) {
        ret = hold_and_free(atol(argv[2]));
    } else {
        say("FAIL: usage: see the comment at the top of bfwork.c");
        return 2;
    }
    say("%s %s", argv[1], ret ? "FAILED" : "passed");
    return ret;
}
