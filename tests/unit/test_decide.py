"""decide(): every phase transition and manual action, without a cluster."""

from __future__ import annotations

from dataclasses import replace

import pytest

from analysis.gate_results import GateAnswer, GateResult
from analysis.spec import GateKind
from analysis.verdicts import Verdict
from canary.decide import decide, phase
from canary.model import (
    ApplyTwin,
    Checked,
    Claim,
    ClaimSource,
    GateSource,
    Phase,
    ScaleSource,
    SetSelector,
    Source,
    State,
)
from canary.schedule import analysis_due, gate_due
from canary.spec import SERVICE_LABEL, TWIN_LABEL, RolloutSpec, SpecError
from canary.status_writes import durable
from canary.twins import canary_replicas
from tests.unit.world import World, result, spec

CANARY = spec(steps="25,50")


def analysis_window(
    the_spec: RolloutSpec, state: State, now: float, scrape: float = 1.0
) -> tuple[float, float] | None:
    """The scheduled check due at `now`, as (window start, end)."""
    due = analysis_due(the_spec, state, now, scrape)
    return (due.start, due.end) if due is not None and due.kind == "scheduled" else None


def release(world: World, revision: str = "r2") -> None:
    world.source = replace(world.source, revision=revision)


def serving_canary(the_spec: RolloutSpec) -> World:
    """Adopted, then revision r2 released and serving at its first step."""
    world = World().adopted(the_spec)
    release(world)
    world.settle(the_spec)
    return world


def test_adoption_creates_the_stable_twin_before_touching_selector_or_source() -> None:
    world = World()
    plan = world.step(CANARY)
    assert plan.actions == (ClaimSource(Claim("web", 3, "r1")), ApplyTwin("blue", "r1", 3))
    world.ready = False
    world.step(CANARY)
    assert world.selector == {"app": "web"} and world.source.replicas == 3  # nothing moved yet
    world.ready = True
    world.settle(CANARY)
    assert world.selector == {"app": "web", TWIN_LABEL: "blue"}
    assert world.source.replicas == 0
    assert world.state.adopted and phase(CANARY, world.state) is Phase.HEALTHY
    assert world.reasons() == ["Adopted"]


def test_adoption_gates_the_source_before_it_says_adopted() -> None:
    """The Adopted Event and the Healthy status say the source's template is
    gated: the gate lands in that cycle, not in the next one (a test that
    watched the source from Healthy on saw the gate come after it)."""
    world = World()
    for _ in range(10):
        plan = world.step(CANARY)
        if world.state.adopted:
            break
    assert "Adopted" in world.reasons()
    assert GateSource(True) in plan.actions
    assert world.source.gated and world.source.replicas == 0


def test_adoption_changes_the_selector_before_scaling_the_source_down() -> None:
    world = World()
    order = []
    for _ in range(6):
        for action in world.step(CANARY).actions:
            order.append(type(action).__name__)
    assert order.index("SetSelector") < order.index("ScaleSource")


def test_new_revision_starts_at_the_first_step_weight() -> None:
    world = World().adopted(CANARY)
    release(world)
    plan = world.step(CANARY)
    assert ApplyTwin("green", "r2", canary_replicas(3, 25)) in plan.actions
    assert world.selector == {"app": "web", TWIN_LABEL: "blue"}  # not before the canary is ready
    assert world.state.canary == "green" and world.state.requested_weight == 25
    world.step(CANARY)
    assert world.selector == {"app": "web", SERVICE_LABEL: "web"}
    assert "RolloutStarted" in world.reasons()


def test_a_reused_twin_serves_no_old_pods_before_it_is_clean() -> None:
    world = World().adopted(CANARY)
    release(world)
    # The twin still has pods of its old template. (Only that twin: with
    # `ready = False` the stable twin had no ready pod either, and a release
    # now waits for one: test_stable_twin_with_no_ready_pod.)
    world.pending = {"green"}
    world.step(CANARY)
    world.step(CANARY)
    assert world.selector == {"app": "web", TWIN_LABEL: "blue"}
    world.pending = set()
    world.step(CANARY)
    assert world.selector == {"app": "web", SERVICE_LABEL: "web"}


def test_analysis_waits_one_interval_from_the_moment_the_canary_is_ready() -> None:
    world = serving_canary(CANARY)
    ready_at = world.state.step_ready
    assert ready_at == world.now
    assert analysis_window(CANARY, world.state, world.now + 9.9) is None
    assert analysis_window(CANARY, world.state, world.now + 10) == (ready_at, world.now + 10)


def test_passing_analysis_advances_then_promotes_with_one_selector_change() -> None:
    world = serving_canary(CANARY)
    world.step(CANARY, result(Verdict.PASS), advance=10)
    assert world.state.step == 1 and world.state.requested_weight == 50
    assert world.twins["green"].replicas == 3
    world.settle(CANARY)
    plan = world.step(CANARY, result(Verdict.PASS), advance=10)
    selector_changes = [a for a in plan.actions if isinstance(a, SetSelector)]
    assert selector_changes == [SetSelector({"app": "web", TWIN_LABEL: "green"})]
    assert world.state.stable == "green" and world.state.stable_revision == "r2"
    assert world.state.canary is None and world.state.scale_down == "blue"
    assert "Promoted" in world.reasons()


def test_bad_release_is_rolled_back_when_failures_exceed_the_limit() -> None:
    strict = spec(steps="25,50", failure_limit="0")
    world = serving_canary(strict)
    world.step(strict, result(Verdict.FAIL, "success-rate = 50 (want >= 99)"), advance=10)
    assert world.state.canary == "green"  # one check over the whole window: confirm first
    plan = world.step(
        strict,
        Checked("fast", result(Verdict.FAIL, "success-rate = 50 (want >= 99)"), world.now + 1),
        advance=1,
    )
    assert SetSelector({"app": "web", TWIN_LABEL: "blue"}) in plan.actions
    assert world.twins["green"].replicas == 0
    assert world.state.failed_revision == "r2"
    assert phase(strict, world.state) is Phase.ROLLED_BACK
    assert "success-rate = 50" in world.events[-1].message


