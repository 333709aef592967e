"""A Service with `spec.publishNotReadyAddresses: true`, on the real
sandbox: its EndpointSlices list every pod with an IP as `ready`, ready or
not; the pod's own readiness is `serving`. kwok makes every pod Ready at
once; a test makes one not ready by writing the pod's status (kwok does not
put it back). Found by review; each test failed before the fix."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from canary import oncall
from canary.kube import Kube
from canary.kube.resources import DEPLOYMENTS, ENDPOINTSLICES, PODS
from canary.sandbox import cluster
from canary.spec import TWIN_LABEL
from canary.twins import both
from tests.integration.conftest import RunningController
from tests.integration.helpers import (
    event_reasons,
    eventually,
    managed_service,
    service_status,
)
from tests.integration.test_rollouts import deploy_app, release, selector, wait_phase


def _publishing(**annotations: Any) -> dict[str, Any]:
    body = managed_service(**annotations)
    body["spec"]["publishNotReadyAddresses"] = True
    return body


async def _set_ready(kube: Kube, namespace: str, pod: str, ready: bool) -> None:
    """What the kubelet writes when a readiness probe fails (or passes again)."""
    value = "True" if ready else "False"
    await kube.patch(
        PODS.path(namespace, pod, sub="status"),
        {
            "status": {
                "conditions": [
                    {"type": "Ready", "status": value},
                    {"type": "ContainersReady", "status": value},
                ]
            }
        },
        patch_type="strategic",
    )


async def _pods_of(kube: Kube, namespace: str, color: str) -> list[str]:
    listing = await kube.get(PODS.path(namespace), labelSelector=f"{TWIN_LABEL}={color}")
    return sorted(
        p["metadata"]["name"]
        for p in listing.get("items", [])
        if not p["metadata"].get("deletionTimestamp")
    )


async def _slices(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    listing = await kube.get(
        ENDPOINTSLICES.path(namespace), labelSelector="kubernetes.io/service-name=web"
    )
    return list(listing.get("items", []))


async def _listed(kube: Kube, namespace: str) -> dict[str, dict[str, Any]]:
    """Each pod the Service's EndpointSlices list, with its conditions."""
    return {
        e["targetRef"]["name"]: e.get("conditions") or {}
        for eps in await _slices(kube, namespace)
        for e in eps.get("endpoints") or []
        if e.get("targetRef")
    }


async def _canary_pod_at_its_step(kube: Kube, namespace: str, service: dict[str, Any]) -> str:
    """A one-replica app released, its canary pod serving its one step."""
    await deploy_app(kube, namespace, replicas=1, service=service)
    await wait_phase(kube, namespace, "Healthy")
    await release(kube, namespace, "registry.example/web:v2")
    await eventually(
        lambda: service_status(kube, namespace), lambda s: bool(s.get("step_ready")), timeout_s=30
    )
    [pod] = await _pods_of(kube, namespace, "green")
    return pod


async def _unready_listed(kube: Kube, namespace: str, pod: str, serving: bool) -> None:
    """The pod marked not ready by its kubelet, and its endpoint written as
    the (frozen) controller-manager would: `serving` as given."""
    await _set_ready(kube, namespace, pod, False)
    for eps in await _slices(kube, namespace):
        for endpoint in eps.get("endpoints") or []:
            if endpoint.get("targetRef", {}).get("name") == pod:
                endpoint["conditions"] = {"ready": True, "serving": serving, "terminating": False}
                await kube.replace(ENDPOINTSLICES.path(namespace, eps["metadata"]["name"]), eps)


