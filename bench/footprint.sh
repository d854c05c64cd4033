#!/usr/bin/env bash
# Footprint (issue 15 item 7; issue 24 item 3), side by side in one run: resident memory and threads of
# iomux-socket-proxyd in its two builds (Native AOT, bench/aot-publish.sh; framework-dependent ReadyToRun, as
# bench/proxy.sh publishes it) and systemd-socket-proxyd (each socket-activated, relaying to nginx), and of iomux
# hello (both builds), the C hello server and an nginx worker, idle after a warm-up; then the proxies while relaying
# one and 50 open connections (bench/proxy/hold.py: a request relayed and answered on each). Memory three ways
# (/proc/PID/smaps_rollup): RSS; private (Private_Clean + Private_Dirty: what this process alone costs, the figure a
# host running many of them pays per copy); PSS (shared pages divided among their sharers). The JIT build's .NET
# runtime (System.Private.CoreLib, libcoreclr, libclrjit) is mapped from files that every .NET process on the host
# shares: it counts in RSS, not in private; the native build carries its runtime inside the binary.
#   bench/footprint.sh          (about 5 minutes: the two native compiles of bench/aot-publish.sh come first)
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/out/footprint
mkdir -p "$out"
command -v gcc >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq gcc libc6-dev >/dev/null; }
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; }
gcc -O2 -o "$out/hello_epoll" bench/c/hello_epoll.c
dotnet publish src/Cli -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true -o "$out/iomux" -v quiet -nologo | tail -n 1
bench/aot-publish.sh "$out/aot"
iomux="$PWD/$out/iomux/IoMux.Cli"
proxyd="$PWD/$out/iomux/iomux-socket-proxyd"
iomux_aot="$PWD/$out/aot/bin/iomux"
proxyd_aot="$PWD/$out/aot/bin/iomux-socket-proxyd"
systemd_proxyd=$(command -v systemd-socket-proxyd || echo /lib/systemd/systemd-socket-proxyd)

work=$(mktemp -d /tmp/iomux-footprint.XXXXXX)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
user=""; [ "$(id -u)" = 0 ] && user="user root;"
mkdir -p "$work/www"; echo hello > "$work/www/index.html"
cat > "$work/nginx.conf" <<NGINX
daemon off; master_process on; worker_processes 1; $user
pid $work/nginx.pid; error_log $work/error.log;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:18780; root $work/www; } }
NGINX
nginx -p "$work" -c "$work/nginx.conf" -e "$work/error.log" & pids+=($!)
"$iomux" hello --threads 1 --port 18781 2>/dev/null & pids+=($!); hello=$!
"$out/hello_epoll" hello 18782 & pids+=($!); c_hello=$!
systemd-socket-activate -l 127.0.0.1:18783 "$proxyd" 127.0.0.1:18780 2>/dev/null & pids+=($!); iomux_proxy=$!
systemd-socket-activate -l 127.0.0.1:18784 "$systemd_proxyd" 127.0.0.1:18780 2>/dev/null & pids+=($!); systemd_proxy=$!
systemd-socket-activate -l 127.0.0.1:18785 "$proxyd_aot" 127.0.0.1:18780 2>/dev/null & pids+=($!); aot_proxy=$!
"$iomux_aot" hello --threads 1 --port 18786 2>/dev/null & pids+=($!); hello_aot=$!
sleep 2
nginx_worker=$(pgrep -P "$(cat "$work/nginx.pid")" | head -n 1)

measure() { # NAME PID STATE
  local kb; kb=$(awk '/^Rss:/ {r=$2} /^Pss:/ {p=$2} /^Private_Clean:/ {c=$2} /^Private_Dirty:/ {d=$2} END {printf "%.1f %.1f %.1f", r/1024, (c+d)/1024, p/1024}' "/proc/$2/smaps_rollup")
  echo "| $1 | $3 | ${kb// / | } | $(awk '/^Threads:/ {print $2}' "/proc/$2/status") |"
}
get() { curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$1/" ; }
for port in 18781 18782 18783 18784 18785 18786 18780; do get $port; get $port; done   # warm; activates the proxies
sleep 5   # past the tiering worker's idle exit (4 s) and start-up's transient threads
proxies=("iomux-socket-proxyd AOT:$aot_proxy:18785" "iomux-socket-proxyd R2R:$iomux_proxy:18783" "systemd-socket-proxyd:$systemd_proxy:18784")
# relaying COUNT: COUNT connections held open through every proxy at once (hold.py), then each proxy measured.
relaying() {
  local holders=() entry port i
  for entry in "${proxies[@]}"; do
    port=${entry##*:}
    rm -f "$work/ready.$port"
    python3 bench/proxy/hold.py 127.0.0.1 "$port" "$1" "$work/ready.$port" & holders+=($!)
  done
  for entry in "${proxies[@]}"; do
    port=${entry##*:}
    for i in $(seq 1 100); do [ -s "$work/ready.$port" ] && break; sleep 0.1; done
    [ -s "$work/ready.$port" ] || echo "footprint: $1 connections through port $port not ready in 10 s" >&2
  done
  sleep 1
  for entry in "${proxies[@]}"; do
    i=${entry#*:}
    measure "${entry%%:*}" "${i%%:*}" "relaying $1"
  done
  for i in "${holders[@]}"; do kill "$i" 2>/dev/null || true; wait "$i" 2>/dev/null || true; done
  sleep 1
}
{
  echo "| process | state | RSS MiB | private MiB | PSS MiB | threads |"
  echo "| --- | --- | --- | --- | --- | --- |"
  for p in "iomux-socket-proxyd AOT:$aot_proxy" "iomux-socket-proxyd R2R:$iomux_proxy" "systemd-socket-proxyd:$systemd_proxy" \
           "iomux hello AOT:$hello_aot" "iomux hello R2R:$hello" "C hello (epoll):$c_hello" "nginx worker:$nginx_worker"; do
    measure "${p%%:*}" "${p##*:}" idle
  done
  relaying 1
  relaying 50
} | tee "$out/summary.md"
for p in "$aot_proxy" "$iomux_proxy" "$hello"; do
  echo "threads of $(cat /proc/$p/comm): $(for t in /proc/$p/task/*; do cat "$t/comm"; done | sort | uniq -c | awk '{$1=$1; print}' | paste -sd ';')"
done | tee -a "$out/summary.md"
