/*
 * bf-readahead: decides which remote pages to fetch along with a faulting one. It follows a
 * few streams of faults; a stream whose last three faults are evenly spaced (sequential, or
 * strided up to BF_READAHEAD_MAX_STRIDE pages) gets its next pages fetched ahead, in a window
 * that doubles while the stream keeps its pace, up to the configured maximum. Random faults
 * form no stream and fetch nothing extra.
 *
 * A stream is fetched two windows ahead but for one page, its trigger, a window ahead. The
 * trigger stays remote, so the stream faults on it with a window still ahead of it; that
 * fault fetches the next window while the guest reads this one. Only the trigger's own page
 * is waited for: the guest does not stop at every window for the whole of it, as it would
 * if the stream only faulted once it had read past its pages. A fault short of the trigger
 * (the fetch stopped at the local limit), or past it within four windows (the trigger was
 * still resident, so it never faulted), keeps the stream and its window.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_READAHEAD_H
#define BF_READAHEAD_H

#include <stdint.h>

#define BF_READAHEAD_STREAMS 4
#define BF_READAHEAD_MAX_STRIDE 64
#define BF_READAHEAD_FIRST_WINDOW 4

typedef struct {
    uint64_t prev, last;    /* the stream's last two faults */
    uint64_t next;          /* its trigger: where it should fault next if it keeps its pace */
    int64_t stride;
    uint32_t window;        /* 0: not a stream yet */
    uint64_t used;          /* for replacement: when it last took a fault */
    int valid;
} BfReadaheadStream;

typedef struct {
    uint32_t max_window;
    uint64_t clock;
    BfReadaheadStream streams[BF_READAHEAD_STREAMS];
} BfReadahead;

/* What to fetch ahead of a fault on page P: P + k * stride for k = 1 .. count, but trigger. */
typedef struct {
    int64_t stride;
    uint32_t count;
    uint32_t trigger;       /* the k left remote for the stream to fault on; 0: none */
} BfReadaheadPlan;

void bf_readahead_init(BfReadahead *ra, uint32_t max_window);

/*
 * Records a fault on @page and fills @plan with the pages to fetch ahead (the caller skips
 * those that are not remote or out of range). Returns how many that is: count, less the
 * trigger.
 */
uint32_t bf_readahead_fault(BfReadahead *ra, uint64_t page, BfReadaheadPlan *plan);

#endif
