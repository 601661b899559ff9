#!/usr/bin/python3
"""Blowfish VMs run by a real libvirtd (docs/libvirt.md): domain XMLs made by
scripts/blowfish-virt-xml are defined, started, watched and controlled with virsh, and must
boot the test guest, whose workload must pass.

    libvirt-test.py      (prints TAP; exit 77 when libvirtd cannot run here)

Nothing starts libvirtd for us (no systemd), and the test must not touch the host's libvirt:
it starts a libvirtd of its own, as root, in a private mount namespace where /etc/libvirt,
/var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt and /run/libvirt are directories of
the test, and reaches it through a socket in its own directory. QEMU runs as libvirt-qemu,
libvirt's default (as root, said in a note, where the checkout is closed to libvirt-qemu);
in that namespace only, /dev/userfaultfd is a node that group libvirt-qemu may open, which is
the permission docs/libvirt.md tells operators to grant.

Tests:
  convert  blowfish-virt-xml's output validates, and it refuses what the backend cannot do;
           it still makes docs/examples/blowfish-*.xml; blowfish-qemu refuses a NUMA backend missing from QEMU's command line
  plain    a guest without NUMA cells: the backend from <qemu:commandline>; query-blowfish,
           blowfish-set-target and blowfish-restore through `virsh qemu-monitor-command`,
           BLOWFISH_RESTORE_COMPLETED through `virsh qemu-monitor-event`; the workload passes;
           destroy and undefine leave nothing behind
  numa     a guest with two NUMA cells: one backend per cell through blowfish-qemu
  destroy  virsh destroy of a running Blowfish domain stops its QEMU; undefine leaves nothing
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(TOP, "guest"))

from blowfishvm import INITRAMFS, QEMU, VMLINUX, Memnode, guest_missing  # noqa: E402

CONVERT = os.path.join(TOP, "scripts", "blowfish-virt-xml")
EXAMPLES = os.path.join(TOP, "docs", "examples")
# docs/libvirt.md: how docs/examples/blowfish-*.xml were made from the plain examples.
EXAMPLE_OPTIONS = ["--emulator", "/opt/blowfish/build/qemu-system-x86_64",
                   "--wrapper", "/opt/blowfish/build/blowfish-qemu",
                   "--pool", "tcp:10.0.0.2:7780"]
EXAMPLES_MADE = {"blowfish-guest.xml": ("plain-guest.xml", "2G"),
                 "blowfish-numa-guest.xml": ("numa-guest.xml", "25%")}
WRAPPER = os.path.join(TOP, "build", "blowfish-qemu")
MiB = 1 << 20
RAM_MB = 256

LIBVIRTD_CONF = """unix_sock_dir = "{dir}/sock"
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:{dir}/libvirtd.log"
"""
# QEMU as libvirt's default user; cgroup_device_acl is libvirt's default list plus
# /dev/userfaultfd; no AppArmor/SELinux profile (docs/libvirt.md says what one must allow);
# QEMU's output straight to a file, without virtlogd.
QEMU_CONF = """security_driver = "none"
stdio_handler = "file"
cgroup_device_acl = [ "/dev/null", "/dev/full", "/dev/zero", "/dev/random", "/dev/urandom",
                      "/dev/ptmx", "/dev/kvm", "/dev/userfaultfd" ]
"""
NAMESPACE_SETUP = """set -e
R={dir}
mount --bind $R/etc /etc/libvirt
mount --bind $R/lib /var/lib/libvirt
mount --bind $R/cache /var/cache/libvirt
mount --bind $R/log /var/log/libvirt
mkdir -p /run/libvirt
mount -t tmpfs tmpfs /run/libvirt
mount -t tmpfs -o mode=755 tmpfs $R/dev
mknod -m 0660 $R/dev/userfaultfd c 10 257
chgrp libvirt-qemu $R/dev/userfaultfd
mount --bind $R/dev/userfaultfd /dev/userfaultfd
exec libvirtd --config $R/libvirtd.conf
"""

DOMAIN = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{ram}</memory>
  <vcpu>{vcpus}</vcpu>
  {cpu}
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{dir}/vmlinux</kernel>
    <initrd>{dir}/initramfs.cpio</initrd>
    <cmdline>console=ttyS0 quiet bfwork="{steps}"</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <serial type='file'><source path='{dir}/console/{name}.log'/></serial>
    <memballoon model='virtio'/>
  </devices>
  <qemu:commandline xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
    <qemu:arg value='-device'/>
    <qemu:arg value='isa-debug-exit,iobase=0xf4,iosize=4'/>
  </qemu:commandline>
</domain>
"""


class Skip(Exception):
    pass


def note(text):
    print(f"# {text}", flush=True)