def test_a_failure_within_the_limit_keeps_the_step_and_checks_again() -> None:
    world = World().adopted(CANARY)  # failure-limit 1 by default
    release(world)
    world.settle(CANARY)
    plan = world.fail(CANARY)
    assert world.state.canary == "green" and world.state.failed == 1
    assert plan.requeue_after == 1.0  # the next scrape, not a whole interval
    world.step(CANARY, Checked("fast", result(Verdict.FAIL), world.now + 1), advance=1)
    assert world.state.canary is None and world.state.failed_revision == "r2"


def test_missing_data_never_promotes_and_halts_after_the_limit() -> None:
    world = serving_canary(CANARY)
    for _ in range(CANARY.analysis.no_data_limit):
        world.step(CANARY, result(Verdict.NO_DATA), advance=10)
        assert world.state.step == 0 and world.state.canary == "green"
    world.step(CANARY, result(Verdict.NO_DATA), advance=10)
    assert phase(CANARY, world.state) is Phase.HALTED
    assert world.selector == {"app": "web", SERVICE_LABEL: "web"}  # traffic unchanged
    assert "RolloutHalted" in world.reasons()


def test_no_data_keeps_the_window_start_so_requests_add_up() -> None:
    world = serving_canary(CANARY)
    start = world.state.window_start
    world.step(CANARY, result(Verdict.NO_DATA), advance=10)
    assert analysis_window(CANARY, world.state, world.now + 10) == (start, world.now + 10)


def test_no_data_limit_with_rollback_policy_rolls_back() -> None:
    policy = spec(steps="50", analysis="no-data-limit: 0\non-limit: rollback")
    world = serving_canary(policy)
    world.step(policy, result(Verdict.NO_DATA), advance=10)
    assert world.state.failed_revision == "r2" and world.state.canary is None


def test_an_invalid_query_halts_with_invalid_spec_instead_of_failing_the_release() -> None:
    world = serving_canary(CANARY)
    world.step(CANARY, result(Verdict.ERROR, "bad_data", invalid=True), advance=10)
    assert phase(CANARY, world.state) is Phase.HALTED
    assert world.state.failed == 0 and "InvalidSpec" in world.reasons()


def test_errors_beyond_the_limit_halt() -> None:
    world = serving_canary(CANARY)
    for _ in range(CANARY.analysis.error_limit + 1):
        world.step(CANARY, result(Verdict.ERROR, "Prometheus unavailable"), advance=10)
    assert phase(CANARY, world.state) is Phase.HALTED


def test_canary_that_never_gets_ready_is_rolled_back_at_the_progress_deadline() -> None:
    quick = spec(steps="50", progress_deadline="60s")
    world = World().adopted(quick)
    release(world)
    world.pending = {"green"}  # the canary's pods (not the stable twin's: see below)
    plan = world.step(quick)
    assert plan.requeue_after == pytest.approx(60.001)
    world.step(quick, advance=61)
    assert "ProgressDeadlineExceeded" in world.reasons()
    assert world.state.failed_revision == "r2"


def test_a_failed_revision_is_not_retried_until_the_source_changes() -> None:
    strict = spec(steps="50", failure_limit="0")
    world = serving_canary(strict)
    world.fail(strict)
    world.events.clear()
    world.settle(strict)
    assert world.state.canary is None and "RolloutStarted" not in world.reasons()
    release(world, "r3")
    world.step(strict)
    assert world.state.canary_revision == "r3"


def test_retry_rolls_a_failed_revision_out_again() -> None:
    strict = spec(steps="50", failure_limit="0")
    world = serving_canary(strict)
    world.fail(strict)
    world.action = "retry 1"
    world.step(strict)
    assert world.state.canary_revision == "r2" and "RetryRequested" in world.reasons()
    world.step(strict)  # the same annotation value is not acted on twice
    assert world.reasons().count("RetryRequested") == 1


def test_abort_rolls_back_and_records_who_asked() -> None:
    world = serving_canary(CANARY)
    world.action = "abort"
    world.step(CANARY)
    assert world.state.canary is None and world.selector[TWIN_LABEL] == "blue"
    assert any("tester" in e.message for e in world.events if e.reason == "Aborted")


@pytest.mark.parametrize(
    "edited", [spec(steps="50"), spec(steps="25,50,75", strategy="blue-green")]
)
def test_steps_shortened_past_the_step_in_flight_go_on_at_the_last_step_judged_afresh(
    edited: RolloutSpec,
) -> None:
    # An SRE shortens the steps (or switches to blue-green) to finish sooner,
    # while the rollout is at step 3 of 3. Before: every cycle raised an
    # IndexError, so the Service was stuck and nothing said why.
    three = spec(steps="25,50,75")
    world = serving_canary(three)
    for _ in range(2):
        world.step(three, result(Verdict.PASS), advance=10)
        world.settle(three)
    assert world.state.step == 2 and world.state.step_ready
    world.events.clear()
    world.step(edited, advance=1)
    world.settle(edited)
    assert world.state.canary == "green" and world.state.step == 0
    assert world.reasons()[0] == "StepsChanged"
    ready = world.state.step_ready
    assert ready == world.now  # the window starts again, at the step's own weight
    # Nothing promotes before the last step has passed a check of its own.
    world.step(edited, advance=1)
    assert world.state.canary == "green" and "Promoted" not in world.reasons()
    world.step(edited, result(Verdict.PASS), advance=10)
    world.settle(edited)
    assert world.state.canary is None and world.state.stable == "green"
    assert "Promoted" in world.reasons()


def test_promote_skips_the_remaining_steps_but_still_waits_for_ready_pods() -> None:
    world = serving_canary(CANARY)
    world.action = "promote"
    world.ready = False
    world.step(CANARY)
    assert world.state.promoting and world.state.canary == "green"
    world.ready = True
    world.step(CANARY)
    assert world.state.stable == "green"


