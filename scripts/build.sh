#!/bin/sh
# README command 1: installs the build dependencies (Debian 12), builds everything into build/
# (the engine and its tests, the patched qemu-system-x86_64 and its qtests), then runs a short
# demonstration. Re-running is incremental. --no-demo skips the demonstration.
set -eu

cd "$(dirname "$0")/.."
./scripts/install-deps.sh
[ -f build/build.ninja ] || meson setup build
ninja -C build
[ "${1:-}" = --no-demo ] || /usr/bin/python3 scripts/demo.py
