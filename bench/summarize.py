"""Turns bench/out/raw.txt into the tables of docs/BENCHMARKS.md: medians per configuration, and ratios
taken from the same session (IoMux vs the C reference; large N vs N = 100)."""
import statistics
import sys
from collections import defaultdict

dispatch = defaultdict(list)  # (who, n) -> ns per event
chain = defaultdict(list)     # (who, n) -> ns per event
allocated = defaultdict(int)
for line in open(sys.argv[1]):
    f = line.split()
    if not f:
        continue
    if f[0] == "dispatch":
        who, n = f[1], int(f[2])
        dispatch[(who, n)].append(float(f[5]))
        if who != "c":
            allocated[(who, n)] = max(allocated[(who, n)], int(f[6]))
    elif f[0] == "chain":
        chain[(f[1], int(f[2]))].append(float(f[6]))

med = lambda xs: statistics.median(xs)
print("## wait + dispatch, ns per dispatched event (median)\n")
print("| ready fds | C epoll | IoMux epoll | ratio | IoMux poll | IoMux select | bytes allocated in the timed loop |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for n in sorted({n for _, n in dispatch}):
    c = med(dispatch[("c", n)])
    row = [f"{n}", f"{c:.1f}"]
    e = dispatch.get(("epoll", n))
    row += [f"{med(e):.1f}", f"{med(e) / c:.2f}x"] if e else ["-", "-"]
    for b in ("poll", "select"):
        v = dispatch.get((b, n))
        row.append(f"{med(v):.1f}" if v else "n/a (FD_SETSIZE)")
    row.append(", ".join(f"{b} {allocated[(b, n)]}" for b in ("epoll", "poll", "select") if (b, n) in allocated))
    print("| " + " | ".join(row) + " |")

print("\n## libevent bench.c chain (100 active, 1 000 writes), ns per event (median)\n")
ns = sorted({n for _, n in chain})
print("| who | " + " | ".join(f"N={n}" for n in ns) + f" | N={ns[-1]} / N={ns[0]} |")
print("| --- |" + " --- |" * (len(ns) + 1))
for who in ("c", "epoll", "poll", "select"):
    cells = [f"{med(chain[(who, n)]):.0f}" if (who, n) in chain else "n/a" for n in ns]
    flat = f"{med(chain[(who, ns[-1])]) / med(chain[(who, ns[0])]):.2f}x" if (who, ns[-1]) in chain and (who, ns[0]) in chain else "n/a"
    print(f"| {'C epoll' if who == 'c' else 'IoMux ' + who} | " + " | ".join(cells) + f" | {flat} |")
if ("c", ns[0]) in chain and ("epoll", ns[0]) in chain:
    print("\nIoMux epoll / C epoll per event: " + ", ".join(
        f"N={n} {med(chain[('epoll', n)]) / med(chain[('c', n)]):.2f}x" for n in ns if ("epoll", n) in chain and ("c", n) in chain))
