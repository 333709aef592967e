"""What teams do to the source Deployment, its config and the twins."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from canary.model import ApplyTwin, ScaleTwin, SetSelector, Twin
from canary.observe import source_of, twin_of
from canary.spec import SERVICE_LABEL, TWIN_LABEL
from tests.unit.objects import cached_actor, source_deployment
from tests.unit.world import World, spec

CANARY = spec(steps="25,50")


def _foreign_green() -> Twin:
    """The team's own Deployment that happens to be called web-green (their
    old hand-made blue/green track, or another app): no label or annotation
    of ours."""
    team_deployment = {
        "metadata": {"name": "web-green", "namespace": "ns", "generation": 1, "labels": {}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web", "track": "green"}},
            "template": {
                "metadata": {"labels": {"app": "web", "track": "green"}},
                "spec": {"containers": [{"name": "web", "image": "web:old"}]},
            },
        },
        "status": {
            "observedGeneration": 1,
            "replicas": 2,
            "updatedReplicas": 2,
            "readyReplicas": 2,
        },
    }
    return twin_of(team_deployment, [])


def test_first_management_never_points_the_service_at_a_deployment_that_is_not_a_twin() -> None:
    foreign = _foreign_green()
    assert foreign.exists and foreign.revision == "" and foreign.service == ""
    world = World(twins={"green": foreign})
    world.lost = "missing"  # a Service annotated for the first time has no status
    plan = world.step(CANARY)
    selectors = [a.selector for a in plan.actions if isinstance(a, SetSelector)]
    # The team's web-green pods carry no canary.io/twin label: a selector naming
    # twin=green selects nothing (the source's pods are not selected either).
    assert all(s.get(TWIN_LABEL) != "green" for s in selectors), (selectors, world.events)
    # ... and the team's own Deployment is not taken over (scaled to the source's size).
    assert not any(isinstance(a, ScaleTwin) and a.color == "green" for a in plan.actions)


def _deployment(
    volumes: list[dict[str, Any]], env_from: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return source_deployment(volumes, env_from or [])


def test_an_optional_config_that_does_not_exist_yet_is_not_read_live_by_the_twins() -> None:
    """`optional: true` ConfigMap (a feature-flag file the team creates later).
    The twin reads the team's live name, so when the team creates it the
    kubelet writes it into the running stable pods' volume (and every stable
    pod restarted reads it in env) while the new revision is still being
    analysed on the canary; a rollback of that revision does not take it out
    of the stable twin."""
    deployment = _deployment(
        [{"name": "flags", "configMap": {"name": "flags", "optional": True}}],
        env_from=[{"secretRef": {"name": "extra", "optional": True}}],
    )
    before, _ = source_of(deployment, lambda kind, name: None)
    volume = before.template["spec"]["volumes"][0]["configMap"]["name"]
    env = before.template["spec"]["containers"][0]["envFrom"][0]["secretRef"]["name"]
    # The twin's template must name something the team does not write.
    assert volume != "flags" and env != "extra", (volume, env)


class _Kube:
    """Records the writes; answers each with the body."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def create(self, path: str, body: dict[str, Any], **_: object) -> dict[str, Any]:
        self.calls.append(("create", path))
        return body

    async def replace(self, path: str, body: dict[str, Any], **_: object) -> dict[str, Any]:
        self.calls.append(("replace", path))
        return body

    async def delete(self, path: str, **_: object) -> dict[str, Any]:
        self.calls.append(("delete", path))
        return {}

    async def patch(
        self, path: str, body: dict[str, Any], *_: object, **__: object
    ) -> dict[str, Any]:
        self.calls.append(("patch", path))
        return {"metadata": {"name": path.rsplit("/", 1)[-1], "annotations": {}}, "spec": {}}


