#!/usr/bin/env bash
# Soak with faults (issue 13): iomux-socket-proxyd in front of `iomux echo`, and `iomux serve`, under sustained
# loopback load for SECONDS (default 600), while faults are injected: clients that reset mid-transfer, the
# backend restarted, the backend SIGSTOPped then SIGCONTed, the proxy's descriptor limit squeezed with prlimit(2)
# and released, and at the end SIGTERM drains under load. Every echoed byte and every downloaded file is checked
# by SHA-256; RSS, descriptors and threads of each process are sampled every second.
# The verdict is strict (issue 19): each fault is recorded as a window, and an echo or download that fails outside
# every window that can excuse it (plus a 5 s grace after it) fails the run, as do changed or extra bytes, a
# truncated download (but for one cut by the final SIGTERM: serve closes its connections at once), a
# download whose connection is not closed within 2 s of its last byte (`Connection: close`), a crash, an exit code
# other than 0, and after the run (idle) more than 8 descriptors above the idle count before it or RSS above
# 96 MiB (proxy) / 128 MiB (serve). Every download and echo has a 30 s deadline and every failure is counted,
# per client. The bounds are constants at the top of bench/soak/soak.py; docs/RELIABILITY.md has a run.
#   bench/soak.sh [SECONDS]        results: bench/out/soak/{samples.csv,summary.txt,soak.svg}; exit 1 on FAIL
# Bounded: every client, fault and wait has a deadline; everything started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
out=bench/out/soak
mkdir -p "$out"
need=""
for tool in systemd-socket-activate gnuplot; do command -v "$tool" >/dev/null 2>&1 || need="$need $tool"; done
if [ -n "$need" ] && [ "$(id -u)" = 0 ]; then
  need=${need/gnuplot/gnuplot-nox}; need=${need/systemd-socket-activate/systemd};
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need) >/dev/null 2>&1 || true
fi
dotnet publish src/Cli -c Release -o "$out/iomux" -v quiet -nologo | tail -n 1
dotnet publish src/SocketProxy -c Release -o "$out/proxyd" -v quiet -nologo | tail -n 1
exec python3 bench/soak/soak.py --seconds "$seconds" --iomux "$out/iomux/IoMux.Cli" --proxy "$out/proxyd/iomux-socket-proxyd" --out "$out"
