"""The promoted twin's pods stop serving within scale-down-delay (a crash a
minute into real traffic, a liveness probe failing after warm-up, pods
evicted): the old twin kept for the abort is then the only one with pods
that can serve. Found by review; the test failed before the fix: at the
end of the delay it was scaled to 0 all the same, and the abort that
would have put production back on it at once was gone with it."""

from __future__ import annotations

from analysis.verdicts import Verdict
from canary.decide import decide
from canary.spec import TWIN_LABEL
from tests.unit.test_decide import CANARY, serving_canary
from tests.unit.world import World, result, with_twin


def _promoted() -> World:
    world = serving_canary(CANARY)
    world.step(CANARY, result(Verdict.PASS), advance=10)
    world.settle(CANARY)
    world.step(CANARY, result(Verdict.PASS), advance=10)
    assert world.selector == {"app": "web", TWIN_LABEL: "green"}
    assert world.state.scale_down == "blue" and world.twins["blue"].replicas == 3
    return world


def test_the_old_twin_stays_while_the_promoted_one_has_no_pod_that_serves() -> None:
    world = _promoted()
    world.pending = {"green"}  # every promoted pod crash-loops
    world.step(CANARY, advance=CANARY.scale_down_delay + 1)
    assert world.twins["blue"].replicas == 3, world.twins["blue"]
    assert world.state.scale_down == "blue"
    assert "blue" in world.state.message and "abort" in world.state.message, world.state.message
    world.step(CANARY, advance=60)
    assert world.twins["blue"].replicas == 3
    # The abort on-call runs then still flips back, at once.
    world.action = "abort 1"
    world.step(CANARY, advance=1)
    assert world.selector == {"app": "web", TWIN_LABEL: "blue"}
    assert world.state.stable == "blue" and world.state.failed_revision == "r2"


def test_once_a_promoted_pod_serves_again_the_old_twin_goes() -> None:
    world = _promoted()
    world.pending = {"green"}
    world.step(CANARY, advance=CANARY.scale_down_delay + 1)
    assert world.twins["blue"].replicas == 3
    world.pending = set()
    world.step(CANARY, advance=1)
    assert world.twins["blue"].replicas == 0
    assert world.state.scale_down is None


def test_the_kept_old_twin_is_told_the_same_as_its_pods_come_and_go() -> None:
    """`degraded` is written as soon as it changes (not paced): a count of
    the old twin's ready pods in it made each of them turning ready or not a
    status write while the promoted twin could not serve."""
    world = _promoted()
    world.pending = {"green"}
    world.step(CANARY, advance=CANARY.scale_down_delay + 1)
    told = world.state.degraded
    assert "blue twin" in told and "stays up" in told, told
    for ready in (2, 1, 3):
        world.now += 1
        observed = with_twin(world.observed(), "blue", ready=ready)
        world.state = decide(CANARY, world.state, observed, None, world.now).state
        assert world.state.degraded == told, world.state.degraded
