"""What an SRE does to a managed app on a bad day, on the real sandbox: the
team's Deployment deleted and recreated, a second Service for the same
Deployment, the Service deleted, the status annotation lost, a GitOps
re-apply of the original manifest, twins deleted by hand, Prometheus
stopped mid-rollout. Each test watches what is observed through the API,
never the controller's word for it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

from canary.kube import Kube, NotFound, WatchEvent
from canary.kube.resources import (
    CONFIGMAPS,
    DEPLOYMENTS,
    ENDPOINTSLICES,
    EVENTS,
    PODS,
    SERVICES,
    Resource,
)
from canary.model import Color, other
from canary.observe import ready_endpoints
from canary.sandbox import cluster
from canary.spec import HOLD_GATE, MANAGED_BY
from canary.twins import template_hash
from tests.integration.conftest import RunningController
from tests.integration.helpers import (
    admission_refusal,
    deployment,
    event_reasons,
    eventually,
    first_ready_pod,
    kubectl,
    managed_service,
    pods_quota,
    service_status,
    watched,
)
from tests.integration.test_rollouts import (
    deploy_app,
    release,
    selector,
    serving_first_step,
    wait_phase,
)

REPLICASETS = Resource("apps/v1", "replicasets")


class ServiceSlices:
    """One Service's EndpointSlices as the watch delivers them, and its
    ready pods after each event."""

    def __init__(self, name: str = "web") -> None:
        self.name = name
        self._slices: dict[str, Any] = {}

    def ready(self, event: WatchEvent) -> frozenset[str] | None:
        """The Service's ready pods after this event; None for another's."""
        labels = event.object["metadata"].get("labels") or {}
        if labels.get("kubernetes.io/service-name") != self.name:
            return None
        if event.type == "DELETED":
            self._slices.pop(event.key[1], None)
        else:
            self._slices[event.key[1]] = event.object
        return frozenset(ready_endpoints(self._slices.values()))


@contextlib.asynccontextmanager
async def endpoint_watch(
    kube: Kube, namespace: str, name: str = "web", pods: set[str] | None = None
) -> AsyncIterator[list[int]]:
    """Every count of ready endpoints the Service's EndpointSlices show, as
    the watch delivers them (and into `pods`, every pod ever listed ready)."""
    counts: list[int] = []
    slices = ServiceSlices(name)

    def record(event: WatchEvent) -> None:
        ready = slices.ready(event)
        if ready is None:
            return
        counts.append(len(ready))
        if pods is not None:
            pods.update(ready)

    async with watched(kube, ENDPOINTSLICES, namespace, on_event=record):
        yield counts


async def argocd_apply(kube: Kube, path: str, body: dict[str, Any]) -> None:
    """A forced server-side apply, as Argo CD (or Flux) syncs a manifest."""
    await kube.patch(path, body, patch_type="apply", fieldManager="argocd-controller", force=True)


async def exists(kube: Kube, path: str) -> bool:
    try:
        await kube.get(path)
    except NotFound:
        return False
    return True


async def gone(kube: Kube, path: str, timeout_s: float = 60) -> None:
    await eventually(lambda: exists(kube, path), lambda found: not found, timeout_s=timeout_s)


async def owned_by(kube: Kube, namespace: str, uid: str) -> list[str]:
    """The ReplicaSets whose owner is the object with this uid."""
    listing = await kube.get(REPLICASETS.path(namespace))
    return [
        rs["metadata"]["name"]
        for rs in listing.get("items", [])
        if any(ref.get("uid") == uid for ref in rs["metadata"].get("ownerReferences") or [])
    ]


async def events_of(kube: Kube, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
    listing = await kube.get(
        EVENTS.path(namespace),
        fieldSelector=f"involvedObject.name={name},involvedObject.kind={kind}",
    )
    return list(listing.get("items", []))


async def test_deleting_and_recreating_the_deployment_never_takes_the_service_down(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    await deploy_app(kube, namespace)
    await wait_phase(kube, namespace, "Healthy")
    uid = (await kube.get(DEPLOYMENTS.path(namespace, "web")))["metadata"]["uid"]
    assert await owned_by(kube, namespace, uid)  # something for the collector to collect
    async with endpoint_watch(kube, namespace) as counts:
        # `kubectl replace --force`: delete, then create the same manifest.
        await kube.delete(DEPLOYMENTS.path(namespace, "web"))
        status = await wait_phase(kube, namespace, "Waiting")
        assert "keeps serving" in status["message"]
        assert "SourceMissing" in await event_reasons(kube, namespace)
        # The garbage collector has acted on the deletion (the source's own
        # ReplicaSets are collected), and the twins survived it.
        await eventually(lambda: owned_by(kube, namespace, uid), lambda names: not names)
        blue = await kube.get(DEPLOYMENTS.path(namespace, "web-blue"))
        owners = [ref["uid"] for ref in blue["metadata"].get("ownerReferences") or []]
        assert uid not in owners
        await kube.create(DEPLOYMENTS.path(namespace), deployment("web", 3, {"app": "web"}))
        await wait_phase(kube, namespace, "Healthy")
        await eventually(
            lambda: kube.get(DEPLOYMENTS.path(namespace, "web")),
            lambda d: d["spec"]["replicas"] == 0,
        )
    assert counts and min(counts) == 3, counts  # never fewer than the stable twin's 3
    assert await selector(kube, namespace) == {"app": "web", "canary.io/twin": "blue"}
    # And the next release still goes out through the twins.
    await release(kube, namespace, "registry.example/web:v2")
    await wait_phase(kube, namespace, "Progressing")


async def test_a_reinstall_while_the_stable_twin_is_at_zero_serves_on_until_the_twin_is_back(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """A reinstall while the controller is down (a restart, its own
    upgrade): the Deployment deleted and created afresh, the Service's
    selector written back as in Git, and the stable twin at 0 (scaled down
    by hand, or drained). The Deployment's own pods, of the stable
    revision, are all the Service has when the controller is back: they
    serve until the stable twin has been scaled back and its pods are
    ready. Before, the selector went back onto the twin at 0 and the
    Deployment to 0 in one decision: no endpoint at all."""
    await deploy_app(kube, namespace)
    await wait_phase(kube, namespace, "Healthy")
    await controller.stop()
    await kube.delete(DEPLOYMENTS.path(namespace, "web"))
    await kube.patch(DEPLOYMENTS.path(namespace, "web-blue"), {"spec": {"replicas": 0}})
    await kube.create(DEPLOYMENTS.path(namespace), deployment("web", 3, {"app": "web"}))
    await kube.patch(
        SERVICES.path(namespace, "web"), {"spec": {"selector": {"canary.io/twin": None}}}
    )

    async def serving() -> list[str]:
        listing = await kube.get(
            ENDPOINTSLICES.path(namespace), labelSelector="kubernetes.io/service-name=web"
        )
        return ready_endpoints(listing.get("items", []))

    # The Deployment's own 3 pods, and none of the twin's.
    await eventually(
        serving,
        lambda pods: len(pods) == 3 and not any(p.startswith("web-blue") for p in pods),
        timeout_s=60,
    )
    async with endpoint_watch(kube, namespace) as counts:
        await controller.start()
        await eventually(
            lambda: kube.get(DEPLOYMENTS.path(namespace, "web")),
            lambda d: d["spec"]["replicas"] == 0,
            timeout_s=60,
        )
        assert await selector(kube, namespace) == {"app": "web", "canary.io/twin": "blue"}
        status = await wait_phase(kube, namespace, "Healthy", timeout_s=60)
        await eventually(serving, lambda pods: len(pods) == 3, timeout_s=30)
    assert counts and min(counts) >= 3, counts
    assert status["stable"] == "blue", status


class Split:
    """The Service's ready endpoints at each EndpointSlice event, told apart
    into pods of the stable revision (the stable twin's, the Deployment's
    own of the ReplicaSet that stood in) and of the release (the canary
    twin's, the Deployment's own of any other ReplicaSet)."""

    def __init__(self, stable: Color) -> None:
        self.stable, self.canary = stable, other(stable)
        self.stood_in = ""  # that ReplicaSet's pod-template-hash, once known
        self.snapshots: list[tuple[float, frozenset[str]]] = []  # (when, ready pods)
        self._slices = ServiceSlices()
        self._loop = asyncio.get_running_loop()

    def record(self, event: WatchEvent) -> None:
        ready = self._slices.ready(event)
        if ready is not None:
            self.snapshots.append((self._loop.time(), ready))

    def of_release(self, pod: str) -> bool:
        if pod.startswith((f"web-{self.canary}-", f"web-{self.stable}-")):
            return pod.startswith(f"web-{self.canary}-")
        return template_hash(pod, "web") != self.stood_in

    def source_release(self, pods: frozenset[str]) -> list[str]:
        """The Deployment's own pods of the release (never analysed)."""
        return sorted(p for p in pods if self.of_release(p) and f"web-{self.canary}-" not in p)

    def counts(self, pods: frozenset[str]) -> tuple[int, int]:
        release = sum(1 for pod in pods if self.of_release(pod))
        return len(pods) - release, release

    async def serving(self) -> frozenset[str] | None:
        """The ready pods, as the watch last delivered them."""
        return self.snapshots[-1][1] if self.snapshots else None

    def sequence(self, since: int, zero: float) -> list[tuple[float, int, int]]:
        """(seconds after `zero`, stable, release) from snapshot `since` on."""
        return [(round(t - zero, 2), *self.counts(p)) for t, p in self.snapshots[since:]]

    def window(self, since: int, zero: float) -> str:
        """How long the Deployment's own pods of the release served, from
        snapshot `since` on (the release applied at `zero`)."""
        served = [t for t, pods in self.snapshots[since:] if self.source_release(pods)]
        if not served:
            return "no release pod of the Deployment served"
        out = next(
            t for t, p in self.snapshots[since:] if t > served[0] and not self.source_release(p)
        )
        return (
            f"a release pod of the Deployment served from {served[0] - zero:.2f}s to "
            f"{out - zero:.2f}s after the release ({out - served[0]:.2f}s)"
        )


