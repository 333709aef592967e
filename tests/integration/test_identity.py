"""What teams do to the names and selectors around a managed app, on the real
API server: a Service renamed (the new one applied, the old one pruned), and
a label added to the pod template and the Service selector in one client-side
`kubectl apply` (which merges the selector map key by key, so the controller's
own key stays in it). Each watches the Service's EndpointSlices throughout."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from canary.kube import Informer, Kube, WatchEvent
from canary.kube.resources import DEPLOYMENTS, ENDPOINTSLICES, SERVICES
from canary.observe import ready_endpoints
from tests.integration.conftest import RunningController
from tests.integration.helpers import eventually, history_of, managed_service, service_status
from tests.integration.test_rollouts import deploy_app, wait_phase


class Serving:
    """The ready pods behind one Service after each EndpointSlice event."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.seen: list[list[str]] = []
        self.at: list[float] = []  # when each snapshot came (monotonic)
        self.wall: list[float] = []  # the same, epoch seconds
        self._slices: dict[str, Any] = {}

    def record(self, event: WatchEvent) -> None:
        labels = event.object["metadata"].get("labels", {})
        if labels.get("kubernetes.io/service-name") != self.service:
            return
        if event.type == "DELETED":
            self._slices.pop(event.key[1], None)
        else:
            self._slices[event.key[1]] = event.object
        self.seen.append(ready_endpoints(self._slices.values()))
        self.at.append(time.monotonic())
        self.wall.append(time.time())

    async def now(self) -> list[str]:
        return self.seen[-1] if self.seen else []

    def empty_for(self) -> float:
        """Seconds without a ready pod, from the first snapshot with one on."""
        first = next((i for i, pods in enumerate(self.seen) if pods), len(self.seen))
        total, since = 0.0, None
        for at, pods in zip(self.at[first:], self.seen[first:], strict=True):
            if not pods and since is None:
                since = at
            elif pods and since is not None:
                total, since = total + at - since, None
        return total + (time.monotonic() - since if since is not None else 0.0)

    def since_first(self) -> list[list[str]]:
        """Every snapshot from the first with a ready pod on."""
        first = next((i for i, pods in enumerate(self.seen) if pods), len(self.seen))
        return self.seen[first:]


async def _watching(kube: Kube, namespace: str, serving: Serving) -> Informer:
    watcher = Informer(kube, ENDPOINTSLICES, namespace=namespace, on_event=serving.record)
    return watcher


@pytest.mark.parametrize("pruned_first", [False, True])
async def test_a_renamed_service_takes_over_without_a_gap(
    kube: Kube, namespace: str, controller: RunningController, pruned_first: bool
) -> None:
    """`kubectl apply` of the Service under a new name (same Deployment, same
    annotations), then the prune of the old one. The new one waits while the
    old one's twins run (Conflict), the old one's hand-back brings the team's
    Deployment up before its twins go, then the new one adopts: its ready
    pods never drop to zero."""
    await deploy_app(kube, namespace)
    await wait_phase(kube, namespace, "Healthy")
    serving = Serving("web2")
    watcher = await _watching(kube, namespace, serving)
    task = asyncio.create_task(watcher.run())
    await watcher.synced.wait()
    try:
        renamed = managed_service("web2", deployment="web")
        renamed["spec"]["selector"] = {"app": "web"}
        if pruned_first:  # within the old one's grace (10 s) before its hand-back
            await kube.delete(SERVICES.path(namespace, "web"))
            await asyncio.sleep(2)
        await kube.create(SERVICES.path(namespace), renamed)
        await eventually(serving.now, lambda pods: len(pods) == 3)
        if not pruned_first:
            await kube.delete(SERVICES.path(namespace, "web"))
        adopted = await eventually(
            lambda: service_status(kube, namespace, "web2"),
            lambda s: s.get("phase") == "Healthy" and bool(s.get("adopted")),
            timeout_s=120,
        )
        await eventually(
            serving.now,
            lambda pods: len(pods) == 3 and all("-blue-" in p or "-green-" in p for p in pods),
        )
    finally:
        task.cancel()
    counts = [len(pods) for pods in serving.since_first()]
    assert counts and min(counts) > 0, counts
    source = await kube.get(DEPLOYMENTS.path(namespace, "web"))
    annotations = source["metadata"].get("annotations") or {}
    assert annotations.get("canary.io/managed-by") == "web2", annotations
    assert adopted["stable"] in ("blue", "green")


async def test_a_label_added_by_a_client_side_apply_never_leaves_the_release_serving_alone(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """One commit adds `tier: fe` to the pod template and to the Service
    selector; a client-side apply merges it into the live selector, next to
    the controller's `canary.io/twin`. The stable pods lack the label: that
    selector matches none of them (and later only the release's). The
    selector is put back without it until the release carrying the label is
    promoted: ready pods never drop to zero."""
    await deploy_app(kube, namespace)
    healthy = await wait_phase(kube, namespace, "Healthy")
    stable = healthy["stable"]
    serving = Serving("web")
    watcher = await _watching(kube, namespace, serving)
    task = asyncio.create_task(watcher.run())
    await watcher.synced.wait()
    try:
        await kube.patch(
            DEPLOYMENTS.path(namespace, "web"),
            {"spec": {"template": {"metadata": {"labels": {"tier": "fe"}}}}},
            patch_type="merge",
        )
        await kube.patch(
            SERVICES.path(namespace, "web"),
            {"spec": {"selector": {"tier": "fe"}}},
            patch_type="merge",
        )
        await eventually(
            lambda: service_status(kube, namespace),
            lambda s: s.get("phase") == "Healthy" and s.get("stable") != stable,
            timeout_s=120,
        )
        # The status is written with the flip, and the EndpointSlice follows
        # it: watched until then (stopped at the status, a clean-clone run
        # under load never saw the flip, and found the release alone nowhere).
        canary = "green" if stable == "blue" else "blue"
        await eventually(
            serving.now,
            lambda pods: bool(pods) and all(f"-{canary}-" in p for p in pods),
            timeout_s=30,
        )
    finally:
        task.cancel()
    # The apply itself empties the Service (its selector matches no stable
    # pod) until the controller, woken by that write, puts the selector back:
    # one watch event. Before, it stayed empty until the first step, whose
    # selector then matched the release's pods alone.
    assert serving.seen[-1], serving.seen[-1]
    assert serving.empty_for() < 3.0, (serving.empty_for(), serving.seen)
    [promoted] = [r for r in await history_of(kube, namespace) if r["outcome"] == "promoted"][-1:]
    alone = [
        at
        for at, pods in zip(serving.wall, serving.seen, strict=True)
        if pods and all(f"-{canary}-" in p for p in pods)
    ]
    # The release's pods alone only from its promotion on (its record is
    # written just before the flip).
    assert alone and min(alone) >= promoted["ended"] - 0.5, (alone, promoted["ended"])
