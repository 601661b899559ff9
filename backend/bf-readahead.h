/*
 * bf-readahead: decides which remote pages to fetch along with a faulting one. It follows a
 * few streams of faults; a stream whose last three faults are evenly spaced (sequential, or
 * strided up to BF_READAHEAD_MAX_STRIDE pages) gets its next pages fetched ahead, in a window
 * that doubles while the stream keeps faulting exactly where the window ended, up to the
 * configured maximum. Random faults form no stream and fetch nothing extra.
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
    uint64_t next;          /* where it should fault next if the window was right */
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

void bf_readahead_init(BfReadahead *ra, uint32_t max_window);

/*
 * Records a fault on @page. Returns how many pages to fetch ahead: @page + k * *stride for
 * k = 1 .. the returned count (the caller skips those that are not remote or out of range).
 */
uint32_t bf_readahead_fault(BfReadahead *ra, uint64_t page, int64_t *stride);

#endif
