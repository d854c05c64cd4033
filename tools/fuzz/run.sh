#!/usr/bin/env bash
# A bounded coverage-guided fuzzing campaign: tools/fuzz/run.sh [TARGET|all] [SECONDS]
#   TARGET   one of tests/IoMux.Fuzz/corpus/*, a comma-separated list of them, or all (the default); one
#            campaign after the other, never two at once
#   SECONDS  afl-fuzz's -V budget per target (default 120)
# Publishes tests/IoMux.Fuzz, instruments the product assemblies with SharpFuzz, runs one afl-fuzz at a time
# (niced: the machine is shared) and prints the figures from afl's fuzzer_stats. Everything goes under
# bench/out/fuzz (gitignored); crashes and hangs are in bench/out/fuzz/TARGET/out/default/{crashes,hangs}, and
# what each crash said in bench/out/fuzz/TARGET/crashes.log.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
target="${1:-all}"
seconds="${2:-120}"
out="$root/bench/out/fuzz"
bin="$out/bin"
tool_dir="${SHARPFUZZ_TOOL_PATH:-/tmp/sharpfuzz-tool}"
# The assemblies whose branches afl sees (the harness itself and the framework are not instrumented).
instrumented=(IoMux.dll IoMux.Web.dll iomux-socket-proxyd.dll)

if ! command -v afl-fuzz >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq afl++ >/dev/null
    else
        echo "afl-fuzz is missing: apt-get install afl++ (as root)" >&2
        exit 1
    fi
fi
if [ ! -x "$tool_dir/sharpfuzz" ]; then
    dotnet tool install --tool-path "$tool_dir" SharpFuzz.CommandLine --version 2.3.0 >/dev/null
fi

# A fresh publish every time: sharpfuzz rewrites the assemblies in place and refuses to instrument twice.
rm -rf "$bin"
dotnet publish "$root/tests/IoMux.Fuzz/IoMux.Fuzz.csproj" -c Release -o "$bin" -v q -nologo >/dev/null
for dll in "${instrumented[@]}"; do
    "$tool_dir/sharpfuzz" "$bin/$dll" >/dev/null
done

if [ "$target" = all ]; then
    targets=()
    for dir in "$root"/tests/IoMux.Fuzz/corpus/*/; do targets+=("$(basename "$dir")"); done
else
    IFS=, read -ra targets <<<"$target"
fi

# dotnet is not afl-instrumented itself (SharpFuzz talks to afl through the shared memory); no CPU pinning on a
# shared machine; no UI in a log; core_pattern is the machine's business, not the campaign's.
export AFL_SKIP_BIN_CHECK=1 AFL_NO_AFFINITY=1 AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
export DOTNET_TieredPGO=0 DOTNET_CLI_TELEMETRY_OPTOUT=1

for t in "${targets[@]}"; do
    corpus="$root/tests/IoMux.Fuzz/corpus/$t"
    dict="$root/tests/IoMux.Fuzz/dict/$t.dict"
    [ -d "$corpus" ] || { echo "no corpus for target '$t'" >&2; exit 2; }
    rm -rf "$out/$t"
    mkdir -p "$out/$t"
    echo "== $t: ${seconds}s"
    # What each crash said (afl keeps only the input): a timing-dependent finding may not repeat on replay.
    export IOMUX_FUZZ_LOG="$out/$t/crashes.log"
    # -V bounds the campaign; timeout bounds afl-fuzz itself should it hang in its start-up.
    timeout --kill-after=30 "$((seconds + 180))" nice -n 10 \
        afl-fuzz -i "$corpus" -o "$out/$t/out" -x "$dict" -t 5000 -m none -V "$seconds" \
        -- dotnet "$bin/IoMux.Fuzz.dll" "$t" >"$out/$t/afl.log" 2>&1 || echo "afl-fuzz exited with $? (log: $out/$t/afl.log)"
    stats="$out/$t/out/default/fuzzer_stats"
    if [ -f "$stats" ]; then
        awk -F' *: *' -v t="$t" '
            { v[$1] = $2 }
            END {
                printf "%s: execs %s, %s execs/s, paths %s (found %s), coverage %s, stability %s, crashes %s, hangs %s\n",
                    t, v["execs_done"], v["execs_per_sec"], v["corpus_count"], v["corpus_found"], v["bitmap_cvg"],
                    v["stability"], v["saved_crashes"], v["saved_hangs"]
            }' "$stats"
    else
        echo "$t: no fuzzer_stats; tail of the log:"
        tail -n 20 "$out/$t/afl.log"
    fi
done
