"""hostswap: the alternative a cloud operator has today, for bench/run.py: QEMU in a cgroup v1
memory group whose limit forces the rest of guest RAM out to swap, on a swap file or on zram
(whose compressed pages stay on this host, and so count as held in host memory).

    with SwapDevice("file", 512 << 20) as swap, MemoryCgroup("bench", limit) as cg:
        Guest(..., launcher=cg.launcher())
        ... swap.held_bytes() ...
"""

import os
import subprocess

CGROUP_ROOT = "/sys/fs/cgroup/memory"


def missing():
    """Why host swap cannot be measured here, or None."""
    if not os.path.isdir(CGROUP_ROOT):
        return f"no cgroup v1 memory controller at {CGROUP_ROOT}"
    if os.geteuid() != 0:
        return "host swap needs root (swapon, cgroups)"
    return None


def _run(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _active_swaps():
    with open("/proc/swaps") as f:
        return [line.split()[0] for line in f.readlines()[1:]]


class SwapDevice:
    """The only swap while it is entered: a swap file, or a zram device (lz4)."""

    def __init__(self, kind, size):
        self.kind = kind
        self.size = size
        self.path = None
        self.others = []

    def __enter__(self):
        self.others = _active_swaps()
        for other in self.others:
            _run("swapoff", other)
        if self.kind == "file":
            self.path = "/var/tmp/blowfish-bench.swap"
            _run("fallocate", "-l", str(self.size), self.path)
            os.chmod(self.path, 0o600)
        else:
            if not os.path.exists("/sys/block/zram0"):
                _run("modprobe", "zram", "num_devices=1")
            self.path = "/dev/zram0"
            if os.path.exists("/sys/block/zram0/reset"):
                with open("/sys/block/zram0/reset", "w") as f:
                    f.write("1")
            with open("/sys/block/zram0/comp_algorithm", "w") as f:
                f.write("lz4")
            with open("/sys/block/zram0/disksize", "w") as f:
                f.write(str(self.size))
        _run("mkswap", self.path)
        _run("swapon", self.path)
        return self

    def held_bytes(self):
        """Host memory the swap device itself holds (zram's compressed pages; a file: 0)."""
        if self.kind != "zram":
            return 0
        with open("/sys/block/zram0/mm_stat") as f:
            return int(f.read().split()[2])      # mem_used_total

    def __exit__(self, *exc):
        subprocess.run(["swapoff", self.path], check=False)
        if self.kind == "file":
            os.unlink(self.path)
        else:
            with open("/sys/block/zram0/reset", "w") as f:
                f.write("1")
        for other in self.others:
            subprocess.run(["swapon", other], check=False)


class MemoryCgroup:
    """A cgroup v1 memory group with a limit (-1: none); QEMU enters it through launcher()."""

    def __init__(self, name, limit):
        self.path = os.path.join(CGROUP_ROOT, name)
        self.limit = limit

    def __enter__(self):
        os.makedirs(self.path, exist_ok=True)
        with open(os.path.join(self.path, "memory.limit_in_bytes"), "w") as f:
            f.write(str(self.limit))
        return self

    def anonymous(self):
        """The anonymous memory the group is charged for: QEMU's own (its heap, TCG's code
        buffer), guest RAM aside. Not the pages of QEMU's binary and libraries it maps: the
        first group to map them is charged for them, which gave the same QEMU from 0 to
        79 MiB more with what ran before."""
        with open(os.path.join(self.path, "memory.stat")) as f:
            for line in f:
                key, value = line.split()
                if key == "rss":
                    return int(value)
        raise RuntimeError(f"{self.path}/memory.stat has no rss")

    def launcher(self):
        procs = os.path.join(self.path, "cgroup.procs")
        return ["sh", "-c", f'echo $$ > {procs} && exec "$@"', "sh"]

    def __exit__(self, *exc):
        # Empty once QEMU has exited; rmdir frees it.
        try:
            os.rmdir(self.path)
        except OSError:
            pass
