#!/usr/bin/env python3
"""Summarises bench/startup-phases.sh: raw lines "LABEL plain|traced MS START CONNECTED SENT FIRST [PERF_DATA]" (the
client's CLOCK_MONOTONIC stamps, bench/proxy/first_byte.py --stamps) and, for traced lines, the perf data of the
activation; prints a Markdown table of the medians per phase, in milliseconds, one column per proxy."""
import statistics
import subprocess
import sys

PHASES = [
    ("client connect()", "start", "connected"),
    ("connect -> activator wakes", "connected", "wake"),
    ("wakes -> execve (activator's work)", "wake", "execve"),
    ("execve (kernel)", "execve", "exec"),
    ("exec -> epoll_create1 (loader, libraries, runtime)", "exec", "loop"),
    ("epoll_create1 -> accept (proxy set-up)", "loop", "accept"),
    ("accept -> backend connect", "accept", "connect"),
    ("backend connect -> client's first byte", "connect", "first"),
    ("**activation's share** (client start -> execve)", "start", "execve"),
    ("**proxy's share** (execve -> first byte)", "execve", "first"),
    ("total, traced", "start", "first"),
]


def marks(stamps, data):
    """The phase boundaries of one traced activation (seconds, CLOCK_MONOTONIC), or None if perf missed one."""
    start, connected, sent, first = stamps
    m = {"start": start, "connected": connected, "sent": sent, "first": first}
    faults = []
    script = subprocess.run(["perf", "script", "-i", data, "-F", "time,event"], capture_output=True, text=True).stdout
    for line in script.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        t, event = float(parts[0].rstrip(":")), parts[1].rstrip(":")
        if event == "page-faults":
            faults.append(t)
        elif event == "syscalls:sys_exit_epoll_wait" and "execve" not in m and t >= connected - 0.001:
            m.setdefault("wake", t)  # the activator's wait returning on the client's connection
        elif event == "syscalls:sys_enter_execve" and "wake" in m:
            m.setdefault("execve", t)
        elif event == "sched:sched_process_exec" and "execve" in m:
            m.setdefault("exec", t)
        elif event == "syscalls:sys_enter_epoll_create1" and "exec" in m:
            m.setdefault("loop", t)
        elif event in ("syscalls:sys_enter_accept4", "syscalls:sys_enter_accept") and "loop" in m:
            m.setdefault("accept", t)
        elif event == "syscalls:sys_enter_connect" and "accept" in m:
            m.setdefault("connect", t)
    needed = {name for _, a, b in PHASES for name in (a, b)}
    if not needed <= m.keys():
        return None
    return m, {name: sum(1 for t in faults if m[a] <= t < m[b]) for name, a, b in PHASES}


def main(path):
    totals, phases, counts, missed, labels = {}, {}, {}, {}, []
    for line in open(path):
        f = line.split()
        label, kind, ms = f[0], f[1], float(f[2])
        if label not in labels:
            labels.append(label)
        totals.setdefault((label, kind), []).append(ms)
        if kind == "traced":
            found = marks([float(x) for x in f[3:7]], f[7])
            if found is None:
                missed[label] = missed.get(label, 0) + 1
                continue
            m, faults = found
            for name, a, b in PHASES:
                phases.setdefault((label, name), []).append((m[b] - m[a]) * 1000)
                counts.setdefault((label, name), []).append(faults[name])
    proxies = [l for l in labels if l != "no-proxy"]
    print("| phase (median ms; page faults) | " + " | ".join(proxies) + " |")
    print("| --- |" + " --- |" * len(proxies))
    for name, _, _ in PHASES:
        cells = []
        for p in proxies:
            v, c = phases.get((p, name)), counts.get((p, name))
            cells.append(f"{statistics.median(v):.2f}; {statistics.median(c):.0f}" if v else "–")
        print(f"| {name} | " + " | ".join(cells) + " |")
    for kind in ("plain", "traced"):
        cells = []
        for p in proxies:
            v = totals.get((p, kind), [])
            cells.append(f"{statistics.median(v):.2f} ({min(v):.1f}–{max(v):.1f}, n {len(v)})" if v else "–")
        print(f"| first byte, {kind} (client's clock; min–max) | " + " | ".join(cells) + " |")
    d = totals.get(("no-proxy", "plain"))
    if d:
        print(f"\nThe client straight to the backend (no proxy): median {statistics.median(d):.2f} ms "
              f"({min(d):.2f}–{max(d):.2f}, n {len(d)}).")
    for p, count in missed.items():
        print(f"{p}: {count} traced activation(s) left out (perf attached too late or missed an event)")


main(sys.argv[1])
