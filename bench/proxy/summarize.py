#!/usr/bin/env python3
"""Reads the raw lines bench/proxy.sh wrote and prints the comparison table: medians over rounds of the per-round
figures, with ratios taken inside each round (the machine is shared and noisy: only side-by-side ratios hold)."""
import collections
import statistics
import sys

rows = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) == 4:
        round_, path, metric, value = parts
        rows[path][metric].append((int(round_), float(value)))

def median(path, metric):
    values = [v for _, v in rows[path][metric]]
    return statistics.median(values) if values else float("nan")

def per_round(path, metric, against, op):
    mine = dict(rows[path][metric]); theirs = dict(rows[against][metric])
    return [op(mine[r], theirs[r]) for r in mine if r in theirs]

paths = [p for p in ("direct", "iomux", "systemd", "haproxy") if p in rows]
full = any(rows[p]["p50_us"] for p in paths)  # BENCH_ONLY=churn leaves the latency, bulk and start-up rows out
if full:
    print("| path | p50 at 1 conn (µs) | p99 at 1 conn (µs) | added p50 (µs) | req/s at 50 conns | throughput kept | "
          "req/s, a connection per request | throughput kept | bulk GiB/s | first byte after activation (ms) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for p in paths:
        added = per_round(p, "p50_us", "direct", lambda a, b: a - b)
        kept_ka = per_round(p, "rps50", "direct", lambda a, b: a / b)
        kept_close = per_round(p, "rps50close", "direct", lambda a, b: a / b)
        bulk = median(p, "bulk_gibps")
        first = median(p, "first_byte_ms")
        print(f"| {p} | {median(p, 'p50_us'):.0f} | {median(p, 'p99_us'):.0f} | "
              f"{statistics.median(added) if added and p != 'direct' else 0:+.0f} | {median(p, 'rps50'):.0f} | "
              f"{statistics.median(kept_ka) if kept_ka else float('nan'):.2f}x | "
              f"{median(p, 'rps50close'):.0f} | {statistics.median(kept_close) if kept_close else float('nan'):.2f}x | "
              f"{'' if bulk != bulk else f'{bulk:.2f}'} | {'' if first != first else f'{first:.1f}'} |")

def kept(path, metric):
    ratios = per_round(path, metric, "direct", lambda a, b: a / b)
    return f"{statistics.median(ratios):.2f}x" if ratios else "–"

def p99_against(path, metric, other):
    ratios = per_round(path, metric, other, lambda a, b: a / b)
    return f"{statistics.median(ratios):.2f}x" if ratios and path != other else "–"

if any(rows[p]["rps1close"] for p in paths):
    print()
    print("A connection per request (wrk -H \"Connection: close\"), and keep-alive at 50 connections; kept = per-round "
          "ratio to nginx directly; p99 / haproxy = per-round ratio of the p99s:")
    print()
    print("| path | keep-alive, 50 conns: kept | 1 client: req/s | kept | p99 (µs) | p99 / haproxy | "
          "50 clients: req/s | kept | p99 (µs) | p99 / haproxy |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for p in paths:
        print(f"| {p} | {kept(p, 'rps50')} | {median(p, 'rps1close'):.0f} | {kept(p, 'rps1close')} | "
              f"{median(p, 'p99close1_us'):.0f} | {p99_against(p, 'p99close1_us', 'haproxy')} | "
              f"{median(p, 'rps50close'):.0f} | {kept(p, 'rps50close')} | {median(p, 'p99close50_us'):.0f} | "
              f"{p99_against(p, 'p99close50_us', 'haproxy')} |")

for other in ("haproxy",):
    if "iomux" in rows and other in rows:
        ratios = per_round("iomux", "rps50close", other, lambda a, b: a / b)
        if ratios:
            print()
            print(f"iomux-socket-proxyd / {other}, req/s with a connection per request: {statistics.median(ratios):.2f}x "
                  f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})")

if "iomux" in rows and "systemd" in rows:
    print()
    print("iomux-socket-proxyd / systemd-socket-proxyd, medians of per-round ratios:")
    for metric, label, better in (("p50_us", "added p50 latency", "lower"), ("rps50", "req/s at 50 conns", "higher"),
                                  ("rps50close", "req/s at 50 conns, a connection per request", "higher"),
                                  ("bulk_gibps", "bulk throughput", "higher"), ("first_byte_ms", "first byte after activation", "lower")):
        if metric == "p50_us":
            ratios = [a / b for a, b in zip(per_round("iomux", metric, "direct", lambda a, b: a - b),
                                            per_round("systemd", metric, "direct", lambda a, b: a - b)) if b > 0]
        else:
            ratios = per_round("iomux", metric, "systemd", lambda a, b: a / b)
        if ratios:
            print(f"  {label}: {statistics.median(ratios):.2f}x ({better} is better; rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
