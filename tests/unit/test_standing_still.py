"""A rollout that stands still with traffic on the canary (paused by an
action, the annotation or `kubectl rollout pause`, halted on no data, at a
closed pre-step or pre-promotion gate, promoting while the new pods come up)
still has its failures looked at, every scrape: standing still holds the
weight, it does not stop the promise of a rollback within two scrapes of a
failure. Passing looks earn nothing while it stands."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from analysis.verdicts import Verdict
from canary.model import Checked, Observed, State
from canary.schedule import analysis_due, gate_due
from canary.spec import TWIN_LABEL, RolloutSpec
from tests.unit.test_decide import answer, release
from tests.unit.world import World, result, spec

STRICT = spec(steps="25,50", failure_limit="0")


class SlowCanary(World):
    """The canary's new pods never become ready (a promotion waits on them);
    the pods it had keep serving."""

    cap: int = 0

    def observed(self) -> Observed:
        observed = super().observed()
        if not self.cap or self.state.canary is None:
            return observed
        twin = observed.twins[self.state.canary]
        capped = replace(
            twin, ready=min(twin.ready, self.cap), endpoints=min(twin.endpoints, self.cap)
        )
        return replace(observed, twins={**observed.twins, self.state.canary: capped})


def _serving(the_spec: RolloutSpec, world: World | None = None) -> World:
    world = (world or World()).adopted(the_spec)
    release(world)
    world.settle(the_spec)
    assert world.state.step_ready and world.state.requested_weight == 25
    return world


def _paused_by_action(the_spec: RolloutSpec) -> tuple[RolloutSpec, World]:
    world = _serving(the_spec)
    world.action = "pause"
    world.step(the_spec, advance=1)
    return the_spec, world


def _paused_by_annotation(the_spec: RolloutSpec) -> tuple[RolloutSpec, World]:
    world = _serving(the_spec)
    paused = spec(steps="25,50", failure_limit="0", paused="true")
    world.step(paused, advance=1)
    return paused, world


def _source_paused(the_spec: RolloutSpec) -> tuple[RolloutSpec, World]:
    world = _serving(the_spec)
    world.source = replace(world.source, paused=True, paused_by="kubectl-rollout")
    world.step(the_spec, advance=1)
    return the_spec, world


def _halted_on_no_data(the_spec: RolloutSpec) -> tuple[RolloutSpec, World]:
    world = _serving(the_spec)
    for _ in range(the_spec.analysis.no_data_limit + 1):
        world.step(the_spec, result(Verdict.NO_DATA), advance=10)
    assert world.state.halt_kind == "no-data"
    return the_spec, world


def _closed_gate(kind: str) -> Callable[[RolloutSpec], tuple[RolloutSpec, World]]:
    def setup(_: RolloutSpec) -> tuple[RolloutSpec, World]:
        gate_spec = spec(
            steps="25,50",
            failure_limit="0",
            analysis=f"gates: [{{name: approve, when: {kind}, url: 'http://127.0.0.1:1/x'}}]",
        )
        world = _serving(gate_spec)
        if kind == "pre-promotion":
            world.step(gate_spec, result(Verdict.PASS), advance=10)
            world.settle(gate_spec)
        world.step(gate_spec, result(Verdict.PASS), advance=10)
        assert world.state.gate_wait == kind
        world.gate = answer(kind, False)
        world.step(gate_spec)
        world.gate = None
        return gate_spec, world

    return setup


def _promoting(the_spec: RolloutSpec) -> tuple[RolloutSpec, World]:
    world = _serving(the_spec, SlowCanary())
    assert isinstance(world, SlowCanary)
    world.cap = world.twins["green"].replicas  # what serves at 25 %; no more come up
    world.action = "promote"
    world.step(the_spec, advance=1)
    assert world.state.promoting and world.state.canary == "green"
    return the_spec, world


STANDING = {
    "paused by canary pause": _paused_by_action,
    "paused by the annotation": _paused_by_annotation,
    "kubectl rollout pause": _source_paused,
    "halted on no data": _halted_on_no_data,
    "pre-step gate closed": _closed_gate("pre-step"),
    "pre-promotion gate closed": _closed_gate("pre-promotion"),
    "promoting, new pods not ready": _promoting,
}


def _drive(the_spec: RolloutSpec, world: World, verdict: Verdict, seconds: float) -> list[str]:
    """Run the controller for `seconds` as the shell would: start what
    analysis_due asks for, hand its result in; a wake-up must be asked for
    (no watch event comes while the rollout stands still)."""
    kinds: list[str] = []
    end = world.now + seconds
    while world.state.canary is not None and world.now < end:
        due = analysis_due(the_spec, world.state, world.now, world.scrape, world.phase)
        checked = None
        if due is not None:
            kinds.append(due.kind)
            checked = Checked(due.kind, result(verdict, "success-rate = 50"), due.end)
        plan = world.step(the_spec, checked)
        if world.state.canary is None:
            break
        if due is not None:
            assert plan.requeue_after is not None and plan.requeue_after <= 2 * world.scrape, (
                f"standing still, nothing wakes the controller for the next look: {plan}"
            )
        world.now += world.scrape / 2
    return kinds


@pytest.mark.parametrize("standing", list(STANDING))
def test_a_canary_that_fails_while_the_rollout_stands_still_is_rolled_back(
    standing: str,
) -> None:
    # Before: analysis_due returned None as long as the rollout stood still,
    # fast looks included, so a canary that turned bad kept its weight,
    # unanalysed, for the whole pause (or halt, gate, slow promotion).
    the_spec, world = STANDING[standing](STRICT)
    assert world.state.canary is not None
    started = world.now
    kinds = _drive(the_spec, world, Verdict.FAIL, 60)
    assert world.state.canary is None, f"{standing}: still serving after 60 s of failures"
    assert "AnalysisFailed" in world.reasons() and world.state.stable == "blue"
    assert world.now - started <= 3 * world.scrape, (standing, world.now - started)
    assert set(kinds) == {"fast"}  # failure-only looks: no scheduled check while standing


@pytest.mark.parametrize("standing", list(STANDING))
def test_passing_looks_while_the_rollout_stands_still_move_nothing(standing: str) -> None:
    the_spec, world = STANDING[standing](STRICT)
    before = (world.state.step, world.state.promoting, world.state.gate_wait, world.state.halted)
    selector = dict(world.selector)
    _drive(the_spec, world, Verdict.PASS, 60)
    after = (world.state.step, world.state.promoting, world.state.gate_wait, world.state.halted)
    assert world.state.canary == "green" and after == before and world.selector == selector


def test_a_failure_counted_at_a_closed_gate_takes_back_the_pass_it_waited_on() -> None:
    tolerant = spec(
        steps="25,50",
        failure_limit="1",
        analysis="gates: [{name: approve, when: pre-step, url: 'http://127.0.0.1:1/x'}]",
    )
    world = _serving(tolerant)
    world.step(tolerant, result(Verdict.PASS), advance=10)
    assert world.state.gate_wait == "pre-step"
    failing = result(Verdict.FAIL, "success-rate = 50")
    world.step(tolerant, Checked("fast", failing, world.now + 2), advance=2)
    world.step(tolerant, Checked("fast", failing, world.now + 1), advance=1)
    assert world.state.failed == 1 and world.state.canary == "green"
    assert not world.state.gate_wait  # the step is judged again before the gate is asked
    world.gate = answer("pre-step", True)
    world.step(tolerant, advance=1)
    assert world.state.step == 0, "advanced on a pass a counted failure came after"


@pytest.mark.parametrize("kind", ["pre-step", "pre-promotion"])
def test_retry_at_a_closed_gate_judges_the_step_again_before_it_moves_on(kind: str) -> None:
    # Before: retry reset the step's window but left the gate waiting on the
    # earlier pass; the gate opening then advanced (or promoted) with no
    # check of the step after the retry.
    the_spec, world = _closed_gate(kind)(STRICT)
    step = world.state.step
    world.action = "retry"
    world.step(the_spec, advance=1)
    assert "RetryRequested" in world.reasons()
    world.gate = answer(kind, True)
    world.step(the_spec, advance=1)
    world.gate = None
    world.settle(the_spec)
    assert world.state.canary == "green" and world.state.step == step
    assert not world.state.promoting and "Promoted" not in world.reasons()
    world.step(the_spec, result(Verdict.PASS), advance=10)
    assert world.state.gate_wait == kind  # judged again, then the gate asked again


@pytest.mark.parametrize("held", ["annotation", "kubectl rollout pause"])
def test_promote_under_a_pause_it_does_not_lift_says_it_waits(held: str) -> None:
    # Before: PromoteRequested said the remaining steps were skipped, and
    # nothing said the promotion waits for a pause the action does not lift.
    the_spec, world = (_paused_by_annotation if held == "annotation" else _source_paused)(STRICT)
    world.action = "promote"
    world.step(the_spec, advance=1)
    asked = next(e for e in world.events if e.reason == "PromoteRequested")
    assert "waits" in asked.message and "paused" in asked.message, asked.message
    assert world.state.canary == "green" and world.state.promoting


def test_an_abort_after_a_promotion_forgets_the_aborted_revisions_pods_as_the_baseline() -> None:
    # Before: the flip back kept stable_pods on the promoted (aborted)
    # revision's ReplicaSet, so the baseline of relative checks and the
    # learning of the scrape timing looked at pods that no longer serve.
    from canary.reconcile import Reconciler

    world = _serving(STRICT)
    world.twins["green"] = replace(world.twins["green"], replica_set="web-green-5d8f")
    world.twins["blue"] = replace(world.twins["blue"], replica_set="web-blue-77c4")
    world.step(STRICT, result(Verdict.PASS), advance=10)
    world.settle(STRICT)
    world.twins["green"] = replace(world.twins["green"], replica_set="web-green-5d8f")
    world.step(STRICT, result(Verdict.PASS), advance=10)
    assert world.state.stable == "green" and world.state.stable_pods == "web-green-5d8f"
    world.action = "abort"
    world.step(STRICT, advance=5)
    after: State = world.state  # a new State (mypy kept the narrowing from before the abort)
    assert after.stable == "blue" and after.stable_revision == "r1"
    target = Reconciler._target(None, world.observed(), after, after.stable)  # type: ignore[arg-type]
    assert target is not None and target.pods.startswith("web-blue-77c4"), target


@pytest.mark.parametrize("kind", ["pre-step", "pre-promotion"])
def test_a_gate_that_opens_while_a_failing_scrape_waits_to_be_confirmed_does_not_move_on(
    kind: str,
) -> None:
    # The gate opening moved on at once, and the next step's start dropped
    # the suspicion: the failure seen at the gate went unjudged, and the
    # weight went up (or all traffic went to the canary).
    the_spec, world = _closed_gate(kind)(STRICT)
    step = world.state.step
    failing = result(Verdict.FAIL, "success-rate = 50")
    world.step(the_spec, Checked("fast", failing, world.now + 1), advance=1)
    assert world.state.fast_failed  # suspect: the next scrape confirms or clears it
    world.gate = answer(kind, True)
    world.step(the_spec, advance=0.5)
    world.gate = None
    assert world.state.step == step and not world.state.promoting
    assert world.state.stable == "blue"
    world.step(the_spec, Checked("fast", failing, world.now + 0.5), advance=0.5)
    assert world.state.canary is None and "AnalysisFailed" in world.reasons()


@pytest.mark.parametrize("kind", ["pre-step", "pre-promotion"])
@pytest.mark.parametrize("is_open", [True, False])
def test_a_gate_answer_held_by_a_failing_scrape_is_asked_again_an_interval_later(
    kind: str, is_open: bool
) -> None:
    # The answer that came while a failing scrape waited to be confirmed was
    # dropped and the time of asking left as it was: the gate was due again
    # at once, each answer woke the Service and asked again, a POST to the
    # webhook every few milliseconds for as long as the suspicion held (a
    # scrape; for good on looks with too few requests to tell, at night).
    the_spec, world = _closed_gate(kind)(STRICT)
    asked = world.state.gate_checked
    failing = result(Verdict.FAIL, "success-rate = 50")
    world.step(the_spec, Checked("fast", failing, world.now + 9), advance=9)
    assert world.state.fast_failed
    world.now = asked + the_spec.interval + 0.1
    assert gate_due(the_spec, world.state, world.now) is not None  # asked now
    world.gate = answer(kind, is_open)
    world.step(the_spec, advance=0.05)
    world.gate = None
    assert world.state.fast_failed and world.state.gate_wait == kind
    assert gate_due(the_spec, world.state, world.now) is None, "asked again at once"
    assert gate_due(the_spec, world.state, world.now + the_spec.interval) is not None


@pytest.mark.parametrize("kind", ["pre-step", "pre-promotion"])
def test_a_gate_removed_while_a_failing_scrape_waits_to_be_confirmed_does_not_move_on(
    kind: str,
) -> None:
    # A gate taken out of canary.io/analysis while waited on (a hanging
    # approval hook removed) moved on at once, past the looks: the step's
    # weight went up (or the canary grew to full size for the flip) over a
    # failing scrape, which an open gate holds until confirmed or cleared.
    the_spec, world = _closed_gate(kind)(STRICT)
    step, weight = world.state.step, world.state.requested_weight
    failing = result(Verdict.FAIL, "success-rate = 50")
    world.step(the_spec, Checked("fast", failing, world.now + 1), advance=1)
    assert world.state.fast_failed
    gateless = spec(steps="25,50", failure_limit="0")
    world.step(gateless, advance=0.5)
    assert world.state.step == step and not world.state.promoting, world.reasons()
    assert world.state.requested_weight == weight
    world.step(gateless, Checked("fast", failing, world.now + 0.5), advance=0.5)
    assert world.state.canary is None and "AnalysisFailed" in world.reasons()


@pytest.mark.parametrize("kind", ["pre-step", "pre-promotion"])
def test_a_gate_removed_while_waited_on_moves_on_once_nothing_holds_it(kind: str) -> None:
    _, world = _closed_gate(kind)(STRICT)
    step = world.state.step
    world.step(spec(steps="25,50", failure_limit="0"), advance=0.5)
    assert not world.state.gate_wait
    moved = world.state.step == step + 1 or world.state.promoting or world.state.stable == "green"
    assert moved, world.reasons()


def test_a_promotion_does_not_flip_while_a_failing_scrape_waits_to_be_confirmed() -> None:
    the_spec, world = _promoting(STRICT)
    assert isinstance(world, SlowCanary)
    failing = result(Verdict.FAIL, "success-rate = 50")
    world.step(the_spec, Checked("fast", failing, world.now + 1), advance=1)
    assert world.state.fast_failed and world.state.promoting
    world.cap = 0  # every new pod is ready now
    world.step(the_spec, advance=0.5)
    assert world.state.stable == "blue", "flipped all traffic to a canary under suspicion"
    world.step(the_spec, Checked("fast", failing, world.now + 0.5), advance=0.5)
    assert world.state.canary is None and world.state.stable == "blue"
    assert "AnalysisFailed" in world.reasons()


def test_a_halt_kind_left_without_its_halt_is_not_standing_still() -> None:
    """A status written by the version before today's fixes after a `retry`
    from a no-data halt: `halted` cleared, `halt_kind` still "no-data". Read
    as standing still, that rollout got fast looks only and no scheduled
    check ever again, stuck at its step after an upgrade."""
    the_spec = spec(steps="25,50")
    world = _serving(the_spec)
    world.state = replace(world.state, halted="", halt_kind="no-data")
    due = analysis_due(the_spec, world.state, world.state.step_ready + 60, 1.0)
    assert due is not None and due.kind == "scheduled"
    world.state = replace(world.state, paused=True, halt_kind="errors")
    due = analysis_due(the_spec, world.state, world.state.step_ready + 60, 1.0)
    assert due is not None and due.kind == "fast"  # paused: its failures still looked at


PAUSED_OR_HALTED = {
    "paused by canary pause": _paused_by_action,
    "paused by the annotation": _paused_by_annotation,
    "kubectl rollout pause": _source_paused,
    "halted on no data": _halted_on_no_data,
}


def _edited(the_spec: RolloutSpec) -> RolloutSpec:
    """`the_spec` with its first step's weight edited from 25 to 10 %."""
    return spec(steps="10,50", failure_limit="0", paused="true" if the_spec.paused else "false")


