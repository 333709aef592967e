"""Scaling during rollouts on a bad day: the team's HPA, kubectl scale, re-applies."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from analysis.verdicts import Verdict
from canary import history
from canary.decide import decide
from canary.model import Autoscaler, Checked, Emit, Record, ScaleTwin, SetSelector
from canary.observe import replicas_defaulted
from canary.spec import RolloutSpec, SpecError
from canary.twins import canary_replicas
from tests.unit.world import World, result, spec

CANARY = spec(steps="25,50")
TEAM = Autoscaler("web", min_replicas=2, max_replicas=20)


def autoscaled(the_spec: RolloutSpec = CANARY) -> World:
    world = World(hpa=TEAM).adopted(the_spec)
    world.settle(the_spec)
    return world


def halfway(the_spec: RolloutSpec = CANARY) -> World:
    """An autoscaled rollout at its 50 % step, whose stable twin's HPA sized it
    for its share (8): 16 pods serve."""
    world = autoscaled(the_spec)
    world.source = replace(world.source, revision="r2")
    world.settle(the_spec)
    world.step(the_spec, result(Verdict.PASS), advance=10)
    world.settle(the_spec)
    world.autoscale(8)
    world.settle(the_spec)
    return world


def serving(world: World) -> int:
    return world.observed().endpoints


def test_replicas_removed_from_the_applied_manifest_keep_the_stable_twin_at_its_size() -> None:
    """The README says: leave `replicas` out of the manifest you apply. With a
    client-side `kubectl apply` that removes the field, and the API server
    defaults it to 1: the controller takes 1 as the team's new size."""
    world = World(source=replace(World().source, replicas=10)).adopted(CANARY)
    assert world.twins["blue"].replicas == 10
    # spec.replicas removed by a client-side apply: the API server defaults it to 1
    world.source = replace(world.source, replicas=1, replicas_defaulted=True)
    world.settle(CANARY)
    assert world.twins["blue"].replicas == 10, "10 pods served; a defaulted field scaled it to 1"


def test_replicas_removed_mid_rollout_keep_the_canary_at_its_weight() -> None:
    world = World(source=replace(World().source, replicas=10)).adopted(CANARY)
    # A re-apply: a new image, and no replicas any more (defaulted to 1)
    world.source = replace(world.source, revision="r2", replicas=1, replicas_defaulted=True)
    world.settle(CANARY)
    weight = world.state.effective_weight
    assert weight <= 30, f"step 1 asks for 25%, the canary serves {weight}%"


def test_rollback_of_an_autoscaled_rollout_keeps_the_serving_capacity() -> None:
    world = autoscaled()
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    world.step(CANARY, result(Verdict.PASS), advance=10)
    world.settle(CANARY)
    world.autoscale(8)  # at 50%: the stable's HPA sized it for half the load
    world.settle(CANARY)
    before = serving(world)
    assert before == 16
    world.fail(CANARY)
    world.fail(CANARY)
    assert world.state.canary is None  # rolled back
    after = serving(world)
    assert after >= before, (
        f"{before} pods served the load; right after the rollback {after} do "
        f"(the canary went to 0 in the same cycle, the stable twin stayed at its HPA share)"
    )


def test_abort_of_an_autoscaled_rollout_keeps_the_serving_capacity() -> None:
    world = halfway()
    before = serving(world)
    world.action = "abort"
    world.step(CANARY)
    assert world.state.canary is None
    after = serving(world)
    assert after >= before, f"{before} pods served; after the abort {after}"


