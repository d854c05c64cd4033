"""The soak of bench/soak.sh: processes, load, faults, samples, a strict verdict. Loopback only; every loop and
every wait bounded.

The verdict (issue 19, item 5). Each injected fault is recorded as a window (kind, start, end). A failed echo
exchange or download is *explained* only when it was detected inside a window or within GRACE seconds after its
end; every other failure is *unexplained* and fails the run. Some outcomes fail the run wherever they happen:
bytes changed, extra bytes, a truncated download (`iomux serve` is never faulted, so a cut download has no
excuse), a crash, an exit code other than 0 after SIGTERM. After the load, with every client stopped and the
processes idle, each process's descriptors and RSS must be within the bounds below."""
import argparse, atexit, errno, hashlib, os, random, resource, signal, socket, subprocess, sys, tempfile, threading, time

p = argparse.ArgumentParser()
p.add_argument("--seconds", type=int, default=600)
p.add_argument("--iomux", required=True)
p.add_argument("--proxy", required=True)
p.add_argument("--out", required=True)
p.add_argument("--clients", type=int, default=32)
p.add_argument("--file-clients", type=int, default=4)
args = p.parse_args()

# The stated bounds (docs/RELIABILITY.md, "Soak with faults").
GRACE = 5.0              # s after a fault window in which its failures still count as explained
ECHO_DEADLINE = 30.0     # s for one echo exchange, connect to end of stream
DOWNLOAD_DEADLINE = 30.0 # s for one download, connect to end of stream (8 MiB: well under a second when healthy)
CLOSE_AFTER_BODY = 2.0   # s from the last byte of a `Connection: close` response (or of the echo) to end of stream
FD_SLACK = 8             # descriptors a process may hold after the run above what it held idle before it
RSS_BOUND_MIB = {"proxy": 96, "serve": 128}  # RSS of each process, idle after the run (60 s runs: 42 and 48)

def free_port():
    # Below the ephemeral range (32768+ on Linux), so no client's source port can take it between here and bind.
    while True:
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port)); return port
            except OSError:
                continue

work = tempfile.mkdtemp(prefix="iomux-soak-")
files = {}
os.makedirs(f"{work}/www")
for name, size in (("small.bin", 4096), ("large.bin", 8 << 20)):
    data = random.randbytes(size)
    open(f"{work}/www/{name}", "wb").write(data)
    files[name] = (size, hashlib.sha256(data).hexdigest())

echo_port, proxy_port, serve_port = free_port(), free_port(), free_port()
procs = {}
def start_echo():
    procs["echo"] = subprocess.Popen([args.iomux, "echo", "-p", str(echo_port), "-t", "1"], stdout=subprocess.DEVNULL, stderr=open(f"{work}/echo.err", "a"))
start_echo()
procs["proxy"] = subprocess.Popen(["systemd-socket-activate", "-l", f"127.0.0.1:{proxy_port}", args.proxy, f"127.0.0.1:{echo_port}",
                                   "--connect-timeout", "5s", "--drain-time", "10s"],
                                  stdout=subprocess.DEVNULL, stderr=open(f"{work}/proxy.err", "w"))
procs["serve"] = subprocess.Popen([args.iomux, "serve", f"{work}/www", "-p", str(serve_port), "-t", "1"], stdout=subprocess.DEVNULL, stderr=open(f"{work}/serve.err", "w"))

def stop_all():
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT); proc.kill(); proc.wait(10)

atexit.register(stop_all)  # whatever ends this script, nothing it started outlives it

def failure_name(e):
    return "timeout" if isinstance(e, socket.timeout) else errno.errorcode.get(e.errno or 0, type(e).__name__)

def wait_port(port, deadline=10):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close(); return True
        except OSError:
            time.sleep(0.1)
    return False
for name, port in (("echo", echo_port), ("proxy", proxy_port), ("serve", serve_port)):
    if not wait_port(port) or procs[name].poll() is not None:
        print(f"{name} did not start on port {port} (exit {procs[name].poll()})", file=sys.stderr)
        stop_all(); sys.exit(1)

start = time.monotonic()
def now(): return time.monotonic() - start

lock = threading.Lock()
windows = []      # [kind, start, end]; end None while the fault lasts
outcomes = {}     # client -> {"ok": n, "explained": {reason: n}, "unexplained": {reason: n}, "resets": n}
unexplained = []  # (time, client, reason) of the first few, for the summary
totals = {"echo_bytes": 0, "file_bytes": 0, "max_close_delay": 0.0}

