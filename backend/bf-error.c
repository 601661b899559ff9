/*
 * bf-error: the GError domain of the Blowfish engine.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-error.h"

G_DEFINE_QUARK(blowfish-engine-error-quark, bf_error)