async def test_a_stable_twin_whose_pods_are_not_ready_is_degraded_though_listed_ready(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    # Before: "Healthy" for as long as no pod was ready, and no Degraded Event.
    await deploy_app(kube, namespace, replicas=2, service=_publishing())
    await wait_phase(kube, namespace, "Healthy")
    pods = await _pods_of(kube, namespace, "blue")
    assert len(pods) == 2, pods
    for pod in pods:
        await _set_ready(kube, namespace, pod, False)
    listed = await eventually(
        lambda: _listed(kube, namespace),
        lambda found: all(found.get(p, {}).get("serving") is False for p in pods),
        timeout_s=15,
    )
    assert all(listed[p]["ready"] for p in pods), listed  # the Service publishes them
    # (The pods turn unready one at a time: "1/2 ... ready" may come first.)
    status = await eventually(
        lambda: service_status(kube, namespace),
        lambda s: s.get("phase") == "Degraded" and "0/2" in s.get("degraded", ""),
        timeout_s=15,
    )
    assert "0/2 pods of the blue twin (stable) ready" in status["degraded"], status
    assert "the Service has no ready endpoint" in status["degraded"], status
    assert "Degraded" in await event_reasons(kube, namespace)
    for pod in pods:
        await _set_ready(kube, namespace, pod, True)
    await wait_phase(kube, namespace, "Healthy", timeout_s=15)
    await eventually(
        lambda: event_reasons(kube, namespace), lambda r: "Recovered" in r, timeout_s=15
    )


async def test_a_promotion_does_not_flip_onto_a_pod_that_just_turned_unready(
    kube: Kube, namespace: str, controller: RunningController, sandbox: cluster.Sandbox
) -> None:
    """The flip waits for every new pod to be counted ready by the Deployment
    and to be a ready endpoint. A pod that turns unready reaches its
    EndpointSlice one controller hop later and the Deployment's
    readyReplicas two (its ReplicaSet's, then its own): in between only the
    endpoint says so, and the slice's event is what wakes the controller.
    The controller-manager is frozen for that moment, and the slice is
    written as its EndpointSlice controller writes it for such a Service.
    Before: it flipped onto the unready pod, and once the slice followed,
    scaled the old, ready twin to 0: a Service with no pod that serves."""
    service = _publishing(steps="50", interval="60s", scale_down_delay="2s")
    pod = await _canary_pod_at_its_step(kube, namespace, service)
    manager = next(p for p in sandbox.procs if p.name == "kube-controller-manager")
    os.kill(manager.pid, signal.SIGSTOP)
    try:
        await _unready_listed(kube, namespace, pod, serving=False)
        green = await kube.get(DEPLOYMENTS.path(namespace, "web-green"))
        assert green["status"]["readyReplicas"] == 1  # not yet told
        await oncall.request(kube, namespace, "web", "promote", None)
        decided = await eventually(
            lambda: service_status(kube, namespace),
            lambda s: "0/1 endpoints" in s.get("message", "") or s.get("stable") == "green",
            timeout_s=15,
        )
    finally:
        os.kill(manager.pid, signal.SIGCONT)
    # The slices and the Deployment catch up; the old twin is scaled down
    # 2 s after a flip, once the Service's endpoints have left it.
    await asyncio.sleep(5)
    blue = await kube.get(DEPLOYMENTS.path(namespace, "web-blue"))
    status = await service_status(kube, namespace)
    seen = (status.get("stable"), await selector(kube, namespace), blue["spec"]["replicas"])
    assert seen == ("blue", both({"app": "web"}, "web"), 1), (seen, decided.get("message"))
    # What it waits for, once the Deployment has caught up too. Waited for,
    # not read at the end of the window: a change of the message alone is
    # written at most every PROGRESS_WRITE_EVERY_S (5 s) after the status
    # write that answered the promote, so it may land just after the window.
    status = await eventually(
        lambda: service_status(kube, namespace),
        lambda s: "promoting: 0/1 pods ready, 0/1 endpoints" in s.get("message", ""),
        timeout_s=30,
    )
    assert status["promoting"] and status["stable"] == "blue", status
    # Ready again: the flip goes, and the old twin goes after it.
    await _set_ready(kube, namespace, pod, True)
    done = await wait_phase(kube, namespace, "Healthy", timeout_s=30)
    assert done["stable"] == "green" and done["stable_revision"] == status["canary_revision"]
    await eventually(
        lambda: kube.get(DEPLOYMENTS.path(namespace, "web-blue")),
        lambda d: d["spec"]["replicas"] == 0,
        timeout_s=15,
    )


async def test_a_promotion_does_not_flip_onto_a_pod_the_kubelet_marked_unready_behind_a_stale_slice(
    kube: Kube, namespace: str, controller: RunningController, sandbox: cluster.Sandbox
) -> None:
    """What the race in the test above was caught doing, made to happen
    every time: kube-controller-manager resumed from a freeze and wrote the
    EndpointSlice from its stale cache of pods, so the pod the kubelet had
    just marked not ready was listed `serving` again, and the Deployment's
    readyReplicas still counted it. Any Service, not only one that
    publishes not-ready addresses. Before: the promotion flipped onto it and
    scaled the old twin to 0. Now the pod's own Ready condition vetoes it."""
    service = managed_service(steps="50", interval="60s", scale_down_delay="2s")
    pod = await _canary_pod_at_its_step(kube, namespace, service)
    manager = next(p for p in sandbox.procs if p.name == "kube-controller-manager")
    os.kill(manager.pid, signal.SIGSTOP)
    try:
        # The stale slice: rewritten as it was, `serving` (a new
        # resourceVersion, as the controller-manager's write gives it).
        await _unready_listed(kube, namespace, pod, serving=True)
        green = await kube.get(DEPLOYMENTS.path(namespace, "web-green"))
        assert green["status"]["readyReplicas"] == 1  # stale too
        await oncall.request(kube, namespace, "web", "promote", None)
        decided = await eventually(
            lambda: service_status(kube, namespace),
            lambda s: "0/1 endpoints" in s.get("message", "") or s.get("stable") == "green",
            timeout_s=15,
        )
        assert decided.get("stable") == "blue", decided.get("message")
        await asyncio.sleep(3)  # more than the scale-down delay: nothing moves
        blue = await kube.get(DEPLOYMENTS.path(namespace, "web-blue"))
        status = await service_status(kube, namespace)
        seen = (status.get("stable"), await selector(kube, namespace), blue["spec"]["replicas"])
        assert seen == ("blue", both({"app": "web"}, "web"), 1), (seen, status.get("message"))
    finally:
        os.kill(manager.pid, signal.SIGCONT)
    await _set_ready(kube, namespace, pod, True)
    done = await wait_phase(kube, namespace, "Healthy", timeout_s=30)
    assert done["stable"] == "green"
