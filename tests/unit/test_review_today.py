"""Review of today's fixes (b0851c8..ac73943): each test is a scenario one
fix broke in a path its author did not drive, or two fixes together; each
failed on the code before its fix."""

from __future__ import annotations

from dataclasses import replace

from analysis.verdicts import Verdict
from canary.model import Checked
from canary.schedule import analysis_due
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


BG = spec(strategy="blue-green")


def test_a_blue_green_promote_asked_while_a_failing_scrape_waits_is_not_stuck() -> None:
    # A fast look on the preview finds one failing scrape; before the next
    # one, on-call runs `canary promote`. The flip now waits for a failing
    # scrape to be confirmed (b2715f2), but a promoting blue-green rollout
    # gets no look (watched_standing: no production traffic on the preview):
    # "promoting: a failing scrape waits to be confirmed" for ever.
    world = _serving(BG)
    failing = result(Verdict.FAIL, "success-rate = 50")
    world.step(BG, Checked("fast", failing, world.now + 3), advance=3)
    assert world.state.fast_failed and not world.state.suspected
    world.action = "promote"
    world.step(BG, advance=0.5)
    assert "PromoteRequested" in world.reasons()
    _run(BG, world, Verdict.PASS, 120)
    assert world.state.canary is None, world.state.message


def test_a_promotion_is_not_stuck_when_an_edit_leaves_no_metric_checked_fast() -> None:
    # A fast look fails one scrape at the last step; on-call, finding the
    # fast looks noisy, sets `fast: false`. The scheduled check passes under
    # the new analysis and the promotion begins, but its flip waits for a
    # look that no metric takes any more: Promoting for ever.
    one = spec(steps="50")
    world = _serving(one)
    failing = result(Verdict.FAIL, "success-rate = 50")
    world.step(one, Checked("fast", failing, world.now + 3), advance=3)
    assert world.state.fast_failed
    slow = spec(steps="50", analysis="metrics: [{name: success-rate, min: 99, fast: false}]")
    assert not slow.analysis.fast_metrics
    _run(slow, world, Verdict.PASS, 120)
    assert world.state.canary is None, world.state.message


def test_a_promotion_resumed_after_kubectl_rollout_pause_still_has_its_failures_looked_at() -> None:
    # Promoting while the new pods come up is one of the standings whose
    # failures are looked at (56b17c5). A `kubectl rollout pause` and resume
    # of the Deployment meanwhile restarted the step's window (step_ready 0),
    # which a promotion never sets again: no look for the rest of the
    # promotion, and the flip put all traffic on a canary failing since.
    from tests.unit.test_standing_still import STRICT, _promoting

    the_spec, world = _promoting(STRICT)
    world.source = replace(world.source, paused=True, paused_by="kubectl-rollout")
    world.step(the_spec, advance=1)
    world.source = replace(world.source, paused=False)
    world.step(the_spec, advance=1)
    assert world.state.promoting and world.state.canary == "green"
    kinds = _run(the_spec, world, Verdict.FAIL, 30)
    assert world.state.canary is None and world.state.stable == "blue", (kinds, world.state.message)
    assert "AnalysisFailed" in world.reasons()


def test_a_failing_prometheus_is_not_asked_again_at_once_while_the_rollout_stands_still() -> None:
    # After a fast look's error, fast looks pause until the next scheduled
    # check ("a struggling Prometheus gets no flood"): fast_checked is put at
    # `checked + interval`. Standing still there is no scheduled check, and
    # `checked` is as old as the pause: that time is long past, so every
    # erroring look asked for the next one at once, back to back for as long
    # as Prometheus failed and the rollout stood.
    world = _serving(STEPS)
    world.step(STEPS, result(Verdict.PASS), advance=10)
    world.settle(STEPS)
    assert world.state.step == 1 and world.state.step_ready
    world.action = "pause"
    world.step(STEPS, advance=1)
    world.now += 300  # paused over lunch
    due = analysis_due(STEPS, world.state, world.now, world.scrape, world.phase)
    assert due is not None and due.kind == "fast"
    world.step(STEPS, Checked("fast", result(Verdict.ERROR), due.end))
    assert analysis_due(STEPS, world.state, world.now + 0.5, world.scrape, world.phase) is None
