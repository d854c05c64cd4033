#!/usr/bin/env python3
"""Draws docs/charts/*.png from the tables in docs/BENCHMARKS.md, so the charts show exactly the published numbers.

    python3 bench/charts.py                 # every chart
    python3 bench/charts.py --check         # parse the tables only (no matplotlib needed): exit 1 if one is missing

Needs matplotlib (Debian: apt-get install python3-matplotlib, then run it with /usr/bin/python3 if a pyenv
python3 comes first on PATH; or pip install matplotlib). Charts:
  aspnetcore-1core.png, aspnetcore-2cores.png  "ASP.NET Core on IoMux vs Kestrel's socket transport": requests/s
                                               per endpoint and connection count, one bar per transport
  proxy.png                                    "Socket-activation proxies in front of nginx", the latest run:
                                               p50 at one connection, req/s at 50 connections, bulk GiB/s
  latency.png                                  "Latency at one connection: spinning before sleep": p50 and p99 at
                                               one connection per server
Rerun it after a benchmark updates a table, and commit the PNGs with the table.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "docs", "BENCHMARKS.md")
OUT = os.path.join(ROOT, "docs", "charts")


def section(text, heading):
    """The body of the section whose heading line starts with `heading` (up to the next heading of its level or
    above)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("#") and line.lstrip("#").strip().startswith(heading):
            level = len(line) - len(line.lstrip("#"))
            body = []
            for follow in lines[i + 1:]:
                if follow.startswith("#") and len(follow) - len(follow.lstrip("#")) <= level:
                    break
                body.append(follow)
            return "\n".join(body)
    raise SystemExit(f"{BENCHMARKS}: no section '{heading}'")


def tables(body, header_start):
    """Every Markdown table in `body` whose header row starts with `header_start`: (header, rows of cells)."""
    found, lines = [], body.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(header_start) and i + 1 < len(lines) and lines[i + 1].startswith("| ---"):
            header = cells(line)
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append(cells(row))
            found.append((header, rows))
    if not found:
        raise SystemExit(f"{BENCHMARKS}: no table starting '{header_start}'")
    return found


def cells(row):
    return [c.strip() for c in row.strip().strip("|").split("|")]


def number(cell):
    """The first number of a cell: '71,457 **1.45x** (604 / 1750)' -> 71457, '17 100' -> 17100, '+48 µs' -> 48,
    '1.58 GiB/s' -> 1.58, '-' or '–' -> None."""
    # Thousands are grouped by "," or " " (three digits each); a space before anything else ends the number.
    m = re.search(r"\d{1,3}(?:[, ]\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?", cell.replace("**", ""))
    if not m:
        return None
    return float(m.group(0).replace(",", "").replace(" ", ""))


def plain(cell):
    return cell.replace("**", "").replace("`", "")


def aspnetcore(text, heading):
    header, rows = tables(section(text, heading), "| endpoint")[0]
    contestants = header[2:]
    groups = [f"{r[0]}\n{r[1]} conns" for r in rows]
    values = {c: [number(r[2 + j]) for r in rows] for j, c in enumerate(contestants)}
    return groups, values


def proxy(text):
    wanted = ["p50 at 1 conn", "p99 at 1 conn", "req/s at 50 conns", "bulk, 1 GiB"]
    runs = [t for t in tables(section(text, "Socket-activation proxies in front of nginx"), "| path") if all(w in t[0] for w in wanted)]
    if not runs:
        raise SystemExit(f"{BENCHMARKS}: no proxy table with the columns {wanted}")
    header, rows = runs[-1]  # the latest run
    col = {name: i for i, name in enumerate(header)}
    paths = [plain(r[0]) for r in rows]
    return paths, {
        "p50 at 1 conn (µs)": [number(r[col["p50 at 1 conn"]]) for r in rows],
        "p99 at 1 conn (µs)": [number(r[col["p99 at 1 conn"]]) for r in rows],
        "requests/s at 50 conns": [number(r[col["req/s at 50 conns"]]) for r in rows],
        "bulk, 1 GiB (GiB/s)": [number(r[col["bulk, 1 GiB"]]) for r in rows],
    }


