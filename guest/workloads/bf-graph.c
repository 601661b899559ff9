/*
 * bf-graph: the benchmarks' graph workload, in the spirit of GAPBS's BFS. Builds an
 * undirected graph of 2^SCALE vertices and DEGREE * 2^SCALE random edges (skewed: low vertex
 * numbers get most of them), in compressed sparse rows, then runs breadth-first searches from
 * ROUNDS sources, or as many as start within SECONDS if that is given (the benchmarks bound
 * each run's time so). Each search is validated with Graph500's rules (every edge joins
 * vertices at most one level apart, or two unreached ones; every reached vertex's parent is a
 * neighbour one level up). Prints
 *   "bf-graph ready: ..." once built, then
 *   "bf-graph done: N searches in S s (M MTEPS), validated"
 * and exits 0, or prints "bfwork: FAIL: ..." and exits 1.
 *
 *   bf-graph SCALE DEGREE ROUNDS [SECONDS]
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include "bf-workload.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A vertex of 2^scale, skewed towards low numbers (the square of a uniform draw). */
static uint32_t skewed_vertex(uint64_t *s, int scale)
{
    uint64_t x = rng_next(s) >> 32;

    return (uint32_t)((x * x) >> (64 - scale));
}

typedef struct {
    uint32_t n;
    uint64_t *first;    /* n + 1: the neighbours of v are adj[first[v] .. first[v + 1]) */
    uint32_t *adj;
} Graph;

#define CHUNK_EDGES (1u << 16)
#define BUCKET_BITS 8

/*
 * Both directions (u << 32 | v) of the next @n random edges from @seed into @entries (2 * @n
 * of them), grouped by u's top bits. Used a group at a time, they write (degree counts,
 * adjacency slots) in a small span of memory at a time: under TCG, writes scattered over the
 * whole graph miss the soft TLB, and the build took 21 s, not 5.
 */
static void next_chunk(uint64_t *seed, int scale, uint64_t n, uint64_t *entries)
{
    int shift = scale > BUCKET_BITS ? scale - BUCKET_BITS : 0;
    uint64_t start[(1u << BUCKET_BITS) + 1] = { 0 }, s = *seed;

    for (uint64_t i = 0; i < n; i++) {
        uint32_t u = skewed_vertex(&s, scale), v = rng_next(&s) >> (64 - scale);

        start[(u >> shift) + 1]++;
        start[(v >> shift) + 1]++;
    }
    for (uint32_t b = 0; b < 1u << BUCKET_BITS; b++) {
        start[b + 1] += start[b];
    }
    for (uint64_t i = 0; i < n; i++) {
        uint32_t u = skewed_vertex(seed, scale), v = rng_next(seed) >> (64 - scale);

        entries[start[u >> shift]++] = (uint64_t)u << 32 | v;
        entries[start[v >> shift]++] = (uint64_t)v << 32 | u;
    }
}

/* Two passes over the same random edges: count the degrees, then place the neighbours. */
static void build(Graph *g, int scale, int degree)
{
    uint64_t edges = (uint64_t)degree << scale, seed, n;
    size_t chunk_size = 2 * CHUNK_EDGES * sizeof(uint64_t);
    uint64_t *fill, *chunk = bf_map(chunk_size, "bf-graph");

    g->n = 1u << scale;
    g->first = bf_map((g->n + 1) * sizeof(uint64_t), "bf-graph");
    seed = 0x9e3779b97f4a7c15ULL;
    for (uint64_t e = 0; e < edges; e += n) {
        n = edges - e < CHUNK_EDGES ? edges - e : CHUNK_EDGES;
        next_chunk(&seed, scale, n, chunk);
        for (uint64_t i = 0; i < 2 * n; i++) {
            g->first[(chunk[i] >> 32) + 1]++;
        }
    }
    for (uint32_t v = 0; v < g->n; v++) {
        g->first[v + 1] += g->first[v];
    }
    g->adj = bf_map(g->first[g->n] * sizeof(uint32_t), "bf-graph");
    fill = bf_map(g->n * sizeof(uint64_t), "bf-graph");
    memcpy(fill, g->first, g->n * sizeof(uint64_t));
    seed = 0x9e3779b97f4a7c15ULL;
    for (uint64_t e = 0; e < edges; e += n) {
        n = edges - e < CHUNK_EDGES ? edges - e : CHUNK_EDGES;
        next_chunk(&seed, scale, n, chunk);
        for (uint64_t i = 0; i < 2 * n; i++) {
            uint32_t u = chunk[i] >> 32;

            g->adj[fill[u]++] = (uint32_t)chunk[i];
        }
    }
    munmap(fill, g->n * sizeof(uint64_t));
    munmap(chunk, chunk_size);
}

