"""Objects that are being deleted, not yet gone: Kubernetes keeps an object
visible with `metadata.deletionTimestamp` set while finalizers run (a
foreground cascade deletes its dependents first), and the watch caches
hold it as they hold any other. Each test failed on the code before its fix."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import replace

import pytest

from canary import handback
from canary.act import Actor, Target
from canary.model import (
    JSON,
    Action,
    ApplyTwin,
    Color,
    Emit,
    GateSource,
    Observed,
    ScaleSource,
    Twin,
    Unclaim,
)
from canary.observe import observe, ready_endpoints, source_of, twin_of
from canary.spec import CLAIM_REPLICAS, CLAIM_STABLE, HOLD_GATE, MANAGED_BY, RolloutSpec
from canary.twins import twin_deployment
from canary.writeguard import WriteGuard
from tests.unit.objects import source_deployment
from tests.unit.test_identity_bad_day import _deployment
from tests.unit.world import World, spec

CANARY = spec(steps="25,50")
BLUE_GREEN = spec(strategy="blue-green")


def being_deleted(deployment: JSON) -> JSON:
    """`deployment` as the API server shows it once `kubectl delete
    --cascade=foreground` is asked: there still, with a deletionTimestamp and
    the garbage collector's finalizer."""
    deployment["metadata"].update(
        uid="t-1",
        resourceVersion="812",
        deletionTimestamp="2026-12-02T00:20:00Z",
        deletionGracePeriodSeconds=0,
        finalizers=["foregroundDeletion"],
    )
    return deployment


def foreground_deleted_twin(color: Color) -> Twin:
    """The twin as the watch shows it right after `kubectl delete deployment
    web-<color> --cascade=foreground`: still there, with a deletionTimestamp
    and the garbage collector's finalizer, its status not caught up yet, and
    its pods terminating in the EndpointSlice (the collector deletes its
    ReplicaSet, and with it the pods, before the Deployment goes)."""
    v1 = _deployment("web", "web", 3)
    s1, _ = source_of(v1, lambda kind, name: None)
    twin = twin_deployment(v1, "web", color, s1.revision, 3, s1.template)
    twin["metadata"].update(
        uid="t-1",
        resourceVersion="812",
        generation=2,
        deletionTimestamp="2026-12-02T00:20:00Z",
        deletionGracePeriodSeconds=0,
        finalizers=["foregroundDeletion"],
    )
    twin["status"] = {
        "observedGeneration": 1,
        "replicas": 3,
        "updatedReplicas": 3,
        "readyReplicas": 3,
        "availableReplicas": 3,
    }
    slices = [
        {
            "addressType": "IPv4",
            "endpoints": [
                {
                    "addresses": [f"10.0.0.{i}"],
                    "conditions": {"ready": False, "serving": True, "terminating": True},
                    "targetRef": {"kind": "Pod", "name": f"web-{color}-6d4cf56db6-x{i}"},
                }
                for i in range(3)
            ],
        }
    ]
    seen = twin_of(twin, [p for p in ready_endpoints(slices) if p.startswith(f"web-{color}-")])
    assert not seen.exists and seen.endpoints == 0
    return seen


class _Deleting(World):
    """The idealised cluster, but a twin being deleted takes no write: the
    Deployment controller only syncs the status of a Deployment being
    deleted, and its name is taken until the collector is done."""

    deleting: frozenset[Color] = frozenset()

    def _land(self, action: Action) -> None:
        if isinstance(action, ApplyTwin) and action.color in self.deleting:
            return
        super()._land(action)


@pytest.mark.parametrize("the_spec", [CANARY, BLUE_GREEN], ids=["canary", "blue-green"])
def test_a_release_waits_for_a_stable_pod_while_the_stable_twin_is_deleted_and_made_again(
    the_spec: RolloutSpec,
) -> None:
    """The stable twin deleted with `--cascade=foreground` (it stays until
    its pods have stopped; for good while one is stuck on a lost node) and a
    release lands before it is back: the rollout started at once, the
    canary's pod was the only ready one behind the Service (a 25 % step,
    100 % effective), and a passing check promoted it before the stable twin
    ever served again. It waits, as after a scale-up from 0, for a stable
    pod (at most the progress deadline)."""
    world = _Deleting()
    world.adopted(the_spec)
    world.deleting = frozenset({"blue"})
    world.twins["blue"] = foreground_deleted_twin("blue")
    world.source = replace(world.source, revision="r2")
    world.settle(the_spec)
    assert world.state.canary is None, "a release started while the stable twin was going"
    assert world.twins.get("green") is None or world.twins["green"].replicas == 0
    assert "r2 waits" in world.state.message, world.state.message
    world.step(the_spec, advance=20)
    assert world.state.canary is None
    # The collector is done: the twin is gone, made again, its pods starting.
    world.deleting = frozenset()
    world.pending = {"blue"}
    world.step(the_spec, advance=10)
    assert world.twins["blue"].exists and world.twins["blue"].replicas == 3
    world.settle(the_spec)
    assert world.state.canary is None, "a release started before the stable twin had a pod"
    world.pending = set()
    world.settle(the_spec)
    assert world.state.canary == "green" and world.state.stable_revision == "r1"
    if the_spec is CANARY:
        assert world.state.effective_weight == 25.0, world.state.effective_weight


