"""Fixtures for tests against the real local sandbox.

One sandbox per test session (binaries come from the shared cache); each test
gets a namespace of its own, deleted afterwards. Set CANARY_SANDBOX_DIR to
reuse a sandbox already started with `canary sandbox up --dir ...` (it is
then left running).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from analysis.prometheus import Prometheus, PrometheusConfig
from canary.controller import Controller
from canary.kube import Kube, NotFound, connect
from canary.kube.resources import NAMESPACES
from canary.reconcile import Edges
from canary.sandbox import cluster
from tests.integration.helpers import PromAPI


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


def _needs_metrics(session: pytest.Session) -> bool:
    """Only a session that runs an HPA test starts the metrics pipeline (a
    prometheus-adapter): the others need not pay for it."""
    return any(item.get_closest_marker("metrics") for item in session.items)


@pytest.fixture(scope="session")
def sandbox(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[cluster.Sandbox]:
    reuse = os.environ.get("CANARY_SANDBOX_DIR")
    if reuse:
        existing = cluster.Sandbox.load(Path(reuse).resolve())
        if existing is None or not all(existing.running().values()):
            pytest.fail(f"CANARY_SANDBOX_DIR={reuse} holds no running sandbox")
        yield existing
        return
    directory = tmp_path_factory.mktemp("sandbox")
    # With the metrics pipeline only for the HPA tests (marked `metrics`).
    started = cluster.up(directory, with_metrics=_needs_metrics(request.session))
    try:
        yield started
    finally:
        cluster.down(directory)


@pytest.fixture(scope="session")
async def kube(sandbox: cluster.Sandbox) -> AsyncIterator[Kube]:
    async with await connect(sandbox.kubeconfig) as client:
        yield client


@pytest.fixture(scope="session")
async def prometheus(sandbox: cluster.Sandbox) -> AsyncIterator[PromAPI]:
    async with PromAPI(sandbox.prometheus_url) as client:
        yield client


@pytest.fixture
async def namespace(kube: Kube, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40]
    # Not a test input (nothing to seed): a random suffix keeps names unique
    # across sessions that reuse one sandbox (CANARY_SANDBOX_DIR).
    name = f"t-{base}-{os.urandom(2).hex()}"
    await kube.create(NAMESPACES.path(), {"metadata": {"name": name}})
    try:
        yield name
    finally:
        with contextlib.suppress(NotFound):
            await kube.delete(NAMESPACES.path(name=name))


class RunningController:
    """The real controller, in this event loop, watching one namespace."""

    def __init__(
        self, kube: Kube, sandbox: cluster.Sandbox, namespace: str, metrics_url: str = ""
    ) -> None:
        self._kube = kube
        self._sandbox = sandbox
        self._namespace = namespace
        # Another metrics backend than the sandbox's Prometheus: asked at the
        # start as `canary run` asks it (its dialect, its clock).
        self._metrics_url = metrics_url
        self._task: asyncio.Task[None] | None = None
        self._provider: Prometheus | None = None
        self.controller: Controller | None = None

    async def start(self) -> None:
        assert self._task is None
        self._provider = Prometheus(
            PrometheusConfig(self._metrics_url or self._sandbox.prometheus_url)
        )
        if self._metrics_url:
            await self._provider.check()
        edges = Edges(self._kube, self._provider)
        self.controller = Controller(edges, namespaces=[self._namespace])
        self._task = asyncio.create_task(self.controller.run())

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        assert self.controller is not None and self._provider is not None
        await self.controller.stop()
        self._provider.close()
        self._task = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()


@contextlib.asynccontextmanager
async def running_controller(
    kube: Kube, sandbox: cluster.Sandbox, namespace: str, metrics_url: str = ""
) -> AsyncIterator[RunningController]:
    """The controller started, and stopped however the test ends."""
    running = RunningController(kube, sandbox, namespace, metrics_url)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def controller(
    kube: Kube, sandbox: cluster.Sandbox, namespace: str
) -> AsyncIterator[RunningController]:
    async with running_controller(kube, sandbox, namespace) as running:
        yield running
