"""rdmavm: runs programs inside the Soft-RoCE test guest (guest/build-rdma-guest.sh: Debian's
generic kernel, rdma_rxe on a virtio-net eth0) under the patched QEMU, with TCG. Python 3
standard library only (and guest/blowfishvm.py for QEMU's path and the TSC frequency).

    why = rdmavm.rdma_guest_missing()   # None, or why the guest cannot run here: skip
    node = "/work/main/build/memnode/blowfish-memnode"
    status, output = rdmavm.run_in_rdma_guest(
        [node, "/usr/bin/rping"],
        f"{node} --listen tcp:10.0.2.15:0 & rping -s -a 10.0.2.15 -C 3 & sleep 1\n"
        "rping -c -a 10.0.2.15 -C 3 -v",
        timeout=300)

Each run appends an overlay to the cached base initramfs: the given files at the same
absolute paths, their shared libraries (ldd), libibverbs' rxe provider, librdmacm and
libgcc_s, and /run.sh (the script, run by busybox sh in /tmp). The guest's init
(guest/rdma-init) gives eth0 10.0.2.15/24 (QEMU's user network, restricted: nothing leaves
the host), creates rxe0 on it, runs /run.sh and powers off; /run.sh's exit status comes back
through the console and isa-debug-exit.
"""

import glob
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import blowfishvm
    _IMPORT_ERROR = None
except ImportError as e:        # blowfishvm needs QEMU's source tree (its QMP library)
    blowfishvm = None
    _IMPORT_ERROR = e

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(TOP, "build")
QEMU = os.path.join(BUILD, "qemu-system-x86_64")
GUEST_DIR = os.path.join(BUILD, "guest-rdma")
VMLINUX = os.path.join(GUEST_DIR, "vmlinux")
INITRAMFS = os.path.join(GUEST_DIR, "initramfs.cpio")
BUILD_SCRIPT = os.path.join(TOP, "guest", "build-rdma-guest.sh")
QBOOT = "/usr/share/qemu/qboot.rom"
# The RTC stays on: without it this kernel waits 2 x 1 s for it while booting.
MACHINE = "microvm,x-option-roms=off"
GUEST_IP = "10.0.2.15"

# What libibverbs and glibc load at run time (dlopen), besides what ldd reports: the rxe
# provider, and libgcc_s for pthread_exit and pthread_cancel. Libraries are named by the
# paths ldd reports here, so that nothing is copied twice.
RUNTIME_FILES = ["/etc/libibverbs.d/rxe.driver",
                 "/lib/x86_64-linux-gnu/libibverbs.so.1",
                 "/lib/x86_64-linux-gnu/librdmacm.so.1",
                 "/lib/x86_64-linux-gnu/libgcc_s.so.1"]
RUNTIME_GLOBS = ["/usr/lib/x86_64-linux-gnu/libibverbs/librxe-*.so"]


class RdmaGuestError(Exception):
    pass