def test_putting_back_a_hand_edited_stable_twin_never_deletes_it() -> None:
    """The team recreated Deployment `web` with another selector (Helm chart
    upgrade: `app: web` -> `app: web, part-of: shop`; the README says a
    changed spec.selector is handled). Same pod template otherwise. Later
    on-call runs `kubectl set image deployment/web-blue` on the stable
    twin (a restart was the case here until restarts stopped counting as
    edits, test_twin_restarts.py): decide() puts the template back with
    ApplyTwin(stable), and the actor, finding the twin's selector differs
    from the one it would build from the new source, DELETES the serving
    stable twin (all its pods at once) before creating it again: the Service
    has no endpoint."""
    from canary.twins import twin_deployment

    old_source = _deployment([])
    template = old_source["spec"]["template"]
    serving = twin_deployment(old_source, "web", "blue", "r1", 3, template)
    serving["metadata"]["resourceVersion"] = "7"
    new_source = _deployment([])
    new_source["spec"]["selector"]["matchLabels"]["part-of"] = "shop"
    new_source["spec"]["template"]["metadata"]["labels"]["part-of"] = "shop"
    cache = {("Deployment", "web-blue"): serving, ("Deployment", "web"): new_source}
    kube = _Kube()
    service = {"metadata": {"name": "web", "namespace": "ns", "resourceVersion": "1"}}
    actor = cached_actor(kube, cache, service)
    # The stable twin's own revision, from the history (the source now holds another).
    asyncio.run(actor.apply_twin("blue", "r1", 3, new_source, template, {}))
    assert ("delete", "/apis/apps/v1/namespaces/ns/deployments/web-blue") not in kube.calls, (
        kube.calls
    )


def test_a_hand_edited_stable_twin_is_put_back_with_apply_twin() -> None:
    """The decide() half of the above: a hand edit of the stable twin
    (`kubectl set image`; not a `kubectl rollout restart`, which is no edit:
    test_twin_restarts.py) is put back by an ApplyTwin of the stable colour,
    whose selector then comes from the source as it is now."""
    world = World().adopted(CANARY)
    world.twins["blue"] = replace(world.twins["blue"], edited_by="kubectl-set")
    plan = world.step(CANARY, advance=1)
    assert ApplyTwin("blue", "r1", 3, put_back=True) in plan.actions


def test_a_stable_twin_rolled_back_by_kubectl_rollout_undo_is_put_back() -> None:
    """On-call runs `kubectl rollout undo deployment/web-blue` on the stable
    twin. kubectl puts back an older ReplicaSet's template AND replaces the
    Deployment's annotations with that ReplicaSet's (copied from the twin when
    it ran that revision): canary.io/revision and the template digest now both
    name the older revision (e.g. r2, rolled back for failing analysis), and
    agree with each other, so edited_by stays empty. The Service keeps
    selecting twin=blue: every user is on r2. decide() only looks at
    `exists` and `edited_by` for the stable twin."""
    world = World().adopted(CANARY)
    assert world.state.stable == "blue" and world.state.stable_revision == "r1"
    # What observe() builds from the rolled-back twin: consistent annotations.
    world.twins["blue"] = replace(world.twins["blue"], revision="r0")
    plan = world.step(CANARY, advance=1)
    restored = [a for a in plan.actions if isinstance(a, ApplyTwin) and a.color == "blue"]
    assert restored == [ApplyTwin("blue", "r1", 3, put_back=True)], (
        plan.actions,
        world.state.message,
    )
    told = [e.message for e in world.events if e.reason == "TwinRestored"]
    assert told and "it now runs r0" in told[0], told
    # Its pods served r0 until the put-back rolled: said as for a hand edit.
    assert world.state.degraded == "the blue twin (stable) runs revision r0, not r1"
    world.settle(CANARY)
    assert world.twins["blue"].revision == "r1"
    assert [e.reason for e in world.events[1:]] == ["Degraded", "Recovered"], world.events


def test_a_label_added_to_template_and_service_selector_together_never_empties_the_service() -> (
    None
):
    """One commit adds `tier: fe` to the pod template AND to the Service
    selector (safe without canary: a rolling update moves the pods over). The
    sync drops our selector keys; _restore_selector (decide.py) writes
    base + canary.io/twin=blue at once, although the stable twin's pods (r1:
    labels {app: web}) lack `tier`: the Service has no endpoint, then the r2
    canary's pods take 100% of the traffic (both(base) matches only them) as
    soon as they are ready, before any analysis; if r2 is paused, gated or
    rolled back, the Service stays empty. At adoption the same mismatch is
    refused (SelectorMismatch); nothing checks it afterwards."""
    world = World().adopted(CANARY)
    stable_pods = {**world.source.pod_labels, TWIN_LABEL: "blue", SERVICE_LABEL: "web"}  # r1's
    world.source = replace(world.source, revision="r2", pod_labels={"app": "web", "tier": "fe"})
    world.selector = {"app": "web", "tier": "fe"}
    plan = world.step(CANARY, advance=1)
    written = [a.selector for a in plan.actions if isinstance(a, SetSelector)]
    assert written, plan.actions
    unmatched = {k: v for k, v in written[0].items() if stable_pods.get(k) != v}
    assert not unmatched, (written, unmatched, world.reasons())
    told = next(e.message for e in world.events if e.reason == "SelectorRestored")
    assert "tier=fe left out" in told, told
    # Once r2 (whose pods carry tier) is promoted, the next sync's selector stands.
    world.settle(CANARY)
    assert world.selector.get("tier") is None


