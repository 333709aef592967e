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


def _oncall(args: argparse.Namespace) -> int:
    """status, history, timeline and the actions, against the live cluster."""
    import asyncio

    from canary import oncall
    from canary.kube import KubeError, connect

    async def go() -> str:
        async with await connect(args.kubeconfig, args.context) as kube:
            namespace = args.namespace or _default_namespace(args)
            color = args.output == "table" and sys.stdout.isatty()
            if args.command == "status":
                scope = (
                    None
                    if args.all_namespaces or (not args.namespace and not args.service)
                    else namespace
                )
                items = await oncall.status(kube, scope, args.service)
                return _emit(args.output, items, lambda: oncall.status_text(items, color))
            if args.command in ("history", "timeline"):
                records = await oncall.revisions(kube, namespace, args.service)
                if args.command == "history":
                    return _emit(args.output, records, lambda: oncall.history_text(records, color))
                return _emit(
                    args.output,
                    records,
                    lambda: oncall.timeline_text(records, args.revision, color),
                )
            value = await oncall.request(
                kube, namespace, args.service, args.command, getattr(args, "to", None)
            )
            return f"{args.command} requested for {namespace}/{args.service} ({value!r})"

    try:
        print(asyncio.run(go()))
    except oncall.UserError as exc:
        print(f"canary {args.command}: {exc}", file=sys.stderr)
        return 1
    except KubeError as exc:
        print(
            f"canary {args.command}: the API server said {exc}; check --kubeconfig, "
            "--context and your permissions",
            file=sys.stderr,
        )
        return 1
    return 0


def _default_namespace(args: argparse.Namespace) -> str:
    """The kubeconfig context's namespace, else "default", as kubectl does."""
    import os

    import yaml

    path = args.kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    path = path or os.path.expanduser("~/.kube/config")
    try:
        with open(path) as handle:
            config = yaml.safe_load(handle) or {}
    except OSError:
        return "default"
    wanted = args.context or config.get("current-context")
    for context in config.get("contexts") or []:
        if context.get("name") == wanted:
            return str((context.get("context") or {}).get("namespace") or "default")
    return "default"


def _emit(output: str, data: object, text: object) -> str:
    if output == "json":
        return json.dumps(data, indent=2, default=str)
    if output == "yaml":
        import yaml

        return str(yaml.safe_dump(data, sort_keys=False))
    assert callable(text)
    return str(text())


def _lint(args: argparse.Namespace) -> int:
    """Validate the canary.io annotations of every Service in a file, offline,
    with the models the controller uses."""
    import yaml

    from canary.spec import SpecError, parse

    try:
        with open(args.file) as handle:
            documents = [d for d in yaml.safe_load_all(handle) if isinstance(d, dict)]
    except (OSError, yaml.YAMLError) as exc:
        print(f"canary lint: cannot read {args.file}: {exc}", file=sys.stderr)
        return 1
    problems, managed = 0, 0
    for document in documents:
        items = document.get("items") if document.get("kind") == "List" else [document]
        for obj in items or []:
            if not isinstance(obj, dict) or obj.get("kind") != "Service":
                continue
            meta = obj.get("metadata") or {}
            name = str(meta.get("name", "?"))
            try:
                spec = parse(
                    name, {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()}
                )
            except SpecError as exc:
                problems += 1
                print(f"{name}: {exc}")
                continue
            if spec is not None:
                managed += 1
                print(
                    f"{name}: ok ({spec.strategy}, steps {','.join(map(str, spec.steps))}, "
                    f"interval {spec.interval:g}s, {len(spec.analysis.metrics)} metrics)"
                )
    if not managed and not problems:
        print("no Service with canary.io/strategy found")
    return 1 if problems else 0


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

    def cluster_flags(command: argparse.ArgumentParser) -> None:
        command.add_argument("-n", "--namespace", help="namespace (default: the context's)")
        command.add_argument("--kubeconfig", help="kubeconfig file")
        command.add_argument("--context", help="kubeconfig context")
        command.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")

    status = commands.add_parser("status", help="managed Services and where their rollouts are")
    status.add_argument("service", nargs="?")
    status.add_argument("-A", "--all-namespaces", action="store_true")
    cluster_flags(status)
    status.set_defaults(func=_oncall)
    history = commands.add_parser("history", help="every revision with its outcome and reason")
    history.add_argument("service")
    cluster_flags(history)
    history.set_defaults(func=_oncall)
    timeline = commands.add_parser(
        "timeline", help="one revision step by step: each query, value, threshold, verdict"
    )
    timeline.add_argument("service")
    timeline.add_argument("--revision", type=int, help="history number (default: the latest)")
    cluster_flags(timeline)
    timeline.set_defaults(func=_oncall)
    for verb, text in (
        ("promote", "skip the remaining steps (pods must still be ready)"),
        ("abort", "roll back now; right after a promotion, flip back"),
        ("retry", "roll a rolled-back revision out again, or re-run a halted step"),
        ("pause", "hold the rollout at its current step"),
        ("resume", "continue a paused rollout"),
        ("undo", "roll an earlier revision out again through the same strategy"),
    ):
        action = commands.add_parser(verb, help=text)
        action.add_argument("service")
        if verb == "undo":
            action.add_argument("--to", type=int, required=True, help="history number")
        cluster_flags(action)
        action.set_defaults(func=_oncall)
    lint = commands.add_parser("lint", help="check canary.io annotations in a manifest, offline")
    lint.add_argument("-f", "--file", required=True)
    lint.set_defaults(func=_lint)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))
