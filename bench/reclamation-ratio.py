#!/usr/bin/python3
"""reclamation-ratio: how much memory Blowfish reclaims from a running guest, and what the
guest loses for it.

The test guest (512 MiB) runs the working-set workload (a 32 MiB hot set written over and over,
384 MiB of cold data checked now and then) for 30 s. Measured in the same run:

  all-local        memory-backend-memfd: the baseline for the slowdown (run first and last:
                   their spread shows this machine's noise)
  blowfish 100%    memory-backend-blowfish with a memnode, no limit
  blowfish 50%, 25%, 12.5%   local-limit at that share of guest RAM

For each: the workload's throughput (hot passes per second) and its slowdown against
all-local, and the reclamation ratio: the time-weighted average of
(guest RAM - guest RAM held in host memory) / guest RAM, sampled every 100 ms (held in host
memory: the backend's resident bytes; for memfd, QEMU's resident shared memory).

Writes bench/results/reclamation-ratio-DATE.json and prints a table.
"""

import os
import re
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "guest"))

from blowfishvm import Guest, Memnode, guest_missing, write_results  # noqa: E402

MiB = 1 << 20
RAM_MB = 512
STEPS = "working-set 32 384 30"


def rss_shmem(vm):
    with open(f"/proc/{vm.proc.pid}/status") as f:
        for line in f:
            if line.startswith("RssShmem:"):
                return int(line.split()[1]) * 1024
    return 0


def run(mode, limit_share=None, node=None):
    kwargs = {}
    if mode == "blowfish":
        kwargs = {"pool": node.address,
                  "local_limit_mb": int(RAM_MB * limit_share) if limit_share else None}
    else:
        kwargs = {"backend": "memfd"}
    with Guest(RAM_MB, STEPS, timeout=300, **kwargs) as vm:
        vm.wait_line("working-set ready")
        samples, last = [], time.monotonic()
        weighted = 0.0
        start = last
        while vm.running():
            info = vm.info_or_none() if mode == "blowfish" else None
            if mode == "blowfish" and info is None:
                break
            held = info["resident"] if info else rss_shmem(vm)
            now = time.monotonic()
            weighted += (RAM_MB * MiB - held) / (RAM_MB * MiB) * (now - last)
            samples.append(held)
            last = now
            time.sleep(0.1)
        done = vm.wait_line("working-set done")
        assert vm.wait_exit() == 0, vm.console()[-2000:]
        rate = float(re.search(r"\(([\d.]+) passes/s\)", done).group(1))
        return {"passes_per_s": rate,
                "reclamation_ratio": weighted / max(1e-9, last - start),
                "mean_held_mib": sum(samples) / len(samples) / MiB,
                "peak_held_mib": max(samples) / MiB}


def main():
    why = guest_missing()
    if why:
        print(f"reclamation-ratio: {why}")
        return 2
    results = {"ram_mib": RAM_MB, "workload": STEPS, "runs": {}}
    results["runs"]["all-local"] = run("memfd")
    with Memnode() as node:
        for share in (1.0, 0.5, 0.25, 0.125):
            results["runs"][f"blowfish {share:.1%}"] = run(
                "blowfish", None if share == 1.0 else share, node)
    # The baseline again: the spread of the two is this machine's noise.
    results["runs"]["all-local again"] = run("memfd")
    base = (results["runs"]["all-local"]["passes_per_s"] +
            results["runs"]["all-local again"]["passes_per_s"]) / 2
    print(f"working-set (hot 32 MiB, cold 384 MiB) in a {RAM_MB} MiB guest, 30 s each:")
    print(f"  {'mode':16} {'passes/s':>9} {'slowdown':>9} {'reclaimed':>10} "
          f"{'mean held':>10} {'peak held':>10}")
    for name, r in results["runs"].items():
        r["slowdown"] = 1 - r["passes_per_s"] / base
        print(f"  {name:16} {r['passes_per_s']:9.1f} {r['slowdown']:9.1%} "
              f"{r['reclamation_ratio']:10.1%} {r['mean_held_mib']:7.0f} MiB "
              f"{r['peak_held_mib']:7.0f} MiB")
    print(f"  written to {write_results('reclamation-ratio', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
