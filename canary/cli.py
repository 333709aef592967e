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


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import os

    from analysis.prometheus import PrometheusConfig
    from canary.run import StartupError, run_controller

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    url = args.prometheus_url or os.environ.get("PROMETHEUS_URL")
    if not url:
        print("canary run: give --prometheus-url or set PROMETHEUS_URL", file=sys.stderr)
        return 2
    config = PrometheusConfig(
        url=url,
        bearer_token=os.environ.get("PROMETHEUS_TOKEN") or None,
        username=os.environ.get("PROMETHEUS_USERNAME") or None,
        password=os.environ.get("PROMETHEUS_PASSWORD") or None,
        ca_file=args.prometheus_ca or None,
        insecure=args.prometheus_insecure,
    )
    try:
        asyncio.run(
            run_controller(
                kubeconfig=args.kubeconfig,
                context=args.context,
                namespace=args.namespace,
                prometheus=config,
            )
        )
    except StartupError as exc:
        print(f"canary run: {exc}", file=sys.stderr)
        return 1
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

    run = commands.add_parser("run", help="run the controller")
    run.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then ~/.kube)")
    run.add_argument("--context", help="kubeconfig context")
    run.add_argument("-n", "--namespace", help="watch one namespace (default: all)")
    run.add_argument("--prometheus-url", help="Prometheus base URL (default: $PROMETHEUS_URL)")
    run.add_argument("--prometheus-ca", help="CA bundle for Prometheus over TLS")
    run.add_argument(
        "--prometheus-insecure", action="store_true", help="skip TLS verification of Prometheus"
    )
    run.set_defaults(func=_run)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))
