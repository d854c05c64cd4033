#!/usr/bin/env bash
# Footprint (issue 15 item 7), side by side in one run: resident memory and threads of iomux-socket-proxyd and
# systemd-socket-proxyd (socket-activated, relaying one open connection to nginx), and of iomux hello, the C hello
# server and an nginx worker, idle after a warm-up and while relaying. Memory three ways (/proc/PID/smaps_rollup):
# RSS; private (Private_Clean + Private_Dirty: what this process alone costs, the figure a host running many of
# them pays per copy); PSS. The .NET runtime's code (System.Private.CoreLib, libcoreclr, libclrjit) is mapped from
# files that every .NET process on the host shares: it counts in RSS, not in private.
#   bench/footprint.sh          (IoMux built ReadyToRun, Release, as bench/proxy.sh publishes it)
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/out/footprint
mkdir -p "$out"
command -v gcc >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq gcc libc6-dev >/dev/null; }
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; }
gcc -O2 -o "$out/hello_epoll" bench/c/hello_epoll.c
dotnet publish src/Cli -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true -o "$out/iomux" -v quiet -nologo | tail -n 1
iomux="$PWD/$out/iomux/IoMux.Cli"
proxyd="$PWD/$out/iomux/iomux-socket-proxyd"
systemd_proxyd=$(command -v systemd-socket-proxyd || echo /lib/systemd/systemd-socket-proxyd)

work=$(mktemp -d /tmp/iomux-footprint.XXXXXX)
pids=()
cleanup() { exec 3>&- 4>&- 2>/dev/null || true; for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
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
sleep 2
nginx_worker=$(pgrep -P "$(cat "$work/nginx.pid")" | head -n 1)

measure() { # NAME PID STATE
  local kb; kb=$(awk '/^Rss:/ {r=$2} /^Pss:/ {p=$2} /^Private_Clean:/ {c=$2} /^Private_Dirty:/ {d=$2} END {printf "%.1f %.1f %.1f", r/1024, (c+d)/1024, p/1024}' "/proc/$2/smaps_rollup")
  echo "| $1 | $3 | ${kb// / | } | $(awk '/^Threads:/ {print $2}' "/proc/$2/status") |"
}
get() { curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$1/" ; }
for port in 18781 18782 18783 18784 18780; do get $port; get $port; done   # warm; activates the proxies
sleep 5   # past the tiering worker's idle exit (4 s) and start-up's transient threads
{
  echo "| process | state | RSS MiB | private MiB | PSS MiB | threads |"
  echo "| --- | --- | --- | --- | --- | --- |"
  for p in "iomux-socket-proxyd:$iomux_proxy" "systemd-socket-proxyd:$systemd_proxy" "iomux hello:$hello" "C hello (epoll):$c_hello" "nginx worker:$nginx_worker"; do
    measure "${p%%:*}" "${p##*:}" idle
  done
  # One connection held open through each proxy, a request relayed on it.
  exec 3<>/dev/tcp/127.0.0.1/18783 4<>/dev/tcp/127.0.0.1/18784
  printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' >&3; printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' >&4
  sleep 1
  measure iomux-socket-proxyd "$iomux_proxy" "relaying 1"
  measure systemd-socket-proxyd "$systemd_proxy" "relaying 1"
} | tee "$out/summary.md"
for p in "$iomux_proxy" "$hello"; do
  echo "threads of $(cat /proc/$p/comm): $(for t in /proc/$p/task/*; do cat "$t/comm"; done | sort | uniq -c | awk '{$1=$1; print}' | paste -sd ';')"
done | tee -a "$out/summary.md"