@pytest.mark.parametrize("standing", list(PAUSED_OR_HALTED))
def test_steps_edited_while_paused_leave_the_canary_watched_at_the_weight_it_serves(
    standing: str,
) -> None:
    # Before: StepsChanged forgot that the step served (step_ready 0) while
    # nothing could place it anew, paused or halted: the canary held 25 %
    # of production with no look at all until the pause ended.
    the_spec, world = PAUSED_OR_HALTED[standing](STRICT)
    edited = _edited(the_spec)
    world.step(edited, advance=1)
    assert world.state.requested_weight == 25 and TWIN_LABEL not in world.selector  # both serve
    started = world.now
    kinds = _drive(edited, world, Verdict.FAIL, 60)
    assert world.state.canary is None, f"{standing}: still serving after 60 s of failures"
    assert "AnalysisFailed" in world.reasons()
    assert world.now - started <= 3 * world.scrape, (standing, world.now - started)
    assert set(kinds) == {"fast"}


def test_steps_edited_while_paused_take_effect_when_it_resumes() -> None:
    the_spec, world = _paused_by_action(STRICT)
    edited = _edited(the_spec)
    world.step(edited, advance=1)
    assert "StepsChanged" not in world.reasons() and world.state.step_ready
    world.action = "resume"
    world.settle(edited)
    changed = [e.message for e in world.events if e.reason == "StepsChanged"]
    assert len(changed) == 1 and "at step 1 at 25%" in changed[0] and "(10%)" in changed[0]
    # Judged afresh at its new weight: no pass from 25 % carries over.
    assert world.state.requested_weight == 10 and world.state.step == 0
    assert world.state.step_ready >= world.now - 1 and not world.state.checked
