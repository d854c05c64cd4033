#!/usr/bin/env bash
# ASP.NET Core on IoMux vs Kestrel's own socket transport, side by side in one run (issue 12):
#   the same app (bench/AspNetCoreServer: TechEmpower-style /plaintext and /json) on
#     iomux-inline      IoMux transport, application code inline on the loops
#     iomux-threadpool  IoMux transport, application code on the thread pool
#     sockets           Kestrel's socket transport (default)
#     sockets-inline    Kestrel's socket transport with UnsafePreferInlineScheduling, and
#                       DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1 as Kestrel's docs pair it with (socket
#                       completions on the epoll thread; without it the inline option still hops once per read)
#     aot-iomux-inline  the same app published with Native AOT (PublishAot, linux-x64), IoMux transport inline
#     aot-sockets       the Native AOT app on Kestrel's socket transport (issue 24: AOT rows on both transports)
#   plus `iomux hello` and nginx `return 200` on /plaintext as the ceiling;
#   and YARP (bench/YarpServer) on each transport forwarding /plaintext to that nginx: yarp-iomux, yarp-sockets;
#   loaded by wrk on loopback: /plaintext, /plaintext with 16 pipelined requests, /json; 50 and 256 connections;
#   one core (server pinned to CPU 0 with one transport thread, wrk on CPU 1) and two (neither pinned: the load
#   generator shares the cores, so compare within the column only).
# Also per contestant at one core, 50 connections, /plaintext: bytes allocated per request (the server's
# GC.GetTotalAllocatedBytes over the run / requests) and system calls per request (strace -c -f for a shorter run).
# Every run is bounded (BENCH_SECONDS, default 5). Raw lines: bench/out/aspnetcore/raw.txt; table on stdout.
#   bench/aspnetcore.sh [rounds]            (BENCH_ONLY=yarp: the YARP rows alone; BENCH_ONLY=aot: the AOT rows
#                                            beside their JIT builds, no YARP; BENCH_ONLY=default: the four
#                                            transports' JIT rows on one core only, issue 23 item 5's question)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-1}
seconds=${BENCH_SECONDS:-5}
out=bench/out/aspnetcore
mkdir -p "$out"
raw="$out/raw.txt"; : > "$raw"

need=""
for tool in nginx wrk strace; do command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || need="$need $tool"; done
if [ -n "$need" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
fi
dotnet publish bench/AspNetCoreServer -c Release -o "$out/server" -p:PublishReadyToRun=true -v quiet -nologo | tail -n 1
# The native build of the same app (a 2-5 minute compile); it fails on any trim or AOT warning.
if [ "${BENCH_ONLY:-}" != default ]; then
  dotnet publish bench/AspNetCoreServer -c Release -r linux-x64 -p:PublishAot=true -o "$out/server-aot" -v quiet -nologo | tail -n 1
  dotnet publish bench/YarpServer -c Release -o "$out/yarp" -p:PublishReadyToRun=true -v quiet -nologo | tail -n 1
fi
dotnet publish src/Cli -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true -o "$out/iomux" -v quiet -nologo | tail -n 1
server="$PWD/$out/server/AspNetCoreServer"
server_aot="$PWD/$out/server-aot/AspNetCoreServer"
iomux="$PWD/$out/iomux/IoMux.Cli"
yarp="$PWD/$out/yarp/YarpServer"

work=$(mktemp -d /tmp/iomux-aspnetcore-bench.XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cat > "$work/pipeline.lua" <<'LUA'
init = function(args)
  local r = {}
  for i = 1, 16 do r[i] = wrk.format(nil, wrk.path) end
  req = table.concat(r)
end
request = function() return req end
LUA
user=""; [ "$(id -u)" = 0 ] && user="user root;"
cat > "$work/nginx.conf" <<NGINX
daemon off; master_process off; worker_processes 1; $user
pid $work/nginx.pid; error_log $work/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000000;
  server { listen 127.0.0.1:18580;
    location = /plaintext { default_type text/plain; return 200 "Hello, World!"; } } }
NGINX

port=18581
start() { # contestant cores
  local who=$1 cores=$2 pin=""
  [ "$cores" = 1 ] && pin="taskset -c 0"
  port=$((port + 1))
  case $who in
    nginx) $pin nginx -p "$work" -c "$work/nginx.conf" -e "$work/error.log" >/dev/null 2>&1 & pid=$!; url_port=18580 ;;
    iomux-hello) $pin "$iomux" hello --threads "$cores" --port "$port" >/dev/null 2>&1 & pid=$!; url_port=$port ;;
    yarp-iomux|yarp-sockets) $pin "$yarp" "${who#yarp-}" "$port" "$cores" 18580 >/dev/null 2>&1 & pid=$!; url_port=$port ;;
    aot-*) $pin "$server_aot" "${who#aot-}" "$port" "$cores" >/dev/null 2>&1 & pid=$!; url_port=$port ;;
    sockets-inline) DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1 $pin "$server" "$who" "$port" "$cores" >/dev/null 2>&1 & pid=$!; url_port=$port ;;
    *) $pin "$server" "$who" "$port" "$cores" >/dev/null 2>&1 & pid=$!; url_port=$port ;;
  esac
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$url_port/plaintext" && return 0; sleep 0.1; done
  echo "$who did not start" >&2; return 1
}
stop() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; }
path_of() { case $1 in iomux-hello) echo /;; *) echo /plaintext;; esac; }

