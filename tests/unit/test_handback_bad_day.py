"""Hand-backs on a bad day (found by review of the blue-green and hand-back
paths; each test failed on the code before its fix): a stable twin gone,
a hand-back right after a flip, a Service recreated without annotations
while the Deployment is away, a recreated source still running the
revision set back."""

from __future__ import annotations

from dataclasses import replace

from analysis.verdicts import Verdict
from canary import handback
from canary.decide import decide
from canary.model import (
    ApplyTwin,
    Color,
    DeleteTwins,
    Observed,
    ScaleSource,
    ScaleTwin,
    SetSelector,
    Source,
    Twin,
)
from canary.observe import source_of
from canary.spec import TWIN_LABEL
from tests.unit.test_blue_green_bad_day import BG, previewing
from tests.unit.world import World, result, spec

CANARY = spec(steps="25,50")


def promoted() -> World:
    world = previewing()
    world.step(BG, result(Verdict.PASS), advance=10)
    world.settle(BG)
    assert world.state.stable == "green" and world.state.scale_down == "blue", world.state
    assert world.selector == {"app": "web", TWIN_LABEL: "green"}
    return world


# -- 1. hand-back while the stable twin is gone -------------------------------------------


def test_a_hand_back_while_the_stable_twin_is_gone_never_leaves_the_app_at_zero() -> None:
    # The stable twin is deleted by hand, and before the controller puts it
    # back (or while it is down) the team removes canary.io/strategy. Before:
    # the hand-back "finished" at once, leaving the source at the 0 it was
    # kept at, and Released saying "3 replicas".
    world = World().adopted(BG)
    world.source = replace(world.source, ready=0)  # kept at 0 while managed
    del world.twins["blue"]
    plan = world.step(None, advance=1)
    assert not world.released and not any(isinstance(a, DeleteTwins) for a in plan.actions)
    assert world.source.replicas == 3 and not world.source.gated
    world.step(None, advance=1)
    assert not world.released  # its pods are not ready yet
    world.source = replace(world.source, ready=3)
    world.step(None, advance=1)
    assert world.released and world.selector == {"app": "web"}


def test_a_hand_back_without_the_stable_twin_never_serves_the_revision_in_flight() -> None:
    # Mid blue-green rollout of r2 (never promoted) the stable twin is gone
    # when management is removed. The source holds r2: scaled up as it was,
    # it would take all the traffic. The stable twin is put back first, from
    # the history, and the hand-back goes through it (source set back to r1).
    world = previewing()
    del world.twins["blue"]
    plan = world.step(None, advance=1)
    assert ApplyTwin("blue", "r1", 3) in plan.actions, plan.actions
    assert not any(isinstance(a, ScaleSource) for a in plan.actions)
    for _ in range(10):
        plan = world.step(None, advance=1)
        scaled = [a for a in plan.actions if isinstance(a, ScaleSource) and a.replicas > 0]
        assert not scaled or world.source.revision != "r2", "r2 scaled up to serve"
        world.source = replace(world.source, ready=world.source.replicas)
        if world.released:
            break
    assert world.released and world.source.revision == "restored-blue", world.source
    assert any(e.reason == "SourceRestored" for e in world.events)


# -- 2. hand-back right after a flip, before the EndpointSlice follows -------------------


def _lagging(world: World, old: Color, new: Color) -> Observed:
    """What is observed a moment after the selector moved from `old` to
    `new`: the Service's EndpointSlice still lists only the old twin's pods."""
    observed = world.observed()
    twins = dict(observed.twins)
    twins[old] = replace(twins[old], endpoints=twins[old].replicas)
    twins[new] = replace(twins[new], endpoints=0)
    return replace(observed, twins=twins)


def test_a_hand_back_right_after_a_promotion_waits_for_the_endpoints_to_leave_the_old_twin() -> (
    None
):
    # decide._scale_down_idle never scales the idle twin down while the
    # Service's endpoints are still its pods (the EndpointSlice has not
    # followed the selector yet): it would leave the Service empty. The
    # hand-back scales it to 0 in the same situation.
    world = promoted()
    observed = _lagging(world, old="blue", new="green")
    plan = decide(None, world.state, observed, None, world.now + 0.1)
    assert ScaleTwin("blue", 0) not in plan.actions, plan.actions


def test_a_hand_back_right_after_an_abort_flip_back_waits_for_the_endpoints() -> None:
    world = promoted()
    world.action = "abort"
    world.step(BG, advance=1)
    assert world.state.stable == "blue" and world.selector[TWIN_LABEL] == "blue"
    observed = _lagging(world, old="green", new="blue")
    plan = decide(None, world.state, observed, None, world.now + 0.1)
    # green's pods are the only endpoints the Service has this instant.
    assert ScaleTwin("green", 0) not in plan.actions, plan.actions


# -- 3. orphan: Service recreated without annotations, Deployment gone --------------------