def latency(text):
    header, rows = tables(section(text, "Latency at one connection: spinning before sleep"), "| server")[0]
    col = {name: i for i, name in enumerate(header)}
    return [plain(r[0]) for r in rows], [number(r[col["c1 p50 µs"]]) for r in rows], [number(r[col["c1 p99 µs"]]) for r in rows]


def main():
    text = open(BENCHMARKS, encoding="utf-8").read()
    one = aspnetcore(text, "1 core: requests/s")
    two = aspnetcore(text, "2 cores: requests/s")
    prox = proxy(text)
    lat = latency(text)
    if "--check" in sys.argv:
        print(f"tables found: ASP.NET Core 1 core ({len(one[0])} rows), 2 cores ({len(two[0])} rows), "
              f"proxy ({len(prox[0])} paths), latency ({len(lat[0])} servers)")
        return
    import matplotlib
    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    os.makedirs(OUT, exist_ok=True)
    source = "source: docs/BENCHMARKS.md (bench/charts.py)"

    def grouped(path, title, data, ylabel):
        groups, values = data
        fig, ax = plt.subplots(figsize=(12, 5))
        width = 0.8 / len(values)
        for j, (name, ys) in enumerate(values.items()):
            xs = [i + (j - (len(values) - 1) / 2) * width for i in range(len(groups))]
            ax.bar(xs, [y or 0 for y in ys], width, label=name)
        ax.set_xticks(range(len(groups)), groups)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=8, ncols=3)
        ax.grid(axis="y", alpha=0.3)
        fig.text(0.99, 0.01, source, ha="right", fontsize=7, color="gray")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)

    grouped(os.path.join(OUT, "aspnetcore-1core.png"),
            "ASP.NET Core on IoMux vs Kestrel's socket transport, 1 core (wrk, loopback; higher is better)",
            one, "requests/s")
    grouped(os.path.join(OUT, "aspnetcore-2cores.png"),
            "ASP.NET Core on IoMux vs Kestrel's socket transport, 2 cores (wrk, loopback; higher is better)",
            two, "requests/s")

    paths, series = prox
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.5))
    for ax, key in zip(axes, ["p50 at 1 conn (µs)", "requests/s at 50 conns", "bulk, 1 GiB (GiB/s)"]):
        ys = series[key]
        ax.barh(range(len(paths)), [y or 0 for y in ys], color=["gray"] + ["C0"] * (len(paths) - 1))
        ax.set_yticks(range(len(paths)), paths if ax is axes[0] else [""] * len(paths))
        ax.invert_yaxis()
        ax.set_title(key + (" (lower is better)" if "µs" in key else " (higher is better)"), fontsize=10)
        for i, y in enumerate(ys):
            if y is not None:
                ax.text(y, i, f" {y:g}", va="center", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Socket-activation proxies in front of nginx (latest run; gray: nginx directly)")
    fig.text(0.99, 0.01, source, ha="right", fontsize=7, color="gray")
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "proxy.png"), dpi=100)
    plt.close(fig)

    servers, p50, p99 = lat
    fig, ax = plt.subplots(figsize=(11, 5.5))
    ys = range(len(servers))
    ax.barh([y - 0.2 for y in ys], p50, 0.4, label="p50 µs")
    ax.barh([y + 0.2 for y in ys], p99, 0.4, label="p99 µs")
    ax.set_yticks(list(ys), servers, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("µs at one connection (lower is better)")
    ax.set_title("Latency at one connection: spinning before sleep (bench/latency.sh)")
    ax.legend()
    ax.grid(axis="x", alpha=0.3)
    fig.text(0.99, 0.01, source, ha="right", fontsize=7, color="gray")
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "latency.png"), dpi=100)
    plt.close(fig)
    print(f"wrote {', '.join(sorted(os.listdir(OUT)))} in {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main()
