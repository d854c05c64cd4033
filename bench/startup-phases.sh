#!/usr/bin/env bash
# Where the first byte after socket activation goes, phase by phase (issue 24 item 3), proxies side by side.
#   bench/startup-phases.sh [N] [LABEL=BINARY[@ENV=VALUE,ENV=VALUE] ...]
# The set-up of bench/startup.sh (systemd-socket-activate and the proxy on CPU 0, the client bench/proxy/first_byte.py
# and the C hello backend on CPU 1), N activations (default 20) per proxy. Each activation is measured twice, in turn
# with the other proxies: once plain (the client's clock only), once traced: `perf record -k CLOCK_MONOTONIC -p` is
# attached to the waiting systemd-socket-activate before the client connects (so its start is not in the window; it
# follows the exec, which keeps the pid, and the proxy's threads) and records a handful of tracepoints on that
# process only; the client prints its CLOCK_MONOTONIC stamps on the same clock. Per round also the client straight to
# the backend (what a relay cannot beat). bench/proxy/phases.py prints the medians per phase:
#   client connect()                      python's socket set-up and the loopback handshake (the kernel completes it
#                                         against the listen backlog; nobody accepts yet)
#   connect -> activator wakes            systemd-socket-activate's epoll_wait returns
#   wakes -> execve                       systemd-socket-activate's own work (it execs the proxy in place, no fork)
#   execve                                the kernel's exec of the proxy binary
#   exec -> epoll_create1                 the dynamic loader, libraries and runtime start, up to the proxy's event loop
#   epoll_create1 -> accept               the proxy's own set-up before its first accept
#   accept -> backend connect             per-connection set-up
#   backend connect -> first byte         connect, the request relayed, the backend's answer relayed, the client woken
# "activation's share" is client start -> execve, "proxy's share" execve -> first byte. The plain and traced totals
# side by side show what the tracer costs; at the end, what one page fault costs on CPU 0 (bench/c/page_fault.c).
# Needs perf (linux-perf) with tracepoints; run as root.
# Without a LABEL: systemd-socket-proxyd and the Native AOT proxy (bench/aot-publish.sh, built first).
#   bench/startup-phases.sh 20
#   bench/startup-phases.sh 20 systemd=/lib/systemd/systemd-socket-proxyd aot=/tmp/aot/bin/iomux-socket-proxyd
# PHASES_PORT (default 18890) and the next port are used; raw lines and perf data in bench/out/startup-phases.
set -euo pipefail
cd "$(dirname "$0")/.."
n=20
if [[ ${1:-} =~ ^[0-9]+$ ]]; then n=$1; shift; fi
port=${PHASES_PORT:-18890}
backend=$((port + 1))
out=bench/out/startup-phases
mkdir -p "$out"
rm -f "$out"/*.data
raw=$out/raw.txt
: > "$raw"
if [ $# -eq 0 ]; then
  bench/aot-publish.sh "$out/aot"
  set -- "systemd=$(command -v systemd-socket-proxyd || echo /lib/systemd/systemd-socket-proxyd)" \
    "iomux-aot=$PWD/$out/aot/bin/iomux-socket-proxyd"
fi
command -v perf >/dev/null 2>&1 || { echo "startup-phases: needs perf (Debian: linux-perf)" >&2; exit 1; }
command -v gcc >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq gcc libc6-dev >/dev/null; }
gcc -O2 -o "$out/hello_epoll" bench/c/hello_epoll.c
gcc -O2 -o "$out/page_fault" bench/c/page_fault.c
taskset -c 1 "$out/hello_epoll" hello "$backend" >/dev/null 2>&1 &
hello=$!
trap 'kill $hello 2>/dev/null || true' EXIT
sleep 0.3
# The events: the activator's wake-up, the exec, the proxy's event loop, accept and backend connect.
events=sched:sched_process_exec,syscalls:sys_exit_epoll_wait,syscalls:sys_enter_execve,syscalls:sys_enter_epoll_create1
events+=,syscalls:sys_enter_accept4,syscalls:sys_enter_accept,syscalls:sys_enter_connect
# Every page fault of the process as well (-c 1): on a virtual machine a first touch can cost microseconds each.

# one LABEL BINARY TRACED(0|1) ROUND ENV...: one activation; appends "LABEL plain|traced STAMPS [perf file]" to raw.
one() {
  local label=$1 bin=$2 traced=$3 round=$4; shift 4
  local passed=() e a p="" data=""
  for e in "$@"; do passed+=(-E "$e"); done
  taskset -c 0 systemd-socket-activate -l "127.0.0.1:$port" "${passed[@]}" "$bin" "127.0.0.1:$backend" 2>/dev/null &
  a=$!
  sleep 0.2
  if [ "$traced" = 1 ]; then
    data=$out/$label.$round.data
    # On CPU 1 with the client: perf's own wake-ups then compete with the client, not with the proxy.
    taskset -c 1 perf record -q -k CLOCK_MONOTONIC -p "$a" -o "$data" -e "$events" -e page-faults -c 1 2>/dev/null &
    p=$!
  fi
  sleep 0.4
  stamps=$(taskset -c 1 python3 bench/proxy/first_byte.py 127.0.0.1 "$port" --stamps)
  if [ -n "$p" ]; then sleep 0.05; kill -INT "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; fi
  kill "$a" 2>/dev/null || true
  wait "$a" 2>/dev/null || true
  echo "$label $([ "$traced" = 1 ] && echo traced || echo plain) $stamps $data" >> "$raw"
}

echo "startup-phases: $n rounds, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$n"); do
  echo "no-proxy plain $(taskset -c 1 python3 bench/proxy/first_byte.py 127.0.0.1 "$backend" --stamps)" >> "$raw"
  for traced in 0 1; do
    for spec in "$@"; do
      label=${spec%%=*}; rest=${spec#*=}; bin=${rest%%@*}; envs=()
      [[ $rest == *@* ]] && IFS=',' read -ra envs <<< "${rest#*@}"
      one "$label" "$bin" "$traced" "$round" "${envs[@]}"
    done
  done
done
echo "startup-phases: load average after: $(cut -d' ' -f1-3 /proc/loadavg); raw lines in $raw"
# The price of one page fault here, on the proxies' CPU: the phases above take hundreds of them.
echo "startup-phases: $(taskset -c 0 "$out/page_fault" 213 21)"
python3 bench/proxy/phases.py "$raw" | tee "$out/summary.md"
