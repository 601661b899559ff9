#!/bin/sh
# For developers: writes the commits made on top of debian-base in build/qemu/src back into
# qemu-patches/ (edit QEMU's files there, commit, then run this).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
src=$top/build/qemu/src
rm -f "$top"/qemu-patches/*.patch
git -C "$src" format-patch -q --zero-commit -o "$top/qemu-patches" debian-base..HEAD
cat "$top"/qemu-patches/*.patch | sha256sum | cut -d' ' -f1 > "$src/.blowfish-series"
ls "$top/qemu-patches"
