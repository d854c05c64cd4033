#!/usr/bin/env bash
# Socket-activation proxies in front of nginx, side by side in one run (issue 5):
#   nginx directly, through iomux-socket-proxyd, through systemd-socket-proxyd, through haproxy (mode tcp):
#   p50/p99 at one connection (bench/c/http_rtt.c) and req/s at 50 connections (wrk), keep-alive; req/s and p99
#   with a connection per request at 1 and at 50 clients (wrk -H "Connection: close"); bulk GiB/s of one 1 GiB download; and the time from
#   the first connection to its first byte when socket activation starts the proxy on that connection.
#   bench/proxy.sh [rounds]   (default 3; every wrk run is bounded by its duration; BENCH_SECONDS per run, default 5;
#   BENCH_ONLY=churn for the keep-alive and connection-per-request rows alone)
# Method (docs/BENCHMARKS.md): nginx and the proxy pinned to CPU 0, the load generator to CPU 1; every path once
# per round, order rotated; ratios taken inside a round, then the median.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
seconds=${BENCH_SECONDS:-5}
# BENCH_ONLY=churn: only req/s at 50 keep-alive connections and the connection-per-request rows (a short run).
churn_only=""; [ "${BENCH_ONLY:-}" = churn ] && churn_only=1
out=bench/out/proxy
mkdir -p "$out"
raw="$out/raw.txt"; : > "$raw"

need=""
for tool in nginx wrk haproxy curl; do command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || need="$need $tool"; done
if [ -n "$need" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
fi
systemd_proxyd=/lib/systemd/systemd-socket-proxyd
[ -x "$systemd_proxyd" ] || systemd_proxyd=/usr/lib/systemd/systemd-socket-proxyd

command -v gcc >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq gcc libc6-dev >/dev/null; }
gcc -O2 -o "$out/http_rtt" bench/c/http_rtt.c

# ReadyToRun: socket activation makes the first client wait for start-up.
dotnet publish src/SocketProxy -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true \
  -o "$out/iomux-socket-proxyd" -v quiet -nologo | tail -n 1
iomux_proxyd="$PWD/$out/iomux-socket-proxyd/iomux-socket-proxyd"

work=$(mktemp -d /tmp/iomux-proxy-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# nginx, one worker, its default 615-byte page (the shape of research/baselines.md), and a 1 GiB file.
mkdir -p "$work/www"
cp /usr/share/nginx/html/index.html "$work/www/index.html" 2>/dev/null || head -c 615 /dev/zero | tr '\0' 'x' > "$work/www/index.html"
dd if=/dev/zero of="$work/www/1g.bin" bs=1M count=1024 status=none
user=""; [ "$(id -u)" = 0 ] && user="user root;"
cat > "$work/nginx.conf" <<NGINX
daemon off; master_process on; worker_processes 1; $user
pid $work/nginx.pid; error_log $work/error.log;
events { worker_connections 4096; }
http { access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;
  server { listen 127.0.0.1:18080 backlog=4096; root $work/www; } }
NGINX
taskset -c 0 nginx -p "$work" -c "$work/nginx.conf" -e "$work/error.log" & pids+=($!)

cat > "$work/haproxy.cfg" <<HAPROXY
global
  nbthread 1
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
listen bench
  bind 127.0.0.1:18083
  server nginx 127.0.0.1:18080
HAPROXY
taskset -c 0 haproxy -f "$work/haproxy.cfg" -db >/dev/null 2>&1 & pids+=($!)
taskset -c 0 systemd-socket-activate -l 127.0.0.1:18081 "$iomux_proxyd" --connections-max=1024 127.0.0.1:18080 2>"$out/iomux.log" & pids+=($!)
taskset -c 0 systemd-socket-activate -l 127.0.0.1:18082 "$systemd_proxyd" --connections-max=1024 127.0.0.1:18080 2>"$out/systemd.log" & pids+=($!)
sleep 1

# wrk --latency's 99% line in microseconds (wrk prints us, ms or s).
wrk_p99_us() {
  awk '$1 == "99%" { v = $2; u = 1; if (v ~ /ms$/) u = 1000; else if (v ~ /us$/) u = 1; else if (v ~ /s$/) u = 1000000
                     sub(/[a-z]+$/, "", v); printf "%.0f\n", v * u }'
}

