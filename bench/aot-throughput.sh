#!/usr/bin/env bash
# Native AOT against JIT + ReadyToRun, the same code side by side (issue 24 item 4): `iomux hello`, `iomux echo` and
# iomux-socket-proxyd (socket-activated, in front of bench/c/hello_epoll), each at 1 and at 50 keep-alive connections.
# Servers (and the proxy's backend) on CPU 0, one loop thread; the C load generators (bench/c/http_load,
# bench/c/echo_load) on CPU 1. Every configuration runs once per round, the order rotated; the AOT / R2R ratio is
# taken inside a round, then the median of the rounds. The summary prints the load average it ran under: on a busy
# machine the ratio, not the absolute figure, is the result.
#   bench/aot-throughput.sh [rounds]          (BENCH_SECONDS, default 5; about 3 min of load at 3 rounds, after the builds)
# Results: bench/out/aot-throughput/{raw.txt,summary.md}. Bounded: every load run stops after BENCH_SECONDS; every
# process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
seconds=${BENCH_SECONDS:-5}
out=bench/out/aot-throughput
mkdir -p "$out"
raw="$out/raw.txt"; : > "$raw"

need=""
for tool in gcc systemd-socket-activate; do command -v "$tool" >/dev/null 2>&1 || need="$need $tool"; done
if [ -n "$need" ] && [ "$(id -u)" = 0 ]; then
  need=${need/systemd-socket-activate/systemd}
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need libc6-dev) >/dev/null
fi
for tool in hello_epoll http_load echo_load; do gcc -O2 -o "$out/$tool" "bench/c/$tool.c"; done
bench/aot-publish.sh "$out/aot"
dotnet publish src/Cli -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true -o "$out/r2r-iomux" -v quiet -nologo | tail -n 1
dotnet publish src/SocketProxy -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true -o "$out/r2r-proxyd" -v quiet -nologo | tail -n 1
declare -A iomux=([aot]="$PWD/$out/aot/bin/iomux" [r2r]="$PWD/$out/r2r-iomux/IoMux.Cli")
declare -A proxyd=([aot]="$PWD/$out/aot/bin/iomux-socket-proxyd" [r2r]="$PWD/$out/r2r-proxyd/iomux-socket-proxyd")

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
on0() { taskset -c 0 "$@" >/dev/null 2>&1 & pids+=($!); }

# Ports: hello 18501 (aot) / 18502 (r2r); echo 18503 / 18504; the proxies 18505 / 18506 in front of hello_epoll on 18500.
on0 "$out/hello_epoll" hello 18500
on0 "${iomux[aot]}" hello --threads 1 --port 18501
on0 "${iomux[r2r]}" hello --threads 1 --port 18502
on0 "${iomux[aot]}" echo --threads 1 --port 18503
on0 "${iomux[r2r]}" echo --threads 1 --port 18504
on0 systemd-socket-activate -l 127.0.0.1:18505 "${proxyd[aot]}" --connections-max=1024 127.0.0.1:18500
on0 systemd-socket-activate -l 127.0.0.1:18506 "${proxyd[r2r]}" --connections-max=1024 127.0.0.1:18500
declare -A port=([hello-aot]=18501 [hello-r2r]=18502 [echo-aot]=18503 [echo-r2r]=18504 [proxy-aot]=18505 [proxy-r2r]=18506)
for p in 18500 18501 18502 18503 18504 18505 18506; do
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break; sleep 0.1; done
done

load() { # kind port conns seconds -> "rate p99_us"
  case $1 in
    echo) set -- $(taskset -c 1 "$out/echo_load" "$2" "$3" 64 "$4") ;;
    *) set -- $(taskset -c 1 "$out/http_load" "$2" "$3" "$4" /) ;;
  esac
  echo "$4 $8"
}
rotate() { local r=$1; shift; local a=("$@"); local k=$(( (r - 1) % ${#a[@]} )); echo "${a[@]:$k}" "${a[@]:0:$k}"; }

echo "warm-up"
for k in "${!port[@]}"; do load "${k%-*}" "${port[$k]}" 50 2 >/dev/null; done
for round in $(seq 1 "$rounds"); do
  echo "round $round/$rounds"
  for kind in hello echo proxy; do
    for conns in 1 50; do
      for build in $(rotate "$round" aot r2r); do
        set -- $(load "$kind" "${port[$kind-$build]}" "$conns" "$seconds")
        echo "$round $kind $conns $build $1 $2" >> "$raw"
      done
    done
  done
done

python3 - "$raw" "$rounds" "$seconds" <<'PY' | tee "$out/summary.md"
import os, statistics, sys
raw, rounds, seconds = sys.argv[1], sys.argv[2], sys.argv[3]
rows = {}
for line in open(raw):
    r, kind, conns, build, rate, p99 = line.split()
    rows.setdefault((kind, int(conns)), {}).setdefault(int(r), {})[build] = (float(rate), int(p99))
print(f"bench/aot-throughput.sh {rounds} rounds of {seconds} s, load average {os.getloadavg()[0]:.1f} at the end; medians")
print()
print("| workload | connections | AOT (req or msg/s) | R2R | AOT / R2R (rounds) | p99 AOT | p99 R2R |")
print("| --- | ---: | ---: | ---: | --- | ---: | ---: |")
names = {"hello": "`iomux hello`", "echo": "`iomux echo` (64 B)", "proxy": "iomux-socket-proxyd → C hello"}
for (kind, conns), by_round in rows.items():
    ratios = [v["aot"][0] / v["r2r"][0] for v in by_round.values() if v.get("r2r", (0,))[0] > 0 and "aot" in v]
    med = lambda b, i: statistics.median(v[b][i] for v in by_round.values())
    print(f"| {names[kind]} | {conns} | {med('aot', 0):,.0f} | {med('r2r', 0):,.0f} | **{statistics.median(ratios):.2f}x** "
          f"({', '.join(f'{x:.2f}' for x in ratios)}) | {med('aot', 1)} µs | {med('r2r', 1)} µs |")
PY