# What each fault can disturb: the backend and the proxy's limit touch only the echo path; `iomux serve` is
# faulted only by the final SIGTERM, so a download failure is never excused by an echo-side fault.
AFFECTS = {"restart-backend": "echo", "stop-backend": "echo", "squeeze-proxy-fds": "echo", "sigterm": "echo file"}

def explained(client, at, reason):
    with lock:
        return any(client.split("-")[0] in AFFECTS[w[0]].split() and w[1] <= at and (w[2] is None or at <= w[2] + GRACE)
                   and (reason not in ALWAYS_FAILS or reason in EXCUSES.get(w[0], ()))
                   for w in windows)

# Outcomes that no fault excuses: the bytes themselves were wrong, or a download from the unfaulted server was cut.
ALWAYS_FAILS = {"changed", "extra", "truncated", "bad-length"}
# Except one: on SIGTERM `iomux serve` closes its connections at once (docs/SERVERS.md, no drain), so a download in
# flight then is cut short, which its client sees by the Content-Length. Nothing else excuses a truncation.
EXCUSES = {"sigterm": ("truncated",)}

def record(client, reason, nbytes=0, kind="echo_bytes"):
    at = now()
    with lock:
        o = outcomes.setdefault(client, {"ok": 0, "explained": {}, "unexplained": {}, "resets": 0})
        if reason == "ok":
            o["ok"] += 1; totals[kind] += nbytes; return
        if reason == "reset":
            o["resets"] += 1; return
    bucket = "explained" if explained(client, at, reason) else "unexplained"
    with lock:
        o[bucket][reason] = o[bucket].get(reason, 0) + 1
        if bucket == "unexplained" and len(unexplained) < 20:
            unexplained.append((round(at, 1), client, reason))

def read_until(s, until, on_bytes):
    """Reads until end of stream or until() (an absolute monotonic deadline, re-read after every chunk);
    returns (eof, timed_out)."""
    while True:
        remaining = until() - time.monotonic()
        if remaining <= 0:
            return False, True
        s.settimeout(remaining)
        try:
            chunk = s.recv(1 << 16)
        except socket.timeout:
            return False, True
        if not chunk:
            return True, False
        on_bytes(chunk)

