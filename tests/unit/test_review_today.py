"""Review of today's fixes (b0851c8..ac73943): each test is a scenario one
fix broke in a path its author did not drive, or two fixes together; each
failed on the code before its fix."""

from __future__ import annotations

from analysis.verdicts import Verdict
from canary.model import Checked
from canary.rollout import analysis_due
from canary.spec import RolloutSpec
from tests.unit.test_decide import release
from tests.unit.world import World, result, spec

STEPS = spec(steps="25,50")


def _serving(the_spec: RolloutSpec) -> World:
    world = World().adopted(the_spec)
    release(world)
    world.settle(the_spec)
    assert world.state.step_ready and world.state.canary == "green"
    return world


def _run(the_spec: RolloutSpec, world: World, verdict: Verdict, seconds: float) -> list[str]:
    """The shell for `seconds`: what analysis_due asks for is run and handed
    in; between cycles the clock moves half a scrape."""
    kinds: list[str] = []
    end = world.now + seconds
    while world.state.canary is not None and world.now < end:
        due = analysis_due(the_spec, world.state, world.now, world.scrape, world.phase)
        checked = None
        if due is not None:
            kinds.append(due.kind)
            checked = Checked(due.kind, result(verdict), due.end)
        world.step(the_spec, checked)
        world.now += world.scrape / 2
    return kinds


def test_retry_after_a_no_data_halt_judges_the_step_and_moves_on() -> None:
    # `canary retry` is what the RolloutHalted Event tells on-call to run.
    # It cleared `halted` but left halt_kind "no-data", which since today
    # makes the rollout "standing" (fast looks only): no scheduled check
    # ever came again, and the rollout sat at its step for good, shown as
    # Progressing.
    world = _serving(STEPS)
    for _ in range(STEPS.analysis.no_data_limit + 1):
        world.step(STEPS, result(Verdict.NO_DATA), advance=10)
    assert world.state.halted
    world.action = "retry"
    world.step(STEPS, advance=1)
    assert "RetryRequested" in world.reasons() and not world.state.halted
    kinds = _run(STEPS, world, Verdict.PASS, 60)
    assert "scheduled" in kinds, kinds
    assert world.state.step >= 1 or world.state.canary is None, world.state
