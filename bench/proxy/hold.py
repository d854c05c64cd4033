#!/usr/bin/env python3
"""Holds N connections open through a proxy, each with one HTTP request relayed and its response read, so that a
footprint measurement sees the proxy relaying N connections at once (bench/footprint.sh).
    hold.py HOST PORT N READY_FILE
Writes READY_FILE once every connection has its response, then holds them until SIGTERM or 120 s pass."""
import socket
import sys
import time

host, port, n, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
conns = []
for _ in range(n):
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    conns.append(s)
for s in conns:
    if not s.recv(4096):  # the response (small: nginx's index.html), under the 10 s timeout
        sys.exit("a relayed connection closed before its response")
with open(ready, "w") as f:
    f.write(f"{n}\n")
time.sleep(120)  # the script ends us (SIGTERM) when it has measured; 120 s bounds a forgotten holder
for s in conns:
    s.close()
