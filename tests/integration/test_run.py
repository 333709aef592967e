"""`canary run` as real processes: leader election and fail-over, the
metrics endpoint, notifications, the CLI against a live rollout, and the
install manifests' RBAC."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from canary.kube import Informer, Kube, WatchEvent
from canary.kube.resources import LEASES
from canary.sandbox import cluster
from canary.sandbox.binaries import binary_dir
from canary.sandbox.runner import ControllerProcess
from tests.integration.helpers import (
    event_reasons,
    eventually,
    history_of,
    managed_service,
    moved_on,
    service_status,
    written_history,
)
from tests.integration.test_rollouts import ALWAYS_PASSES, BAD, deploy_app, release, wait_phase

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


LEASE_NAME = "canary-controller"


@dataclass(frozen=True)
class LeaseRecord:
    """One version of the Lease, as the API served it."""

    holder: str  # "" once released
    acquired: float | None  # epoch seconds
    renewed: float | None
    duration_s: float
    transitions: int

    @property
    def expires(self) -> float:
        """When a standby may take over: the record unchanged for its duration."""
        assert self.renewed is not None
        return self.renewed + self.duration_s


def _epoch(stamp: str | None) -> float | None:
    return dt.datetime.fromisoformat(stamp).timestamp() if stamp else None


def lease_record(lease: dict[str, Any]) -> LeaseRecord:
    spec = lease.get("spec") or {}
    return LeaseRecord(
        holder=spec.get("holderIdentity") or "",
        acquired=_epoch(spec.get("acquireTime")),
        renewed=_epoch(spec.get("renewTime")),
        duration_s=float(spec.get("leaseDurationSeconds") or 0),
        transitions=int(spec.get("leaseTransitions") or 0),
    )


@contextlib.asynccontextmanager
async def lease_watch(kube: Kube, namespace: str) -> AsyncIterator[list[LeaseRecord]]:
    """Every version of the controllers' Lease, in the order the watch
    delivers them (a release that lasts a moment is seen too)."""
    records: list[LeaseRecord] = []

    def record(event: WatchEvent) -> None:
        if event.type != "DELETED":
            records.append(lease_record(event.object))

    watcher = Informer(
        kube,
        LEASES,
        namespace=namespace,
        field_selector=f"metadata.name={LEASE_NAME}",
        on_event=record,
    )
    task = asyncio.create_task(watcher.run())
    await watcher.synced.wait()
    try:
        yield records
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def holders(records: list[LeaseRecord]) -> list[str]:
    return [r.holder for r in records]


def changes(records: list[LeaseRecord]) -> list[LeaseRecord]:
    """The records whose holder differs from the one before (renewals dropped)."""
    return [r for i, r in enumerate(records) if i == 0 or r.holder != records[i - 1].holder]


async def test_two_replicas_one_leader_acts_and_the_standby_finishes_after_a_kill(
    kube: Kube,
    sandbox: cluster.Sandbox,
    namespace: str,
    tmp_path: Path,
    processes_: list[ControllerProcess],
) -> None:
    async with lease_watch(kube, namespace) as records:
        for i in range(2):
            processes_.append(start(sandbox, namespace, tmp_path / f"c{i}.log"))
        await deploy_app(kube, namespace)
        await wait_phase(kube, namespace, "Healthy", timeout_s=60)
        # Both answering: the leader can adopt the app before the other
        # process has started listening (-1), as the clean-clone run at
        # c0b97ed saw once.
        leaders = [
            await eventually(partial(p.value, "canary_leader"), lambda v: v >= 0)
            for p in processes_
        ]
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
        old = records[-1].holder
        assert old, records[-1]
        killed_at = time.time()
        await asyncio.to_thread(leader.stop, signal.SIGKILL)  # no goodbye: the lease must expire
        await eventually(lambda: holders(records), lambda h: h[-1] not in ("", old), timeout_s=60)
        await eventually(lambda: standby.value("canary_leader"), lambda v: v == 1.0, timeout_s=30)
        status = await eventually(
            lambda: service_status(kube, namespace),
            lambda s: s.get("phase") == "Healthy" and s.get("stable") == "green",
            timeout_s=90,
        )
    assert status["canary"] is None
    handover = changes(records)
    # One leader, then the standby: never an empty holder (the killed one
    # released nothing), never a third identity.
    assert [r.holder for r in handover][-2:] == [old, handover[-1].holder], handover
    assert len({r.holder for r in handover}) == 2, handover
    last_renewal = max(
        (r for r in records if r.holder == old and r.renewed), key=lambda r: r.renewed or 0.0
    )
    taken = handover[-1]
    assert taken.acquired is not None and taken.transitions == last_renewal.transitions + 1
    # Taken only once the killed leader's last record had expired.
    assert taken.acquired >= last_renewal.expires, (taken, last_renewal)
    print(
        f"standby took the lease {taken.acquired - killed_at:.1f}s after the SIGKILL, "
        f"{taken.acquired - last_renewal.expires:.2f}s after the old record expired "
        f"(lease {last_renewal.duration_s:g}s)"
    )


async def test_a_held_step_advance_is_written_on_sigterm_and_repeated_after_a_kill(
    kube: Kube,
    sandbox: cluster.Sandbox,
    namespace: str,
    tmp_path: Path,
    processes_: list[ControllerProcess],
) -> None:
    """A step's advance waits for its pods to serve before the status says
    so (one write for both, at most HOLD_S = 5 s). A quota keeps the pods
    out, so the hold is seen. SIGTERM writes what is held: nothing repeats.
    SIGKILL loses it: the step that passed is analysed once more, and the
    rollout still promotes on its own pods' checks."""
    run = ("--no-leader-elect",)
    processes_.append(start(sandbox, namespace, tmp_path / "c0.log", run))
    # 3 replicas: 1 canary pod at 25 %, 3 at 50 %, 9 at 75 %.
    # Every check passes at once (a no-data look would be written at once).
    service = managed_service(steps="25,50,75", analysis=ALWAYS_PASSES)
    await deploy_app(kube, namespace, service=service)
    await wait_phase(kube, namespace, "Healthy", timeout_s=60)
    quota = f"/api/v1/namespaces/{namespace}/resourcequotas"
    await kube.create(quota, {"metadata": {"name": "pods"}, "spec": {"hard": {"pods": "5"}}})

    async def advanced(count: int) -> None:
        await eventually(
            lambda: event_reasons(kube, namespace),
            lambda r: r.count("StepAdvanced") >= count,
            timeout_s=60,
            every_s=0.1,
        )

    await release(kube, namespace, "registry.example/web:v2")
    await advanced(1)
    held = await service_status(kube, namespace)
    assert (held["phase"], held["step"]) == ("Progressing", 0), held  # held for its pods
    await asyncio.to_thread(processes_[-1].stop)  # SIGTERM
    written = await service_status(kube, namespace)
    assert (written["step"], written["requested_weight"]) == (1, 50), written
    processes_.append(start(sandbox, namespace, tmp_path / "c1.log", run))
    await asyncio.sleep(4)  # longer than the step's interval: a repeat would show
    assert (await event_reasons(kube, namespace)).count("StepAdvanced") == 1
    await kube.patch(f"{quota}/pods", {"spec": {"hard": {"pods": "6"}}})  # 3 + 3 fit; 9 never
    await advanced(2)
    # The kill comes after the cycle's Event (it goes out first), while its
    # status is held for the step's pods: that status, and the step's check
    # it carries (history.CARRIED), are what it loses.
    held = await service_status(kube, namespace)
    assert held["step"] == 1, held
    await asyncio.to_thread(processes_[-1].stop, signal.SIGKILL)
    processes_.append(start(sandbox, namespace, tmp_path / "c2.log", run))
    await advanced(3)  # the second step, analysed again
    seen = time.monotonic()
    written = await eventually(
        lambda: service_status(kube, namespace), lambda s: s.get("step") == 2, every_s=0.1
    )
    assert time.monotonic() - seen < 5.0 + 1.5  # HOLD_S, a poll and a cycle
    assert written["step_ready"] == 0.0, written  # written by the hold running out
    await kube.delete(f"{quota}/pods")
    done = await wait_phase(kube, namespace, "Healthy", "RolledBack", "Halted", timeout_s=90)
    assert (done["phase"], done["stable"]) == ("Healthy", "green"), done
    reasons = await event_reasons(kube, namespace)
    assert (reasons.count("RolloutStarted"), reasons.count("Promoted")) == (1, 1), reasons
    passed = await passed_checks(kube, namespace)
    # Step 2 passed in the killed process (its check lost with the held
    # status) and again in its successor (the third StepAdvanced above), and
    # only that is recorded: a check the successor took while its canary was
    # still at the killed process's size decided nothing and is not a record
    # (before, one run in five recorded it).
    assert passed.count(1) == 1 and passed.count(2) == 1, passed
    assert reasons.count("StepAdvanced") == 3, reasons


