"""Shared pieces of the benchmarks: a sandbox, a controller process, an app."""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from canary.kube import Kube, NotFound, connect
from canary.kube.resources import DEPLOYMENTS, NAMESPACES, SERVICES
from canary.sandbox import cluster

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def sandbox(nodes: int = 3) -> Iterator[cluster.Sandbox]:
    """$CANARY_SANDBOX_DIR's running sandbox, or a fresh one for this run."""
    reuse = os.environ.get("CANARY_SANDBOX_DIR")
    if reuse:
        found = cluster.Sandbox.load(Path(reuse).resolve())
        if found is None:
            raise SystemExit(f"no sandbox in {reuse}")
        yield found
        return
    with tempfile.TemporaryDirectory(prefix="canary-bench-") as tmp:
        started = cluster.up(Path(tmp), nodes=nodes, say=lambda _: None)
        try:
            yield started
        finally:
            cluster.down(Path(tmp))


class Controller:
    """`canary run` as a real process, its metrics on a loopback port."""

    def __init__(self, box: cluster.Sandbox, namespace: str | None, log: Path) -> None:
        self.port = cluster.free_port()
        scope = ["-n", namespace] if namespace else []
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "canary",
                    "run",
                    "--kubeconfig",
                    box.kubeconfig,
                    "--prometheus-url",
                    box.prometheus_url,
                    "--no-leader-elect",
                    "--metrics-address",
                    f"127.0.0.1:{self.port}",
                    *scope,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    async def metrics(self) -> dict[str, float]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self.port}/metrics") as response,
        ):
            text = await response.text()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    async def ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"http://127.0.0.1:{self.port}/readyz") as response,
                ):
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
        raise TimeoutError("controller not ready")

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


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
