"""An HPA left on a twin (`kubectl autoscale deployment web-blue` under a
load spike, followed as the app's size while that twin served): after the
promotion that twin is idle at 0, where an HPA does nothing; the next
rollout makes it the canary and scales it up, and the HPA wakes and sizes
it against the step. Before, a 25 % step ran at the HPA's size: the
unanalysed release took most of the traffic, and every scale of ours was
fought until the write guard stopped ours."""

from __future__ import annotations

from dataclasses import replace

from analysis.verdicts import Verdict
from canary.model import ApplyTwin, Autoscaler, Checked, ScaleTwin, SetSelector
from canary.spec import TWIN_LABEL
from tests.unit.world import World, result, spec

CANARY = spec(steps="25,50")


def test_a_release_waits_while_an_hpa_targets_the_twin_it_would_roll_out_on() -> None:
    world = World().adopted(CANARY)
    world.hpa = Autoscaler(on_twins=(("green", "oncall"),))
    world.source = replace(world.source, revision="r2")
    plan = world.step(CANARY, advance=1)
    assert not any(isinstance(a, ApplyTwin) for a in plan.actions)
    assert world.state.canary is None and world.selector.get(TWIN_LABEL) == "blue"
    told = [e for e in world.events if e.reason == "RolloutPaused"]
    assert told and told[0].warning and "HPA oncall targets the green twin" in told[0].message
    world.step(CANARY, advance=30)
    assert len([e for e in world.events if e.reason == "RolloutPaused"]) == 1
    assert "waits: HPA oncall" in world.state.message
    world.source = replace(world.source, revision="r1")  # reverted; then released again
    world.step(CANARY, advance=1)
    world.source = replace(world.source, revision="r3")
    world.step(CANARY, advance=1)
    assert len([e for e in world.events if e.reason == "RolloutPaused"]) == 2
    world.hpa = Autoscaler()  # deleted, or pointed at deployment/web
    world.settle(CANARY)
    assert world.state.canary == "green" and world.state.canary_revision == "r3"
    assert not world.state.source_paused


def test_an_hpa_on_the_canary_mid_step_takes_it_out_of_the_service_with_no_fight() -> None:
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    assert world.state.canary == "green" and world.selector.get(TWIN_LABEL) is None
    world.hpa = Autoscaler(on_twins=(("green", "oncall"),))
    world.twins["green"] = replace(world.twins["green"], replicas=6, scaled_by="hpa")
    for _ in range(3):
        plan = world.step(CANARY, result(Verdict.PASS), advance=10)
        assert not any(isinstance(a, ScaleTwin) and a.color == "green" for a in plan.actions)
        assert world.selector.get(TWIN_LABEL) == "blue", plan.actions
    assert world.state.step == 0 and world.state.effective_weight == 0.0
    told = [e for e in world.events if e.reason == "RolloutPaused"]
    assert len(told) == 1 and told[0].warning and "out of the Service" in told[0].message
    world.hpa = Autoscaler()
    world.step(CANARY, advance=1)
    world.settle(CANARY)
    assert world.twins["green"].replicas == 1 and world.selector.get(TWIN_LABEL) is None
    assert "RolloutResumed" in world.reasons() and not world.state.source_paused


def test_an_hpa_hold_at_the_pre_promotion_gate_does_not_promote_on_the_pass_before_it() -> None:
    """The hold takes the canary out of the Service and, once the HPA goes,
    says "its step analysed afresh" (step_ready/checked cleared), but
    gate_wait stays: the gate opening promotes on the pass from before the
    hold, the canary having served nothing since at the HPA's size. (A
    `retry` clears gate_wait for this very reason: manual.py.)"""
    from tests.unit.test_decide import answer, at_the_pre_promotion_gate

    gate_spec, world = at_the_pre_promotion_gate()
    assert world.state.gate_wait == "pre-promotion"
    world.gate = answer("pre-promotion", False)
    world.step(gate_spec)
    world.gate = None
    world.hpa = Autoscaler(on_twins=(("green", "oncall"),))
    world.step(gate_spec, advance=10)
    assert world.selector.get(TWIN_LABEL) == "blue" and world.state.source_paused
    world.hpa = Autoscaler()
    world.step(gate_spec, advance=600)
    assert "RolloutResumed" in world.reasons()
    resumed_at = world.now
    world.gate = answer("pre-promotion", True)
    world.step(gate_spec, Checked("fast", result(Verdict.PASS), world.now + 10), advance=10)
    world.settle(gate_spec)
    if world.state.stable == "green":
        raise AssertionError(
            f"promoted {world.now - resumed_at:.0f}s after the hold, on no check since: "
            f"{world.reasons()}"
        )


def test_leaving_an_hpa_hold_does_not_put_the_hpa_sized_canary_back_in_the_service() -> None:
    """Resumed at step 2 (canary_pods known), placement._placed keeps the canary in
    (`keep`) with no size check: the same plan scales it down from the HPA's
    size and points the Service at both twins. The two writes race in the
    cluster (EndpointSlices for the new selector vs. the ReplicaSet's
    deletions): the HPA's 8 pods serve next to the stable's 3 meanwhile."""
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    world.twins["green"] = replace(world.twins["green"], replica_set="web-green-abc")
    world.step(CANARY, result(Verdict.PASS), advance=11)
    world.twins["green"] = replace(world.twins["green"], replica_set="web-green-abc")
    world.settle(CANARY)
    assert world.state.step == 1 and world.state.canary_pods
    world.hpa = Autoscaler(on_twins=(("green", "oncall"),))
    world.twins["green"] = replace(world.twins["green"], replicas=8, scaled_by="hpa")
    world.step(CANARY, advance=10)
    assert world.selector.get(TWIN_LABEL) == "blue"
    world.hpa = Autoscaler()
    plan = world.step(CANARY, advance=10)
    shrinks = any(isinstance(a, ScaleTwin) and a.color == "green" for a in plan.actions)
    back_in = any(isinstance(a, SetSelector) and TWIN_LABEL not in a.selector for a in plan.actions)
    assert not (shrinks and back_in), plan.actions
