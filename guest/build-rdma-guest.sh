#!/bin/sh
# Builds the Soft-RoCE (rdma_rxe) test guest from Debian's packages into OUTDIR (default
# build/guest-rdma), for guest/rdmavm.py:
#   vmlinux         Debian's generic kernel (the one linux-image-amd64 depends on: the cloud
#                   kernel has no rdma_rxe), uncompressed; microvm boots it directly (PVH)
#   initramfs.cpio  the base initramfs: busybox-static, guest/rdma-init as /init, bf-exit, the
#                   virtio, crc32 and RDMA modules (dependencies resolved from modules.dep), and
#                   iproute2's `rdma` tool with its shared libraries
# rdmavm.py appends a per-run overlay (the programs to run, their libraries, libibverbs' rxe
# provider, /run.sh) to initramfs.cpio. The kernel package is downloaded, unpacked and never
# installed. Cached: rebuilt only when an input changes; a no-op run takes about a second
# (apt-cache's look-up of the kernel package).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$top/build/guest-rdma}" && cd "${1:-$top/build/guest-rdma}" && pwd)
# The modules init loads, in this order after their dependencies. virtio_mmio for microvm,
# virtio_pci for q35; crc32_generic is rxe's ICRC ("crc32" shash, not built in).
MODULES="virtio_mmio virtio_pci virtio_net crc32_generic ib_core ib_uverbs ib_cm iw_cm
rdma_cm rdma_ucm rdma_rxe"

fail() {
    echo "build-rdma-guest: $*" >&2
    exit 1
}

kernel_pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
             awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$kernel_pkg" ] ||
    fail "cannot find the generic kernel: apt has no linux-image-amd64 (run apt-get update?)"
rdma_tool=$(command -v rdma || true)
[ -n "$rdma_tool" ] || fail "no rdma tool on this host: apt-get install iproute2"

# Shared libraries of $1 (absolute paths, as the dynamic loader resolves them here).
libs_of() {
    ldd "$1" | awk '/=> \// { print $3 } /^[ \t]*\/[^ ]*ld-linux/ { print $1 }'
}

# One build at a time (meson and the tests' rdma_guest_missing() may both call this script).
exec 9> "$out/.lock"
flock 9

# shellcheck disable=SC2046 # one word per library path
inputs=$( (echo "$kernel_pkg" "$MODULES"; dpkg-query -W busybox-static;
           cat "$top/guest/build-rdma-guest.sh" "$top/guest/rdma-init" \
               "$top/guest/workloads/bf-exit.c";
           sha256sum "$rdma_tool" $(libs_of "$rdma_tool")) |
          sha256sum | cut -d' ' -f1)
if [ "$(cat "$out/inputs" 2>/dev/null)" = "$inputs" ] && [ -f "$out/initramfs.cpio" ] &&
   [ -f "$out/vmlinux" ]; then
    exit 0
fi
echo "build-rdma-guest: building the RDMA test guest ($kernel_pkg) in $out"

