#!/bin/sh
# Runs the libFuzzer targets of tests/fuzz/ (the memory node's message handling, the client's
# reply parsers) for SECONDS each (default 60), built by clang with ASan and UBSan in
# build-fuzz/, from the seeds of tests/fuzz/make-seeds.py plus what earlier runs kept in
# build-fuzz/corpus/. Exits non-zero on the first crash, leak, hang or sanitizer report, and
# leaves the input that caused it in build-fuzz/ (crash-*, leak-*, timeout-*).
# Exit 77 (skip): no clang or libFuzzer here (Debian: clang, libclang-rt-14-dev).
set -eu

cd "$(dirname "$0")/.."
seconds=${1:-60}
probe=$(mktemp)
if ! printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' |
     clang -fsanitize=fuzzer -x c - -o "$probe" >/dev/null 2>&1; then
    rm -f "$probe"
    echo "fuzz: clang and libFuzzer are needed (Debian: clang, libclang-rt-14-dev)"
    exit 77
fi
rm -f "$probe"
if [ ! -f build-fuzz/build.ninja ]; then
    CC=clang meson setup build-fuzz -Db_sanitize=address,undefined -Db_lundef=false \
        -Dc_args=-fsanitize=fuzzer-no-link >/dev/null
fi
ninja -C build-fuzz tests/fuzz/fuzz-node tests/fuzz/fuzz-replies
/usr/bin/python3 tests/fuzz/make-seeds.py build-fuzz/seeds
for target in node replies; do
    mkdir -p "build-fuzz/corpus/$target"
    echo "fuzz: fuzz-$target for $seconds s"
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        "build-fuzz/tests/fuzz/fuzz-$target" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=4096 -artifact_prefix=build-fuzz/ -print_final_stats=1 \
        "build-fuzz/corpus/$target" "build-fuzz/seeds/$target"
done
