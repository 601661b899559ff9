#!/usr/bin/python3
"""Writes the fuzzers' seed corpus (tests/fuzz/fuzz-*.c) into DIR/node and DIR/replies:
well-formed conversations and replies of every kind, built from bf-proto.h's layout, so that
the fuzzers start from messages the parsers accept.

    make-seeds.py DIR
"""

import os
import struct
import sys

MAGIC, VERSION, PAGE = 0x48534642, 1, 4096
(HELLO, HELLO_OK, WRITE, WRITE_OK, READ, READ_OK, FREE, FREE_OK, BYE, BYE_OK, ERROR, STATS,
 STATS_OK, GRANT, GRANT_OK, COMMIT, COMMIT_OK, RELEASE, RELEASE_OK, AUTH, AUTH_CHALLENGE,
 AUTH_PROOF, AUTH_OK) = range(1, 24)


def msg(kind, payload=b"", tag=0):
    return struct.pack("<IHHII", MAGIC, VERSION, kind, len(payload), tag) + payload


def hello(pages=64, name=b"mem0"):
    return msg(HELLO, bytes([0x5a] * 16) + struct.pack("<QIHH", pages, PAGE, len(name), 0) +
               name)


def pages(kind, numbers, data=False):
    body = struct.pack("<II", len(numbers), 0) + b"".join(struct.pack("<Q", n)
                                                          for n in numbers)
    if data:
        body += b"".join(bytes([n & 0xff]) * PAGE for n in numbers)
    return msg(kind, body)


def auth(name=b"vm1"):
    return msg(AUTH, bytes(range(32)) + struct.pack("<HH", len(name), 0) + name)


NODE = {
    "session": hello() + pages(WRITE, [0, 1, 63], data=True) + pages(READ, [1, 0]) +
               pages(FREE, [63]) + msg(STATS) + msg(BYE),
    "reconnect": hello() + pages(READ, [5]) + msg(STATS),
    "auth": auth() + msg(AUTH_PROOF, bytes(32)) + hello(),
    "auth-unknown": auth(b"nobody") + msg(AUTH_PROOF, bytes(32)),
    "before-hello": pages(WRITE, [0], data=True) + hello(pages=1) + pages(READ, [0]),
    "rdma-only": hello() + msg(GRANT, struct.pack("<QII", 0, 1, 0)) +
                 pages(COMMIT, [0]) + pages(RELEASE, [0]),
}
REPLIES = {
    "hello-ok": msg(HELLO_OK, struct.pack("<QQ", 3, 1000)),
    "write-ok": msg(WRITE_OK, struct.pack("<II", 1, 0)),
    "read-ok": msg(READ_OK, struct.pack("<II", 1, 0) + bytes(PAGE)),
    "stats-ok": msg(STATS_OK, struct.pack("<QQQ", 1, 2, 3)),
    "grant-ok": msg(GRANT_OK, struct.pack("<QQII", 1, 0x1000, 7, 0)),
    "release-ok": pages(RELEASE_OK, [0, 1]),
    "challenge": msg(AUTH_CHALLENGE, bytes(64)),
    "error": msg(ERROR, struct.pack("<IHH", 5, 21, 0) + b"authentication failed"),
}


def main():
    top = sys.argv[1]
    for sub, seeds in (("node", NODE), ("replies", REPLIES)):
        os.makedirs(os.path.join(top, sub), exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(top, sub, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