def test_a_stable_twin_put_back_after_a_hand_edit_is_healthy_only_once_the_put_back_rolled() -> (
    None
):
    """Found by a clean-clone run of the soak's status rule: the template
    put back, `Healthy` was claimed while one pod of the edited template
    (failing half its requests) still served behind the Service.
    A slow put-back stays Degraded: its second cycle read its own "being put
    back" reason, which no longer named the edit, and claimed Recovered (the
    reason was keyed on its text)."""
    world = World().adopted(CANARY)
    world.twins["blue"] = replace(world.twins["blue"], edited_by="kubectl-edit")
    world.step(CANARY, advance=1)
    assert "changed the pod template" in world.state.degraded
    world.twins["blue"] = replace(world.twins["blue"], edited_by="", updated=False)
    _rolls_then_recovers(world, cycles=3)


def _rolls_then_recovers(world: World, cycles: int) -> None:
    """The put-back rolls for `cycles` cycles: Degraded all along, then
    Recovered once the twin runs only the put-back template."""
    for _ in range(cycles):
        world.step(CANARY, advance=1)
        assert "being put back" in world.state.degraded, world.state.degraded
    assert "Recovered" not in world.reasons()
    world.twins["blue"] = replace(world.twins["blue"], updated=True)
    world.step(CANARY, advance=1)
    assert not world.state.degraded and "Recovered" in world.reasons()


def test_a_rollout_undo_of_the_stable_twin_is_degraded_until_put_back() -> None:
    """`kubectl rollout undo deployment/web-blue` brings back an older
    ReplicaSet with its annotations: nothing looks edited, only the revision
    tells. Its pods serve the older revision: not Healthy until the put-back
    has rolled."""
    world = World().adopted(CANARY)
    world.twins["blue"] = replace(world.twins["blue"], revision="r0")
    world.step(CANARY, advance=1)
    assert "revision r0" in world.state.degraded, world.state.degraded
    assert "TwinRestored" in world.reasons()
    world.twins["blue"] = replace(world.twins["blue"], revision="r1", updated=False)
    _rolls_then_recovers(world, cycles=2)


def test_a_scale_of_the_stable_twin_is_no_put_back() -> None:
    """A twin whose Deployment has not yet observed a scale reads as not
    updated: that alone is no degradation."""
    world = World().adopted(CANARY)
    world.twins["blue"] = replace(world.twins["blue"], updated=False)
    world.step(CANARY, advance=1)
    assert not world.state.degraded, world.state.degraded


def test_an_edited_stable_twin_whose_template_is_kept_nowhere_keeps_its_size() -> None:
    """Chaos seed 21: the Service deleted and created again within the grace
    (its history went with it), the stable twin edited by hand meanwhile, the
    team's Deployment at a newer release: the stable revision's template was
    kept nowhere any more. Every cycle planned its put-back, which the shell
    could not write ("no template known"), and told TwinRestored again (172
    times); the put-back branch also kept the twin's size from being put
    back, so when chaos scaled it to 0 the rolled-back canary kept serving."""
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2")  # the team's Deployment moved on
    world.records = []  # its history went with the Service deleted
    world.twins["blue"] = replace(world.twins["blue"], edited_by="kubectl-edit", replicas=0)
    plan = world.step(CANARY, advance=1)
    assert not [a for a in plan.actions if isinstance(a, ApplyTwin) and a.color == "blue"]
    assert ScaleTwin("blue", 3) in plan.actions, plan.actions
    assert "TwinRestored" not in world.reasons()
    assert "cannot be put back" in world.state.degraded, world.state.degraded
    told = len(world.events)
    for _ in range(3):
        world.step(CANARY, advance=1)
    assert [e.reason for e in world.events[told:]].count("Degraded") == 0, world.events[told:]
    assert "TwinRestored" not in world.reasons()


def test_a_deleted_stable_twin_whose_template_is_kept_nowhere_is_said() -> None:
    """The shell, with nothing to write it from, only logs "no template
    known" at each try: the status says why the twin does not come back."""
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2")
    world.records = []  # its history went with the Service deleted
    world.twins["blue"] = Twin()
    world.step(CANARY, advance=1)
    assert "cannot be recreated" in world.state.degraded, world.state.degraded
