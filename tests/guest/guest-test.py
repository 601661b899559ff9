#!/usr/bin/python3
"""End-to-end tests with a real Linux guest (the Debian cloud kernel and our workloads, under
TCG) on memory-backend-blowfish and a blowfish-memnode. Each case boots its own guest; the
guest checks its own data and reports pass or fail as QEMU's exit status, and the test checks
the backend from outside through QMP.

    guest-test.py CASE     (prints TAP; exit 77 when the guest cannot be built here)

Cases:
  limit        workloads pass with local-limit at 25% of guest RAM
  free         a guest that frees most of its memory hands it back: QEMU's RSS and the pool's
               bytes for this VM drop within seconds; the next allocation reads zero
  cycles       cold memory is evicted while the hot set keeps running; the guest's checksums
               hold across many evict/restore cycles
  restore      blowfish-restore brings everything back while the guest keeps running
  balloon      a virtio-balloon inflates (its pages leave host memory) and deflates (the guest
               uses them again)
  hint         blowfish-reclaim-free takes what the guest freed (its copies in the pool too)
               in well under a second, and the guest's own data holds through rounds run
               while it writes (a guest booted with init_on_alloc=0)
  hint-zeroing the same with Debian's default guest kernel, which zeroes what it allocates
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "guest"))

import blowfishvm  # noqa: E402
from blowfishvm import Guest, GuestError, Memnode  # noqa: E402

MiB = 1 << 20


def note(text):
    print(f"# {text}", flush=True)


def case_limit():
    """512 MiB of guest RAM, at most 128 MiB of it in host memory."""
    steps = ("pattern 300 2;random-writer 2 160 6;alloc-free 128 2 1;"
             "working-set 32 200 8")
    with Memnode() as node, Guest(512, steps, pool=node.address, local_limit_mb=128,
                                  backend_opts=",scan-period=200") as vm:
        most_remote = 0
        while vm.running():
            info = vm.info_or_none()
            if info:
                most_remote = max(most_remote, info["remote"])
                assert info["resident"] <= 128 * MiB + 2 * MiB, info
            time.sleep(0.2)
        result = vm.wait_exit()
        note(f"most remote at once: {most_remote // MiB} MiB")
        assert result == 0, vm.console()[-2000:]
        assert most_remote >= 150 * MiB, most_remote


def case_free():
    """Fill 384 MiB, push some of it to the pool, free it all: everything comes back."""
    with Memnode() as node, Guest(512, "hold-and-free 384", pool=node.address,
                                  backend_opts=",scan-period=200") as vm:
        vm.wait_line("filled 384 MiB")
        vm.cmd("blowfish-set-target", id="mem0", **{"local-limit": 192 * MiB})
        before, _ = vm.wait_info(lambda i: i["resident"] <= 192 * MiB and
                                 i["pool-stored"] >= 150 * MiB,
                                 what="eviction to 192 MiB")
        rss_before = vm.rss()
        note(f"before freeing: resident {before['resident'] // MiB} MiB, pool holds "
             f"{before['pool-stored'] // MiB} MiB, QEMU RSS {rss_before // MiB} MiB")

        vm.send_line()
        vm.wait_line("freed 384 MiB")
        start = time.monotonic()
        # The guest reports free memory in 2 MiB blocks, about 2 s after it is freed.
        after, _ = vm.wait_info(lambda i: i["free"] >= 300 * MiB and
                                i["pool-stored"] <= before["pool-stored"] - 120 * MiB,
                                timeout=15, what="free pages handed back")
        took = time.monotonic() - start
        rss_after = vm.rss()
        note(f"{took:.1f} s after the guest freed: resident {after['resident'] // MiB} MiB, "
             f"free {after['free'] // MiB} MiB, pool holds {after['pool-stored'] // MiB} MiB, "
             f"QEMU RSS {rss_after // MiB} MiB, {after['free-reports']} reports "
             f"(p50 {after['free-latency']['p50-ns'] / 1000:.0f} us)")
        assert after["resident"] <= before["resident"] - 100 * MiB, after
        assert rss_after <= rss_before - 100 * MiB, (rss_before, rss_after)
        assert took < 10, took

        vm.send_line()
        vm.wait_line("reallocated 384 MiB: zero, then written and verified")
        assert vm.wait_exit() == 0


def case_cycles():
    """A hot set keeps running while the limit swings, many times, over its cold memory."""
    with Memnode() as node, Guest(512, "working-set 24 256 50", pool=node.address,
                                  backend_opts=",scan-period=100,cold-age=1") as vm:
        vm.wait_line("working-set ready")
        cycles = 0
        while vm.running() and cycles < 8:
            low = cycles % 2 == 0
            vm.cmd("blowfish-set-target", id="mem0",
                   **{"local-limit": (64 if low else 448) * MiB})
            if low:
                vm.wait_info(lambda i: i["resident"] <= 64 * MiB, timeout=30,
                             what="eviction to 64 MiB")
            time.sleep(2)
            cycles += 1
        info = vm.info()
        result = vm.wait_exit()
        note(f"{cycles} limit changes; evicted {info['pages-evicted']} pages, restored "
             f"{info['pages-restored']} ({info['readahead-pages']} by readahead), clean "
             f"evictions {info['clean-evictions']}")
        assert result == 0, vm.console()[-2000:]
        assert cycles >= 6, cycles
        # At least three times most of the cold set out, and twice back in.
        assert info["pages-evicted"] >= 3 * 200 * MiB // 4096, info
        assert info["pages-restored"] >= 2 * 200 * MiB // 4096, info


def case_restore():
    """blowfish-restore while the guest runs."""
    with Memnode() as node, Guest(512, "working-set 24 256 30", pool=node.address,
                                  local_limit_mb=96, backend_opts=",scan-period=100") as vm:
        vm.wait_line("working-set ready")
        vm.wait_info(lambda i: i["remote"] >= 150 * MiB, what="eviction")
        vm.cmd("blowfish-restore", id="mem0")
        event = vm.wait_event("BLOWFISH_RESTORE_COMPLETED")
        info = vm.info()
        note(f"restored {event['data']['bytes'] // MiB} MiB in "
             f"{event['data']['duration-ms']} ms; remote now {info['remote'] // MiB} MiB")
        assert info["remote"] == 0, info
        assert info["local-limit"] == 512 * MiB, info
        assert info["resident"] >= 256 * MiB, info
        assert vm.wait_exit() == 0, vm.console()[-2000:]


def case_balloon():
    """virtio-balloon inflate and deflate on the backend."""
    with Memnode() as node, Guest(512, "hold-and-free 320", pool=node.address,
                                  free_page_reporting=False) as vm:
        vm.wait_line("filled 320 MiB")
        vm.send_line()
        vm.wait_line("freed 320 MiB")
        before = vm.info()
        vm.cmd("balloon", value=192 * MiB)
        after, took = vm.wait_info(lambda i: i["free"] >= before["free"] + 250 * MiB,
                                   timeout=60, what="the balloon inflating")
        note(f"inflate by 320 MiB: {took:.1f} s; resident {before['resident'] // MiB} -> "
             f"{after['resident'] // MiB} MiB, free {after['free'] // MiB} MiB")
        assert after["resident"] <= before["resident"] - 240 * MiB, (before, after)
        vm.cmd("balloon", value=512 * MiB)
        end = time.monotonic() + 60
        while vm.cmd("query-balloon")["actual"] < 512 * MiB:
            assert time.monotonic() < end, "the balloon did not deflate"
            time.sleep(0.1)
        vm.send_line()
        vm.wait_line("reallocated 320 MiB: zero, then written and verified")
        assert vm.wait_exit() == 0


def seen(vm, needle):
    """Has the guest printed a line containing @needle?"""
    with vm.cond:
        return any(needle in line for line in vm.lines)


def reclaim_free(vm):
    """One blowfish-reclaim-free; returns its event's data and how long it took."""
    start = time.monotonic()
    vm.cmd("blowfish-reclaim-free")
    event = vm.wait_event("BLOWFISH_FREE_RECLAIMED", timeout=60)["data"]
    assert not event["timed-out"], event
    return event, time.monotonic() - start


