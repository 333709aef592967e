"""Why a canary's pods are not ready, as the pods themselves say: the
scheduler (no node fits), the kubelet (an image it cannot pull, a container
crash-looping). Before, the status said "0/3 pods ready" for the whole
progress deadline and the rollback's Event said the same, for a typo in an
image tag as for a full cluster; on-call had to find the pods themselves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from canary.controller import Controller
from canary.kube.resources import PODS
from canary.kube.watch import Informer, WatchEvent
from canary.model import JSON
from canary.observe import not_ready_why, slim_pod
from canary.reconcile import Caches, Edges, Reconciler
from canary.spec import REVISION_LABEL, SERVICE_LABEL, TWIN_LABEL
from tests.unit.world import World, spec

CANARY = spec(steps="25,50", progress_deadline="5m")
NO_NODE = "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available"


def _pod(name: str, revision: str = "r2", color: str = "green", **status: Any) -> JSON:
    labels = {TWIN_LABEL: color, SERVICE_LABEL: "web", REVISION_LABEL: revision}
    return {
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": "1", "labels": labels},
        "status": {
            "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
            **status,
        },
    }


def _unschedulable(name: str, **kw: Any) -> JSON:
    pod = _pod(name, **kw)
    pod["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": NO_NODE}
    ]
    return pod


def _waiting(name: str, reason: str, message: str = "", **kw: Any) -> JSON:
    container: JSON = {
        "name": "app",
        "ready": False,
        "restartCount": 0,
        "state": {"waiting": {"reason": reason, **({"message": message} if message else {})}},
    }
    return _pod(name, containerStatuses=[container], **kw)


def _crashing(name: str) -> JSON:
    pod = _waiting(name, "CrashLoopBackOff", "back-off 40s restarting failed container=app")
    container = pod["status"]["containerStatuses"][0]
    container["restartCount"] = 4
    container["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error"}}
    return pod


def test_the_pods_cache_keeps_why_a_pod_is_not_ready_and_little_else() -> None:
    pod = _crashing("web-green-5d4f-a")
    pod["status"]["conditions"].append({"type": "PodScheduled", "status": "True"})
    pod["status"]["containerStatuses"].append(
        {"name": "sidecar", "ready": True, "restartCount": 0, "state": {"running": {}}}
    )
    pod["status"]["podIP"] = "10.0.0.7"
    slim = slim_pod(pod)
    assert [c["type"] for c in slim["status"]["conditions"]] == ["Ready"]
    assert slim["status"]["containerStatuses"] == [
        {
            "name": "app",
            "restartCount": 4,
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": "back-off 40s restarting failed container=app",
            },
            "lastExit": {"exitCode": 1, "reason": "Error"},
        }
    ]
    assert "podIP" not in slim["status"]
    assert slim_pod(_unschedulable("web-green-5d4f-b"))["status"]["conditions"][0]["message"] == (
        NO_NODE
    )


def test_each_kind_of_not_ready_is_said_in_the_pods_own_words() -> None:
    slim = [slim_pod(p) for p in (_unschedulable("web-green-5d4f-a"),)]
    assert not_ready_why(slim, "r2") == f"web-green-5d4f-a: Unschedulable ({NO_NODE})"
    pulls = [
        slim_pod(_waiting(f"web-green-5d4f-{i}", "ImagePullBackOff", 'Back-off pulling "x:typo"'))
        for i in "cab"
    ]
    assert not_ready_why(pulls, "r2") == (
        "3 pods (e.g. web-green-5d4f-a): container app: "
        'ImagePullBackOff (Back-off pulling "x:typo")'
    )
    assert not_ready_why([slim_pod(_crashing("web-green-5d4f-a"))], "r2") == (
        "web-green-5d4f-a: container app: CrashLoopBackOff (back-off 40s restarting failed "
        "container=app, last exit code 1, 4 restarts)"
    )


def test_pods_on_their_way_ready_or_of_another_revision_say_nothing() -> None:
    creating = slim_pod(_waiting("web-green-5d4f-a", "ContainerCreating"))
    old = slim_pod(_crashing("web-green-0a1b-b") | {})
    old["metadata"]["labels"][REVISION_LABEL] = "r1"
    ready = slim_pod(_crashing("web-green-5d4f-c"))
    ready["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    leaving = slim_pod(_crashing("web-green-5d4f-d"))
    leaving["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    assert not_ready_why([creating, old, ready, leaving], "r2") == ""


def test_several_reasons_most_pods_first_and_at_most_two() -> None:
    pods = [
        slim_pod(_unschedulable("web-green-5d4f-a")),
        slim_pod(_crashing("web-green-5d4f-b")),
        slim_pod(_crashing("web-green-5d4f-c")),
        slim_pod(_waiting("web-green-5d4f-d", "ErrImagePull")),
    ]
    why = not_ready_why(pods, "r2")
    assert why.startswith("2 pods (e.g. web-green-5d4f-b): container app: CrashLoopBackOff"), why
    assert why.endswith("; and 1 more reasons"), why


class _Quiet:
    def __init__(self) -> None:
        self.requests: dict[str, int] = {}

    async def get(self, *_: Any, **__: Any) -> dict[str, Any]:
        return {"items": [], "metadata": {"resourceVersion": "1"}}

    async def watch(self, *_: Any, **__: Any) -> AsyncIterator[dict[str, Any]]:
        await asyncio.sleep(3600)
        yield {}


def test_the_controller_indexes_each_services_pods_and_the_reconciler_reads_a_twins() -> None:
    controller = Controller(Edges(kube=_Quiet(), prometheus=None))  # type: ignore[arg-type]
    pods = Informer(None, PODS, slim=slim_pod)  # type: ignore[arg-type]
    other = Informer(None, PODS)  # type: ignore[arg-type]
    caches = Caches(other, other, other, other, other, None, pods)
    controller.caches = caches
    reconciler = Reconciler(Edges(kube=None, prometheus=None), caches)  # type: ignore[arg-type]
    green, blue = _crashing("web-green-5d4f-a"), _pod("web-blue-77aa-b", color="blue")
    for pod in (green, blue):
        pods.remember(slim_pod(pod))
        controller._on_pod(WatchEvent("ADDED", ("ns", pod["metadata"]["name"]), slim_pod(pod)))
    assert reconciler._twin_pods("ns", "web") is None  # a cache not listed yet tells nothing
    pods.synced.set()
    pods_of = reconciler._twin_pods("ns", "web")
    assert pods_of is not None
    assert [p["metadata"]["name"] for p in pods_of("green")] == ["web-green-5d4f-a"]
    assert [p["metadata"]["name"] for p in pods_of("blue")] == ["web-blue-77aa-b"]
    for pod in (green, blue):
        controller._on_pod(WatchEvent("DELETED", ("ns", pod["metadata"]["name"]), slim_pod(pod)))
    assert ("ns", "web") not in caches.pods_by_service  # nothing kept for pods all gone


def test_the_waiting_status_and_the_deadlines_rollback_say_why_the_pods_are_not_ready() -> None:
    world = World().adopted(CANARY)
    world.pending = {"green"}
    world.source = replace(world.source, revision="r2")
    world.step(CANARY, advance=1)
    assert world.state.canary == "green" and world.state.canary_revision == "r2"
    why = f"web-green-5d4f-a: Unschedulable ({NO_NODE})"
    world.twins["green"] = replace(world.twins["green"], not_ready_why=why)
    world.step(CANARY, advance=10)
    assert "Insufficient cpu" in world.state.message, world.state.message
    world.events.clear()
    world.step(CANARY, advance=300)
    [deadline] = [e for e in world.events if e.reason == "ProgressDeadlineExceeded"]
    assert "Unschedulable (0/3 nodes are available: 3 Insufficient cpu" in deadline.message


def test_a_pod_held_by_a_readiness_gate_says_which() -> None:
    # Every container ready, the pod not: a readiness gate (the AWS Load
    # Balancer controller's, set once the pod is healthy in its target
    # group, which happens only while the Service selects the pod). The
    # kubelet says so on the Ready condition. Found by review: before, this
    # said nothing, and a canary held by its gate read "0/1 pods ready" for
    # the whole deadline, and its rollback said the same.
    gate = "target-health.elbv2.k8s.aws/k8s-shop-web-6b1e2a4f"
    pod = _pod("web-green-7c9f-a")
    pod["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "True"},
        {
            "type": "Ready",
            "status": "False",
            "reason": "ReadinessGatesNotReady",
            "message": f'corresponding condition of pod readiness gate "{gate}" does not exist.',
        },
    ]
    pod["status"]["containerStatuses"] = [{"name": "app", "ready": True, "restartCount": 0}]
    why = not_ready_why([slim_pod(pod)], "r2")
    assert "web-green-7c9f-a: ReadinessGatesNotReady" in why, why
    assert gate in why, why
