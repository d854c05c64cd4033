"""The soak of bench/soak.sh: processes, load, faults, samples, verdict. Loopback only; every loop bounded."""
import argparse, hashlib, os, random, signal, socket, subprocess, sys, tempfile, threading, time

p = argparse.ArgumentParser()
p.add_argument("--seconds", type=int, default=600)
p.add_argument("--iomux", required=True)
p.add_argument("--proxy", required=True)
p.add_argument("--out", required=True)
p.add_argument("--clients", type=int, default=32)
args = p.parse_args()

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
    files[name] = hashlib.sha256(data).hexdigest()

echo_port, proxy_port, serve_port = free_port(), free_port(), free_port()
procs = {}
def start_echo():
    procs["echo"] = subprocess.Popen([args.iomux, "echo", "-p", str(echo_port), "-t", "1"], stdout=subprocess.DEVNULL, stderr=open(f"{work}/echo.err", "a"))
start_echo()
procs["proxy"] = subprocess.Popen(["systemd-socket-activate", "-l", f"127.0.0.1:{proxy_port}", args.proxy, f"127.0.0.1:{echo_port}",
                                   "--connect-timeout", "5s", "--drain-time", "10s"],
                                  stdout=subprocess.DEVNULL, stderr=open(f"{work}/proxy.err", "w"))
procs["serve"] = subprocess.Popen([args.iomux, "serve", f"{work}/www", "-p", str(serve_port), "-t", "1"], stdout=subprocess.DEVNULL, stderr=open(f"{work}/serve.err", "w"))

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
        for proc in procs.values(): proc.kill()
        sys.exit(1)

stats = {"echo_ok": 0, "echo_bytes": 0, "echo_lost": 0, "echo_failed": 0, "resets": 0,
         "files_ok": 0, "file_bytes": 0, "files_bad": 0, "files_failed": 0, "faults": {}}
lock = threading.Lock()
stop = threading.Event()
def count(key, n=1):
    with lock: stats[key] += n

