#!/usr/bin/python3
"""run: the benchmark suite. Boots the test guest under TCG once per mode with each
application, samples the memory the VM holds on this host every 100 ms, and reports what each
mode reclaims against what the application loses, with plots.

    bench/run.py --all                         every application in every mode, two rounds
    bench/run.py --quick                       two applications, four modes, shorter runs
    bench/run.py --app graph --mode all-local --mode blowfish:0.5 ... [--repeat N]

This machine's speed drifts by tens of percent from one run to the next (it shares its CPUs),
so each mode runs in several rounds, the second in reverse order, and a mode's figures are
the medians of its runs. Each application runs for a bounded time, whatever the mode.

Applications (presets: guest RAM, vCPUs, the workload and its size):
  graph         bf-graph: BFS over a skewed random graph, validated (MTEPS)
  kv            bf-kv: Debian's redis-server, 90% GETs and 10% SETs of Zipf-drawn keys (s =
                0.99), every value checked (ops/s)
  scan          bf-scan: sequential scan and run-length compression, validated (MiB/s)
  working-set   bfwork working-set: a hot set written over and over, a cold part checked
                every 5 s (hot passes/s)
  alloc-free    bfwork alloc-free: allocate, fill, verify, free, pause (MiB/s of work)

Modes:
  all-local       memory-backend-memfd, no overcommit: the slowdown baseline (with --all,
                  first and last; the spread of its runs is this machine's noise)
  blowfish:F      memory-backend-blowfish with a memnode, local-limit F x guest RAM, free
                  page reporting on
  blowfish-idle:S memory-backend-blowfish with a memnode and no limit, idle-age=S (1 s scan
                  periods): what the guest leaves unused for S s goes to the pool; free page
                  reporting on
  host-swap:F     memfd, QEMU in a cgroup v1 memory group limited to F x guest RAM plus
                  QEMU's own anonymous memory in all-local (at its peak, plus 16 MiB),
                  swapping to a swap file; a run the cgroup's OOM killer ends is reported as
                  failed
  host-zram:F     the same, swapping to zram (its compressed pages count as held)
  balloon         memfd with virtio-balloon free page reporting (free memory only)

Metrics per run: the application's result and its slowdown against all-local's median; the
reclamation ratio (time-weighted average of (guest RAM - guest RAM held on this host) / guest
RAM, while the application runs); mean and peak held memory; faults and their latency;
bytes to and from the pool; CPU seconds of QEMU and of the memnode; the seconds the vCPU
threads were blocked (neither running nor runnable: the guest idle, or waiting for memory)
or in the kernel while the application ran. Its excess over all-local's, as a share of the
run, is the "stall": the time the guest lost waiting for memory. Unlike the result, this
machine's speed hardly moves it, so the headline is also read against it (it misses costs
that show only as slower guest code, such as TLB misses). Held: the backend's resident
bytes (blowfish), QEMU's resident shared memory (memfd modes), plus zram's own memory.
Faults, their latency (p50, p99 and the histogram) and the pool's bytes count from the
application's ready line, CPU seconds from QEMU's start.

The headline: for each application, the highest reclamation ratio within 5% and 10% slowdown
(and stall) on the curves through the modes' medians (a curve per family, from the highest
limit or idle age to the lowest), Blowfish's (blowfish and blowfish-idle) against host swap's.

Writes bench/results/run-DATE/ (a JSON per run, summary.json, PNG plots) and prints tables.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "guest"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hostswap  # noqa: E402
from blowfishvm import INITRAMFS, Guest, GuestError, Memnode, guest_missing  # noqa: E402

MiB = 1 << 20
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The test guest with redis-server and bf-kv (guest/build-bench-guest.sh).
BENCH_INITRAMFS = os.path.join(TOP, "build", "guest-bench", "initramfs.cpio")

APPS = {
    "graph": {"ram_mb": 320, "vcpus": 1, "steps": "bf-graph 19 16 1000 8",
              "quick": "bf-graph 18 16 1000 5", "ready": "bf-graph ready",
              "result": r"bf-graph done: .*\(([\d.]+) MTEPS\)", "unit": "MTEPS"},
    "kv": {"ram_mb": 384, "vcpus": 1, "steps": "bf-kv 100000 1024 16",
           "quick": "bf-kv 100000 1024 10", "ready": "bf-kv ready",
           "result": r"bf-kv done: .*\(([\d.]+) ops/s\)", "unit": "ops/s",
           "initramfs": BENCH_INITRAMFS},
    "scan": {"ram_mb": 320, "vcpus": 1, "steps": "bf-scan 160 100000 6",
             "quick": "bf-scan 160 100000 4", "ready": "bf-scan ready",
             "result": r"bf-scan done: .*\(([\d.]+) MiB/s\)", "unit": "MiB/s"},
    "working-set": {"ram_mb": 320, "vcpus": 1, "steps": "working-set 32 160 12",
                    "quick": "working-set 32 160 10", "ready": "working-set ready",
                    "result": r"working-set done: .*\(([\d.]+) passes/s\)",
                    "unit": "passes/s"},
    "alloc-free": {"ram_mb": 320, "vcpus": 1, "steps": "alloc-free 128 3 2",
                   "quick": "alloc-free 128 2 2", "ready": "bfwork-init: up",
                   "result": r"alloc-free done: .*\(([\d.]+) MiB/s\)", "unit": "MiB/s"},
}

BLOWFISH_KINDS = ("blowfish", "blowfish-idle")
# The headline's two sides, and the modes each takes its best curve from.
HEADLINE_FAMILIES = {"blowfish": BLOWFISH_KINDS, "host-swap": ("host-swap",)}

# --all: these modes in every round (the second round in reverse order, so that a drift of
# this machine's speed weighs on every mode alike), and ONCE_MODES once, after the first.
ROUND_MODES = ["all-local", "blowfish:0.5", "blowfish-idle:4", "host-swap:0.5"]
ONCE_MODES = ["blowfish:0.75", "host-swap:0.75", "blowfish:0.25", "host-swap:0.25",
              "blowfish-idle:10", "blowfish-idle:1", "host-zram:0.5", "balloon"]
FULL_ROUNDS = 2
QUICK_MODES = ["all-local", "blowfish:0.5", "host-swap:0.5", "balloon"]
QUICK_APPS = ["working-set", "alloc-free"]

# QEMU's anonymous memory besides guest RAM (TCG's code buffer, QEMU's heap) when no
# all-local run measured it.
DEFAULT_QEMU_OVERHEAD = 96 * MiB


def stat_fields(path):
    """The fields of a /proc stat file after the command name (utime is [11], stime [12])."""
    with open(path) as f:
        return f.read().rsplit(")", 1)[1].split()


def proc_fields(pid):
    """(utime + stime in seconds, major faults) of a process, or None once it is gone."""
    try:
        fields = stat_fields(f"/proc/{pid}/stat")
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK, int(fields[9])


def vcpu_times(pid, tids):
    """(when, seconds on a CPU, seconds waiting for one, seconds in the kernel) of the threads
    @tids of @pid, summed; None once they are gone."""
    run = wait = system = 0
    try:
        for tid in tids:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                fields = f.read().split()
            run += int(fields[0])
            wait += int(fields[1])
            system += int(stat_fields(f"/proc/{pid}/task/{tid}/stat")[12])
    except (OSError, IndexError, ValueError):
        return None
    return time.monotonic(), run / 1e9, wait / 1e9, system / CLK_TCK


def proc_memory(pid):
    """(VmRSS, RssShmem) of a process in bytes."""
    values = {"VmRSS:": 0, "RssShmem:": 0}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key = line.split(maxsplit=1)[0]
                if key in values:
                    values[key] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return values["VmRSS:"], values["RssShmem:"]


def percentile(histogram, percent):
    """The @percent-th percentile of @histogram ([upper bound, count] pairs, ascending), as
    its bucket's upper bound, the way the backend reads fault-latency; 0 if it is empty."""
    total = sum(count for _, count in histogram)
    rank = max(1, min(total, int(percent / 100 * total + 0.5)))
    seen = 0
    for upper, count in histogram:
        seen += count
        if seen >= rank:
            return upper
    return 0