def test_pause_holds_the_step_and_resume_continues() -> None:
    world = serving_canary(CANARY)
    world.action = "pause"
    world.step(CANARY)
    assert phase(CANARY, world.state) is Phase.PAUSED
    assert analysis_window(CANARY, world.state, world.now + 100) is None
    world.action = "resume"
    world.step(CANARY)
    assert phase(CANARY, world.state) is Phase.PROGRESSING


def test_abort_right_after_promotion_flips_back_in_one_patch() -> None:
    world = serving_canary(CANARY)
    world.step(CANARY, result(Verdict.PASS), advance=10)
    world.settle(CANARY)
    world.step(CANARY, result(Verdict.PASS), advance=10)
    assert world.state.stable == "green"
    world.action = "abort"
    plan = world.step(CANARY, advance=5)
    assert [a for a in plan.actions if isinstance(a, SetSelector)] == [
        SetSelector({"app": "web", TWIN_LABEL: "blue"})
    ]
    after = world.state
    assert after.stable == "blue" and after.stable_revision == "r1"
    assert after.failed_revision == "r2"


def test_the_old_twin_scales_down_after_the_delay() -> None:
    world = serving_canary(CANARY)
    world.step(CANARY, result(Verdict.PASS), advance=10)
    world.settle(CANARY)
    plan = world.step(CANARY, result(Verdict.PASS), advance=10)
    assert plan.requeue_after == CANARY.scale_down_delay
    world.step(CANARY, advance=CANARY.scale_down_delay - 1)
    assert world.twins["blue"].replicas == 3
    world.step(CANARY, advance=1)
    assert world.twins["blue"].replicas == 0


def test_with_no_scale_down_delay_the_old_twin_goes_with_no_status_write_of_its_own() -> None:
    # scale-down-delay 0 keeps no window for an abort: nothing of one is
    # in the status, so the scale-down changes nothing durable (issue #12).
    now = spec(steps="25,50", scale_down_delay="0s")
    world = serving_canary(now)
    world.step(now, result(Verdict.PASS), advance=10)
    world.settle(now)
    plan = world.step(now, result(Verdict.PASS), advance=10)
    assert world.selector == {"app": "web", TWIN_LABEL: "green"}
    promoted = world.state
    assert promoted.scale_down is None and promoted.previous_revision == ""
    assert "scales down once the Service has left it" in world.events[-1].message
    assert plan.requeue_after == 0.0
    plan = world.step(now, advance=1)
    assert world.twins["blue"].replicas == 0
    assert durable(world.state) == durable(promoted)
    # ... and an abort finds no window to flip back in.
    world.action = "abort"
    world.step(now, advance=1)
    assert world.state.stable == "green" and world.selector[TWIN_LABEL] == "green"


def test_blue_green_flips_only_when_the_preview_has_every_endpoint() -> None:
    bg = spec(strategy="blue-green")
    world = World().adopted(bg)
    release(world)
    # The preview's pods not ready yet; the stable twin's are (with
    # `ready = False` it had none, and a release now waits for one).
    world.pending = {"green"}
    world.step(bg)
    assert world.preview == {"app": "web", TWIN_LABEL: "green"}
    assert world.selector == {"app": "web", TWIN_LABEL: "blue"}
    world.pending = set()
    world.settle(bg)
    world.step(bg, result(Verdict.PASS), advance=10)
    assert world.selector == {"app": "web", TWIN_LABEL: "green"}


def test_a_preview_serving_is_an_event_a_first_canary_step_a_note_in_the_history() -> None:
    for the_spec, noted in ((spec(strategy="blue-green"), False), (CANARY, True)):
        world = World().adopted(the_spec)
        release(world)
        world.settle(the_spec)
        ready = [e for e in world.events if e.reason == "StepReady"]
        assert [e.noted for e in ready] == [noted], the_spec.strategy


def test_source_scaled_up_again_is_scaled_back_and_the_twins_follow() -> None:
    world = World().adopted(CANARY)
    world.source = replace(world.source, replicas=5)
    plan = world.step(CANARY)
    assert ScaleSource(0) in plan.actions
    assert world.state.replicas == 5 and world.twins["blue"].replicas == 5
    assert "SourceScaled" in world.reasons()


def test_a_new_change_mid_rollout_restarts_from_the_first_step() -> None:
    world = serving_canary(CANARY)
    world.step(CANARY, result(Verdict.PASS), advance=10)
    release(world, "r3")
    world.step(CANARY)
    assert world.state.canary_revision == "r3" and world.state.step == 0
    assert "RolloutRestarted" in world.reasons()


def test_reverting_the_source_mid_rollout_cancels_without_marking_a_failure() -> None:
    world = serving_canary(CANARY)
    release(world, "r1")
    world.step(CANARY)
    assert world.state.canary is None and world.state.failed_revision == ""


def test_invalid_annotation_warns_once_and_changes_nothing() -> None:
    world = World().adopted(CANARY)
    error = SpecError("canary.io/steps", "'x' is not a list")
    plan = world.step(error)
    assert plan.actions and all(type(a).__name__ == "Emit" for a in plan.actions)
    assert world.reasons() == ["InvalidSpec"]
    assert world.step(error).actions == ()
    assert phase(error, world.state) is Phase.INVALID
    world.step(CANARY)
    assert world.reasons()[-1] == "SpecFixed"


def test_unmanaging_hands_traffic_back_to_the_source_at_full_size() -> None:
    world = World().adopted(CANARY)
    world.step(None)
    assert world.source.replicas == 3 and not world.released
    world.source = replace(world.source, ready=3)
    world.step(None)
    assert world.selector == {"app": "web"} and world.twins == {} and world.released


def test_a_service_never_managed_is_left_alone() -> None:
    plan = decide(None, State(), World().observed(), None, 0.0)
    assert plan.actions == () and plan.state == State()


def test_missing_source_is_reported_not_acted_on() -> None:
    world = World(source=Source())
    plan = world.step(CANARY)
    assert [type(a).__name__ for a in plan.actions] == ["Emit"]
    assert world.reasons() == ["SourceMissing"]


