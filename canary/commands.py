"""What each `canary` subcommand does; cli.py only parses arguments.
Imports are inside the commands so `canary --help` stays fast."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from analysis.prometheus import PrometheusConfig


def sandbox(args: argparse.Namespace) -> int:
    from canary.sandbox import cluster

    directory = Path(args.dir) if args.dir else cluster.default_dir()
    if args.action == "up":
        try:
            options = cluster.Options(users=tuple(args.user), audit=args.audit_log)
            sandbox = cluster.up(
                directory, nodes=args.nodes, with_metrics=args.metrics, options=options
            )
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


def prometheus_config(
    url: str, ca_file: str | None = None, insecure: bool = False, token_file: str | None = None
) -> PrometheusConfig:
    """Prometheus's URL plus the auth the environment gives, for run and backtest."""
    import os

    from analysis.prometheus import PrometheusConfig

    return PrometheusConfig(
        url=url,
        bearer_token=os.environ.get("PROMETHEUS_TOKEN") or None,
        bearer_token_file=token_file or os.environ.get("PROMETHEUS_TOKEN_FILE") or None,
        username=os.environ.get("PROMETHEUS_USERNAME") or None,
        password=os.environ.get("PROMETHEUS_PASSWORD") or None,
        ca_file=ca_file or None,
        insecure=insecure,
    )


def backtest_prometheus(args: argparse.Namespace, url: str) -> PrometheusConfig:
    """backtest's Prometheus, reached with run's flags."""
    return prometheus_config(
        url, args.prometheus_ca, args.prometheus_insecure, args.prometheus_token_file
    )


def run(args: argparse.Namespace) -> int:
    import asyncio
    import os

    from canary.run import RunOptions, StartupError, run_controller
    from canary.telemetry import configure_logging

    configure_logging(args.log_format)
    url = args.prometheus_url or os.environ.get("PROMETHEUS_URL")
    if not url:
        print("canary run: give --prometheus-url or set PROMETHEUS_URL", file=sys.stderr)
        return 2
    prometheus = prometheus_config(
        url, args.prometheus_ca, args.prometheus_insecure, args.prometheus_token_file
    )
    if prometheus.bearer_token and prometheus.bearer_token_file:
        # As Prometheus refuses bearer_token beside bearer_token_file: which
        # one goes out would be a guess, and the fixed one is what expires.
        print(
            "canary run: give PROMETHEUS_TOKEN or a token file (--prometheus-token-file, "
            "PROMETHEUS_TOKEN_FILE), not both",
            file=sys.stderr,
        )
        return 2
    options = RunOptions(
        prometheus=prometheus,
        kubeconfig=args.kubeconfig,
        context=args.context,
        # "team-a, team-b" as a YAML args line writes it: " team-b" was a
        # namespace that does not exist, never listed, its Services never decided.
        namespaces=tuple(n.strip() for n in (args.namespace or "").split(",") if n.strip()),
        leader_election=args.leader_elect,
        lease_namespace=args.lease_namespace or os.environ.get("POD_NAMESPACE") or "default",
        metrics_address=args.metrics_address,
        notify_urls=tuple(args.notify_url or ()),
        slack_urls=tuple(args.slack_webhook or ()),
    )
    try:
        asyncio.run(run_controller(options))
    except StartupError as exc:
        print(f"canary run: {exc}", file=sys.stderr)
        return 1
    return 0