def test_a_stable_twin_stuck_being_deleted_holds_a_release_only_till_the_deadline() -> None:
    """A pod stuck terminating on a lost node keeps the twin being deleted
    for good: a release (the only way back to serving pods) still goes out
    after the progress deadline, as for a stable twin that never gets ready."""
    world = _Deleting()
    world.adopted(CANARY)
    world.deleting = frozenset({"blue"})
    world.twins["blue"] = foreground_deleted_twin("blue")
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    assert world.state.canary is None
    world.step(CANARY, advance=CANARY.progress_deadline + 1)
    assert world.state.canary == "green"


class _ApiServer:
    """Deployments as the API server keeps them: one being deleted takes a
    replace (its deletionTimestamp and finalizers stay: they cannot be
    changed) and is still there, until the collector is done with it."""

    def __init__(self, twin: JSON) -> None:
        self.stored: dict[str, JSON] = {twin["metadata"]["name"]: twin}
        self.calls: list[str] = []

    async def replace(self, path: str, body: JSON, **_: object) -> JSON:
        self.calls.append("replace")
        name = path.rsplit("/", 1)[-1]
        before = self.stored[name]["metadata"]
        kept = {k: before[k] for k in ("deletionTimestamp", "finalizers") if k in before}
        self.stored[name] = {**copy.deepcopy(body), "metadata": {**body["metadata"], **kept}}
        return copy.deepcopy(self.stored[name])

    async def create(self, path: str, body: JSON, **_: object) -> JSON:
        self.calls.append("create")
        name = body["metadata"]["name"]
        assert name not in self.stored, "AlreadyExists"
        self.stored[name] = copy.deepcopy(body)
        return copy.deepcopy(body)

    async def patch(self, path: str, body: JSON, *_: object, **__: object) -> JSON:
        self.calls.append("patch")
        twin = self.stored[path.rsplit("/", 1)[-1]]
        twin["metadata"].setdefault("annotations", {}).update(body["metadata"]["annotations"])
        return copy.deepcopy(twin)


def test_putting_back_a_twin_being_deleted_is_no_write_loop() -> None:
    """Each cycle while the stable twin's foreground cascade ran (its pods
    terminating, the slices and the Deployment's status changing: a cycle
    each) replaced the twin being deleted again, which the Deployment
    controller ignores (it only syncs such a Deployment's status): the
    fourth within a minute was taken for a fight, a `WriteLoop` Warning
    blamed "another controller, a second Service or a GitOps tool", and the
    twin's template writes were held back for 5 minutes once it was back.
    A twin being deleted is going, not fought over: its writes are neither
    counted nor held back (the one made again once it is gone never was)."""
    source = source_deployment(uid="d-1")
    going = twin_deployment(source, "web", "blue", "r1", 3, source["spec"]["template"])
    being_deleted(going)
    kube = _ApiServer(going)
    guard = WriteGuard()
    service = {"metadata": {"name": "web", "namespace": "ns", "resourceVersion": "1", "uid": "u"}}
    for cycle in range(8):
        actor = Actor(
            kube,  # type: ignore[arg-type]
            Target("ns", "web", "web", service),
            lambda obj: None,
            lambda kind, name: copy.deepcopy(kube.stored.get(name)),
            guard,
            progress="steady",
            now=1000.0 + cycle * 2,
        )
        asyncio.run(actor.apply_twin("blue", "r1", 3, source, source["spec"]["template"], {}))
        assert not actor.writes.loops, actor.writes.loops
        assert not actor.writes.blocked, actor.writes.blocked
    assert not guard.blocked(("Deployment", "ns", "web-blue", "template"), 1020.0)


def test_the_status_says_a_twin_being_deleted_is_being_deleted_not_missing() -> None:
    """On-call read "the blue twin (stable) is missing" while `kubectl get
    deployment web-blue` showed it: being deleted, kept by its cascade (or,
    for good, by a pod stuck terminating on a lost node), and it cannot be
    made again before it is gone. The status says what is observed."""
    world = _Deleting()
    world.adopted(CANARY)
    world.deleting = frozenset({"blue"})
    world.twins["blue"] = foreground_deleted_twin("blue")
    world.step(CANARY, advance=1)
    degraded = world.state.degraded
    assert "the blue twin (stable) is being deleted" in degraded, degraded
    assert "missing" not in degraded, degraded
    [told] = [e for e in world.events if e.reason == "Degraded"]
    assert "being deleted" in told.message, told.message


