/*
 * bf-keyring: loading the memory node's keys (see bf-keyring.h).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-keyring.h"
#include "bf-error.h"

#include <gnutls/gnutls.h>
#include <string.h>

/* Key text is as good as the key: wiped before it is freed. */
static void bf_keyring_wipe_free(char *text)
{
    if (text) {
        gnutls_memset(text, 0, strlen(text));
        g_free(text);
    }
}

static void bf_keyring_wipe_strv(char **strv)
{
    for (char **s = strv; s && *s; s++) {
        gnutls_memset(*s, 0, strlen(*s));
    }
    g_strfreev(strv);
}

struct BfKeyring {
    GHashTable *keys;       /* name -> BfKey */
};

/* Adds the key @name from its base64 text; @where says where it was, for errors. */
static gboolean bf_keyring_add(BfKeyring *ring, const char *name, const char *base64,
                               const char *where, GError **errp)
{
    char *text = g_strstrip(g_strdup(base64));
    g_autofree guchar *secret = NULL;
    gsize len = 0;
    BfKey *key;
    gboolean base64_only;

    /* g_base64_decode() skips what is not base64: check the text is all of it first. */
    base64_only = text[0] && strspn(text, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                          "0123456789+/=") == strlen(text);
    if (!base64_only) {
        bf_keyring_wipe_free(text);
        g_set_error(errp, BF_ERROR, BF_ERROR_INVALID, "%s: key '%s' is not base64", where,
                    name);
        return FALSE;
    }
    secret = g_base64_decode(text, &len);
    bf_keyring_wipe_free(text);
    key = bf_key_new(name, secret, len, errp);
    memset(secret, 0, len);
    if (!key) {
        g_prefix_error(errp, "%s: ", where);
        return FALSE;
    }
    if (g_hash_table_contains(ring->keys, key->name)) {
        g_set_error(errp, BF_ERROR, BF_ERROR_INVALID, "%s: key '%s' appears twice", where,
                    name);
        bf_key_free(key);
        return FALSE;
    }
    g_hash_table_insert(ring->keys, key->name, key);
    return TRUE;
}

static gboolean bf_keyring_load_dir(BfKeyring *ring, const char *path, GError **errp)
{
    g_autoptr(GDir) dir = g_dir_open(path, 0, errp);
    const char *name;

    if (!dir) {
        return FALSE;
    }
    while ((name = g_dir_read_name(dir))) {
        g_autofree char *file = g_build_filename(path, name, NULL);
        char *text = NULL;
        gboolean added;

        if (name[0] == '.' || !g_file_test(file, G_FILE_TEST_IS_REGULAR)) {
            continue;
        }
        if (!g_file_get_contents(file, &text, NULL, errp)) {
            return FALSE;
        }
        added = bf_keyring_add(ring, name, text, file, errp);
        bf_keyring_wipe_free(text);
        if (!added) {
            return FALSE;
        }
    }
    return TRUE;
}

static gboolean bf_keyring_load_file(BfKeyring *ring, const char *path, GError **errp)
{
    char *text = NULL;
    char **lines;
    gboolean ok = TRUE;

    if (!g_file_get_contents(path, &text, NULL, errp)) {
        return FALSE;
    }
    lines = g_strsplit(text, "\n", -1);
    bf_keyring_wipe_free(text);
    for (guint i = 0; ok && lines[i]; i++) {
        g_autofree char *where = g_strdup_printf("%s:%u", path, i + 1);
        char *line = g_strstrip(lines[i]);
        char **fields;

        if (!line[0] || line[0] == '#') {
            continue;
        }
        fields = g_strsplit_set(line, " \t", -1);
        if (g_strv_length(fields) != 2) {
            g_set_error(errp, BF_ERROR, BF_ERROR_INVALID, "%s: expected NAME KEY", where);
            ok = FALSE;
        } else {
            ok = bf_keyring_add(ring, fields[0], fields[1], where, errp);
        }
        bf_keyring_wipe_strv(fields);
    }
    bf_keyring_wipe_strv(lines);
    return ok;
}

BfKeyring *bf_keyring_load(const char *path, GError **errp)
{
    g_autoptr(BfKeyring) ring = g_new0(BfKeyring, 1);
    gboolean ok;

    ring->keys = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
                                       (GDestroyNotify)bf_key_free);
    ok = g_file_test(path, G_FILE_TEST_IS_DIR) ? bf_keyring_load_dir(ring, path, errp) :
                                                 bf_keyring_load_file(ring, path, errp);
    if (!ok) {
        return NULL;
    }
    if (!g_hash_table_size(ring->keys)) {
        g_set_error(errp, BF_ERROR, BF_ERROR_INVALID, "%s holds no key", path);
        return NULL;
    }
    return g_steal_pointer(&ring);
}

void bf_keyring_free(BfKeyring *ring)
{
    if (ring) {
        if (ring->keys) {
            g_hash_table_destroy(ring->keys);
        }
        g_free(ring);
    }
}

const BfKey *bf_keyring_lookup(const BfKeyring *ring, const char *name)
{
    return g_hash_table_lookup(ring->keys, name);
}

guint bf_keyring_size(const BfKeyring *ring)
{
    return g_hash_table_size(ring->keys);
}