@pytest.mark.parametrize(
    ("stable", "weight", "expected"),
    [(3, 10, 1), (3, 25, 1), (3, 50, 3), (10, 10, 1), (10, 50, 10), (9, 25, 3), (1, 99, 99)],
)
def test_canary_replicas_for_a_weight(stable: int, weight: int, expected: int) -> None:
    assert canary_replicas(stable, weight) == expected


def test_undo_rolls_an_earlier_revision_out_and_keeps_the_undone_one_out() -> None:
    one_step = spec(steps="50")
    world = serving_canary(one_step)
    world.step(one_step, result(Verdict.PASS), advance=10)
    assert world.state.stable_revision == "r2"
    world.revisions = {1: "r1", 2: "r2"}
    world.action = "undo 1 now"
    world.step(one_step, advance=40)
    assert world.state.canary_revision == "r1" and world.state.undo_of == "r2"
    assert "UndoRequested" in world.reasons()
    world.settle(one_step)
    world.step(one_step, result(Verdict.PASS), advance=10)
    after = world.state
    assert after.stable_revision == "r1" and after.failed_revision == "r2"
    world.settle(one_step)
    assert world.state.canary is None  # the source's r2 is not rolled out again by itself


def test_undo_to_an_unknown_revision_is_refused_with_a_warning() -> None:
    world = World().adopted(CANARY)
    world.action = "undo 7"
    world.step(CANARY)
    assert world.state.canary is None
    assert world.events[-1].reason == "ActionIgnored" and world.events[-1].warning


def test_a_new_change_during_an_undo_wins() -> None:
    world = serving_canary(CANARY)
    world.step(CANARY, result(Verdict.PASS), advance=10)
    world.settle(CANARY)
    world.step(CANARY, result(Verdict.PASS), advance=10)
    world.revisions = {1: "r1"}
    world.action = "undo 1"
    world.step(CANARY)
    release(world, "r3")
    world.step(CANARY)
    assert world.state.canary_revision == "r3" and world.state.undo_of == ""


def test_a_step_whose_pods_are_already_in_place_still_comes_back_for_its_analysis() -> None:
    same_pods = spec(steps="10,25")  # 3 replicas: one canary pod at both weights
    world = serving_canary(same_pods)
    plan = world.step(same_pods, result(Verdict.PASS), advance=10)
    assert world.state.step == 1 and world.state.step_ready == world.now
    # Back for the first fast check (two scrapes), and the scheduled one is due later.
    assert plan.requeue_after == 2.0
    assert analysis_window(same_pods, world.state, world.now + same_pods.interval) is not None


def gated(kind: str) -> RolloutSpec:
    return spec(
        steps="25,50",
        analysis=f"gates: [{{name: approve, when: {kind}, url: 'http://127.0.0.1:1/x'}}]",
    )


def answer(kind: str, is_open: bool) -> GateResult:
    return GateResult(
        kind,
        (
            GateAnswer(
                "approve",
                kind,
                is_open,
                200 if is_open else 500,
                "HTTP 200" if is_open else "HTTP 500",
                1,
                1.0,
            ),
        ),
    )


def test_a_closed_pre_step_gate_holds_the_weight_and_asks_again_each_interval() -> None:
    gate_spec = gated("pre-step")
    world = serving_canary(gate_spec)
    world.step(gate_spec, result(Verdict.PASS), advance=10)
    assert world.state.step == 0 and world.state.gate_wait == "pre-step"
    assert gate_due(gate_spec, world.state, world.now) is GateKind.PRE_STEP
    world.gate = answer("pre-step", False)
    world.step(gate_spec)
    assert world.state.step == 0 and phase(gate_spec, world.state) is Phase.HALTED
    assert "GateClosed" in world.reasons()
    assert gate_due(gate_spec, world.state, world.now + 1) is None
    assert gate_due(gate_spec, world.state, world.now + 10) is GateKind.PRE_STEP
    world.gate = answer("pre-step", True)
    # The fast looks watched the canary meanwhile (an open gate moves on only
    # over what one has read: test_slow_prometheus).
    world.step(gate_spec, Checked("fast", result(Verdict.PASS), world.now + 10), advance=10)
    assert world.state.step == 1 and world.state.gate_wait == ""
    assert "GateOpened" in world.reasons()


def at_the_pre_promotion_gate() -> tuple[RolloutSpec, World]:
    """Both steps of 25,50 passed; the rollout asks its pre-promotion gate."""
    gate_spec = gated("pre-promotion")
    world = serving_canary(gate_spec)
    world.step(gate_spec, result(Verdict.PASS), advance=10)
    world.settle(gate_spec)
    world.step(gate_spec, result(Verdict.PASS), advance=10)
    return gate_spec, world


def test_a_pre_promotion_gate_must_open_before_the_flip() -> None:
    gate_spec, world = at_the_pre_promotion_gate()
    world.gate = answer("pre-promotion", False)
    world.step(gate_spec)
    held = world.state
    assert held.stable == "blue" and held.canary == "green"
    world.gate = answer("pre-promotion", True)
    world.step(gate_spec, Checked("fast", result(Verdict.PASS), world.now + 10), advance=10)
    assert world.state.stable == "green"


def test_a_pre_rollout_gate_keeps_the_canary_at_zero_traffic() -> None:
    gate_spec = gated("pre-rollout")
    world = World().adopted(gate_spec)
    release(world)
    world.step(gate_spec)
    assert world.state.gate_wait == "pre-rollout" and "green" not in world.twins
    world.gate = answer("pre-rollout", True)
    world.settle(gate_spec)
    assert world.twins["green"].replicas == canary_replicas(3, 25)


FAST = spec(steps="25,50", analysis="scrape-interval: 1s")