def test_the_status_says_a_source_being_deleted_is_being_deleted_not_missing() -> None:
    """The team's Deployment deleted while a finalizer of another controller
    holds it (a backup tool's, a foreground cascade): "not found" while
    `kubectl get deployment web` shows it. It is as good as gone (its pods
    go, and nothing is handed back to it), and said as it is."""
    world = _Deleting()
    world.adopted(CANARY)
    deployment = _deployment("web", "web", 3)
    deployment["metadata"].update(
        deletionTimestamp="2026-12-02T00:20:00Z",
        deletionGracePeriodSeconds=0,
        finalizers=["backup.example.com/protect"],
    )
    world.source, _ = source_of(deployment, lambda kind, name: None)
    assert not world.source.exists
    world.step(CANARY, advance=1)
    message = world.state.message
    assert "Deployment web is being deleted" in message, message
    assert "not found" not in message, message
    [told] = [e for e in world.events if e.reason == "SourceMissing"]
    assert "being deleted" in told.message and "not found" not in told.message, told.message


def test_a_hand_back_to_a_deployment_being_deleted_says_so() -> None:
    """`canary.io/strategy` removed while the team's Deployment is being
    deleted (a finalizer of another controller holds it): the hand-back
    waits, as for one that is gone, but said "does not exist ... Recreate
    the Deployment" while `kubectl get` showed it, and an apply then only
    edits the one on its way out. It says so, and to recreate it once gone."""
    world = _Deleting()
    world.adopted(CANARY)
    deployment = _deployment("web", "web", 3)
    deployment["metadata"].update(
        deletionTimestamp="2026-12-02T00:20:00Z",
        deletionGracePeriodSeconds=0,
        finalizers=["backup.example.com/protect"],
    )
    world.source, _ = source_of(deployment, lambda kind, name: None)
    world.step(None, advance=1)
    message = world.state.message
    assert "Deployment web is being deleted" in message, message
    assert "does not exist" not in message and "once it is gone" in message, message


def test_source_missing_never_says_a_stable_twin_being_deleted_keeps_serving() -> None:
    """`kubectl delete deployment -l app=web --cascade=foreground`: the twins
    carry the app's labels, so the team's Deployment and the stable twin go
    together. SourceMissing said "the blue twin keeps serving revision r1"
    while its pods were terminating and the Service had no endpoint: on-call
    read that users were served. It says what is observed."""
    world = _Deleting()
    world.adopted(CANARY)
    deployment = _deployment("web", "web", 3)
    deployment["metadata"].update(
        deletionTimestamp="2026-12-02T00:20:00Z",
        deletionGracePeriodSeconds=0,
        finalizers=["foregroundDeletion"],
    )
    world.source, _ = source_of(deployment, lambda kind, name: None)
    world.deleting = frozenset({"blue"})
    world.twins["blue"] = foreground_deleted_twin("blue")
    world.step(CANARY, advance=1)
    [told] = [e for e in world.events if e.reason == "SourceMissing"]
    assert "keeps serving" not in told.message, told.message
    assert "the blue twin (revision r1) is being deleted too" in told.message, told.message
    assert "keeps serving" not in world.state.message, world.state.message


def _orphaned(source: JSON, *twins: JSON) -> Observed:
    """What the orphan cycle observes once the Service is gone (reconcile._orphans)."""
    objects = {str(o["metadata"]["name"]): o for o in (source, *twins)}
    shell = {"metadata": {"namespace": "ns", "name": "web", "annotations": {}}, "spec": {}}
    observed, _ = observe(
        shell,
        "web",
        lambda kind, name: objects.get(name) if kind == "Deployment" else None,
        lambda service: [],
        lambda kind, name: None,
        "web-preview",
    )
    return observed


