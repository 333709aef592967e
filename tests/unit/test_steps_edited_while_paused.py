"""`canary.io/steps` edited while the rollout is paused: the canary keeps
the weight it serves until it moves again (StepsChanged then), and the
pause's own bookkeeping must hold that weight, not the edited step's."""

from __future__ import annotations

from dataclasses import replace

import pytest

from analysis.verdicts import Verdict
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


def test_the_status_of_a_pause_holding_an_edit_says_what_serves() -> None:
    # Before: "paused at step 3/2", a step that no longer exists.
    world = at_step_three()
    world.action = "pause t1"
    world.step(FOUR, advance=1)
    world.step(spec(steps="25,50"), advance=1)
    said = world.state.message
    assert "3/2" not in said and "30%" in said and "25,50" in said, said