def test_a_failure_counts_only_once_the_next_scrape_fails_too() -> None:
    world = serving_canary(FAST)
    plan = world.step(FAST, result(Verdict.FAIL), advance=10)
    assert plan.requeue_after == 1.0 and world.state.failed == 0
    due = analysis_due(FAST, world.state, world.now + 1, 1.0)
    assert due is not None and due.kind == "fast" and due.start == world.now - 1  # newest scrape
    world.step(FAST, Checked("fast", result(Verdict.FAIL), world.now + 1), advance=1)
    assert world.state.failed == 1 and world.state.canary == "green"
    world.step(FAST, Checked("fast", result(Verdict.FAIL), world.now + 1), advance=1)
    assert world.state.canary is None and world.state.failed_revision == "r2"


def test_a_blip_that_is_over_by_the_next_scrape_does_not_advance_the_step_early() -> None:
    world = serving_canary(FAST)
    world.step(FAST, result(Verdict.FAIL), advance=10)
    world.step(FAST, Checked("fast", result(Verdict.PASS), world.now + 1), advance=1)
    assert world.state.step == 0 and world.state.failed == 0
    assert world.state.window_start == world.now  # a whole passing interval from here
    assert analysis_window(FAST, world.state, world.now + 9) is None
    world.step(FAST, result(Verdict.PASS), advance=10)
    assert world.state.step == 1


def test_no_analysis_runs_while_the_rollout_waits_on_a_gate() -> None:
    gate_spec = gated("pre-step")
    world = serving_canary(gate_spec)
    world.step(gate_spec, result(Verdict.PASS), advance=10)
    assert world.state.gate_wait == "pre-step"
    assert analysis_window(gate_spec, world.state, world.now + 100) is None


def test_a_gate_removed_from_the_spec_while_waited_on_lets_the_rollout_go_on() -> None:
    gate_spec = gated("pre-step")
    world = serving_canary(gate_spec)
    world.step(gate_spec, result(Verdict.PASS), advance=10)
    world.step(CANARY)  # the gates are gone from canary.io/analysis
    assert world.state.gate_wait == "" and world.state.step == 1


def test_a_thin_scrape_after_a_tolerated_two_scrape_blip_is_not_a_second_failure() -> None:
    # Found by the peer benchmark: the scrape after a confirmed, tolerated
    # failure had too few requests to judge, and was counted as the second
    # failure (a good release with a two-scrape blip would be rolled back).
    world = serving_canary(FAST)
    world.step(FAST, Checked("fast", result(Verdict.FAIL), world.now + 3), advance=3)
    world.step(FAST, Checked("fast", result(Verdict.FAIL), world.now + 1), advance=1)
    assert world.state.failed == 1 and world.state.canary == "green"  # tolerated
    thin = result(Verdict.NO_DATA, "14 requests to the canary since the step began; waiting for 20")
    world.step(FAST, Checked("fast", thin, world.now + 1), advance=1)
    assert world.state.canary == "green" and world.state.failed == 1
    world.step(FAST, Checked("fast", result(Verdict.PASS), world.now + 1), advance=1)
    assert world.state.canary == "green" and world.state.failed == 1 and not world.state.fast_failed


def test_a_suspected_failure_counts_when_the_next_scheduled_check_cannot_tell_either() -> None:
    # Found by the peer benchmark: a failing scheduled check waits for the
    # next scrape; when the next check is a scheduled one with too few
    # requests, the suspicion was dropped and the rollback came 5 s later.
    world = serving_canary(FAST)
    world.step(FAST, result(Verdict.FAIL, "success-rate = 50"), advance=10)
    assert world.state.failed == 0 and world.state.suspected
    world.step(FAST, result(Verdict.NO_DATA, "3 requests"), advance=1)
    assert world.state.failed == 1 and not world.state.suspected and not world.state.fast_failed
    assert any(
        "success-rate = 50" in e.message for e in world.events if e.reason == "AnalysisFailed"
    )


def test_a_suspected_failure_confirmed_by_the_next_scheduled_check_counts_once() -> None:
    world = serving_canary(FAST)
    world.step(FAST, result(Verdict.FAIL, "success-rate = 50"), advance=10)
    world.step(FAST, result(Verdict.FAIL, "success-rate = 40"), advance=1)
    assert world.state.failed == 1 and world.state.canary == "green"


def test_a_suspicion_does_not_follow_the_rollout_into_its_next_step() -> None:
    world = serving_canary(FAST)
    world.step(FAST, result(Verdict.FAIL, "success-rate = 50"), advance=10)
    world.step(FAST, result(Verdict.PASS), advance=1)
    assert world.state.step == 0 and world.state.window_start == world.now  # a whole interval again
    world.step(FAST, result(Verdict.PASS), advance=10)
    world.settle(FAST)
    assert world.state.step == 1 and world.state.step_ready
    assert not world.state.suspected and not world.state.fast_failed
    world.step(FAST, Checked("fast", result(Verdict.NO_DATA), world.now + 2), advance=2)
    assert world.state.failed == 0 and world.state.canary == "green"


# -- what on-call edits mid-rollout (found by review) ---------------------------------


@pytest.mark.parametrize(
    ("before", "edited"),
    [
        (spec(steps="25,50"), spec(steps="25,90")),
        (spec(steps="50"), spec(strategy="blue-green")),
        (spec(strategy="blue-green"), spec(steps="90")),
    ],
)
def test_a_step_whose_weight_is_edited_is_judged_afresh_at_its_new_weight(
    before: RolloutSpec, edited: RolloutSpec
) -> None:
    # Before: the window begun at the old weight went on, and the next check
    # (1 s at 90 %) promoted.
    world = serving_canary(before)
    if len(stages_of(before)) > 1:
        world.step(before, result(Verdict.PASS), advance=10)
        world.settle(before)
    world.step(before, advance=9)
    world.events.clear()
    world.step(edited)
    world.settle(edited)
    assert world.reasons()[0] == "StepsChanged" and world.state.step_ready == world.now
    assert analysis_due(edited, world.state, world.now + 1, 1.0) is None
    due = analysis_due(edited, world.state, world.now + 10, 1.0)
    assert due is not None and due.start == world.now  # a whole interval at the new weight


def stages_of(the_spec: RolloutSpec) -> tuple[int, ...]:
    return the_spec.steps if the_spec.strategy == "canary" else (0,)


