"""Where today's merged fixes meet (the Degraded message and the rollout's
line beneath it, the caps on a window, the claim of an autoscaled app),
found by an adversarial review of the combined change; each test failed
before its fix."""

from __future__ import annotations

from analysis.verdicts import Verdict
from canary.decide import decide, phase
from canary.model import Checked, Phase
from tests.unit.test_oncall_bad_night import CANARY, serving_canary, stable_short
from tests.unit.world import result


def test_a_halted_probe_line_loses_the_degradation_once_the_pod_is_back() -> None:
    """Halted on Prometheus errors (its probe's line kept between probes),
    then a stable pod lost and back. The probe's line is kept while
    Degraded because it is found beneath the degradation; the cycle that saw
    the pod back kept the whole message, so the Halted status read
    "degraded: 2/3 pods of the blue twin (stable) ready | halted: ..." until
    the next probe (an interval later), for a pod that serves."""
    world = serving_canary()
    for _ in range(CANARY.analysis.error_limit + 1):
        world.step(CANARY, result(Verdict.ERROR, "Prometheus unavailable"), advance=10)
    assert world.state.halt_kind == "errors"
    world.now += 10
    probe = Checked("probe", result(Verdict.ERROR, "503 from Prometheus"), world.now)
    world.state = decide(CANARY, world.state, world.observed(), probe, world.now).state
    probed = world.state.message
    stable_short(world)
    stable_short(world)
    assert world.state.message.startswith("degraded: "), world.state.message
    world.step(CANARY, advance=1)  # the pod is back; no probe due yet
    assert phase(CANARY, world.state) is Phase.HALTED
    assert world.state.message == probed, world.state.message