# Writes the ELF kernel inside the compressed bzImage $1 to $2: tries each compression's magic.
extract_vmlinux() {
    for fmt in "xz -dc:$(printf '\3757zXZ')" "lz4 -dc:$(printf '\002!L\030')" \
               "zstd -dcq:$(printf '(\265/\375')" "gzip -dc:$(printf '\037\213\010')"; do
        tool=${fmt%%:*}
        magic=${fmt#*:}
        for offset in $(LC_ALL=C grep -abo "$magic" "$1" | head -n 3 | cut -d: -f1); do
            tail -c +"$((offset + 1))" "$1" | $tool > "$2" 2>/dev/null || true
            if head -c 4 "$2" | grep -q ELF; then
                return 0
            fi
        done
    done
    return 1
}

# The kernel: downloaded once per version, unpacked, decompressed to vmlinux. Only its
# modules and config are kept (about 400 MB).
kdir=$out/$kernel_pkg
if [ ! -f "$kdir/vmlinux" ]; then
    rm -rf "$kdir.tmp"
    mkdir -p "$kdir.tmp"
    (cd "$kdir.tmp" && apt-get download "$kernel_pkg" >download.log 2>&1) || {
        why=$(grep '^E:' "$kdir.tmp/download.log" | head -n 1)
        rm -rf "$kdir.tmp"
        fail "cannot download $kernel_pkg: ${why:-apt-get download failed}"
    }
    (cd "$kdir.tmp" && dpkg-deb -x ./*.deb root) || fail "cannot unpack $kernel_pkg"
    vmlinuz=$(ls "$kdir.tmp"/root/boot/vmlinuz-*)
    extract_vmlinux "$vmlinuz" "$kdir.tmp/vmlinux" ||
        fail "cannot decompress $vmlinuz (no xz, lz4, zstd or gzip payload)"
    mv "$kdir.tmp"/root/boot/config-* "$kdir.tmp/"
    rm -rf "$kdir.tmp"/*.deb "$kdir.tmp/download.log" "$kdir.tmp/root/boot"
    rm -rf "$kdir"
    mv "$kdir.tmp" "$kdir"
fi
kver=$(ls "$kdir/root/lib/modules")
kmods=$kdir/root/lib/modules/$kver
# Debian generates modules.dep when the package is installed: busybox's depmod does it here.
[ -f "$kmods/modules.dep" ] || busybox depmod -b "$kdir/root" "$kver" ||
    fail "busybox depmod failed on $kmods"
ln -sfn "$kernel_pkg/vmlinux" "$out/vmlinux"

# Drops the signature appended to the module $1: the kernel (which does not enforce them)
# would otherwise check each one, about 0.2 s of boot for all of them under TCG.
strip_signature() {
    [ "$(tail -c 28 "$1" | head -c 27)" = "~Module signature appended~" ] || return 0
    # struct module_signature: algo hash id_type signer_len key_id_len pad[3] sig_len (be32)
    # shellcheck disable=SC2046 # one word per byte
    set -- "$1" $(tail -c 40 "$1" | head -c 12 | od -An -tu1)
    sig_len=$(( (${10} << 24) + (${11} << 16) + (${12} << 8) + ${13} ))
    truncate -s $(($(wc -c < "$1") - 40 - sig_len - $5 - $6)) "$1"
}
grep -q '^CONFIG_MODULE_SIG_FORCE=y' "$kdir"/config-* && strip=: || strip=strip_signature

# The modules, each after its dependencies (depth first over modules.dep).
order=$(awk -v want="$MODULES" '
    function name(path,   n) {
        n = path; sub(/.*\//, "", n); sub(/\.ko(\.(xz|zst|gz))?$/, "", n)
        gsub(/-/, "_", n); return n
    }
    function visit(m,   i, n, d) {
        if (m in done) return
        if (!(m in path)) { print "unknown module " m > "/dev/stderr"; bad = 1; return }
        done[m] = 1
        n = split(deps[m], d, " ")
        for (i = 1; i <= n; i++) visit(name(d[i]))
        print path[m]
    }
    FILENAME ~ /modules.builtin$/ { builtin[name($1)] = 1; next }
    { p = $1; sub(/:$/, "", p); m = name(p); path[m] = p
      $1 = ""; deps[m] = $0 }
    END {
        n = split(want, w, /[ \n]+/)
        for (i = 1; i <= n; i++) if (w[i] != "" && !(w[i] in builtin)) visit(w[i])
        exit bad
    }' "$kmods/modules.builtin" "$kmods/modules.dep") ||
    fail "cannot resolve the modules ($MODULES) in $kmods/modules.dep"

# The initramfs.
root=$out/initramfs
rm -rf "$root"
mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin" "$root/proc" "$root/sys" \
         "$root/dev" "$root/tmp" "$root/run" "$root/etc" "$root/lib/modules/$kver"
cp /bin/busybox "$root/bin/busybox"
cp "$top/guest/rdma-init" "$root/init"
chmod 755 "$root/init"
gcc -static -O2 -Wall -o "$root/bin/bf-exit" "$top/guest/workloads/bf-exit.c"
: > "$root/lib/modules/load-order"
for p in $order; do
    mkdir -p "$root/lib/modules/$kver/$(dirname "$p")"
    case $p in
        *.ko.xz) xz -dc "$kmods/$p" > "$root/lib/modules/$kver/${p%.xz}"; p=${p%.xz} ;;
        *.ko.zst) zstd -dcq "$kmods/$p" > "$root/lib/modules/$kver/${p%.zst}"; p=${p%.zst} ;;
        *.ko.gz) gzip -dc "$kmods/$p" > "$root/lib/modules/$kver/${p%.gz}"; p=${p%.gz} ;;
        *) cp "$kmods/$p" "$root/lib/modules/$kver/$p" ;;
    esac
    $strip "$root/lib/modules/$kver/$p"
    echo "$p" >> "$root/lib/modules/load-order"
done
# modules.dep and modules.alias for these modules only: the kernel's request_module() calls
# /sbin/modprobe (busybox), which then finds them.
cp "$kmods/modules.builtin" "$kmods/modules.order" "$root/lib/modules/$kver/"
busybox depmod -b "$root" "$kver" || fail "busybox depmod failed on the initramfs"

# iproute2's rdma tool (creates rxe0), with its libraries at the paths the loader searches.
cp "$rdma_tool" "$root/usr/bin/rdma"
for lib in $(libs_of "$rdma_tool"); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
cat > "$root/etc/hosts" <<'EOF'
127.0.0.1 localhost
10.0.2.15 rdma-guest
EOF
echo "hosts: files" > "$root/etc/nsswitch.conf"
echo "root:x:0:0:root:/root:/bin/sh" > "$root/etc/passwd"
echo "root:x:0:" > "$root/etc/group"

(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) > "$out/initramfs.cpio.tmp"
mv "$out/initramfs.cpio.tmp" "$out/initramfs.cpio"
echo "$inputs" > "$out/inputs"
echo "build-rdma-guest: $out/vmlinux ($kver), $out/initramfs.cpio" \
     "($(($(wc -c < "$out/initramfs.cpio") / 1024)) KiB, $(wc -l < "$root/lib/modules/load-order") modules)"
