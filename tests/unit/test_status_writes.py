"""Fewer Service writes per step (issue #12), without a status that says
less than what is observed: a change of progress alone (pods coming up) is
written at most every few seconds, and the status rides along with a
selector write only when nothing after it can fail the decision and no
Event follows it (whoever sees the new status finds its Events)."""

from __future__ import annotations

from dataclasses import replace

from canary.model import (
    ApplyPreview,
    Claim,
    ClaimSource,
    Emit,
    Record,
    ScaleTwin,
    SetSelector,
    State,
)
from canary.status_writes import carriable, holdable, moves_traffic, progress_only

STEP = State(stable="blue", canary="green", step=1, effective_weight=20.0, message="waiting 1/4")


def test_pods_coming_up_are_progress_only() -> None:
    after = replace(STEP, effective_weight=40.0, message="waiting 2/4", fast_checked=3.0)
    assert progress_only(STEP, after)


def test_a_step_ready_or_a_new_step_is_not_progress_only() -> None:
    assert not progress_only(STEP, replace(STEP, step_ready=5.0, message="analysing"))
    assert not progress_only(STEP, replace(STEP, step=2, message="waiting 0/8"))
    assert not progress_only(STEP, replace(STEP, halted="Prometheus down"))


def test_the_status_rides_with_a_selector_that_ends_the_plan() -> None:
    selector = SetSelector({"app": "web"})
    claim = ClaimSource(Claim())
    assert carriable([ScaleTwin("green", 1), selector])
    assert carriable([selector, Record("r2", "promoted", ""), claim])


def test_not_when_an_event_or_a_cluster_write_follows() -> None:
    selector = SetSelector({"app": "web"})
    assert not carriable([selector, Emit("Promoted", "revision r2 promoted")])
    assert not carriable([selector, ScaleTwin("green", 0)])  # a rollback's order stays
    assert not carriable([ScaleTwin("green", 1)])
    assert not carriable([selector, ScaleTwin("blue", 1), SetSelector({"app": "x"})])


# -- the hold: a change a restart can do without waits for the step's pods --------

SERVING = State(
    stable="blue",
    stable_revision="r1",
    canary="green",
    canary_revision="r2",
    rollout_started=100.0,
    step=0,
    step_started=100.0,
    step_ready=101.0,
    requested_weight=25,
    effective_weight=20.0,
    message="analysing",
)
ADVANCED = replace(
    SERVING,
    step=1,
    step_started=111.0,
    step_ready=0.0,
    checked=0.0,
    requested_weight=50,
    message="moving to step 2/3",
)


def test_a_step_advance_waiting_for_its_pods_is_held() -> None:
    assert holdable(SERVING, ADVANCED)
    # and so is the start of a rollout, until its first pods serve
    healthy = State(stable="blue", stable_revision="r1", message="serving r1")
    started = replace(SERVING, step_ready=0.0, message="waiting for r2's pods")
    assert holdable(healthy, started)


def test_the_pods_serving_end_the_hold() -> None:
    assert not holdable(SERVING, replace(ADVANCED, step_ready=112.0))


def test_failures_suspicions_halts_and_ends_are_written_at_once() -> None:
    for change in (
        {"failed": 1},
        {"no_data": 1},
        {"errors": 1},
        {"recheck": True},
        {"suspected": "success-rate"},
        {"fast_failed": 110.0},
        {"halted": "Prometheus down", "halt_kind": "errors"},
        {"promoting": True},
        {"gate_wait": "pre-rollout"},
        {"paused": True},
    ):
        assert not holdable(SERVING, replace(ADVANCED, **change)), change
    ended = replace(SERVING, canary=None, canary_revision="", step=0, step_ready=0.0)
    assert not holdable(SERVING, ended)
    assert not holdable(SERVING, replace(ended, stable="green", stable_revision="r2"))


def test_a_release_replaced_mid_rollout_is_written_at_once() -> None:
    replaced = replace(ADVANCED, canary_revision="r3", step=0, rollout_started=120.0)
    assert not holdable(SERVING, replaced)


def test_a_step_going_back_or_judged_afresh_is_written_at_once() -> None:
    assert not holdable(ADVANCED, replace(ADVANCED, step=0))
    # TwinRestored: the canary's pods put back after a hand edit, the step
    # judged again on its own pods; a successor must not resume the old window.
    learned = replace(SERVING, canary_pods="web-green-5d8f")
    restored = replace(learned, step_ready=0.0, checked=0.0, window_start=0.0, canary_pods="")
    assert not holdable(learned, restored)
    assert not holdable(learned, replace(restored, step=1, step_started=111.0))
    # nor a change that is not a start or an advance (an ignored action's message)
    assert not holdable(ADVANCED, replace(ADVANCED, last_action="resume", message="ignored"))


def test_a_users_command_during_a_hold_is_written_at_once() -> None:
    # Held, a `canary retry` or `resume` would be lost with a kill and run
    # again by the successor, against the step before (found by review).
    for action in ("retry", "resume", "undo 3"):
        assert not holdable(SERVING, replace(ADVANCED, last_action=action)), action


def test_a_plan_that_moves_traffic_is_never_held() -> None:
    # The first step's selector, when the status cannot ride with it (an
    # Event or an autoscaler write after it): the canary serves, so the
    # status must say so at once.
    assert moves_traffic([SetSelector({"app": "x"}), Emit("AutoscalerFollowed", "")])
    assert moves_traffic([ApplyPreview({"app": "x"})])
    assert not moves_traffic([Emit("StepAdvanced", ""), ScaleTwin("green", 3)])


def test_a_pod_lost_or_back_mid_step_is_paced_like_progress() -> None:
    # Found by review: each flip of a flapping pod wrote the status at once.
    lost = replace(SERVING, unready_since=120.0, effective_weight=0.0, message="1/2 ready")
    assert progress_only(SERVING, lost)
    assert progress_only(lost, replace(lost, unready_since=0.0, message="analysing"))
