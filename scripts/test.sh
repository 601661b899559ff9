#!/bin/sh
# README command 2: builds what is missing (see build.sh), then runs every test:
# the engine's unit tests, the qtests against the patched QEMU, and QEMU's own qmp-cmd-test
# and test-hmp. Extra arguments go to `meson test` (e.g. --suite unit, or a test name).
set -eu

cd "$(dirname "$0")/.."
./scripts/build.sh --no-demo
meson test -C build --print-errorlogs "$@"
