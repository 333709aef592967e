"""The `canary` command (also installed as `kubectl-canary`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from canary import commands

ACTIONS = (
    ("promote", "skip the remaining steps (pods must still be ready)"),
    ("abort", "roll back now; right after a promotion, flip back"),
    ("retry", "roll a rolled-back revision out again, or re-run a halted step"),
    ("pause", "hold the rollout at its current step"),
    ("resume", "continue a paused rollout"),
    ("undo", "roll an earlier revision out again through the same strategy"),
)


def _cluster_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    command.add_argument("--kubeconfig", help="kubeconfig file")
    command.add_argument("--context", help="kubeconfig context")
    command.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")


def _controller_flag(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--controller-namespace",
        default=os.environ.get("CANARY_CONTROLLER_NAMESPACE", "canary-system"),
        help="where the controller's Lease is, to warn when no controller runs "
        "(default $CANARY_CONTROLLER_NAMESPACE or canary-system)",
    )


def _add_sandbox(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sandbox = sub.add_parser(
        "sandbox", help="a real local control plane + Prometheus + traffic simulator"
    )
    sandbox.add_argument("action", choices=["up", "down", "env", "status"])
    sandbox.add_argument("--dir", help="state directory (default: ~/.cache/canary/sandbox)")
    sandbox.add_argument("--nodes", type=int, default=3, help="fake kwok nodes (default 3)")
    sandbox.add_argument(
        "--metrics",
        action="store_true",
        help="up: add a metrics pipeline (prometheus-adapter) so HPAs scale on request rate",
    )
    sandbox.add_argument(
        "--user",
        action="append",
        default=[],
        help="an extra API user with its own token and DIR/kubeconfig-USER (repeatable)",
    )
    sandbox.add_argument(
        "--audit-log",
        action="store_true",
        help="log every write request to DIR/logs/audit.log (who, what, when)",
    )
    sandbox.set_defaults(func=commands.sandbox)


def _prometheus_flags(parser: argparse.ArgumentParser) -> None:
    """How to reach Prometheus: the same for `run` and `backtest`, so on-call
    replays a release against the Prometheus the controller reads."""
    parser.add_argument("--prometheus-url", help="Prometheus base URL (default: $PROMETHEUS_URL)")
    parser.add_argument("--prometheus-ca", help="CA bundle for Prometheus over TLS")
    parser.add_argument(
        "--prometheus-insecure", action="store_true", help="skip TLS verification of Prometheus"
    )
    parser.add_argument(
        "--prometheus-token-file",
        help="a file holding Prometheus's bearer token, read again when it changes (a "
        "projected ServiceAccount token, a rotated Secret; default: $PROMETHEUS_TOKEN_FILE)",
    )


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="run the controller")
    run.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then ~/.kube)")
    run.add_argument("--context", help="kubeconfig context")
    run.add_argument(
        "-n", "--namespace", help="watch these namespaces, comma-separated (default: all)"
    )
    _prometheus_flags(run)
    run.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="only the holder of a Lease acts (default: on; run two replicas)",
    )
    run.add_argument("--lease-namespace", help="the Lease's namespace (default: $POD_NAMESPACE)")
    run.add_argument(
        "--metrics-address",
        default=":8080",
        help="[host]:port for /metrics, /healthz, /readyz (default :8080: every address, "
        "IPv4 and IPv6)",
    )
    run.add_argument("--notify-url", action="append", help="JSON webhook for notifications")
    run.add_argument("--slack-webhook", action="append", help="Slack incoming webhook URL")
    run.add_argument("--log-format", choices=["json", "text"], default="json")
    run.set_defaults(func=commands.run)


def _add_oncall(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = sub.add_parser("status", help="managed Services and where their rollouts are")
    status.add_argument("service", nargs="?")
    status.add_argument("-A", "--all-namespaces", action="store_true")
    history = sub.add_parser("history", help="every revision with its outcome and reason")
    history.add_argument("service")
    timeline = sub.add_parser(
        "timeline", help="one revision step by step: each query, value, threshold, verdict"
    )
    timeline.add_argument("service")
    timeline.add_argument("--revision", type=int, help="history number (default: the latest)")
    wait = sub.add_parser(
        "wait",
        help="block until a release is promoted (exit 0), rolled back, aborted, halted, "
        "paused or superseded (non-zero); for CI",
        description="Block until one release of SERVICE settles. Exit codes: 0 promoted, "
        "1 could not wait (no such Service, API error), 2 usage, 3 rolled back, 4 aborted, "
        "5 halted (waits for a person), 6 paused, 7 superseded, 8 timed out.",
    )
    wait.add_argument("service")
    which = wait.add_mutually_exclusive_group()
    which.add_argument(
        "--revision", help="the revision hash (or its start) to wait for; see `canary history`"
    )
    which.add_argument(
        "--image",
        help="wait for the revision whose pod template runs this image (exactly as written)",
    )
    wait.add_argument(
        "--timeout",
        default="30m",
        help="give up after this long, exit 8 (default 30m; 0 waits without limit)",
    )
    _cluster_flags(wait)
    wait.set_defaults(func=commands.wait)
    for command in (status, history, timeline):
        _cluster_flags(command)
        command.set_defaults(func=commands.oncall)
    _controller_flag(status)
    for verb, text in ACTIONS:
        action = sub.add_parser(verb, help=text)
        action.add_argument("service")
        if verb == "undo":
            action.add_argument("--to", type=int, required=True, help="history number")
        else:
            action.add_argument(
                "--revision",
                help="the revision you mean (a hash or its start, see `canary status`); "
                "default: the one it acts on now. Never carried out on another",
            )
        _cluster_flags(action)
        _controller_flag(action)
        action.set_defaults(func=commands.oncall)


def _add_dashboard(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dashboard = sub.add_parser(
        "dashboard", help="a live web view of every managed Service, with actions"
    )
    dashboard.add_argument(
        "--address",
        default="127.0.0.1:8484",
        help="host:port to serve on (default 127.0.0.1:8484: this machine only)",
    )
    dashboard.add_argument(
        "-n", "--namespace", help="show these namespaces, comma-separated (default: all)"
    )
    dashboard.add_argument(
        "-A", "--all-namespaces", action="store_true", help="every namespace (the default)"
    )
    dashboard.add_argument("--kubeconfig", help="kubeconfig file")
    dashboard.add_argument("--context", help="kubeconfig context")
    dashboard.set_defaults(func=commands.dashboard)


def _add_tools(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backtest = sub.add_parser(
        "backtest", help="replay the analysis over past Prometheus data and print its verdicts"
    )
    backtest.add_argument("service")
    backtest.add_argument(
        "--from", dest="from_", required=True, help="start: now, -30m, epoch seconds or ISO 8601"
    )
    backtest.add_argument("--to", default="now", help="end (default: now)")
    backtest.add_argument(
        "--spec", help="a Service manifest whose annotations to replay (default: the live one's)"
    )
    backtest.add_argument(
        "--canary",
        choices=["blue", "green"],
        default="green",
        help="which twin played the canary (default: green)",
    )
    backtest.add_argument("--interval", help="window length (default: canary.io/interval)")
    _prometheus_flags(backtest)
    _cluster_flags(backtest)
    backtest.set_defaults(func=commands.backtest)
    lint = sub.add_parser("lint", help="check canary.io annotations in a manifest, offline")
    lint.add_argument("-f", "--file", required=True)
    lint.set_defaults(func=commands.lint)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="canary", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_sandbox(sub)
    _add_run(sub)
    _add_oncall(sub)
    _add_dashboard(sub)
    _add_tools(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))
