/*
 * memnode-process: runs blowfish-memnode (the binary named by $BLOWFISH_MEMNODE) as a child
 * process on a free loopback port, for tests and benchmarks that need a real memory node.
 * $BLOWFISH_MEMNODE_LISTEN replaces the address it listens on (default tcp:127.0.0.1:0), e.g.
 * with rdma:ADDR:0 to run the same tests over RDMA where there is a device.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef MEMNODE_PROCESS_H
#define MEMNODE_PROCESS_H

#include <glib.h>
#include <stdbool.h>
#include <sys/types.h>

typedef struct {
    GPid pid;
    char *address;      /* tcp:127.0.0.1:PORT, or as $BLOWFISH_MEMNODE_LISTEN says */
    char *capacity;
    char *store;        /* --store FILE, or NULL */
    char *keys;         /* --keys PATH, or NULL */
    char **args;        /* more options, or NULL */
    char *log;          /* its standard error */
} MemnodeProcess;

/* Starts a memnode; NULL (and a message in *why) when $BLOWFISH_MEMNODE is not set. */
MemnodeProcess *memnode_start(const char *capacity, char **why);
/* The same, listening on @listen (e.g. "rdma:10.0.2.15:0"). */
MemnodeProcess *memnode_start_on(const char *listen, const char *capacity, char **why);
/* The address memnode_start listens on. */
const char *memnode_default_listen(void);
/* The same, keeping its pages in a fresh store file (removed by memnode_stop). */
MemnodeProcess *memnode_start_persistent(const char *capacity, char **why);
/* One taking only clients with a key of @keys (its --keys), where memnode_start listens. */
MemnodeProcess *memnode_start_with_keys(const char *keys, const char *capacity, char **why);
/* The same, with more options (e.g. --quota, or --tls-dir, which needs TCP), NULL-terminated. */
MemnodeProcess *memnode_start_with_args(const char *keys, const char *capacity,
                                        const char *const *args, char **why);
/* Starts it again on the same port (after memnode_kill). */
void memnode_restart(MemnodeProcess *node);
/* SIGKILL, and reap. */
void memnode_kill(MemnodeProcess *node);
/*
 * Stops it as an operator would (SIGTERM) and checks that it exits with status 0: built with
 * a leak checker (scripts/sanitize.sh), a node that leaked fails here. Then cleans up.
 */
void memnode_stop(MemnodeProcess *node);
/* Has the node logged @needle (e.g. "session 'mem0' dropped")? */
bool memnode_log_contains(MemnodeProcess *node, const char *needle);

#endif
