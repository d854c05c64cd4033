#!/usr/bin/env python3
"""Tables and charts for bench/web.sh: medians over rounds, ratios inside rounds; writes gnuplot scripts
(SVG into docs/bench/) next to the raw data."""
import collections
import statistics
import sys

raw, out = sys.argv[1], sys.argv[2]
data = collections.defaultdict(dict)  # (group, server, metric) -> {round: value}
for line in open(raw):
    r, group, server, metric, value = line.split()
    data[(group, server, metric)][int(r)] = float(value)

def med(group, server, metric):
    return statistics.median(data[(group, server, metric)].values())

def ratio(group, a, b, metric):
    x, y = data[(group, a, metric)], data[(group, b, metric)]
    values = [x[r] / y[r] for r in x if r in y and y[r] > 0]
    return statistics.median(values) if values else float("nan")

def chart(name, title, ylabel, rows):
    with open(f"{out}/{name}.dat", "w") as f:
        for label, value in rows:
            f.write(f'"{label}" {value}\n')
    with open(f"{out}/{name}.gp", "w") as f:
        f.write(f'''set terminal svg size 640,360 dynamic font "sans,11"
set output "docs/bench/{name}.svg"
set title "{title}"
set ylabel "{ylabel}"
set style fill solid 0.8
set boxwidth 0.6
set yrange [0:*]
set grid ytics
unset key
plot "{out}/{name}.dat" using 0:2:xtic(1) with boxes lc rgb "#3a6ea5", "" using 0:2:(sprintf("%.0f", $2)) with labels offset 0,0.7
''')

names = {"iomux": "IoMux", "dotnet": ".NET async sockets", "c": "C epoll", "nginx": "nginx"}
print("## hello (requests/s, 50 keep-alive connections, one thread each)")
print("| server | req/s | p99 µs | vs IoMux |")
print("| --- | --- | --- | --- |")
for s in ("iomux", "dotnet", "c", "nginx"):
    print(f"| {names[s]} | {med('hello', s, 'rps'):.0f} | {med('hello', s, 'p99_us'):.0f} | {ratio('hello', s, 'iomux', 'rps'):.2f}x |")
print(f"\nIoMux / .NET async sockets: {ratio('hello', 'iomux', 'dotnet', 'rps'):.2f}x (target >= 1.3); "
      f"IoMux / nginx: {ratio('hello', 'iomux', 'nginx', 'rps'):.2f}x (target >= 1.0); "
      f"IoMux / C: {ratio('hello', 'iomux', 'c', 'rps'):.2f}x (target >= 0.85)")
chart("hello", "HTTP hello, 50 connections, one thread", "requests/s",
      [(names[s], med("hello", s, "rps")) for s in ("iomux", "dotnet", "c", "nginx")])

print("\n## static files (requests/s, wrk -c50)")
print("| file | iomux serve | nginx | iomux / nginx |")
print("| --- | --- | --- | --- |")
for f in ("1k", "1m"):
    print(f"| {f} | {med('file_' + f, 'iomux', 'rps'):.0f} | {med('file_' + f, 'nginx', 'rps'):.0f} | {ratio('file_' + f, 'iomux', 'nginx', 'rps'):.2f}x |")
chart("files", "Static files, 50 connections, one thread", "requests/s",
      [(f"{who} {f}", med("file_" + f, s, "rps")) for f in ("1k", "1m") for s, who in (("iomux", "iomux serve"), ("nginx", "nginx"))])

print("\n## echo (64-byte messages, 50 connections, one in flight each)")
print("| server | messages/s | p99 µs | vs IoMux |")
print("| --- | --- | --- | --- |")
for s in ("iomux", "dotnet", "c"):
    print(f"| {names[s]} | {med('echo', s, 'mps'):.0f} | {med('echo', s, 'p99_us'):.0f} | {ratio('echo', s, 'iomux', 'mps'):.2f}x |")
print(f"\nIoMux / .NET async sockets: {ratio('echo', 'iomux', 'dotnet', 'mps'):.2f}x (target >= 1.3); "
      f"IoMux / C: {ratio('echo', 'iomux', 'c', 'mps'):.2f}x (target >= 0.85)")
chart("echo", "Echo, 64-byte messages, 50 connections, one thread", "messages/s",
      [(names[s], med("echo", s, "mps")) for s in ("iomux", "dotnet", "c")])
