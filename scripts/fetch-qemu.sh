#!/bin/sh
# Fetches QEMU 10.0.x from Debian's trixie source package into SRCDIR (default
# build/qemu/src), with Debian's own patches applied, and makes it a git repository whose
# first commit is the pristine Debian tree, tagged "debian-base". Our patch series is applied
# on top of that tag by scripts/build-qemu.sh. Does nothing if SRCDIR already exists.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
srcdir=${1:-$top/build/qemu/src}
[ -d "$srcdir/.git" ] && exit 0

dl=$(dirname "$srcdir")/download
rm -rf "$dl" "$srcdir.tmp"
mkdir -p "$dl"
echo "fetch-qemu: downloading Debian's qemu source package (trixie) into $dl"
(cd "$dl" && apt-get source --download-only qemu/trixie 2>&1 | grep -v '^W: Download is performed unsandboxed')
dsc=$(ls "$dl"/qemu_*.dsc)
dpkg-source --no-check -x "$dsc" "$srcdir.tmp" >/dev/null

version=$(cat "$srcdir.tmp/VERSION")
case "$version" in
10.0.*) ;;
*) echo "fetch-qemu: Debian's trixie has QEMU $version, Blowfish needs 10.0.x" >&2; exit 1 ;;
esac

git -C "$srcdir.tmp" init -q
git -C "$srcdir.tmp" add -A -f   # -f: QEMU ignores its checked-out subprojects
GIT_AUTHOR_NAME=Blowfish GIT_AUTHOR_EMAIL=blowfish@localhost \
GIT_COMMITTER_NAME=Blowfish GIT_COMMITTER_EMAIL=blowfish@localhost \
    git -C "$srcdir.tmp" commit -q -m "QEMU $version from Debian ($(basename "$dsc" .dsc))"
git -C "$srcdir.tmp" tag debian-base
mv "$srcdir.tmp" "$srcdir"
echo "fetch-qemu: QEMU $version ready in $srcdir"
