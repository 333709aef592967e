"""Rollouts of a Deployment a team autoscales with an HPA, on the sandbox:
the controller-manager's real HPA controller, fed the simulator's request
rate by the real prometheus-adapter, scales the stable twin through the
controller's copy of the team's HPA while the controller rolls out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from canary.kube import Informer, Kube, NotFound, WatchEvent
from canary.kube.resources import DEPLOYMENTS, ENDPOINTSLICES, EVENTS, HPAS, SERVICES
from canary.observe import ready_endpoints
from canary.sandbox import cluster, metrics
from canary.sandbox.simulator import RATE_ANNOTATION
from canary.spec import SERVICE_LABEL
from canary.twins import canary_replicas
from tests.integration.conftest import RunningController
from tests.integration.helpers import deployment, eventually, managed_service, service_status

pytestmark = pytest.mark.metrics

TARGET = 10  # requests per second per pod the team's HPA aims at


@pytest.fixture(autouse=True)
def metrics_pipeline(sandbox: cluster.Sandbox) -> None:
    if not sandbox.has_metrics:
        pytest.fail(
            "the sandbox runs without --metrics; start it with `canary sandbox up --metrics`"
        )


def team_hpa(low: int, high: int, **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": low,
        "maxReplicas": high,
        "metrics": [
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": metrics.METRIC},
                    "target": {"type": "AverageValue", "averageValue": str(TARGET)},
                },
            }
        ],
        # No five-minute scale-down window: tests follow load within seconds.
        "behavior": {
            "scaleUp": {"stabilizationWindowSeconds": 0},
            "scaleDown": {"stabilizationWindowSeconds": 0},
        },
    }
    spec.update(changes)
    return {"metadata": {"name": "web"}, "spec": spec}


async def deploy(
    kube: Kube,
    namespace: str,
    replicas: int,
    hpa: dict[str, Any] | None,
    rps: int,
    autoscaled_first: bool = False,
    strategy: str = "canary",
    **spec: str,
) -> None:
    """The team's app; with autoscaled_first, it runs and its HPA scales it
    on live metrics before the Service is managed, as in any real adoption."""
    await kube.create(DEPLOYMENTS.path(namespace), deployment("web", replicas, {"app": "web"}))
    if hpa is not None:
        await kube.create(HPAS.path(namespace), hpa)
    service = managed_service("web", strategy, True, **spec)
    annotations = service["metadata"]["annotations"]
    annotations[RATE_ANNOTATION] = str(rps)
    del annotations["canary.io/strategy"]
    if not autoscaled_first:
        annotations["canary.io/strategy"] = strategy
    await kube.create(SERVICES.path(namespace), service)
    if autoscaled_first:
        await followed(kube, namespace, "web")
        await set_service(kube, namespace, {"canary.io/strategy": strategy})


async def set_service(kube: Kube, namespace: str, annotations: dict[str, str | None]) -> None:
    await kube.patch(SERVICES.path(namespace, "web"), {"metadata": {"annotations": annotations}})


async def size(kube: Kube, namespace: str, name: str) -> int:
    try:
        return int((await kube.get(DEPLOYMENTS.path(namespace, name)))["spec"]["replicas"])
    except NotFound:
        return -1


async def sizes(kube: Kube, namespace: str) -> dict[str, int]:
    return {name: await size(kube, namespace, name) for name in ("web", "web-blue", "web-green")}


async def hpa_or_none(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return await kube.get(HPAS.path(namespace, name))
    except NotFound:
        return None


async def copies(kube: Kube, namespace: str) -> list[str]:
    listing = await kube.get(HPAS.path(namespace), labelSelector=SERVICE_LABEL)
    return sorted(h["metadata"]["name"] for h in listing.get("items", []))


async def events(kube: Kube, namespace: str, reason: str) -> list[dict[str, Any]]:
    listing = await kube.get(EVENTS.path(namespace), fieldSelector=f"reason={reason}")
    return list(listing.get("items", []))


async def release(kube: Kube, namespace: str, image: str) -> None:
    await kube.patch(
        DEPLOYMENTS.path(namespace, "web"),
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}},
        patch_type="strategic",
    )


async def pause_at_a_step(kube: Kube, namespace: str) -> dict[str, Any]:
    """Wait for the canary to serve at a step, then pause the rollout there."""
    await eventually(
        lambda: service_status(kube, namespace),
        lambda s: bool(s.get("canary")) and s.get("step_ready", 0) > 0,
        timeout_s=120,
    )
    await set_service(kube, namespace, {"canary.io/paused": "true"})
    return await eventually(
        lambda: service_status(kube, namespace),
        lambda s: s.get("phase") == "Paused",
        timeout_s=30,
    )


async def followed(kube: Kube, namespace: str, twin: str) -> dict[str, Any]:
    """Our copy on `twin`, once the HPA controller has read its metrics."""
    copy = await eventually(
        lambda: hpa_or_none(kube, namespace, twin),
        lambda h: h is not None and bool((h.get("status") or {}).get("currentMetrics")),
        timeout_s=90,
    )
    assert copy is not None
    return copy


@contextlib.asynccontextmanager
async def endpoint_counts(kube: Kube, namespace: str) -> AsyncIterator[list[dict[str, int]]]:
    """The Service's ready endpoints by twin, after every EndpointSlice change."""
    counts: list[dict[str, int]] = []
    slices: dict[str, dict[str, Any]] = {}

    def seen(event: WatchEvent) -> None:
        meta = event.object["metadata"]
        if (meta.get("labels") or {}).get("kubernetes.io/service-name") != "web":
            return
        if event.type == "DELETED":
            slices.pop(meta["name"], None)
        else:
            slices[meta["name"]] = event.object
        pods = ready_endpoints(slices.values())
        counts.append({c: sum(p.startswith(f"web-{c}-") for p in pods) for c in ("blue", "green")})

    watcher = Informer(kube, ENDPOINTSLICES, namespace=namespace, on_event=seen)
    task = asyncio.create_task(watcher.run())
    await watcher.synced.wait()
    try:
        yield counts
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_load_rising_mid_rollout_scales_the_stable_the_canary_follows_and_promotion_keeps_capacity(  # noqa: E501
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    # A scale-down window longer than the metric's rate window (5 s) and the
    # adapter's relist (5 s), as any real HPA has (the default is 300 s): a
    # new HPA starts its window at the twin's size, so its first readings,
    # taken while both twins still shared the load, cannot trim the new twin.
    window = {
        "scaleUp": {"stabilizationWindowSeconds": 0},
        "scaleDown": {"stabilizationWindowSeconds": 30},
    }
    hpa = team_hpa(2, 12, behavior=window)
    await deploy(kube, namespace, 2, hpa, 2 * TARGET, autoscaled_first=True, interval="8s")
    original = await kube.get(HPAS.path(namespace, "web"))
    await eventually(lambda: service_status(kube, namespace), lambda s: s.get("phase") == "Healthy")
    copy = await followed(kube, namespace, "web-blue")
    team = await kube.get(HPAS.path(namespace, "web"))
    # Kubernetes' HPA controller had counted the app's pods as the team HPA's:
    # it would refuse our copy (AmbiguousSelector) until that HPA is made afresh.
    reset = await events(kube, namespace, "AutoscalerReset")
    print(f"\nAutoscalerReset: {[e['message'] for e in reset]}")
    assert (
        team["spec"] == original["spec"] and team["metadata"]["uid"] != original["metadata"]["uid"]
    )
    assert copy["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "web-blue",
    }
    for key in ("metrics", "minReplicas", "maxReplicas", "behavior"):
        assert copy["spec"][key] == team["spec"][key]
    assert team["spec"]["scaleTargetRef"]["name"] == "web"  # the team's own is left alone
    assert copy["metadata"]["labels"][SERVICE_LABEL] == "web"

    await release(kube, namespace, "registry.example/web:v2")
    paused = await pause_at_a_step(kube, namespace)
    weight = int(paused["requested_weight"])

    # Load goes up while the canary serves: the stable twin's HPA scales it,
    # and the canary follows at the step's weight.
    raised = asyncio.get_running_loop().time()
    await set_service(kube, namespace, {RATE_ANNOTATION: str(8 * TARGET)})
    grown = await eventually(
        lambda: sizes(kube, namespace),
        lambda n: n["web-blue"] >= 4 and n["web-green"] == canary_replicas(n["web-blue"], weight),
        timeout_s=120,
    )
    took = asyncio.get_running_loop().time() - raised
    print(f"\nload 2->8 x target at {weight}%: {grown} after {took:.1f}s")
    assert grown["web"] == 0  # the team's Deployment stays at 0; its HPA idles

    async with endpoint_counts(kube, namespace) as counts:
        before = await sizes(kube, namespace)
        serving = before["web-blue"] + before["web-green"]
        await set_service(kube, namespace, {"canary.io/paused": None})
        promoted = await eventually(
            lambda: service_status(kube, namespace),
            lambda s: s.get("stable") == "green" and s.get("phase") == "Healthy",
            timeout_s=120,
        )
        assert promoted["stable_revision"] == paused["canary_revision"]
        moved = await followed(kube, namespace, "web-green")
    assert await copies(kube, namespace) == ["web-green"]  # the HPA moved with the flip
    assert moved["spec"]["scaleTargetRef"]["name"] == "web-green"
    after_flip = [c["green"] for c in counts if c["blue"] == 0 and c["green"]]
    print(f"promotion: {serving} pods served before it, new twin's ready endpoints {after_flip}")
    assert after_flip and min(after_flip) >= serving  # never fewer than both twins served

    # Release: the team's HPA targets its Deployment again, at no less than served.
    served = await size(kube, namespace, "web-green")
    await set_service(kube, namespace, {"canary.io/strategy": None})
    await eventually(
        lambda: kube.get(SERVICES.path(namespace, "web")),
        lambda s: "canary.io/status" not in (s["metadata"].get("annotations") or {}),
        timeout_s=90,
    )
    handed = await sizes(kube, namespace)
    assert handed["web"] >= served and handed["web-blue"] == handed["web-green"] == -1
    assert await copies(kube, namespace) == []
    team = await kube.get(HPAS.path(namespace, "web"))
    assert team["spec"]["scaleTargetRef"]["name"] == "web"

    # ... and computes on it again: the team's HPA is live on its Deployment.
    def active(hpa: dict[str, Any]) -> bool:
        status = hpa.get("status") or {}
        return int(status.get("currentReplicas", 0)) >= served and any(
            c["type"] == "ScalingActive" and c["reason"] == "ValidMetricFound"
            for c in status.get("conditions") or []
        )

    await eventually(lambda: kube.get(HPAS.path(namespace, "web")), active, timeout_s=120)


async def test_a_team_editing_then_deleting_its_hpa_mid_rollout_is_followed_without_a_drop(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    await deploy(kube, namespace, 2, team_hpa(2, 10), 2 * TARGET, interval="8s")
    await eventually(lambda: service_status(kube, namespace), lambda s: s.get("phase") == "Healthy")
    await followed(kube, namespace, "web-blue")
    await release(kube, namespace, "registry.example/web:v2")
    paused = await pause_at_a_step(kube, namespace)
    weight = int(paused["requested_weight"])

    # The team raises its minimum: the copy is rewritten, the real HPA
    # controller scales the stable twin to it, the canary follows.
    await kube.patch(HPAS.path(namespace, "web"), {"spec": {"minReplicas": 5}})
    await eventually(
        lambda: hpa_or_none(kube, namespace, "web-blue"),
        lambda h: h is not None and h["spec"]["minReplicas"] == 5,
        timeout_s=30,
    )
    await eventually(
        lambda: sizes(kube, namespace),
        lambda n: n["web-blue"] == 5 and n["web-green"] == canary_replicas(5, weight),
        timeout_s=90,
    )

    # Someone edits our copy by hand (a second writer): the team's HPA wins.
    await kube.patch(HPAS.path(namespace, "web-blue"), {"spec": {"maxReplicas": 9}})
    await eventually(
        lambda: hpa_or_none(kube, namespace, "web-blue"),
        lambda h: h is not None and h["spec"]["maxReplicas"] == 10,
        timeout_s=30,
    )

    # Someone scales the team's Deployment by hand: put back, and not blamed on the HPA.
    await kube.patch(DEPLOYMENTS.path(namespace, "web"), {"spec": {"replicas": 3}})
    scaled = await eventually(lambda: events(kube, namespace, "SourceScaled"), bool, timeout_s=30)
    message = scaled[0]["message"]
    assert "an autoscaler" not in message and "not by its HPA web" in message, message
    await eventually(lambda: size(kube, namespace, "web"), lambda n: n == 0, timeout_s=30)

    # The team deletes its HPA: the copy goes, and the app stays at what both
    # twins served (as Kubernetes leaves a Deployment at the size its deleted
    # HPA gave it), a fixed size from then on: the promotion gives the new
    # twin that many, never the stable twin's share alone.
    before = await sizes(kube, namespace)
    served = min(before["web-blue"] + before["web-green"], 10)
    assert served > 5, before
    async with endpoint_counts(kube, namespace) as counts:
        await kube.delete(HPAS.path(namespace, "web"))
        await eventually(lambda: copies(kube, namespace), lambda found: found == [], timeout_s=30)
        removed = await eventually(
            lambda: events(kube, namespace, "AutoscalerRemoved"), bool, timeout_s=30
        )
        message = removed[0]["message"]
        assert "its HPA is gone" in message and f"from 5 to {served} replicas" in message, message
        await set_service(kube, namespace, {"canary.io/paused": None})
        promoted = await eventually(
            lambda: service_status(kube, namespace),
            lambda s: s.get("stable") == "green" and s.get("phase") == "Healthy",
            timeout_s=120,
        )
    assert promoted["replicas"] == served
    assert await size(kube, namespace, "web-green") == served
    # From the deletion on, the Service never had fewer than the 5 stable pods ready.
    totals = [c["blue"] + c["green"] for c in counts]
    print(f"\nafter the team's HPA was deleted: ready endpoints {totals}")
    assert min(totals) >= 5


async def test_a_blue_green_preview_runs_at_the_autoscaled_stable_size_and_follows_it(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    window = {
        "scaleUp": {"stabilizationWindowSeconds": 0},
        "scaleDown": {"stabilizationWindowSeconds": 30},
    }
    hpa = team_hpa(2, 10, behavior=window)
    await deploy(kube, namespace, 2, hpa, 4 * TARGET, strategy="blue-green")
    await eventually(lambda: service_status(kube, namespace), lambda s: s.get("phase") == "Healthy")
    await followed(kube, namespace, "web-blue")
    await eventually(lambda: size(kube, namespace, "web-blue"), lambda n: n == 4, timeout_s=90)
    await release(kube, namespace, "registry.example/web:v2")
    await pause_at_a_step(kube, namespace)
    assert await size(kube, namespace, "web-green") == await size(kube, namespace, "web-blue")
    # More load on the live Service: the stable twin scales, the preview follows.
    await set_service(kube, namespace, {RATE_ANNOTATION: str(7 * TARGET)})
    grown = await eventually(
        lambda: sizes(kube, namespace),
        lambda n: n["web-blue"] >= 6 and n["web-green"] == n["web-blue"],
        timeout_s=120,
    )
    print(f"\nblue-green preview at the stable's size: {grown}")
    await set_service(kube, namespace, {"canary.io/paused": None})
    await eventually(
        lambda: service_status(kube, namespace),
        lambda s: s.get("stable") == "green" and s.get("phase") == "Healthy",
        timeout_s=120,
    )
    assert await size(kube, namespace, "web-green") >= grown["web-blue"]
    assert await copies(kube, namespace) == ["web-green"]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (
            {
                "metrics": [
                    {
                        "type": "External",
                        "external": {
                            "metric": {"name": "queue_depth"},
                            "target": {"type": "AverageValue", "averageValue": "30"},
                        },
                    }
                ]
            },
            "metric 1 is of type External",
        ),
        (
            {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web"}},
            "its scaleTargetRef is a apps/v1 StatefulSet, not a Deployment",
        ),
    ],
    ids=["external-metric", "statefulset-target"],
)
async def test_an_hpa_that_cannot_be_followed_is_a_warning_and_the_rollout_runs_at_fixed_size(
    kube: Kube, namespace: str, controller: RunningController, changes: dict[str, Any], reason: str
) -> None:
    await deploy(kube, namespace, 3, team_hpa(2, 10, **changes), 2 * TARGET)
    refused = await eventually(
        lambda: events(kube, namespace, "AutoscalerRefused"), bool, timeout_s=90
    )
    assert refused[0]["type"] == "Warning" and reason in refused[0]["message"]
    await release(kube, namespace, "registry.example/web:v2")
    await eventually(
        lambda: service_status(kube, namespace),
        lambda s: s.get("stable") == "green" and s.get("phase") == "Healthy",
        timeout_s=120,
    )
    assert await copies(kube, namespace) == []
    final = await sizes(kube, namespace)
    assert final["web"] == 0 and final["web-green"] == 3
    assert len(await events(kube, namespace, "AutoscalerRefused")) == 1  # said once