async def _reinstalled_over_a_refused_twin(kube: Kube, namespace: str, seen: Split) -> int:
    """With the controller down and the stable twin's pods refused: the
    twin scaled to 0, the Deployment deleted and created afresh, the
    Service's selector written back as in Git; once the Deployment's 3
    pods are the Service's ready endpoints, their ReplicaSet's hash is
    `seen.stood_in`. The index of that snapshot."""
    await kube.delete(DEPLOYMENTS.path(namespace, "web"))
    await kube.patch(DEPLOYMENTS.path(namespace, f"web-{seen.stable}"), {"spec": {"replicas": 0}})
    await eventually(
        lambda: kube.get(PODS.path(namespace), labelSelector=f"canary.io/twin={seen.stable}"),
        lambda listing: not listing.get("items"),
        timeout_s=60,
    )
    await kube.create(DEPLOYMENTS.path(namespace), deployment("web", 3, {"app": "web"}))
    await kube.patch(
        SERVICES.path(namespace, "web"), {"spec": {"selector": {"canary.io/twin": None}}}
    )
    own = await eventually(
        seen.serving,
        lambda pods: (
            pods is not None and len(pods) == 3 and all(template_hash(p, "web") for p in pods)
        ),
        timeout_s=60,
    )
    assert own is not None
    [seen.stood_in] = {template_hash(pod, "web") for pod in own}
    return len(seen.snapshots) - 1


async def _reaction(
    kube: Kube, namespace: str, seen: Split, since: int, gated_before: bool
) -> dict[str, Any]:
    """The status once the controller has reacted to the release (said it
    is held, or gated the Deployment), or the Service emptied meanwhile."""

    async def probe() -> tuple[dict[str, Any], bool, bool]:
        status = await service_status(kube, namespace)
        gated = HOLD_GATE in gates_of(await kube.get(DEPLOYMENTS.path(namespace, "web")))
        emptied = any(not pods for _, pods in seen.snapshots[since:])
        return status, gated and not gated_before, emptied

    status, _, emptied = await eventually(
        probe,
        lambda r: "applied to it meanwhile" in r[0].get("message", "") or r[1] or r[2],
        timeout_s=60,
    )
    assert not emptied, f"the Service emptied: {[seen.counts(p) for _, p in seen.snapshots]}"
    return status


