"""What `canary wait` concludes from a status and a history: a pipeline must
never be told a release passed when it did not, nor wait forever for one
that nothing will roll out."""

from __future__ import annotations

from typing import Any

import pytest

from canary.release_outcome import (
    EXIT_CODES,
    Outcome,
    Pending,
    Settled,
    failing,
    judge,
    stale_after,
)
from canary.spec import ACTION

NEW, OLD, NEWER = "aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc"


def status(**fields: Any) -> dict[str, Any]:
    return {
        "phase": "Healthy",
        "adopted": True,
        "stable": "blue",
        "stable_revision": OLD,
        "canary": None,
        "canary_revision": "",
        "failed_revision": "",
        "undo_of": "",
        "message": "",
        **fields,
    }


def record(number: int, revision: str, outcome: str, reason: str = "", **extra: Any) -> Any:
    entry: dict[str, Any] = {
        "number": number,
        "revision": revision,
        "outcome": outcome,
        "reason": reason,
        "started": 1000.0 + number,
        "checks": [],
        **extra,
    }
    if outcome != "progressing":
        entry["ended"] = 1100.0 + number
    return entry


FAILED_CHECK = {
    "verdict": "fail",
    "measurements": [
        {"metric": "requests", "twin": "green", "value": 40, "threshold": "", "verdict": "pass"},
        {
            "metric": "success-rate",
            "twin": "green",
            "value": 50.0,
            "threshold": ">= 95",
            "verdict": "fail",
        },
        {
            "metric": "success-rate",
            "twin": "blue",
            "value": 100.0,
            "threshold": "",
            "verdict": "fail",
            "baseline": True,
        },
    ],
}


def settled(result: Settled | Pending) -> Settled:
    assert isinstance(result, Settled), result
    return result


def test_a_promoted_release_exits_zero() -> None:
    history = [record(1, OLD, "promoted"), record(2, NEW, "promoted", "all steps passed")]
    result = settled(judge(NEW, status(stable_revision=NEW, stable="green"), history, NEW))
    assert result.outcome is Outcome.PROMOTED and result.exit_code == 0
    assert "promoted on the green twin" in result.message


def test_a_release_in_flight_keeps_the_pipeline_waiting() -> None:
    history = [record(1, OLD, "promoted"), record(2, NEW, "progressing")]
    live = status(phase="Progressing", canary="green", canary_revision=NEW, message="step 1/3")
    assert isinstance(judge(NEW, live, history, NEW), Pending)


def test_a_rolled_back_release_names_the_failing_metric_value_and_threshold() -> None:
    reason = "AnalysisFailed: step 1/2: success-rate = 50 (want >= 95)"
    history = [
        record(1, OLD, "promoted"),
        record(2, NEW, "rolled-back", reason, checks=[FAILED_CHECK]),
    ]
    result = settled(judge(NEW, status(phase="RolledBack", failed_revision=NEW), history, NEW))
    assert result.outcome is Outcome.ROLLED_BACK and result.exit_code == 3
    assert reason in result.message
    assert result.failing == (
        {
            "metric": "success-rate",
            "twin": "green",
            "value": 50.0,
            "threshold": ">= 95",
            "verdict": "fail",
        },
    )


def test_an_aborted_release_has_its_own_exit_code() -> None:
    history = [record(1, OLD, "promoted"), record(2, NEW, "aborted", "Aborted: aborted by ann")]
    result = settled(judge(NEW, status(phase="RolledBack", failed_revision=NEW), history, NEW))
    assert result.outcome is Outcome.ABORTED and result.exit_code == 4


def test_halted_and_paused_stop_the_wait_with_distinct_codes() -> None:
    history = [record(1, OLD, "promoted"), record(2, NEW, "progressing")]
    halted = status(phase="Halted", canary="green", canary_revision=NEW, halted="step 1/3: no data")
    paused = status(phase="Paused", canary="green", canary_revision=NEW, step=1)
    assert settled(judge(NEW, halted, history, NEW)).exit_code == 5
    result = settled(judge(NEW, paused, history, NEW))
    assert result.exit_code == 6 and "step 2" in result.message


