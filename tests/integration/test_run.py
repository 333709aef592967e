"""`canary run` as real processes: leader election and fail-over, the
metrics endpoint, notifications, the CLI against a live rollout, and the
install manifests' RBAC."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from canary.kube import Kube
from canary.sandbox import cluster
from canary.sandbox.binaries import binary_dir
from canary.sandbox.runner import ControllerProcess
from tests.integration.helpers import eventually, service_status
from tests.integration.test_rollouts import BAD, deploy_app, release, wait_phase

ROOT = Path(__file__).resolve().parents[2]


def start(
    sandbox: cluster.Sandbox, namespace: str, log: Path, extra: tuple[str, ...] = ()
) -> ControllerProcess:
    return ControllerProcess(
        sandbox, log, ["-n", namespace, "--lease-namespace", namespace, *extra]
    )


@pytest.fixture
def processes_(
    sandbox: cluster.Sandbox, namespace: str, tmp_path: Path
) -> Iterator[list[ControllerProcess]]:
    started: list[ControllerProcess] = []
    yield started
    for proc in started:
        proc.stop()


async def test_two_replicas_one_leader_acts_and_the_standby_finishes_after_a_kill(
    kube: Kube,
    sandbox: cluster.Sandbox,
    namespace: str,
    tmp_path: Path,
    processes_: list[ControllerProcess],
) -> None:
    for i in range(2):
        processes_.append(start(sandbox, namespace, tmp_path / f"c{i}.log"))
    await deploy_app(kube, namespace)
    await wait_phase(kube, namespace, "Healthy", timeout_s=60)
    leaders = [await p.value("canary_leader") for p in processes_]
    assert sorted(leaders) == [0.0, 1.0], leaders
    leader, standby = (
        (processes_[0], processes_[1]) if leaders[0] else (processes_[1], processes_[0])
    )
    assert await leader.value("canary_reconciles_total") > 0
    assert await standby.value("canary_reconciles_total") == 0  # watches, never acts
    await release(kube, namespace, "registry.example/web:v2")
    await eventually(
        lambda: service_status(kube, namespace),
        lambda s: s.get("phase") == "Progressing" and s.get("step", 0) >= 1,
        timeout_s=60,
    )
    killed_at = time.monotonic()
    leader.stop(signal.SIGKILL)  # no goodbye: the lease must expire
    await eventually(lambda: standby.value("canary_leader"), lambda v: v == 1.0, timeout_s=40)
    took_over = time.monotonic() - killed_at
    status = await eventually(
        lambda: service_status(kube, namespace),
        lambda s: s.get("phase") == "Healthy" and s.get("stable") == "green",
        timeout_s=90,
    )
    assert status["canary"] is None and took_over < 25  # lease 15 s + a retry or two


async def test_sigterm_releases_the_lease_for_an_immediate_takeover(
    kube: Kube,
    sandbox: cluster.Sandbox,
    namespace: str,
    tmp_path: Path,
    processes_: list[ControllerProcess],
) -> None:
    first = start(sandbox, namespace, tmp_path / "first.log")
    processes_.append(first)
    await eventually(lambda: first.value("canary_leader"), lambda v: v == 1.0, timeout_s=30)
    second = start(sandbox, namespace, tmp_path / "second.log")
    processes_.append(second)
    await eventually(
        lambda: second.value("canary_reconciles_total"), lambda v: v >= 0, timeout_s=30
    )
    began = time.monotonic()
    first.stop(signal.SIGTERM)
    await eventually(lambda: second.value("canary_leader"), lambda v: v == 1.0, timeout_s=30)
    assert time.monotonic() - began < 10  # not the 15 s lease expiry
    assert first.popen.returncode == 0


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{path:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", got
    finally:
        await runner.cleanup()


async def test_notifications_name_the_failing_metric_and_the_cli_reads_the_rollout(
    kube: Kube,
    sandbox: cluster.Sandbox,
    namespace: str,
    tmp_path: Path,
    processes_: list[ControllerProcess],
) -> None:
    async with receiver() as (url, got):
        processes_.append(
            start(
                sandbox,
                namespace,
                tmp_path / "c.log",
                (
                    "--no-leader-elect",
                    "--notify-url",
                    f"{url}/json",
                    "--slack-webhook",
                    f"{url}/slack",
                ),
            )
        )
        await deploy_app(kube, namespace)
        await wait_phase(kube, namespace, "Healthy", timeout_s=60)
        await release(kube, namespace, "registry.example/web:v2", BAD)
        await wait_phase(kube, namespace, "RolledBack", timeout_s=90)

        async def received() -> list[dict[str, Any]]:
            return got

        await eventually(
            received, lambda seen: any(n.get("reason") == "RolledBack" for n in seen), timeout_s=10
        )
    rolled = next(g for g in got if g.get("reason") == "RolledBack")
    assert rolled["namespace"] == namespace and rolled["service"] == "web"
    assert "success-rate" in rolled["message"]
    assert any(g.get("reason") == "RolloutStarted" for g in got)
    slack = [g for g in got if "text" in g]
    assert any("success-rate" in g["text"] for g in slack)

    env = {**os.environ, "KUBECONFIG": sandbox.kubeconfig}

    def cli(*args: str) -> Any:
        done = subprocess.run(
            [sys.executable, "-m", "canary", *args, "-n", namespace],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            check=True,
        )
        return done.stdout

    status = json.loads(await asyncio.to_thread(cli, "status", "web", "-o", "json"))
    assert status[0]["phase"] == "RolledBack" and status[0]["service"] == "web"
    history = json.loads(await asyncio.to_thread(cli, "history", "web", "-o", "json"))
    assert history[-1]["outcome"] == "rolled-back"
    failing = [
        m for c in history[-1]["checks"] for m in c["measurements"] if m["verdict"] == "fail"
    ]
    assert failing and failing[0]["metric"] == "success-rate"
    timeline = await asyncio.to_thread(cli, "timeline", "web")
    assert "success-rate" in timeline and "want >= 95" in timeline and "RolledBack" in timeline
    table = await asyncio.to_thread(cli, "status")
    assert table.splitlines()[0].split()[:3] == ["NAMESPACE", "SERVICE", "PHASE"]
    assert "\033[" not in table  # no color when piped
    said = await asyncio.to_thread(cli, "retry", "web")
    assert "retry requested" in said
    await eventually(
        lambda: service_status(kube, namespace),
        lambda s: (
            s.get("phase") in ("Progressing", "RolledBack")
            and s.get("last_action", "").startswith("retry")
        ),
        timeout_s=30,
    )


def test_the_manifests_apply_and_grant_only_what_the_readme_states(
    sandbox: cluster.Sandbox,
) -> None:
    kubectl = str(binary_dir() / "kubectl")
    env = {**os.environ, "KUBECONFIG": sandbox.kubeconfig}
    subprocess.run(
        [kubectl, "apply", "-k", str(ROOT / "manifests")], check=True, env=env, capture_output=True
    )
    who = "system:serviceaccount:canary-system:canary-controller"

    def can(verb: str, resource: str, namespace: str = "shop") -> bool:
        done = subprocess.run(
            [kubectl, "auth", "can-i", verb, resource, f"--as={who}", "-n", namespace],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip() == "yes"

    allowed = [
        ("patch", "services"),
        ("create", "deployments"),
        ("delete", "deployments"),
        ("watch", "endpointslices.discovery.k8s.io"),
        ("create", "configmaps"),
        ("get", "secrets"),
        ("create", "events"),
        ("update", "leases.coordination.k8s.io", "canary-system"),
    ]
    denied = [
        ("delete", "services"),
        ("create", "pods"),
        ("delete", "pods"),
        ("update", "secrets"),
        ("patch", "secrets"),
        ("get", "nodes"),
        ("delete", "namespaces"),
        ("create", "clusterrolebindings"),
        ("update", "leases.coordination.k8s.io"),
        ("create", "statefulsets.apps"),
        ("delete", "endpointslices.discovery.k8s.io"),
        ("escalate", "clusterroles"),
    ]
    for verb, resource, *namespace in allowed:
        assert can(verb, resource, *namespace), f"should {verb} {resource}"
    for verb, resource in denied:
        assert not can(verb, resource), f"must not {verb} {resource}"
