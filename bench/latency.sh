#!/usr/bin/env bash
# Latency at one connection and what spinning before sleep costs (issue 15 item 1), side by side in one run.
# Each server runs on one thread pinned to CPU 0, the load generator on CPU 1:
#   hello: iomux hello spinning (the default, Poller.ServerSpin) and not (IOMUX_SPIN_US=0), .NET async sockets, C epoll;
#   echo:  the same four, 64-byte messages;
#   proxy: iomux-socket-proxyd spinning and not, and systemd-socket-proxyd, each in front of the C hello server.
# Per configuration and round: c1 round trips for SECONDS (p50, p99, requests/s) and the server's CPU seconds per
# second (utime + stime from /proc/PID/stat; a proxy's own process only); then c50 requests/s for the iomux pairs
# (spinning must not cost throughput); then every server's CPU while idle. Order rotated per round; medians.
#   bench/latency.sh [rounds]     (BENCH_SECONDS, default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
seconds=${BENCH_SECONDS:-5}
out=bench/out/latency
mkdir -p "$out"
raw="$out/raw.txt"; : > "$raw"

command -v gcc >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq gcc libc6-dev >/dev/null; }
for tool in hello_epoll http_load echo_load; do gcc -O2 -o "$out/$tool" "bench/c/$tool.c"; done
dotnet publish src/Cli -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true -o "$out/iomux" -v quiet -nologo | tail -n 1
dotnet publish bench/DotnetSockets/DotnetSockets.csproj -c Release -o "$out/dotnet-sockets" -v quiet -nologo | tail -n 1
iomux="$PWD/$out/iomux/IoMux.Cli"
proxyd="$PWD/$out/iomux/iomux-socket-proxyd"
dotnet_sockets="$PWD/$out/dotnet-sockets/DotnetSockets"
systemd_proxyd=$(command -v systemd-socket-proxyd || echo /lib/systemd/systemd-socket-proxyd)

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

