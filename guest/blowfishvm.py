"""blowfishvm: boots the test guest (guest/build-guest.sh) under the patched QEMU, with a
memory-backend-blowfish and optionally a blowfish-memnode, for the end-to-end tests
(tests/guest/) and the benchmarks (bench/). Python 3 standard library, and QEMU's own QMP
library from its source tree.

    with Memnode() as node, Guest(ram_mb=512, steps="pattern 300", pool=node.address,
                                  local_limit_mb=128) as vm:
        vm.wait_line("pattern passed")
        print(vm.info()["remote"])
        assert vm.wait_exit() == 0
"""

import datetime
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(TOP, "build")
sys.path.insert(0, os.path.join(BUILD, "qemu", "src", "python"))

from qemu.qmp.legacy import QEMUMonitorProtocol  # noqa: E402

QEMU = os.path.join(BUILD, "qemu-system-x86_64")
MEMNODE = os.path.join(BUILD, "memnode", "blowfish-memnode")
VMLINUX = os.path.join(BUILD, "guest", "vmlinux")
INITRAMFS = os.path.join(BUILD, "guest", "initramfs.cpio")


class GuestError(Exception):
    pass


def write_results(name, results):
    """Writes @results, dated, to bench/results/NAME-DATE.json; returns the path, relative."""
    results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(), **results}
    directory = os.path.join(TOP, "bench", "results")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{name}-{datetime.date.today().isoformat()}.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    return os.path.relpath(path, TOP)


def guest_missing():
    """Why the test guest cannot run here, or None."""
    for path in (QEMU, VMLINUX, INITRAMFS):
        if not os.path.exists(path):
            return f"{path} is missing: run ./scripts/build.sh"
    return None


def host_khz():
    """The TSC frequency for the guest's command line: microvm under TCG needs it."""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return int(float(line.split(":")[1]) * 1000)
    return 2000000


