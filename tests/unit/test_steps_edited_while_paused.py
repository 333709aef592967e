"""`canary.io/steps` edited while the rollout is paused: the canary keeps
the weight it serves until it moves again (StepsChanged then), and the
pause's own bookkeeping must hold that weight, not the edited step's."""

from __future__ import annotations

from dataclasses import replace

import pytest

from analysis.verdicts import Verdict
from canary.model import Autoscaler
from tests.unit.test_decide import serving_canary
from tests.unit.world import World, result, spec

FOUR = spec(steps="10,20,30,40")


def at_step_three() -> World:
    world = serving_canary(FOUR)
    for _ in range(2):
        world.step(FOUR, result(Verdict.PASS), advance=10)
        world.settle(FOUR)
    assert world.state.step == 2 and world.state.requested_weight == 30
    return world


@pytest.mark.parametrize("paused_by", ["action", "annotation", "kubectl"])
def test_steps_cut_below_the_step_in_flight_while_paused_hold_its_weight(paused_by: str) -> None:
    # On-call pauses at step 3 of 4 and cuts the steps to finish sooner
    # ("25,50"). Before: an IndexError at every cycle (ReconcileFailed), so
    # nothing looked at the canary or took a resume; a stuck Service.
    world = at_step_three()
    edited = spec(steps="25,50")
    if paused_by == "action":
        world.action = "pause t1"
        world.step(FOUR, advance=1)
    elif paused_by == "annotation":
        edited = spec(steps="25,50", paused="true")
    else:
        world.source = replace(world.source, paused=True, paused_by="kubectl-rollout")
    for _ in range(3):
        world.step(edited, advance=5)
    assert world.state.canary == "green" and world.state.requested_weight == 30
    assert not world.state.unready_since, "the canary lost no pod: it holds its 30 %"
    # Moving again, the edit applies: the last step there is, judged afresh.
    if paused_by == "action":
        world.action = "resume t2"
    elif paused_by == "annotation":
        edited = spec(steps="25,50")
    else:
        world.source = replace(world.source, paused=False, paused_by="")
    world.step(edited, advance=1)
    world.settle(edited)
    assert "StepsChanged" in world.reasons()
    assert world.state.step == 1 and world.state.requested_weight == 50


def test_a_weight_edited_while_paused_is_no_pod_lost() -> None:
    # Paused at 50 % of "25,50", the last step edited to 90 %: the canary
    # holds its 50 % until resumed. Before, measured against 90 % while
    # paused, it read as a canary that had lost pods (unready_since).
    world = serving_canary(spec(steps="25,50"))
    world.step(spec(steps="25,50"), result(Verdict.PASS), advance=10)
    world.settle(spec(steps="25,50"))
    world.action = "pause t1"
    world.step(spec(steps="25,50"), advance=1)
    edited = spec(steps="25,90")
    for _ in range(3):
        world.step(edited, advance=5)
    assert world.state.requested_weight == 50 and not world.state.unready_since


@pytest.mark.parametrize(
    ("steps", "shown"),
    [
        # Before: "paused at step 3/2", a step that no longer exists.
        ("25,50", ("30%", "25,50")),
        # The held step's weight edited (30 -> 35 %), the number of steps
        # kept: "paused at step 3/4" read as the edited 35 % serving.
        ("10,20,35,40", ("30%", "10,20,35,40")),
    ],
)
def test_the_status_of_a_pause_holding_an_edit_says_what_serves(
    steps: str, shown: tuple[str, str]
) -> None:
    world = at_step_three()
    world.action = "pause t1"
    world.step(FOUR, advance=1)
    world.step(spec(steps=steps), advance=1)
    said = world.state.message
    assert "3/2" not in said and all(part in said for part in shown), said


@pytest.mark.parametrize("held_by", ["kubectl", "hpa"])
def test_steps_edited_under_a_hold_of_the_deployments_apply_only_once_it_lifts(
    held_by: str,
) -> None:
    # `kubectl rollout pause` (or an HPA put on the canary twin) holds the
    # rollout at step 3 of 4 as on-call edits the steps: the step that
    # served stays served (looked at meanwhile) and the edit waits. Applied
    # at once, the step was forgotten (step_ready cleared) while nothing
    # could place it anew: no look at the canary until the hold was lifted.
    world = at_step_three()
    edited = spec(steps="10,20,35,40")  # the step in flight: 30 -> 35 %
    if held_by == "kubectl":
        world.source = replace(world.source, paused=True, paused_by="kubectl-rollout")
    else:
        world.hpa = Autoscaler(on_twins=(("green", "oncall"),))
    world.events.clear()
    for _ in range(3):
        world.step(edited, advance=5)
        assert "StepsChanged" not in world.reasons(), world.state.message
        assert world.state.step_ready, world.state.message


def test_a_pause_before_the_step_served_says_only_the_step() -> None:
    # Paused while the first step's pods still come up, the steps edited:
    # no step is held at a weight yet, none is named "as before the steps
    # were edited".
    world = World().adopted(FOUR)
    world.source = replace(world.source, revision="r2")
    world.stall(True)
    world.step(FOUR, advance=1)
    world.action = "pause t1"
    world.step(FOUR, advance=1)
    world.step(spec(steps="25,50"), advance=1)  # and the steps edited meanwhile
    assert not world.state.step_ready and world.state.canary == "green", world.state
    said = world.state.message
    assert "paused at step 1/2" in said and "before the steps" not in said, said