async def test_a_release_applied_during_the_reinstall_hold_never_serves_before_its_rollout(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """The reinstall of the test above, the stable twin's pods refused (a
    drain no node fits: an admission policy here), so that the Deployment's
    own pods of the stable revision hold the Service; then the team applies
    a release to that Deployment. The hold is kept: the Deployment is gated
    and the Service narrowed to the ReplicaSet that stood in
    (pod-template-hash), so its analysed pods serve and the release's none
    once the controller has seen the release (the surge pod the Deployment
    controller makes at once may serve until then). Once the stable twin's
    pods are back, the selector goes back onto it and the release rolls out
    through the strategy. Before (705e004), the release ended the hold: the
    selector went onto the stable twin with no ready pod (3 endpoints to
    0). The progress deadline is long enough not to end the hold."""
    await deploy_app(kube, namespace, service=managed_service(progress_deadline="300s"))
    healthy = await wait_phase(kube, namespace, "Healthy")
    seen = Split(healthy["stable"])
    loop = asyncio.get_running_loop()
    await controller.stop()
    async with watched(kube, ENDPOINTSLICES, namespace, on_event=seen.record):
        async with pods_of_twin_refused(kube, namespace, seen.stable):
            first = await _reinstalled_over_a_refused_twin(kube, namespace, seen)
            await controller.start()
            held = await eventually(
                lambda: service_status(kube, namespace),
                lambda s: "own pods (revision" in s.get("message", ""),
                timeout_s=60,
            )
            assert f"revision {healthy['stable_revision']}" in held["message"], held
            gated = HOLD_GATE in gates_of(await kube.get(DEPLOYMENTS.path(namespace, "web")))
            released, at_release = loop.time(), len(seen.snapshots)
            await release(kube, namespace, "registry.example/web:v2")
            status = await _reaction(kube, namespace, seen, at_release, gated)
            reacted = loop.time() - released
            # The gate is written before the status of the same cycle.
            status = await eventually(
                lambda: service_status(kube, namespace),
                lambda s: "applied to it meanwhile" in s.get("message", ""),
                timeout_s=30,
            )
            print(f"the status during the hold: {status['message']}")
            assert "is held until then and rolls out after" in status["message"], status
            # The ready endpoints catch up with the narrowed selector. Timed
            # from the narrowing (the stable twin has no endpoint, so it is
            # narrowed whether or not a release pod serves): the controller
            # can react before the surge pod is in the EndpointSlice at all,
            # and a snapshot clean then is no catching up. A second for the
            # EndpointSlice controller's syncs begun on the older selector.
            await eventually(
                lambda: selector(kube, namespace),
                lambda s: "pod-template-hash" in s,
                timeout_s=30,
            )
            await asyncio.sleep(1)
            await eventually(
                seen.serving,
                lambda pods: bool(pods) and not seen.source_release(pods or frozenset()),
                timeout_s=30,
            )
            cleared, cleared_after = len(seen.snapshots), loop.time() - released
            await asyncio.sleep(10)  # cycles of the hold: a release pod back would show
            narrowed = await selector(kube, namespace)
            print(f"the selector during the hold, as the API server has it: {narrowed}")
            assert narrowed == {"app": "web", "pod-template-hash": seen.stood_in}, narrowed
            status = await service_status(kube, namespace)
            assert f"only the pods of ReplicaSet web-{seen.stood_in}" in status["message"], status
            assert "ReconcileFailed" not in await event_reasons(kube, namespace)
            source = await kube.get(DEPLOYMENTS.path(namespace, "web"))
            assert HOLD_GATE in gates_of(source), source["spec"]["template"]["spec"]
            during = [sorted(p) for _, p in seen.snapshots[cleared:] if seen.counts(p)[1]]
        # The policy is gone: the ReplicaSet controller makes the stable pods
        # again, after its backoff (tens of seconds; see the drained test).
        await first_ready_pod(kube, namespace, f"web-{seen.stable}")
        # Off the ReplicaSet, onto the twins: the stable twin alone, or both
        # once the release's rollout has started (the next cycle, within
        # milliseconds: a poll can miss the first).
        await eventually(
            lambda: selector(kube, namespace),
            lambda s: (
                "pod-template-hash" not in s
                and s.get("app") == "web"
                and any(k in s for k in ("canary.io/twin", "canary.io/service"))
            ),
            timeout_s=60,
        )
        rollout = await eventually(
            lambda: service_status(kube, namespace),
            lambda s: s.get("phase") == "Progressing" and s.get("canary") == seen.canary,
            timeout_s=60,
        )
        twin = await kube.get(DEPLOYMENTS.path(namespace, f"web-{seen.canary}"))
        images = [c["image"] for c in twin["spec"]["template"]["spec"]["containers"]]
        assert images == ["registry.example/web:v2"], images
        done = await eventually(
            lambda: service_status(kube, namespace),
            lambda s: s.get("phase") == "Healthy" and s.get("stable") == seen.canary,
            timeout_s=120,
        )
    sequence = seen.sequence(first, released)
    print(f"(seconds after the release, stable, release) ready endpoints: {sequence}")
    print(
        f"{seen.window(at_release, released)}; the controller had reacted by {reacted:.2f}s, "
        f"the endpoints were clear of it by {cleared_after:.2f}s"
    )
    assert all(pods for _, pods in seen.snapshots[first:]), sequence  # never an empty Service
    # Clear of the release until the hold ended, and of the Deployment's
    # own release pods for good.
    assert not during, during
    assert not [p for _, p in seen.snapshots[cleared:] if seen.source_release(p)], sequence
    assert rollout["canary_revision"] != healthy["stable_revision"], rollout
    assert done["stable_revision"] != healthy["stable_revision"], done


async def test_a_second_service_for_the_same_deployment_is_a_conflict_and_writes_nothing(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    await deploy_app(kube, namespace)
    await wait_phase(kube, namespace, "Healthy")
    blue = await kube.get(DEPLOYMENTS.path(namespace, "web-blue"))
    second = managed_service("web2", deployment="web")
    async with watched(kube, DEPLOYMENTS, namespace) as deployments:
        await kube.create(SERVICES.path(namespace), second)
        status = await eventually(
            lambda: service_status(kube, namespace, "web2"),
            lambda s: s.get("phase") == "Conflict",
        )
        assert "Service web" in status["conflict"]
        warnings = [e for e in await events_of(kube, namespace, "Service", "web2")]
        assert any(e["reason"] == "Conflict" and e["type"] == "Warning" for e in warnings)
        # Absence window: web2's reconcile wrote its status last, after any
        # write it made; 2 s more lets later reconciles of either Service act.
        await asyncio.sleep(2)
    # No spec change of any Deployment, not even one undone in between.
    generations = {
        (e.key[1], e.object["metadata"]["generation"]) for e in deployments if e.type != "DELETED"
    }
    assert generations == {
        (e.key[1], e.object["metadata"]["generation"]) for e in deployments if e.type == "ADDED"
    }, generations
    after = await kube.get(DEPLOYMENTS.path(namespace, "web-blue"))
    assert after["metadata"]["generation"] == blue["metadata"]["generation"]
    web2 = await kube.get(SERVICES.path(namespace, "web2"))
    assert web2["spec"]["selector"] == {"app": "web2"}
    # The owner still rolls out normally.
    await release(kube, namespace, "registry.example/web:v2")
    await wait_phase(kube, namespace, "Progressing")


async def test_un_annotating_the_second_service_leaves_the_owners_twins_and_claim(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """What the Conflict Warning tells on-call to do: remove canary.io/strategy
    from one of the two Services. Before, removing it from the second one
    handed 'its' app back: the owner's twins were deleted (an outage), its
    claim and scheduling gate removed."""
    await deploy_app(kube, namespace)
    await wait_phase(kube, namespace, "Healthy")
    await kube.create(SERVICES.path(namespace), managed_service("web2", deployment="web"))
    await eventually(
        lambda: service_status(kube, namespace, "web2"), lambda s: s.get("phase") == "Conflict"
    )
    async with watched(kube, DEPLOYMENTS, namespace) as deployments:
        await kube.patch(
            SERVICES.path(namespace, "web2"),
            {"metadata": {"annotations": {"canary.io/strategy": None}}},
        )
        await eventually(
            lambda: kube.get(SERVICES.path(namespace, "web2")),
            lambda s: "canary.io/status" not in (s["metadata"].get("annotations") or {}),
        )
        await asyncio.sleep(2)  # later cycles of either Service
    assert not [e for e in deployments if e.type == "DELETED"], "a twin was deleted"
    source = await kube.get(DEPLOYMENTS.path(namespace, "web"))
    assert source["metadata"]["annotations"]["canary.io/managed-by"] == "web"
    assert source["spec"]["template"]["spec"].get("schedulingGates"), source["spec"]
    status = await wait_phase(kube, namespace, "Healthy")
    assert status["stable"] == "blue", status


async def test_deleting_the_managed_service_mid_rollout_hands_the_app_back(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    await deploy_app(kube, namespace)
    await wait_phase(kube, namespace, "Healthy")
    await kube.patch(
        SERVICES.path(namespace, "web"), {"metadata": {"annotations": {"canary.io/paused": "true"}}}
    )
    await release(kube, namespace, "registry.example/web:v2")
    await wait_phase(kube, namespace, "Paused")
    await kube.delete(SERVICES.path(namespace, "web"))
    source = await eventually(
        lambda: kube.get(DEPLOYMENTS.path(namespace, "web")),
        lambda d: d["status"].get("readyReplicas") == 3,
        timeout_s=60,
    )
    # The source holds v2, which was never analysed: v1 is what was handed back.
    images = [c["image"] for c in source["spec"]["template"]["spec"]["containers"]]
    assert images == ["registry.example/web:v1"]
    for twin in ("web-blue", "web-green"):
        await gone(kube, DEPLOYMENTS.path(namespace, twin))

    async def ours() -> list[str]:
        source = await kube.get(DEPLOYMENTS.path(namespace, "web"))
        annotations = source["metadata"].get("annotations") or {}
        return [k for k in annotations if k.startswith("canary.io/") and k != "canary.io/copy-of"]

    # The hand-back ends by taking our annotations off the team's Deployment.
    await eventually(ours, lambda left: not left)

    async def reasons() -> list[str]:
        return [e["reason"] for e in await events_of(kube, namespace, "Deployment", "web")]

    await eventually(reasons, lambda r: "SourceRestored" in r and "Released" in r)


async def test_a_service_deleted_while_the_controller_was_down_is_handed_back_at_start(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    await deploy_app(kube, namespace)
    await wait_phase(kube, namespace, "Healthy")
    await controller.stop()
    await kube.delete(SERVICES.path(namespace, "web"))
    await controller.start()
    await eventually(
        lambda: exists(kube, DEPLOYMENTS.path(namespace, "web-blue")),
        lambda e: not e,
        timeout_s=60,
    )
    source = await kube.get(DEPLOYMENTS.path(namespace, "web"))
    assert source["spec"]["replicas"] == 3 and source["status"].get("readyReplicas") == 3


async def test_twins_then_the_service_deleted_leave_the_deployment_ungated_and_unclaimed(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    # With the controller down (so nothing puts the twins back), someone
    # deletes the twins and then the Service: no twin is left to hand back,
    # but the team's Deployment must not stay claimed and gated for good.
    await deploy_app(kube, namespace)
    await wait_phase(kube, namespace, "Healthy")
    path = DEPLOYMENTS.path(namespace, "web")
    await eventually(lambda: kube.get(path), lambda d: HOLD_GATE in gates_of(d))
    await controller.stop()
    for color in ("blue", "green"):
        with contextlib.suppress(NotFound):
            await kube.delete(DEPLOYMENTS.path(namespace, f"web-{color}"))
    await kube.delete(SERVICES.path(namespace, "web"))
    for color in ("blue", "green"):
        await gone(kube, DEPLOYMENTS.path(namespace, f"web-{color}"))
    await controller.start()
    source = await eventually(
        lambda: kube.get(path), lambda d: not gates_of(d) and MANAGED_BY not in annotations_of(d)
    )
    assert source["spec"]["replicas"] == 0  # as it was: scaling it is the team's call now
    await kube.patch(path, {"spec": {"replicas": 2}})
    await eventually(lambda: kube.get(path), lambda d: d["status"].get("readyReplicas") == 2)


def annotations_of(obj: dict[str, Any]) -> dict[str, str]:
    return dict(obj["metadata"].get("annotations") or {})


async def test_a_lost_status_is_rebuilt_without_touching_traffic(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    await deploy_app(kube, namespace)
    await wait_phase(kube, namespace, "Healthy")
    async with endpoint_watch(kube, namespace) as counts:
        await kube.patch(
            SERVICES.path(namespace, "web"),
            {"metadata": {"annotations": {"canary.io/status": "{not json"}}},
        )
        await eventually(
            lambda: event_reasons(kube, namespace), lambda r: "StateRebuilt" in r, timeout_s=30
        )
        status = await wait_phase(kube, namespace, "Healthy")
        # Absence window: the EndpointSlice controller publishes any change
        # the rebuild made (within about a second); none may drop a pod.
        await asyncio.sleep(2)
    assert status["stable"] == "blue" and status["replicas"] == 3
    assert not counts or min(counts) == 3, counts
    blue = await kube.get(DEPLOYMENTS.path(namespace, "web-blue"))
    assert blue["spec"]["replicas"] == 3


async def test_a_corrupt_history_is_kept_aside_not_overwritten(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    await deploy_app(kube, namespace)
    await wait_phase(kube, namespace, "Healthy")
    await kube.patch(
        CONFIGMAPS.path(namespace, "web-canary-history"),
        {"data": {"history.json": "[{broken"}},
    )
    await release(kube, namespace, "registry.example/web:v2")
    await eventually(
        lambda: event_reasons(kube, namespace), lambda r: "HistoryCorrupt" in r, timeout_s=30
    )
    listing = await kube.get(
        CONFIGMAPS.path(namespace), labelSelector="canary.io/history-corrupt=true"
    )
    assert [c["data"]["history.json"] for c in listing["items"]] == ["[{broken"]


async def test_a_gitops_reapply_of_the_service_is_put_back_and_names_the_manager(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    await deploy_app(kube, namespace)
    await wait_phase(kube, namespace, "Healthy")
    live = await kube.get(SERVICES.path(namespace, "web"))
    owners = {e["manager"] for e in live["metadata"].get("managedFields") or []}
    assert "canary-controller" in owners
    async with endpoint_watch(kube, namespace) as counts:
        original = managed_service()
        body = {"apiVersion": "v1", "kind": "Service", **original}
        body["metadata"]["name"] = "web"
        await argocd_apply(kube, SERVICES.path(namespace, "web"), body)
        await eventually(
            lambda: selector(kube, namespace), lambda s: s.get("canary.io/twin") == "blue"
        )
    assert min(counts, default=3) > 0
    # The Event follows the selector patch in the same cycle: wait for it.
    events = await eventually(
        lambda: events_of(kube, namespace, "Service", "web"),
        lambda found: any(e["reason"] == "SelectorRestored" for e in found),
        timeout_s=30,
    )
    restored = [e for e in events if e["reason"] == "SelectorRestored"]
    assert "argocd-controller" in restored[0]["message"]


async def test_a_selector_that_cannot_select_the_pods_is_never_switched_to(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    await kube.create(DEPLOYMENTS.path(namespace), deployment("web", 2, {"app": "web"}))
    svc = managed_service()
    svc["spec"]["selector"] = {"app": "web", "tier": "frontend"}
    async with watched(kube, DEPLOYMENTS, namespace) as deployments:
        await kube.create(SERVICES.path(namespace), svc)
        await eventually(
            lambda: event_reasons(kube, namespace), lambda r: "SelectorMismatch" in r, timeout_s=30
        )
        # Absence window: the reconcile that warned returned before any
        # write; 2 s more lets a later one create a twin, if it would.
        await asyncio.sleep(2)
    assert await selector(kube, namespace) == {"app": "web", "tier": "frontend"}
    assert {e.key[1] for e in deployments} == {"web"}, deployments  # no twin, ever


async def test_a_second_deployment_behind_the_service_is_never_dropped_at_adoption(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """Two Deployments behind one Service (zones): annotating it must not
    point the Service at one app's twin and leave the other's pods out."""
    await kube.create(
        DEPLOYMENTS.path(namespace), deployment("web", 2, {"app": "web", "zone": "us"})
    )
    await kube.create(
        DEPLOYMENTS.path(namespace), deployment("web-eu", 1, {"app": "web", "zone": "eu"})
    )
    svc = managed_service()
    annotations = svc["metadata"].pop("annotations")
    await kube.create(SERVICES.path(namespace), svc)  # not managed yet

    async def ready_pods() -> list[str]:
        slices = await kube.get(
            ENDPOINTSLICES.path(namespace), labelSelector="kubernetes.io/service-name=web"
        )
        return ready_endpoints(slices.get("items", []))

    await eventually(ready_pods, lambda pods: len(pods) == 3)
    async with watched(kube, DEPLOYMENTS, namespace) as deployments:
        await kube.patch(
            SERVICES.path(namespace, "web"), {"metadata": {"annotations": annotations}}
        )
        await eventually(
            lambda: event_reasons(kube, namespace), lambda r: "ForeignPods" in r, timeout_s=30
        )
        await asyncio.sleep(2)  # a later reconcile would create a twin or switch, if it did
        assert await selector(kube, namespace) == {"app": "web"}
        assert {e.key[1] for e in deployments} <= {"web", "web-eu"}, deployments  # no twin
    assert len(await ready_pods()) == 3
    # The team gives web-eu a Service of its own (here: scales it away): adoption goes on.
    await kube.patch(DEPLOYMENTS.path(namespace, "web-eu"), {"spec": {"replicas": 0}})
    await wait_phase(kube, namespace, "Healthy")
    assert (await selector(kube, namespace)).get("canary.io/twin") == "blue"


async def test_a_deleted_stable_twin_that_cannot_come_back_is_degraded_not_healthy(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    await deploy_app(kube, namespace)
    await wait_phase(kube, namespace, "Healthy")
    await kube.create(
        f"/api/v1/namespaces/{namespace}/resourcequotas",
        {"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}},
    )
    await kube.delete(DEPLOYMENTS.path(namespace, "web-blue"))
    # Degraded first says the twin is missing; once it is back without pods
    # (the quota), it says why it cannot serve.
    await eventually(
        lambda: service_status(kube, namespace),
        lambda s: (
            s.get("phase") == "Degraded"
            and any(w in s.get("degraded", "") for w in ("no ready endpoint", "0/3"))
        ),
    )
    await eventually(lambda: event_reasons(kube, namespace), lambda r: "Degraded" in r)
    await kube.delete(f"/api/v1/namespaces/{namespace}/resourcequotas/no-pods")
    await wait_phase(kube, namespace, "Healthy", timeout_s=60)
    await eventually(lambda: event_reasons(kube, namespace), lambda r: "Recovered" in r)


@contextlib.asynccontextmanager
async def pods_of_twin_refused(kube: Kube, namespace: str, color: str) -> AsyncIterator[None]:
    """A ValidatingAdmissionPolicy (the API server's own CEL admission) that
    refuses the CREATE of a pod labelled `canary.io/twin: <color>` in the
    namespace: that twin's ReplicaSet cannot make its pods again (what a
    drain leaves when no node fits them). Every other pod is created."""
    twin = "object.metadata.labels['canary.io/twin']"
    probe = deployment("probe", 1, {"app": "web", "canary.io/twin": color})
    pod = {"metadata": {"name": "probe", **probe["spec"]["template"]["metadata"]}}
    pod["spec"] = probe["spec"]["template"]["spec"]

    async def dry_run() -> Any:
        """A pod of that twin (a dry run: nothing is created)."""
        return await kube.create(PODS.path(namespace), pod, dryRun="All")

    async with admission_refusal(
        kube,
        namespace,
        f"no-{color}-pods-{namespace}"[:63],
        ("CREATE", "pods"),
        "!has(object.metadata.labels) || !('canary.io/twin' in object.metadata.labels)"
        f" || {twin} != '{color}'",
        f"pods of the {color} twin are refused by the test",
        dry_run,
    ):
        yield


async def test_a_release_waits_for_the_first_ready_pod_of_a_drained_stable_twin(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """A drain evicts every pod of the stable twin and none can come back
    (no node fits them: here an admission policy refuses them), and a
    release lands. It waits for the stable twin's first ready pod, and the
    status says what it observes; then it rolls out, its canary serving
    beside stable pods. Before (409024d^), it started at once: the canary's
    first ready pod was the only endpoint of the Service and took every
    request (100 % effective), judged with no baseline. The progress
    deadline (which also bounds the wait, from the drain) is long enough
    that the wait cannot end by it within the test."""
    await deploy_app(kube, namespace, service=managed_service(progress_deadline="300s"))
    healthy = await wait_phase(kube, namespace, "Healthy")
    stable, revision = healthy["stable"], healthy["stable_revision"]
    canary = other(stable)
    snapshots: list[frozenset[str]] = []  # the ready pods after each EndpointSlice event
    slices = ServiceSlices()

    def record(event: WatchEvent) -> None:
        ready = slices.ready(event)
        if ready is not None:
            snapshots.append(ready)

    def of(color: str, pods: frozenset[str]) -> int:
        return sum(1 for pod in pods if pod.startswith(f"web-{color}-"))

    def counts() -> list[tuple[int, int]]:
        """(stable, other) ready endpoints, one per EndpointSlice event."""
        return [(of(stable, s), len(s) - of(stable, s)) for s in snapshots]

    async def serving() -> frozenset[str] | None:
        """The ready pods, as the watch last delivered them."""
        return snapshots[-1] if snapshots else None

    def unguarded(upto: int | None = None) -> list[frozenset[str]]:
        """Snapshots (the first `upto`) with a pod other than the stable
        twin's ready and none of the stable twin's."""
        return [s for s in snapshots[:upto] if s and not of(stable, s)]

    def before_the_flip() -> int:
        """Snapshots up to the last with a pod of the stable twin: after it,
        the promoted twin serves alone, as it should."""
        return 1 + max(i for i, s in enumerate(snapshots) if of(stable, s))

    async with watched(kube, ENDPOINTSLICES, namespace, on_event=record):
        async with pods_of_twin_refused(kube, namespace, stable):
            pods = await kube.get(PODS.path(namespace), labelSelector=f"canary.io/twin={stable}")
            for pod in pods["items"]:
                await kube.delete(PODS.path(namespace, pod["metadata"]["name"]))
            await eventually(serving, lambda pods: pods == frozenset())
            await eventually(
                lambda: service_status(kube, namespace),
                lambda s: (
                    s.get("phase") == "Degraded" and "no ready endpoint" in s.get("degraded", "")
                ),
                timeout_s=30,
            )
            await release(kube, namespace, "registry.example/web:v2")
            # The controller's decision on the release: it waits, or (before)
            # a pod of it serves.
            waiting = await eventually(
                lambda: service_status(kube, namespace),
                lambda s: (
                    "waits for the first ready pod" in s.get("message", "") or bool(unguarded())
                ),
                timeout_s=60,
            )
            assert not unguarded(), f"{unguarded()} in {counts()}; {waiting.get('message')}"
            assert waiting.get("canary") is None, waiting
            message = waiting["message"]
            assert "waits for the first ready pod of the stable twin" in message, message
            said = f"the {stable} twin (stable, revision {revision}) has no ready pod (0/3)"
            assert said in message, message
            assert "waits for its first ready pod to roll out" in waiting["degraded"], waiting
            # No canary pod was asked for meanwhile.
            with contextlib.suppress(NotFound):
                twin = await kube.get(DEPLOYMENTS.path(namespace, f"web-{canary}"))
                assert twin["spec"]["replicas"] == 0, twin["spec"]
        # The policy is gone: the ReplicaSet controller makes the stable pods
        # again, after its backoff (it doubles from 5 ms while the policy
        # refused them: tens of seconds; see the abort test above).
        await first_ready_pod(kube, namespace, f"web-{stable}")
        # Then the release rolls out: its canary serves beside stable pods,
        # and is promoted.
        done = await eventually(
            lambda: service_status(kube, namespace),
            lambda s: s.get("phase") == "Healthy" and s.get("stable") == canary,
            timeout_s=120,
        )
    sequence = counts()
    assert not unguarded(before_the_flip()), f"{unguarded(before_the_flip())} in {sequence}"
    assert any(s and c for s, c in sequence), f"{sequence}"  # the canary beside stable pods
    print(f"(stable, other) ready endpoints: {sequence}")
    assert done["stable_revision"] != revision, done


async def test_a_rollout_halted_by_a_prometheus_outage_resumes_by_itself(
    kube: Kube, namespace: str, controller: RunningController, sandbox: cluster.Sandbox
) -> None:
    analysis = (
        "scrape-interval: 1s\nmin-requests: 10\nerror-limit: 0\nquery-timeout: 2s\n"
        "metrics:\n  - {name: success-rate, min: 95}\n"
    )
    await deploy_app(kube, namespace, service=managed_service(analysis=analysis, steps="50"))
    await wait_phase(kube, namespace, "Healthy")
    prometheus = next(p for p in sandbox.procs if p.name == "prometheus")
    await release(kube, namespace, "registry.example/web:v2")
    await wait_phase(kube, namespace, "Progressing")
    os.kill(prometheus.pid, signal.SIGSTOP)
    try:
        status = await wait_phase(kube, namespace, "Halted", timeout_s=60)
        assert status["halt_kind"] == "errors"
    finally:
        os.kill(prometheus.pid, signal.SIGCONT)
    await eventually(
        lambda: event_reasons(kube, namespace), lambda r: "RolloutResumed" in r, timeout_s=60
    )
    await wait_phase(kube, namespace, "Healthy", timeout_s=90)
    status = await service_status(kube, namespace)
    assert status["stable"] == "green" and not status["failed_revision"]


async def test_a_long_deployment_name_is_analysed_and_promoted(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    name = "a" * 52 + "-frontend-x"  # 63 characters
    assert len(name) == 63
    await kube.create(DEPLOYMENTS.path(namespace), deployment(name, 2, {"app": "long"}))
    svc = managed_service("long", steps="50")
    svc["metadata"]["annotations"]["canary.io/deployment"] = name
    svc["spec"]["selector"] = {"app": "long"}
    await kube.create(SERVICES.path(namespace), svc)
    await eventually(
        lambda: service_status(kube, namespace, "long"), lambda s: s.get("phase") == "Healthy"
    )
    await kube.patch(
        DEPLOYMENTS.path(namespace, name),
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "x:v2"}]}}}},
        patch_type="strategic",
    )
    status = await eventually(
        lambda: service_status(kube, namespace, "long"),
        lambda s: s.get("phase") == "Healthy" and s.get("stable") == "green",
        timeout_s=90,
    )
    assert status["stable_pods"].startswith(status["stable_pods"].rsplit("-", 1)[0])


async def test_a_fight_over_a_twin_is_detected_and_writes_to_it_stop(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    await deploy_app(kube, namespace)
    await wait_phase(kube, namespace, "Healthy")
    path = DEPLOYMENTS.path(namespace, "web-blue")

    async def fighter() -> None:
        """Another writer that keeps putting the twin at 2 replicas."""
        while True:
            twin = await kube.get(path)
            if twin["spec"]["replicas"] != 2:
                await kube.patch(path, {"spec": {"replicas": 2}}, fieldManager="other-controller")
            await asyncio.sleep(0.3)  # the other writer's cadence, not a wait on us

    fight = asyncio.create_task(fighter())
    try:
        await eventually(
            lambda: event_reasons(kube, namespace), lambda r: "WriteLoop" in r, timeout_s=60
        )
        async with watched(kube, DEPLOYMENTS, namespace) as events:
            await asyncio.sleep(3)  # absence window: we no longer write to it
        after = await kube.get(path)
    finally:
        fight.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await fight
    # Every version of the twin in the window, in order. Only we ever set 3
    # replicas: once the other writer's 2 is in place (it may still be on its
    # way when the window opens), it is never put back to 3.
    replicas = [e.object["spec"]["replicas"] for e in events if e.key[1] == "web-blue"]
    settled = replicas[replicas.index(2) :] if 2 in replicas else []
    assert settled and set(settled) == {2}, replicas
    assert after["spec"]["replicas"] == 2
    assert controller.controller is not None
    registry = controller.controller.metrics.registry
    assert (registry.get_sample_value("canary_write_loops_total") or 0) >= 1


async def test_a_gitops_forced_sync_mid_blue_green_never_puts_the_source_pods_behind_the_service(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    # A GitOps tool syncs the team's manifests as written, with force, while a
    # blue-green release is in flight: the Service (selector back to app=web)
    # then the Deployment at 3 replicas of a newer image, in the order Argo CD
    # and Flux apply kinds. The source's pods (never analysed) match that
    # selector; they must never become the Service's endpoints.
    await deploy_app(kube, namespace, service=managed_service(strategy="blue-green"))
    await wait_phase(kube, namespace, "Healthy")
    await release(kube, namespace, "registry.example/web:v2")
    await wait_phase(kube, namespace, "Progressing")
    served: set[str] = set()
    async with endpoint_watch(kube, namespace, pods=served) as counts:
        service = {"apiVersion": "v1", "kind": "Service", **managed_service(strategy="blue-green")}
        await argocd_apply(kube, SERVICES.path(namespace, "web"), service)
        manifest = deployment("web", 3, {"app": "web"}, image="registry.example/web:v3")
        await argocd_apply(
            kube,
            DEPLOYMENTS.path(namespace, "web"),
            {"apiVersion": "apps/v1", "kind": "Deployment", **manifest},
        )
        await eventually(lambda: selector(kube, namespace), lambda s: "canary.io/twin" in s)
        # The source is held at 0 again and its pods are gone.
        await eventually(
            lambda: kube.get(DEPLOYMENTS.path(namespace, "web")),
            lambda d: d["spec"]["replicas"] == 0 and not d.get("status", {}).get("replicas"),
            timeout_s=60,
        )
        status = await wait_phase(kube, namespace, "Healthy", timeout_s=120)
    assert min(counts, default=3) > 0
    twins = ("web-blue-", "web-green-")
    assert served and not [p for p in served if not p.startswith(twins)], served
    # And the synced version went out through the strategy, not around it.
    stable = await kube.get(DEPLOYMENTS.path(namespace, f"web-{status['stable']}"))
    images = [c["image"] for c in stable["spec"]["template"]["spec"]["containers"]]
    assert images == ["registry.example/web:v3"]


def gates_of(deployment: dict[str, Any]) -> list[str]:
    spec = deployment["spec"]["template"]["spec"]
    return [g["name"] for g in spec.get("schedulingGates") or []]


async def stable_images(kube: Kube, namespace: str) -> list[str]:
    """The images of the twin the Service serves (the stable one, once Healthy)."""
    status = await service_status(kube, namespace)
    if status.get("phase") != "Healthy" or not status.get("stable"):
        return []
    stable = await kube.get(DEPLOYMENTS.path(namespace, f"web-{status['stable']}"))
    return [c["image"] for c in stable["spec"]["template"]["spec"]["containers"]]


async def source_pods(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    """Pods of the team's Deployment (the app's labels, none of a twin's)."""
    listing = await kube.get(PODS.path(namespace), labelSelector="app=web,!canary.io/twin")
    return [p for p in listing["items"] if not p["metadata"].get("deletionTimestamp")]


async def test_a_sync_that_scales_the_source_before_resetting_the_selector_never_serves_its_pods(
    kube: Kube, namespace: str, controller: RunningController, sandbox: cluster.Sandbox
) -> None:
    # A GitOps sync while the controller restarts (or one that outruns it):
    # the Deployment first, at 3 replicas of a newer image, and the original
    # Service (selector app=web) only once those pods had every chance to be
    # ready. Nothing of the source may ever be an endpoint: it was never analysed.
    await deploy_app(kube, namespace, service=managed_service(strategy="blue-green"))
    await wait_phase(kube, namespace, "Healthy")
    path = DEPLOYMENTS.path(namespace, "web")
    await eventually(lambda: kube.get(path), lambda d: HOLD_GATE in gates_of(d))
    await controller.stop()
    served: set[str] = set()
    async with endpoint_watch(kube, namespace, pods=served) as counts:
        manifest = deployment("web", 3, {"app": "web"}, image="registry.example/web:v3")
        body = {"apiVersion": "apps/v1", "kind": "Deployment", **manifest}
        await argocd_apply(kube, path, body)
        pods = await eventually(lambda: source_pods(kube, namespace), lambda p: len(p) == 3)
        await asyncio.sleep(2)  # kwok makes a scheduled pod ready well within this
        pods = await source_pods(kube, namespace)
        assert all(p["spec"].get("schedulingGates") for p in pods), pods
        assert not any(p["spec"].get("nodeName") for p in pods)  # held by the scheduler
        service = {"apiVersion": "v1", "kind": "Service", **managed_service(strategy="blue-green")}
        await argocd_apply(kube, SERVICES.path(namespace, "web"), service)
        assert await selector(kube, namespace) == {"app": "web"}
        await asyncio.sleep(2)  # the reset selector, live with no controller to undo it
        await controller.start()
        await eventually(lambda: selector(kube, namespace), lambda s: "canary.io/twin" in s)
        # The synced version goes out through the strategy (the status read
        # right after the restart may still be the Healthy of before).
        await eventually(
            lambda: stable_images(kube, namespace),
            lambda i: i == ["registry.example/web:v3"],
            timeout_s=120,
        )
        await wait_phase(kube, namespace, "Healthy", timeout_s=60)
    assert min(counts, default=3) > 0
    twins = ("web-blue-", "web-green-")
    assert served and not [p for p in served if not p.startswith(twins)], served
    assert "SourceScaled" in await event_reasons(kube, namespace)
    # A client-side `kubectl apply` (Argo CD's default) keeps the gate too.
    applied = kubectl(sandbox, "-n", namespace, "apply", "-f", "-", stdin=json.dumps(body))
    assert "configured" in applied  # replicas 0 -> 3: a real write
    assert HOLD_GATE in gates_of(await kube.get(path))
    await eventually(lambda: kube.get(path), lambda d: d["spec"]["replicas"] == 0)
    await eventually(lambda: source_pods(kube, namespace), lambda p: p == [], timeout_s=60)


async def test_a_promotion_does_not_flip_while_prometheus_is_stopped_and_flips_once_it_is_back(
    kube: Kube, namespace: str, controller: RunningController, sandbox: cluster.Sandbox
) -> None:
    """The last step passed and the canary grows to full size; a quota holds
    its new pods back while Prometheus is stopped. Once they are ready, the
    flip waits (no look has read the canary) and says so; it goes once
    Prometheus answers again. Before, it flipped over the outage."""
    analysis = (
        "scrape-interval: 1s\nmin-requests: 10\nquery-timeout: 2s\n"
        "metrics:\n  - {name: success-rate, min: 95}\n"
    )
    service = managed_service(analysis=analysis, steps="25", progress_deadline="300s")
    await deploy_app(kube, namespace, service=service)  # step 25: 1 canary pod, then 3
    await wait_phase(kube, namespace, "Healthy")
    quota = await pods_quota(kube, namespace, hard=4, used=3)  # room for the step's one pod
    prometheus = next(p for p in sandbox.procs if p.name == "prometheus")
    await release(kube, namespace, "registry.example/web:v2")
    await wait_phase(kube, namespace, "Promoting", timeout_s=60)
    os.kill(prometheus.pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(4)  # more than two scrapes no look can read
        await kube.delete(quota)
        status = await eventually(
            lambda: service_status(kube, namespace),
            lambda s: "no check has read the canary" in s.get("message", ""),
            timeout_s=60,
        )
        assert status["canary"] == "green", status
        assert "Prometheus failing" in status["message"], status
        await asyncio.sleep(5)  # the pods are ready: the flip would have gone by now
        assert (await selector(kube, namespace)).get("canary.io/twin") != "green"
        assert "Promoted" not in await event_reasons(kube, namespace)
    finally:
        os.kill(prometheus.pid, signal.SIGCONT)
    status = await eventually(
        lambda: service_status(kube, namespace),
        lambda s: s.get("stable") == "green" and s.get("canary") is None,
        timeout_s=60,
    )
    assert await selector(kube, namespace) == {"app": "web", "canary.io/twin": "green"}
    listing = await kube.get(
        "/api/v1/namespaces/" + namespace + "/events",
        fieldSelector="involvedObject.name=web,reason=Promoted",
    )
    assert any("the flip waited" in e["message"] for e in listing["items"]), listing["items"]


async def test_a_canary_that_hangs_as_it_grows_is_not_flipped_onto(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """The last step passed and the canary grows to full size (a quota holds
    its new pods back); then it hangs: its pods, old and new, complete no
    request (the simulator drops their share), while their scrapes and
    readiness still answer. Before, a look reading 0 requests counted as "too
    few to tell", a read, and the Service flipped all production traffic onto
    it once the new pods were ready. Now the flip waits and says it hangs; it
    goes once the canary answers again."""
    analysis = (
        "scrape-interval: 1s\nmin-requests: 10\nmetrics:\n  - {name: success-rate, min: 95}\n"
    )
    service = managed_service(
        analysis=analysis, steps="25", interval="10s", progress_deadline="300s"
    )
    # The canary served plenty over its step (the quiet rule's 20 requests
    # in two scrapes, for a 0 to mean it hangs): 50 a second on its pod.
    service["metadata"]["annotations"]["sandbox.canary.io/rps"] = "200"
    await deploy_app(kube, namespace, service=service)  # step 25: 1 canary pod, then 3
    await wait_phase(kube, namespace, "Healthy")
    quota = await pods_quota(kube, namespace, hard=4, used=3)  # room for the step's one pod
    await release(kube, namespace, "registry.example/web:v2")
    status = await wait_phase(kube, namespace, "Promoting", timeout_s=60)
    color = str(status["canary"])
    hang = {"metadata": {"annotations": {"sandbox.canary.io/hang-pods": f"web-{color}-"}}}
    await kube.patch(SERVICES.path(namespace, "web"), hang)
    # Hung for several scrapes before its new pods can come: a look reads the
    # canary within two scrapes before the flip, and one whose window still
    # held requests from before the hang is a read (a hang that begins as
    # the pods turn ready is not seen before the flip, as no failure is).
    await asyncio.sleep(8)
    await kube.delete(quota)
    status = await eventually(
        lambda: service_status(kube, namespace),
        lambda s: "it hangs" in s.get("message", ""),
        timeout_s=60,
    )
    assert status["canary"] == color, status
    await eventually(
        lambda: kube.get(DEPLOYMENTS.path(namespace, f"web-{color}")),
        lambda d: (d.get("status") or {}).get("readyReplicas") == 3,
        timeout_s=30,
    )
    await asyncio.sleep(5)  # every new pod ready: the flip would have gone by now
    assert (await selector(kube, namespace)).get("canary.io/twin") != color
    assert "Promoted" not in await event_reasons(kube, namespace)
    unhang = {"metadata": {"annotations": {"sandbox.canary.io/hang-pods": None}}}
    await kube.patch(SERVICES.path(namespace, "web"), unhang)
    await eventually(
        lambda: service_status(kube, namespace),
        lambda s: s.get("stable") == color and s.get("canary") is None,
        timeout_s=60,
    )
    assert await selector(kube, namespace) == {"app": "web", "canary.io/twin": color}


def zero_runs(counts: list[int]) -> int:
    """How many times the ready endpoints fell to none."""
    return sum(1 for before, now in zip([1, *counts], counts, strict=False) if before and not now)


async def test_kubectl_rollout_restart_of_the_stable_twin_restarts_its_pods_once(
    kube: Kube, namespace: str, controller: RunningController, sandbox: cluster.Sandbox
) -> None:
    """On-call runs `kubectl rollout restart deployment/web-blue` on the stable
    twin (a leak, a Secret the app reads only at start). The pods run the same
    revision, so the restart is kept. Before, it was taken for a hand edit
    and the template put back: every pod restarted a second time, and with
    the team's `strategy: Recreate` (copied to the twins) the Service had no
    endpoint twice, the second time by our doing."""
    # Recreate from the start: the twin copies the strategy when it is made.
    body = deployment("web", 3, {"app": "web"})
    body["spec"]["strategy"] = {"type": "Recreate"}
    await kube.create(DEPLOYMENTS.path(namespace), body)
    await kube.create(SERVICES.path(namespace), managed_service())
    await wait_phase(kube, namespace, "Healthy")
    twin = await kube.get(DEPLOYMENTS.path(namespace, "web-blue"))
    assert twin["spec"]["strategy"]["type"] == "Recreate"
    async with endpoint_watch(kube, namespace) as counts:
        kubectl(sandbox, "-n", namespace, "rollout", "restart", "deployment/web-blue")
        restarted = await kube.get(DEPLOYMENTS.path(namespace, "web-blue"))
        generation = restarted["metadata"]["generation"]
        # Rolled out once: every pod is of the restarted template, and ready.
        await eventually(
            lambda: kube.get(DEPLOYMENTS.path(namespace, "web-blue")),
            lambda t: (
                t["status"].get("observedGeneration", 0) >= generation
                and t["status"].get("updatedReplicas") == 3
                and t["status"].get("readyReplicas") == 3
                and t["status"].get("replicas") == 3
            ),
            timeout_s=60,
        )
        await asyncio.sleep(8)  # several cycles: a put-back would have come by now
        twin = await kube.get(DEPLOYMENTS.path(namespace, "web-blue"))
    assert zero_runs(counts) <= 1, counts  # the restart's own (Recreate), never a second
    annotations = twin["spec"]["template"]["metadata"].get("annotations") or {}
    assert "kubectl.kubernetes.io/restartedAt" in annotations, annotations
    assert twin["metadata"]["generation"] == generation, "the template was written again"
    assert "TwinRestored" not in await event_reasons(kube, namespace)
    assert (await service_status(kube, namespace)).get("phase") == "Healthy"
    # The next release still goes out through the strategy from this twin.
    await release(kube, namespace, "registry.example/web:v2")
    await eventually(
        lambda: service_status(kube, namespace),
        lambda s: s.get("phase") == "Progressing" and s.get("canary") == "green",
    )


async def test_kubectl_rollout_restart_of_the_canary_twin_mid_step_goes_on_and_promotes(
    kube: Kube, namespace: str, controller: RunningController, sandbox: cluster.Sandbox
) -> None:
    """The same restart on the canary twin while it serves a step: the
    restarted pods are the same revision, so the step goes on, judged on
    the new pods once they serve (their ReplicaSet), and the release is
    promoted. No `TwinRestored`: nothing was put back."""
    await deploy_app(kube, namespace, service=managed_service(interval="60s"))
    await wait_phase(kube, namespace, "Healthy")
    await release(kube, namespace, "registry.example/web:v2")
    before = await eventually(
        lambda: service_status(kube, namespace),
        lambda s: s.get("phase") == "Progressing" and bool(s.get("canary_pods")),
        timeout_s=60,
    )
    kubectl(sandbox, "-n", namespace, "rollout", "restart", "deployment/web-green")
    after = await eventually(
        lambda: service_status(kube, namespace),
        lambda s: s.get("canary_pods") not in ("", before["canary_pods"]),
        timeout_s=60,
    )
    assert after["phase"] == "Progressing" and after["canary_revision"] == before["canary_revision"]
    await kube.patch(
        SERVICES.path(namespace, "web"), {"metadata": {"annotations": {"canary.io/interval": "3s"}}}
    )
    done = await wait_phase(kube, namespace, "Healthy", timeout_s=90)
    assert done["stable"] == "green" and done["stable_revision"] == before["canary_revision"]
    assert "TwinRestored" not in await event_reasons(kube, namespace)
    assert "Promoted" in await event_reasons(kube, namespace)


async def test_an_old_status_applied_again_never_brings_the_old_twin_back(
    kube: Kube, namespace: str, controller: RunningController, sandbox: cluster.Sandbox
) -> None:
    """The Service manifest exported (`kubectl get svc web -o yaml`) while r1
    served, then applied again after r2 was promoted (a GitOps repository
    that holds the export, a `kubectl apply` from an old file): its status
    and selector are r1's. Before, the status was taken as true: the blue
    twin (r1) was scaled up again and took traffic, and r2 rolled out anew
    through every step (`RolloutStarted` a second time). Now a status the
    controller did not write is rebuilt from what runs (`StateRebuilt`
    naming who wrote it); the selector goes back to the green twin."""
    await deploy_app(kube, namespace, service=managed_service(interval="2s", scale_down_delay="0s"))
    await wait_phase(kube, namespace, "Healthy")
    exported = await kube.get(SERVICES.path(namespace, "web"))
    await release(kube, namespace, "registry.example/web:v2")
    await eventually(
        lambda: service_status(kube, namespace),
        lambda s: s.get("stable") == "green" and s.get("phase") == "Healthy",
        timeout_s=90,
    )
    blue = await eventually(
        lambda: kube.get(DEPLOYMENTS.path(namespace, "web-blue")),
        lambda d: d["spec"]["replicas"] == 0,
        timeout_s=30,
    )
    started = (await event_reasons(kube, namespace)).count("RolloutStarted")
    meta = exported["metadata"]
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
        meta.pop(key, None)
    body = {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": exported["spec"]}
    assert body["spec"]["selector"].get("canary.io/twin") == "blue"
    kubectl(sandbox, "-n", namespace, "apply", "-f", "-", stdin=json.dumps(body))
    status = await eventually(
        lambda: service_status(kube, namespace),
        lambda s: s.get("stable") == "green" and s.get("phase") == "Healthy",
        timeout_s=30,
    )
    assert (
        status["stable_revision"]
        != json.loads(meta["annotations"]["canary.io/status"])["stable_revision"]
    )
    await eventually(
        lambda: selector(kube, namespace), lambda s: s.get("canary.io/twin") == "green"
    )
    await asyncio.sleep(5)  # several cycles: a scale-up or a new rollout would have begun
    after = await kube.get(DEPLOYMENTS.path(namespace, "web-blue"))
    assert after["spec"]["replicas"] == 0
    assert after["metadata"]["generation"] == blue["metadata"]["generation"], "blue was scaled"
    reasons = await event_reasons(kube, namespace)
    assert reasons.count("RolloutStarted") == started, reasons
    events = await events_of(kube, namespace, "Service", "web")
    rebuilt = [e["message"] for e in events if e["reason"] == "StateRebuilt"]
    assert rebuilt and "kubectl-client-side-apply" in rebuilt[-1], rebuilt
    # Rebuilt once: the status written since is the controller's again.
    assert [e.get("count", 1) for e in events if e["reason"] == "StateRebuilt"] == [1], events


async def test_a_hand_scale_up_of_the_stable_twin_is_kept_as_the_apps_size(
    kube: Kube, namespace: str, controller: RunningController, sandbox: cluster.Sandbox
) -> None:
    """On-call under a load spike runs `kubectl scale deployment web-blue
    --replicas=5` on the twin whose pods serve. Before, it was put back to 3
    at once (the two new pods deleted as they came) and nothing said why.
    Now it is the app's size: recorded on the team's Deployment, told with
    `TwinScaled`; a scale down is put back, and told."""
    await deploy_app(kube, namespace)
    await wait_phase(kube, namespace, "Healthy")
    kubectl(sandbox, "-n", namespace, "scale", "deployment/web-blue", "--replicas=5")
    await eventually(
        lambda: service_status(kube, namespace), lambda s: s.get("replicas") == 5, timeout_s=20
    )
    await asyncio.sleep(3)  # several cycles: a put-back would have come by now
    blue = await kube.get(DEPLOYMENTS.path(namespace, "web-blue"))
    assert blue["spec"]["replicas"] == 5
    source = await kube.get(DEPLOYMENTS.path(namespace, "web"))
    assert source["metadata"]["annotations"]["canary.io/replicas"] == "5"
    assert source["spec"]["replicas"] == 0
    await eventually(
        lambda: kube.get(DEPLOYMENTS.path(namespace, "web-blue")),
        lambda d: d["status"].get("readyReplicas") == 5,
        timeout_s=30,
    )
    kubectl(sandbox, "-n", namespace, "scale", "deployment/web-blue", "--replicas=1")
    await eventually(
        lambda: kube.get(DEPLOYMENTS.path(namespace, "web-blue")),
        lambda d: d["spec"]["replicas"] == 5,
        timeout_s=20,
    )
    events = await events_of(kube, namespace, "Service", "web")
    told = {e["type"]: e["message"] for e in events if e["reason"] == "TwinScaled"}
    assert len(told) == 2, told
    assert "kubectl scaled the blue twin (stable) to 5" in told["Normal"], told
    assert "put back to 5" in told["Warning"], told


async def test_an_hpa_on_the_stable_twin_itself_sizes_the_app_both_ways(
    kube: Kube, namespace: str, controller: RunningController, sandbox: cluster.Sandbox
) -> None:
    """`kubectl autoscale deployment web-blue --min=5 --max=6` on the twin
    whose pods serve: its sizes are the app's (down too, else only growth
    would stick), and a Warning says to point it at the team's Deployment.
    Before, every size it set was put back to 3 at once, a fight with the
    HPA controller that nothing explained. (Bounds move it without metrics:
    the HPA controller enforces them first.)"""
    await deploy_app(kube, namespace)
    await wait_phase(kube, namespace, "Healthy")
    kubectl(sandbox, "-n", namespace, "autoscale", "deployment/web-blue", "--min=5", "--max=6")
    await eventually(
        lambda: service_status(kube, namespace), lambda s: s.get("replicas") == 5, timeout_s=60
    )
    events = await events_of(kube, namespace, "Service", "web")
    told = [e["message"] for e in events if e["reason"] == "TwinScaled"]
    assert told and "HPA web-blue targets the blue twin (stable) itself" in told[0], told
    await kube.patch(
        f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/web-blue",
        {"spec": {"minReplicas": 2, "maxReplicas": 2}},
    )
    await eventually(
        lambda: service_status(kube, namespace), lambda s: s.get("replicas") == 2, timeout_s=60
    )
    blue = await kube.get(DEPLOYMENTS.path(namespace, "web-blue"))
    assert blue["spec"]["replicas"] == 2


async def test_an_hpa_on_the_canary_twin_holds_the_rollout_out_of_the_service(
    kube: Kube, namespace: str, controller: RunningController, sandbox: cluster.Sandbox
) -> None:
    """An HPA on the canary twin (left from a load spike on a twin since made
    idle, or made mid-rollout): the real HPA controller sizes the canary at
    its bounds. Before, a 25 % step of 3 ran at the HPA's 3 canary pods (half
    the traffic, unanalysed) and our scale back was fought. Now the rollout
    holds with the canary out of the Service, its size left to the HPA, and
    goes on once the HPA is deleted."""
    await serving_first_step(kube, namespace)
    kubectl(sandbox, "-n", namespace, "autoscale", "deployment/web-green", "--min=3", "--max=3")
    status = await wait_phase(kube, namespace, "Paused", timeout_s=30)
    assert "HPA web-green targets the canary twin" in status["message"], status
    await eventually(
        lambda: kube.get(DEPLOYMENTS.path(namespace, "web-green")),
        lambda d: d["spec"]["replicas"] == 3,
        timeout_s=30,
    )
    await asyncio.sleep(3)  # several cycles: a fight would show as a size put back
    green = await kube.get(DEPLOYMENTS.path(namespace, "web-green"))
    assert green["spec"]["replicas"] == 3
    assert (await selector(kube, namespace)).get("canary.io/twin") == "blue"
    slices = await kube.get(
        ENDPOINTSLICES.path(namespace), labelSelector="kubernetes.io/service-name=web"
    )
    serving = [p for p in ready_endpoints(slices.get("items", [])) if "web-green" in p]
    assert not serving, serving
    events = await events_of(kube, namespace, "Service", "web")
    told = [e for e in events if e["reason"] == "RolloutPaused"]
    assert len(told) == 1 and told[0]["type"] == "Warning", told
    await kube.delete(
        f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/web-green"
    )
    await kube.patch(
        SERVICES.path(namespace, "web"), {"metadata": {"annotations": {"canary.io/interval": "3s"}}}
    )
    done = await wait_phase(kube, namespace, "Healthy", timeout_s=90)
    assert done["stable"] == "green", done


async def test_a_rollout_outlives_kube_controller_manager_stopped_past_its_deadline(
    kube: Kube, namespace: str, controller: RunningController, sandbox: cluster.Sandbox
) -> None:
    """kube-controller-manager stops (a control-plane upgrade, a hung
    process) as a step passes: the API server takes the canary's new size,
    no Deployment controller acts on it. Before, the progress deadline rolled
    the good release back (`ProgressDeadlineExceeded`) for the Deployment
    controller's absence. Now the deadline waits for it, and the rollout
    goes on and is promoted once it is back."""
    await serving_first_step(kube, namespace)
    kcm = next(p for p in sandbox.procs if p.name == "kube-controller-manager")
    os.killpg(kcm.pid, signal.SIGSTOP)
    try:
        await kube.patch(
            SERVICES.path(namespace, "web"),
            {
                "metadata": {
                    "annotations": {"canary.io/interval": "3s", "canary.io/progress-deadline": "8s"}
                }
            },
        )
        status = await eventually(
            lambda: service_status(kube, namespace), lambda s: s.get("step") == 1, timeout_s=30
        )
        await asyncio.sleep(20)  # two and a half deadlines
        status = await service_status(kube, namespace)
        assert status["canary"] == "green" and status["step"] == 1, status
        assert "has not observed Deployment web-green" in status["message"], status
    finally:
        os.killpg(kcm.pid, signal.SIGCONT)
    done = await wait_phase(kube, namespace, "Healthy", timeout_s=90)
    assert done["stable"] == "green", done
    assert "ProgressDeadlineExceeded" not in await event_reasons(kube, namespace)


async def test_kubectl_rollout_pause_of_the_canary_twin_holds_the_rollout(
    kube: Kube, namespace: str, controller: RunningController, sandbox: cluster.Sandbox
) -> None:
    """On-call pauses the twin whose pods misbehave (`kubectl rollout pause
    deployment/web-green`), meaning to stop the rollout. Before, nothing
    held: a paused Deployment still scales, so the canary went on through
    its steps and was promoted. Now the rollout holds, says which Deployment
    is paused, and goes on once it is resumed."""
    await serving_first_step(kube, namespace)
    kubectl(sandbox, "-n", namespace, "rollout", "pause", "deployment/web-green")
    status = await wait_phase(kube, namespace, "Paused", timeout_s=20)
    assert "Deployment web-green is paused by kubectl-rollout" in status["message"], status
    await kube.patch(
        SERVICES.path(namespace, "web"), {"metadata": {"annotations": {"canary.io/interval": "3s"}}}
    )
    await asyncio.sleep(12)  # four intervals: unpaused, it would have been promoted by now
    status = await service_status(kube, namespace)
    assert status["phase"] == "Paused" and status["step"] == 0, status
    assert "RolloutPaused" in await event_reasons(kube, namespace)
    kubectl(sandbox, "-n", namespace, "rollout", "resume", "deployment/web-green")
    done = await wait_phase(kube, namespace, "Healthy", timeout_s=90)
    assert done["stable"] == "green", done


async def test_a_service_replaced_with_its_own_status_is_rebuilt_once(
    kube: Kube, namespace: str, controller: RunningController, sandbox: cluster.Sandbox
) -> None:
    """`kubectl replace --force` of the Service as it is (a field that cannot
    change in place), at a steady state whose status a rebuild wrote: the
    status is kubectl's now, with the very value a rebuild writes. The
    controller's write of that value changes nothing, so the field stayed
    kubectl's: before, it was distrusted and rebuilt at every watch event (a
    StateRebuilt Warning each time the team's Deployment changed)."""
    await deploy_app(kube, namespace)
    await wait_phase(kube, namespace, "Healthy")
    await kube.patch(
        SERVICES.path(namespace, "web"), {"metadata": {"annotations": {"canary.io/status": None}}}
    )
    await eventually(
        lambda: event_reasons(kube, namespace), lambda r: "StateRebuilt" in r, timeout_s=30
    )
    await wait_phase(kube, namespace, "Healthy")
    await asyncio.sleep(3)
    current = await kube.get(SERVICES.path(namespace, "web"))
    meta = current["metadata"]
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
        meta.pop(key, None)
    spec = {k: v for k, v in current["spec"].items() if k not in ("clusterIP", "clusterIPs")}
    body = {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}
    kubectl(sandbox, "-n", namespace, "replace", "--force", "-f", "-", stdin=json.dumps(body))
    for poke in range(4):  # watch events that wake the Service's reconcile
        await asyncio.sleep(2)
        await kube.patch(
            DEPLOYMENTS.path(namespace, "web"),
            {"metadata": {"annotations": {"example.com/poke": str(poke)}}},
        )
    await asyncio.sleep(3)
    await wait_phase(kube, namespace, "Healthy")
    events = await events_of(kube, namespace, "Service", "web")
    rebuilt = [e for e in events if e["reason"] == "StateRebuilt" and "kubectl" in e["message"]]
    assert sum(int(e.get("count") or 1) for e in rebuilt) == 1, [e["message"] for e in rebuilt]
