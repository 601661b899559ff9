#!/usr/bin/python3
"""Smoke test of the Soft-RoCE test guest (guest/rdmavm.py): boots it once and runs, over
rxe0 between two processes in the guest, the stock RDMA tools from Debian:

  verbs-rc     ibv_rc_pingpong: RC send/receive, connection set up over TCP (ibverbs-utils)
  rdma-cm      rping: rdma_cm connection to the guest's own eth0 address, RDMA READ and
               WRITE each round (rdmacm-utils)
  rdma-write   ib_write_bw: one-sided RDMA WRITE bandwidth (perftest)
  rdma-cm-read ib_read_lat -R: one-sided RDMA READ, connected through rdma_cm (perftest)

    rdma-smoke.py [-v]     (prints TAP; exit 77 when the guest or the tools are missing;
                            -v streams the guest's console)
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "guest"))

import rdmavm  # noqa: E402

TOOLS = ["/usr/bin/ibv_devinfo", "/usr/bin/ibv_rc_pingpong", "/usr/bin/rping",
         "/usr/bin/ib_write_bw", "/usr/bin/ib_read_lat"]
STEPS = ["verbs-rc", "rdma-cm", "rdma-write", "rdma-cm-read"]

# /run.sh: each step runs a server in the background and its client, both under a timeout,
# and prints "smoke: ok STEP SECONDS" or "smoke: FAIL STEP"; the exit status counts failures.
SCRIPT = r"""
ip=%(ip)s
gid=$(grep -l ':ffff:' /sys/class/infiniband/rxe0/ports/1/gids/* | head -n 1)
gid=${gid##*/}
echo "smoke: rxe0 IPv4 GID index $gid: $(cat /sys/class/infiniband/rxe0/ports/1/gids/$gid)"
ibv_devinfo -d rxe0 | grep -E 'state|link_layer|active_mtu'
failures=0

now() { cut -d' ' -f1 /proc/uptime; }

# Waits until something listens on tcp:PORT (a socket) or cm:PORT (an rdma_cm ID).
listening() {
    case $1 in
        tcp:*) netstat -ltn | grep -q ":${1#tcp:} " ;;
        cm:*) rdma res show cm_id src-port "${1#cm:}" | grep -q LISTEN ;;
    esac
}
wait_listen() {
    for _ in $(seq 100); do
        listening "$1" && return 0
        sleep 0.1
    done
    echo "smoke: nothing listens on $1 after 10 s"
}

# step NAME LISTEN "SERVER COMMAND" "CLIENT COMMAND" PATTERN: the server runs in the
# background; once it listens on LISTEN (see wait_listen) the client runs; both must succeed,
# and PATTERN must be in the client's output.
step() {
    name=$1
    start=$(now)
    timeout 120 sh -c "$3" > /tmp/$name-server.log 2>&1 &
    server=$!
    wait_listen "$2"
    timeout 120 sh -c "$4" > /tmp/$name-client.log 2>&1
    client=$?
    wait $server
    srv=$?
    if [ $client = 0 ] && [ $srv = 0 ] && grep -q "$5" /tmp/$name-client.log; then
        echo "smoke: ok $name $(awk "BEGIN { print $(now) - $start }")"
    else
        echo "smoke: FAIL $name (client $client, server $srv)"
        failures=$((failures + 1))
    fi
    sed "s/^/  $name server: /" /tmp/$name-server.log | tail -n 8
    sed "s/^/  $name client: /" /tmp/$name-client.log | tail -n 8
}

step verbs-rc tcp:18515 "ibv_rc_pingpong -d rxe0 -g $gid -n 500 -s 4096" \
    "ibv_rc_pingpong -d rxe0 -g $gid -n 500 -s 4096 $ip" "500 iters"
step rdma-cm cm:7174 "rping -s -a $ip -C 20 -v" "rping -c -a $ip -C 20 -v" "ping data"
step rdma-write tcp:18515 "ib_write_bw -d rxe0 -x $gid -F -s 65536 -n 500" \
    "ib_write_bw -d rxe0 -x $gid -F -s 65536 -n 500 $ip" "65536 *500"
step rdma-cm-read cm:18515 "ib_read_lat -R -d rxe0 -F -s 64 -n 500" \
    "ib_read_lat -R -d rxe0 -F -s 64 -n 500 $ip" "64 *500"
exit $failures
"""


def note(text):
    print(f"# {text}", flush=True)


def main():
    stream = "-v" in sys.argv[1:]
    print(f"1..{len(STEPS)}", flush=True)
    start = time.monotonic()
    why = rdmavm.rdma_guest_missing()
    missing = [t for t in TOOLS if not os.path.exists(t)]
    if missing and not why:
        why = f"{', '.join(missing)} missing: apt-get install ibverbs-utils rdmacm-utils perftest"
    if why:
        for i, name in enumerate(STEPS, 1):
            print(f"ok {i} {name} # SKIP {why}", flush=True)
        return 77
    try:
        status, output = rdmavm.run_in_rdma_guest(TOOLS, SCRIPT % {"ip": rdmavm.GUEST_IP},
                                                  timeout=600, log=note, stream=stream)
    except rdmavm.RdmaGuestError as e:
        for line in str(e).splitlines():
            note(line)
        for i, name in enumerate(STEPS, 1):
            print(f"not ok {i} {name}", flush=True)
        return 1
    results = {name: verdict
               for verdict, name in re.findall(r"^smoke: (ok|FAIL) (\S+)", output, re.M)}
    if not stream:
        for line in output.splitlines():
            if line.startswith(("smoke:", "  ", "rdma-init:")):
                note(line)
    failed = 0
    for i, name in enumerate(STEPS, 1):
        if results.get(name) == "ok":
            print(f"ok {i} {name}", flush=True)
        else:
            failed += 1
            print(f"not ok {i} {name}", flush=True)
    note(f"guest exit status {status}; {time.monotonic() - start:.1f} s in all")
    return 1 if failed or status else 0


if __name__ == "__main__":
    sys.exit(main())
