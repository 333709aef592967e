"""Following a team's HPA onto the stable twin: which HPAs can be followed,
the copy the twin gets, and the sizes a canary and a hand-back use."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from analysis.verdicts import Verdict
from canary import autoscaling
from canary.decide import decide
from canary.model import (
    ApplyAutoscaler,
    Autoscaler,
    Claim,
    ClaimSource,
    DeleteAutoscaler,
    Emit,
    ResetAutoscaler,
    ScaleTwin,
    SetSelector,
    Source,
)
from canary.spec import SERVICE_LABEL, TWIN_LABEL, RolloutSpec, SpecError
from canary.twins import canary_replicas
from tests.unit.world import World, result, spec

SERVICE = {"metadata": {"name": "web", "namespace": "shop", "uid": "u-1"}}


def hpa(
    name: str = "web",
    target: str = "web",
    kind: str = "Deployment",
    metrics: list[dict[str, Any]] | None = None,
    low: int = 2,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "shop", "labels": labels or {}},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": target},
            "minReplicas": low,
            "maxReplicas": 10,
            "metrics": metrics
            if metrics is not None
            else [{"type": "Resource", "resource": {"name": "cpu"}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}},
        },
    }


def test_only_the_teams_hpas_on_the_source_are_followed_never_our_copies() -> None:
    ours = hpa("web-blue", "web-blue", labels={SERVICE_LABEL: "web"})
    other = hpa("api", "api")
    found = autoscaling.targeting([ours, other, hpa()], "web")
    assert [h["metadata"]["name"] for h in found] == ["web"]


@pytest.mark.parametrize(
    ("found", "reason"),
    [
        ([hpa(kind="StatefulSet")], "scaleTargetRef is a apps/v1 StatefulSet, not a Deployment"),
        ([hpa(metrics=[{"type": "External", "external": {}}])], "metric 1 is of type External"),
        (
            [hpa(metrics=[{"type": "Pods", "pods": {}}, {"type": "Object", "object": {}}])],
            "metric 2 is of type Object",
        ),
        ([hpa("a"), hpa("b")], "2 HPAs target the same Deployment: a, b"),
    ],
)
def test_an_hpa_that_cannot_follow_a_twin_is_refused_with_the_reason(
    found: list[dict[str, Any]], reason: str
) -> None:
    refused = autoscaling.check(found)
    assert refused is not None and reason in refused.reason


def test_per_pod_metrics_are_followed() -> None:
    metrics = [
        {"type": "Resource", "resource": {}},
        {"type": "ContainerResource", "containerResource": {}},
        {"type": "Pods", "pods": {}},
    ]
    assert autoscaling.check([hpa(metrics=metrics)]) is None
    assert autoscaling.check([]) is None


def test_the_stable_twins_copy_keeps_metrics_bounds_and_behaviour_aimed_at_the_twin() -> None:
    team = hpa()
    copy = autoscaling.mirror(team, "web-blue", "blue", SERVICE)
    assert copy["metadata"]["name"] == "web-blue"
    assert copy["metadata"]["labels"] == {SERVICE_LABEL: "web", TWIN_LABEL: "blue"}
    assert copy["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert copy["spec"]["scaleTargetRef"]["name"] == "web-blue"
    for key in ("metrics", "minReplicas", "maxReplicas", "behavior"):
        assert copy["spec"][key] == team["spec"][key]
    assert team["spec"]["scaleTargetRef"]["name"] == "web"  # the team's is untouched


def test_a_changed_team_hpa_or_an_edited_copy_is_written_again() -> None:
    wanted = autoscaling.mirror(hpa(), "web-blue", "blue", SERVICE)
    assert autoscaling.differs(None, wanted)
    assert not autoscaling.differs(wanted, wanted)
    edited = autoscaling.mirror(hpa(low=5), "web-blue", "blue", SERVICE)
    assert autoscaling.differs(edited, wanted)


@pytest.mark.parametrize(
    ("served", "low", "high", "size"),
    [(7, 1, 0, 7), (7, 2, 0, 7), (1, 3, 0, 3), (7, 2, 5, 5), (1, 3, 5, 3)],
)
def test_release_hands_back_no_less_than_what_served(
    served: int, low: int, high: int, size: int
) -> None:
    assert autoscaling.handback_size(served, low, high) == size


def test_observed_copies_are_current_only_while_they_match_the_teams_hpa() -> None:
    service = {"metadata": {**SERVICE["metadata"]}}
    copy = autoscaling.mirror(hpa(), "web-blue", "blue", service)
    seen = autoscaling.observe([hpa(), copy], service, "web")
    assert seen == Autoscaler("web", "", 2, 10, frozenset({"blue"}), frozenset({"blue"}))
    changed = autoscaling.observe([hpa(low=4), copy], service, "web")
    assert changed.current == frozenset() and changed.min_replicas == 4
    refused = autoscaling.observe([hpa(kind="StatefulSet"), copy], service, "web")
    assert refused.name == "web" and refused.refused and not refused.followed
    assert autoscaling.observe([copy], service, "web") == Autoscaler(copies=frozenset({"blue"}))


# -- decide(), with an idealised HPA controller (World.autoscale) -------------

CANARY = spec(steps="25,50")
TEAM = Autoscaler("web", min_replicas=2)


def autoscaled(the_spec: RolloutSpec = CANARY) -> World:
    world = World(hpa=TEAM).adopted(the_spec)
    world.settle(the_spec)
    return world


def _at_half_under_load(load: int = 8) -> World:
    """r2 at its 50 % step, the stable twin's copy sizing it at `load`."""
    world = autoscaled()
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    world.step(CANARY, result(Verdict.PASS), advance=10)
    world.settle(CANARY)
    world.autoscale(load)
    world.settle(CANARY)
    return world