declare -A port=([direct]=18080 [iomux]=18081 [systemd]=18082 [haproxy]=18083)
paths=(direct iomux systemd haproxy)

echo "warm-up (activates the proxies, lets the .NET tiers settle)"
for p in "${paths[@]}"; do taskset -c 1 wrk -t1 -c50 -d3s "http://127.0.0.1:${port[$p]}/" >/dev/null; done

for round in $(seq 1 "$rounds"); do
  echo "round $round/$rounds"
  order=("${paths[@]:$(( (round - 1) % 4 ))}" "${paths[@]:0:$(( (round - 1) % 4 ))}")
  for p in "${order[@]}"; do
    url="http://127.0.0.1:${port[$p]}/"
    # One connection, one request in flight, the client spinning (bench/c/http_rtt.c): wrk -c1 would mostly
    # measure how long this VM takes to wake an idle CPU (a p50 of 200-500 µs even straight to nginx).
    if [ -z "$churn_only" ]; then
      lat=$(taskset -c 1 "$out/http_rtt" "${port[$p]}" 1000000 "$seconds")
      echo "$round $p p50_us $(echo "$lat" | awk '{print $4}')" >> "$raw"
      echo "$round $p p99_us $(echo "$lat" | awk '{print $6}')" >> "$raw"
    fi
    rps=$(taskset -c 1 wrk -t1 -c50 -d"${seconds}s" "$url" | awk '/Requests\/sec/ {print $2}')
    echo "$round $p rps50 $rps" >> "$raw"
    # A connection per request (nginx closes after its response): what a proxy pays to accept, connect and tear down,
    # at one client (each connection waits for the one before: the added cost per connection shows whole) and at 50.
    for c in 1 50; do
      churn=$(taskset -c 1 wrk -t1 -c"$c" -d"${seconds}s" --latency -H "Connection: close" "$url")
      echo "$round $p rps${c}close $(echo "$churn" | awk '/Requests\/sec/ {print $2}')" >> "$raw"
      echo "$round $p p99close${c}_us $(echo "$churn" | wrk_p99_us)" >> "$raw"
    done
    [ -z "$churn_only" ] || continue
    bulk=$(taskset -c 1 python3 bench/proxy/bulk.py 127.0.0.1 "${port[$p]}" /1g.bin)
    [ "$(echo "$bulk" | cut -d' ' -f2)" = 1073741824 ] || { echo "bulk transfer through $p was short: $bulk" >&2; exit 1; }
    echo "$round $p bulk_gibps $(echo "$bulk" | cut -d' ' -f1)" >> "$raw"
  done
  # Socket activation start-up: a fresh activator per proxy; the timed connection is the one that starts it.
  [ -z "$churn_only" ] || continue
  for p in iomux systemd; do
    binary=$iomux_proxyd; [ "$p" = systemd ] && binary=$systemd_proxyd
    taskset -c 0 systemd-socket-activate -l 127.0.0.1:18090 "$binary" 127.0.0.1:18080 2>/dev/null & activator=$!
    sleep 0.5
    echo "$round $p first_byte_ms $(taskset -c 1 python3 bench/proxy/first_byte.py 127.0.0.1 18090)" >> "$raw"
    kill "$activator"; wait "$activator" 2>/dev/null || true
  done
done

echo
echo "bench/proxy.sh $rounds rounds of ${seconds}s, $(nproc) cores, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg); raw figures in $raw"
python3 bench/proxy/summarize.py "$raw" | tee "$out/summary.md"
