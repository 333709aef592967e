"""What on-call reads at 3 a.m. when more than one thing is wrong (the
status, `canary status`, /metrics), found by an adversarial review; each
test failed before its fix."""

from __future__ import annotations

from dataclasses import replace

from analysis.verdicts import Verdict
from canary import oncall
from canary.decide import decide, phase
from canary.model import Phase, Plan
from tests.unit.world import World, result, spec

CANARY = spec(steps="25,50")


def serving_canary() -> World:
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    assert world.state.canary == "green" and world.state.step_ready
    return world


def stable_short(world: World, advance: float = 1.0) -> Plan:
    """One cycle in which the stable twin has one ready pod fewer than the
    app's size (a drain evicted it, and no node fits it yet)."""
    world.now += advance
    observed = world.observed()
    blue = observed.twins["blue"]
    short = replace(blue, ready=blue.ready - 1, endpoints=blue.endpoints - 1)
    plan = decide(
        CANARY,
        world.state,
        replace(observed, twins={**observed.twins, "blue": short}),
        None,
        world.now,
    )
    world.state = plan.state
    return plan


# -- 1. a halted rollout whose stable twin then loses a pod ----------------------------------


def test_a_halted_rollout_still_says_it_waits_for_a_person_while_degraded() -> None:
    """Halted on no data (the canary in production, waiting for `canary
    promote`, `abort` or `retry`), then a drain takes a stable pod. Degraded
    wins the phase, and its reason replaced the status message: `canary
    status` read "Degraded ... degraded: 2/3 pods of the blue twin (stable)
    ready", which clears by itself, and nothing said the rollout waits for a
    person (the CanaryRolloutHalted alert resolves at the same moment)."""
    world = serving_canary()
    for _ in range(CANARY.analysis.no_data_limit + 2):
        world.step(CANARY, result(Verdict.NO_DATA), advance=10)
    assert phase(CANARY, world.state) is Phase.HALTED
    halted = world.state.message
    assert halted.startswith("halted: "), halted
    for _ in range(3):  # said the same way cycle after cycle, never nested
        stable_short(world)
        assert phase(CANARY, world.state) is Phase.DEGRADED
        message = world.state.message
        assert message.startswith("degraded: 2/3 pods of the blue twin (stable) ready"), message
        assert halted in message and message.count("degraded:") == 1, message
    row = oncall.status_text(
        [{"namespace": "ns", "service": "web", **world.state.to_json(), "phase": "Degraded"}],
        color=False,
    )
    assert "canary promote" in row, row
    world.step(CANARY, advance=1)  # the pod is back
    assert phase(CANARY, world.state) is Phase.HALTED
    assert "degraded" not in world.state.message, world.state.message
