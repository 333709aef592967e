"""Warm `sandbox up` time and the idle memory of the whole sandbox.

    python -m bench.sandbox_footprint [--runs 3] [--idle 30]

Starts a fresh sandbox per run in a temporary directory (binaries from the
cache), times `up`, lets it idle, then sums the RSS of every process it
started (and their children), and stops it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from canary.sandbox import cluster


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=30.0)
    args = parser.parse_args()
    ups, totals = [], []
    per_component: dict[str, list[int]] = {}
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="canary-bench-") as tmp:
            began = time.monotonic()
            sandbox = cluster.up(Path(tmp), say=lambda _: None)
            ups.append(time.monotonic() - began)
            time.sleep(args.idle)
            total = 0
            for proc in sandbox.procs:
                kib = sum(rss_kib(p) for p in descendants(proc.pid))
                per_component.setdefault(proc.name, []).append(kib)
                total += kib
            totals.append(total)
            cluster.down(Path(tmp))
        print(f"run {run + 1}: up {ups[-1]:.1f}s, idle RSS {totals[-1] / 1024:.0f} MiB", flush=True)
    print()
    print(f"{'component':<26}{'idle RSS (MiB, median)':>24}")
    for name, values in per_component.items():
        print(f"{name:<26}{statistics.median(values) / 1024:>24.0f}")
    print(f"{'whole sandbox':<26}{statistics.median(totals) / 1024:>24.0f}")
    print()
    print(
        f"warm `sandbox up`: median {statistics.median(ups):.1f}s, max {max(ups):.1f}s "
        f"over {len(ups)} runs (idle {args.idle:g}s before measuring RSS)"
    )


if __name__ == "__main__":
    main()
