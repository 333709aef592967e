"""What on-call reads: JSON with RFC 3339 times, a history that says which
revisions changed only config (and which ConfigMap or Secret), and a
RolledBack status that says why."""

from __future__ import annotations

import datetime as dt
from typing import Any

from canary import jsonout, render
from canary.changes import changes

STARTED = 1764408690.25  # 2025-11-29T09:31:30.250Z


def entry(number: int, revision: str, images: list[str], config: dict[str, str]) -> Any:
    return {
        "number": number,
        "revision": revision,
        "images": images,
        "config": config,
        "outcome": "promoted",
        "reason": "all steps passed",
        "started": STARTED + number,
        "ended": STARTED + number + 30,
        "checks": [
            {
                "step": 1,
                "verdict": "pass",
                "measurements": [{"metric": "success-rate", "start": STARTED, "end": STARTED + 5}],
            }
        ],
        "actions": [{"at": STARTED, "reason": "RolloutStarted", "message": "..."}],
    }


def is_rfc3339(text: Any) -> bool:
    assert isinstance(text, str) and text.endswith("Z"), text
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).tzinfo is not None


def test_json_times_are_rfc3339_everywhere() -> None:
    shown = jsonout.history([entry(1, "r1", ["web:v1"], {})])[0]
    assert shown["started"] == "2025-11-29T09:31:31.250Z"
    assert is_rfc3339(shown["ended"])
    measurement = shown["checks"][0]["measurements"][0]
    assert is_rfc3339(measurement["start"]) and is_rfc3339(measurement["end"])
    assert is_rfc3339(shown["actions"][0]["at"])
    status = jsonout.status(
        {
            "phase": "RolledBack",
            "rollout_started": STARTED,
            "step_started": STARTED,
            "step_ready": 0.0,
            "scale_down_at": 0.0,
            "rolled_back": {"revision": "r2", "ended": STARTED},
        }
    )
    assert status["rollout_started"] == "2025-11-29T09:31:30.250Z"
    assert status["step_ready"] is None and status["scale_down_at"] is None  # unset, not 1970
    assert is_rfc3339(status["rolled_back"]["ended"])


def test_history_marks_config_only_revisions_and_names_what_changed() -> None:
    records = [
        entry(1, "r1", ["web:v1"], {"ConfigMap/web": "h1", "Secret/db": "s1"}),
        entry(2, "r2", ["web:v2"], {"ConfigMap/web": "h1", "Secret/db": "s1"}),
        entry(3, "r3", ["web:v2"], {"ConfigMap/web": "h2", "Secret/db": "s1"}),
        entry(4, "r4", ["web:v2"], {"ConfigMap/web": "h2", "Secret/db": "s2"}),
        entry(5, "r5", ["web:v2"], {"ConfigMap/web": "h2", "Secret/db": "s2"}),
        entry(6, "r3", ["web:v2"], {"ConfigMap/web": "h2", "Secret/db": "s1"}),
        entry(7, "r7", ["web:v3"], {"ConfigMap/web": "h3", "Secret/db": "s1"}),
    ]
    kinds = [c["kind"] for c in changes(records)]
    assert kinds == ["first", "image", "config", "config", "template", "again", "image+config"]
    assert changes(records)[2]["config"] == ["ConfigMap/web"]
    assert changes(records)[3]["config"] == ["Secret/db"]
    table = render.table(render.HISTORY_HEADERS, render.history_rows(records))
    assert "config only: ConfigMap/web" in table and "config only: Secret/db" in table
    assert "same as #3" in table
    assert jsonout.history(records)[2]["change"] == {"kind": "config", "config": ["ConfigMap/web"]}


def test_a_rolled_back_status_says_which_metric_failed_and_against_what() -> None:
    status = {
        "phase": "RolledBack",
        "stable": "blue",
        "stable_revision": "r1",
        "failed_revision": "r2",
        "message": "revision r2 was rolled back; serving r1. Change the Deployment or run ...",
        "rolled_back": {
            "revision": "r2",
            "outcome": "rolled-back",
            "reason": "AnalysisFailed: step 1/2: success-rate = 50 (want >= 95)",
        },
    }
    row = render.status_rows([("shop", "web", status)])[0]
    assert "success-rate = 50 (want >= 95)" in row[-1]
    assert "canary retry" in row[-1]


def test_backtest_json_times_are_rfc3339_too() -> None:
    from analysis.run import StepResult
    from analysis.verdicts import Measurement, Verdict
    from canary.backtest import Window, as_json

    measurement = Measurement(
        "success-rate", "green", "q", STARTED, STARTED + 60, 99.5, ">= 99", Verdict.PASS, 12.0
    )
    shown = as_json([Window(STARTED, STARTED + 60, StepResult(Verdict.PASS, (measurement,), ""))])
    assert shown[0]["start"] == "2025-11-29T09:31:30.250Z" and is_rfc3339(shown[0]["end"])
    measured = shown[0]["measurements"]
    assert isinstance(measured, list)
    assert is_rfc3339(measured[0]["start"]) and measured[0]["value"] == 99.5


def test_history_durations_read_as_people_read_them() -> None:
    # A rollout paused over a weekend read "223200s".
    records = [
        {"number": 1, "revision": "r1", "outcome": "promoted", "started": 1000.0, "ended": 1045.0},
        {"number": 2, "revision": "r2", "outcome": "promoted", "started": 2000.0, "ended": 2725.0},
        {"number": 3, "revision": "r3", "outcome": "promoted", "started": 0.5, "ended": 223200.5},
        {"number": 4, "revision": "r4", "outcome": "progressing", "started": 9000.0},
    ]
    durations = [
        row[render.HISTORY_HEADERS.index("DURATION")] for row in render.history_rows(records)
    ]
    assert durations == ["45s", "12m05s", "62h00m", "-"]
