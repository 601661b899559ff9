#!/usr/bin/python3
"""rdma-softroce: engine-bench over the RDMA transport in the Soft-RoCE test guest.

This host has no RDMA device: the guest (guest/rdmavm.py) runs Debian's kernel with rdma_rxe
under TCG, and `engine-bench --quick` runs in it twice, the memnode on rdma:10.0.2.15:0 and
then on tcp:10.0.2.15:0 (the same emulated machine, for comparison). Everything there,
the minor-fault floor included, is emulated, and rxe is a software device: these numbers show
that the transport works end to end and how it compares with the floors of the same run,
not what RDMA hardware does. On a machine with an RDMA NIC, run instead

    ./scripts/bench.sh --listen rdma:ADDR:0      (ADDR: the address of the NIC's interface)

Writes bench/results/rdma-softroce-DATE.json and prints engine-bench's table.
"""

import json
import os
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "guest"))

import rdmavm  # noqa: E402
from blowfishvm import write_results  # noqa: E402

BUILD = os.path.join(TOP, "build")
MEMNODE = os.path.join(BUILD, "memnode", "blowfish-memnode")
ENGINE_BENCH = os.path.join(BUILD, "bench", "engine-bench")


def main():
    why = rdmavm.rdma_guest_missing()
    if why:
        print(f"rdma-softroce: {why}")
        return 2
    script = "".join(
        f"BLOWFISH_MEMNODE={MEMNODE} {ENGINE_BENCH} --quick --listen {t}:{rdmavm.GUEST_IP}:0 "
        f"--json /tmp/{t}.json || exit 1\necho 'JSON<<'; cat /tmp/{t}.json; echo '>>JSON'\n"
        for t in ("rdma", "tcp"))
    status, output = rdmavm.run_in_rdma_guest([MEMNODE, ENGINE_BENCH], script, timeout=900,
                                              log=lambda line: None, kernel_args="tsc=reliable")
    if status != 0:
        print(output)
        print(f"rdma-softroce: engine-bench failed in the guest (status {status})")
        return 1
    parts = output.split("JSON<<")
    for part in parts[:-1]:
        print("\n".join(line for line in part.split(">>JSON")[-1].splitlines()
                        if line and not line.startswith(("[", "rdma-init:"))))
    runs = [json.loads(part.split(">>JSON")[0]) for part in parts[1:]]
    results = {
        "where": "Soft-RoCE (rdma_rxe) in a TCG guest: a functional check, not hardware",
        "rdma": runs[0], "tcp": runs[1],
        "rdma_p50_over_tcp_p50": (runs[0]["latency"]["remote_p50_ns"] /
                                  runs[1]["latency"]["remote_p50_ns"]),
    }
    print(f"  rdma p50 / tcp p50 in the same guest: {results['rdma_p50_over_tcp_p50']:.2f}")
    print(f"  written to {write_results('rdma-softroce', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
