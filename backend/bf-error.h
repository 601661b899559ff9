/*
 * bf-error: the GError domain of the Blowfish engine.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_ERROR_H
#define BF_ERROR_H

#include <glib.h>

#define BF_ERROR (bf_error_quark())
GQuark bf_error_quark(void);

typedef enum {
    BF_ERROR_FAILED,        /* a system call failed: the message says which and why */
    BF_ERROR_INVALID,       /* bad configuration or argument */
    BF_ERROR_PERMISSION,    /* the process lacks a permission: the message says which */
    BF_ERROR_UNSUPPORTED,   /* the kernel lacks a feature */
    BF_ERROR_PROTOCOL,      /* the peer sent a malformed or unexpected message */
    BF_ERROR_UNREACHABLE,   /* the memory node cannot be reached, or the connection broke */
    BF_ERROR_POOL,          /* the memory node refused a request (full, unknown page, ...) */
} BfErrorCode;

#endif
