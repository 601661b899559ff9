#!/usr/bin/python3
"""The RDMA transport over a real RDMA device: Soft-RoCE (rdma_rxe) in a test guest.

This host has no RDMA device, so the test boots Debian's generic kernel under TCG
(guest/build-rdma-guest.sh, guest/rdmavm.py), which creates rxe0 on its virtio-net eth0, and
runs there, over rxe0:

  test-channel -p /channel/rdma   the transport suite TCP passes on the host: pages byte for
                                  byte, pipelining, sessions, a full node, memory given back,
                                  a node killed and restarted; and a hand-driven client that
                                  tries to reach memory it was not granted, or breaks the
                                  protocol
  test-engine                     the engine's whole suite, its pool tests against a
                                  blowfish-memnode listening on RDMA: writers under a low
                                  limit, restore-all, frees; the node stopped under load and
                                  resumed. The guest runs Debian 12's own kernel (6.1), so
                                  this is also the engine on a stock Debian 12 host kernel,
                                  where UFFDIO_CONTINUE cannot write-protect (before 6.3).
  test-auth                       keys over RDMA: the right key reads pages back, a wrong,
                                  unknown or missing one is refused with the TCP messages, two
                                  keys naming one session id see two sessions, the cap on
                                  clients proving a key, and the 10 s they have to prove it
  test-robust -p many-clients, quota, pool-full
                                  16 keyed VMs at once with byte checks; a key at its --quota
                                  and a full node pause eviction, and nothing is lost
  blowfish-test -p .../short-cycle, .../keys
                                  the patched QEMU (qtest accelerator) with
                                  memory-backend-blowfish,pool=rdma:...: guest RAM out to the
                                  node and back byte for byte, and blowfish-restore; with a
                                  QEMU secret object as the key, and refused without it
  blowfish-memnode                a clear error for an address no RDMA device has

Every subtest is reported as TAP; a subtest skipped in the guest fails here (the device is
there, so nothing may be skipped but what cannot apply to RDMA). Without the guest (no kernel
package, no QEMU) the whole test is skipped with the reason.
"""

import os
import re
import sys

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(TOP, "guest"))

import rdmavm  # noqa: E402

BUILD = os.path.join(TOP, "build")
MEMNODE = os.path.join(BUILD, "memnode", "blowfish-memnode")
TEST_CHANNEL = os.path.join(BUILD, "tests", "unit", "test-channel")
TEST_ENGINE = os.path.join(BUILD, "tests", "unit", "test-engine")
TEST_AUTH = os.path.join(BUILD, "tests", "unit", "test-auth")
TEST_ROBUST = os.path.join(BUILD, "tests", "unit", "test-robust")
QEMU = os.path.join(BUILD, "qemu", "build", "qemu-system-x86_64")
QTEST = os.path.join(BUILD, "qemu", "build", "tests", "qtest", "blowfish-test")
# The firmware QEMU loads (its --firmwarepath).
FIRMWARE = ["/usr/share/seabios", "/usr/share/qemu", "/usr/lib/ipxe/qemu"]
# What may be skipped over RDMA, and why.
ALLOWED_SKIPS = {"/engine/pool/killed": "--store is TCP's",
                 "/auth/replay": "its raw messages are written on a TCP socket"}
# The engine's thread races, against an in-process store or no pool: long under TCG, and
# no RDMA in them.
LOCAL_ONLY = ["/engine/evict/mixed-ops", "/engine/evict/clean-under-access",
              "/engine/free/discard-under-fill-around"]
ALLOWED_SKIPS.update({name: "no RDMA: an in-process store or no pool" for name in LOCAL_ONLY})
SKIP_LOCAL_ONLY = " ".join("-s " + name for name in LOCAL_ONLY)

SCRIPT = f"""
export BLOWFISH_MEMNODE={MEMNODE}
export BLOWFISH_TEST_RDMA={rdmavm.GUEST_IP}
export BLOWFISH_MEMNODE_LISTEN=rdma:{rdmavm.GUEST_IP}:0
status=0
{TEST_CHANNEL} --tap -p /channel/rdma || status=1
{TEST_ENGINE} --tap {SKIP_LOCAL_ONLY} || status=1
{TEST_AUTH} --tap || status=1
{TEST_ROBUST} --tap -p /robust/many-clients -p /robust/quota -p /robust/pool-full || status=1
QTEST_QEMU_BINARY={QEMU} {QTEST} --tap -p /x86_64/blowfish/pool/short-cycle \
    -p /x86_64/blowfish/pool/keys || status=1
if {MEMNODE} --listen rdma:10.9.9.9:0 --capacity 1M 2>/tmp/err; then
    echo "not ok - memnode listened on an address no device has"; status=1
elif grep -q "cannot listen on rdma:10.9.9.9:0" /tmp/err; then
    echo "ok - memnode: $(cat /tmp/err)"
else
    echo "not ok - memnode: unexpected error: $(cat /tmp/err)"; status=1
fi
exit $status
"""

RESULT = re.compile(r"^(not ok|ok)\b[ \d]*(?:- )?(\S*)(.*)$")


def main():
    why = rdmavm.rdma_guest_missing()
    if why:
        print(f"1..0 # SKIP {why}")
        return 0
    status, output = rdmavm.run_in_rdma_guest(
        [MEMNODE, TEST_CHANNEL, TEST_ENGINE, TEST_AUTH, TEST_ROBUST, QEMU, QTEST] + FIRMWARE,
        SCRIPT, timeout=900,
        log=lambda line: None,
        kernel_args="tsc=reliable")     # a TSC clocksource: fault latencies are microseconds
    results = []
    for line in output.splitlines():
        m = RESULT.match(line.strip())
        if m:
            results.append((m.group(1) == "ok", m.group(2), m.group(3)))
    failed = status != 0
    n = 0
    for ok, name, rest in results:
        n += 1
        if ok and "# SKIP" in rest and name not in ALLOWED_SKIPS:
            ok = False
            rest += " (skipped in the RDMA guest)"
        failed |= not ok
        print(f"{'ok' if ok else 'not ok'} {n} {name}{rest}")
    # The engine's and QEMU's pool tests say where their node is: it must be RDMA.
    over_rdma = output.count(f"memory node at rdma:{rdmavm.GUEST_IP}:")
    if over_rdma < 2:
        failed = True
        n += 1
        print(f"not ok {n} - only {over_rdma} pool tests ran against an RDMA memnode")
    if n < 36:
        failed = True
        n += 1
        print(f"not ok {n} - the guest ran {len(results)} subtests")
    if failed:
        print("# guest output:")
        for line in output.splitlines():
            print(f"#   {line}")
        print(f"# guest exit status {status}")
    print(f"1..{n}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