def test_an_orphan_whose_service_still_serves_from_the_twins_keeps_them() -> None:
    # The Service was recreated without canary annotations (to stop using
    # canary) while the team's Deployment is being replaced or was deleted.
    # The recreated Service selects app=web: the twins' pods are its only
    # ready endpoints. handback.orphan deletes them ("Service and Deployment
    # are both gone") although the Service exists and serves from them.
    world = World().adopted(BG)
    world.source = Source()  # the Deployment is gone
    world.selector = {"app": "web"}  # the recreated Service, no annotations
    observed = world.observed()
    # (the real observe() always has both colours; World only those it holds)
    # The recreated Service's EndpointSlice lists the twin's pods.
    blue = replace(observed.twins["blue"], endpoints=3)
    observed = replace(observed, twins={"blue": blue, "green": Twin()}, endpoints=3)
    assert observed.endpoints == 3
    plan = handback.orphan(observed, missing_for=60.0)
    assert not any(isinstance(a, DeleteTwins) for a in plan.actions), plan.actions
    assert not plan.release
    # Deleted too (no endpoint left): the twins go, as before.
    gone = replace(observed, twins={"blue": replace(blue, endpoints=0), "green": Twin()})
    assert DeleteTwins() in handback.orphan(gone, missing_for=60.0).actions


# -- 4. hand-back onto a recreated source whose ready pods are another revision -----------


def test_a_source_mid_rollout_counts_no_ready_pod_of_its_template() -> None:
    # Hand-back onto a Deployment recreated from the manifest (r2, unanalysed,
    # 3 ready pods): the hand-back sets its template back to r1. Until the
    # Deployment controller has replaced the pods, readyReplicas still counts
    # the 3 r2 pods, and the next cycle took them for r1's, pointed the
    # Service at them and deleted the twins: r2 served production.
    def deployment(**status: int) -> dict[str, object]:
        return {
            "metadata": {"name": "web", "namespace": "ns", "generation": 2},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}},
            },
            "status": status,
        }

    lookup = lambda kind, name: None  # noqa: E731
    # Our write not yet seen by the Deployment controller.
    stale = deployment(observedGeneration=1, replicas=3, updatedReplicas=3, readyReplicas=3)
    assert source_of(stale, lookup)[0].ready == 0
    # Seen, rolling: the old pods are still the ready ones.
    rolling = deployment(observedGeneration=2, replicas=4, updatedReplicas=1, readyReplicas=3)
    assert source_of(rolling, lookup)[0].ready == 0
    done = deployment(observedGeneration=2, replicas=3, updatedReplicas=3, readyReplicas=3)
    assert source_of(done, lookup)[0].ready == 3


def test_an_orphan_waiting_on_endpoints_does_not_spin_every_second() -> None:
    # A recreated Service that selects both twins, the stable twin's pods all
    # unready: nothing will move the endpoints, so the wait leans on the
    # EndpointSlice's watch events, not a wake-up every second.
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    stable, canary = world.state.stable, world.state.canary
    assert stable and canary
    observed = world.observed()
    twins = dict(observed.twins)
    twins[stable] = replace(twins[stable], ready=0, endpoints=0)
    twins[canary] = replace(twins[canary], endpoints=twins[canary].replicas)
    observed = replace(observed, twins=twins, selector={"app": "web"})
    plan = handback.orphan(observed, missing_for=60.0)
    assert ScaleTwin(canary, 0) not in plan.actions  # its pods are all the Service has
    assert plan.requeue_after is None or plan.requeue_after >= 5.0, plan.requeue_after


def test_a_hand_back_mid_rollout_with_the_stable_twin_at_zero_brings_it_back_first() -> None:
    # Someone scaled the stable twin to 0 mid-rollout (the canary serves
    # alone), then management is removed: the stable twin is scaled back and
    # takes the Service only once a pod of it is ready.
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    stable = world.state.stable
    assert stable is not None and world.state.canary is not None
    world.twins[stable] = replace(world.twins[stable], replicas=0)
    world.ready = False
    plan = world.step(None, advance=1)
    assert ScaleTwin(stable, 3) in plan.actions, plan.actions
    assert not any(isinstance(a, SetSelector) for a in plan.actions)
    world.ready = True
    world.step(None, advance=1)
    assert world.selector.get(TWIN_LABEL) == stable


# -- 7. canary.io/strategy removed mid-rollout and put back ------------------------------


def test_strategy_put_back_mid_hand_back_rolls_nothing_out_of_the_template_set_back() -> None:
    # r2 serves its 25 % step; on-call removes canary.io/strategy, sees the
    # hand-back begin (the canary out, the source's template set back to the
    # stable twin's) and puts the annotation back. The source now runs the
    # stable twin's pods under another hash: as in the steady state, nothing
    # is to roll out. Before, the rollout in flight took it for a new
    # release: r2 recorded superseded by it and the serving pods' own
    # template rolled out through every step as a canary.
    world = World().adopted(CANARY)
    world.source = replace(
        world.source, revision="r2", template={"metadata": {"annotations": {"rev": "r2"}}}
    )
    world.settle(CANARY)
    assert world.state.canary_revision == "r2" and world.state.step_ready
    world.step(None, advance=1)
    assert world.source.revision == "restored-blue" and "blue" in world.observed().source.same_as
    world.events.clear()
    world.step(CANARY, advance=1)
    world.settle(CANARY)
    assert world.state.canary is None, world.state
    assert "RolloutStarted" not in world.reasons(), world.events
    assert world.state.stable_revision == "r1" and world.selector[TWIN_LABEL] == "blue"
    assert world.twins["green"].replicas == 0
