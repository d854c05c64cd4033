#!/usr/bin/env bash
# Native AOT builds of both commands for linux-x64 (issue 24): iomux (src/Cli) and iomux-socket-proxyd
# (src/SocketProxy), each one self-contained native binary (no .NET runtime on the host needed).
#   bench/aot-publish.sh [OUT]        (default OUT: bench/out/aot)
# leaves OUT/bin/iomux and OUT/bin/iomux-socket-proxyd, and fails (exit 1) on any trim or AOT warning: the ILC
# compiler's IL2xxx/IL3xxx warnings are errors under -warnaserror, and the log is searched for the word "warning" as well,
# since a warning that some target reports as a message-level diagnostic must fail it too.
# Each publish takes 1-3 minutes (the native compile and link); gcc (or clang) links.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-bench/out/aot}")
mkdir -p "$out/bin"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
status=0
publish() { # project, published binary, command name
  local log="$out/$3.publish.log"
  # --disable-build-servers: no MSBuild node or compiler server outlives the script (a test waiting for its
  # output would otherwise wait for them).
  if ! dotnet publish "$1" -c Release -r linux-x64 -p:PublishAot=true -warnaserror --disable-build-servers \
       -o "$out/$3" -nologo >"$log" 2>&1; then
    echo "aot-publish: $1 failed; the log ($log) ends:" >&2
    tail -n 30 "$log" >&2
    status=1
    return
  fi
  if grep -w "warning" "$log" >&2; then
    echo "aot-publish: $1 published with warnings (above; full log $log)" >&2
    status=1
  fi
  install -m 755 "$out/$3/$2" "$out/bin/$3"
  echo "aot-publish: $out/bin/$3 ($(stat -c %s "$out/bin/$3") bytes)"
}
publish src/SocketProxy iomux-socket-proxyd iomux-socket-proxyd
publish src/Cli IoMux.Cli iomux
exit $status