def rdma_guest_missing(build=True):
    """Why the RDMA guest cannot run here, or None. With @build, (re)builds the guest first
    (cached: a no-op takes about a second)."""
    if not os.path.exists(QEMU):
        return f"{QEMU} is missing: run ./scripts/build.sh"
    if _IMPORT_ERROR is not None:
        return f"cannot import guest/blowfishvm.py: {_IMPORT_ERROR}"
    if not os.path.exists(QBOOT):
        return f"{QBOOT} is missing: apt-get install qemu-system-data"
    for path in RUNTIME_FILES + RUNTIME_GLOBS:
        if not glob.glob(path):
            return f"{path} is missing: apt-get install ibverbs-providers librdmacm1"
    if build:
        proc = subprocess.run([BUILD_SCRIPT, GUEST_DIR], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            return "cannot build the RDMA guest: " + (proc.stdout.strip().splitlines() or
                                                      ["no output"])[-1]
    for path in (VMLINUX, INITRAMFS):
        if not os.path.exists(path):
            return f"{path} is missing: run {BUILD_SCRIPT}"
    return None


def _shared_libraries(path):
    """The shared libraries @path loads (absolute paths, as resolved on this host)."""
    with open(path, "rb") as f:
        if f.read(4) != b"\x7fELF":
            return []
    proc = subprocess.run(["ldd", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    if proc.returncode != 0:    # static executables, or not an executable at all
        return []
    libs = []
    for line in proc.stdout.splitlines():
        words = line.split()
        if "=>" in words:
            target = words[words.index("=>") + 1]
            if target == "not":
                raise RdmaGuestError(f"{path}: {words[0]} not found (ldd)")
            libs.append(target)
        elif words and words[0].startswith("/"):
            libs.append(words[0])       # the dynamic loader
    return libs


def _collect(files):
    """{guest path: host path} for @files, their libraries and libibverbs' run-time files."""
    todo = [os.path.abspath(f) for f in files] + list(RUNTIME_FILES)
    for pattern in RUNTIME_GLOBS:
        todo += glob.glob(pattern)
    found = {}
    while todo:
        path = todo.pop(0)
        if path in found:
            continue
        if os.path.isdir(path):
            todo += [os.path.join(d, f) for d, _, names in os.walk(path) for f in names]
            continue
        if path == "/run.sh" or path.startswith(("/proc/", "/sys/", "/dev/")):
            raise RdmaGuestError(f"{path}: the guest mounts over this path")
        if not os.path.isfile(path):
            raise RdmaGuestError(f"{path}: no such file")
        found[path] = path
        todo += _shared_libraries(path)
    return found


class _Cpio:
    """A newc cpio archive writer (what the kernel unpacks as initramfs)."""

    def __init__(self, f):
        self.f = f
        self.ino = 1 << 20      # one link each: inode numbers need only be distinct here
        self.dirs = set()

    def _entry(self, name, mode, data=b""):
        name = name.lstrip("/").encode() + b"\0"
        self.ino += 1
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name), 0]
        header = b"070701" + b"".join(b"%08X" % v for v in fields)
        self.f.write(header + name + b"\0" * (-(len(header) + len(name)) % 4))
        self.f.write(data + b"\0" * (-len(data) % 4))

    def _parents(self, path):
        parent = os.path.dirname(path)
        if parent != "/" and parent not in self.dirs:
            self._parents(parent)
            self.dirs.add(parent)
            self._entry(parent, 0o40755)

    def add(self, path, data, mode):
        self._parents(path)
        self._entry(path, 0o100000 | mode, data)

    def close(self):
        self._entry("TRAILER!!!", 0)


def _build_initrd(files, script, path):
    """Writes the base initramfs followed by the overlay to @path; returns the overlay's
    size in bytes."""
    found = _collect(files)
    with open(path, "wb") as out:
        with open(INITRAMFS, "rb") as base:
            while chunk := base.read(1 << 20):
                out.write(chunk)
        out.write(b"\0" * (-out.tell() % 4))
        start = out.tell()
        cpio = _Cpio(out)
        for guest_path, host_path in sorted(found.items()):
            with open(host_path, "rb") as f:
                data = f.read()
            cpio.add(guest_path, data, os.stat(host_path).st_mode & 0o7777)
        cpio.add("/run.sh", script.encode(), 0o755)
        cpio.close()
        return out.tell() - start


def run_in_rdma_guest(files, script, timeout=300, ram_mb=1024, cpus=2, log=print,
                      stream=False, kernel_args="", extra_args=()):
    """Boots the RDMA guest with @files (host paths, copied to the same paths in the guest,
    with their shared libraries) and runs @script as /run.sh with busybox sh; returns
    (/run.sh's exit status, the console output). @log gets progress and timings (and every
    console line with @stream). Raises RdmaGuestError when the guest cannot be set up, dies
    without reporting, or runs out of @timeout seconds (QEMU is killed)."""
    why = rdma_guest_missing()
    if why:
        raise RdmaGuestError(why)
    with tempfile.TemporaryDirectory(prefix="rdmavm-") as tmp:
        initrd = os.path.join(tmp, "initramfs.cpio")
        overlay = _build_initrd(files, script, initrd)
        append = (f"console=ttyS0 quiet panic=-1 tsc_early_khz={blowfishvm.host_khz()} "
                  f"{kernel_args}")
        args = [QEMU, "-M", MACHINE, "-accel", "tcg",
                "-smp", str(cpus), "-m", f"{ram_mb}M",
                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-serial", "stdio", "-bios", QBOOT,
                "-kernel", VMLINUX, "-initrd", initrd, "-append", append,
                "-netdev", "user,id=net0,restrict=on",
                "-device", "virtio-net-device,netdev=net0",
                "-device", "isa-debug-exit,iobase=0xf4,iosize=4"] + list(extra_args)
        log(f"rdmavm: booting ({os.path.getsize(INITRAMFS) // 1024} KiB base + "
            f"{overlay // 1024} KiB overlay initramfs, {ram_mb} MiB, {cpus} vCPUs)")
        return _run(args, timeout, log, stream)


def _run(args, timeout, log, stream):
    start = time.monotonic()
    lines = []
    ready = []
    try:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
    except OSError as e:
        raise RdmaGuestError(f"cannot start {args[0]}: {e}") from e

    def reader():
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            lines.append(line)
            if line.startswith("rdma-init: ready") and not ready:
                ready.append(time.monotonic() - start)
                log(f"rdmavm: /run.sh starts {ready[0]:.1f} s after QEMU started")
            if stream:
                log(line)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        thread.join(timeout=10)
    output = "\n".join(lines)
    tail = "\n".join(lines[-30:])
    elapsed = time.monotonic() - start
    if code is None:
        raise RdmaGuestError(f"the RDMA guest did not finish in {timeout} s (QEMU killed):\n"
                             f"{tail}")
    for line in lines:
        if line.startswith("rdma-init: setup failed"):
            raise RdmaGuestError(f"{line}\n{tail}")
    status = None
    for line in lines:
        if line.startswith("rdma-init: /run.sh exit status "):
            status = int(line.split()[-1])
    # isa-debug-exit: QEMU exits with (value << 1) | 1, truncated to 8 bits.
    if status is None or code & 1 == 0 or (code >> 1) != (status & 0x7f):
        raise RdmaGuestError(f"the RDMA guest ended without reporting (QEMU exit status "
                             f"{code}):\n{tail}")
    log(f"rdmavm: /run.sh exit status {status}, QEMU ran {elapsed:.1f} s")
    return status, output