def test_while_annotations_are_invalid_the_canary_follows_the_hpa() -> None:
    """While the annotations are invalid nothing is analysed, but the stable
    twin's HPA keeps scaling: the canary is not followed (only follow_size
    runs), so its share of the traffic grows past the step's weight,
    unanalysed, and the status keeps the old effective weight."""
    world = autoscaled()
    world.autoscale(9)
    world.settle(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    assert world.twins["green"].replicas == canary_replicas(9, 25) == 3
    broken = SpecError("canary.io/interval", "'30x' is not a duration")
    world.step(broken, advance=5)
    world.autoscale(2)  # load drops (night): the HPA takes the stable twin to its minimum
    for _ in range(3):
        world.step(broken, advance=30)
    seen = world.observed()
    canary, stable = seen.twins["green"].endpoints, seen.twins["blue"].endpoints
    real = round(100 * canary / (canary + stable))
    assert world.state.requested_weight == 25
    # 2 stable pods: one canary pod (the fewest a step can have) is 33 %.
    assert canary == canary_replicas(stable, 25) == 1, (
        f"step at 25%: the unanalysed canary serves {real}% ({canary} vs {stable})"
    )


def test_invalid_annotations_status_weight_is_what_was_observed() -> None:
    world = autoscaled()
    world.autoscale(9)
    world.settle(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    broken = SpecError("canary.io/interval", "'30x' is not a duration")
    world.autoscale(2)
    world.step(broken, advance=30)
    world.step(broken, advance=30)
    seen = world.observed()
    canary, stable = seen.twins["green"].endpoints, seen.twins["blue"].endpoints
    observed = round(100.0 * canary / (canary + stable), 1)
    assert world.state.effective_weight == observed, (
        f"status says {world.state.effective_weight}% effective, {observed}% observed"
    )


def test_team_scales_down_while_paused_and_the_canary_keeps_its_weight() -> None:
    """No HPA. The rollout is paused at 25% (analysis stops). The team scales
    its app down with `kubectl scale deploy web --replicas=2`: the stable twin
    follows, the canary is never re-sized while paused (only the HPA path,
    autoscaling.follow, does that), so the unanalysed canary serves 60%."""
    world = World(source=replace(World().source, replicas=9)).adopted(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    assert world.twins["green"].replicas == canary_replicas(9, 25) == 3
    world.action = "pause"
    world.step(CANARY, advance=1)
    assert world.state.paused
    world.source = replace(world.source, replicas=2)  # kubectl scale deploy web --replicas=2
    world.settle(CANARY)
    world.step(CANARY, advance=60)
    seen = world.observed()
    canary, stable = seen.twins["green"].endpoints, seen.twins["blue"].endpoints
    real = round(100 * canary / (canary + stable))
    assert (stable, canary) == (2, canary_replicas(2, 25)) == (2, 1), (
        f"paused at 25%: the canary serves {real}% ({canary} vs {stable}), unanalysed; "
        f"status says {world.state.effective_weight}% effective"
    )


def test_hpa_deleted_during_promotion_keeps_the_new_twin_at_its_size() -> None:
    world = halfway()
    world.step(CANARY, result(Verdict.PASS), advance=10)
    assert world.state.promoting and world.twins["green"].replicas == 16
    world.hpa = Autoscaler()  # the team deletes its HPA (or adds an External metric)
    plan = world.step(CANARY, advance=1)
    world.settle(CANARY)
    assert world.state.stable == "green"
    assert world.twins["green"].replicas >= 16, (
        f"16 pods served before the promotion; the new twin was cut to "
        f"{world.twins['green'].replicas} ({[a for a in plan.actions if isinstance(a, ScaleTwin)]})"
    )


def test_copy_deleted_by_hand_during_promotion_keeps_the_new_twin_at_its_size() -> None:
    """`kubectl delete hpa web-blue` (our copy) while promoting: the copy is
    put back, but the same cycle sizes the new twin at the stable's N, and
    flips to it at that size."""
    world = halfway()
    world.step(CANARY, result(Verdict.PASS), advance=10)
    assert world.state.promoting and world.twins["green"].replicas == 16
    world.copies.discard("blue")
    world.step(CANARY, advance=1)
    world.settle(CANARY)
    assert world.state.stable == "green"
    assert world.twins["green"].replicas >= 16, world.twins["green"]


def test_an_hpa_on_a_statefulset_of_the_same_name_leaves_the_deployments_followed() -> None:
    """Deployment `web` has its HPA; an unrelated StatefulSet also named `web`
    has another. targeting() matches by name only, so the two count as two
    HPAs on the Deployment: the Deployment's HPA is refused and nothing
    autoscales the app any more (its copy is deleted)."""
    from canary import autoscaling

    def hpa(name: str, kind: str) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "namespace": "shop", "labels": {}},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": "web"},
                "minReplicas": 2,
                "maxReplicas": 10,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu"}}],
            },
        }

    service = {"metadata": {"name": "web", "namespace": "shop", "uid": "u"}}
    seen = autoscaling.observe(
        [hpa("web", "Deployment"), hpa("web-db", "StatefulSet")], service, "web"
    )
    assert seen.followed, f"the Deployment's own HPA is refused: {seen.refused}"


def test_promoted_size_is_recorded_so_a_failed_copy_write_keeps_the_new_stable() -> None:
    """advance_promotion flipped to the new twin at what both twins served (16) but
    left state.replicas at the old stable's 8: if the copy's create on the
    new twin failed that cycle (a 429/500, a write guard), the next cycle had
    no copy on the stable, and _ensure_stable scaled it to 8."""
    world = halfway()
    world.step(CANARY, result(Verdict.PASS), advance=10)
    world.step(CANARY, advance=1)
    assert world.state.stable == "green" and world.twins["green"].replicas == 16
    assert world.state.replicas == 16  # what the new stable twin serves at, right after the flip
    world.copies.discard("green")  # the copy's create failed (blue's delete went through)
    plan = world.step(CANARY, advance=1)
    assert world.twins["green"].replicas >= 16, [
        a for a in plan.actions if isinstance(a, ScaleTwin)
    ]


