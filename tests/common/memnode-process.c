/*
 * memnode-process: blowfish-memnode as a child process.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "memnode-process.h"

#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The node must not outlive a test that crashes; its messages go to its log. */
static void memnode_child_setup(gpointer opaque)
{
    MemnodeProcess *node = opaque;
    int log = open(node->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (log >= 0) {
        dup2(log, STDERR_FILENO);
    }
}

bool memnode_log_contains(MemnodeProcess *node, const char *needle)
{
    g_autofree char *text = NULL;

    return g_file_get_contents(node->log, &text, NULL, NULL) && strstr(text, needle);
}

/* Spawns the node listening on @listen; returns the address it printed. */
static char *memnode_spawn(MemnodeProcess *node, const char *listen)
{
    const char *binary = g_getenv("BLOWFISH_MEMNODE");
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GError) err = NULL;
    char line[256], *at;
    int out_fd;
    FILE *out;

    const char *fixed[] = { binary, "--listen", listen, "--capacity", node->capacity };

    for (guint i = 0; i < G_N_ELEMENTS(fixed); i++) {
        g_ptr_array_add(argv, (gpointer)fixed[i]);
    }
    if (node->store) {
        g_ptr_array_add(argv, (gpointer)"--store");
        g_ptr_array_add(argv, node->store);
    }
    if (node->keys) {
        g_ptr_array_add(argv, (gpointer)"--keys");
        g_ptr_array_add(argv, node->keys);
    }
    for (char **a = node->args; a && *a; a++) {
        g_ptr_array_add(argv, *a);
    }
    g_ptr_array_add(argv, NULL);
    if (!g_spawn_async_with_pipes(NULL, (char **)argv->pdata, NULL, G_SPAWN_DO_NOT_REAP_CHILD,
                                  memnode_child_setup, node, &node->pid, NULL, &out_fd, NULL,
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

const char *memnode_default_listen(void)
{
    const char *listen = g_getenv("BLOWFISH_MEMNODE_LISTEN");

    return listen && *listen ? listen : "tcp:127.0.0.1:0";
}

static MemnodeProcess *memnode_start_with(const char *listen, const char *capacity,
                                          bool persistent, const char *keys,
                                          const char *const *args, char **why)
{
    MemnodeProcess *node;

    if (!g_getenv("BLOWFISH_MEMNODE")) {
        *why = g_strdup("BLOWFISH_MEMNODE is not set: no memory node to test against");
        return NULL;
    }
    node = g_new0(MemnodeProcess, 1);
    node->capacity = g_strdup(capacity);
    node->keys = g_strdup(keys);
    node->args = g_strdupv((char **)args);
    node->log = g_strdup_printf("%s/blowfish-memnode-%d-%p.log", g_get_tmp_dir(), getpid(),
                                node);
    if (persistent) {
        node->store = g_strdup_printf("/dev/shm/blowfish-test-store-%d-%p", getpid(), node);
    }
    node->address = memnode_spawn(node, listen);
    return node;
}

MemnodeProcess *memnode_start(const char *capacity, char **why)
{
    return memnode_start_with(memnode_default_listen(), capacity, false, NULL, NULL, why);
}

MemnodeProcess *memnode_start_on(const char *listen, const char *capacity, char **why)
{
    return memnode_start_with(listen, capacity, false, NULL, NULL, why);
}

MemnodeProcess *memnode_start_persistent(const char *capacity, char **why)
{
    return memnode_start_with(memnode_default_listen(), capacity, true, NULL, NULL, why);
}

MemnodeProcess *memnode_start_with_keys(const char *keys, const char *capacity, char **why)
{
    return memnode_start_with(memnode_default_listen(), capacity, false, keys, NULL, why);
}

MemnodeProcess *memnode_start_with_args(const char *keys, const char *capacity,
                                        const char *const *args, char **why)
{
    return memnode_start_with(memnode_default_listen(), capacity, false, keys, args, why);
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
        int status = 0;
        pid_t reaped = 0;

        kill(node->pid, SIGTERM);
        for (int i = 0; i < 1000 && reaped == 0; i++) {
            reaped = waitpid(node->pid, &status, WNOHANG);
            if (reaped == 0) {
                g_usleep(10 * 1000);
            }
        }
        if (reaped == 0) {
            memnode_kill(node);
            g_error("the memory node did not stop within 10 s of SIGTERM");
        }
        g_spawn_close_pid(node->pid);
        node->pid = 0;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            g_autofree char *log = NULL;

            g_file_get_contents(node->log, &log, NULL, NULL);
            g_test_message("memory node log:\n%s", log ? log : "(none)");
            g_error("the memory node exited with status 0x%x, not 0 (a leak, under a "
                    "sanitizer?)", status);
        }
    }
    if (node->store) {
        unlink(node->store);
    }
    unlink(node->log);
    g_free(node->log);
    g_free(node->address);
    g_free(node->capacity);
    g_free(node->store);
    g_free(node->keys);
    g_strfreev(node->args);
    g_free(node);
}