async def test_events_waiting_for_the_history_are_written_on_sigterm(
    kube: Kube,
    sandbox: cluster.Sandbox,
    namespace: str,
    tmp_path: Path,
    processes_: list[ControllerProcess],
) -> None:
    """An Event decided on a cycle that writes no history (a pause) waits for
    the next history write; a graceful stop writes it. Before, it was lost:
    the successor decides nothing again, so the history never had it."""
    run = ("--no-leader-elect",)
    processes_.append(start(sandbox, namespace, tmp_path / "c0.log", run))
    service = managed_service(steps="25,50", interval="60s", analysis=ALWAYS_PASSES)
    await deploy_app(kube, namespace, service=service)
    await wait_phase(kube, namespace, "Healthy", timeout_s=60)
    await release(kube, namespace, "registry.example/web:v2")
    await eventually(lambda: service_status(kube, namespace), lambda s: bool(s.get("step_ready")))
    await kube.patch(
        f"/api/v1/namespaces/{namespace}/services/web",
        {"metadata": {"annotations": {"canary.io/action": "pause t1"}}},
    )
    await wait_phase(kube, namespace, "Paused", timeout_s=30)
    assert "RolloutPaused" not in await recorded_actions(kube, namespace)  # still waiting
    await asyncio.to_thread(processes_[-1].stop)  # SIGTERM
    assert "RolloutPaused" in await recorded_actions(kube, namespace)


