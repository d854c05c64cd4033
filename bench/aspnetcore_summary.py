"""The tables of docs/BENCHMARKS.md from bench/out/aspnetcore/raw.txt (bench/aspnetcore.sh): medians over rounds,
ratios to Kestrel's socket transport taken per round, then their median."""
import statistics
import sys
from collections import defaultdict

runs = defaultdict(dict)  # (cores, who, endpoint, conns) -> {round: (rps, p50, p99)}
extra = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) >= 6 and f[3] in ("allocated", "syscalls"):
        extra[(f[2], f[3])] = f[5]
        continue
    if len(f) < 8:
        continue  # a run whose wrk output could not be read
    runs[(int(f[1]), f[2], f[3], int(f[4]))][int(f[0])] = (float(f[5]), float(f[6]), float(f[7]))

who = ["iomux-inline", "iomux-threadpool", "sockets", "sockets-inline", "aot-iomux-inline", "aot-sockets", "iomux-hello", "nginx"]
med = statistics.median
for cores in (1, 2):
    print(f"\n### {cores} core{'s' if cores > 1 else ''}: requests/s, ratio to Kestrel sockets (p50 / p99 µs)\n")
    print("| endpoint | conns | " + " | ".join(who) + " |")
    print("| --- | --- |" + " --- |" * len(who))
    for endpoint in ("plaintext", "pipelined16", "json"):
        for conns in (50, 256):
            base = runs.get((cores, "sockets", endpoint, conns), {})
            cells = []
            for w in who:
                r = runs.get((cores, w, endpoint, conns))
                if not r:
                    cells.append("-")
                    continue
                ratios = [r[k][0] / base[k][0] for k in r if k in base and base[k][0] > 0]
                ratio = f" **{med(ratios):.2f}x**" if ratios else ""
                vals = list(r.values())
                cells.append(f"{med(v[0] for v in vals):,.0f}{ratio} ({med(v[1] for v in vals):.0f} / {med(v[2] for v in vals):.0f})")
            print(f"| {endpoint} | {conns} | " + " | ".join(cells) + " |")
print("\n### one core, 50 connections, /plaintext: per request\n")
print("| | " + " | ".join(who) + " |")
print("| --- |" + " --- |" * len(who))
print("| bytes allocated (whole process) | " + " | ".join(extra.get((w, "allocated"), "-") for w in who) + " |")
print("| system calls (strace -c -f) | " + " | ".join(extra.get((w, "syscalls"), "-") for w in who) + " |")

# YARP forwarding to nginx on each transport (bench/YarpServer): the IoMux row's ratio is to YARP on Kestrel's sockets.
yarp = ["yarp-iomux", "yarp-sockets"]
if any(k[1] in yarp for k in runs):
    print("\n### YARP forwarding to nginx: requests/s, ratio to YARP on Kestrel sockets (p50 / p99 µs)\n")
    print("| cores | endpoint | conns | " + " | ".join(yarp) + " |")
    print("| --- | --- | --- |" + " --- |" * len(yarp))
    for cores in (1, 2):
        for endpoint in ("proxied", "proxied-pipelined16"):
            for conns in (50, 256):
                base = runs.get((cores, "yarp-sockets", endpoint, conns), {})
                cells = []
                for w in yarp:
                    r = runs.get((cores, w, endpoint, conns))
                    if not r:
                        cells.append("-")
                        continue
                    ratios = [r[k][0] / base[k][0] for k in r if k in base and base[k][0] > 0]
                    ratio = f" **{med(ratios):.2f}x**" if ratios and w != "yarp-sockets" else ""
                    vals = list(r.values())
                    cells.append(f"{med(v[0] for v in vals):,.0f}{ratio} ({med(v[1] for v in vals):.0f} / {med(v[2] for v in vals):.0f})")
                print(f"| {cores} | {endpoint} | {conns} | " + " | ".join(cells) + " |")
