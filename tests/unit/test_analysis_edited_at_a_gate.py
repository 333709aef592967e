"""`canary.io/analysis` edited while a step that passed waits on its gate
(a pre-promotion approval that takes hours, a pre-step hook): the pass the
gate would act on answered the question asked before the edit."""

from __future__ import annotations

from dataclasses import replace

from analysis.verdicts import Verdict
from canary.model import Checked
from canary.schedule import analysis_due
from canary.spec import RolloutSpec
from tests.unit.test_decide import answer, serving_canary
from tests.unit.world import World, result, spec

GATE = "gates: [{name: approve, when: %s, url: 'http://127.0.0.1:1/x'}]"
# What on-call adds on seeing checkout errors in the canary's logs: a custom
# query, which no fast look checks (only builtins are looked at every scrape).
CHECKOUT = (
    "\nmetrics: [{name: checkout-errors, max: 0.5, "
    "query: 'sum(rate(checkout_errors_total[{{ window }}]))'}]"
)


def at_the_gate(kind: str) -> tuple[World, str]:
    """Step 1 of 25,50 passed (both, for pre-promotion): its gate is closed."""
    before = spec(steps="25,50", analysis=GATE % kind)
    world = serving_canary(before)
    world.step(before, result(Verdict.PASS), advance=10)
    if kind == "pre-promotion":
        world.settle(before)
        world.step(before, result(Verdict.PASS), advance=10)
    assert world.state.gate_wait == kind
    world.gate = answer(kind, False)
    world.step(before, advance=1)
    world.gate = None
    return world, kind


def test_a_gate_that_opens_after_the_analysis_was_edited_waits_for_a_pass_under_it() -> None:
    world, kind = at_the_gate("pre-promotion")
    edited = spec(steps="25,50", analysis=GATE % kind + CHECKOUT)
    world.events.clear()
    world.step(edited, advance=60)
    _gate_opens(world, edited, kind)
    assert world.state.canary == "green" and "Promoted" not in world.reasons(), (
        "promoted on a pass under the analysis before the edit: checkout-errors was never asked"
    )
    assert "AnalysisChanged" in world.reasons()
    # The step is analysed under the new analysis at once, over what it served.
    due = analysis_due(edited, world.state, world.now, world.scrape)
    assert due is not None and due.kind == "scheduled"
    world.step(edited, result(Verdict.PASS), advance=0)
    assert world.state.gate_wait == kind, "the gate is asked again for the new pass"
    _gate_opens(world, edited, kind)
    assert world.state.canary is None and world.state.stable_revision == "r2"


def test_a_pre_step_gate_does_not_raise_the_weight_on_a_pass_under_the_old_analysis() -> None:
    world, kind = at_the_gate("pre-step")
    edited = spec(steps="25,50", analysis=GATE % kind + CHECKOUT)
    world.step(edited, advance=60)
    _gate_opens(world, edited, kind)
    assert world.state.step == 0 and world.state.requested_weight == 25


def test_a_gate_opening_with_the_analysis_unchanged_moves_on_as_before() -> None:
    world, kind = at_the_gate("pre-promotion")
    same = spec(steps="25,50", analysis=GATE % kind)
    world.step(same, advance=60)
    _gate_opens(world, same, kind)
    assert world.state.canary is None and world.state.stable_revision == "r2"


def test_only_the_gates_edited_at_a_gate_keep_the_pass() -> None:
    """The gates are asked after the pass: replaced, they are asked again
    (not the step); the pass answered all the rest."""
    world, kind = at_the_gate("pre-promotion")
    other = GATE.replace("approve", "approve-2").replace("/x", "/y")
    edited = spec(steps="25,50", analysis=other % kind)
    world.step(edited, advance=60)
    assert world.state.gate_wait == kind and "AnalysisChanged" not in world.reasons()


def test_an_analysis_edited_while_the_promotion_waits_for_its_pods_is_asked_first() -> None:
    # The last step passed; the canary grows to full size for the flip, and
    # its new pod (2 of 3 at 40 %) waits for a node. On-call adds checkout-errors meanwhile.
    # Before: once the pods came up, the Service flipped onto the release,
    # promoted on the pass under the analysis before the edit.
    world = _promoting_with_a_pod_stalled()
    edited = spec(steps="25,40", analysis=CHECKOUT.strip())
    world.events.clear()
    world.step(edited, advance=30)
    world.stall(False)
    world.step(edited, Checked("fast", result(Verdict.PASS), world.now + 1), advance=1)
    world.settle(edited)
    assert world.state.canary == "green" and "Promoted" not in world.reasons()
    assert "AnalysisChanged" in world.reasons()
    assert world.state.step == 1 and world.state.requested_weight == 40
    world.step(edited, result(Verdict.PASS), advance=10)
    world.settle(edited)
    assert world.state.canary is None and world.state.stable_revision == "r2"


def test_a_promotion_asked_by_a_person_is_not_taken_back_by_an_analysis_edit() -> None:
    before = spec(steps="25,40")
    world = serving_canary(before)
    world.stall(True)
    world.action = "promote t1"
    world.step(before, advance=1)
    assert world.state.promoting and world.state.promote_by
    edited = spec(steps="25,40", analysis=CHECKOUT.strip())
    world.step(edited, advance=30)
    world.stall(False)
    world.settle(edited)
    assert world.state.canary is None and world.state.stable_revision == "r2"


