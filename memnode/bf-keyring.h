/*
 * bf-keyring: the keys a memory node accepts (blowfish-memnode --keys), loaded once at start.
 * From a directory, each regular file is a key named after the file; from a file, each line is
 * "NAME KEY" ('#' starts a comment). A key is base64, as QEMU reads it from a secret object
 * with format=base64: `head -c 32 /dev/urandom | base64 > keys/vm1` serves both sides.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_KEYRING_H
#define BF_KEYRING_H

#include "bf-auth.h"

typedef struct BfKeyring BfKeyring;

BfKeyring *bf_keyring_load(const char *path, GError **errp);
void bf_keyring_free(BfKeyring *keyring);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(BfKeyring, bf_keyring_free)

/* The key named @name, or NULL. */
const BfKey *bf_keyring_lookup(const BfKeyring *keyring, const char *name);
guint bf_keyring_size(const BfKeyring *keyring);

#endif
