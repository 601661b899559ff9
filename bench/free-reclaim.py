#!/usr/bin/python3
"""free-reclaim: how fast freed guest memory goes back to the host.

A 1 GiB test guest fills 768 MiB, then frees it. Measured in the same run:

  blowfish    memory-backend-blowfish, virtio-balloon free page reporting on: from the
              guest's free to the backend's resident memory dropping by 90% of it (the
              guest kernel reports free memory in 2 MiB blocks about 2 s after the free)
  blowfish    the same with the guest's page_reporting_order at 5 (128 KiB blocks; Linux 6.1
  order=5     takes it from /sys/module/page_reporting/parameters/ only)
  blowfish    memory-backend-blowfish, free page hinting: from blowfish-reclaim-free to
  hint        the backend's resident memory dropping by 90% of it
  balloon     memory-backend-memfd, reporting off: from a virtio-balloon inflate by 768 MiB
              to QEMU's resident memory dropping by 90% of it

Debian's guest kernels zero every page they allocate (init_on_alloc=1): the balloon driver's
pages, the ones it inflates with or lends for hinting, too. Under TCG that zeroing dominates
both, so each of those is measured again with init_on_alloc=0 on the guest command line.

Writes bench/results/free-reclaim-DATE.json and prints a table.
"""

import os
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "guest"))

from blowfishvm import Guest, Memnode, guest_missing, write_results  # noqa: E402

MiB = 1 << 20
RAM_MB = 1024
FREED_MB = 768


def time_to_reclaim(vm, ask=None):
    """The guest fills FREED_MB and frees it; @ask (if any) then asks for it back. Returns
    the seconds from the free (or the ask) until the backend's resident memory dropped by 90%
    of it, query-blowfish before and after, and lets the guest finish."""
    vm.wait_line(f"filled {FREED_MB} MiB")
    before = vm.info()
    vm.send_line()
    vm.wait_line(f"freed {FREED_MB} MiB")
    start = time.monotonic()
    if ask:
        ask()
    target = before["resident"] - 0.9 * FREED_MB * MiB
    info, _ = vm.wait_info(lambda i: i["resident"] <= target, timeout=60,
                           what="resident memory dropping")
    seconds = time.monotonic() - start
    return seconds, before, info


def finish(vm, seconds, before, info):
    """Lets the guest reallocate and exit; returns the figures common to Blowfish's runs."""
    vm.send_line()
    vm.wait_line("reallocated")
    assert vm.wait_exit() == 0
    return {"seconds": seconds,
            "reclaimed_mib": (before["resident"] - info["resident"]) / MiB,
            "gib_per_s": 0.9 * FREED_MB / 1024 / seconds}


def blowfish(node, kernel_args=""):
    with Guest(RAM_MB, f"hold-and-free {FREED_MB}", pool=node.address,
               kernel_args=kernel_args, timeout=300) as vm:
        seconds, before, info = time_to_reclaim(vm)
        return {
            **finish(vm, seconds, before, info),
            "reports": info["free-reports"],
            "report_p50_us": info["free-latency"]["p50-ns"] / 1000,
            "handling_gib_per_s": (FREED_MB / 1024) /
                                  max(1e-9, info["free-reports"] *
                                      info["free-latency"]["p50-ns"] / 1e9),
        }


def blowfish_hint(kernel_args=""):
    with Guest(RAM_MB, f"hold-and-free {FREED_MB}", kernel_args=kernel_args, timeout=300,
               free_page_reporting=False, free_page_hint=True) as vm:
        seconds, before, info = time_to_reclaim(vm, lambda: vm.cmd("blowfish-reclaim-free"))
        event = vm.wait_event("BLOWFISH_FREE_RECLAIMED")["data"]
        assert not event["timed-out"], event
        return {
            **finish(vm, seconds, before, info),
            "round_ms": event["duration-ms"],
            "round_freed_mib": event["bytes"] / MiB,
        }


def balloon(kernel_args=""):
    with Guest(RAM_MB, f"hold-and-free {FREED_MB}", backend="memfd", timeout=300,
               kernel_args=kernel_args, free_page_reporting=False) as vm:
        vm.wait_line(f"filled {FREED_MB} MiB")
        vm.send_line()
        vm.wait_line(f"freed {FREED_MB} MiB")
        time.sleep(1)
        rss_before = vm.rss()
        start = time.monotonic()
        vm.cmd("balloon", value=(RAM_MB - FREED_MB) * MiB)
        target = rss_before - 0.9 * FREED_MB * MiB
        end = start + 120
        while vm.rss() > target:
            if time.monotonic() > end:
                raise RuntimeError("the balloon did not inflate in time")
            time.sleep(0.02)
        seconds = time.monotonic() - start
        reclaimed = (rss_before - vm.rss()) / MiB
        vm.cmd("balloon", value=RAM_MB * MiB)
        while vm.cmd("query-balloon")["actual"] < RAM_MB * MiB:
            time.sleep(0.1)
        vm.send_line()
        vm.wait_line("reallocated")
        assert vm.wait_exit() == 0
        return {"seconds": seconds, "reclaimed_mib": reclaimed,
                "gib_per_s": 0.9 * FREED_MB / 1024 / seconds}


def main():
    why = guest_missing()
    if why:
        print(f"free-reclaim: {why}")
        return 2
    results = {"ram_mib": RAM_MB, "freed_mib": FREED_MB}
    with Memnode() as node:
        results["blowfish"] = blowfish(node)
        results["blowfish_order5"] = blowfish(node, "bfwork.reporting_order=5")
    results["blowfish_hint"] = blowfish_hint()
    results["blowfish_hint_noinit"] = blowfish_hint("init_on_alloc=0")
    results["balloon"] = balloon()
    results["balloon_noinit"] = balloon("init_on_alloc=0")
    for name, base in (("blowfish", "balloon"), ("blowfish_hint", "balloon"),
                       ("blowfish_hint_noinit", "balloon_noinit")):
        results[f"{name}_over_{base}"] = (results[name]["gib_per_s"] /
                                          results[base]["gib_per_s"])

    print(f"free memory back to the host, {FREED_MB} MiB freed in a {RAM_MB} MiB guest "
          f"(time to 90% of it):")
    for name in ("blowfish", "blowfish_order5", "blowfish_hint", "blowfish_hint_noinit",
                 "balloon", "balloon_noinit"):
        r = results[name]
        print(f"  {name:16} {r['seconds']:6.2f} s  {r['gib_per_s']:5.2f} GiB/s  "
              f"({r['reclaimed_mib']:.0f} MiB reclaimed)")
    for name in ("blowfish", "blowfish_order5"):
        r = results[name]
        print(f"  {name}: {r['reports']} reports, p50 {r['report_p50_us']:.0f} us each: "
              f"the backend itself frees at {r['handling_gib_per_s']:.1f} GiB/s")
    for name in ("blowfish_hint", "blowfish_hint_noinit"):
        r = results[name]
        print(f"  {name}: the round took {r['round_ms']} ms and freed "
              f"{r['round_freed_mib']:.0f} MiB")
    print("  (noinit: the guest booted with init_on_alloc=0)")
    for name, base in (("blowfish", "balloon"), ("blowfish_hint", "balloon"),
                       ("blowfish_hint_noinit", "balloon_noinit")):
        print(f"  {name} / {base} inflate: {results[f'{name}_over_{base}']:.2f}x "
              f"(target >= 4x)")
    print(f"  written to {write_results('free-reclaim', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
