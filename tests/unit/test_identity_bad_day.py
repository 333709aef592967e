"""Identity changes on a bad day (found by an adversarial review of
renames, recreations and re-targeted annotations): each test failed on the
code before its fix."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from analysis.verdicts import Verdict
from canary import handback
from canary.model import Checked, DeleteTwins, RestoreSource, ScaleSource, SetSelector, Twin
from canary.observe import source_of
from canary.reconcile import Caches, Edges, Reconciler
from canary.spec import CLAIM_REPLICAS, CLAIM_STABLE, MANAGED_BY, SERVICE_LABEL, TWIN_LABEL
from canary.twins import twin_deployment
from tests.unit.test_config_bad_day import _Informer, _Writes
from tests.unit.world import World, result, spec

CANARY = spec(steps="25,50")


def _selected(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_a_label_added_by_a_client_side_apply_never_empties_the_service() -> None:
    """One commit adds `tier: fe` to the pod template and to the Service
    selector, applied with a client-side `kubectl apply` (or Argo CD's
    default apply): the three-way merge of a map adds `tier` and keeps our
    canary.io/twin key, so the Service selects {app, tier, twin=blue}. The
    stable twin's pods (r1) lack `tier`: no endpoint at all. Then r2's
    canary step selects {app, tier, service}: r2's pods only, 100 % of the
    traffic on a release nobody analysed. (The same commit synced by a
    tool that drops our keys was already put back, see test_source_bad_day.)"""
    world = World().adopted(CANARY)
    stable_pods = {**world.source.pod_labels, TWIN_LABEL: "blue", SERVICE_LABEL: "web"}  # r1's
    world.source = replace(world.source, revision="r2", pod_labels={"app": "web", "tier": "fe"})
    world.selector = {"app": "web", "tier": "fe", TWIN_LABEL: "blue"}  # the merge result
    for _ in range(6):
        world.step(CANARY, advance=1)
        assert _selected(world.selector, stable_pods), (world.selector, world.reasons())
    told = next(e.message for e in world.events if e.reason == "SelectorRestored")
    assert "tier=fe left out" in told, told


def test_a_label_added_mid_step_by_a_client_side_apply_never_hands_the_canary_all_traffic() -> None:
    """The same merge while r2's first step serves (selector {app, service}):
    {app, tier, service} selects r2's pods alone."""
    world = World().adopted(CANARY)
    stable_pods = {**world.source.pod_labels, TWIN_LABEL: "blue", SERVICE_LABEL: "web"}
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    assert world.state.canary == "green" and SERVICE_LABEL in world.selector, world.selector
    world.source = replace(world.source, revision="r3", pod_labels={"app": "web", "tier": "fe"})
    world.selector = {**world.selector, "tier": "fe"}
    plan = world.step(CANARY, advance=1)
    written = [a.selector for a in plan.actions if isinstance(a, SetSelector)]
    assert written and _selected(written[0], stable_pods), (written, world.reasons())


def test_an_orphan_whose_stable_twin_was_deleted_never_gets_the_rolled_back_release() -> None:
    """r2 was rolled back (green, at 0) and the team reverted its Deployment
    to r1. Then the Service is renamed (the old one pruned) and, during the
    grace, someone deletes web-blue by hand. The orphan hand-back took the
    one twin left (green, r2) for the stable one: it set the team's
    Deployment back to r2's template ("SourceRestored: ... not the one
    serving") and scaled the rolled-back release to full size, for the
    renamed Service (selecting app=web) to serve and adopt."""
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    world.fail(CANARY)
    world.step(CANARY, Checked("fast", result(Verdict.FAIL), world.now + 1), advance=1)
    world.settle(CANARY)
    assert world.state.failed_revision == "r2" and world.twins["green"].replicas == 0
    world.source = replace(world.source, revision="r1")  # the team reverted
    world.step(CANARY, advance=1)
    assert world.source.claim.stable_revision == "r1", world.source.claim
    del world.twins["blue"]  # by hand, during the grace
    observed = world.observed()
    # (the real observe() always has both colours; World only those it holds)
    observed = replace(observed, selector={}, twins={**observed.twins, "blue": Twin()})
    plan = handback.orphan(observed, missing_for=60.0)
    assert not any(isinstance(a, RestoreSource) for a in plan.actions), plan.actions
    # The source holds the serving revision: it is handed back as it is.
    assert ScaleSource(3) in plan.actions, plan.actions
    up = replace(observed, source=replace(observed.source, replicas=3, ready=3, gated=False))
    plan = handback.orphan(up, missing_for=61.0)
    assert plan.release and DeleteTwins() in plan.actions, plan.actions


class _Kube(_Writes):
    async def patch(
        self, path: str, body: dict[str, Any], *_: object, **__: object
    ) -> dict[str, Any]:
        written = await super().patch(path, body)
        written["metadata"].update(uid="u-1", resourceVersion="2")
        return written


def _deployment(name: str, app: str, replicas: int, **annotations: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "generation": 1,
            "resourceVersion": "1",
            "annotations": dict(annotations),
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {"containers": [{"name": "web", "image": f"{app}:v1"}]},
            },
        },
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
        },
    }


def test_a_recreated_service_naming_another_deployment_never_abandons_the_twins_it_runs() -> None:
    """Service web manages Deployment web (twin web-blue serves). The team
    renames its app and recreates the Service (`kubectl replace --force`, a
    Helm reinstall: the status annotation goes) with canary.io/deployment:
    web-v2. A Service whose status says it adopted web is refused such a
    change (InvalidSpec); with the status gone it was not checked: web-v2
    was adopted (claimed, twinned, scaled to 0) while web-blue and web-green
    (a canary in flight with them) ran on, labelled for this Service, which
    no hand-back ever looks at again, and Deployment web stayed claimed and
    gated at 0."""
    source, _ = source_of(_deployment("web", "web", 3), lambda kind, name: None)
    old = _deployment("web", "web", 0, **{MANAGED_BY: "web", CLAIM_REPLICAS: "3"})
    old["metadata"]["annotations"][CLAIM_STABLE] = source.revision
    blue = twin_deployment(
        _deployment("web", "web", 3), "web", "blue", source.revision, 3, source.template
    )
    blue["metadata"].update(generation=1, resourceVersion="1")
    blue["status"] = _deployment("x", "x", 3)["status"]
    new = _deployment("web-v2", "web-v2", 3)
    service = {
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "resourceVersion": "1",
            "uid": "s-2",
            "annotations": {"canary.io/strategy": "canary", "canary.io/deployment": "web-v2"},
        },
        "spec": {"selector": {"app": "web-v2"}},
    }
    empty: Any = _Informer()
    caches = Caches(_Informer(service), _Informer(old, blue, new), empty, empty, empty)  # type: ignore[arg-type]
    kube = _Kube()
    reconciler = Reconciler(Edges(kube=kube, prometheus=None), caches)  # type: ignore[arg-type]
    asyncio.run(reconciler.reconcile("ns", "web"))
    touched = [p for p in kube.paths if "web-v2" in p[1]]
    assert not touched, (touched, kube.reasons)
    assert "InvalidSpec" in kube.reasons, (kube.reasons, kube.paths)
    assert not [p for p in kube.paths if p[0] == "delete"], kube.paths  # web-blue serves on