def test_hand_back_mid_rollout_of_an_autoscaled_app_gives_back_what_served() -> None:
    world = halfway()
    before = serving(world)
    assert before == 16
    world.step(None)  # canary.io/strategy removed
    assert serving(world) >= before, (
        f"{before} pods served; right after the release began {serving(world)}"
    )


def _applied(replicas: int, applied_spec: dict[str, Any], owner: dict[str, Any]) -> dict[str, Any]:
    """A Deployment as the API server returns it after a client-side apply
    (managedFields as the sandbox's kube-apiserver wrote them)."""
    last = json.dumps({"spec": applied_spec})
    return {
        "metadata": {
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": last},
            "managedFields": [owner],
        },
        "spec": {"replicas": replicas},
    }


APPLY: dict[str, Any] = {
    "manager": "kubectl-client-side-apply",
    "operation": "Update",
    "fieldsV1": {
        "f:metadata": {"f:annotations": {"f:kubectl.kubernetes.io/last-applied-configuration": {}}},
        "f:spec": {"f:replicas": {}},
    },
}
SCALE: dict[str, Any] = {
    "manager": "kubectl",
    "operation": "Update",
    "subresource": "scale",
    "fieldsV1": {"f:spec": {"f:replicas": {}}},
}
PATCH: dict[str, Any] = {
    "manager": "kubectl-patch",
    "operation": "Update",
    "fieldsV1": {"f:spec": {"f:replicas": {}}},
}


def test_a_replicas_field_removed_by_an_apply_is_told_from_a_scale_to_one() -> None:
    assert replicas_defaulted(_applied(1, {"template": {}}, APPLY))
    assert not replicas_defaulted(_applied(1, {"replicas": 1}, APPLY))  # asked for 1
    assert not replicas_defaulted(_applied(1, {"template": {}}, SCALE))  # kubectl scale
    assert not replicas_defaulted(_applied(1, {"template": {}}, PATCH))  # a patch to 1
    assert not replicas_defaulted(_applied(2, {"template": {}}, APPLY))


def _promoting_while_the_stable_hpa_scales_down() -> World:
    """Promoting from the 50 % step (8 + 8 served): the canary twin grows to
    16 beside the stable one, whose HPA sees half the load per pod and, while
    the new pods start, scales it to 4."""
    world = halfway()
    world.step(CANARY, result(Verdict.PASS), advance=10)
    assert world.state.promoting and world.twins["green"].replicas == 16
    world.ready = False  # the new pods take a while
    world.step(CANARY, advance=1)
    world.autoscale(4)
    world.step(CANARY, advance=1)
    assert world.state.promoting and world.state.replicas == 4
    return world


@pytest.mark.parametrize("end", ["abort", "deadline", "release"])
def test_a_promotion_ended_while_the_stable_hpa_scaled_down_gives_back_what_served(
    end: str,
) -> None:
    world = _promoting_while_the_stable_hpa_scales_down()
    if end == "abort":
        world.ready = True
        world.action = "abort"
        world.step(CANARY, advance=1)
    elif end == "deadline":
        world.step(CANARY, advance=700)
    else:
        world.ready = True
        world.step(None)
        world.step(None)
    assert world.twins["green"].replicas == 0
    assert world.selector.get("canary.io/twin") == "blue"
    assert world.twins["blue"].replicas >= 16, (
        f"16 pods served the load before the promotion; after the {end} the stable twin "
        f"takes it all on {world.twins['blue'].replicas}"
    )


@pytest.mark.parametrize("hpa", [TEAM, Autoscaler()], ids=["its HPA", "kubectl scale"])
def test_an_app_scaled_up_while_it_is_adopted_is_switched_at_its_new_size(
    hpa: Autoscaler,
) -> None:
    """The twin is created at the source's 3; while its pods start, the
    source still serves and its HPA (or the team) takes it to 9 under load."""
    world = World(hpa=hpa)
    world.ready = False  # the twin's pods take a while
    world.step(CANARY)
    assert world.twins["blue"].replicas == 3 and not world.state.adopted
    world.source = replace(world.source, replicas=9, ready=9)
    world.ready = True
    switched = 0
    for _ in range(10):
        plan = world.step(CANARY)
        if any(isinstance(a, SetSelector) for a in plan.actions):
            switched = world.twins["blue"].replicas
    assert world.state.adopted and world.source.replicas == 0
    assert switched == 9, f"9 source pods served; the Service was switched to {switched}"
    assert world.twins["blue"].replicas == world.state.replicas == 9
    assert world.source.claim.replicas == 9  # what a hand-back gives back