def oncall(args: argparse.Namespace) -> int:
    """status, history, timeline and the actions, against the live cluster."""
    import asyncio
    import time

    from canary import jsonout, oncall
    from canary.kube import KubeError, connect

    def warn(line: str) -> None:
        print(f"warning: {line}", file=sys.stderr)

    async def go() -> str:
        async with await connect(args.kubeconfig, args.context) as kube:
            namespace = args.namespace or default_namespace(args)
            color = args.output == "table" and sys.stdout.isatty()

            async def tell(watched: list[str]) -> float:
                # On stderr: a status nobody drives must not read as live,
                # and -o json stays parseable. `watched`: the namespaces of
                # the Services asked about (a controller may watch others).
                # Returns the clock to tell ages by (the API server's).
                warning, now = await oncall.controller_warning(
                    kube, args.controller_namespace, time.time(), watched
                )
                if warning:
                    warn(warning)
                return now

            if args.command == "status":
                scope = (
                    None
                    if args.all_namespaces or (not args.namespace and not args.service)
                    else namespace
                )
                items = await oncall.status(kube, scope, args.service)
                now = await tell([str(i["namespace"]) for i in items])
                return emit(
                    args.output,
                    [jsonout.status(i) for i in items],
                    lambda: oncall.status_text(items, color, now),
                )
            if args.command in ("history", "timeline"):
                records = await oncall.revisions(kube, namespace, args.service, warn)
                if args.command == "history":
                    return emit(
                        args.output,
                        jsonout.history(records),
                        lambda: oncall.history_text(records, color),
                    )
                return emit(
                    args.output,
                    jsonout.history(records),
                    lambda: oncall.timeline_text(records, args.revision, color),
                )
            await tell([namespace])
            value = await oncall.request(
                kube,
                namespace,
                args.service,
                args.command,
                getattr(args, "to", None),
                revision=getattr(args, "revision", None),
                say=warn,
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


def dashboard(args: argparse.Namespace) -> int:
    """Serve the web dashboard until Ctrl-C; reads with the user's own credentials."""
    import asyncio
    import contextlib
    import logging

    from canary.dashboard.app import Options, StartupError, main
    from canary.kube import KubeError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    namespaces = (
        () if args.all_namespaces else tuple(n for n in (args.namespace or "").split(",") if n)
    )
    options = Options(args.kubeconfig, args.context, namespaces, args.address)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main(options, say=lambda line: print(line, flush=True)))
    except StartupError as exc:
        print(f"canary dashboard: {exc}", file=sys.stderr)
        return 1
    except (KubeError, OSError) as exc:
        print(
            f"canary dashboard: {exc}; check --kubeconfig and --context",
            file=sys.stderr,
        )
        return 1
    return 0


def wait(args: argparse.Namespace) -> int:
    """Block until one release settles; the exit code says how it ended."""
    import asyncio
    import datetime as dt

    from analysis.durations import parse_duration
    from canary import jsonout, render
    from canary import wait as waiting
    from canary.kube import KubeError, connect
    from canary.release_outcome import ERROR_EXIT

    if args.revision and args.image:
        print("canary wait: give --revision or --image, not both", file=sys.stderr)
        return 2
    try:
        timeout = parse_duration(args.timeout)
    except ValueError as exc:
        print(f"canary wait: --timeout: {exc}", file=sys.stderr)
        return 2

    def progress(message: str) -> None:
        now = dt.datetime.now(dt.UTC).strftime("%H:%M:%S")
        print(f"{now}  {args.service}: {message}", file=sys.stderr, flush=True)

    async def go() -> waiting.Result:
        async with await connect(args.kubeconfig, args.context) as kube:
            request = waiting.Request(
                namespace=args.namespace or default_namespace(args),
                service=args.service,
                revision=args.revision,
                image=args.image,
                timeout_s=timeout or None,
            )
            return await waiting.wait(kube, request, progress)

    try:
        result = asyncio.run(go())
    except waiting.WaitError as exc:
        print(f"canary wait: {exc}", file=sys.stderr)
        return ERROR_EXIT
    except KubeError as exc:
        print(
            f"canary wait: the API server said {exc}; check --kubeconfig, --context and "
            "your permissions (get, list and watch on Services, ConfigMaps and Deployments)",
            file=sys.stderr,
        )
        return ERROR_EXIT
    print(
        emit(
            args.output,
            jsonout.waited(args.namespace or default_namespace(args), args.service, result),
            lambda: render.waited(result),
        )
    )
    return result.settled.exit_code


def default_namespace(args: argparse.Namespace) -> str:
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


