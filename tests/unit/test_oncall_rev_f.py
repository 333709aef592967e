"""What on-call reads must be what is observed (review rev-f): every time
`canary status -o json` prints, `canary wait` right after `canary undo`,
and the canary's weight in the metrics."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from canary import jsonout
from canary.model import State
from canary.release_outcome import Outcome, Pending, judge
from canary.telemetry import Metrics
from tests.unit.test_telemetry import exposed

R0, R1, R2 = "0000000000", "1111111111", "2222222222"


def _entry(number: int, revision: str, outcome: str) -> dict[str, Any]:
    return {
        "number": number,
        "revision": revision,
        "outcome": outcome,
        "reason": f"{outcome} for a reason",
        "started": 1000.0 + number,
        "ended": 1100.0 + number,
        "template": {"spec": {}},
        "checks": [],
        "actions": [],
    }


SERVING_R2 = {
    "phase": "Healthy",
    "adopted": True,
    "stable": "green",
    "stable_revision": R2,
    "canary": None,
    "canary_revision": "",
    "failed_revision": "",
    "undo_of": "",
    "message": f"serving revision {R2}",
}


def test_wait_after_an_undo_not_yet_taken_waits_for_the_undo() -> None:
    """`canary undo web --to 1 && canary wait web --revision <#1's hash>`:
    until the controller takes the undo (a moment, or until it is back),
    the history's old entry of that revision was taken for this release:
    exit 0 'promoted' (or 3 'rolled-back') at once, before the undo's
    rollout had even started, whatever its analysis then said."""
    records = [_entry(1, R0, "promoted"), _entry(2, R1, "rolled-back"), _entry(3, R2, "promoted")]
    undo = "undo 1 2027-01-15T03:00:00.000000Z"
    assert isinstance(judge(R0, SERVING_R2, records, R2, asked=undo), Pending)
    rolled_back = "undo 2 2027-01-15T03:00:00.000000Z"
    assert isinstance(judge(R1, SERVING_R2, records, R2, asked=rolled_back), Pending)
    held = {**SERVING_R2, "phase": "RolledBack", "failed_revision": R1}
    assert isinstance(judge(R1, held, records, R2, asked=rolled_back), Pending)
    # An undo to another entry, or none waiting: the history's answer.
    settled = judge(R0, SERVING_R2, records, R2, asked=rolled_back)
    assert getattr(settled, "outcome", None) is Outcome.PROMOTED, settled
    settled = judge(R1, held, records, R2)
    assert getattr(settled, "outcome", None) is Outcome.ROLLED_BACK, settled


def test_status_json_prints_every_time_as_rfc3339() -> None:
    """README: `-o json` prints every time as RFC 3339 (UTC), null when
    unset. fast_failed, fast_checked, looked, woken and source_scaled_at
    came out as epoch seconds, read by a script as numbers (or 1970)."""
    at = 1764408690.25  # 2025-11-29T09:31:30.250Z
    # (effective_weight is a share, lost_s a duration in seconds.)
    times = [
        f.name
        for f in fields(State)
        if f.type == "float" and f.name not in ("effective_weight", "lost_s")
    ]
    shown = jsonout.status({**State().to_json(), **dict.fromkeys(times, at)})
    wrong = {k: shown[k] for k in times if shown[k] != "2025-11-29T09:31:30.250Z"}
    assert not wrong, wrong
    unset = jsonout.status(State().to_json())
    assert all(unset[k] is None for k in times)


def test_the_canary_weight_metric_is_zero_once_no_canary_serves() -> None:
    """A promotion leaves requested_weight=100 and effective_weight=100 in
    the status until the next release starts, and canary_weight_percent
    exported them: a Service Healthy for days showed a canary at 100% in
    Grafana (`canary status` and the dashboard show "-"), while one rolled
    back showed 0. Now the weight is the canary's only while one is in
    flight (or promoting), as `canary status` shows it."""

    def weights(phase: str, state: State) -> tuple[float, float]:
        metrics = Metrics()
        metrics.service("shop", "web", phase, state.to_json())
        values = exposed(metrics)
        at = 'canary_weight_percent{{kind="{}",namespace="shop",service="web"}}'
        return values[at.format("requested")], values[at.format("effective")]

    promoted = State(
        stable="green",
        stable_revision="r2",
        adopted=True,
        requested_weight=100,
        effective_weight=100.0,
    )
    assert weights("Healthy", promoted) == (0.0, 0.0)
    in_flight = State(
        stable="blue",
        stable_revision="r1",
        adopted=True,
        canary="green",
        canary_revision="r2",
        requested_weight=25,
        effective_weight=24.0,
    )
    assert weights("Progressing", in_flight) == (25.0, 24.0)
    assert weights("Halted", in_flight) == (25.0, 24.0)