load() { # cores connections script path -> "rps p50_us p99_us requests"
  local cores=$1 conns=$2 script=$3 path=$4 pin="" threads=2
  [ "$cores" = 1 ] && { pin="taskset -c 1"; threads=1; }
  local args=(-t "$threads" -c "$conns" -d "${seconds}s" --latency)
  [ -n "$script" ] && args+=(-s "$script")
  $pin wrk "${args[@]}" "http://127.0.0.1:$url_port$path" > "$work/wrk.txt" 2>&1 || true
  python3 - "$work/wrk.txt" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def us(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 6e7}[m.group(2)] if m else 0
rps = re.search(r"Requests/sec:\s+([\d.]+)", t); req = re.search(r"(\d+) requests in", t)
p50 = re.search(r"50%\s+(\S+)", t); p99 = re.search(r"99%\s+(\S+)", t)
print(rps.group(1) if rps else 0, us(p50.group(1)) if p50 else 0, us(p99.group(1)) if p99 else 0, req.group(1) if req else 0)
PY
}

contestants=(iomux-inline iomux-threadpool sockets sockets-inline aot-iomux-inline aot-sockets iomux-hello nginx)
[ "${BENCH_ONLY:-}" = aot ] && contestants=(iomux-inline sockets aot-iomux-inline aot-sockets)
[ "${BENCH_ONLY:-}" = yarp ] && contestants=()
core_counts="1 2"
[ "${BENCH_ONLY:-}" = default ] && { contestants=(iomux-threadpool iomux-inline sockets sockets-inline); core_counts=1; }
for round in $(seq 1 "$rounds"); do
  for cores in $core_counts; do
    for who in "${contestants[@]}"; do
      start "$who" "$cores" || continue
      p=$(path_of "$who")
      wrk -t 1 -c 16 -d 1s "http://127.0.0.1:$url_port$p" >/dev/null 2>&1 || true # warm-up (tiered JIT)
      for conns in 50 256; do
        set -- $(load "$cores" "$conns" "" "$p"); echo "$round $cores $who plaintext $conns $*" >> "$raw"
        set -- $(load "$cores" "$conns" "$work/pipeline.lua" "$p"); echo "$round $cores $who pipelined16 $conns $*" >> "$raw"
        case $who in iomux-hello|nginx) ;; *)
          set -- $(load "$cores" "$conns" "" /json); echo "$round $cores $who json $conns $*" >> "$raw" ;;
        esac
      done
      if [ "$cores" = 1 ] && [ "$round" = 1 ]; then
        case $who in iomux-hello|nginx) ;; *)
          before=$(curl -s "http://127.0.0.1:$url_port/allocated")
          set -- $(load 1 50 "" /plaintext)
          after=$(curl -s "http://127.0.0.1:$url_port/allocated")
          echo "$round 1 $who allocated 50 $(( (after - before) / ($4 > 0 ? $4 : 1) ))" >> "$raw" ;;
        esac
        # System calls per request: strace counts every thread of the server during a shorter run.
        timeout 20 strace -c -f -q -p "$pid" -o "$work/strace.txt" & tracer=$!
        sleep 1
        set -- $(BENCH_SECONDS=3 seconds=3 load 1 50 "" "$p")
        kill -INT "$tracer" 2>/dev/null || true; wait "$tracer" 2>/dev/null || true
        calls=$(awk '/total/ {print $4}' "$work/strace.txt" 2>/dev/null || echo 0)
        echo "$round 1 $who syscalls 50 $(python3 -c "print(f'{${calls:-0} / max(1, $4):.2f}')")" >> "$raw"
      fi
      stop
    done
  done
done

# YARP forwarding every request to nginx's `return 200` (the upstream of a real edge proxy, at its cheapest): the
# same wrk loads on /plaintext, plain and pipelined. One core: YARP on CPU 0 with one transport thread, nginx (one
# worker) and wrk on CPU 1; two: nothing pinned. The upstream's cost is in every row alike: compare the two rows.
upstream=""
trap '[ -n "$upstream" ] && kill "$upstream" 2>/dev/null; cleanup' EXIT
case ${BENCH_ONLY:-} in aot|default) rounds_yarp=0 ;; *) rounds_yarp=$rounds ;; esac
for round in $(seq 1 "$rounds_yarp"); do
  for cores in 1 2; do
    upin=""; [ "$cores" = 1 ] && upin="taskset -c 1"
    $upin nginx -p "$work" -c "$work/nginx.conf" -e "$work/error.log" >/dev/null 2>&1 & upstream=$!
    for who in yarp-iomux yarp-sockets; do
      start "$who" "$cores" || continue
      wrk -t 1 -c 16 -d 1s "http://127.0.0.1:$url_port/plaintext" >/dev/null 2>&1 || true # warm-up (tiered JIT)
      for conns in 50 256; do
        set -- $(load "$cores" "$conns" "" /plaintext); echo "$round $cores $who proxied $conns $*" >> "$raw"
        set -- $(load "$cores" "$conns" "$work/pipeline.lua" /plaintext); echo "$round $cores $who proxied-pipelined16 $conns $*" >> "$raw"
      done
      stop
    done
    kill "$upstream" 2>/dev/null || true; wait "$upstream" 2>/dev/null || true; upstream=""
  done
done

python3 bench/aspnetcore_summary.py "$raw"