def echo_client(seed):
    rng = random.Random(seed)
    while not stop.is_set():
        payload = rng.randbytes(rng.randint(1, 256 << 10))
        reset = rng.random() < 0.05
        try:
            with socket.create_connection(("127.0.0.1", proxy_port), timeout=10) as s:
                s.settimeout(10)
                if reset:
                    s.sendall(payload[: len(payload) // 2])
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    count("resets"); continue          # closed with RST mid-transfer
                def send_all():
                    try:
                        s.sendall(payload); s.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass  # cut by a fault: the receive side counts it
                sender = threading.Thread(target=send_all)
                sender.start()
                got = bytearray()
                while len(got) < len(payload):
                    chunk = s.recv(65536)
                    if not chunk: break
                    got += chunk
                sender.join(10)
                if len(got) == len(payload):
                    if hashlib.sha256(got).digest() == hashlib.sha256(payload).digest():
                        count("echo_ok"); count("echo_bytes", len(payload))
                    else:
                        count("echo_lost", len(payload))      # bytes changed on the way: must never happen
                else:
                    count("echo_failed")                     # connection cut by a fault: expected sometimes
        except OSError:
            count("echo_failed"); time.sleep(0.05)

def file_client(seed):
    rng = random.Random(seed)
    while not stop.is_set():
        name = rng.choice(list(files))
        try:
            with socket.create_connection(("127.0.0.1", serve_port), timeout=10) as s:
                s.settimeout(10)
                s.sendall(f"GET /{name} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                data = bytearray()
                while True:
                    chunk = s.recv(1 << 16)
                    if not chunk: break
                    data += chunk
            body = bytes(data[data.find(b"\r\n\r\n") + 4:])
            if hashlib.sha256(body).hexdigest() == files[name]:
                count("files_ok"); count("file_bytes", len(body))
            else:
                count("files_bad")
        except OSError:
            count("files_failed"); time.sleep(0.05)

def sample(name, pid):
    try:
        status = open(f"/proc/{pid}/status").read()
        rss = int(next(l for l in status.splitlines() if l.startswith("VmRSS")).split()[1])
        threads = int(next(l for l in status.splitlines() if l.startswith("Threads")).split()[1])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        return rss, fds, threads
    except (OSError, StopIteration):
        return None

def fault(kind):
    with lock: stats["faults"][kind] = stats["faults"].get(kind, 0) + 1
    if kind == "restart-backend":
        procs["echo"].send_signal(signal.SIGTERM); procs["echo"].wait(10); start_echo(); wait_port(echo_port)
    elif kind == "stop-backend":
        procs["echo"].send_signal(signal.SIGSTOP); time.sleep(3); procs["echo"].send_signal(signal.SIGCONT)
    elif kind == "squeeze-proxy-fds":
        # Only the soft limit moves: lowering the hard one could not be undone without CAP_SYS_RESOURCE.
        pid = procs["proxy"].pid; n = len(os.listdir(f"/proc/{pid}/fd"))
        line = next(l for l in open(f"/proc/{pid}/limits") if l.startswith("Max open files")).split()
        soft, hard = line[3], line[4]
        # To what is open plus the runtime's reserve (DescriptorBudget.Reserve = 16) and two: the proxy must stop
        # taking descriptors and keep relaying. A squeeze to open + 1, which no server can fully survive (the
        # runtime needs two free descriptors to start any thread), is tools/fdlimit/stress.sh's job.
        subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={n + 18}:{hard}"], check=False); time.sleep(3)
        subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={soft}:{hard}"], check=False)

threads = [threading.Thread(target=echo_client, args=(i,), daemon=True) for i in range(args.clients)]
threads += [threading.Thread(target=file_client, args=(1000 + i,), daemon=True) for i in range(4)]
for t in threads: t.start()
samples = open(f"{args.out}/samples.csv", "w")
samples.write("t,process,rss_kib,fds,threads\n")
start = time.time(); next_fault = start + 10; kinds = ["restart-backend", "stop-backend", "squeeze-proxy-fds"]; k = 0
first = {}
while time.time() - start < args.seconds:
    for name in ("proxy", "serve"):
        s = sample(name, procs[name].pid)
        if s:
            samples.write(f"{time.time() - start:.0f},{name},{s[0]},{s[1]},{s[2]}\n"); first.setdefault(name, s)
    samples.flush()
    if time.time() >= next_fault:
        threading.Thread(target=fault, args=(kinds[k % len(kinds)],), daemon=True).start(); k += 1
        next_fault = time.time() + max(10, args.seconds / 30)
    time.sleep(1)
last = {name: sample(name, procs[name].pid) for name in ("proxy", "serve")}
# SIGTERM under load: the proxy drains and exits 0; the servers exit 0.
procs["proxy"].send_signal(signal.SIGTERM); procs["serve"].send_signal(signal.SIGTERM)
codes = {name: procs[name].wait(30) for name in ("proxy", "serve")}
stop.set()
for t in threads: t.join(15)
procs["echo"].send_signal(signal.SIGTERM); procs["echo"].wait(10)
with lock:
    lines = [f"seconds {args.seconds}, echo clients {args.clients}, file clients 4",
             f"echo: {stats['echo_ok']} exchanges verified ({stats['echo_bytes'] >> 20} MiB), {stats['echo_failed']} cut by faults, {stats['resets']} client resets mid-transfer",
             f"files: {stats['files_ok']} downloads verified ({stats['file_bytes'] >> 20} MiB), {stats['files_failed']} failed connections",
             f"faults injected: {stats['faults']}",
             f"bytes lost or changed: {stats['echo_lost']} (echo), {stats['files_bad']} bad downloads",
             f"exit codes after SIGTERM under load: {codes}"]
    for name in ("proxy", "serve"):
        if name in first and last.get(name):
            lines.append(f"{name}: RSS {first[name][0] >> 10} -> {last[name][0] >> 10} MiB, descriptors {first[name][1]} -> {last[name][1]}, threads {first[name][2]} -> {last[name][2]}")
for name in ("proxy", "serve", "echo"):
    err = open(f"{work}/{name}.err").read()
    if "terminate called" in err or "Unhandled exception" in err or "Out of memory" in err:
        lines.append(f"{name} CRASHED: " + err.strip().splitlines()[-1])
summary = "\n".join(lines)
open(f"{args.out}/summary.txt", "w").write(summary + "\n")
print(summary)
ok = "CRASHED" not in "".join(lines) and stats["echo_lost"] == 0 and stats["files_bad"] == 0 and stats["echo_ok"] > 0 and stats["files_ok"] > 0 and all(c == 0 for c in codes.values())
if subprocess.run(["which", "gnuplot"], capture_output=True).returncode == 0:
    subprocess.run(["gnuplot", "-e", f"""set terminal svg size 900,400; set output '{args.out}/soak.svg'; set datafile separator ',';
set xlabel 'seconds'; set ylabel 'RSS MiB'; set y2label 'descriptors'; set y2tics; set key top left;
plot '< grep proxy {args.out}/samples.csv' using 1:($3/1024) with lines title 'proxy RSS', \
     '< grep serve {args.out}/samples.csv' using 1:($3/1024) with lines title 'serve RSS', \
     '< grep proxy {args.out}/samples.csv' using 1:4 axes x1y2 with lines title 'proxy fds', \
     '< grep serve {args.out}/samples.csv' using 1:4 axes x1y2 with lines title 'serve fds'"""], check=False)
sys.exit(0 if ok else 1)
