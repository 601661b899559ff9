#!/bin/sh
# Builds the test guest from Debian's packages into OUTDIR (default build/guest):
#   vmlinux         the Debian cloud kernel, uncompressed (microvm boots it directly, PVH)
#   initramfs.cpio  busybox-static, guest/init, the virtio modules, our static workloads
# The kernel package is downloaded, unpacked and never installed. Cached: rebuilt only when
# an input changes (the kernel version, guest/, busybox); a no-op run takes well under a second.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$top/build/guest}" && cd "${1:-$top/build/guest}" && pwd)
MODULES="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
virtio_mmio virtio_balloon"

kernel_pkg=$(apt-cache depends linux-image-cloud-amd64 |
             awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$kernel_pkg" ] || { echo "build-guest: no linux-image-cloud-amd64 in apt" >&2; exit 1; }
inputs=$( (echo "$kernel_pkg" "$MODULES"; dpkg-query -W busybox-static;
           cat "$top/guest/build-guest.sh" "$top/guest/init" "$top"/guest/workloads/*.[ch]) |
          sha256sum | cut -d' ' -f1)
if [ "$(cat "$out/inputs" 2>/dev/null)" = "$inputs" ] && [ -f "$out/initramfs.cpio" ]; then
    exit 0
fi
echo "build-guest: building the test guest ($kernel_pkg) in $out"

# The kernel: downloaded once per version, unpacked, decompressed to vmlinux (LZ4 payload).
if [ ! -f "$out/$kernel_pkg/vmlinux" ]; then
    rm -rf "$out/$kernel_pkg.tmp"
    mkdir -p "$out/$kernel_pkg.tmp"
    (cd "$out/$kernel_pkg.tmp" &&
     apt-get download "$kernel_pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' &&
     dpkg-deb -x ./*.deb root)
    vmlinuz=$(ls "$out/$kernel_pkg.tmp"/root/boot/vmlinuz-*)
    offset=$(grep -abo "$(printf '\002!L\030')" "$vmlinuz" | head -n 1 | cut -d: -f1)
    tail -c +"$((offset + 1))" "$vmlinuz" | lz4 -dc > "$out/$kernel_pkg.tmp/vmlinux" 2>/dev/null || true
    head -c 4 "$out/$kernel_pkg.tmp/vmlinux" | grep -q ELF ||
        { echo "build-guest: cannot decompress $vmlinuz" >&2; exit 1; }
    rm -f "$out/$kernel_pkg.tmp"/*.deb
    rm -rf "$out/$kernel_pkg"
    mv "$out/$kernel_pkg.tmp" "$out/$kernel_pkg"
fi
ln -sf "$kernel_pkg/vmlinux" "$out/vmlinux"

# The initramfs.
root=$out/initramfs
rm -rf "$root"
mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/lib/modules"
cp /bin/busybox "$root/bin/busybox"
cp "$top/guest/init" "$root/init"
chmod 755 "$root/init"
for m in $MODULES; do
    cp "$(find "$out/$kernel_pkg/root/lib/modules" -name "$m.ko" | head -n 1)" \
       "$root/lib/modules/"
    echo "$m" >> "$root/lib/modules/load-order"
done
for w in bfwork bf-exit bf-graph bf-scan; do
    gcc -static -O2 -Wall -pthread -o "$root/bin/$w" "$top/guest/workloads/$w.c"
done
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) > "$out/initramfs.cpio.tmp"
mv "$out/initramfs.cpio.tmp" "$out/initramfs.cpio"
echo "$inputs" > "$out/inputs"
echo "build-guest: $out/vmlinux, $out/initramfs.cpio"