def pool_metrics(before, after):
    """Faults, their service times and the pool's traffic between two query-blowfish
    replies."""
    was = {b["le-ns"]: b["count"] for b in before["fault-latency-histogram"]}
    histogram = [[b["le-ns"], b["count"] - was.get(b["le-ns"], 0)]
                 for b in after["fault-latency-histogram"]
                 if b["count"] > was.get(b["le-ns"], 0)]
    return {
        "faults": {kind: n - before["faults"][kind] for kind, n in after["faults"].items()},
        "fault_latency_ns": {"p50-ns": percentile(histogram, 50),
                             "p99-ns": percentile(histogram, 99)},
        "fault_latency_histogram": histogram,
        "pool_bytes_sent": after["pool-bytes-sent"] - before["pool-bytes-sent"],
        "pool_bytes_received": after["pool-bytes-received"] - before["pool-bytes-received"],
    }


class Run:
    """One application in one mode: boots, samples, and collects the metrics."""

    def __init__(self, app, mode, quick, node, overhead, backend_opts=()):
        self.app, self.mode = app, mode
        self.backend_opts = "".join("," + o for o in backend_opts)
        self.preset = APPS[app]
        self.ram = self.preset["ram_mb"] * MiB
        self.kind, _, share = mode.partition(":")
        self.share = float(share) if share else None
        self.steps = self.preset["quick" if quick else "steps"]
        self.node = node
        self.overhead = overhead

    def guest_args(self):
        args = {"vcpus": self.preset["vcpus"], "timeout": 900,
                "initramfs": self.preset.get("initramfs", INITRAMFS),
                "free_page_reporting": self.kind in BLOWFISH_KINDS + ("balloon",)}
        if self.kind == "blowfish":
            args["pool"] = self.node.address
            args["local_limit_mb"] = int(self.preset["ram_mb"] * self.share)
            args["backend_opts"] = self.backend_opts
        elif self.kind == "blowfish-idle":
            args["pool"] = self.node.address
            args["backend_opts"] = f",idle-age={int(self.share)}" + self.backend_opts
        else:
            args["backend"] = "memfd"
        return args

    def execute(self, swap=None, cgroup=None):
        args = self.guest_args()
        if cgroup:
            args["launcher"] = cgroup.launcher()
        node_cpu0 = proc_fields(self.node.proc.pid)[0] if self.node else 0
        samples = []
        launched = time.monotonic()
        with Guest(self.preset["ram_mb"], self.steps, **args) as vm:
            vm.wait_line(self.preset["ready"])
            start = last = time.monotonic()
            at_ready = vm.info() if self.kind in BLOWFISH_KINDS else None
            vcpus = [c["thread-id"] for c in vm.cmd("query-cpus-fast")]
            vcpu0 = vcpu = vcpu_times(vm.proc.pid, vcpus)
            ratio_area = 0.0
            info = cpu = None
            overhead_peak = 0
            while vm.running() and not self._finished(vm):
                fields = proc_fields(vm.proc.pid)
                rss, shmem = proc_memory(vm.proc.pid)
                if self.kind in BLOWFISH_KINDS:
                    info = vm.info_or_none() or info
                    held = info["resident"] if info else shmem
                else:
                    held = shmem + (swap.held_bytes() if swap else 0)
                    if cgroup:
                        overhead_peak = max(overhead_peak, cgroup.anonymous())
                now = time.monotonic()
                ratio_area += (self.ram - min(held, self.ram)) / self.ram * (now - last)
                samples.append({"t": round(now - start, 3), "held": held, "rss": rss,
                                "pool": info["pool-stored"] if info else 0})
                cpu = fields or cpu
                vcpu = vcpu_times(vm.proc.pid, vcpus) or vcpu
                last = now
                time.sleep(0.1)
            line = vm.wait_line("done:")
            # The last reading before the vCPU threads left (QEMU may exit at once).
            vcpu = vcpu_times(vm.proc.pid, vcpus) or vcpu
            # Neither running nor runnable: the guest idle, or its vCPUs waiting for memory
            # (a userfaultfd fault, a swap-in), whatever this machine's speed.
            blocked = (vcpu[0] - vcpu0[0]) * len(vcpus) - (vcpu[1] - vcpu0[1]) - \
                (vcpu[2] - vcpu0[2])
            if self.kind in BLOWFISH_KINDS:
                info = vm.info_or_none() or info
            cpu = proc_fields(vm.proc.pid) or cpu
            code = vm.wait_exit()
            if code != 0:
                raise RuntimeError(f"{self.app} in {self.mode}: the guest failed: "
                                   f"{vm.console()[-1500:]}")
        result = float(re.search(self.preset["result"], line).group(1))
        held = [s["held"] for s in samples] or [0]
        out = {
            "app": self.app, "mode": self.mode, "steps": self.steps,
            "backend_opts": self.backend_opts.lstrip(","),
            "ram_mib": self.preset["ram_mb"], "vcpus": self.preset["vcpus"],
            "result": result, "unit": self.preset["unit"],
            "reclamation_ratio": ratio_area / max(1e-9, last - start),
            "mean_held_mib": sum(held) / len(held) / MiB,
            "peak_held_mib": max(held) / MiB,
            "seconds": last - start,
            "setup_seconds": start - launched,
            "qemu_cpu_s": cpu[0] if cpu else None,
            "qemu_major_faults": cpu[1] if cpu else None,
            "vcpu_blocked_s": blocked,
            "vcpu_system_s": vcpu[3] - vcpu0[3],
            "vcpu_seconds": vcpu[0] - vcpu0[0],
            "samples": samples,
        }
        if cgroup:
            out["qemu_overhead_mib"] = overhead_peak / MiB
        if info:
            out.update(pool_metrics(at_ready, info))
            out["memnode_cpu_s"] = proc_fields(self.node.proc.pid)[0] - node_cpu0
        return out

    def _finished(self, vm):
        with vm.cond:
            return any("done:" in line for line in vm.lines[-5:])

    def run(self):
        if self.kind in ("host-swap", "host-zram"):
            limit = int(self.ram * self.share) + self.overhead
            with hostswap.SwapDevice("file" if self.kind == "host-swap" else "zram",
                                     self.ram) as swap, \
                    hostswap.MemoryCgroup("blowfish-bench", limit) as cgroup:
                out = self.execute(swap, cgroup)
            out["cgroup_limit_mib"] = limit / MiB
            return out
        if self.kind == "all-local" and not hostswap.missing():
            # In a group of its own, without a limit: its anonymous memory (QEMU's own) is
            # the headroom host swap's limit adds.
            with hostswap.MemoryCgroup("blowfish-bench", -1) as cgroup:
                return self.execute(cgroup=cgroup)
        return self.execute()