def why_not_here():
    if os.geteuid() != 0:
        return "needs root, to start a libvirtd of its own in a private mount namespace"
    for tool in ("libvirtd", "virsh", "virt-xml-validate", "unshare"):
        if not shutil.which(tool):
            return f"{tool} not found (Debian: libvirt-daemon-system, libvirt-clients)"
    if not os.path.exists("/dev/userfaultfd"):
        return "this kernel has no /dev/userfaultfd"
    try:
        import pwd
        pwd.getpwnam("libvirt-qemu")
    except KeyError:
        return "no libvirt-qemu user (Debian's libvirt-daemon-system creates it)"
    if not os.path.exists(WRAPPER):
        return f"{WRAPPER} is missing: run ./scripts/build.sh"
    return guest_missing()


def libvirt_qemu_reaches_checkout():
    """Can libvirt's QEMU user run the patched QEMU and the wrapper from this checkout?"""
    return subprocess.run(["runuser", "-u", "libvirt-qemu", "--", "sh", "-c",
                           f'test -x "{QEMU}" && test -r "{WRAPPER}"']).returncode == 0


class Libvirtd:
    """A libvirtd of the test's own; virsh() talks to it."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="blowfish-libvirt-")
        os.chmod(self.dir, 0o755)   # libvirt-qemu reads the guest's kernel from here
        for sub in ("etc", "lib", "cache", "log", "sock", "dev", "console"):
            os.mkdir(os.path.join(self.dir, sub))
        with open(os.path.join(self.dir, "libvirtd.conf"), "w") as f:
            f.write(LIBVIRTD_CONF.format(dir=self.dir))
        with open(os.path.join(self.dir, "etc", "qemu.conf"), "w") as f:
            f.write(QEMU_CONF)
            if not libvirt_qemu_reaches_checkout():
                note(f"libvirt-qemu cannot run {QEMU} (a directory above it is closed to "
                     "it): QEMU runs as root instead")
                f.write('user = "root"\ngroup = "root"\n')
        # Copies: libvirt changes the owner of a domain's kernel and initrd while it runs.
        shutil.copy(VMLINUX, os.path.join(self.dir, "vmlinux"))
        shutil.copy(INITRAMFS, os.path.join(self.dir, "initramfs.cpio"))
        self.uri = f"qemu:///system?socket={self.dir}/sock/libvirt-sock"
        self.log = open(os.path.join(self.dir, "libvirtd.out"), "w")
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             NAMESPACE_SETUP.format(dir=self.dir)],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while self.virsh("list", check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                output = self.output()
                self.stop()
                raise AssertionError("libvirtd did not start: " + output)
            time.sleep(0.2)

    def output(self):
        with open(os.path.join(self.dir, "libvirtd.out")) as f:
            return f.read()[-2000:]

    def virsh(self, *args, check=True, timeout=60):
        run = subprocess.run(["virsh", "-c", self.uri] + list(args), capture_output=True,
                             text=True, timeout=timeout)
        if check and run.returncode != 0:
            raise AssertionError(f"virsh {' '.join(args)}: {run.stderr.strip()}")
        return run

    def qmp(self, domain, command, **arguments):
        cmd = {"execute": command}
        if arguments:
            cmd["arguments"] = arguments
        reply = json.loads(self.virsh("qemu-monitor-command", domain, json.dumps(cmd)).stdout)
        assert "return" in reply, reply
        return reply["return"]

    def state(self, domain):
        return self.virsh("domstate", domain).stdout.strip()

    def console(self, domain):
        try:
            with open(os.path.join(self.dir, "console", f"{domain}.log")) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def qemu_log(self, domain):
        try:
            with open(os.path.join(self.dir, "log", "qemu", f"{domain}.log")) as f:
                return f.read()[-1500:]
        except FileNotFoundError:
            return ""

    def wait_console(self, domain, needle, timeout=120):
        deadline = time.monotonic() + timeout
        while True:
            stopped = self.state(domain) == "shut off"   # first: then the console is whole
            if needle in self.console(domain):
                return
            if stopped or time.monotonic() > deadline:
                raise AssertionError(f"{domain}: no {needle!r} on the console:\n" +
                                     self.console(domain)[-1500:] + self.qemu_log(domain))
            time.sleep(0.3)

    def stop(self):
        for name in self.virsh("list", "--name", check=False).stdout.split():
            self.virsh("destroy", name, check=False)
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def convert(xml, *options, check=True):
    return subprocess.run([CONVERT] + list(options) + ["-"], input=xml, capture_output=True,
                          text=True, check=check)


def domain_xml(lv, name, steps, cells=0):
    cpu = ""
    if cells:
        cpu = "<cpu><numa>" + "".join(
            f"<cell id='{i}' cpus='{i}' memory='{RAM_MB // cells}' unit='MiB'/>"
            for i in range(cells)) + "</numa></cpu>"
    return DOMAIN.format(name=name, ram=RAM_MB, vcpus=max(cells, 1), cpu=cpu, dir=lv.dir,
                         steps=steps)


def test_convert(lv, node):
    plain = domain_xml(lv, "convert", "pattern 8")
    out = convert(plain, "--pool", "tcp:127.0.0.1:7780", "--local-limit", "64M").stdout
    assert ("memory-backend-blowfish,id=blowfish-ram,size=268435456,"
            "pool=tcp:127.0.0.1:7780,local-limit=67108864") in out, out
    assert "memory-backend=blowfish-ram" in out and 'freePageReporting="on"' in out, out
    assert "isa-debug-exit" in out, "the domain's own qemu:commandline was lost: " + out

    numa = convert(domain_xml(lv, "convert", "pattern 8", cells=2), "--pool",
                   "tcp:127.0.0.1:7780", "--local-limit", "25%").stdout
    assert f"<emulator>{WRAPPER}</emulator>" in numa, numa
    # On the wrapper's path properties are JSON: numbers, sizes and on/off typed as such.
    typed = convert(domain_xml(lv, "convert", "pattern 8", cells=2), "--pool",
                    "tcp:127.0.0.1:7780", "--backend-opt", "readahead=0", "--backend-opt",
                    "dump=off", "--backend-opt", "pool-timeout=2k").stdout
    assert ("&quot;dump&quot;:false,&quot;pool&quot;:&quot;tcp:127.0.0.1:7780&quot;,"
            "&quot;pool-timeout&quot;:2048,&quot;readahead&quot;:0") in typed, typed
    assert ('{&quot;ram-node0&quot;:{&quot;local-limit&quot;:33554432,&quot;pool&quot;:'
            '&quot;tcp:127.0.0.1:7780&quot;}') in numa, numa

    for bad, needle in (
            (plain.replace("<os>", "<memoryBacking><hugepages/></memoryBacking><os>"),
             "<memoryBacking><hugepages> cannot be used"),
            (plain.replace("<os>", "<memoryBacking><access mode='shared'/></memoryBacking>"
                           "<os>"), "shared guest RAM"),
            (out, "already has a memory-backend-blowfish"),
            ("<domain type='qemu'><name>x</name></domain>", "has no <memory>"),
            (plain.replace("</domain>", ""), "blowfish-virt-xml:")):
        run = convert(bad, check=False)
        assert run.returncode != 0 and needle in run.stderr, (needle, run.stderr)
    run = convert(plain, "--pool", "tcp:127.0.0.1:7780", "--local-limit", "1%", check=False)
    assert run.returncode != 0 and "minimum of 4 MiB" in run.stderr, run.stderr

    for made, (source, limit) in EXAMPLES_MADE.items():
        with open(os.path.join(EXAMPLES, source)) as f:
            out = convert(f.read(), *EXAMPLE_OPTIONS, "--local-limit", limit).stdout
        with open(os.path.join(EXAMPLES, made)) as f:
            assert out == f.read(), f"docs/examples/{made} is not what the converter makes now"

    run = subprocess.run([WRAPPER, "-machine", "none", "-display", "none", "-S"],
                         env={**os.environ, "BLOWFISH_BACKENDS": '{"ram-node0": {}}'},
                         capture_output=True, text=True, timeout=30)
    assert run.returncode != 0 and "no -object for ram-node0" in run.stderr, run.stderr


def define_and_start(lv, node, name, steps, cells=0):
    """A Blowfish domain made by the converter, a quarter of its RAM local, booted."""
    xml = convert(domain_xml(lv, name, steps, cells), "--pool", node.address,
                  "--local-limit", "25%").stdout
    path = os.path.join(lv.dir, f"{name}.xml")
    with open(path, "w") as f:
        f.write(xml)
    lv.virsh("define", path)
    lv.virsh("start", name)
    lv.wait_console(name, "bfwork-init: up")


def undefine(lv, name):
    lv.virsh("undefine", name)
    listed = lv.virsh("list", "--all", "--name").stdout.split()
    assert name not in listed, listed


def qemu_running(name):
    return subprocess.run(["pgrep", "-f", f"guest={name},"],
                          capture_output=True).returncode == 0


def run_domain(lv, node, name, cells):
    """Runs the working-set workload in a Blowfish domain, drives it through virsh, and
    checks it passes and goes away cleanly."""
    define_and_start(lv, node, name, "working-set 16 120 30", cells)
    expected = ["blowfish-ram"] if not cells else [f"ram-node{i}" for i in range(cells)]
    infos = lv.qmp(name, "query-blowfish")
    assert sorted(i["id"] for i in infos) == expected, infos
    for info in infos:
        assert info["size"] == RAM_MB * MiB // len(expected), info
        assert info["local-limit"] == info["size"] // 4, info
        assert info["pool-state"] == "connected", info

    # The cold part goes to the pool; each backend stays near its limit.
    deadline = time.monotonic() + 60
    while sum(i["remote"] for i in infos) < 48 * MiB:
        assert time.monotonic() < deadline, f"little went to the pool: {infos}"
        time.sleep(0.5)
        infos = lv.qmp(name, "query-blowfish")
    for info in infos:
        assert info["resident"] <= info["local-limit"] + 2 * MiB, info
    note(f"{name}: " + ", ".join(f"{i['id']} {i['resident'] // MiB} MiB resident, "
                                 f"{i['remote'] // MiB} MiB remote" for i in infos))

    # A lower target through virsh, then everything back, with the event seen by virsh.
    target = expected[-1]
    lv.qmp(name, "blowfish-set-target", id=target, **{"local-limit": 8 * MiB})
    deadline = time.monotonic() + 30
    while True:
        info = next(i for i in lv.qmp(name, "query-blowfish") if i["id"] == target)
        if info["resident"] <= 8 * MiB + 2 * MiB:
            break
        assert time.monotonic() < deadline, f"target 8 MiB not reached: {info}"
        time.sleep(0.3)
    # virsh must register for the event before the restore ends: it gets a few seconds, and
    # on a machine so loaded that it missed the event, another lowering and restore.
    for attempt in range(3):
        events = subprocess.Popen(["virsh", "-c", lv.uri, "qemu-monitor-event", name,
                                   "--event", "BLOWFISH_RESTORE_COMPLETED", "--timeout", "30"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(3)
        if attempt:
            lv.qmp(name, "blowfish-set-target", id=target, **{"local-limit": 8 * MiB})
        lv.qmp(name, "blowfish-restore", id=target)
        out = events.communicate(timeout=60)[0]
        if "event BLOWFISH_RESTORE_COMPLETED" in out:
            break
        note(f"{name}: virsh saw no event (attempt {attempt + 1}): {out.strip()}")
    assert "event BLOWFISH_RESTORE_COMPLETED" in out and f'"id":"{target}"' in out, out
    note(f"{name}: {out.splitlines()[0]}")
    info = next(i for i in lv.qmp(name, "query-blowfish") if i["id"] == target)
    assert info["remote"] == 0, info

    # The guest checks its own data: hot and cold, every byte.
    lv.wait_console(name, "bfwork-init: result", timeout=180)
    console = lv.console(name)
    assert "bfwork-init: result 0" in console, console[-1500:]
    deadline = time.monotonic() + 30
    while lv.state(name) != "shut off":
        assert time.monotonic() < deadline, "the domain did not stop after the guest's exit"
        time.sleep(0.3)
    undefine(lv, name)


def test_plain(lv, node):
    run_domain(lv, node, "blowfish-plain", cells=0)


def test_numa(lv, node):
    run_domain(lv, node, "blowfish-numa", cells=2)


def test_destroy(lv, node):
    """virsh destroy in the middle of a run: QEMU goes, and the domain can be undefined."""
    name = "blowfish-destroy"
    define_and_start(lv, node, name, "working-set 16 120 60")
    assert lv.qmp(name, "query-blowfish")[0]["pool-state"] == "connected"
    assert qemu_running(name)
    lv.virsh("destroy", name)
    assert lv.state(name) == "shut off", lv.state(name)
    assert not qemu_running(name), "QEMU outlived virsh destroy"
    undefine(lv, name)


TESTS = [("convert", test_convert), ("plain", test_plain), ("numa", test_numa),
         ("destroy", test_destroy)]


def main():
    print(f"1..{len(TESTS)}", flush=True)
    why = why_not_here()
    if why:
        for i, (name, _) in enumerate(TESTS, 1):
            print(f"ok {i} {name} # SKIP {why}", flush=True)
        return 77
    failed = 0
    try:
        lv = Libvirtd()
    except AssertionError as e:
        note(str(e))
        for i, (name, _) in enumerate(TESTS, 1):
            print(f"not ok {i} {name}", flush=True)
        return 1
    try:
        with Memnode() as node:
            for i, (name, test) in enumerate(TESTS, 1):
                start = time.monotonic()
                try:
                    test(lv, node)
                except (AssertionError, subprocess.SubprocessError) as e:
                    for line in str(e).splitlines() or ["assertion failed"]:
                        note(line)
                    print(f"not ok {i} {name}", flush=True)
                    failed += 1
                    continue
                note(f"{name}: {time.monotonic() - start:.1f} s")
                print(f"ok {i} {name}", flush=True)
    finally:
        lv.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
