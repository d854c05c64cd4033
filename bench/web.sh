#!/usr/bin/env bash
# Web-server building blocks, side by side in one run (issue 6), each server on one thread pinned to CPU 0,
# the load generator on CPU 1:
#   hello: IoMux (iomux hello) vs .NET async sockets vs C epoll vs nginx `return 200`, requests/s at 50
#          keep-alive connections (bench/c/http_load.c: one request in flight per connection);
#   files: iomux serve vs nginx, the same 1 KiB and 1 MiB files, requests/s at 50 connections (wrk);
#   echo:  IoMux vs .NET async sockets vs C epoll, 64-byte messages on 50 connections: messages/s and p99.
# Every configuration runs once per round, order rotated; ratios are taken inside a round, then the median.
# Charts (SVG, gnuplot) go to docs/bench/.        bench/web.sh [rounds]     (BENCH_SECONDS, default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
seconds=${BENCH_SECONDS:-5}
out=bench/out/web
mkdir -p "$out" docs/bench
raw="$out/raw.txt"; : > "$raw"

need=""
for tool in nginx wrk gnuplot gcc; do command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || need="$need $tool"; done
if [ -n "$need" ]; then
  need=${need/gnuplot/gnuplot-nox}
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need libc6-dev >/dev/null
fi
for tool in hello_epoll http_load echo_load; do gcc -O2 -o "$out/$tool" "bench/c/$tool.c"; done
dotnet publish src/Cli -c Release -r linux-x64 --self-contained false -p:PublishReadyToRun=true -o "$out/iomux" -v quiet -nologo | tail -n 1
dotnet publish bench/DotnetSockets/DotnetSockets.csproj -c Release -o "$out/dotnet-sockets" -v quiet -nologo | tail -n 1
iomux="$PWD/$out/iomux/IoMux.Cli"
dotnet_sockets="$PWD/$out/dotnet-sockets/DotnetSockets"

work=$(mktemp -d /tmp/iomux-web-bench.XXXXXX)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

mkdir -p "$work/www"
head -c 1024 /dev/urandom > "$work/www/1k.bin"
head -c 1048576 /dev/urandom > "$work/www/1m.bin"
user=""; [ "$(id -u)" = 0 ] && user="user root;"
cat > "$work/nginx.conf" <<NGINX
daemon off; master_process on; worker_processes 1; $user
pid $work/nginx.pid; error_log $work/error.log;
events { worker_connections 4096; }
http { access_log off; sendfile on; tcp_nopush on; tcp_nodelay on; keepalive_requests 1000000;
  server { listen 127.0.0.1:18480 backlog=4096; root $work/www;
    location = /hello { default_type text/plain; return 200 "Hello, World!"; } } }
NGINX

on0() { taskset -c 0 "$@" >/dev/null 2>&1 & pids+=($!); }
on0 nginx -p "$work" -c "$work/nginx.conf" -e "$work/error.log"
on0 "$iomux" hello --threads 1 --port 18481
on0 "$dotnet_sockets" hello 18482
on0 "$out/hello_epoll" hello 18483
on0 "$iomux" serve "$work/www" --threads 1 --port 18484
on0 "$iomux" echo --threads 1 --port 18485
on0 "$dotnet_sockets" echo 18486
on0 "$out/hello_epoll" echo 18487
sleep 2

declare -A hello_port=([iomux]=18481 [dotnet]=18482 [c]=18483 [nginx]=18480)
declare -A hello_path=([iomux]=/ [dotnet]=/ [c]=/ [nginx]=/hello)
declare -A serve_port=([iomux]=18484 [nginx]=18480)
declare -A echo_port=([iomux]=18485 [dotnet]=18486 [c]=18487)
rotate() { local r=$1; shift; local a=("$@"); local k=$(( (r - 1) % ${#a[@]} )); echo "${a[@]:$k}" "${a[@]:0:$k}"; }

echo "warm-up"
for s in iomux dotnet c nginx; do taskset -c 1 "$out/http_load" "${hello_port[$s]}" 50 2 "${hello_path[$s]}" >/dev/null; done
for s in iomux dotnet c; do taskset -c 1 "$out/echo_load" "${echo_port[$s]}" 50 64 2 >/dev/null; done
for s in iomux nginx; do taskset -c 1 wrk -t1 -c50 -d2s "http://127.0.0.1:${serve_port[$s]}/1k.bin" >/dev/null; done

for round in $(seq 1 "$rounds"); do
  echo "round $round/$rounds"
  for s in $(rotate "$round" iomux dotnet c nginx); do
    set -- $(taskset -c 1 "$out/http_load" "${hello_port[$s]}" 50 "$seconds" "${hello_path[$s]}")
    echo "$round hello $s rps $4" >> "$raw"
    echo "$round hello $s p99_us $8" >> "$raw"
  done
  for file in 1k 1m; do
    for s in $(rotate "$round" iomux nginx); do
      rps=$(taskset -c 1 wrk -t1 -c50 -d"${seconds}s" "http://127.0.0.1:${serve_port[$s]}/$file.bin" | awk '/Requests\/sec/ {print $2}')
      echo "$round file_$file $s rps $rps" >> "$raw"
    done
  done
  for s in $(rotate "$round" iomux dotnet c); do
    set -- $(taskset -c 1 "$out/echo_load" "${echo_port[$s]}" 50 64 "$seconds")
    echo "$round echo $s mps $4" >> "$raw"
    echo "$round echo $s p99_us $8" >> "$raw"
  done
done

echo
echo "bench/web.sh $rounds rounds of ${seconds}s, $(nproc) cores, $(uname -r); raw figures in $raw"
python3 bench/web/summarize.py "$raw" "$out" | tee "$out/summary.md"
for chart in "$out"/*.gp; do gnuplot "$chart"; done
ls docs/bench/*.svg
