"""The `canary` command (also installed as `kubectl-canary`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def _sandbox(args: argparse.Namespace) -> int:
    from canary.sandbox import cluster

    directory = Path(args.dir) if args.dir else cluster.default_dir()
    if args.action == "up":
        try:
            sandbox = cluster.up(directory, nodes=args.nodes)
        except cluster.SandboxError as exc:
            print(f"canary sandbox up: {exc}", file=sys.stderr)
            return 1
        print(sandbox.env(), end="")
    elif args.action == "down":
        killed = cluster.down(directory)
        if killed:
            print(f"stopped; needed SIGKILL: {', '.join(killed)}", file=sys.stderr)
    elif args.action == "env":
        loaded = cluster.Sandbox.load(directory.resolve())
        if loaded is None:
            print(f"no sandbox in {directory}; run `canary sandbox up`", file=sys.stderr)
            return 1
        print(loaded.env(), end="")
    else:
        report = cluster.status(directory)
        print(json.dumps(report, indent=2))
        return 0 if report["running"] else 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="canary", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    sandbox = commands.add_parser(
        "sandbox", help="a real local control plane + Prometheus + traffic simulator"
    )
    sandbox.add_argument("action", choices=["up", "down", "env", "status"])
    sandbox.add_argument("--dir", help="state directory (default: ~/.cache/canary/sandbox)")
    sandbox.add_argument("--nodes", type=int, default=3, help="fake kwok nodes (default 3)")
    sandbox.set_defaults(func=_sandbox)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))
