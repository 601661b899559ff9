/*
 * libFuzzer target: the memory node's side of the protocol (memnode/bf-node.c), fed what a
 * client sends on one connection. Each input is served twice: by a node with keys (the
 * AUTH exchange, and the refusal of anything before it) and by one without (sessions and
 * page messages against a real store). The node must answer or disconnect; ASan and UBSan
 * catch any read out of bounds, leak or undefined behaviour on the way.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-keyring.h"
#include "bf-node.h"

#include <glib/gstdio.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

static BfKeyring *fuzz_keys;

typedef struct {
    int fd;
    const uint8_t *data;
    size_t size;
} FuzzPeer;

/* The client: sends the input, then says it has no more. */
static gpointer fuzz_send(gpointer opaque)
{
    FuzzPeer *peer = opaque;
    size_t done = 0;

    while (done < peer->size) {
        ssize_t n = send(peer->fd, peer->data + done, peer->size - done, MSG_NOSIGNAL);

        if (n <= 0) {
            break;          /* the node hung up: the rest goes unread */
        }
        done += n;
    }
    shutdown(peer->fd, SHUT_WR);
    return NULL;
}

/* ... and reads every reply, so that the node never blocks on a full socket. */
static gpointer fuzz_drain(gpointer opaque)
{
    FuzzPeer *peer = opaque;
    uint8_t buf[65536];

    while (read(peer->fd, buf, sizeof(buf)) > 0) {
    }
    return NULL;
}

static void fuzz_serve(const BfKeyring *keys, const uint8_t *data, size_t size)
{
    g_autoptr(BfStore) store = bf_store_new(8 << 20);
    g_autoptr(BfNode) node = bf_node_new(store, keys, NULL, 1);
    FuzzPeer peer = { .data = data, .size = size };
    GThread *sender, *drainer;
    int fds[2];

    g_assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    peer.fd = fds[1];
    sender = g_thread_new("fuzz-send", fuzz_send, &peer);
    drainer = g_thread_new("fuzz-drain", fuzz_drain, &peer);
    bf_node_serve(node, fds[0], "fuzz");
    close(fds[0]);
    g_thread_join(sender);
    g_thread_join(drainer);
    close(fds[1]);
}

static GLogWriterOutput fuzz_quiet(GLogLevelFlags level, const GLogField *fields,
                                   gsize n_fields, gpointer opaque)
{
    return G_LOG_WRITER_HANDLED;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *path = NULL;
    int fd = g_file_open_tmp("fuzz-keys-XXXXXX", &path, &err);

    g_assert(fd >= 0);
    close(fd);
    /* The seeds' key (tests/fuzz/make-seeds.py): "vm1", 32 bytes of 0x11. */
    g_assert(g_file_set_contents(path, "vm1 ERERERERERERERERERERERERERERERERERERERERERE=\n", -1,
                                 &err));
    fuzz_keys = bf_keyring_load(path, &err);
    g_assert(fuzz_keys);
    g_unlink(path);
    g_log_set_writer_func(fuzz_quiet, NULL, NULL);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_serve(fuzz_keys, data, size);
    fuzz_serve(NULL, data, size);
    return 0;
}
