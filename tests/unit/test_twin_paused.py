"""On-call runs `kubectl rollout pause deployment/web-green` on the twin
whose pods misbehave, meaning to stop the rollout (as they would pause an
Argo Rollout). Before, nothing held: the canary went on growing (a paused
Deployment still scales) and was promoted; and a release onto a paused
idle twin waited for pods that never came (a paused Deployment never rolls
a new template out) until its progress deadline rolled it back, with
nothing saying why. Now a paused twin holds the rollout as a paused team
Deployment does, and says which Deployment to resume."""

from __future__ import annotations

from dataclasses import replace

from analysis.verdicts import Verdict
from canary.model import Twin
from tests.unit.world import World, result, spec

CANARY = spec(steps="25,50")


def serving_canary() -> World:
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    assert world.state.canary == "green" and world.state.step_ready
    return world


def test_a_paused_canary_twin_holds_the_rollout_until_resumed() -> None:
    world = serving_canary()
    world.twins["green"] = replace(world.twins["green"], paused_by="kubectl-rollout")
    for _ in range(5):
        world.step(CANARY, result(Verdict.PASS), advance=15)
    assert world.state.canary == "green" and world.state.step == 0, world.reasons()
    assert world.state.message == "paused: Deployment web-green is paused by kubectl-rollout"
    paused = [e.message for e in world.events if e.reason == "RolloutPaused"]
    assert len(paused) == 1 and "web-green" in paused[0]
    assert "Promoted" not in world.reasons() and "StepAdvanced" not in world.reasons()
    world.twins["green"] = replace(world.twins["green"], paused_by="")
    world.step(CANARY, advance=1)
    assert "RolloutResumed" in world.reasons()
    world.settle(CANARY)
    for _ in range(4):
        world.step(CANARY, result(Verdict.PASS), advance=15)
        world.settle(CANARY)
    assert world.state.stable == "green" and "Promoted" in world.reasons(), world.reasons()


def test_a_release_onto_a_paused_idle_twin_waits_and_says_which_to_resume() -> None:
    world = World().adopted(CANARY)
    # The twin a promotion left idle, at 0, paused by hand since.
    world.twins["green"] = Twin(
        exists=True, revision="r0", replicas=0, service="web", paused_by="kubectl-rollout"
    )
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    assert world.state.canary is None
    assert "Deployment web-green is paused" in world.state.message, world.state.message