def echo_client(name, seed, stop):
    rng = random.Random(seed)
    while not stop.is_set():
        payload = rng.randbytes(rng.randint(1, 256 << 10))
        reset = rng.random() < 0.05
        deadline = time.monotonic() + ECHO_DEADLINE
        try:
            with socket.create_connection(("127.0.0.1", proxy_port), timeout=10) as s:
                if reset:
                    s.sendall(payload[: len(payload) // 2])
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    record(name, "reset"); continue    # closed with RST mid-transfer
                def send_all():
                    try:
                        s.sendall(payload); s.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass  # cut by a fault: the receive side counts it
                s.settimeout(ECHO_DEADLINE)
                sender = threading.Thread(target=send_all, daemon=True)
                sender.start()
                got = bytearray()
                complete = [None]  # when the last echoed byte arrived
                def on_bytes(chunk):
                    got.extend(chunk)
                    if complete[0] is None and len(got) >= len(payload):
                        complete[0] = time.monotonic()
                # After the whole echo, end of stream (the backend's FIN passed on) must follow within CLOSE_AFTER_BODY.
                eof, timed_out = read_until(s, lambda: deadline if complete[0] is None else min(deadline, complete[0] + CLOSE_AFTER_BODY), on_bytes)
                sender.join(max(0.0, deadline - time.monotonic()) + 1)
            if bytes(got[: len(payload)]) != payload[: len(got)]:
                record(name, "changed")                       # bytes changed on the way: never excused
            elif len(got) > len(payload):
                record(name, "extra")
            elif len(got) < len(payload):
                record(name, "timeout" if timed_out else "cut")
            elif not eof:
                record(name, "no-eof")
            else:
                record(name, "ok", len(payload))
        except OSError as e:  # connect refused, reset, broken pipe...: named by errno
            record(name, failure_name(e)); time.sleep(0.05)

def file_client(name, seed, stop):
    rng = random.Random(seed)
    while not stop.is_set():
        file = rng.choice(list(files))
        size, digest = files[file]
        deadline = time.monotonic() + DOWNLOAD_DEADLINE
        data = bytearray()
        state = {"head": -1, "status": None, "length": None, "complete": None}
        def on_bytes(chunk):
            data.extend(chunk)
            if state["head"] < 0 and (end := data.find(b"\r\n\r\n")) >= 0:
                state["head"] = end + 4
                lines = bytes(data[:end]).decode("latin-1").split("\r\n")
                state["status"] = lines[0].split(" ")[1] if " " in lines[0] else lines[0]
                for line in lines[1:]:
                    key, _, value = line.partition(":")
                    if key.strip().lower() == "content-length":
                        state["length"] = int(value.strip())
            if state["head"] >= 0 and state["complete"] is None and len(data) - state["head"] >= (state["length"] or size):
                state["complete"] = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", serve_port), timeout=10) as s:
                s.sendall(f"GET /{file} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                eof, timed_out = read_until(s, lambda: deadline if state["complete"] is None else min(deadline, state["complete"] + CLOSE_AFTER_BODY), on_bytes)
            body = bytes(data[state["head"]:]) if state["head"] >= 0 else b""
            if state["head"] < 0:
                record(name, "timeout" if timed_out else "no-response")
            elif state["status"] != "200":
                record(name, f"status-{state['status']}")
            elif state["length"] is not None and state["length"] != size:
                record(name, "bad-length")
            elif len(body) > size:
                record(name, "extra")
            elif len(body) < size:
                record(name, "timeout" if timed_out else "truncated")
            elif hashlib.sha256(body).hexdigest() != digest:
                record(name, "changed")
            elif not eof:
                record(name, "no-close")                         # every byte, then the connection stayed open
            else:
                with lock: totals["max_close_delay"] = max(totals["max_close_delay"], time.monotonic() - state["complete"])
                record(name, "ok", len(body), kind="file_bytes")
        except OSError as e:  # connect refused, reset, broken pipe...: named by errno
            record(name, failure_name(e)); time.sleep(0.05)

def sample(name):
    pid = procs[name].pid
    try:
        status = open(f"/proc/{pid}/status").read()
        rss = int(next(l for l in status.splitlines() if l.startswith("VmRSS")).split()[1])
        threads = int(next(l for l in status.splitlines() if l.startswith("Threads")).split()[1])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        return rss, fds, threads
    except (OSError, StopIteration):
        return None

fault_problems = []  # a fault that could not be injected as stated fails the run

def wait_stopped(pid, deadline):
    """True once every thread of pid is in the stopped state ('T' in /proc/PID/task/TID/stat); SIGSTOP stops a
    process's threads asynchronously. False when the deadline passes first."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        states = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                stat = open(f"/proc/{pid}/task/{tid}/stat").read()
                states.append(stat[stat.rindex(")") + 2])
            except OSError:
                pass  # a thread that just exited
        if states and all(s == "T" for s in states):
            return True
        time.sleep(0.001)
    return False

def fault(kind):
    window = [kind, now(), None]
    with lock: windows.append(window)
    try:
        if kind == "restart-backend":
            procs["echo"].send_signal(signal.SIGTERM); procs["echo"].wait(10); start_echo(); wait_port(echo_port)
        elif kind == "stop-backend":
            procs["echo"].send_signal(signal.SIGSTOP); time.sleep(3); procs["echo"].send_signal(signal.SIGCONT)
        elif kind == "squeeze-proxy-fds":
            # Only the soft limit moves: lowering the hard one could not be undone without CAP_SYS_RESOURCE.
            # To what is open plus the runtime's reserve (DescriptorBudget.Reserve = 16) and two: the proxy must stop
            # taking descriptors and keep relaying. A squeeze to open + 1, which no server can fully survive (the
            # runtime needs two free descriptors to start any thread), is tools/fdlimit/stress.sh's job.
            # The proxy is stopped (SIGSTOP, every thread seen stopped) while its descriptors are counted and the limit
            # set, and continued at once: counted while it ran, a busy proxy opened 19 more between the count and
            # prlimit (this script's threads hold the GIL in between), so the squeeze landed at zero headroom --
            # stress.sh's case, not this one -- and the proxy aborted (two CI runs on 2026-12-07).
            pid = procs["proxy"].pid
            soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
            os.kill(pid, signal.SIGSTOP)
            try:
                stopped = wait_stopped(pid, deadline=5.0)
                n = len(os.listdir(f"/proc/{pid}/fd"))
                resource.prlimit(pid, resource.RLIMIT_NOFILE, (n + 18, hard))
            finally:
                os.kill(pid, signal.SIGCONT)
            if not stopped:
                with lock: fault_problems.append("squeeze: the proxy was not seen stopped within 5 s of SIGSTOP")
            time.sleep(0.5)
            window.append(f"limit {n + 18}, open {n} while stopped, {len(os.listdir(f'/proc/{pid}/fd'))} after 0.5 s")
            time.sleep(2.5)
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    finally:
        window[2] = now()

def start_clients(stop, tag):
    threads = [threading.Thread(target=echo_client, args=(f"echo-{i:02}{tag}", seed_base + i, stop), daemon=True) for i in range(args.clients)]
    threads += [threading.Thread(target=file_client, args=(f"file-{i}{tag}", seed_base + 1000 + i, stop), daemon=True) for i in range(args.file_clients)]
    for t in threads: t.start()
    return threads

def join_all(threads, seconds):
    end = time.monotonic() + seconds
    for t in threads: t.join(max(0.0, end - time.monotonic()))
    return sum(t.is_alive() for t in threads)

def settle(name, seconds=10):
    """Descriptor and RSS sample once the descriptor count has stopped moving (bounded)."""
    end = time.monotonic() + seconds; last = sample(name)
    while time.monotonic() < end:
        time.sleep(0.5); s = sample(name)
        if s and last and s[1] == last[1]: return s
        last = s
    return last

# Idle baseline: one download of each file and one echo through the proxy warm the processes first.
seed_base = 1
for f, (size, _) in files.items():
    with socket.create_connection(("127.0.0.1", serve_port), timeout=10) as s:
        s.settimeout(10); s.sendall(f"GET /{f} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = 0
        while got < size:  # the head counts too: close enough for a warm-up
            chunk = s.recv(1 << 16)
            if not chunk: break
            got += len(chunk)
with socket.create_connection(("127.0.0.1", proxy_port), timeout=10) as s:
    s.settimeout(10); s.sendall(b"warm"); s.recv(16)
before = {name: settle(name) for name in ("proxy", "serve")}

stop = threading.Event()
threads = start_clients(stop, "")
samples = open(f"{args.out}/samples.csv", "w")
samples.write("t,process,rss_kib,fds,threads\n")
next_fault = 10; kinds = ["restart-backend", "stop-backend", "squeeze-proxy-fds"]; k = 0
faulters = []
died = {}
while now() < args.seconds:
    for name in ("proxy", "serve"):
        if procs[name].poll() is not None and name not in died:
            died[name] = (round(now()), procs[name].returncode)
        s = sample(name)
        if s: samples.write(f"{now():.0f},{name},{s[0]},{s[1]},{s[2]}\n")
    samples.flush()
    if now() >= next_fault and now() < args.seconds - 5:
        faulters.append(threading.Thread(target=fault, args=(kinds[k % len(kinds)],), daemon=True)); faulters[-1].start(); k += 1
        next_fault = now() + max(10, args.seconds / 30)
    time.sleep(1)
stop.set()
stuck = join_all(faulters, 30) + join_all(threads, max(ECHO_DEADLINE, DOWNLOAD_DEADLINE) + 10)
after = {name: settle(name) for name in ("proxy", "serve")}

# SIGTERM under load: a short burst of fresh clients, then both servers are stopped while it runs. Failures from
# the signal on are explained by its window (the listeners close); exit codes must be 0.
seed_base = 5000
burst = threading.Event()
burst_threads = start_clients(burst, "+")
time.sleep(3)
with lock: windows.append(["sigterm", now(), None])
procs["proxy"].send_signal(signal.SIGTERM); procs["serve"].send_signal(signal.SIGTERM)
codes = {}
for name in ("proxy", "serve"):
    try:
        codes[name] = procs[name].wait(30)
    except subprocess.TimeoutExpired:
        codes[name] = "no exit within 30 s"
burst.set()
stuck += join_all(burst_threads, max(ECHO_DEADLINE, DOWNLOAD_DEADLINE) + 10)
stop_all()

def total(bucket, prefix=""):
    return sum(sum(o[bucket].values()) for c, o in outcomes.items() if c.startswith(prefix))
def ok(prefix=""):
    return sum(o["ok"] for c, o in outcomes.items() if c.startswith(prefix))
lines = [f"seconds {args.seconds}, echo clients {args.clients}, file clients {args.file_clients}; grace {GRACE:g} s after each fault window "
         "(echo-side faults excuse echo failures only; SIGTERM excuses both)",
         f"echo: {ok('echo')} exchanges verified ({totals['echo_bytes'] >> 20} MiB), {total('explained', 'echo')} failures inside fault windows, "
         f"{total('unexplained', 'echo')} unexplained, {sum(o['resets'] for c, o in outcomes.items())} client resets mid-transfer",
         f"files: {ok('file')} downloads verified ({totals['file_bytes'] >> 20} MiB), {total('explained', 'file')} failures inside fault windows, "
         f"{total('unexplained', 'file')} unexplained; slowest close after the last byte {totals['max_close_delay']:.3f} s",
         "fault windows: " + ", ".join(f"{w[0]} {w[1]:.0f}-{w[2]:.0f}s" if w[2] is not None else f"{w[0]} {w[1]:.0f}s-" for w in windows)]
lines += [f"  squeeze at {w[1]:.0f} s: {w[3]}" for w in windows if len(w) > 3]
lines.append("per client (ok / explained failures / unexplained failures):")
for client in sorted(outcomes):
    o = outcomes[client]
    detail = lambda d: ",".join(f"{r}={n}" for r, n in sorted(d.items())) or "0"
    lines.append(f"  {client}: {o['ok']} / {detail(o['explained'])} / {detail(o['unexplained'])}")
for at, client, reason in unexplained:
    lines.append(f"UNEXPLAINED at {at} s: {client} {reason}")
lines.append(f"unexplained failures: {total('unexplained')}")
lines.append(f"exit codes after SIGTERM under load: {codes}")
for name, (at, code) in died.items():
    lines.append(f"{name} EXITED during the load at {at} s with {code}")
problems = [f"{name} exited during the load ({code} at {at} s)" for name, (at, code) in died.items()]
for name in ("proxy", "serve"):
    b, a = before.get(name), after.get(name)
    if not (b and a):
        problems.append(f"{name}: not sampled"); continue
    lines.append(f"{name} idle before -> idle after: RSS {b[0] >> 10} -> {a[0] >> 10} MiB (bound {RSS_BOUND_MIB[name]}), "
                 f"descriptors {b[1]} -> {a[1]} (bound {b[1] + FD_SLACK}), threads {b[2]} -> {a[2]}")
    if a[0] >> 10 > RSS_BOUND_MIB[name]: problems.append(f"{name} RSS {a[0] >> 10} MiB over {RSS_BOUND_MIB[name]}")
    if a[1] > b[1] + FD_SLACK: problems.append(f"{name} holds {a[1]} descriptors, over {b[1] + FD_SLACK}")
for name in ("proxy", "serve", "echo"):
    err = open(f"{work}/{name}.err").read()
    if "terminate called" in err or "Unhandled exception" in err or "Out of memory" in err:
        problems.append(f"{name} CRASHED: " + err.strip().splitlines()[-1])
if total("unexplained"): problems.append(f"{total('unexplained')} unexplained failures")
if ok("echo") == 0 or ok("file") == 0: problems.append("no verified echo or no verified download")
if any(c != 0 for c in codes.values()): problems.append(f"exit codes {codes}")
problems += fault_problems
if stuck: problems.append(f"{stuck} client or fault threads still running past their deadlines")
lines.append("verdict: " + ("PASS" if not problems else "FAIL: " + "; ".join(problems)))
summary = "\n".join(lines)
open(f"{args.out}/summary.txt", "w").write(summary + "\n")
print(summary)
if subprocess.run(["which", "gnuplot"], capture_output=True).returncode == 0:
    subprocess.run(["gnuplot", "-e", f"""set terminal svg size 900,400; set output '{args.out}/soak.svg'; set datafile separator ',';
set xlabel 'seconds'; set ylabel 'RSS MiB'; set y2label 'descriptors'; set y2tics; set key top left;
plot '< grep proxy {args.out}/samples.csv' using 1:($3/1024) with lines title 'proxy RSS', \
     '< grep serve {args.out}/samples.csv' using 1:($3/1024) with lines title 'serve RSS', \
     '< grep proxy {args.out}/samples.csv' using 1:4 axes x1y2 with lines title 'proxy fds', \
     '< grep serve {args.out}/samples.csv' using 1:4 axes x1y2 with lines title 'serve fds'"""], check=False, timeout=60)
sys.exit(0 if not problems else 1)
