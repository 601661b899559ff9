#!/bin/sh
# Builds the benchmark guest's initramfs: the test guest's (guest/build-guest.sh, built first)
# with a second archive appended, which the kernel unpacks over it: Debian's redis-server
# (from redis-tools, with the libraries it links, from Debian's packages: unpacked, never
# installed on this host) and bf-kv, the key-value workload that drives it. Cached: rebuilt
# only when its inputs change. bench/run.py runs it (the kv application).
#
# Usage: build-bench-guest.sh [OUTDIR]   (default build/guest-bench; the test guest is read
# from OUTDIR/../guest)
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$top/build/guest-bench}" && cd "${1:-$top/build/guest-bench}" && pwd)
base=$out/../guest/initramfs.cpio
PACKAGES="redis-tools libjemalloc2 liblzf1"

[ -f "$base" ] || { echo "build-bench-guest: $base is missing: run ./scripts/build.sh" >&2; exit 1; }
inputs=$( (cat "$0" "$top"/guest/workloads/bf-kv.c "$top"/guest/workloads/bf-workload.h "$base";
           apt-cache policy $PACKAGES) |
          sha256sum | cut -d' ' -f1)
if [ "$(cat "$out/inputs" 2>/dev/null)" = "$inputs" ] && [ -f "$out/initramfs.cpio" ]; then
    exit 0
fi
echo "build-bench-guest: adding redis-server and bf-kv to the test guest in $out"

rm -rf "$out/debs" "$out/packages" "$out/extra"
mkdir -p "$out/debs" "$out/packages" "$out/extra/bin" "$out/extra/lib64" \
         "$out/extra/lib/x86_64-linux-gnu"
(cd "$out/debs" && apt-get download $PACKAGES 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
for deb in "$out"/debs/*.deb; do
    dpkg-deb -x "$deb" "$out/packages"
done
cp "$out/packages/usr/bin/redis-check-rdb" "$out/extra/bin/redis-server"
# Its libraries: Debian's packages first, then this host's (the same Debian release).
LD_LIBRARY_PATH=$out/packages/usr/lib/x86_64-linux-gnu ldd "$out/extra/bin/redis-server" |
    awk '/=> \// { print $3 }' | while read -r lib; do
        cp -L "$lib" "$out/extra/lib/x86_64-linux-gnu/"
    done
cp -L /lib64/ld-linux-x86-64.so.2 "$out/extra/lib64/"
gcc -static -O2 -Wall -o "$out/extra/bin/bf-kv" "$top/guest/workloads/bf-kv.c" -lm

(cd "$out/extra" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) > "$out/extra.cpio"
cat "$base" "$out/extra.cpio" > "$out/initramfs.cpio.tmp"
mv "$out/initramfs.cpio.tmp" "$out/initramfs.cpio"
ln -sf ../guest/vmlinux "$out/vmlinux"
echo "$inputs" > "$out/inputs"
echo "build-bench-guest: $out/initramfs.cpio"