def test_a_pre_step_gate_wait_whose_step_became_the_last_promotes_instead() -> None:
    # Before: the gate opening (or removed) advanced to a step that no longer
    # existed: an IndexError every cycle.
    gate_spec = gated("pre-step")
    world = serving_canary(gate_spec)
    world.step(gate_spec, result(Verdict.PASS), advance=10)
    assert world.state.gate_wait == "pre-step"
    shortened = spec(steps="25", analysis=gate_spec.analysis.model_dump_json(by_alias=True))
    world.gate = answer("pre-step", True)
    world.step(shortened, advance=1)
    world.gate = None
    world.settle(shortened)
    assert world.state.canary is None and world.state.stable_revision == "r2"
    assert "Promoted" in world.reasons()


def test_a_pre_promotion_gate_wait_with_steps_added_advances_instead() -> None:
    gate_spec, world = at_the_pre_promotion_gate()
    assert world.state.gate_wait == "pre-promotion" and world.state.step == 1
    longer = spec(steps="25,50,75", analysis=gate_spec.analysis.model_dump_json(by_alias=True))
    world.gate = answer("pre-promotion", True)
    world.step(longer, advance=1)
    world.gate = None
    world.settle(longer)
    assert world.state.canary == "green" and world.state.step == 2
    assert "Promoted" not in world.reasons()


def test_a_promotion_switched_to_blue_green_flips_through_the_preview() -> None:
    # Before: it waited for preview endpoints with no preview Service and
    # rolled back at the progress deadline.
    one = spec(steps="25")
    world = serving_canary(one)
    world.step(one, result(Verdict.PASS), advance=10)
    assert world.state.promoting
    blue_green = spec(strategy="blue-green")
    world.step(blue_green, advance=1)
    assert world.preview == {"app": "web", TWIN_LABEL: "green"}
    world.settle(blue_green)
    assert world.state.canary is None and world.state.stable_revision == "r2"


@pytest.mark.parametrize("how", ["annotation", "action", "gate"])
def test_time_paused_or_at_a_gate_does_not_count_against_the_progress_deadline(
    how: str,
) -> None:
    # Before: released while paused (or behind a closed pre-rollout gate) for
    # longer than the deadline, the rollout was rolled back the moment it moved.
    plain = spec(steps="25,50", progress_deadline="60s")
    held = {
        "annotation": spec(steps="25,50", progress_deadline="60s", paused="true"),
        "action": plain,
        "gate": spec(
            steps="25,50",
            progress_deadline="60s",
            analysis="gates: [{name: approve, when: pre-rollout, url: 'http://127.0.0.1:1/x'}]",
        ),
    }[how]
    world = World().adopted(plain)
    if how == "action":
        world.action = "pause 1"
        world.step(plain)
    release(world)
    if how == "gate":
        world.step(held, advance=1)
        world.gate = answer("pre-rollout", False)
    world.step(held, advance=1)
    world.step(held, advance=700)
    world.events.clear()
    if how == "action":
        world.action = "resume 2"
    if how == "gate":
        world.gate = answer("pre-rollout", True)
    world.ready = False  # the pods are slow to come up
    world.step(plain if how != "gate" else held, advance=1)
    world.gate = None
    world.settle(plain if how != "gate" else held)
    assert world.state.canary == "green" and "ProgressDeadlineExceeded" not in world.reasons()
    # The deadline still holds for the time the rollout moves.
    world.step(plain if how != "gate" else held, advance=61)
    assert world.state.canary is None and "ProgressDeadlineExceeded" in world.reasons()


def test_failure_limit_lowered_below_the_failures_counted_rolls_back() -> None:
    # Before: ignored until the next failure; passing checks then promoted.
    lenient = spec(steps="25,50", failure_limit="2")
    world = serving_canary(lenient)
    world.fail(lenient)
    assert world.state.failed == 1 and world.state.canary == "green"
    strict = spec(steps="25,50", failure_limit="0")
    world.step(strict, advance=1)
    assert world.state.canary is None and world.state.failed_revision == "r2"
    assert any("failure-limit is now 0" in e.message for e in world.events)


# -- found by a property-based run of decide() over random operations ------------------


@pytest.mark.parametrize("hold", ["paused", "gate"])
def test_a_canary_replaced_while_the_new_one_waits_stops_serving_at_once(hold: str) -> None:
    # Before: r3 replaced r2 while paused (or behind a closed pre-rollout
    # gate), and the twin kept serving r2 at its weight, unanalysed, for as
    # long as the pause or the gate lasted.
    world = serving_canary(CANARY)
    assert SERVICE_LABEL in world.selector  # r2 serves at its step's weight
    waiting = (
        spec(steps="25,50", paused="true")
        if hold == "paused"
        else spec(
            steps="25,50",
            analysis="gates: [{name: approve, when: pre-rollout, url: 'http://127.0.0.1:1/x'}]",
        )
    )
    release(world, "r3")
    world.step(waiting, advance=1)
    if hold == "gate":
        world.gate = answer("pre-rollout", False)
    for _ in range(3):
        world.step(waiting, advance=60)
    assert world.state.canary_revision == "r3"
    assert world.selector == {"app": "web", TWIN_LABEL: "blue"}


def test_a_check_taken_before_a_steps_edit_is_not_judged_as_the_edited_steps() -> None:
    # Before: handed in on the edit's own cycle, a check of step 1/2 at 25 %
    # promoted at once at the new single step of 10 % (the same one pod).
    world = serving_canary(CANARY)
    world.now += 10
    due = analysis_due(CANARY, world.state, world.now, world.scrape)
    assert due is not None and due.kind == "scheduled"
    edited = spec(steps="10")
    world.step(edited, Checked("scheduled", result(Verdict.PASS), due.end))
    world.settle(edited)
    assert world.state.canary == "green" and "StepsChanged" in world.reasons()
    assert "Promoted" not in world.reasons()


