#!/bin/sh
# Links Blowfish's own files into a QEMU source tree (the patches in qemu-patches/ only edit
# QEMU's files; these links bring ours in):
#   blowfish/backend          -> backend/   the engine
#   blowfish/hw               -> hw/        the QOM object, QMP/HMP handlers, trace-events
#   qapi/blowfish.json        -> qapi/blowfish.json
#   tests/qtest/blowfish-test.c -> tests/qtest/blowfish-test.c
#   tests/qtest/blowfish-memnode-process.c, memnode-process.h -> tests/common/ (its helper)
# With --copy, copies instead (scripts/export-patches.sh uses that to commit them).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
mode=link
if [ "${1:-}" = --copy ]; then
    mode=copy
    shift
fi
src=$1

place() {   # place OURS THEIRS
    if [ $mode = link ] && [ "$(readlink "$src/$2" || true)" = "$top/$1" ]; then
        return
    fi
    rm -rf "${src:?}/$2"
    mkdir -p "$(dirname "$src/$2")"
    if [ $mode = copy ]; then
        cp -r "$top/$1" "$src/$2"
    else
        ln -s "$top/$1" "$src/$2"
    fi
}

place backend blowfish/backend
place hw blowfish/hw
place qapi/blowfish.json qapi/blowfish.json
place tests/qtest/blowfish-test.c tests/qtest/blowfish-test.c
place tests/common/memnode-process.c tests/qtest/blowfish-memnode-process.c
place tests/common/memnode-process.h tests/qtest/memnode-process.h