/* Top-down BFS from @root; returns the edges it examined. */
static uint64_t bfs(const Graph *g, uint32_t root, int32_t *depth, uint32_t *parent,
                    uint32_t *queue)
{
    uint64_t head = 0, tail = 0, examined = 0;

    memset(depth, 0xff, g->n * sizeof(int32_t));
    depth[root] = 0;
    parent[root] = root;
    queue[tail++] = root;
    while (head < tail) {
        uint32_t u = queue[head++];

        for (uint64_t i = g->first[u]; i < g->first[u + 1]; i++) {
            uint32_t v = g->adj[i];

            examined++;
            if (depth[v] < 0) {
                depth[v] = depth[u] + 1;
                parent[v] = u;
                queue[tail++] = v;
            }
        }
    }
    return examined;
}

static int validate(const Graph *g, uint32_t root, const int32_t *depth,
                    const uint32_t *parent)
{
    if (depth[root] != 0) {
        printf("bfwork: FAIL: bf-graph: the root %u has depth %d\n", root, depth[root]);
        return 1;
    }
    for (uint32_t u = 0; u < g->n; u++) {
        bool parent_found = u == root || depth[u] < 0;

        for (uint64_t i = g->first[u]; i < g->first[u + 1]; i++) {
            uint32_t v = g->adj[i];

            if ((depth[u] < 0) != (depth[v] < 0) ||
                (depth[u] >= 0 && abs(depth[u] - depth[v]) > 1)) {
                printf("bfwork: FAIL: bf-graph: edge %u-%u joins depths %d and %d\n", u, v,
                       depth[u], depth[v]);
                return 1;
            }
            parent_found |= v == parent[u] && depth[v] == depth[u] - 1;
        }
        if (!parent_found) {
            printf("bfwork: FAIL: bf-graph: vertex %u's parent %u is no neighbour a level up\n",
                   u, parent[u]);
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    int scale, degree, rounds, r;
    double seconds = 0;
    uint64_t examined = 0, seed = 12345;
    int32_t *depth;
    uint32_t *parent, *queue;
    double t0, search = 0;
    Graph g;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 4 || argc > 5 || (scale = atoi(argv[1])) < 4 || scale > 28 ||
        (degree = atoi(argv[2])) < 1 || (rounds = atoi(argv[3])) < 1 ||
        (argc == 5 && (seconds = atof(argv[4])) <= 0)) {
        printf("bfwork: FAIL: usage: bf-graph SCALE(4-28) DEGREE ROUNDS [SECONDS]\n");
        return 2;
    }
    t0 = bf_now();
    build(&g, scale, degree);
    depth = bf_map(g.n * sizeof(int32_t), "bf-graph");
    parent = bf_map(g.n * sizeof(uint32_t), "bf-graph");
    queue = bf_map(g.n * sizeof(uint32_t), "bf-graph");
    printf("bf-graph ready: %u vertices, %llu edges, %llu MiB, built in %.1f s\n", g.n,
           (unsigned long long)g.first[g.n] / 2,
           (unsigned long long)((g.first[g.n] * 4 + g.n * 20ULL) >> 20), bf_now() - t0);
    t0 = bf_now();
    for (r = 0; r < rounds && (!seconds || bf_now() - t0 < seconds); r++) {
        /* Sources with edges: low numbers (the skew gives them many). */
        uint32_t root = skewed_vertex(&seed, scale);
        double s = bf_now();

        while (g.first[root] == g.first[root + 1]) {
            root = skewed_vertex(&seed, scale);
        }
        examined += bfs(&g, root, depth, parent, queue);
        search += bf_now() - s;
        if (validate(&g, root, depth, parent)) {
            return 1;
        }
    }
    printf("bf-graph done: %d searches in %.2f s (%.2f MTEPS), validated, %.1f s in all\n",
           r, search, examined / search / 1e6, bf_now() - t0);
    return 0;
}
