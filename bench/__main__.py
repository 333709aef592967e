"""`make bench`: every benchmark, one after the other, each printing its table."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = (
    ["bench.sandbox_footprint", "--runs", "3"],
    [
        "bench.rollback_latency",
        "--rounds",
        "10",
        "--intervals",
        "5,30,60",
        "--failure-limits",
        "0,1",
    ],
    ["bench.scale", "--sizes", "100,500,2000", "--rollouts", "200"],
    ["bench.scale", "--sizes", "200", "--rollouts", "200", "--builtin", "--idle", "10"],
    ["bench.config_memory", "--services", "100", "--objects", "5000", "--size-kib", "50"],
    ["bench.dashboard", "--services", "500", "--loads", "10"],
    # Builds Argo Rollouts and Flagger first (hack/build-peers.sh), once.
    ["bench.peers", "--rounds", "10", "--interval", "10"],
)


def main() -> None:
    failed = 0
    for module, *args in BENCHMARKS:
        print(f"\n### python -m {module} {' '.join(args)}", flush=True)
        failed += subprocess.run([sys.executable, "-m", module, *args], check=False).returncode != 0
    sys.exit(1 if failed else 0)  # an error, not a missed target


if __name__ == "__main__":
    main()