def test_a_closed_gate_is_asked_again_so_the_wait_goes_on() -> None:
    gated = status(
        phase="Halted",
        canary="green",
        canary_revision=NEW,
        gate_reason="approve: 403",
        message="pre-promotion gate closed: approve: 403",
    )
    result = judge(NEW, gated, [record(2, NEW, "progressing")], NEW)
    assert isinstance(result, Pending) and "gate closed" in result.message


def test_an_old_promotion_of_the_same_template_is_not_taken_for_this_release() -> None:
    # NEW was promoted long ago, OLD serves now (an undo), and the team has
    # just applied NEW again: the controller has not started it yet.
    history = [record(1, NEW, "promoted"), record(2, OLD, "promoted")]
    now = status()
    stale = stale_after(now, history, NEW, NEW)
    assert stale == 2
    assert isinstance(judge(NEW, now, history, NEW, stale), Pending)
    # Once the controller starts and finishes this attempt, that one counts.
    history.append(record(3, NEW, "rolled-back", "AnalysisFailed: x", checks=[FAILED_CHECK]))
    later = status(phase="Healthy")  # failed_revision cleared by a newer release
    assert settled(judge(NEW, later, history, NEWER, stale)).outcome is Outcome.ROLLED_BACK


def test_a_release_replaced_before_it_finished_is_superseded_not_awaited_forever() -> None:
    history = [
        record(1, OLD, "promoted"),
        record(2, NEW, "superseded", "replaced by cccccccccc before it finished"),
        record(3, NEWER, "progressing"),
    ]
    live = status(phase="Progressing", canary="green", canary_revision=NEWER)
    result = settled(judge(NEW, live, history, NEWER))
    assert result.outcome is Outcome.SUPERSEDED and result.exit_code == 7


def test_a_release_never_started_because_the_deployment_moved_on_is_superseded() -> None:
    history = [record(1, OLD, "promoted")]
    stale = stale_after(status(), history, NEW, NEW)  # at the start: NEW asked for
    result = settled(judge(NEW, status(), history, NEWER, stale))
    assert result.outcome is Outcome.SUPERSEDED and NEWER in result.message


def test_the_controller_catching_up_is_not_superseded() -> None:
    # The controller still rolls OLD's successor NEWER out but the Deployment
    # already asks for NEW: it will restart with NEW, so keep waiting.
    live = status(phase="Progressing", canary="green", canary_revision=NEWER)
    assert isinstance(judge(NEW, live, [record(1, OLD, "promoted")], NEW), Pending)


def test_an_undo_of_the_release_is_not_a_success() -> None:
    history = [record(1, OLD, "promoted"), record(2, NEW, "promoted")]
    history.append(record(3, OLD, "progressing"))
    undoing = status(
        phase="Progressing",
        stable_revision=NEW,
        canary="blue",
        canary_revision=OLD,
        undo_of=NEW,
    )
    # NEW still serves while the undo is in flight: it was promoted.
    assert settled(judge(NEW, undoing, history, NEW)).outcome is Outcome.PROMOTED
    history[-1] = record(3, OLD, "promoted")
    undone = status(stable_revision=OLD, failed_revision=NEW)
    result = settled(judge(NEW, undone, history, NEW))
    assert result.outcome is Outcome.SUPERSEDED and "undone" in result.message


def test_invalid_annotations_hold_the_release_like_a_halt() -> None:
    invalid = status(phase="Invalid", message="canary.io/steps: 'x' is not a list")
    assert settled(judge(NEW, invalid, [], NEW)).outcome is Outcome.HALTED


def test_a_release_that_is_already_stable_is_promoted_without_a_rollout() -> None:
    result = settled(judge(OLD, status(), [record(1, OLD, "promoted")], OLD))
    assert result.exit_code == 0


def test_no_status_yet_is_waiting() -> None:
    assert isinstance(judge(NEW, {}, [], NEW), Pending)


def test_failing_skips_passing_checks_and_baselines() -> None:
    entry = record(2, NEW, "rolled-back", checks=[FAILED_CHECK, {"verdict": "pass"}])
    assert [m["metric"] for m in failing(entry)] == ["success-rate"]
    assert failing(None) == ()


