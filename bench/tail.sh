#!/usr/bin/env bash
# Tail latency at 50 connections (issue 15 item 2), side by side in one run: iomux hello, the C epoll hello and .NET
# async sockets, each one thread pinned to CPU 0, bench/c/http_load on CPU 1 (one request in flight per connection);
# ROUNDS rounds of SECONDS, order rotated; p50, p99 and p99.9 per round, and the medians.
#   bench/tail.sh [rounds]     (BENCH_SECONDS, default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
seconds=${BENCH_SECONDS:-5}
out=bench/out/tail
mkdir -p "$out"
raw="$out/raw.txt"; : > "$raw"
command -v gcc >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq gcc libc6-dev >/dev/null; }
for tool in hello_epoll http_load; do gcc -O2 -o "$out/$tool" "bench/c/$tool.c"; done
dotnet publish src/Cli -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true -o "$out/iomux" -v quiet -nologo | tail -n 1
dotnet publish bench/DotnetSockets/DotnetSockets.csproj -c Release -o "$out/dotnet-sockets" -v quiet -nologo | tail -n 1
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
declare -A port=([iomux]=18701 [c]=18702 [dotnet]=18703)
taskset -c 0 "$out/iomux/IoMux.Cli" hello --threads 1 --port 18701 >/dev/null 2>&1 & pids+=($!)
taskset -c 0 "$out/hello_epoll" hello 18702 & pids+=($!)
taskset -c 0 "$out/dotnet-sockets/DotnetSockets" hello 18703 >/dev/null 2>&1 & pids+=($!)
sleep 2
for s in iomux c dotnet; do taskset -c 1 "$out/http_load" "${port[$s]}" 50 2 / >/dev/null; done   # warm-up
rotate() { local r=$1; shift; local a=("$@"); local k=$(( (r - 1) % ${#a[@]} )); echo "${a[@]:$k}" "${a[@]:0:$k}"; }
for round in $(seq 1 "$rounds"); do
  for s in $(rotate "$round" iomux c dotnet); do
    set -- $(taskset -c 1 "$out/http_load" "${port[$s]}" 50 "$seconds" /)
    echo "$round $s rps $4 p50_us $6 p99_us $8 p999_us ${12}" | tee -a "$raw"
  done
done
python3 - "$raw" <<'PY' | tee "$out/summary.md"
import sys, statistics, collections
v = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    f = line.split(); d = dict(zip(f[2::2], map(float, f[3::2])))
    for k, x in d.items(): v[f[1]][k].append(x)
print("| server | req/s | p50 µs | p99 µs | p99.9 µs | p99 per round | p99.9 per round |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for s in ["iomux", "c", "dotnet"]:
    m = {k: statistics.median(x) for k, x in v[s].items()}
    print(f"| {s} | {m['rps']:.0f} | {m['p50_us']:.0f} | {m['p99_us']:.0f} | {m['p999_us']:.0f} | {' '.join(str(int(x)) for x in v[s]['p99_us'])} | {' '.join(str(int(x)) for x in v[s]['p999_us'])} |")
PY
