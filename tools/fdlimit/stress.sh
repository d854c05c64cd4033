#!/usr/bin/env bash
# Holds iomux servers at their descriptor limit and counts aborts (exit 134 / SIGABRT): issue 13, item 5.
#
#   tools/fdlimit/stress.sh [RUNS] [TARGET]     TARGET: hello (default), proxy, both
#
# One run: start the server as a process, warm it up, squeeze RLIMIT_NOFILE to (open descriptors + 1) with
# prlimit --pid, drive connections and first-time request types at it (bounded: curl --max-time, bash /dev/tcp),
# idle at the limit (so background work - tiered recompilation, GC, the thread pool's new threads - runs there),
# release the limit, check that it serves again (a GET within RESUME seconds must answer 200, else the run fails as
# "unserved"), repeat SQUEEZES times, then SIGTERM; exit code 0 expected.
# Environment: SQUEEZES (3), HOLD (seconds at the limit per squeeze, 2), EXTRA_ENV ("VAR=value ..." for the
# server, e.g. "DOTNET_EnableWriteXorExecute=0" or "DOTNET_TieredCompilation=0"), KEEP (directory for the
# stderr of failed runs, /tmp/fdlimit-stress), KEEP_ALL (keep it for every run), STRACE (syscalls to trace with
# strace -f -p while squeezed, e.g. "openat,memfd_create,socket,pipe2,eventfd2,dup,accept4,clone3"), BIN (the build output with IoMux.Cli and iomux-socket-proxyd).
# RESUME (seconds, 5): how long the first request after each release may take.
# Runs niced; a summary line "runs=N ok=N abort134=N other=N unserved=N" ends the output (exit 1 when any run failed).
set -u
RUNS=${1:-20}
TARGET=${2:-hello}
SQUEEZES=${SQUEEZES:-3}
HOLD=${HOLD:-2}
RESUME=${RESUME:-5}
KEEP=${KEEP:-/tmp/fdlimit-stress}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/src/Cli/bin/Debug/net10.0}
mkdir -p "$KEEP"
read -r -a EXTRA <<< "${EXTRA_ENV:-}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
open_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
# Only the soft limit moves: a lowered hard limit cannot be raised again without CAP_SYS_RESOURCE (prlimit says
# "Operation not permitted" even as root in a container), and the "release" would silently leave the process at
# its limit for good.
hard_limit() { awk '/^Max open files/ {print $5}' "/proc/$1/limits"; }
limit() { prlimit --pid "$1" --nofile="$2:$(hard_limit "$1")" 2>/dev/null; }
wait_listening() { for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# Connections and requests at the limit: kept-open sockets that queue in the backlog, bursts of curl with request
# kinds the server has not seen yet (404, HEAD, a body, a bad request), raw /dev/tcp writes. All bounded in time.
drive() {
    local port=$1 seconds=$2
    local end=$((SECONDS + seconds))
    local holders=()
    for _ in 1 2 3 4 5 6; do
        (exec 3<>"/dev/tcp/127.0.0.1/$port" && sleep "$seconds") 2>/dev/null & holders+=($!)
    done
    while ((SECONDS < end)); do
        for kind in get missing head post bad; do
            case $kind in
                get) curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/" & ;;
                missing) curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/no/such/page?x=$RANDOM" & ;;
                head) curl -s -o /dev/null --max-time 1 -I "http://127.0.0.1:$port/" & ;;
                post) curl -s -o /dev/null --max-time 1 -d "a=$RANDOM" "http://127.0.0.1:$port/" & ;;
                bad) (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'BREW /%s HTCPCP/1.0\r\n\r\n' $RANDOM >&3 && timeout 1 cat <&3 >/dev/null) 2>/dev/null & ;;
            esac
        done
        sleep 0.05
    done
    wait "${holders[@]}" 2>/dev/null
    wait 2>/dev/null
}