def test_every_outcome_has_a_distinct_exit_code() -> None:
    codes = list(EXIT_CODES.values())
    assert len(set(codes)) == len(codes) == len(Outcome)
    assert EXIT_CODES[Outcome.PROMOTED] == 0 and 1 not in codes and 2 not in codes


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        ("aborted", "Aborted: aborted by alice at step 2/3"),
        ("aborted", "aborted by alice after promotion"),
        ("rolled-back", "PodRestarts: pod web-green-1 container app restarted 3 times"),
        ("rolled-back", "ProgressDeadlineExceeded: step 2 did not finish within 600s"),
        ("rolled-back", "RolloutCancelled: Deployment web was deleted mid-rollout"),
        ("superseded", "replaced by 3f2a"),
    ],
)
def test_an_early_failure_within_the_limit_is_not_given_as_the_cause_of_another_ending(
    outcome: str, reason: str
) -> None:
    # One check failed within failure-limit, the next passed, then on-call
    # aborted (or a pod crash-looped, or the deadline passed): `canary wait`
    # and `canary status` named the early failure's metric as the cause, and
    # on-call went looking at a success rate that had recovered.
    entry = record(2, NEW, outcome, reason, checks=[FAILED_CHECK, {"verdict": "pass"}])
    assert failing(entry) == ()


def test_the_failing_check_is_the_cause_of_an_analysis_rollback() -> None:
    reason = "AnalysisFailed: step 2/3: success-rate 50 < 95"
    entry = record(2, NEW, "rolled-back", reason, checks=[{"verdict": "pass"}, FAILED_CHECK])
    assert [m["metric"] for m in failing(entry)] == ["success-rate"]


def test_a_paused_annotation_lifted_but_not_taken_yet_keeps_the_wait_going() -> None:
    """`kubectl annotate svc web canary.io/paused=false && canary wait web`:
    the status still says Paused until the controller's next cycle. Settled
    on it, the wait exited 6 (paused) for a rollout nothing holds any more
    (the sandbox's paused-then-halted wait test, whenever the CLI read the
    Service before the controller had written)."""
    from canary.wait import waiting_request

    history = [record(1, OLD, "promoted"), record(2, NEW, "progressing")]
    paused = status(phase="Paused", canary="green", canary_revision=NEW, step=1)

    def service(**annotations: str) -> dict[str, Any]:
        return {"metadata": {"annotations": annotations}}

    lifted = waiting_request(service(**{"canary.io/paused": "false"}), paused)
    assert isinstance(judge(NEW, paused, history, NEW, asked=lifted), Pending)
    removed = waiting_request(service(), paused)
    assert isinstance(judge(NEW, paused, history, NEW, asked=removed), Pending)
    # Still held by the annotation, or by `canary pause` (the status's own
    # `paused`), it is paused: exit 6 as before.
    held = waiting_request(service(**{"canary.io/paused": "yes"}), paused)
    assert settled(judge(NEW, paused, history, NEW, asked=held)).exit_code == 6
    by_command = status(phase="Paused", canary="green", canary_revision=NEW, step=1, paused=True)
    asked = waiting_request(service(), by_command)
    assert settled(judge(NEW, by_command, history, NEW, asked=asked)).exit_code == 6


def test_a_lifted_pause_is_not_masked_by_another_request_not_taken_yet() -> None:
    """The pause lifted while a `canary.io/action` that does not move a
    paused rollout on (a `retry` typed for the rollout before) waits on the
    Service: the request was the only thing looked at, and the wait exited 6
    on the status of the cycle before (found by review)."""
    from canary.wait import waiting_request

    history = [record(1, OLD, "promoted"), record(2, NEW, "progressing")]
    paused = status(phase="Paused", canary="green", canary_revision=NEW, step=1)
    service = {"metadata": {"annotations": {"canary.io/paused": "false", ACTION: "retry"}}}
    asked = waiting_request(service, paused)
    assert isinstance(judge(NEW, paused, history, NEW, asked=asked), Pending), asked
