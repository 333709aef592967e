"""A rollout switched to blue-green while it stands still, then its
annotations turn invalid (a GitOps commit breaks one). Each test failed on
the code before its fix."""

from __future__ import annotations

from dataclasses import replace

import pytest

from canary.spec import SpecError
from tests.unit.test_manual_actions import CANARY, selects, serving_canary
from tests.unit.world import spec


@pytest.mark.parametrize("held_by", ["pause", "annotation", "halt"])
def test_an_invalid_spec_after_a_switch_to_blue_green_keeps_the_preview_as_it_is(
    held_by: str,
) -> None:
    """r2 served a 25 % canary step; on-call paused it (or it halted),
    switched the strategy to blue-green: the canary went out of the Service
    and grew to the app's size as the preview. Then the annotations turned
    invalid. Before, the invalid path held the canary at the step's weight
    it no longer has (its requested weight left at 25): the preview was cut
    to a quarter of its pods and put back in the Service beside the stable
    twin, serving production a release switched out of it."""
    world = serving_canary(CANARY)
    held = CANARY
    if held_by == "pause":
        world.action = "pause t1"
        world.step(CANARY, advance=1)
    elif held_by == "annotation":
        held = spec(steps="25,50", paused="true")
    else:
        world.state = replace(world.state, halted="no data", halt_kind="no-data")
    switched = spec(steps="25,50", strategy="blue-green", paused=str(held is not CANARY))
    world.step(switched, advance=1)
    world.settle(switched)
    preview = world.twins["green"].replicas
    assert preview == world.twins["blue"].replicas and not selects(world, "r2")
    invalid = SpecError("canary.io/steps", "x: not a list of percentages")
    for _ in range(3):
        world.step(invalid, advance=1)
    assert world.twins["green"].replicas == preview, world.twins
    assert not selects(world, "r2"), (world.selector, world.reasons())
