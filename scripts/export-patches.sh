#!/bin/sh
# Exports Blowfish as one patch series for people who carry their own QEMU 10.0.x tree:
# first a patch that adds our files where scripts/link-sources.sh links them, then
# qemu-patches/. Checks that the series applies with `git am` to upstream QEMU (Debian's
# orig tarball, which is upstream without its firmware blobs).
#
# Usage: export-patches.sh [OUTDIR]   (default: build/blowfish-qemu-series)
# Needs the QEMU source fetched by scripts/build-qemu.sh (or scripts/fetch-qemu.sh).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$top/build/blowfish-qemu-series}
src=$top/build/qemu/src
[ -d "$src/.git" ] || "$top/scripts/fetch-qemu.sh" "$src"

tmp=$(mktemp -d)
trap 'git -C "$src" worktree remove --force "$tmp/tree" 2>/dev/null; rm -rf "$tmp"' EXIT
export GIT_AUTHOR_NAME=Blowfish GIT_AUTHOR_EMAIL=blowfish@localhost
export GIT_COMMITTER_NAME=Blowfish GIT_COMMITTER_EMAIL=blowfish@localhost

git -C "$src" worktree add -q --detach "$tmp/tree" debian-base
"$top/scripts/link-sources.sh" --copy "$tmp/tree"
git -C "$tmp/tree" add -f blowfish qapi/blowfish.json tests/qtest/blowfish-test.c \
    tests/qtest/blowfish-memnode-process.c tests/qtest/memnode-process.h
git -C "$tmp/tree" commit -q \
    -m "blowfish: add the Blowfish engine, QEMU glue, QAPI module and qtest" \
    -m "memory-backend-blowfish keeps part of guest RAM in a remote memory pool.
This adds its sources; the following patches wire them into QEMU's build."
git -C "$tmp/tree" am -q "$top"/qemu-patches/*.patch
rm -rf "$out"
git -C "$tmp/tree" format-patch -q --zero-commit -o "$out" debian-base..HEAD

# Upstream check: the series must apply to the orig tarball with git am.
mkdir "$tmp/upstream"
tar -xf "$(dirname "$src")"/download/qemu_*.orig.tar.xz -C "$tmp/upstream" --strip-components=1
git -C "$tmp/upstream" init -q
git -C "$tmp/upstream" add -A -f
git -C "$tmp/upstream" commit -q -m upstream
git -C "$tmp/upstream" am -q "$out"/*.patch
echo "export-patches: $(ls "$out" | wc -l) patches in $out; they apply with git am to" \
     "upstream QEMU $(cat "$tmp/upstream/VERSION")"