def test_a_pod_lost_late_in_a_long_step_gets_its_own_progress_deadline() -> None:
    # Before: a step longer than progress-deadline (interval 15m) that lost
    # its one canary pod for a moment (eviction, drain) was rolled back at once.
    long_steps = spec(steps="25,50", interval="15m")
    world = serving_canary(long_steps)
    world.step(long_steps, advance=620)
    world.twins["green"] = replace(world.twins["green"], ready=0, endpoints=0)
    world.ready = False
    world.step(long_steps, advance=1)
    assert world.state.canary == "green" and "ProgressDeadlineExceeded" not in world.reasons()
    world.step(long_steps, advance=601)  # the deadline still holds, counted from the loss
    assert world.state.canary is None and "ProgressDeadlineExceeded" in world.reasons()


def test_the_deadline_never_fails_a_step_on_the_controllers_own_pending_selector() -> None:
    # Before: a cycle coming later than the deadline (a failover) wrote the
    # selector that lets the ready canary serve, and in the same decision
    # rolled it back for having no endpoints.
    quick = spec(steps="25,50", progress_deadline="30s")
    world = World().adopted(quick)
    release(world)
    world.step(quick)
    plan = world.step(quick, advance=31)
    assert any(isinstance(a, SetSelector) for a in plan.actions)
    assert world.state.canary == "green" and "ProgressDeadlineExceeded" not in world.reasons()
    world.settle(quick)
    assert world.state.step_ready  # served, the step goes on


# -- found by the last review of this change ----------------------------------------------


def test_a_crashing_canary_is_rolled_back_on_the_deadline_even_in_a_selector_fight() -> None:
    # The deadline is not judged on the decision's own selector write only
    # when the pods are ready; a sync that resets the selector every cycle
    # must not keep a crash-looping canary forever.
    quick = spec(steps="25,50", progress_deadline="60s")
    world = serving_canary(quick)
    world.ready = False  # the canary's pods crash (and the stable's: World has one switch)
    for _ in range(12):
        world.selector = {"app": "web"}  # GitOps puts the original selector back
        world.step(quick, advance=10)
        if world.state.canary is None:
            break
    assert world.state.canary is None and "ProgressDeadlineExceeded" in world.reasons()


def test_a_crashing_canary_in_a_selector_fight_is_rolled_back_at_the_deadline_itself() -> None:
    # Pods not ready: the decision's own selector write defers nothing, not
    # even the few seconds a ready twin's endpoints get to follow it
    # (placement.FOLLOW_S), and the status says what is missing (pods), not
    # endpoints on their way.
    quick = spec(steps="25,50", progress_deadline="60s")
    world = serving_canary(quick)
    world.ready = False
    world.selector = {"app": "web"}
    world.step(quick, advance=1)
    lost = world.now
    assert world.state.unready_since == lost
    while world.state.canary is not None and world.now < lost + 120:
        assert "endpoints" not in world.state.message or "pods ready" in world.state.message, (
            world.state.message
        )
        world.selector = {"app": "web"}  # GitOps puts the original selector back
        world.step(quick, advance=1)
    assert "ProgressDeadlineExceeded" in world.reasons()
    assert world.now <= lost + 60 + 1, world.now - lost


def test_steps_edited_while_halted_on_prometheus_errors_judge_the_step_afresh() -> None:
    # Before: the halt stayed, no probe was ever due again (the step had no
    # window), and the Service was reconciled in a tight loop.
    halting = "on-limit: halt\nerror-limit: 0\nmetrics: [{name: success-rate, min: 99}]"
    before = spec(steps="25,50", analysis=halting)
    world = serving_canary(before)
    world.step(before, result(Verdict.ERROR), advance=10)
    assert world.state.halt_kind == "errors"
    edited = spec(steps="10,50", analysis=halting)  # the step in flight: 25 -> 10 %
    world.step(edited, advance=1)
    world.settle(edited)
    assert not world.state.halted and world.state.step_ready == world.now
    assert world.state.requested_weight == 10 and "StepsChanged" in world.reasons()


# -- a check that decided nothing is not a record ------------------------------------------


def test_a_check_handed_in_after_the_step_lost_its_pods_decides_nothing() -> None:
    # Before: a check started while the step served and finished after a pod
    # was lost was recorded in the history as a pass of the step, though no
    # decision used it (seen as a third pass of step 2 after a restart).
    world = serving_canary(CANARY)
    step, checked = world.state.step, world.state.checked
    world.ready = False
    plan = world.step(CANARY, result(Verdict.PASS), advance=11)
    assert not plan.judged
    assert (world.state.step, world.state.checked) == (step, checked)
    assert world.state.unready_since  # and no scheduled check is due while it lasts
    due = analysis_due(CANARY, world.state, world.now + 60, world.scrape)
    assert due is None or due.kind == "fast", due  # failure-only looks at what serves
    world.ready = True
    world.step(CANARY, advance=1)
    world.settle(CANARY)
    assert not world.state.unready_since
    plan = world.step(CANARY, result(Verdict.PASS), advance=11)
    assert plan.judged and world.state.step == step + 1


def test_a_check_handed_in_as_the_release_is_paused_or_superseded_decides_nothing() -> None:
    world = serving_canary(CANARY)
    world.action = "pause"
    plan = world.step(CANARY, result(Verdict.PASS), advance=11)
    assert world.state.paused and not plan.judged
    world.action = "resume"
    world.step(CANARY)
    release(world, "r3")
    plan = world.step(CANARY, result(Verdict.PASS), advance=11)
    assert world.state.canary_revision == "r3" and not plan.judged


# -- a fast look's failure is confirmed or cleared by the next fast look ---------------------


def test_a_failure_a_fast_look_saw_is_never_averaged_away_by_a_scheduled_check() -> None:
    # Before: the scheduled check due at the next scrape ran instead of the
    # confirming fast look, passed over its whole window, and promoted.
    last = spec(steps="50", analysis="scrape-interval: 1s")
    world = serving_canary(last)
    failing = result(Verdict.FAIL, "success-rate = 50")
    world.step(last, Checked("fast", failing, world.now + 9), advance=9)
    assert world.state.fast_failed and not world.state.suspected
    due = analysis_due(last, world.state, world.now + 1, 1.0)
    assert due is not None and due.kind == "fast"  # the confirming look, not the scheduled one
    world.step(last, Checked("fast", failing, world.now + 1), advance=1)  # confirmed: counted
    assert world.state.failed == 1


