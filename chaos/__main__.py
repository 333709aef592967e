"""`make chaos` / `python -m chaos`: the chaos soak. Exit status 1 when it
counted a violation, 0 when none."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from analysis.durations import parse_duration
from chaos import report
from chaos.soak import Options, soak


async def _interruptible(work: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """SIGINT or SIGTERM cancel the soak, which still stops what it started
    (a stopped process is continued, controllers and sandbox are stopped)."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    return await task


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--duration", default="15m", help="how long faults go on (default 15m)")
    parser.add_argument("--seed", type=int, default=1, help="seeds every random choice (default 1)")
    parser.add_argument("--services", type=int, default=20, help="managed Services (default 20)")
    parser.add_argument(
        "--faults-per-minute", type=float, default=60.0, help="mean fault rate asked for"
    )
    parser.add_argument(
        "--grace", default="30s", help="how long a condition must last to count (default 30s)"
    )
    parser.add_argument("--settle", default="60s", help="calm after the faults (default 60s)")
    parser.add_argument(
        "--dir",
        default=f"/tmp/canary-chaos-{os.getpid()}",
        help="the sandbox's directory (default /tmp/canary-chaos-<pid>)",
    )
    parser.add_argument("--reuse-sandbox", action="store_true", help="use the sandbox in --dir")
    parser.add_argument("--keep-sandbox", action="store_true", help="leave the sandbox running")
    parser.add_argument("--report", default="chaos-report.json", help="JSON report path")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    options = Options(
        directory=Path(args.dir),
        seed=args.seed,
        duration_s=parse_duration(args.duration),
        services=args.services,
        faults_per_minute=args.faults_per_minute,
        grace_s=parse_duration(args.grace),
        settle_s=parse_duration(args.settle),
        report_path=Path(args.report),
        keep_sandbox=args.keep_sandbox,
        reuse_sandbox=args.reuse_sandbox,
    )
    result = asyncio.run(_interruptible(soak(options)))
    print(report.render(result))
    print(f"\nreport: {options.report_path}")
    sys.exit(1 if result["violations"] else 0)


if __name__ == "__main__":
    main()
