#!/usr/bin/env python3
"""Time from connect() to the first byte of an HTTP response, in milliseconds: against a proxy that socket
activation starts on this very connection, this is the proxy's start-up as a client sees it.
  first_byte.py HOST PORT            prints the milliseconds
  first_byte.py HOST PORT --stamps   prints them, then the CLOCK_MONOTONIC seconds (the clock of perf record -k
                                     CLOCK_MONOTONIC, so bench/startup-phases.sh can place them among a tracer's
                                     events) of: start, connect() returned, request sent, first byte"""
import socket
import sys
import time

host, port = sys.argv[1], int(sys.argv[2])
# The address is resolved before the clock starts: the first resolution in a process imports the idna codec
# (encodings.idna, stringprep, unicodedata) even for "127.0.0.1", 2.5 ms on 2026-12-07's machine that was counted in
# every first byte measured before (bench/startup-phases.sh showed it as the client's own connect()).
family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
start = time.monotonic()
with socket.socket(family, kind, proto) as s:
    s.settimeout(30)
    s.connect(address)
    connected = time.monotonic()
    s.sendall(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
    sent = time.monotonic()
    first = s.recv(1)
    done = time.monotonic()
    if not first:
        sys.exit("no byte came back")
elapsed = done - start
if sys.argv[3:] == ["--stamps"]:
    print(f"{elapsed * 1000:.2f} {start:.6f} {connected:.6f} {sent:.6f} {done:.6f}")
else:
    print(f"{elapsed * 1000:.2f}")