class Memnode:
    """A blowfish-memnode on a free loopback port."""

    def __init__(self, capacity="4G", store=None):
        self.proc = subprocess.Popen([MEMNODE, "--listen", "tcp:127.0.0.1:0",
                                      "--capacity", capacity] +
                                     (["--store", store] if store else []),
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"listening on (\S+),", line)
        if not m:
            self.proc.kill()
            raise GuestError(f"blowfish-memnode did not start: {line!r}")
        self.address = m.group(1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Guest:
    """The test guest running @steps (bfwork steps, ';'-separated) on a Blowfish backend."""

    def __init__(self, ram_mb, steps, pool=None, local_limit_mb=None, vcpus=1,
                 backend="blowfish", backend_opts="", extra_args=(), kernel_args="",
                 free_page_reporting=True, free_page_hint=False, launcher=(),
                 initramfs=INITRAMFS, timeout=600):
        self.ram_mb = ram_mb
        self.deadline = time.monotonic() + timeout
        self.lines = []
        self.cond = threading.Condition()
        self.tmp = tempfile.TemporaryDirectory(prefix="blowfishvm-")
        sock = os.path.join(self.tmp.name, "qmp.sock")
        self.qmp = QEMUMonitorProtocol(sock, server=True)

        if backend == "blowfish":
            opts = f"memory-backend-blowfish,id=mem0,size={ram_mb}M"
            if pool:
                opts += f",pool={pool}"
            if local_limit_mb:
                opts += f",local-limit={local_limit_mb}M"
        else:
            opts = f"memory-backend-{backend},id=mem0,size={ram_mb}M"
        opts += backend_opts
        append = (f"console=ttyS0 quiet tsc_early_khz={host_khz()} {kernel_args} "
                  f"bfwork=\"{steps}\"")
        # @launcher: a command that execs the rest (bench/run.py puts QEMU in a cgroup).
        # microvm keeps its RTC: without one, the kernel waits twice for a second at boot.
        self.args = list(launcher) + [QEMU, "-M", "microvm,x-option-roms=off,memory-backend=mem0",
                     "-accel", "tcg", "-smp", str(vcpus), "-m", f"{ram_mb}M",
                     "-nodefaults", "-no-user-config", "-display", "none",
                     "-serial", "stdio", "-bios", "/usr/share/qemu/qboot.rom",
                     "-kernel", VMLINUX, "-initrd", initramfs, "-append", append,
                     "-object", opts,
                     "-device", "virtio-balloon-device,id=balloon0,free-page-reporting=" +
                     ("on" if free_page_reporting else "off") +
                     (",free-page-hint=on,iothread=balloon-io" if free_page_hint else ""),
                     "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
                     "-qmp", f"unix:{sock}"] + list(extra_args)
        if free_page_hint:
            self.args += ["-object", "iothread,id=balloon-io"]
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)
        self.reader = threading.Thread(target=self._read_console, daemon=True)
        self.reader.start()
        self.qmp.accept(timeout=30)

    def _read_console(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def _left(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise GuestError("the test ran out of time")
        return left

    def console(self):
        with self.cond:
            return "\n".join(self.lines)

    def wait_line(self, needle, timeout=None):
        """Waits for a console line containing @needle; returns it."""
        end = time.monotonic() + min(timeout or self._left(), self._left())
        with self.cond:
            seen = 0
            while True:
                for line in self.lines[seen:]:
                    if "bfwork: FAIL" in line:
                        raise GuestError(f"the guest failed: {line}")
                    if needle in line:
                        return line
                seen = len(self.lines)
                if self.proc.poll() is not None and not self.reader.is_alive():
                    raise GuestError(f"QEMU exited ({self.proc.returncode}) before "
                                     f"{needle!r}:\n" + "\n".join(self.lines[-20:]))
                left = end - time.monotonic()
                if left <= 0:
                    raise GuestError(f"no {needle!r} on the console in time:\n" +
                                     "\n".join(self.lines[-20:]))
                self.cond.wait(min(left, 1))

    def send_line(self, text="go"):
        """Types a line on the guest's console."""
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def cmd(self, name, **args):
        return self.qmp.cmd(name, **args)

    def info(self):
        """query-blowfish for the guest's RAM."""
        return self.cmd("query-blowfish")[0]

    def running(self):
        return self.proc.poll() is None

    def info_or_none(self):
        """query-blowfish, or None if QEMU has just exited."""
        try:
            return self.info()
        except Exception:
            # QMP goes away a moment before the process does.
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                raise
            return None

    def wait_info(self, predicate, timeout=60, what="condition"):
        """Polls query-blowfish until @predicate(info) holds; returns (info, seconds)."""
        start = time.monotonic()
        end = start + min(timeout, self._left())
        while True:
            info = self.info()
            if predicate(info):
                return info, time.monotonic() - start
            if time.monotonic() > end:
                raise GuestError(f"{what} did not happen in time: {info}")
            time.sleep(0.05)

    def rss(self):
        """QEMU's resident set, in bytes."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def events(self, name):
        return [e for e in self.qmp.get_events(wait=False) if e["event"] == name]

    def wait_event(self, name, timeout=60):
        end = time.monotonic() + min(timeout, self._left())
        while time.monotonic() < end:
            try:
                event = self.qmp.pull_event(wait=min(1.0, max(0.01, end - time.monotonic())))
            except TimeoutError:
                continue
            if event and event["event"] == name:
                return event
            if not self.running():
                raise GuestError(f"QEMU exited before a {name} event")
        raise GuestError(f"no {name} event in time")

    def wait_exit(self):
        """Waits for QEMU to end; returns the guest's result (0: passed)."""
        try:
            code = self.proc.wait(timeout=self._left())
        except subprocess.TimeoutExpired:
            raise GuestError("the guest did not finish in time:\n" + self.console()[-2000:])
        self.reader.join(timeout=5)
        # isa-debug-exit: QEMU exits with (value << 1) | 1.
        if code & 1 == 0:
            raise GuestError(f"QEMU exited with {code}, not through the guest's report:\n" +
                             self.console()[-2000:])
        failures = [line for line in self.lines if "bfwork: FAIL" in line]
        if failures:
            raise GuestError("the guest failed: " + failures[0])
        return code >> 1

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        try:
            self.qmp.close()
        except Exception:
            pass
        self.tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