def test_the_stable_twin_gets_a_copy_of_the_teams_hpa_once_adopted() -> None:
    world = World(hpa=TEAM)
    world.settle(CANARY)
    assert world.copies == {"blue"}
    assert "AutoscalerFollowed" in world.reasons()
    assert world.source.replicas == 0  # the team's HPA idles at 0; it is left as it is


def test_the_stable_twin_keeps_autoscaling_and_the_controller_follows_its_size() -> None:
    world = autoscaled()
    world.autoscale(6)
    plan = world.step(CANARY)
    assert not [a for a in plan.actions if isinstance(a, ScaleTwin)]  # never against the HPA
    assert world.state.replicas == 6
    assert ClaimSource(Claim("web", 6, "r1")) in plan.actions  # what serves, for a hand-back


def test_the_canary_follows_the_stable_twins_live_size_at_the_step_weight() -> None:
    world = autoscaled()
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    assert world.twins["green"].replicas == canary_replicas(3, 25)
    world.autoscale(9)  # load rises mid-step: only the stable twin has the HPA
    world.settle(CANARY)
    assert world.twins["blue"].replicas == 9
    assert world.twins["green"].replicas == canary_replicas(9, 25) == 3
    assert world.copies == {"blue"}


def test_promotion_sizes_the_new_twin_for_all_the_traffic_and_moves_the_hpa() -> None:
    world = _at_half_under_load()  # the HPA sized the stable twin for its half of the load
    assert world.twins["green"].replicas == 8
    world.step(CANARY, result(Verdict.PASS), advance=10)
    assert world.state.promoting
    both = 8 + canary_replicas(8, 50)
    assert world.twins["green"].replicas == both  # what both twins served, before the flip
    world.autoscale(4)  # while both serve, the stable's HPA sees less load per pod
    world.settle(CANARY)
    assert world.state.stable == "green"
    assert world.twins["green"].replicas == both  # no capacity lost to that
    assert world.copies == {"green"}  # the HPA moved with the flip
    assert world.twins["blue"].replicas == 4  # kept up for a fast abort, without an HPA
    assert world.state.replicas == both
    assert "AutoscalerFollowed" in world.reasons()


