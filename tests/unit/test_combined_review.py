"""Where today's merged fixes meet (the Degraded message and the rollout's
line beneath it, the caps on a window, the claim of an autoscaled app),
found by an adversarial review of the combined change; each test failed
before its fix."""

from __future__ import annotations

from dataclasses import replace

from analysis.verdicts import Verdict
from canary.decide import decide, phase
from canary.model import Emit, Phase
from canary.spec import TWIN_LABEL
from tests.unit.test_oncall_bad_night import (
    CANARY,
    halted_on_errors,
    serving_canary,
    stable_short,
)
from tests.unit.world import World, result, spec, with_twin

BG = spec(strategy="blue-green")


def test_a_halted_probe_line_loses_the_degradation_once_the_pod_is_back() -> None:
    """Halted on Prometheus errors (its probe's line kept between probes),
    then a stable pod lost and back. The probe's line is kept while
    Degraded because it is found beneath the degradation; the cycle that saw
    the pod back kept the whole message, so the Halted status read
    "degraded: 2/3 pods of the blue twin (stable) ready | halted: ..." until
    the next probe (an interval later), for a pod that serves."""
    world = serving_canary()
    probed = halted_on_errors(world)
    stable_short(world)
    stable_short(world)
    assert world.state.message.startswith("degraded: "), world.state.message
    world.step(CANARY, advance=1)  # the pod is back; no probe due yet
    assert phase(CANARY, world.state) is Phase.HALTED
    assert world.state.message == probed, world.state.message


def test_a_blue_green_promotion_is_not_degraded_while_the_service_lists_the_new_twin() -> None:
    """The flip's own cycle observes the Service before it (the promoted
    twin behind the preview only), and the next one may find its
    EndpointSlices not yet updated (the selector write wakes it at once):
    the promoted twin has its 3 ready pods, no endpoint under the Service
    yet. The old twin kept for an abort (it stays while the promoted twin
    has no pod that serves) said so as a degradation: every blue-green
    promotion raised a Degraded Warning ("users may see failures") and a
    Recovered a moment later."""
    world = World().adopted(BG)
    world.source = replace(world.source, revision="r2")
    world.settle(BG)
    assert world.preview == {"app": "web", TWIN_LABEL: "green"}
    for _ in range(6):
        world.step(BG, result(Verdict.PASS), advance=10)
        if world.state.stable == "green":
            break
    assert world.selector == {"app": "web", TWIN_LABEL: "green"}
    assert world.state.scale_down == "blue" and not world.state.degraded, world.state.degraded
    lagging = with_twin(world.observed(), "green", endpoints=0)  # slices not updated yet
    plan = decide(BG, world.state, lagging, None, world.now + 0.1)
    assert not plan.state.degraded, plan.state.degraded
    told = world.reasons() + [e.reason for e in plan.actions if isinstance(e, Emit)]
    assert "Degraded" not in told, told
