#!/bin/sh
# Builds the patched QEMU: fetches QEMU 10.0.x from Debian's source package (once), applies
# qemu-patches/ (again only when the series changed), links our sources into the tree,
# configures a minimal x86_64-softmmu (again only when the options changed) and runs ninja
# for qemu-system-x86_64 and the qtests we run. Incremental: a no-op run takes seconds.
#
# Usage: build-qemu.sh [BUILDDIR]   (default: build; QEMU goes to BUILDDIR/qemu/{src,build}
# and BUILDDIR/qemu-system-x86_64 links to the binary)
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
builddir=$(mkdir -p "${1:-$top/build}" && cd "${1:-$top/build}" && pwd)
src=$builddir/qemu/src
obj=$builddir/qemu/build

QEMU_TARGETS="qemu-system-x86_64 tests/qtest/blowfish-test tests/qtest/qmp-cmd-test
tests/qtest/test-hmp contrib/vhost-user-blk/vhost-user-blk"
# Firmware from Debian's seabios, qemu-system-data and ipxe-qemu: found without -L.
FIRMWARE_DIRS="/usr/share/qemu /usr/share/seabios /usr/lib/ipxe/qemu"
QEMU_CONFIGURE="--python=/usr/bin/python3 --target-list=x86_64-softmmu --disable-docs
--disable-download --disable-install-blobs --disable-werror --enable-kvm --enable-tcg
--enable-slirp --firmwarepath=$(echo $FIRMWARE_DIRS | tr ' ' :)"

export GIT_COMMITTER_NAME=Blowfish GIT_COMMITTER_EMAIL=blowfish@localhost
git_q() {
    git -C "$src" -c advice.detachedHead=false "$@"
}

"$top/scripts/fetch-qemu.sh" "$src"

# The patch series: re-applied on the pristine tree when it changed. git rewrites only the
# files that differ, so QEMU's own build stays incremental.
series=$(cat "$top"/qemu-patches/*.patch | sha256sum | cut -d' ' -f1)
if [ "$(cat "$src/.blowfish-series" 2>/dev/null)" != "$series" ]; then
    echo "build-qemu: applying qemu-patches/ to QEMU $(cat "$src/VERSION")"
    git_q am --abort >/dev/null 2>&1 || true
    git_q checkout -q -f debian-base
    git_q clean -q -fd -e .blowfish-series
    git_q am -q "$top"/qemu-patches/*.patch
    echo "$series" > "$src/.blowfish-series"
fi

# Our own files: linked, not copied, so that editing them rebuilds QEMU incrementally.
"$top/scripts/link-sources.sh" "$src"

configure_args=$(echo $QEMU_CONFIGURE)
if [ ! -f "$obj/build.ninja" ] ||
   [ "$(cat "$obj/.blowfish-configure" 2>/dev/null)" != "$configure_args" ]; then
    rm -rf "$obj"
    mkdir -p "$obj"
    echo "build-qemu: configuring QEMU in $obj"
    (cd "$obj" && "$src/configure" $configure_args > configure.log 2>&1) || {
        tail -n 30 "$obj/configure.log" >&2
        exit 1
    }
    echo "$configure_args" > "$obj/.blowfish-configure"
fi

ninja -C "$obj" $QEMU_TARGETS
# Run from the build tree, QEMU looks for its firmware path under qemu-bundle/: point there.
for dir in $FIRMWARE_DIRS; do
    mkdir -p "$obj/qemu-bundle$(dirname "$dir")"
    ln -sfn "$dir" "$obj/qemu-bundle$dir"
done
ln -sf qemu/build/qemu-system-x86_64 "$builddir/qemu-system-x86_64"
