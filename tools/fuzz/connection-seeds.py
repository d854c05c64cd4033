#!/usr/bin/env python3
"""Writes the hand-made seeds of the http-connection fuzz target (tests/IoMux.Fuzz/ConnectionTarget.cs) into
tests/IoMux.Fuzz/corpus/http-connection (seeds) and regressions/http-connection (the four bugs of issue 19).

Input format (ConnectionTarget.BuildRequest and ConnectionRun.Script read it; past the end every byte is 0):
  config   bit 0: handler server (else static files); bits 1-2: server SO_SNDBUF default / minimum / 16 KiB / 64 KiB
  count    1 + count % 6 requests, each:
    shape  bits 0-1 GET HEAD POST DELETE; bit 2 HTTP/1.0; bits 3-5 Connection value (see ConnectionValues);
           bit 6 a Range field; bit 7 one field with a fuzzed value
    target index into KnownTargets (len(KnownTargets): a path built from the next bytes)
    [POST: body length index, bit 7 Expect: 100-continue] [Range: index] [free field: name index, length, bytes]
  ops      pairs (op, argument): op % 8 = 0/1 write argument bytes (0: all), 2/3 read (argument < 16: argument + 1
           bytes, else argument * 64), 4 one loop iteration, 5 pause argument % 41 ms, 6 read all, 7 half-close
           (when argument % 4 == 0)
"""
import os, sys

TARGETS = ["/", "/a.txt", "/big.bin", "/sub", "/sub/", "//evil/..%2fsub", "/\\evil/../sub", "/missing", "/sub?x=1",
           "/sub/deep", "/h/text", "/h/big", "/h/stream/0", "/h/stream/5000", "/h/stream/70000", "/h/length/1",
           "/h/length/5000", "/h/echo", "/h/status/204", "/h/status/304", "/h/file", "/h/throw", "//evil/../sub",
           "/evil/..%2fsub", "/%2fevil/../sub", "/.%2e/sub", "/huge.bin"]
GET, HEAD, POST, DELETE = 0, 1, 2, 3
HTTP10 = 4
NONE, CLOSE, KEEP, KEEP_CLOSE, UPPER_CLOSE, UPGRADE, CLOSE_KEEP, X_CLOSE = range(8)
RANGE, FREE = 0x40, 0x80
STATIC, HANDLER = 0, 1
SNDBUF_MIN, SNDBUF_16K = 2, 4


def req(method=GET, target="/", conn=NONE, http10=False, extra=b""):
    shape = method | (HTTP10 if http10 else 0) | (conn << 3)
    if isinstance(extra, tuple):
        shape |= extra[0]
        extra = extra[1]
    return bytes([shape, TARGETS.index(target)]) + extra


def seed(config, requests, ops=b""):
    return bytes([config, len(requests) - 1]) + b"".join(requests) + ops


def write(n=0): return bytes([0, n])
def read(n): return bytes([2, n])
def step(): return bytes([4, 0])
def pause(ms): return bytes([5, ms])
def read_all(): return bytes([6, 0])
def half_close(): return bytes([7, 0])