declare -A pid_of port_of
# start NAME PORT command...: on CPU 0, remembers the pid whose CPU is measured.
start() {
  local name=$1 port=$2; shift 2
  taskset -c 0 "$@" >/dev/null 2>&1 &
  pids+=($!); pid_of[$name]=$!; port_of[$name]=$port
}
start hello_spin 18601 "$iomux" hello --threads 1 --port 18601
start hello_nospin 18602 env IOMUX_SPIN_US=0 "$iomux" hello --threads 1 --port 18602
start hello_dotnet 18603 "$dotnet_sockets" hello 18603
start hello_c 18604 "$out/hello_epoll" hello 18604
start echo_spin 18611 "$iomux" echo --threads 1 --port 18611
start echo_nospin 18612 env IOMUX_SPIN_US=0 "$iomux" echo --threads 1 --port 18612
start echo_dotnet 18613 "$dotnet_sockets" echo 18613
start echo_c 18614 "$out/hello_epoll" echo 18614
start proxy_spin 18621 "$proxyd" --listen 127.0.0.1:18621 127.0.0.1:18604
start proxy_nospin 18622 env IOMUX_SPIN_US=0 "$proxyd" --listen 127.0.0.1:18622 127.0.0.1:18604
start proxy_systemd 18623 systemd-socket-activate -l 127.0.0.1:18623 "$systemd_proxyd" 127.0.0.1:18604
sleep 3
# env execs the server (same pid); systemd-socket-activate execs the proxy at its first connection (same pid).

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
# run NAME KIND CONNS: one load run; records rps/p50/p99 and the server's CPU seconds per second.
run() {
  local name=$1 kind=$2 conns=$3 before after
  before=$(cpu_ticks "${pid_of[$name]}")
  if [ "$kind" = echo ]; then
    set -- $(taskset -c 1 "$out/echo_load" "${port_of[$name]}" "$conns" 64 "$seconds")
  else
    set -- $(taskset -c 1 "$out/http_load" "${port_of[$name]}" "$conns" "$seconds" /)
  fi
  after=$(cpu_ticks "${pid_of[$name]}")
  echo "$round $name c$conns rps $4 p50_us $6 p99_us $8 cpu $(awk -v t=$((after - before)) -v hz="$hz" -v s="$seconds" 'BEGIN {printf "%.3f", t / hz / s}')" >> "$raw"
}
rotate() { local r=$1; shift; local a=("$@"); local k=$(( (r - 1) % ${#a[@]} )); echo "${a[@]:$k}" "${a[@]:0:$k}"; }

echo "warm-up"
round=0
for s in hello_spin hello_nospin hello_dotnet hello_c proxy_spin proxy_nospin proxy_systemd; do
  taskset -c 1 "$out/http_load" "${port_of[$s]}" 50 2 / >/dev/null
done
for s in echo_spin echo_nospin echo_dotnet echo_c; do taskset -c 1 "$out/echo_load" "${port_of[$s]}" 50 64 2 >/dev/null; done

for round in $(seq 1 "$rounds"); do
  echo "round $round/$rounds"
  for s in $(rotate "$round" hello_spin hello_nospin hello_dotnet hello_c); do run "$s" http 1; done
  for s in $(rotate "$round" echo_spin echo_nospin echo_dotnet echo_c); do run "$s" echo 1; done
  for s in $(rotate "$round" proxy_spin proxy_nospin proxy_systemd); do run "$s" http 1; done
  for s in $(rotate "$round" hello_spin hello_nospin); do run "$s" http 50; done
  for s in $(rotate "$round" echo_spin echo_nospin); do run "$s" echo 50; done
done

echo "idle: CPU over ${seconds}s with no client"
for s in "${!pid_of[@]}"; do echo "$s $(cpu_ticks "${pid_of[$s]}")"; done > "$out/idle_before.txt"
sleep "$seconds"
while read -r s before; do
  after=$(cpu_ticks "${pid_of[$s]}")
  echo "idle $s cpu $(awk -v t=$((after - before)) -v hz="$hz" -v s="$seconds" 'BEGIN {printf "%.3f", t / hz / s}')" >> "$raw"
done < "$out/idle_before.txt"

echo
echo "bench/latency.sh $rounds rounds of ${seconds}s, $(nproc) cores, $(uname -r); raw figures in $raw"
python3 - "$raw" <<'PY' | tee "$out/summary.md"
import sys, statistics, collections
runs = collections.defaultdict(lambda: collections.defaultdict(list)); idle = {}
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] == "idle":
        idle[f[1]] = float(f[3]); continue
    key = (f[1], f[2]); fields = dict(zip(f[3::2], f[4::2]))
    for k, v in fields.items(): runs[key][k].append(float(v))
med = lambda key, k: statistics.median(runs[key][k])
print("| server | c1 p50 µs | c1 p99 µs | c1 req/s | CPU s/s at c1 | CPU s/s idle |")
print("| --- | --- | --- | --- | --- | --- |")
for name in ["hello_spin", "hello_nospin", "hello_dotnet", "hello_c", "echo_spin", "echo_nospin", "echo_dotnet", "echo_c",
             "proxy_spin", "proxy_nospin", "proxy_systemd"]:
    k = (name, "c1")
    if k in runs:
        print(f"| {name} | {med(k,'p50_us'):.0f} | {med(k,'p99_us'):.0f} | {med(k,'rps'):.0f} | {med(k,'cpu'):.2f} | {idle.get(name, float('nan')):.3f} |")
print()
print("| server | c50 req/s spinning | c50 req/s not spinning | ratio |")
print("| --- | --- | --- | --- |")
for kind in ["hello", "echo"]:
    a, b = (f"{kind}_spin", "c50"), (f"{kind}_nospin", "c50")
    if a in runs and b in runs:
        ratios = [x / y for x, y in zip(runs[a]["rps"], runs[b]["rps"])]
        print(f"| {kind} | {med(a,'rps'):.0f} | {med(b,'rps'):.0f} | {statistics.median(ratios):.2f}x |")
PY
