"""Interactions between the day's fixes (review n): each test failed on
the code before its fix."""

from __future__ import annotations

from dataclasses import replace

from analysis.verdicts import Verdict
from canary.spec import TWIN_LABEL
from tests.unit.world import World, result, spec


def test_a_history_lost_within_the_abort_window_does_not_lengthen_it() -> None:
    # The history deleted 50 s into a 60 s window: the next cycle records
    # the serving revision again ('adopted', ended then). That end is not
    # the promotion's, and the window must not be taken from it (it was:
    # the old twin stayed up 50 s longer than scale-down-delay says).
    delay = spec(strategy="blue-green", scale_down_delay="60s")
    world = World().adopted(delay)
    world.source = replace(world.source, revision="r2")
    world.settle(delay)
    world.step(delay, result(Verdict.PASS), advance=10)
    assert world.selector[TWIN_LABEL] == "green" and world.state.scale_down == "blue"
    promoted = world.now
    world.records = []  # `kubectl delete configmap web-canary-history`
    world.step(delay, advance=50)
    assert world.state.scale_down_at == promoted + 60
    world.step(delay, advance=15)
    assert world.twins["blue"].replicas == 0 and world.state.scale_down is None