seeds = {
    "get-root": seed(STATIC, [req()]),
    "keep-alive-pipeline": seed(STATIC, [req(target="/a.txt"), req(HEAD, "/big.bin"), req(target="/sub/"), req(target="/missing")]),
    "get-big-small-buffer": seed(STATIC | SNDBUF_MIN, [req(target="/big.bin")], (write() + read(64)) * 4),
    "redirect-with-query": seed(STATIC, [req(target="/sub?x=1"), req(target="/sub")]),
    "range": seed(STATIC, [req(target="/big.bin", extra=(RANGE, b"\x00")), req(target="/a.txt", extra=(RANGE, b"\x03"))]),
    "delete-405": seed(STATIC, [req(DELETE, "/a.txt"), req(target="/a.txt")]),
    "post-static-405": seed(STATIC, [req(POST, "/a.txt", extra=b"\x02")]),
    "trickled-head": seed(STATIC, [req(target="/a.txt")], write(1) * 12 + write() + read_all()),
    "head-in-two-reads": seed(STATIC, [req(target="/sub/")], write(9) + pause(20) + write() + read_all()),
    "slow-trickle-408": seed(STATIC, [req(target="/a.txt")], (write(1) + pause(30)) * 5),
    "half-close": seed(STATIC, [req(target="/a.txt"), req(target="/")], write() + half_close() + read_all()),
    "http10-keep-alive": seed(STATIC, [req(target="/a.txt", conn=KEEP, http10=True), req(target="/a.txt", conn=KEEP, http10=True)]),
    "handler-text": seed(HANDLER, [req(target="/h/text"), req(target="/h/big"), req(HEAD, "/h/big")]),
    "handler-chunked": seed(HANDLER | SNDBUF_MIN, [req(target="/h/stream/5000"), req(target="/h/stream/0")], (write() + read(40)) * 3),
    "handler-length": seed(HANDLER, [req(target="/h/length/5000"), req(target="/h/length/1")]),
    "handler-echo-continue": seed(HANDLER, [req(POST, "/h/echo", extra=b"\x83"), req(target="/h/text")], write(60) + step() + read_all() + write()),
    "handler-413": seed(HANDLER, [req(POST, "/h/echo", extra=b"\x05")]),
    "handler-status": seed(HANDLER, [req(target="/h/status/204"), req(target="/h/status/304"), req(HEAD, "/h/stream/5000")]),
    "handler-file": seed(HANDLER | SNDBUF_16K, [req(target="/h/file")], (write() + read(100)) * 4),
    "handler-throw": seed(HANDLER, [req(target="/h/throw")]),
    "free-field": seed(STATIC, [req(target="/a.txt", extra=(FREE, bytes([0, 5]) + b"hello")), req(target="/")]),
    "fuzzed-path": seed(STATIC, [bytes([0, len(TARGETS), 1, 6]) + b"\x02\x03\x04\x05\x06\x07"]),
}
regressions = {
    # 1. close-delimited / Connection: close responses needing more than one write hang until the keep-alive timeout
    "close-after-multi-write-response": seed(STATIC | SNDBUF_MIN, [req(target="/big.bin", conn=CLOSE)]),
    "http10-close-delimited-stream": seed(HANDLER | SNDBUF_MIN, [req(target="/h/stream/70000", http10=True)]),
    # 2. open redirect
    "redirect-protocol-relative": seed(STATIC, [req(target="//evil/..%2fsub")]),
    "redirect-backslash": seed(STATIC, [req(target="/\\evil/../sub")]),
    # 3. a request pipelined after Connection: close is served (and says keep-alive); a 405 to close says keep-alive
    "pipelined-after-close": seed(STATIC, [req(target="/", conn=CLOSE), req(target="/a.txt")]),
    "405-to-close-says-keep-alive": seed(STATIC, [req(DELETE, "/", conn=CLOSE)]),
    # found by the target after the fixes: "close" before "keep-alive" in one field was answered keep-alive, kept open
    "close-then-keep-alive-option": seed(STATIC, [req(target="/a.txt", conn=CLOSE_KEEP), req(target="/")]),
    # 4. the deadline ignores a response in flight: a slow reader that keeps reading is cut
    "slow-reader-cut-at-keep-alive": seed(HANDLER | SNDBUF_MIN, [req(target="/h/stream/70000")], write() + (read(64) + pause(30)) * 24),
    "slow-reader-cut-at-header-timeout": seed(STATIC | SNDBUF_MIN, [req(target="/huge.bin")], write(10) + step() + write() + (read_all() + pause(30)) * 20),
}

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "IoMux.Fuzz")
for kind, table in (("corpus", seeds), ("regressions", regressions)):
    folder = os.path.join(root, kind, "http-connection")
    os.makedirs(folder, exist_ok=True)
    for name, data in table.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
print(f"{len(seeds)} seeds, {len(regressions)} regressions")