def emit(output: str, data: object, text: object) -> str:
    if output == "json":
        return json.dumps(data, indent=2, default=str)
    if output == "yaml":
        import yaml

        return str(yaml.safe_dump(data, sort_keys=False))
    assert callable(text)
    return str(text())


def _spec_file_annotations(path: str, service: str) -> dict[str, object]:
    """The annotations of the Service named `service` in a manifest (several
    documents are fine), or a file that is just a mapping of annotations."""
    import yaml

    with open(path) as handle:
        documents = [d for d in yaml.safe_load_all(handle) if isinstance(d, dict)]
    for document in documents:
        meta = document.get("metadata") or {}
        if document.get("kind") == "Service" and meta.get("name") == service:
            return dict(meta.get("annotations") or {})
    if len(documents) == 1 and "kind" not in documents[0]:
        return dict(documents[0])
    raise ValueError(f"{path} has no Service named {service}")


def backtest(args: argparse.Namespace) -> int:
    import asyncio
    import os
    import time

    from analysis.prometheus import Prometheus
    from analysis.provider import QueryError
    from canary import backtest as replaying
    from canary import oncall
    from canary.kube import KubeError, connect
    from canary.kube.resources import SERVICES
    from canary.spec import SpecError, parse

    url = args.prometheus_url or os.environ.get("PROMETHEUS_URL")
    if not url:
        print("canary backtest: give --prometheus-url or set PROMETHEUS_URL", file=sys.stderr)
        return 2

    async def go(annotations: dict[str, object] | None) -> str:
        namespace = args.namespace or default_namespace(args)
        if annotations is None:
            async with await connect(args.kubeconfig, args.context) as kube:
                service = await kube.get(SERVICES.path(namespace, args.service))
                annotations = service["metadata"].get("annotations") or {}
        spec = parse(args.service, {str(k): str(v) for k, v in annotations.items()})
        if spec is None:
            raise oncall.UserError("no canary.io/strategy in the spec; nothing to replay")
        now = time.time()
        provider = Prometheus(backtest_prometheus(args, url))
        try:
            windows = await replaying.replay(
                spec.analysis,
                provider,
                namespace=namespace,
                service=args.service,
                deployment=spec.deployment,
                canary=args.canary,
                start=replaying.parse_time(args.from_, now),
                end=replaying.parse_time(args.to, now),
                interval_s=_duration_arg(args.interval) or spec.interval,
            )
        finally:
            provider.close()
        return emit(args.output, replaying.as_json(windows), lambda: replaying.text(windows))

    try:
        annotations = _spec_file_annotations(args.spec, args.service) if args.spec else None
        print(asyncio.run(go(annotations)))
    except (oncall.UserError, SpecError, ValueError, OSError, KubeError, QueryError) as exc:
        print(f"canary backtest: {exc}", file=sys.stderr)
        return 1
    return 0


def _duration_arg(value: str | None) -> float | None:
    from analysis.durations import parse_duration

    return parse_duration(value) if value else None


def _not_strings(annotations: dict[object, object]) -> str:
    """The annotations YAML read as something else than text ("" if none):
    an unquoted yes/off/true (a boolean) or 2 (a number). The API server
    refuses such a manifest, so lint must not call it ok on its str()."""
    wrong = [
        f"{key} is {_as_read(value)}, not a string"
        for key, value in annotations.items()
        if not isinstance(value, str)
    ]
    if not wrong:
        return ""
    return "; ".join(wrong) + ' (kubectl refuses the manifest: quote it, e.g. "true", "2")'


def _as_read(value: object) -> str:
    """A value as YAML read it. An unquoted date is a date, which json
    cannot show: lint died with a TypeError on the whole file."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return f"{value} (a {type(value).__name__})"


def lint(args: argparse.Namespace) -> int:
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
            unquoted = _not_strings(meta.get("annotations") or {})
            if unquoted:
                problems += 1
                print(f"{name}: {unquoted}")
                continue
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
