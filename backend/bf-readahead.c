/*
 * bf-readahead: stream detection for remote page faults.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "bf-readahead.h"

#include <glib.h>
#include <stdbool.h>
#include <string.h>

void bf_readahead_init(BfReadahead *ra, uint32_t max_window)
{
    memset(ra, 0, sizeof(*ra));
    ra->max_window = max_window;
}

/* The stream took a fault on @page. */
static void bf_stream_took(BfReadahead *ra, BfReadaheadStream *s, uint64_t page)
{
    s->prev = s->last;
    s->last = page;
    s->used = ra->clock;
}

/*
 * Fetch two windows ahead of @page, but for the trigger, a window ahead: the stream should
 * fault there next.
 */
static uint32_t bf_stream_ahead(BfReadaheadStream *s, uint64_t page, BfReadaheadPlan *plan)
{
    s->next = page + (uint64_t)(s->stride * (int64_t)s->window);
    plan->stride = s->stride;
    plan->count = 2 * s->window;
    plan->trigger = s->window;
    return plan->count - 1;
}

/*
 * Is @page where the stream was going? On its trigger; short of it, if fetching stopped
 * there (at the local limit) or the page went back to the pool since; past it, if the
 * trigger was still resident (so it never faulted there): up to twice as far as its two
 * windows.
 */
static bool bf_stream_going(const BfReadaheadStream *s, uint64_t page)
{
    int64_t d = (int64_t)(page - s->last);

    return s->window && d % s->stride == 0 && d / s->stride > 0 &&
           d / s->stride <= 4 * (int64_t)s->window;
}

uint32_t bf_readahead_fault(BfReadahead *ra, uint64_t page, BfReadaheadPlan *plan)
{
    BfReadaheadStream *s, *nearest = NULL, *victim = NULL;
    int64_t nearest_distance = BF_READAHEAD_MAX_STRIDE + 1;

    *plan = (BfReadaheadPlan) { 0 };
    if (!ra->max_window) {
        return 0;
    }
    ra->clock++;
    for (int i = 0; i < BF_READAHEAD_STREAMS; i++) {
        int64_t d, abs_d;

        s = &ra->streams[i];
        if (!s->valid) {
            victim = victim && !victim->valid ? victim : s;
            continue;
        }
        if (!victim || (victim->valid && s->used < victim->used)) {
            victim = s;
        }
        /*
         * Where the stream was going: on its trigger, it keeps its pace and the window
         * doubles; elsewhere, the same window, from here.
         */
        if (bf_stream_going(s, page)) {
            if (page == s->next) {
                s->window = MIN(s->window * 2, ra->max_window);
            }
            bf_stream_took(ra, s, page);
            return bf_stream_ahead(s, page, plan);
        }
        d = (int64_t)(page - s->last);
        abs_d = d < 0 ? -d : d;
        if (d != 0 && abs_d <= BF_READAHEAD_MAX_STRIDE && abs_d < nearest_distance) {
            nearest = s;
            nearest_distance = abs_d;
        }
    }

    if (nearest) {
        int64_t d = (int64_t)(page - nearest->last);
        int64_t previous_d = (int64_t)(nearest->last - nearest->prev);

        s = nearest;
        bf_stream_took(ra, s, page);
        if (d == previous_d) {
            /* Three evenly spaced faults: a stream (again, if it had lost its pace). */
            s->stride = d;
            s->window = MIN(BF_READAHEAD_FIRST_WINDOW, ra->max_window);
            return bf_stream_ahead(s, page, plan);
        }
        s->window = 0;
        return 0;
    }

    /* A fault far from every stream starts a new one in a free or the least used slot. */
    s = victim;
    memset(s, 0, sizeof(*s));
    s->valid = 1;
    s->prev = s->last = page;
    s->used = ra->clock;
    return 0;
}
