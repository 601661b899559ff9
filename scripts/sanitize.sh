#!/bin/sh
# The unit tests of the engine and the memory node, built by gcc with AddressSanitizer (and
# its leak checker) and UndefinedBehaviorSanitizer in build-asan/, run there: any report
# fails them. QEMU is not built there. Extra arguments go to `meson test`.
set -eu

cd "$(dirname "$0")/.."
if [ ! -f build-asan/build.ninja ]; then
    meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
fi
targets=memnode/blowfish-memnode
for t in auth channel endpoint engine extents proto readahead robust store tls; do
    targets="$targets tests/unit/test-$t"
done
# shellcheck disable=SC2086
ninja -C build-asan $targets
meson test -C build-asan --no-rebuild --print-errorlogs --suite unit "$@"
