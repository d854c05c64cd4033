#!/usr/bin/env python3
"""Downloads http://HOST:PORT/PATH once over one connection and prints GiB/s (body bytes / wall time) and the
byte count; every loop is bounded by the response length and a 120 s socket timeout."""
import socket
import sys
import time

host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with socket.create_connection((host, port), timeout=120) as s:
    start = time.monotonic()
    s.sendall(f"GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n".encode())
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    header = b""
    while b"\r\n\r\n" not in header:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("connection closed in the headers")
        header += chunk
    head, _, body = header.partition(b"\r\n\r\n")
    length = int([line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")][0])
    received = len(body)
    while received < length:
        n = s.recv_into(view)
        if n == 0:
            sys.exit(f"closed after {received} of {length} bytes")
        received += n
    elapsed = time.monotonic() - start
print(f"{received / elapsed / (1 << 30):.3f} {received}")
