#!/usr/bin/env bash
# IoMux benchmarks, side by side with C references in one session.
#   bench/run.sh          dispatch and chain shapes: C (raw epoll) vs IoMux on every backend, 5 interleaved rounds
#   bench/run.sh quick    the same with 1 round and fewer iterations (about a minute)
#   bench/run.sh bdn      BenchmarkDotNet micro-benchmarks (--job short) with MemoryDiagnoser
# Raw output goes to bench/out/; a summary with ratios is printed at the end. Every loop is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-full}
out=bench/out
mkdir -p "$out"

if ! command -v gcc >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq gcc libc6-dev >/dev/null
fi
gcc -O2 -o "$out/epoll_dispatch" bench/c/epoll_dispatch.c
gcc -O2 -o "$out/chain" bench/c/chain.c
dotnet build -c Release bench/IoMux.Benchmarks -v quiet -nologo | tail -n 2
bench_exe=bench/IoMux.Benchmarks/bin/Release/net10.0/IoMux.Benchmarks

if [ "$mode" = bdn ]; then
  "$bench_exe" --filter '*' --job short --memory --artifacts "$out/bdn" | tee "$out/bdn.txt"
  grep -q '| Method' "$out/bdn.txt" || { echo "BenchmarkDotNet ran nothing" >&2; exit 1; }
  exit 0
fi

rounds=5; scale=1
if [ "$mode" = quick ]; then rounds=1; scale=10; fi
# The hard RLIMIT_NOFILE here is 20 000: 9 800 socketpairs (19 600 fds) is the largest chain that fits
# beside the runtime's own descriptors. The issue's N = 100 000 would need 200 000 descriptors.
limit=$(ulimit -Hn)
big=$(( (limit - 400) / 2 )); [ "$big" -gt 100000 ] && big=100000
echo "fd hard limit $limit: largest chain N = $big"

raw="$out/raw.txt"; : > "$raw"
for round in $(seq 1 "$rounds"); do
  echo "round $round/$rounds"
  for n in 1 64 1024; do
    iterations=$(( (n == 1 ? 300000 : n == 64 ? 100000 : 5000) / scale ))
    "$out/epoll_dispatch" "$n" "$iterations" >> "$raw"
    for backend in epoll poll select; do
      if [ "$backend" = select ] && [ "$n" -gt 512 ]; then continue; fi  # FD_SETSIZE
      "$bench_exe" dispatch "$backend" "$n" "$iterations" >> "$raw"
    done
  done
  runs=$(( 25 / scale > 0 ? 25 / scale : 1 ))
  for n in 100 1000 "$big"; do
    "$out/chain" "$n" 100 1000 "$runs" >> "$raw"
    for backend in epoll poll select; do
      if [ "$backend" = select ] && [ "$n" -gt 400 ]; then continue; fi  # 2N descriptors must stay below FD_SETSIZE
      timeout 300 "$bench_exe" chain "$backend" "$n" 100 1000 "$runs" >> "$raw"
    done
  done
done

python3 bench/summarize.py "$raw" | tee "$out/summary.md"
