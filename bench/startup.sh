#!/usr/bin/env bash
# First relayed byte after socket activation (issue 15 item 8; issue 24 item 3), several proxies side by side in one run.
#   bench/startup.sh [ROUNDS] [LABEL=BINARY[@ENV=VALUE,ENV=VALUE] ...]
# Per round and proxy, in turn: STARTUP_N activations (default 7), each a fresh `systemd-socket-activate` (proxy on
# CPU 0) that starts the proxy on the connection of bench/proxy/first_byte.py (CPU 1), relaying to the C hello
# server; prints the median, min and max. The proxies alternate within every round, so a busy moment hits all of them.
# Without a LABEL, the three of issue 24: systemd-socket-proxyd, iomux-socket-proxyd Native AOT (bench/aot-publish.sh)
# and iomux-socket-proxyd ReadyToRun (as bench/proxy.sh publishes it), built first:
#   STARTUP_N=20 bench/startup.sh 1
#   e.g. bench/startup.sh 3 systemd=/lib/systemd/systemd-socket-proxyd new=/tmp/p/iomux-socket-proxyd \
#        pgo-off=/tmp/p/iomux-socket-proxyd@DOTNET_TieredPGO=0
# STARTUP_PORT (default 18790) and the next port are used.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3
if [[ ${1:-} =~ ^[0-9]+$ ]]; then rounds=$1; shift; fi
port=${STARTUP_PORT:-18790}
backend=$((port + 1))
n=${STARTUP_N:-7}
out=bench/out/startup
mkdir -p "$out"
if [ $# -eq 0 ]; then
  bench/aot-publish.sh "$out/aot"
  dotnet publish src/SocketProxy -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true \
    -o "$out/r2r" -v quiet -nologo | tail -n 1
  set -- "systemd=$(command -v systemd-socket-proxyd || echo /lib/systemd/systemd-socket-proxyd)" \
    "iomux-aot=$PWD/$out/aot/bin/iomux-socket-proxyd" "iomux-r2r=$PWD/$out/r2r/iomux-socket-proxyd"
fi
command -v gcc >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq gcc libc6-dev >/dev/null; }
gcc -O2 -o "$out/hello_epoll" bench/c/hello_epoll.c
taskset -c 1 "$out/hello_epoll" hello "$backend" >/dev/null 2>&1 &
hello=$!
trap 'kill $hello 2>/dev/null || true' EXIT
sleep 0.3

# one BINARY ENV...: the median of n activations.
one() {
  local bin=$1; shift
  local passed=() times=() e a
  for e in "$@"; do passed+=(-E "$e"); done
  for _ in $(seq 1 "$n"); do
    taskset -c 0 systemd-socket-activate -l "127.0.0.1:$port" "${passed[@]}" "$bin" "127.0.0.1:$backend" 2>/dev/null &
    a=$!
    sleep 0.4
    times+=("$(taskset -c 1 python3 bench/proxy/first_byte.py 127.0.0.1 "$port")")
    kill "$a" 2>/dev/null || true
    wait "$a" 2>/dev/null || true
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {m = NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2
    printf "median %.1f ms (min %.1f, max %.1f, n %d)\n", m, a[1], a[NR], NR}'
}

for round in $(seq 1 "$rounds"); do
  for spec in "$@"; do
    label=${spec%%=*}; rest=${spec#*=}; bin=${rest%%@*}; envs=()
    [[ $rest == *@* ]] && IFS=',' read -ra envs <<< "${rest#*@}"
    echo "$round $label $(one "$bin" "${envs[@]}")"
  done
done