def schedule(modes, once, rounds):
    """The order of the runs: @rounds rounds of @modes, every other one reversed, with @once
    after the first."""
    order = []
    for r in range(rounds):
        order += modes if r % 2 == 0 else modes[::-1]
        if r == 0:
            order += once
    return order


def median(values):
    return statistics.median(values) if values else None


def stall(run):
    """Seconds the vCPUs spent blocked or in the kernel while the application ran."""
    return run["vcpu_blocked_s"] + run["vcpu_system_s"]


def reach(points, bound, cost="slowdown"):
    """The highest reclamation ratio on the curve through @points (one family's modes, from
    the highest local limit to the lowest) at a @cost of at most @bound: a measured point,
    or the line between two neighbours read at @bound."""
    points = [p for p in points if p[cost] is not None]
    best = None
    for p in points:
        if p[cost] <= bound:
            best = max(best or 0, p["reclamation_ratio"])
    for p, q in zip(points, points[1:]):
        if p[cost] <= bound < q[cost]:
            at = (bound - p[cost]) / (q[cost] - p[cost])
            ratio = p["reclamation_ratio"] + at * (q["reclamation_ratio"] -
                                                   p["reclamation_ratio"])
            best = max(best or 0, ratio)
    return best


def summarize(runs):
    """Each mode's medians, slowdowns against all-local's median, and the headline table."""
    by_app = {}
    for r in runs:
        by_app.setdefault(r["app"], []).append(r)
    points, table = {}, {}
    for app, rs in by_app.items():
        base = median([r["result"] for r in rs if r["mode"] == "all-local"])
        base_stall = median([stall(r) for r in rs if r["mode"] == "all-local"])
        for r in rs:
            r["slowdown"] = 1 - r["result"] / base if base else None
            r["stall_share"] = (stall(r) - base_stall) / r["vcpu_seconds"] \
                if base_stall is not None else None
        modes = {}
        for r in rs:
            modes.setdefault(r["mode"], []).append(r)
        points[app] = []
        for mode, mrs in modes.items():
            result = median([r["result"] for r in mrs])
            points[app].append({
                "mode": mode, "runs": len(mrs), "result": result,
                "results": [r["result"] for r in mrs],
                "slowdown": 1 - result / base if base else None,
                "reclamation_ratio": median([r["reclamation_ratio"] for r in mrs]),
                "stall_share": median([r["stall_share"] for r in mrs
                                       if r["stall_share"] is not None]),
            })
        local = [r["result"] for r in modes.get("all-local", [])]
        row = {"all_local": local,
               "noise": (max(local) - min(local)) / base if len(local) > 1 else None}
        for family, kinds in HEADLINE_FAMILIES.items():
            curves = [sorted((p for p in points[app] if p["mode"].split(":")[0] == kind and
                              p["slowdown"] is not None),
                             key=lambda p: -float(p["mode"].split(":")[1])) for kind in kinds]
            for bound in (0.05, 0.10):
                for cost, name in (("slowdown", ""), ("stall_share", "stall:")):
                    reached = [x for x in (reach(c, bound, cost) for c in curves)
                               if x is not None]
                    row[f"{name}{family}@{bound:.0%}"] = max(reached) if reached else None
        for name in ("", "stall:"):
            for bound in ("5%", "10%"):
                b, h = row[f"{name}blowfish@{bound}"], row[f"{name}host-swap@{bound}"]
                row[f"{name}ratio@{bound}"] = b / h if b is not None and h else None
        table[app] = row
    return points, table


