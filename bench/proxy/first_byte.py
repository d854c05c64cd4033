#!/usr/bin/env python3
"""Time from connect() to the first byte of an HTTP response, in milliseconds: against a proxy that socket
activation starts on this very connection, this is the proxy's start-up as a client sees it."""
import socket
import sys
import time

host, port = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 30
start = time.monotonic()
with socket.create_connection((host, port), timeout=30) as s:
    s.sendall(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
    first = s.recv(1)
    elapsed = time.monotonic() - start
    if not first:
        sys.exit("no byte came back")
print(f"{elapsed * 1000:.2f}")