async def recorded_actions(kube: Kube, namespace: str) -> list[str]:
    """The reasons in the newest entry of the history ConfigMap alone, as the
    controller wrote it (not what the status carries for it)."""
    return [a["reason"] for a in (await written_history(kube, namespace))[-1].get("actions", [])]


async def passed_checks(kube: Kube, namespace: str) -> list[int]:
    """The step of each scheduled check that passed and moved the rollout
    on (moved_on: not one answered too late), in order."""
    checks = [c for r in await history_of(kube, namespace) for c in r.get("checks", [])]
    return [c["step"] for c in moved_on(checks) if c["kind"] == "scheduled"]


async def test_sigterm_releases_the_lease_for_an_immediate_takeover(
    kube: Kube,
    sandbox: cluster.Sandbox,
    namespace: str,
    tmp_path: Path,
    processes_: list[ControllerProcess],
) -> None:
    async with lease_watch(kube, namespace) as records:
        first = start(sandbox, namespace, tmp_path / "first.log")
        processes_.append(first)
        await eventually(lambda: first.value("canary_leader"), lambda v: v == 1.0, timeout_s=30)
        old = records[-1].holder
        assert old, records
        second = start(sandbox, namespace, tmp_path / "second.log")
        processes_.append(second)
        await second.ready()  # a warm standby: its caches are synced
        assert await second.value("canary_leader") == 0.0
        stopped_at = time.time()
        await asyncio.to_thread(first.stop, signal.SIGTERM)
        assert first.popen.returncode == 0
        await eventually(lambda: holders(records), lambda h: h[-1] not in ("", old), timeout_s=30)
        await eventually(lambda: second.value("canary_leader"), lambda v: v == 1.0, timeout_s=30)
    handover = changes(records)
    assert [r.holder for r in handover][-3:-1] == [old, ""], handover  # released, then taken
    released = handover[-2]
    last_renewal = max(
        (r for r in records if r.holder == old and r.renewed), key=lambda r: r.renewed or 0.0
    )
    taken = handover[-1]
    assert released.renewed is None and taken.acquired is not None
    # Taken before the released leader's record could have expired: the
    # standby did not wait out the lease.
    assert taken.acquired < last_renewal.expires, (taken, last_renewal)
    print(
        f"standby took the released lease {taken.acquired - stopped_at:.1f}s after the "
        f"SIGTERM, {last_renewal.expires - taken.acquired:.1f}s before the old record would "
        f"have expired (lease {last_renewal.duration_s:g}s)"
    )


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
        ("list", "pods"),
        ("watch", "pods"),
        ("create", "configmaps"),
        ("get", "secrets"),
        ("create", "events"),
        ("update", "leases.coordination.k8s.io", "canary-system"),
    ]
    denied = [
        ("delete", "services"),
        ("get", "pods"),
        ("create", "pods"),
        ("delete", "pods"),
        ("update", "secrets"),
        ("patch", "secrets"),
        ("patch", "events"),
        ("get", "services"),  # reads come from the watch caches
        ("get", "deployments"),
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