def test_a_promotion_stays_within_the_hpas_maximum() -> None:
    world = World(hpa=replace(TEAM, max_replicas=10)).adopted(CANARY)
    world.settle(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    world.step(CANARY, result(Verdict.PASS), advance=10)
    world.settle(CANARY)
    world.autoscale(8)
    world.settle(CANARY)
    world.step(CANARY, result(Verdict.PASS), advance=10)
    world.settle(CANARY)
    assert world.state.stable == "green" and world.twins["green"].replicas == 10


def test_a_blue_green_preview_runs_at_the_stable_twins_current_size() -> None:
    bg = spec(strategy="blue-green")
    world = autoscaled(bg)
    world.autoscale(5)
    world.settle(bg)
    world.source = replace(world.source, revision="r2")
    world.settle(bg)
    assert world.twins["green"].replicas == 5


def test_release_hands_back_at_the_autoscaled_size_and_removes_the_copy() -> None:
    world = autoscaled()
    world.autoscale(7)
    world.settle(CANARY)
    for _ in range(6):
        world.step(None)
        world.source = replace(world.source, ready=world.source.replicas)
    assert world.released and world.source.replicas == 7
    assert not world.copies and not world.twins


def test_an_hpa_that_cannot_be_followed_is_reported_once_and_the_size_stays_fixed() -> None:
    world = World(hpa=Autoscaler("web", "metric 1 is of type External: ..."))
    world.settle(CANARY)
    world.step(CANARY, advance=60)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    assert world.twins["green"].replicas == canary_replicas(3, 25)
    events = [e for e in world.events if e.reason == "AutoscalerRefused"]
    assert (
        len(events) == 1
        and events[0].warning
        and "metric 1 is of type External" in (events[0].message)
    )
    assert not world.copies and world.state.replicas == 3


def test_a_deleted_team_hpa_removes_the_copy_and_keeps_the_size() -> None:
    world = autoscaled()
    world.autoscale(6)
    world.settle(CANARY)
    world.hpa = Autoscaler()
    world.settle(CANARY)
    assert not world.copies
    assert world.twins["blue"].replicas == 6 and world.state.replicas == 6
    assert "AutoscalerRemoved" in world.reasons()


def test_a_change_to_the_teams_hpa_is_written_to_the_copy() -> None:
    world = autoscaled()
    world.stale = True
    plan = world.step(CANARY)
    assert ApplyAutoscaler("blue") in plan.actions
    assert world.events[-1].reason == "AutoscalerFollowed" and "changed" in world.events[-1].message


def test_a_source_scaled_by_hand_is_not_blamed_on_the_followed_hpa() -> None:
    world = autoscaled()
    world.autoscale(4)
    world.settle(CANARY)
    world.source = replace(world.source, replicas=10)
    world.step(CANARY)
    event = next(e for e in world.events if e.reason == "SourceScaled")
    assert "autoscaler?" not in event.message and "not by its HPA web" in event.message
    assert world.state.replicas == 4 and world.twins["blue"].replicas == 4


def test_a_paused_canary_keeps_its_weight_while_the_stable_twin_autoscales() -> None:
    world = autoscaled()
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    paused = spec(steps="25,50", paused="true")
    world.autoscale(9)
    world.settle(paused)
    assert world.twins["green"].replicas == canary_replicas(9, 25)
    assert world.state.step == 0


def refusal(at: str, key: str = "shop/web") -> dict[str, Any]:
    return {
        "conditions": [
            {
                "type": "ScalingActive",
                "status": "False",
                "reason": "AmbiguousSelector",
                "lastTransitionTime": at,
                "message": f"pods by selector app=web are controlled by multiple HPAs: [{key} "
                "shop/web-blue]",
            }
        ]
    }


def test_a_copy_refused_as_ambiguous_after_the_team_hpa_was_made_asks_for_it_afresh() -> None:
    team = hpa()
    team["metadata"]["creationTimestamp"] = "2026-11-29T03:00:00Z"
    copy = autoscaling.mirror(team, "web-blue", "blue", SERVICE)
    copy["status"] = refusal("2026-11-29T03:00:05Z")
    assert autoscaling.observe([team, copy], SERVICE, "web").stale
    copy["status"] = refusal("2026-11-29T02:59:00Z")  # from before it was made afresh
    assert not autoscaling.observe([team, copy], SERVICE, "web").stale
    copy["status"] = refusal("2026-11-29T03:00:05Z", key="shop/other")
    assert not autoscaling.observe([team, copy], SERVICE, "web").stale


def test_a_team_hpa_whose_recreation_was_cut_short_is_finished_not_dropped() -> None:
    team = hpa()
    copy = autoscaling.mirror(team, "web-blue", "blue", SERVICE)
    copy["metadata"]["annotations"][autoscaling.RECREATING] = json.dumps(autoscaling.stash(team))
    seen = autoscaling.observe([copy], SERVICE, "web")
    assert seen.restoring and seen.name == "web"
    again = autoscaling.afresh(autoscaling.stashed(copy) or {}, "shop")
    assert again["spec"] == team["spec"] and again["metadata"]["name"] == "web"
    world = autoscaled()
    world.hpa = replace(TEAM, restoring=True)
    plan = world.step(CANARY)
    assert ResetAutoscaler() in plan.actions
    assert not [a for a in plan.actions if isinstance(a, DeleteAutoscaler)]  # the copy stays


def test_pods_the_hpa_just_asked_for_are_growth_not_a_degraded_twin() -> None:
    world = autoscaled()
    world.autoscale(6)
    seen = world.observed()
    # The 3 new pods are starting: neither counted ready nor endpoints yet.
    starting = replace(seen.twins["blue"], ready=3, endpoints=3)
    observed = replace(seen, twins={**seen.twins, "blue": starting})
    plan = decide(CANARY, world.state, observed, None, world.now)
    assert plan.state.replicas == 6 and plan.state.scaled_from == 3
    assert not plan.state.degraded
    short = replace(observed, twins={**seen.twins, "blue": replace(starting, ready=2, endpoints=2)})
    assert decide(CANARY, plan.state, short, None, world.now).state.degraded  # below what served
    grown = decide(CANARY, plan.state, seen, None, world.now).state
    assert grown.scaled_from == 0 and not grown.degraded


def _released_against_the_teams_hpa(world: World, maximum: int, cycles: int = 10) -> None:
    """Management removed; between cycles the team's HPA, which targets the
    source all along, does what Kubernetes' HPA controller does to a target
    above its maxReplicas: sets it to the maximum at its next sync, whatever
    its metrics say."""
    for _ in range(cycles):
        world.step(None)
        if world.released:
            return
        world.source = replace(world.source, replicas=min(world.source.replicas, maximum))
        world.source = replace(world.source, ready=world.source.replicas)


def test_a_release_finishes_when_the_teams_hpa_maximum_is_below_what_served() -> None:
    """One commit takes the Service out of canary and lowers the HPA's
    maxReplicas (7 served, now at most 5). The hand-back scaled the source
    to 7, the HPA cut it to 5, the hand-back scaled it to 7 again: a fight
    that ends in WriteLoop, with the release stuck in `releasing` for good
    (it waits for 7 ready pods the HPA never allows)."""
    world = autoscaled()
    world.autoscale(7)
    world.settle(CANARY)
    world.hpa = replace(world.hpa, max_replicas=5)
    _released_against_the_teams_hpa(world, 5)
    assert world.released and world.source.replicas == 5


def test_a_release_finishes_within_the_bounds_of_a_team_hpa_that_was_not_followed() -> None:
    """An HPA on an External metric (KEDA makes these) cannot be followed,
    but it still scales the source once the source has pods: its
    maxReplicas binds the hand-back too."""
    keda = hpa(metrics=[{"type": "External", "external": {}}])
    keda["spec"]["maxReplicas"] = 2
    observed = autoscaling.observe([keda], SERVICE, "web")
    assert observed.refused and observed.max_replicas == 2
    world = World(hpa=observed).adopted(CANARY)
    world.settle(CANARY)
    _released_against_the_teams_hpa(world, 2)
    assert world.released and world.source.replicas == 2


def test_an_abort_right_after_an_autoscaled_promotion_sizes_the_old_twin_for_the_load() -> None:
    # The old twin's HPA had sized it for its last share (4 pods beside 12);
    # promoted, it kept that size, without an HPA, for the abort window.
    # An abort flipped all the load back onto those 4 pods, and only its HPA
    # copy's next sync (15 s, then the pods' start) grew it: minutes of
    # overload right when on-call was leaving a bad release.
    world = _at_half_under_load()
    world.step(CANARY, result(Verdict.PASS), advance=10)
    world.autoscale(4)
    world.settle(CANARY)
    assert world.state.stable == "green" and world.twins["blue"].replicas == 4
    serving = world.state.replicas
    world.action = "abort t1"
    plan = world.step(CANARY, advance=1)
    assert SetSelector({"app": "web", TWIN_LABEL: "blue"}) in plan.actions
    assert ScaleTwin("blue", serving) in plan.actions  # in the same cycle as the flip
    assert world.state.replicas == serving
    aborted = next(e for e in plan.actions if isinstance(e, Emit) and e.reason == "Aborted")
    assert f"from 4 to {serving} pods" in aborted.message, aborted
    world.settle(CANARY)
    assert world.twins["blue"].replicas == serving
    after = world.state
    assert after.stable == "blue"
    assert "Degraded" not in world.reasons()  # its new pods are growth, not a twin short of pods


def test_an_abort_after_a_promotion_at_a_fixed_size_scales_nothing_up() -> None:
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    for _ in range(2):
        world.step(CANARY, result(Verdict.PASS), advance=10)
        world.settle(CANARY)
    assert world.state.stable == "green"
    world.action = "abort t1"
    plan = world.step(CANARY, advance=1)
    assert SetSelector({"app": "web", TWIN_LABEL: "blue"}) in plan.actions
    assert not [a for a in plan.actions if isinstance(a, ScaleTwin)]


def test_a_deleted_deployment_leaves_the_stable_twins_size_to_its_hpa() -> None:
    """The team's Deployment deleted (a `replace --force`, a Helm reinstall,
    a GitOps prune) while its HPA is followed: our copy still scales the
    stable twin, and the size it sets is the app's. Before, each cycle
    without the Deployment scaled the stable twin back to the size it had
    (a fight with the HPA controller; under a load spike, the app held at
    its old size until the Deployment was back)."""
    world = autoscaled()
    world.source = Source()
    world.settle(CANARY)
    world.autoscale(6)
    plan = world.step(CANARY)
    assert not [a for a in plan.actions if isinstance(a, ScaleTwin)], plan.actions
    assert world.twins["blue"].replicas == 6 and world.state.replicas == 6


@pytest.mark.parametrize("gone", ["deployment", "annotations"])
def test_a_copy_left_when_the_teams_hpa_goes_is_never_fought(gone: str) -> None:
    """The team's HPA deleted while the annotations cannot be read: our copy
    is left as it is (nothing changes until the fix) and still scales the
    stable twin, so its size is the app's until the copy goes. Before, the
    controller stopped following it and scaled the twin back at every
    cycle, against the HPA controller. With the Deployment missing, the
    copy is removed (as with it there) and the twin keeps its size."""
    world = autoscaled()
    the_spec: RolloutSpec | SpecError = CANARY
    if gone == "annotations":
        with pytest.raises(SpecError) as error:
            spec(steps="25,50", interval="30x")
        the_spec = error.value
    if gone == "deployment":
        world.source = Source()
    world.step(the_spec)
    world.autoscale(6)
    world.step(the_spec)
    world.hpa = Autoscaler()
    world.step(the_spec)
    if gone == "deployment":
        # The copy goes with the team's HPA as with the Deployment there
        # (AutoscalerRemoved), and the twin keeps its size.
        assert not world.copies and world.twins["blue"].replicas == world.state.replicas == 6
        return
    assert world.copies == {"blue"}  # (removed once the spec is readable again)
    world.autoscale(8)
    for _ in range(2):
        plan = world.step(the_spec)
        assert not [a for a in plan.actions if isinstance(a, ScaleTwin)], plan.actions
    assert world.state.replicas == world.twins["blue"].replicas == 8


def test_a_hand_back_mid_step_right_after_the_hpa_grew_the_stable_twin_keeps_what_served() -> None:
    """`canary.io/strategy` removed in the cycle right after the stable
    twin's HPA grew it, before the canary followed: the twin must take what
    both serve now (its live size and the canary's), as every other path
    does once it has followed the HPA's size (autoscaling.follow_size). The
    hand-back read the size from the status instead, a cycle old: 5 + 3
    pods served, and the stable twin was asked for 6."""
    world = autoscaled()
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    world.step(CANARY, result(Verdict.PASS), advance=10)
    world.settle(CANARY)
    assert world.state.step == 1 and world.twins["green"].replicas == 3
    world.autoscale(5)  # only the stable twin has the copy
    serving = world.observed().endpoints
    assert serving == 8
    world.step(None)
    assert world.twins["blue"].replicas >= serving, world.twins


def _handed_back_mid_step(world: World, served: int, cycles: int = 6) -> None:
    """`canary.io/strategy` removed, and the hand-back waits `cycles` cycles
    (for the stable twin's pods, or the team Deployment's): the stable twin
    takes what both twins served once, and never grows from its own growth."""
    for _ in range(cycles):
        world.step(None, advance=5)
        assert world.twins["blue"].replicas <= served, (world.twins, served)
        assert world.source.replicas <= served, (world.source, served)
        assert not world.released
    assert world.twins["blue"].replicas == served, world.twins


def test_a_hand_back_waiting_for_a_drained_stable_twin_grows_it_once_not_every_cycle() -> None:
    """Mid-step (8 + 8, the stable twin's HPA copy sizing it for its half), a
    drain leaves the stable twin's pods Pending, and `canary.io/strategy` is
    removed: the hand-back grows the stable twin to what both served (16)
    and waits for its pods. Found by the random-operations fuzz (explore,
    seed 6): each cycle took the twin's live size, its own growth, for the
    HPA's share and added the canary's again: 16, 32, 64, ... (13 to 3051 in
    the fuzz's run), with no bound when the team's HPA has no maximum."""
    world = _at_half_under_load()
    served = world.observed().endpoints
    assert served == 16 and world.twins["green"].replicas == 8
    world.pending = {"blue"}
    _handed_back_mid_step(world, served)
    world.pending = set()
    for _ in range(6):
        world.step(None, advance=5)
        world.source = replace(world.source, ready=world.source.replicas)
        if world.released:
            break
    assert world.released and world.source.replicas == served, world.source


def test_a_hand_back_waiting_for_the_deployments_pods_grows_the_stable_twin_once() -> None:
    """The same without a drain: the Service moves onto the stable twin,
    grown to what both served, and the team's Deployment is scaled up beside
    it; while its pods come up (more than one cycle, as they always do) each
    cycle grew the twin, and the Deployment with it, from that growth again."""
    world = _at_half_under_load()
    served = world.observed().endpoints
    _handed_back_mid_step(world, served)
    assert world.selector == {"app": "web", TWIN_LABEL: "blue"}
    assert world.source.replicas == served, world.source
    world.source = replace(world.source, ready=served)
    world.step(None, advance=5)
    assert world.released and world.source.replicas == served, world.source


def test_a_hand_back_cut_short_keeps_no_size_for_a_later_one() -> None:
    """The strategy put back while the hand-back waits: the size it grew the
    stable twin to is that hand-back's alone, not one a later hand-back
    (another step, another load) would take instead of what served then."""
    world = _at_half_under_load()
    world.pending = {"blue"}
    world.step(None, advance=5)
    assert world.state.handback_served == 16
    world.pending = set()
    world.step(CANARY, advance=5)
    assert world.state.handback_served == 0, world.state


def test_an_abort_after_promotion_while_the_deployment_is_missing_moves_the_hpa_copy_back() -> None:
    """`canary abort` inside the scale-down delay after an autoscaled
    promotion, while the team's Deployment is missing (a `replace --force`
    in progress, a GitOps prune): traffic flips back to the old twin, and
    the HPA copy must go with it. Before, the source-missing path never
    placed the copy: it stayed on the twin just scaled to 0 (an HPA idles
    at 0), and the serving twin ran at a fixed size, not autoscaled, until
    the Deployment was back."""
    world = autoscaled()
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    for _ in range(2):
        world.step(CANARY, result(Verdict.PASS), advance=10)
        world.settle(CANARY)
    assert world.state.stable == "green" and world.copies == {"green"}
    world.source = Source()
    world.settle(CANARY)
    world.action = "abort 1"
    world.settle(CANARY)
    aborted = world.state  # (a new status: mypy keeps the narrowing above)
    assert aborted.stable == "blue" and world.selector.get(TWIN_LABEL) == "blue"
    assert world.copies == {"blue"}, world.copies


def test_an_abort_after_an_autoscaled_promotion_keeps_the_old_twins_pods_the_hpa_cut() -> None:
    """A bad release failing fast (cheap 500s) uses little CPU: its twin's
    HPA cut it from 20 to 2 pods within the abort window. On-call aborts.
    The old twin still had the 10 ready pods it served with, and was scaled
    to 2 in the same cycle as the flip: all the load back on r1's 2 pods,
    right when leaving the bad release. Its HPA copy, moved onto it, scales
    it down if the load is really that low, at the pace the team set."""
    world = autoscaled()
    world.autoscale(10)
    world.settle(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    for _ in range(2):
        world.step(CANARY, result(Verdict.PASS), advance=10)
        world.settle(CANARY)
    assert world.state.stable == "green" and world.twins["blue"].replicas == 10
    world.autoscale(2)
    world.settle(CANARY)
    assert world.state.replicas == 2
    world.action = "abort t1"
    plan = world.step(CANARY, advance=1)
    assert SetSelector({"app": "web", TWIN_LABEL: "blue"}) in plan.actions
    assert not [a for a in plan.actions if isinstance(a, ScaleTwin) and a.color == "blue"]
    world.settle(CANARY)
    assert world.twins["blue"].replicas == world.state.replicas == 10, world.twins
    assert world.copies == {"blue"} and "Degraded" not in world.reasons()


def test_a_deployment_and_hpa_deleted_mid_step_give_the_stable_twin_what_both_served() -> None:
    """`helm uninstall` then install (or a GitOps prune) deletes the team's
    Deployment and its HPA together mid-step: the rollout is cancelled and
    the stable twin takes all the load back. Its HPA copy had sized it for
    its share only (4 pods beside the canary's 4): with the team's HPA no
    longer there to follow, that share was taken as the app's size, and
    the load of 8 pods came back on 4. Our copy still scaled it when the
    rollback was decided (as autoscaling.follow_size has it)."""
    world = autoscaled()
    world.autoscale(8)
    world.settle(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    world.step(CANARY, result(Verdict.PASS), advance=10)
    world.settle(CANARY)
    world.autoscale(4)
    world.settle(CANARY)
    assert world.state.requested_weight == 50 and world.observed().endpoints == 8
    world.hpa = Autoscaler()
    world.source = Source()
    world.settle(CANARY)
    assert world.state.canary is None and world.selector.get(TWIN_LABEL) == "blue"
    assert world.twins["blue"].replicas == world.state.replicas == 8, world.twins
    assert not world.copies


def test_the_claim_of_the_cycle_that_removes_the_copy_counts_the_canarys_share_once() -> None:
    """The team's HPA deleted mid-step: the cycle that removes the copy
    raises the app's size to what both twins served (16 at 50 %, 8 + 8);
    the claim it writes on the team's Deployment (the size a hand-back from
    it alone scales the Deployment to, handback.orphan) added the canary's
    share on top of that again, the copy still being in what the cycle
    observed: 32, put right only by the next cycle (at a 90 % step, ten
    times the app; found by the random-operations fuzz, check_ceiling)."""
    world = _at_half_under_load()
    world.hpa = Autoscaler()
    plan = world.step(CANARY)
    assert not world.copies and world.state.replicas == 16
    assert world.source.claim.replicas == 16, plan.actions


def test_a_team_hpa_deleted_as_the_steps_are_edited_keeps_what_served_at_the_old_weight() -> None:
    """8 + 8 served at 50 % (a load of 16) when the team deleted its HPA,
    in the cycle that read the steps edited to 90 %: the canary was asked
    for its 90 % (72) first, and the app "stayed at what both twins served"
    counted at that weight, 8 + 72 = 80, then the canary at 90 % of that:
    800 pods for 16 pods' worth of load (found by the random-operations
    fuzz, check_ceiling). What served is the canary at the weight it
    served at, as the cycle read it: 16, a fixed size from then on."""
    world = _at_half_under_load()
    assert world.state.requested_weight == 50
    world.hpa = Autoscaler()
    plan = world.step(spec(steps="25,90"))
    assert not world.copies and world.state.requested_weight == 90
    assert world.state.replicas == 16, plan.actions
    plan = world.step(spec(steps="25,90"))
    sizes = {c: t.replicas for c, t in world.twins.items()}
    assert sizes == {"blue": 16, "green": canary_replicas(16, 90)}, plan.actions


def test_a_team_hpa_deleted_mid_step_leaves_the_app_at_what_both_twins_served() -> None:
    # At 50 %, the stable twin's copy sized it for its half of the load (8 of
    # 16 pods' worth, the canary the other 8). The team deleted its HPA: the
    # copy went, and the app's size became the stable twin's share, so the
    # promotion gave the new twin 8 pods for the load 16 had served. As
    # Kubernetes leaves a Deployment at the size its deleted HPA gave it, the
    # app stays at what served: a fixed-size app of 16 from then on.
    world = _at_half_under_load()
    served = world.twins["blue"].replicas + world.twins["green"].replicas
    assert world.state.requested_weight == 50 and served == 16
    world.hpa = Autoscaler()
    world.settle(CANARY)
    assert not world.copies
    assert world.state.replicas == served
    removed = [e for e in world.events if e.reason == "AutoscalerRemoved"]
    assert removed and f"{served}" in removed[-1].message, removed
    world.step(CANARY, result(Verdict.PASS), advance=10)
    world.settle(CANARY)
    assert world.state.stable == "green" and world.twins["green"].replicas >= served


def test_the_cycle_that_removes_the_copy_asks_the_stable_twin_for_the_size_it_states() -> None:
    """The copy removed mid-step (the team's HPA deleted): the app stays at
    what both twins served, and that cycle's status said so (16) while the
    twin was still asked for its share (8) until the next cycle. With a
    re-apply's size taken in the same cycle (a Deployment recreated during a
    hand-back cut short: the random-operations fuzz, explore seed 6), the
    twin was scaled down to it (3) under a status of 4, and up by one pod at
    the next cycle: pods stopped and started again, the Service short of the
    size its status stated meanwhile."""
    world = _at_half_under_load()
    world.hpa = Autoscaler()
    plan = world.step(CANARY)
    assert not world.copies and world.state.replicas == 16
    assert world.twins["blue"].replicas == world.state.replicas, plan.actions


def test_a_switch_to_blue_green_beside_a_drained_stable_twin_keeps_what_both_served() -> None:
    """At 50 %, the stable twin's copy sized it for its half of the load (8
    of 16 pods' worth). Its pods drained (evicted, Pending), the canary's
    served alone; the strategy switched to blue-green then (the canary stays
    in the Service until the stable twin has a ready pod) and a hotfix
    replaced the canary. The switch had set the weight to 0, so the
    replacement's load-back took the canary for one that served nothing:
    the stable twin stayed at its 8, and once its pods were back it took the
    load of 16 alone (found by an explore run of the random-operations
    fuzz)."""
    world = _at_half_under_load()
    served = world.twins["blue"].replicas + world.twins["green"].replicas
    assert world.state.requested_weight == 50 and served == 16
    world.pending = {"blue"}
    world.settle(CANARY)
    blue_green = spec(steps="25,50", strategy="blue-green")
    world.settle(blue_green)
    assert world.state.canary == "green" and world.observed().twins["green"].endpoints > 0
    world.source = replace(world.source, revision="r3")
    world.settle(blue_green)
    world.pending = set()
    world.settle(blue_green)
    assert world.selector.get(TWIN_LABEL) == "blue", world.selector
    assert world.twins["blue"].replicas >= served, world.twins


def test_a_switch_to_blue_green_mid_step_gives_the_stable_twin_what_both_served() -> None:
    """The canary leaves production when the strategy becomes blue-green:
    the stable twin takes all the load at once, as at a rollback. Its copy
    had sized it for its half (8 of 16 pods' worth); before, production
    moved onto those 8 until its HPA caught up."""
    world = _at_half_under_load()
    served = world.twins["blue"].replicas + world.twins["green"].replicas
    assert world.state.requested_weight == 50 and served == 16
    blue_green = spec(steps="25,50", strategy="blue-green")
    plan = world.step(blue_green)
    assert ScaleTwin("blue", served) in plan.actions, plan.actions
    world.settle(blue_green)
    assert world.selector.get(TWIN_LABEL) == "blue", world.selector
    assert world.twins["blue"].replicas == world.state.replicas == served, world.twins
    assert world.state.canary == "green" and world.twins["green"].replicas == served


def test_a_switch_to_blue_green_while_the_first_step_grows_takes_the_load_back() -> None:
    """The first step's weight raised (25 -> 60) while its new pods cannot
    start (nodes full): the canary serves on with its 3 pods beside the
    stable twin's 9, the step not in place yet (a `kubectl rollout restart`
    of the canary twin leaves it so too). On-call then switches to
    blue-green. _steps_edited returned early for a step not in place, so
    nothing took the load back, and production moved onto the stable twin's
    HPA share: 12 pods' load on 9 (found by review)."""
    world = autoscaled()
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    world.twins["green"] = replace(world.twins["green"], replica_set="r2-pods")
    world.autoscale(9)
    world.settle(CANARY)
    seen = world.observed()
    served = sum(t.endpoints for t in seen.twins.values())
    assert (world.state.step, served, seen.twins["green"].endpoints) == (0, 12, 3)
    world.stall(True)
    raised = spec(steps="60")
    world.step(raised, advance=1)
    assert world.state.step_ready == 0.0 and world.observed().twins["green"].endpoints == 3
    blue_green = spec(steps="60", strategy="blue-green")
    world.step(blue_green, advance=1)
    assert world.selector.get(TWIN_LABEL) == "blue", world.selector
    assert world.twins["blue"].replicas >= served, world.twins


def test_a_copy_removal_not_yet_observed_does_not_grow_the_stable_twin_again() -> None:
    """The team's HPA deleted mid-step (8 + 8 at 50 %): the cycle that
    removes the copy scales the stable twin to what both served (16). The
    next cycle may still see the copy: the HPA cache hears of the delete
    after the twin's own scale event that wakes the cycle, or a finalizer
    keeps the copy (deletionTimestamp set) for a while. The twin's size
    of 16 is then no longer its HPA's share, yet it was counted as one and
    the canary's share added on top again: 32, 64, 128 ... for each cycle
    the copy is still seen, with no maximum once the team's HPA is gone.
    (Before the twin was scaled in the removing cycle, follow_size took its
    live 8 back and the sum stayed 16.) Found by review."""
    world = _at_half_under_load()
    world.hpa = Autoscaler()
    world.step(CANARY, advance=1)
    assert not world.copies and world.twins["blue"].replicas == world.state.replicas == 16
    for _ in range(3):
        world.copies.add("blue")  # the delete accepted, not yet observed
        plan = world.step(CANARY, advance=1)
        assert world.twins["blue"].replicas == world.state.replicas == 16, plan.actions
    world.step(CANARY, advance=1)  # seen gone
    assert world.state.left_copy is None, world.state
    assert world.twins["blue"].replicas == world.state.replicas == 16, world.twins


def test_a_hand_back_whose_status_write_is_lost_grows_the_stable_twin_once() -> None:
    """The hand-back waits for a drained stable twin (8 + 8 at 50 %, its
    copy sizing it for its half): its first cycle scales the twin to what
    both served (16) and keeps that size in the status (handback_served).
    That status write lost (a Conflict with another writer of the Service,
    the lease lost, the process killed right after the scale), the next
    cycle read the twin's live 16 as its HPA's share and added the
    canary's on top again: 32, once per write lost, the runaway the field
    was added to stop. Found by review. The size is now marked on the twin
    in the scale's own write (HANDBACK_ANNOTATION) and taken up from there."""
    world = _at_half_under_load()
    world.pending = {"blue"}
    world.step(None, advance=5, cut_after=ScaleTwin)
    assert world.twins["blue"].replicas == 16 and world.state.handback_served == 0
    for _ in range(3):
        world.step(None, advance=5)
        assert world.twins["blue"].replicas == 16, world.twins
    # Taken up from the twin's mark, as if that write had landed: the HPA
    # resizing the twin now changes the size handed back no more.
    assert world.state.handback_served == 16, world.state


def test_a_strategy_removed_put_back_and_removed_again_grows_the_stable_twin_once() -> None:
    """8 + 8 served at 50 % (the stable twin's copy sizing it for its half),
    the stable twin drained: `canary.io/strategy` removed, and the hand-back
    grows the twin to what both served (16); put back (a revert, or two
    tools writing the Service's annotations at once), the managed cycle
    forgets that size (decide._as_read) but the twin keeps it and its copy:
    removed again, the hand-back read the grown 16 as the copy's share and
    added the canary's on top again, 32 (and the managed cycle after it,
    ending the rollout, 64): each flip doubles it, with no bound but the
    team HPA's maximum. Found by review. The twin's mark (HANDBACK_ANNOTATION)
    outlives the status's size until the HPA resizes the twin."""
    world = _at_half_under_load()
    world.pending = {"blue"}
    world.step(None, advance=5)
    assert world.twins["blue"].replicas == world.state.handback_served == 16
    world.step(CANARY, advance=5)
    world.step(None, advance=5)
    assert world.twins["blue"].replicas <= 16, world.twins


def test_a_hand_back_whose_mark_the_hpa_outdated_takes_the_live_size_as_its_share() -> None:
    """The twin grown (16) and marked so, the status write lost, then its
    HPA resized it (10) before the next cycle: that size is the HPA's share
    for the load again, and the mark, naming 16, is stale. The hand-back
    adds the canary's share to it, as it did before the mark existed; taken
    for a grown twin, the load of both twins would go onto the HPA's share."""
    world = _at_half_under_load()
    world.pending = {"blue"}
    world.step(None, advance=5, cut_after=ScaleTwin)
    assert world.twins["blue"].replicas == 16 and world.state.handback_served == 0
    world.autoscale(10)
    assert world.twins["blue"].handback_served == 16  # the mark, outdated
    world.step(None, advance=5)
    assert world.twins["blue"].replicas == 10 + canary_replicas(10, 50), world.twins


def test_a_strategy_flip_then_a_rollback_gives_the_grown_stable_twin_no_more() -> None:
    """Removed (the stable twin grown to 16, what 8 + 8 served), put back,
    and the rollout then rolled back while the HPA has not resized the twin
    yet: the rollback takes the load back onto a twin that already holds
    it. It took the grown 16 for the copy's share and added the canary's
    again (32; found by review with the flip-flop)."""
    world = _at_half_under_load()
    world.pending = {"blue"}
    world.step(None, advance=5)
    assert world.twins["blue"].replicas == 16
    world.pending = set()
    world.step(CANARY, advance=5)
    for _ in range(6):  # failures tolerated, then confirmed on the next scrape
        if world.state.canary is None:
            break
        world.step(CANARY, result(Verdict.FAIL), advance=10)
    assert world.state.canary is None and "RolledBack" in world.reasons(), world.state
    assert world.twins["blue"].replicas == world.state.replicas == 16, world.twins


def test_a_team_hpa_deleted_as_a_release_replaces_the_rollout_keeps_what_served() -> None:
    """8 + 8 served at 50 % when the team deleted its HPA, in the cycle that
    read a new release (r3) replacing r2: the replaced rollout takes the
    load back (16 on the stable twin), then _left_at, removing the copy,
    counted the new canary at the weight read (r2's 50 %) on top of those
    16 again: 32 pods for 16 pods' worth. What served is the state as read,
    both twins' shares then. Found by review."""
    world = _at_half_under_load()
    world.hpa = Autoscaler()
    world.source = replace(world.source, revision="r3")
    plan = world.step(CANARY, advance=1)
    assert world.state.canary_revision == "r3" and not world.copies
    assert world.twins["blue"].replicas == world.state.replicas == 16, plan.actions


def test_a_copy_removal_whose_status_write_is_lost_does_not_grow_the_stable_twin_again() -> None:
    """As above (the team's HPA deleted at 8 + 8 at 50 %, the stable twin
    scaled to what both served, 16, in the cycle that removes its copy),
    but that cycle is cut right after the scale: the status that noted the
    removed copy (State.left_copy) is not written (a Conflict, the lease
    lost, a kill). A next cycle that still sees the copy took the twin's 16
    for the copy's share and added the canary's on top again (32). The size
    is marked on the twin in the scale's own write, as a hand-back's is."""
    world = _at_half_under_load()
    world.hpa = Autoscaler()
    world.step(CANARY, advance=1, cut_after=ScaleTwin)
    assert world.twins["blue"].replicas == 16 and world.state.left_copy is None, world.state
    for _ in range(3):
        world.copies.add("blue")  # the delete accepted, not yet observed
        plan = world.step(CANARY, advance=1)
        assert world.twins["blue"].replicas == 16, plan.actions
    world.step(CANARY, advance=1)  # seen gone
    assert world.twins["blue"].replicas == world.state.replicas == 16, world.twins