def test_the_service_deleted_as_its_only_twin_is_deleted_is_let_go_at_0_and_says_so() -> None:
    """The app adopted (its one twin, blue, serving; the team's Deployment
    held at 0, gated), then blue deleted (`--cascade=foreground`: its pods
    stopping) and the Service with it. Whoever deleted both may mean the
    app to stop: the Deployment is un-gated, unclaimed and let go at the 0
    it was held at (scaling it is the team's call, as the sandbox test of
    twins and Service deleted has it), and a Released Event says so with
    the size it served at. Before, nothing said it, and the app ran no pod."""
    v1 = _deployment("web", "web", 3)
    served, _ = source_of(v1, lambda kind, name: None)
    claims = {MANAGED_BY: "web", CLAIM_REPLICAS: "3", CLAIM_STABLE: served.revision}
    source = _deployment("web", "web", 0, **claims)
    source["spec"]["template"]["spec"]["schedulingGates"] = [{"name": HOLD_GATE}]
    blue = twin_deployment(v1, "web", "blue", served.revision, 3, served.template)
    being_deleted(blue)
    observed = _orphaned(source, blue)
    assert observed.source.exists and observed.source.revision == served.revision
    plan = handback.orphan(observed, missing_for=60.0)
    assert plan.release
    writes = [a for a in plan.actions if not isinstance(a, Emit)]
    assert writes == [GateSource(False), Unclaim()], writes
    told = [a for a in plan.actions if isinstance(a, Emit)]
    assert [e.reason for e in told] == ["Released"], told
    assert "let go at 0 replicas (it served at 3)" in told[0].message
    assert "--replicas=3" in told[0].message


def test_an_orphan_with_no_twin_never_scales_up_a_revision_the_claim_does_not_name() -> None:
    """Only the serving revision gets the app's size back with no twin left:
    a claim that names none (written by an older controller), or another
    one (the team's Deployment holds a release that never passed), is let go
    at the 0 it was held at, as before, never at full size unanalysed."""
    v1 = _deployment("web", "web", 3)
    served, _ = source_of(v1, lambda kind, name: None)
    for stable in ("", "0ther0ther"):
        claims = {MANAGED_BY: "web", CLAIM_REPLICAS: "3", CLAIM_STABLE: stable}
        source = _deployment("web", "web", 0, **claims)
        blue = twin_deployment(v1, "web", "blue", served.revision, 3, served.template)
        blue["metadata"].update(
            uid="t-1",
            resourceVersion="812",
            deletionTimestamp="2026-12-02T00:20:00Z",
            finalizers=["foregroundDeletion"],
        )
        plan = handback.orphan(_orphaned(source, blue), missing_for=60.0)
        assert plan.release, stable
        assert not any(isinstance(a, ScaleSource) for a in plan.actions), (stable, plan.actions)


def test_a_twin_stuck_being_deleted_takes_no_write_each_cycle() -> None:
    """A pod stuck terminating on a lost node holds a foreground cascade for
    good, and the twin with it. Each cycle planned its put-back (ApplyTwin:
    the stable twin is not there to serve) and the actor replaced the twin
    being deleted, outside the write guard: an API write per cycle for as
    long as the node stayed lost, which the Deployment controller ignores
    and nothing counted or capped. It is written once per cool-off (to find
    it gone behind the cache: test_twin_gone_behind_the_cache), and the
    cycle its DELETED event wakes creates it again."""
    source = source_deployment(uid="d-1")
    going = twin_deployment(source, "web", "blue", "r1", 3, source["spec"]["template"])
    being_deleted(going)
    kube = _ApiServer(going)
    guard = WriteGuard()
    service = {"metadata": {"name": "web", "namespace": "ns", "resourceVersion": "1", "uid": "u"}}

    def cycle(at: float) -> None:
        actor = Actor(
            kube,  # type: ignore[arg-type]
            Target("ns", "web", "web", service),
            lambda obj: None,
            lambda kind, name: copy.deepcopy(kube.stored.get(name)),
            guard,
            progress="steady",
            now=at,
        )
        asyncio.run(actor.apply_twin("blue", "r1", 3, source, source["spec"]["template"], {}))

    for n in range(8):
        cycle(1000.0 + n * 30)
    assert kube.calls.count("replace") == 1, kube.calls  # 8 cycles over 3.5 minutes
    del kube.stored["web-blue"]  # the collector is done: gone
    kube.calls.clear()
    cycle(1240.0)
    assert kube.calls[:1] == ["create"], kube.calls


def test_an_undo_refused_while_the_stable_twin_is_being_deleted_says_so() -> None:
    """An undo while the stable twin is being deleted (State.woken, set as
    after a scale-up from 0) waits as a release does; its ActionIgnored said
    "the app was just scaled up from 0", which nobody did: on-call looked
    for a scale-up, not for the deletion holding the undo back."""
    world = _Deleting()
    world.adopted(CANARY)
    world.revisions = {1: "r0", 2: "r1"}
    world.deleting = frozenset({"blue"})
    world.twins["blue"] = foreground_deleted_twin("blue")
    world.settle(CANARY)
    world.action = "undo 1 t1"
    world.settle(CANARY)
    assert world.state.canary is None, "an undo started while the stable twin was going"
    [ignored] = [e for e in world.events if e.reason == "ActionIgnored"]
    assert "scaled up from 0" not in ignored.message, ignored.message
    assert "being deleted" in ignored.message and "no ready pod" in ignored.message