def case_hint(zeroing=False):
    """Free page hinting on request: what the guest freed goes, resident and remote; then
    rounds run while the guest's random writer checks its data. A guest that does not zero
    what it allocates (init_on_alloc=0) takes both kinds of round (the first frees nothing,
    the second tracks writes); Debian's default (@zeroing) only the first."""
    with Memnode() as node, Guest(512, "hold-and-free 320;random-writer 2 160 6",
                                  pool=node.address, free_page_reporting=False,
                                  free_page_hint=True,
                                  kernel_args="" if zeroing else "init_on_alloc=0",
                                  backend_opts=",scan-period=200") as vm:
        vm.wait_line("filled 320 MiB")
        vm.cmd("blowfish-set-target", id="mem0", **{"local-limit": 192 * MiB})
        vm.wait_info(lambda i: i["resident"] <= 192 * MiB and i["pool-stored"] >= 100 * MiB,
                     what="eviction to 192 MiB")
        vm.cmd("blowfish-set-target", id="mem0", **{"local-limit": 512 * MiB})
        vm.send_line()
        vm.wait_line("freed 320 MiB")
        before = vm.info()
        rss_before = vm.rss()
        event, took = reclaim_free(vm)
        after, _ = vm.wait_info(lambda i: i["pool-stored"] <= before["pool-stored"] - 80 * MiB,
                                timeout=10, what="the pool letting go")
        rss_after = vm.rss()
        fetched = after["pool-bytes-received"] - before["pool-bytes-received"]
        note(f"reclaim-free: {event['bytes'] // MiB} MiB in {event['duration-ms']} ms; "
             f"resident {before['resident'] // MiB} -> {after['resident'] // MiB} MiB, pool "
             f"{before['pool-stored'] // MiB} -> {after['pool-stored'] // MiB} MiB, QEMU RSS "
             f"{rss_before // MiB} -> {rss_after // MiB} MiB, write-protect faults "
             f"{after['faults']['write-protect'] - before['faults']['write-protect']}, "
             f"received from the pool {fetched // MiB} MiB")
        assert event["bytes"] >= 280 * MiB, event
        assert after["free-hinted"] - before["free-hinted"] == event["bytes"], after
        assert after["resident"] <= before["resident"] - 150 * MiB, (before, after)
        assert rss_after <= rss_before - 150 * MiB, (rss_before, rss_after)
        if not zeroing:
            # Freed where they are: the pool's copies are dropped, not fetched (a zeroing
            # guest fetches what it zeroes).
            assert fetched < 16 * MiB, fetched

        vm.send_line()
        vm.wait_line("reallocated 320 MiB: zero, then written and verified")
        # What it wrote there is free again, not zero: only a round tracking writes frees it,
        # with the random writer running.
        rounds = freed = 0
        while not seen(vm, "bfwork: random-writer:"):
            assert time.monotonic() < vm.deadline, "the random writer did not finish"
            try:
                freed += reclaim_free(vm)[0]["bytes"]
            except Exception as e:
                # The writer may finish, and the guest exit, in the middle of a round: what
                # failed is then QMP or the wait for the event; anything else is re-raised.
                try:
                    vm.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    raise e from None
                break
            rounds += 1
            time.sleep(0.2)
        note(f"{rounds} rounds while the random writer ran, {freed // MiB} MiB freed")
        assert rounds >= 2, rounds
        assert freed >= 100 * MiB, freed
        assert "all verified" in vm.wait_line("bfwork: random-writer:")
        assert vm.wait_exit() == 0


CASES = {
    "limit": case_limit,
    "free": case_free,
    "cycles": case_cycles,
    "restore": case_restore,
    "balloon": case_balloon,
    "hint": case_hint,
    "hint-zeroing": lambda: case_hint(zeroing=True),
}


def main():
    name = sys.argv[1]
    print("1..1", flush=True)
    why = blowfishvm.guest_missing()
    if why:
        print(f"ok 1 {name} # SKIP {why}", flush=True)
        return 77
    start = time.monotonic()
    try:
        CASES[name]()
    except (AssertionError, GuestError) as e:
        for line in str(e).splitlines() or ["assertion failed"]:
            note(line)
        print(f"not ok 1 {name}", flush=True)
        return 1
    note(f"{name}: {time.monotonic() - start:.1f} s")
    print(f"ok 1 {name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
