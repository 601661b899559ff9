/*
 * memnode-process: blowfish-memnode as a child process.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "memnode-process.h"

#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The node must not outlive a test that crashes. */
static void memnode_child_setup(gpointer unused)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

/* Spawns the node listening on @listen; returns the address it printed. */
static char *memnode_spawn(MemnodeProcess *node, const char *listen)
{
    const char *binary = g_getenv("BLOWFISH_MEMNODE");
    const char *argv[] = { binary, "--listen", listen, "--capacity", node->capacity, NULL };
    g_autoptr(GError) err = NULL;
    char line[256], *at;
    int out_fd;
    FILE *out;

    if (!g_spawn_async_with_pipes(NULL, (char **)argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD,
                                  memnode_child_setup, NULL, &node->pid, NULL, &out_fd, NULL,
                                  &err)) {
        g_error("cannot start %s: %s", binary, err->message);
    }
    out = fdopen(out_fd, "r");
    if (!fgets(line, sizeof(line), out) || !(at = strstr(line, "listening on "))) {
        g_error("%s did not start", binary);
    }
    fclose(out);
    at += strlen("listening on ");
    return g_strndup(at, strcspn(at, ","));
}

MemnodeProcess *memnode_start(const char *capacity, char **why)
{
    MemnodeProcess *node;

    if (!g_getenv("BLOWFISH_MEMNODE")) {
        *why = g_strdup("BLOWFISH_MEMNODE is not set: no memory node to test against");
        return NULL;
    }
    node = g_new0(MemnodeProcess, 1);
    node->capacity = g_strdup(capacity);
    node->address = memnode_spawn(node, "tcp:127.0.0.1:0");
    return node;
}

void memnode_restart(MemnodeProcess *node)
{
    g_autofree char *address = NULL;

    /* The old port may linger in TIME_WAIT for the listener: the node sets SO_REUSEADDR. */
    address = memnode_spawn(node, node->address);
    g_assert_cmpstr(address, ==, node->address);
}

void memnode_kill(MemnodeProcess *node)
{
    kill(node->pid, SIGKILL);
    waitpid(node->pid, NULL, 0);
    g_spawn_close_pid(node->pid);
    node->pid = 0;
}

void memnode_stop(MemnodeProcess *node)
{
    if (!node) {
        return;
    }
    if (node->pid) {
        memnode_kill(node);
    }
    g_free(node->address);
    g_free(node->capacity);
    g_free(node);
}
