#!/usr/bin/python3
"""Blowfish demonstration, run by scripts/build.sh.

Boots the patched QEMU under TCG with a memory-backend-blowfish as the guest's RAM (SeaBIOS
with no disk: no guest OS is needed to see the backend at work), then shows query-blowfish
and HMP "info blowfish": of the guest's 512 MiB, only the pages the firmware touched are in
host memory, each brought in by a userfaultfd fault.

QMP goes through QEMU's own Python library (python/qemu/qmp in the QEMU source tree).
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "build", "qemu", "src", "python"))

from qemu.qmp.legacy import QEMUMonitorProtocol  # noqa: E402


def plain(value):
    """The qemu.qmp library's reply objects (mappings that json.dumps prints as {}) as plain
    Python values."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def main() -> int:
    qemu = os.path.join(TOP, "build", "qemu-system-x86_64")
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "qmp.sock")
        qmp = QEMUMonitorProtocol(sock, server=True)
        args = [qemu, "-nodefaults", "-display", "none", "-accel", "tcg",
                "-machine", "pc,memory-backend=mem0", "-m", "512M",
                "-object", "memory-backend-blowfish,id=mem0,size=512M",
                "-qmp", f"unix:{sock}"]
        print("$ " + " ".join(args), flush=True)
        proc = subprocess.Popen(args)
        try:
            qmp.accept(timeout=30)
            time.sleep(2)   # let SeaBIOS run
            print("\n-> query-blowfish")
            print(json.dumps(plain(qmp.cmd("query-blowfish")), indent=2))
            print("\n-> info blowfish")
            print(qmp.cmd("human-monitor-command", **{"command-line": "info blowfish"}))
            qmp.cmd("quit")
            return proc.wait(timeout=30)
        except EOFError:
            # QEMU quits and closes the socket, sometimes before its reply is read.
            return proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            try:
                qmp.close()
            except EOFError:
                pass


if __name__ == "__main__":
    sys.exit(main())