def test_a_canary_replaced_mid_rollout_of_an_autoscaled_app_gives_back_what_served() -> None:
    """At the 50 % step 8 + 8 serve; a hotfix replaces the canary, whose
    pods leave the Service at once."""
    world = halfway()
    before = serving(world)
    world.source = replace(world.source, revision="r3")
    world.step(CANARY, advance=1)
    assert world.state.canary_revision == "r3"
    assert world.selector.get("canary.io/twin") == "blue"
    assert world.twins["blue"].replicas >= before, (
        f"{before} pods served; the stable twin takes it all on {world.twins['blue'].replicas}"
    )


def test_an_autoscaled_promotion_whose_flip_was_cut_flips_at_its_size() -> None:
    """The promotion's record is in the history, then its cycle is cut (the
    Promoted Event or the flip refused): the retry takes the promotion from
    the history, with the old status's size, the stable twin's share."""
    world = halfway()
    world.step(CANARY, result(Verdict.PASS), advance=10)
    assert world.state.promoting and world.twins["green"].replicas == 16
    world.step(CANARY, advance=1, cut_after=Emit)
    assert world.selector.get("canary.io/twin") is None  # not flipped
    plan = world.step(CANARY, advance=1)
    assert "StateRebuilt" in world.reasons()
    assert world.selector.get("canary.io/twin") == "green"
    assert world.twins["green"].replicas >= 16, (
        f"16 pods served; flipped to {world.twins['green'].replicas} "
        f"({[a for a in plan.actions if isinstance(a, ScaleTwin)]})"
    )


def test_an_autoscaled_rollback_whose_scale_was_refused_takes_the_load_back_on_retry() -> None:
    """The rollback's record is in the history (written before its traffic
    moves), then its first write, the stable twin's scale to what both twins
    served, is refused: an admission webhook on Deployments that is down
    (failurePolicy Fail: each write times out), a policy. The retry takes the
    rollback from the history with the old status's size, the stable twin's
    share, and moved the whole load onto it: 8 pods for what 16 served."""
    world = halfway()
    world.fail(CANARY)  # counted, within failure-limit 1
    world.step(CANARY, result(Verdict.FAIL), advance=10)
    world.now += 1
    plan = decide(
        CANARY,
        world.state,
        world.observed(),
        Checked("fast", result(Verdict.FAIL), world.now),
        world.now,
    )
    assert isinstance(plan.actions[0], ScaleTwin) and plan.actions[0].replicas == 16, plan.actions
    for action in plan.actions:  # only the record lands (status_writes.ends_rollout)
        if isinstance(action, Record):
            world.records = history.apply_record(world.records, action, world.source, world.now, 20)
    world.step(CANARY, advance=1)
    assert "StateRebuilt" in world.reasons()
    assert world.selector.get("canary.io/twin") == "blue"
    assert world.twins["blue"].replicas >= 16, (
        f"16 pods served; the rollback put the load on {world.twins['blue'].replicas}"
    )


def test_a_rollback_whose_scale_is_refused_twice_still_takes_the_canary_out() -> None:
    """An autoscaled rollout at its 50 % step (8 stable + 8 canary pods) fails
    its check. The rollback's first write is the stable twin's scale to what
    both twins served (16), and a Deployment admission webhook that is down
    refuses it: the cycle stops there, with the rollback already in the
    history and the status still saying r2 rolls out. The next cycle takes
    the end from the history, and the webhook refuses the scale again. The
    failing canary must be out of the Service by then: the selector goes
    back to the stable twin before the scale is asked for. Scaled first,
    each refusal cut the cycle before the selector, and the failing release
    kept half the traffic for as long as the webhook was down."""
    strict = spec(steps="25,50", failure_limit="0")
    world = halfway(strict)
    assert world.state.step == 1 and world.twins["blue"].replicas == 8, world.state
    world.step(strict, result(Verdict.FAIL), advance=10)
    world.step(
        strict, Checked("fast", result(Verdict.FAIL), world.now + 1), advance=1, cut_after=ScaleTwin
    )
    world.twins["blue"] = replace(world.twins["blue"], replicas=8)  # refused
    assert history.outcomes(world.records).get("r2") == "rolled-back", world.records
    assert world.state.canary == "green", "the status still has r2 rolling out"
    world.step(strict, advance=1, cut_after=ScaleTwin)
    world.twins["blue"] = replace(world.twins["blue"], replicas=8)  # refused again
    assert world.selector.get("canary.io/twin") == "blue", world.selector