def pct(x):
    return f"{x:.1%}" if x is not None else "-"


def print_table(runs, points, table):
    print(f"\n{'app':12} {'mode':15} {'result':>14} {'slowdown':>9} {'stall':>7} "
          f"{'reclaimed':>10} {'mean held':>10} {'peak held':>10} {'QEMU CPU':>9}")
    for r in runs:
        print(f"{r['app']:12} {r['mode']:15} {r['result']:8.1f} {r['unit']:>5} "
              f"{pct(r.get('slowdown')):>9} {pct(r.get('stall_share')):>7} "
              f"{r['reclamation_ratio']:10.1%} {r['mean_held_mib']:6.0f} MiB "
              f"{r['peak_held_mib']:6.0f} MiB {r['qemu_cpu_s'] or 0:7.1f} s")
    print("\neach mode, the median of its runs:")
    print(f"{'app':12} {'mode':15} {'runs':>4} {'slowdown':>9} {'stall':>7} {'reclaimed':>10}"
          "  results")
    for app, ps in points.items():
        for p in ps:
            print(f"{app:12} {p['mode']:15} {p['runs']:4} {pct(p['slowdown']):>9} "
                  f"{pct(p['stall_share']):>7} {p['reclamation_ratio']:10.1%}  "
                  + ", ".join(f"{x:.1f}" for x in p["results"]))

    def times(x):
        return f"{x:.2f}x" if x is not None else "-"

    for name, what in (("", "slowdown"), ("stall:", "stall")):
        print(f"\nreclamation ratio reached at a bounded {what} (the curves through the medians):")
        print(f"{'app':12} {'noise':>7} {'blowfish<=5%':>13} {'swap<=5%':>9} {'ratio':>6} "
              f"{'blowfish<=10%':>14} {'swap<=10%':>10} {'ratio':>6}")
        for app, row in table.items():
            print(f"{app:12} {pct(row['noise']):>7} {pct(row[name + 'blowfish@5%']):>13} "
                  f"{pct(row[name + 'host-swap@5%']):>9} {times(row[name + 'ratio@5%']):>6} "
                  f"{pct(row[name + 'blowfish@10%']):>14} "
                  f"{pct(row[name + 'host-swap@10%']):>10} {times(row[name + 'ratio@10%']):>6}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--app", action="append", choices=sorted(APPS))
    parser.add_argument("--mode", action="append")
    parser.add_argument("--all", action="store_true", help="every application, every mode")
    parser.add_argument("--repeat", type=int, metavar="N",
                        help=f"rounds of the modes (default {FULL_ROUNDS} with --all, else 1); "
                        "each mode's figures are the medians of its runs")
    parser.add_argument("--quick", action="store_true",
                        help="shorter runs, two applications, four modes (under 5 minutes)")
    parser.add_argument("--out", help="results folder (default: bench/results/run-DATE)")
    parser.add_argument("--backend-opt", action="append", default=[], metavar="KEY=VALUE",
                        help="a property for the Blowfish modes' backend (readahead=64, ...: "
                        "docs/backend.md), to compare settings")
    opts = parser.parse_args()

    why = guest_missing()
    if why:
        print(f"run: {why}")
        return 2
    apps = opts.app or (QUICK_APPS if opts.quick else sorted(APPS) if opts.all else None)
    if opts.mode:
        modes, once = opts.mode, []
    elif opts.quick:
        modes, once = QUICK_MODES, []
    elif opts.all:
        modes, once = ROUND_MODES, ONCE_MODES
    else:
        parser.error("name --app and --mode, or give --all or --quick")
    if not apps:
        parser.error("name --app, or give --all or --quick")
    if opts.repeat is not None and opts.repeat < 1:
        parser.error("--repeat needs a number of rounds of at least 1")
    rounds = opts.repeat or (FULL_ROUNDS if opts.all and not opts.mode else 1)
    modes = schedule(modes, once, rounds)
    for mode in modes:
        kind, _, share = mode.partition(":")
        if kind not in ("all-local", "host-swap", "host-zram", "balloon") + BLOWFISH_KINDS or \
           bool(share) != (kind in ("host-swap", "host-zram") + BLOWFISH_KINDS):
            parser.error(f"unknown mode {mode!r} (see --help)")
    if "kv" in apps:
        subprocess.run([os.path.join(TOP, "guest", "build-bench-guest.sh")], check=True)
    if any(m.startswith("host-") for m in modes) and hostswap.missing():
        print(f"run: {hostswap.missing()}: leaving out the host-swap modes")
        modes = [m for m in modes if not m.startswith("host-")]

    out_dir = opts.out or os.path.join(TOP, "bench", "results",
                                       "run-" + time.strftime("%Y-%m-%d") +
                                       ("-quick" if opts.quick else ""))
    os.makedirs(out_dir, exist_ok=True)
    runs, failed = [], []
    began = time.monotonic()
    with Memnode() as node:
        for app in apps:
            overhead = None     # measured by the first all-local run
            for i, mode in enumerate(modes):
                print(f"[{time.monotonic() - began:6.0f} s] {app} in {mode} "
                      f"({i + 1}/{len(modes)})", flush=True)
                try:
                    r = Run(app, mode, opts.quick, node, overhead or DEFAULT_QEMU_OVERHEAD,
                            opts.backend_opt).run()
                except (GuestError, RuntimeError) as e:
                    # Host swap at a low limit can end in the cgroup's OOM killer.
                    print(f"  failed: {str(e).splitlines()[0]}", flush=True)
                    failed.append({"app": app, "mode": mode, "error": str(e)[-2000:]})
                    continue
                if "qemu_overhead_mib" in r and mode == "all-local" and not overhead:
                    overhead = int(r["qemu_overhead_mib"] * MiB) + 16 * MiB
                with open(os.path.join(out_dir, f"{app}-{mode.replace(':', '-')}-{i}.json"),
                          "w") as f:
                    json.dump(r, f, indent=1)
                runs.append(r)
    points, table = summarize(runs)
    summary = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": opts.quick,
               "rounds": rounds, "seconds": time.monotonic() - began, "table": table,
               "points": points, "failed": failed,
               "runs": [{k: v for k, v in r.items() if k != "samples"} for r in runs]}
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print_table(runs, points, table)
    for f in failed:
        print(f"  failed: {f['app']} in {f['mode']}")
    try:
        import plots
        for path in plots.draw(runs, points, out_dir):
            print(f"  plot: {os.path.relpath(path, TOP)}")
    except ImportError as e:
        print(f"  no plots: {e} (apt-get install python3-matplotlib)")
    print(f"  results in {os.path.relpath(out_dir, TOP)} after "
          f"{time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