def test_a_person_promoting_a_release_already_promoting_is_not_taken_back_either() -> None:
    # The automatic promotion waits for a stalled pod (its pass recorded
    # under the analysis then); on-call runs `canary promote` to ship it as
    # soon as the pods are up, then adds checkout-errors. The promotion is
    # now theirs: the edit does not take it back to the last step.
    world = _promoting_with_a_pod_stalled()
    assert world.state.passed_under
    world.action = "promote t1"
    world.step(spec(steps="25,40"), advance=1)
    assert world.state.promoting and world.state.promote_by
    edited = spec(steps="25,40", analysis=CHECKOUT.strip())
    world.events.clear()
    world.step(edited, advance=30)
    assert world.state.promoting and "AnalysisChanged" not in world.reasons()
    world.stall(False)
    world.settle(edited)
    assert world.state.canary is None and world.state.stable_revision == "r2"


def test_a_gate_wait_with_no_pass_recorded_is_not_taken_back() -> None:
    # A status written before passes were recorded (State.passed_under: a
    # controller upgraded while a gate waits) has nothing to compare: the
    # gate goes on waiting as it did, not judged again on the upgrade.
    world, kind = at_the_gate("pre-promotion")
    world.state = replace(world.state, passed_under="")
    world.events.clear()
    world.step(spec(steps="25,50", analysis=GATE % kind), advance=1)
    assert world.state.gate_wait == kind and "AnalysisChanged" not in world.reasons()


def test_a_promotion_taken_back_with_its_pods_up_is_judged_from_then() -> None:
    # The stalled pod comes up in the cycle that reads the edit: nothing is
    # lost at the last step's weight, and the step is judged afresh from
    # that cycle, its window with it; kept from the pass before, the window
    # the new analysis judged began before the edit (or at 0).
    world = _promoting_with_a_pod_stalled()
    edited = spec(steps="25,40", analysis=CHECKOUT.strip())
    world.stall(False)
    world.step(edited, advance=30)
    taken_back = world.now
    world.settle(edited)
    assert "AnalysisChanged" in world.reasons() and world.state.canary == "green"
    assert world.state.step_ready >= taken_back, (world.state.step_ready, taken_back)
    assert world.state.window_start >= taken_back, (world.state.window_start, taken_back)


def test_an_interval_lengthened_at_a_gate_needs_a_pass_over_the_new_one() -> None:
    # On-call lengthens the interval to judge each step longer (10 s -> 5 m)
    # while the pre-promotion approval is pending: a check in flight then
    # passes nothing (decide._still_asked), nor does the pass taken before.
    world, kind = at_the_gate("pre-promotion")
    longer = spec(steps="25,50", interval="5m", analysis=GATE % kind)
    world.step(longer, advance=5)
    _gate_opens(world, longer, kind)
    assert world.state.canary == "green" and "Promoted" not in world.reasons()
    due = analysis_due(longer, world.state, world.now, world.scrape)
    assert due is None, "the step served 10 s at its weight since it passed, not 5 m"


def test_steps_cut_with_the_analysis_edit_while_promoting_go_on_at_the_last_step_left() -> None:
    # One commit edits both: checkout-errors added and the steps cut to one
    # (25,40 -> 25) while the promotion of step 2 waits for a pod. The pass
    # taken back, the step in flight (index 1) no longer existed: its
    # placement raised IndexError, the decision was never written, and the
    # next cycle (still promoting) raised again: ReconcileFailed for good,
    # the canary at full size in the Service beside the stable twin.
    world = _promoting_with_a_pod_stalled()
    edited = spec(steps="25", analysis=CHECKOUT.strip())
    world.events.clear()
    world.step(edited, advance=30)
    assert not world.state.promoting and "AnalysisChanged" in world.reasons()
    world.stall(False)
    world.settle(edited)
    assert world.state.canary == "green" and "Promoted" not in world.reasons()
    assert world.state.step == 0 and world.state.requested_weight == 25, world.state
    world.step(edited, result(Verdict.PASS), advance=10)
    world.settle(edited)
    assert world.state.canary is None and world.state.stable_revision == "r2"


def _promoting_with_a_pod_stalled() -> World:
    """Steps 25,40: the last step passed, and the promotion waits for the
    canary's new pod (it grows to full size for the flip), stalled."""
    before = spec(steps="25,40")
    world = serving_canary(before)
    world.step(before, result(Verdict.PASS), advance=10)
    world.settle(before)
    world.stall(True)
    world.step(before, result(Verdict.PASS), advance=10)
    assert world.state.promoting and world.state.step == 1
    return world


def _gate_opens(world: World, the_spec: RolloutSpec, kind: str) -> None:
    """The gate answers open (a fast look passing as it does), then settles."""
    world.gate = answer(kind, True)
    world.step(the_spec, Checked("fast", result(Verdict.PASS), world.now + 1), advance=1)
    world.gate = None
    world.settle(the_spec)
