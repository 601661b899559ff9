/*
 * bf-pages: the engine's per-page metadata, 16 bits a page, changed only by compare-and-swap.
 *
 *   bits 0-2   state: where the page's content is
 *   bit  3     BUSY      a thread is mapping the page in the guest; nobody else may claim it
 *   bit  4     ACCESSED  faulted in since the scanner last looked
 *   bit  5     ZAPPED    the scanner dropped its mapping to see whether it is used
 *   bit  6     CLEAN     the pool held an identical copy when it was placed (eviction
 *                        sends it if its hash changed since, unless READ_ONLY)
 *   bit  7     WANTED    a fault waits for the page while it is being evicted
 *   bit  8     POOL_COPY the pool holds a copy (maybe stale): free it when the page dies
 *   bit  9     DISCARDED the guest freed it while it was being evicted or fetched: it ends FREE
 *   bit 10     HINTABLE  not written since the free page hint round began: if the guest
 *                        hints it free, it can go (bf_engine_hint_begin())
 *   bit 11     READ_ONLY REMOTE: not written in its last stay, so placed write-protected
 *                        when it comes back (and kept READ_ONLY); RESIDENT: write-protected
 *                        since it was placed CLEAN, so unchanged: eviction only punches it
 *
 * States and who moves a page between them (see docs/design.md for the diagram):
 *
 *   NEVER    -> RESIDENT   fault thread, zero-fill (UFFDIO_ZEROPAGE)
 *   ZERO     -> RESIDENT   fault thread, zero-fill
 *   RESIDENT -> EVICTING   reclaim thread claims it (not BUSY), drops its mapping (if CLEAN,
 *                          write-protects it instead), copies it (unless CLEAN and READ_ONLY:
 *                          the pool has it)
 *   EVICTING -> RESIDENT   reclaim thread, if the eviction failed or a fault WANTED it
 *   EVICTING -> PUNCHING   reclaim thread, pool copy acknowledged (or none needed: CLEAN and
 *                          its hash unchanged, or all zero), nobody waiting
 *   PUNCHING -> REMOTE     reclaim thread, hole punched in the memfd (ZERO if all zero,
 *                          FREE if DISCARDED), READ_ONLY if it was not sent; a READ_ONLY page
 *                          even if a fault waits for it, which it wakes to fetch it
 *   any idle -> FREE       fault thread, when QEMU discards the page (free page reporting),
 *                          or the guest hints it free while it is HINTABLE
 *   RESIDENT -> FREE       whoever holds it BUSY to map it, if QEMU is discarding it (the
 *                          event read, not yet served): not mapped, punched
 *   REMOTE   -> FETCHING   fault thread (on a fault or readahead) or restore-all
 *   FETCHING -> RESIDENT   whoever fetched it, after UFFDIO_COPY placed it (CLEAN, unless
 *                          fetched for a write fault; write-protected and still READ_ONLY if
 *                          it was READ_ONLY)
 *   FETCHING -> FREE       whoever fetched it, if the guest freed it meanwhile (DISCARDED, or
 *                          in a range being discarded): not placed, or punched again
 *   FETCHING -> REMOTE     restore-all, if its batch cannot complete
 *
 * While a page is EVICTING or PUNCHING no write can succeed without the engine: its mapping
 * stays dropped, or, if it is CLEAN, write-protected until the punch unmaps it (reads see
 * the content read, or the pool's, meanwhile). Faults mark it WANTED and wait, and the
 * reclaim thread maps it back (from the memfd, or once punched from the copy it read)
 * instead of losing a write, or, for a READ_ONLY page it punched, publishes it REMOTE and
 * wakes the fault, which fetches it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef BF_PAGES_H
#define BF_PAGES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum {
    BF_PAGE_NEVER = 0,      /* never touched: held nowhere, reads as zero */
    BF_PAGE_RESIDENT,       /* in the memfd */
    BF_PAGE_EVICTING,
    BF_PAGE_PUNCHING,
    BF_PAGE_REMOTE,         /* only in the pool */
    BF_PAGE_FETCHING,
    BF_PAGE_ZERO,           /* found all zero and dropped: held nowhere */
    BF_PAGE_FREE,           /* freed by the guest: held nowhere */
} BfPageState;

#define BF_PAGE_STATE_MASK  0x0007u
#define BF_PAGE_BUSY        0x0008u
#define BF_PAGE_ACCESSED    0x0010u
#define BF_PAGE_ZAPPED      0x0020u
#define BF_PAGE_CLEAN       0x0040u
#define BF_PAGE_WANTED      0x0080u
#define BF_PAGE_POOL_COPY   0x0100u
#define BF_PAGE_DISCARDED   0x0200u
#define BF_PAGE_HINTABLE    0x0400u
#define BF_PAGE_READ_ONLY   0x0800u

/* The marks a page keeps only while it is mapped write-protected (a write clears them). */
#define BF_PAGE_PROTECTED_MARKS (BF_PAGE_HINTABLE | BF_PAGE_READ_ONLY)

typedef _Atomic uint16_t BfPageMeta;

static inline BfPageState bf_page_state(uint16_t meta)
{
    return meta & BF_PAGE_STATE_MASK;
}

static inline uint16_t bf_page_with_state(uint16_t meta, BfPageState state)
{
    return (meta & ~BF_PAGE_STATE_MASK) | state;
}

static inline uint16_t bf_page_load(BfPageMeta *meta)
{
    return atomic_load_explicit(meta, memory_order_acquire);
}

/* Replaces *@old with @new if the page still reads *@old; else reloads *@old. */
static inline bool bf_page_cas(BfPageMeta *meta, uint16_t *old, uint16_t new)
{
    return atomic_compare_exchange_strong_explicit(meta, old, new, memory_order_acq_rel,
                                                   memory_order_acquire);
}

/* Does @state hold the page's content in the memfd? */
static inline bool bf_page_state_is_resident(BfPageState state)
{
    return state == BF_PAGE_RESIDENT || state == BF_PAGE_EVICTING ||
           state == BF_PAGE_PUNCHING;
}

/*
 * Can a page with metadata @m become FREE right away: is it idle (no thread holds it) and
 * in a state with nothing in flight (RESIDENT, REMOTE, ZERO, NEVER)?
 */
static inline bool bf_page_can_free(uint16_t m)
{
    switch (bf_page_state(m)) {
    case BF_PAGE_RESIDENT:
        return !(m & BF_PAGE_BUSY);
    case BF_PAGE_REMOTE:
    case BF_PAGE_ZERO:
    case BF_PAGE_NEVER:
        return true;
    default:
        return false;
    }
}

#endif
