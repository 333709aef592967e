"""The controller's host clock a minute off from Prometheus's (broken NTP, a
VM resumed from suspend), on the real sandbox: a good release still
promotes, a bad one is still rolled back promptly.

Prometheus's clock cannot be moved (a Go binary on this host), so the
controller's is: every module of the running controller that reads the wall
clock gets a `time` whose time() is off by the skew. Only those: patching
time.time for the whole process would move the test's own helpers, the
sandbox's traffic simulator and the libraries (aiohttp, requests) with it,
and so test a different thing. The list is checked against the source, so a
module that starts reading the clock cannot be left unskewed unnoticed."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from analysis import http_trouble, prometheus, scrape
from canary import checks, lease, reconcile, telemetry
from canary import controller as controller_module
from canary.kube import Kube
from canary.sandbox import cluster
from tests.integration.conftest import RunningController, running_controller
from tests.integration.helpers import eventually, history_of, managed_service, service_status
from tests.integration.test_rollouts import BAD, deploy_app, release, wait_phase

SKEW_S = 60.0
ROOT = Path(__file__).resolve().parents[2]

# Every module the running controller reads the wall clock in.
CONTROLLER_CLOCK: tuple[ModuleType, ...] = (
    reconcile,
    checks,
    telemetry,
    lease,
    scrape,
    prometheus,
    http_trouble,  # a Retry-After given as a date, against our clock
    controller_module,  # when its pods watch saw a pod turn ready (Reconciler.saw_pod)
)
# Commands run by people, not the controller (they read the clock to show it).
NOT_THE_CONTROLLER = {"canary/commands.py", "canary/oncall.py", "canary/demo.py"}


class _SkewedTime:
    """The time module, with a wall clock `skew_s` seconds off."""

    def __init__(self, skew_s: float) -> None:
        self.skew_s = skew_s

    def time(self) -> float:
        return time.time() + self.skew_s

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def _reads_the_wall_clock() -> set[str]:
    found = set()
    for package in ("canary", "analysis"):
        for path in (ROOT / package).glob("*.py"):  # sandbox/ and dashboard/ are no controller
            if re.search(r"\btime\.time\(\)", path.read_text()):
                found.add(str(path.relative_to(ROOT)))
    return found


@contextlib.asynccontextmanager
async def skewed_controller(
    kube: Kube,
    sandbox: cluster.Sandbox,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    skew_s: float,
) -> AsyncIterator[RunningController]:
    patched = {f"{m.__name__.replace('.', '/')}.py" for m in CONTROLLER_CLOCK}
    assert _reads_the_wall_clock() - NOT_THE_CONTROLLER <= patched, _reads_the_wall_clock()
    for module in CONTROLLER_CLOCK:
        # raising=False: a module that reads no clock (the adapter before it
        # probed Prometheus's) is left as it behaves, not failed here.
        monkeypatch.setattr(module, "time", _SkewedTime(skew_s), raising=False)
    async with running_controller(kube, sandbox, namespace) as running:
        yield running


def _offset(running: RunningController) -> float:
    assert running.controller is not None
    return running.controller.edges.prometheus.clock_offset


async def test_a_controller_a_minute_ahead_of_prometheus_promotes_a_good_release(
    kube: Kube, sandbox: cluster.Sandbox, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: every sample read a minute old at the controller's clock, and
    # every window ended a minute in Prometheus's future: no data at each
    # check, then a halt.
    async with skewed_controller(kube, sandbox, namespace, monkeypatch, SKEW_S) as running:
        await deploy_app(kube, namespace)
        await wait_phase(kube, namespace, "Healthy")
        await release(kube, namespace, "registry.example/web:v2")
        await wait_phase(kube, namespace, "Progressing")
        status = await wait_phase(kube, namespace, "Healthy", "Halted", "RolledBack")
    assert status["phase"] == "Healthy" and status["stable"] == "green", status
    record = (await history_of(kube, namespace))[-1]
    assert record["outcome"] == "promoted", record
    ages = [
        m["value"]
        for c in record["checks"]
        for m in c["measurements"]
        if m["metric"] == "newest-sample-age-s"
    ]
    # Read in Prometheus's clock: a scrape old (1 s in the sandbox), not a minute.
    assert ages and all(age <= 2.0 for age in ages), ages
    offset = _offset(running)
    assert offset == pytest.approx(-SKEW_S, abs=0.5)
    print(f"offset {offset:+.3f}s, newest-sample ages {ages}")


async def test_a_controller_a_minute_behind_prometheus_rolls_a_bad_release_back_promptly(
    kube: Kube, sandbox: cluster.Sandbox, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: every window ended a minute before now in Prometheus's clock,
    # so for the step's first minute it held none of the canary's traffic:
    # no data at each check, then a halt, and the bad release kept its share.
    async with skewed_controller(kube, sandbox, namespace, monkeypatch, -SKEW_S) as running:
        await deploy_app(kube, namespace, service=managed_service(failure_limit="0"))
        await wait_phase(kube, namespace, "Healthy")
        await release(kube, namespace, "registry.example/web:v2", BAD)
        loop = asyncio.get_running_loop()
        await eventually(
            lambda: service_status(kube, namespace),
            lambda s: s.get("phase") == "Progressing" and bool(s.get("step_ready")),
            every_s=0.1,
        )
        serving = loop.time()
        status = await wait_phase(kube, namespace, "RolledBack", "Halted")
        took = loop.time() - serving
    assert status["phase"] == "RolledBack", status
    record = (await history_of(kube, namespace))[-1]
    assert record["outcome"] == "rolled-back" and "success-rate" in record["reason"], record
    # Interval 3 s, 1 s scrapes, the first failure rolls back: well inside
    # the minute the old windows missed.
    assert took < 20.0, took
    offset = _offset(running)
    assert offset == pytest.approx(SKEW_S, abs=0.5)
    print(f"offset {offset:+.3f}s, rolled back {took:.1f}s after the step began serving")