def test_a_fast_look_too_quiet_to_tell_leaves_it_to_the_next_reading_both_scrapes() -> None:
    # A canary at a low weight: 10 requests a scrape against min-requests 20.
    # Before, the quiet look dropped the suspicion, and a canary failing
    # every other request was counted only by the scheduled check, an
    # interval later (bench.peers: 9 s p50 from its first failing scrape).
    last = spec(steps="50", analysis="scrape-interval: 1s")
    world = serving_canary(last)
    failing_at = world.now + 9
    world.step(last, Checked("fast", result(Verdict.FAIL, "x"), failing_at), advance=9)
    world.step(last, Checked("fast", result(Verdict.NO_DATA), world.now + 1), advance=1)
    assert world.state.fast_failed == failing_at and world.state.failed == 0
    due = analysis_due(last, world.state, world.now + 1, 1.0)
    # Every scrape since the failing one (its sample the window's first).
    assert due is not None and due.kind == "fast" and due.start == failing_at - 1.0, due
    world.step(last, Checked("fast", result(Verdict.FAIL, "x"), due.end), advance=1)
    assert world.state.failed == 1


def test_looks_too_quiet_to_tell_add_up_until_they_can() -> None:
    # Before any failure, the same: at 10 requests a scrape (min-requests 20)
    # a two-scrape look could rarely tell, and a canary failing from its
    # first request waited for chance or for the scheduled check.
    last = spec(steps="50", analysis="scrape-interval: 1s")
    world = serving_canary(last)
    quiet_at = world.now + 3
    world.step(last, Checked("fast", result(Verdict.NO_DATA), quiet_at), advance=3)
    assert world.state.quiet_from == quiet_at
    due = analysis_due(last, world.state, world.now + 1, 1.0)
    assert due is not None and due.kind == "fast" and due.start == quiet_at - 2.0, due
    world.step(last, Checked("fast", result(Verdict.PASS), world.now + 1), advance=1)
    assert world.state.quiet_from == 0.0
    due = analysis_due(last, world.state, world.now + 1, 1.0)
    assert due is not None and due.start == world.now + 1 - 2.0, due


def test_an_interval_too_quiet_to_tell_lets_the_scheduled_check_judge() -> None:
    last = spec(steps="50", analysis="scrape-interval: 1s")
    world = serving_canary(last)
    world.step(last, Checked("fast", result(Verdict.FAIL, "x"), world.now + 9), advance=9)
    for _ in range(10):
        world.step(last, Checked("fast", result(Verdict.NO_DATA), world.now + 1), advance=1)
    assert not world.state.fast_failed and world.state.failed == 0
    due = analysis_due(last, world.state, world.now + 1, 1.0)
    assert due is not None and due.kind == "scheduled"


def test_a_blip_in_one_scrape_then_a_quiet_one_then_clean_traffic_counts_nothing() -> None:
    last = spec(steps="50", analysis="scrape-interval: 1s")
    world = serving_canary(last)
    world.step(last, Checked("fast", result(Verdict.FAIL, "x"), world.now + 9), advance=9)
    world.step(last, Checked("fast", result(Verdict.NO_DATA), world.now + 1), advance=1)
    world.step(last, Checked("fast", result(Verdict.PASS), world.now + 1), advance=1)
    assert not world.state.fast_failed and world.state.failed == 0


def test_a_fast_error_while_confirming_hands_over_to_the_scheduled_check() -> None:
    # Kept, the failure would hold the scheduled check back while Prometheus
    # fails: fast looks due at once, forever, and error-limit never reached.
    last = spec(steps="50", analysis="scrape-interval: 1s")
    world = serving_canary(last)
    world.step(last, Checked("fast", result(Verdict.FAIL, "x"), world.now + 9), advance=9)
    world.step(last, Checked("fast", result(Verdict.ERROR, "timeout"), world.now + 1), advance=1)
    assert not world.state.fast_failed
    due = analysis_due(last, world.state, world.now + 1, 1.0)
    assert due is not None and due.kind == "scheduled"


def test_a_team_scaling_its_app_up_is_growth_not_a_degraded_twin() -> None:
    # Before: the cycle that scaled the stable twin up to the team's new size
    # judged it against that size at once: a Degraded Warning ("users may see
    # failures") on every scale-up, then Recovered once the pods were ready.
    world = World().adopted(CANARY)
    world.source = replace(world.source, replicas=5)
    world.step(CANARY, advance=1)
    world.settle(CANARY)
    assert world.twins["blue"].replicas == 5 and "Degraded" not in world.reasons()
    world.ready = False  # and a real shortfall is still told
    world.step(CANARY, advance=1)
    assert "Degraded" in world.reasons()


def test_an_answer_from_a_gate_edited_while_it_was_asked_opens_nothing() -> None:
    """The team replaced the pre-step gate's URL (a test hook swapped for the
    real approval service) while the old one was being asked: its "open"
    passed the new gate, and the step advanced on an approval nobody gave."""
    old = gated("pre-step")
    world = serving_canary(old)
    world.step(old, result(Verdict.PASS), advance=10)
    assert world.state.gate_wait == "pre-step"
    new = spec(
        steps="25,50",
        analysis="gates: [{name: approve, when: pre-step, url: 'http://127.0.0.1:2/real'}]",
    )
    world.gate = replace(answer("pre-step", True), asked=old.analysis.gates_on(GateKind.PRE_STEP))
    world.step(new)
    assert world.state.step == 0 and world.state.gate_wait == "pre-step"
    assert gate_due(new, world.state, world.now) is GateKind.PRE_STEP  # asked again at once
    world.gate = replace(answer("pre-step", True), asked=new.analysis.gates_on(GateKind.PRE_STEP))
    world.step(new, advance=1)
    assert world.state.step == 1 and world.state.gate_wait == ""
