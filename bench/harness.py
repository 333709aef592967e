"""Shared pieces of the benchmarks: a sandbox, a controller process, an app."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import statistics
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from canary.kube import Kube, NotFound, connect
from canary.kube.resources import DEPLOYMENTS, NAMESPACES, SERVICES
from canary.sandbox import cluster
from canary.sandbox.runner import ControllerProcess

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def sandbox(nodes: int = 3, options: cluster.Options | None = None) -> Iterator[cluster.Sandbox]:
    """$CANARY_SANDBOX_DIR's running sandbox, or a fresh one for this run
    (`options`: only for a fresh one)."""
    reuse = os.environ.get("CANARY_SANDBOX_DIR")
    if reuse:
        found = cluster.Sandbox.load(Path(reuse).resolve())
        if found is None:
            raise SystemExit(f"no sandbox in {reuse}")
        yield found
        return
    with tempfile.TemporaryDirectory(prefix="canary-bench-") as tmp:
        started = cluster.up(
            Path(tmp), nodes=nodes, say=lambda _: None, options=options or cluster.Options()
        )
        try:
            yield started
        finally:
            cluster.down(Path(tmp))


class Controller(ControllerProcess):
    """`canary run` for a benchmark: no leader election, one namespace or all."""

    def __init__(
        self, box: cluster.Sandbox, namespace: str | None, log: Path, user: str = ""
    ) -> None:
        """`user`: run under that sandbox user (its writes then tell apart
        in the audit log), not the admin's credentials."""
        scope = ["-n", namespace] if namespace else []
        if user:
            if user not in box.users:  # a reused sandbox: no user of its own, no audit log
                raise SystemExit(f"no sandbox user {user}: this needs a fresh sandbox")
            box = dataclasses.replace(box, kubeconfig=box.users[user])
        super().__init__(box, log, ["--no-leader-elect", *scope])


@contextlib.asynccontextmanager
async def namespace(kube: Kube, name: str) -> AsyncIterator[str]:
    with contextlib.suppress(Exception):
        await kube.create(NAMESPACES.path(), {"metadata": {"name": name}})
    try:
        yield name
    finally:
        with contextlib.suppress(NotFound):
            await kube.delete(NAMESPACES.path(name=name))


async def client(box: cluster.Sandbox) -> Kube:
    return await connect(box.kubeconfig)


def app(
    name: str, replicas: int, annotations: dict[str, str], simulate: bool = True
) -> tuple[dict[str, Any], dict[str, Any]]:
    labels = {"app": name}
    deployment = {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "r.example/app:0"}]},
            },
        },
    }
    service = {
        "metadata": {
            "name": name,
            "annotations": annotations,
            "labels": {"sandbox.canary.io/simulate": "true"} if simulate else {},
        },
        "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    return deployment, service


async def create_app(
    kube: Kube,
    ns: str,
    name: str,
    replicas: int,
    annotations: dict[str, str],
    simulate: bool = True,
) -> None:
    deployment, service = app(name, replicas, annotations, simulate)
    await kube.create(DEPLOYMENTS.path(ns), deployment)
    await kube.create(SERVICES.path(ns), service)


def quantiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(p50, p99, max); p99 of few samples is the nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return (float("nan"),) * 3
    p99 = ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered) + 0.5) - 1))]
    return statistics.median(ordered), p99, ordered[-1]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)