# Starts the target; sets PID (the process held at its limit), PORT (where clients connect), LOG, and CHILDREN
# (to stop afterwards).
start() {
    LOG=$(mktemp "$KEEP/run.XXXXXX.stderr")
    PORT=$(free_port)
    if [[ $1 == hello ]]; then
        env "${EXTRA[@]}" nice -n 10 "$BIN/IoMux.Cli" hello --port "$PORT" --threads 2 2>"$LOG" &
        PID=$!; CHILDREN=$PID
        wait_listening "$LOG" "listening on" || return 1
    else
        local backend_port; backend_port=$(free_port)
        nice -n 10 "$BIN/IoMux.Cli" hello --port "$backend_port" --threads 1 2>/dev/null &
        BACKEND=$!
        # systemd-socket-activate execs the proxy (same pid) at the first connection.
        local passed=(); for e in "${EXTRA[@]}"; do passed+=(-E "$e"); done
        nice -n 10 systemd-socket-activate -l "127.0.0.1:$PORT" "${passed[@]}" "$BIN/iomux-socket-proxyd" "127.0.0.1:$backend_port" 2>"$LOG" &
        PID=$!; CHILDREN="$PID $BACKEND"
        sleep 0.3
        wait_listening "/proc/$BACKEND/fd/2" "" ; sleep 0.5
    fi
}

runs=0 ok=0 aborts=0 other=0 unserved=0
for run in $(seq "$RUNS"); do
    for target in $([[ $TARGET == both ]] && echo "hello proxy" || echo "$TARGET"); do
        runs=$((runs + 1))
        start "$target"
        # Warm (activates the proxy) and wait until it really serves: squeezing a process that is still starting
        # tests start-up at the limit (the console's first write alone needs descriptors), not serving at it.
        warmed=0
        for _ in $(seq 30); do
            if [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PORT/") == 200 ]]; then warmed=1; break; fi
            sleep 0.5
        done
        if ((warmed == 0)); then
            echo "run $run ($target): never answered before the squeeze (machine too loaded?), stderr in $LOG"
        fi
        if [[ -n ${STRACE:-} ]]; then # which call fails at the limit: the failing syscall is just before the abort
            strace -f -tt ${STRACE_STACK:+-k} -e trace="$STRACE" -o "$LOG.strace" -p "$PID" 2>/dev/null & TRACER=$!; sleep 1
        fi
        original=$(prlimit --pid "$PID" --nofile --output SOFT --noheadings 2>/dev/null | tr -d ' ')
        resumed=1
        for squeeze in $(seq "$SQUEEZES"); do
            kill -0 "$PID" 2>/dev/null || break
            limit "$PID" $(( $(open_count "$PID") + 1 ))
            (drive "$PORT" "$HOLD") # a subshell: its wait is for its own clients only
            limit "$PID" "${original:-20000}"
            # Serving must resume once the limit is back: one request, answered 200 within RESUME seconds. (A
            # process that died is counted below by its exit code, not here.)
            code=$(curl -s -o /dev/null -w '%{http_code}' --max-time "$RESUME" "http://127.0.0.1:$PORT/")
            if [[ $code != 200 ]] && kill -0 "$PID" 2>/dev/null; then
                echo "run $run ($target): squeeze $squeeze: not serving after the limit was restored (HTTP ${code:-none} within ${RESUME} s)"
                resumed=0
            fi
        done
        kill -TERM "$PID" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PID" 2>/dev/null
        wait "$PID" 2>/dev/null; rc=$?
        for c in $CHILDREN; do [[ $c == "$PID" ]] || { kill -TERM "$c" 2>/dev/null; wait "$c" 2>/dev/null; }; done
        [[ -n ${STRACE:-} ]] && wait "$TRACER" 2>/dev/null
        if ((rc == 0 || rc == 143)) && ((resumed == 0)); then
            unserved=$((unserved + 1)); echo "run $run ($target): did not serve again after a squeeze, stderr kept in $LOG"
        elif ((rc == 0 || rc == 143)); then
            ok=$((ok + 1)); [[ -n ${KEEP_ALL:-} ]] || rm -f "$LOG" "$LOG.strace"
        elif ((rc == 134)); then
            aborts=$((aborts + 1)); echo "run $run ($target): exit 134, stderr kept in $LOG:"; tail -n 5 "$LOG"
        else
            other=$((other + 1)); echo "run $run ($target): exit $rc, stderr kept in $LOG:"; tail -n 5 "$LOG"
        fi
    done
done
echo "runs=$runs ok=$ok abort134=$aborts other=$other unserved=$unserved"
((aborts == 0 && other == 0 && unserved == 0))
