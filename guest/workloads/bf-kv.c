/*
 * bf-kv: the benchmarks' key-value workload: Debian's redis-server (copied into the bench
 * guest by guest/build-bench-guest.sh) under a skewed key load. Starts redis-server, loads
 * KEYS keys of BYTES bytes each (128 to an MSET), then for SECONDS runs GETs (90%) and SETs
 * (10%) of keys drawn from a Zipf distribution (s = 0.99), 16 requests per round trip. Every
 * value encodes its key and version; every GET is checked against the version last set. Prints
 *   "bf-kv ready: ..." once loaded, then
 *   "bf-kv done: N requests in S s (R ops/s), validated"
 * and exits 0, or prints "bfwork: FAIL: ..." and exits 1.
 *
 *   bf-kv KEYS BYTES SECONDS
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include "bf-workload.h"

#include <arpa/inet.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define PORT 6379
#define BATCH 16
/* Keys per MSET while loading (a SET a key took twice as long under TCG). */
#define LOAD_BATCH 128

static int sock = -1;
static char rbuf[1 << 16];
static size_t rlen, rpos;

static void fail(const char *fmt, ...)
{
    va_list ap;

    printf("bfwork: FAIL: bf-kv: ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    exit(1);
}

static void send_all(const char *p, size_t len)
{
    while (len) {
        ssize_t n = write(sock, p, len);

        if (n <= 0) {
            fail("write to redis-server failed");
        }
        p += n;
        len -= n;
    }
}

static int getc_reply(void)
{
    if (rpos == rlen) {
        ssize_t n = read(sock, rbuf, sizeof(rbuf));

        if (n <= 0) {
            fail("redis-server closed the connection");
        }
        rlen = n;
        rpos = 0;
    }
    return (unsigned char)rbuf[rpos++];
}

/* Reads a reply line (without CRLF) into @line. */
static void read_line(char *line, size_t size)
{
    size_t n = 0;
    int c;

    while ((c = getc_reply()) != '\n') {
        if (c != '\r' && n + 1 < size) {
            line[n++] = c;
        }
    }
    line[n] = 0;
}

/* The value of @key at @version: its bytes spell both, so any mix-up shows. */
static void make_value(char *v, size_t bytes, uint32_t key, uint32_t version)
{
    uint64_t x = ((uint64_t)key << 32 | version) * 0x9e3779b97f4a7c15ULL;

    for (size_t i = 0; i < bytes; i++) {
        x ^= x >> 29;
        x *= 0xbf58476d1ce4e5b9ULL;
        v[i] = 'a' + (x >> 59);
    }
}

static size_t append_bulk(char *buf, const char *s, size_t len)
{
    size_t n = sprintf(buf, "$%zu\r\n", len);

    memcpy(buf + n, s, len);
    memcpy(buf + n + len, "\r\n", 2);
    return n + len + 2;
}

static size_t append_key(char *buf, uint32_t key)
{
    char k[16];
    int klen = snprintf(k, sizeof(k), "k%08u", key);

    return append_bulk(buf, k, klen);
}

static size_t append_cmd(char *buf, const char *cmd, uint32_t key, const char *value,
                         size_t bytes)
{
    size_t n = sprintf(buf, "*%d\r\n", value ? 3 : 2);

    n += append_bulk(buf + n, cmd, strlen(cmd));
    n += append_key(buf + n, key);
    if (value) {
        n += append_bulk(buf + n, value, bytes);
    }
    return n;
}

static pid_t start_server(void)
{
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(PORT),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    pid_t pid = fork();

    if (pid == 0) {
        execl("/bin/redis-server", "redis-server", "--port", "6379", "--save", "",
              "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning",
              (char *)NULL);
        _exit(127);
    }
    for (int tries = 0; tries < 600; tries++) {
        sock = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(sock, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
            return pid;
        }
        close(sock);
        usleep(50000);
    }
    fail("redis-server did not start");
    return -1;
}

/* Zipf(s) over [0, n): the cumulative table, searched. */
static double *zipf_table(uint32_t n, double s)
{
    double *cdf = malloc(n * sizeof(double)), sum = 0;

    for (uint32_t i = 0; i < n; i++) {
        sum += 1 / pow(i + 1, s);
        cdf[i] = sum;
    }
    for (uint32_t i = 0; i < n; i++) {
        cdf[i] /= sum;
    }
    return cdf;
}

static uint32_t zipf_draw(const double *cdf, uint32_t n, uint64_t *seed)
{
    double u;
    uint32_t lo = 0, hi = n - 1;

    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    u = (*seed >> 11) * 0x1.0p-53;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;

        if (cdf[mid] < u) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    /* Scatter the popular keys over the key space (and so over redis's memory). */
    return (uint32_t)((lo * 2654435761ULL) % n);
}

int main(int argc, char **argv)
{
    uint32_t keys, *version;
    size_t bytes;
    int seconds;
    char *buf, *value, *expect, line[64];
    uint64_t seed = 88172645463325252ULL, requests = 0;
    double *cdf, t0, end;
    pid_t server;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 4 || (keys = strtoul(argv[1], NULL, 0)) < 1 ||
        (bytes = strtoul(argv[2], NULL, 0)) < 16 || bytes > 65536 ||
        (seconds = atoi(argv[3])) < 1) {
        printf("bfwork: FAIL: usage: bf-kv KEYS BYTES(16-65536) SECONDS\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    server = start_server();
    version = calloc(keys, sizeof(uint32_t));
    buf = malloc(LOAD_BATCH * (bytes + 128));
    value = malloc(bytes);
    expect = malloc(bytes);
    cdf = zipf_table(keys, 0.99);

    t0 = bf_now();
    for (uint32_t k = 0; k < keys;) {
        uint32_t end = keys - k < LOAD_BATCH ? keys : k + LOAD_BATCH;
        size_t n = sprintf(buf, "*%u\r\n", 1 + 2 * (end - k));

        n += append_bulk(buf + n, "MSET", 4);
        for (; k < end; k++) {
            make_value(value, bytes, k, 0);
            n += append_key(buf + n, k);
            n += append_bulk(buf + n, value, bytes);
        }
        send_all(buf, n);
        read_line(line, sizeof(line));
        if (strcmp(line, "+OK")) {
            fail("MSET answered '%s'", line);
        }
    }
    printf("bf-kv ready: %u keys of %zu bytes (%zu MiB of values) loaded in %.1f s\n", keys,
           bytes, keys * bytes >> 20, bf_now() - t0);

    t0 = bf_now();
    end = t0 + seconds;
    while (bf_now() < end) {
        uint32_t batch_keys[BATCH], expected[BATCH];
        int is_set[BATCH];
        size_t n = 0;

        for (int i = 0; i < BATCH; i++) {
            uint32_t k = zipf_draw(cdf, keys, &seed);

            batch_keys[i] = k;
            is_set[i] = (seed >> 20) % 10 == 0;
            if (is_set[i]) {
                make_value(value, bytes, k, ++version[k]);
                n += append_cmd(buf + n, "SET", k, value, bytes);
            } else {
                n += append_cmd(buf + n, "GET", k, NULL, 0);
            }
            /* What a GET must see: the last SET before it, in this batch too. */
            expected[i] = version[k];
        }
        send_all(buf, n);
        for (int i = 0; i < BATCH; i++) {
            read_line(line, sizeof(line));
            if (is_set[i]) {
                if (strcmp(line, "+OK")) {
                    fail("SET answered '%s'", line);
                }
                continue;
            }
            if (line[0] != '$' || (size_t)atol(line + 1) != bytes) {
                fail("GET k%08u answered '%s'", batch_keys[i], line);
            }
            for (size_t b = 0; b < bytes; b++) {
                value[b] = getc_reply();
            }
            getc_reply();
            getc_reply();
            make_value(expect, bytes, batch_keys[i], expected[i]);
            if (memcmp(value, expect, bytes)) {
                fail("GET k%08u returned the wrong value (version %u expected)",
                     batch_keys[i], expected[i]);
            }
        }
        requests += BATCH;
    }
    printf("bf-kv done: %llu requests in %.2f s (%.0f ops/s), validated\n",
           (unsigned long long)requests, bf_now() - t0, requests / (bf_now() - t0));
    kill(server, SIGTERM);
    waitpid(server, NULL, 0);
    return 0;
}
