#!/usr/bin/env bash
# The dispatch shape of bench/run.sh for two revisions side by side: C (raw epoll), IoMux at BASE and IoMux at
# the working tree, interleaved round by round in one session, so a refactoring is judged by ratios taken under
# the same load.   bench/compare.sh [BASE-REV] [ROUNDS]   (default: HEAD~1, 5 rounds; about 2 minutes)
# BASE is built from a temporary git worktree under /tmp and removed afterwards. Every loop is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-HEAD~1}; rounds=${2:-5}
out=bench/out; mkdir -p "$out"
command -v gcc >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq gcc libc6-dev >/dev/null; }
gcc -O2 -o "$out/epoll_dispatch" bench/c/epoll_dispatch.c
tree=$(mktemp -d /tmp/iomux-base.XXXXXX)
trap 'git worktree remove --force "$tree" >/dev/null 2>&1 || true' EXIT
git worktree add --detach "$tree" "$base" >/dev/null 2>&1
dotnet build -c Release "$tree/bench/IoMux.Benchmarks" -v quiet -nologo | tail -n 1
dotnet build -c Release bench/IoMux.Benchmarks -v quiet -nologo | tail -n 1
old="$tree/bench/IoMux.Benchmarks/bin/Release/net10.0/IoMux.Benchmarks"
new=bench/IoMux.Benchmarks/bin/Release/net10.0/IoMux.Benchmarks
raw="$out/compare.txt"; : > "$raw"
for round in $(seq 1 "$rounds"); do
  echo "round $round/$rounds"
  for n in 1 64 1024; do
    iterations=$(( n == 1 ? 300000 : n == 64 ? 100000 : 5000 ))
    "$out/epoll_dispatch" "$n" "$iterations" >> "$raw"
    for backend in epoll poll; do
      "$old" dispatch "$backend" "$n" "$iterations" | sed "s/^dispatch $backend /dispatch base-$backend /" >> "$raw"
      "$new" dispatch "$backend" "$n" "$iterations" >> "$raw"
    done
  done
done
python3 - "$raw" "$base" <<'PY'
import statistics, sys
from collections import defaultdict
d = defaultdict(list); alloc = defaultdict(int)
for line in open(sys.argv[1]):
    f = line.split()
    if f and f[0] == "dispatch":
        d[(f[1], int(f[2]))].append(float(f[5]))
        if f[1] != "c": alloc[(f[1], int(f[2]))] = max(alloc[(f[1], int(f[2]))], int(f[6]))
med = statistics.median
print(f"\n| ready fds | C epoll ns/event | {sys.argv[2]} epoll | this tree epoll | {sys.argv[2]} / C | this tree / C | {sys.argv[2]} poll | this tree poll | bytes allocated (this tree) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for n in sorted({n for _, n in d}):
    c = med(d[("c", n)]); be = med(d[("base-epoll", n)]); ne = med(d[("epoll", n)])
    print(f"| {n} | {c:.1f} | {be:.1f} | {ne:.1f} | {be / c:.2f}x | {ne / c:.2f}x | {med(d[('base-poll', n)]):.1f} | {med(d[('poll', n)]):.1f} | epoll {alloc[('epoll', n)]}, poll {alloc[('poll', n)]} |")
PY
