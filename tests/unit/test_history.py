"""The revision history stays within what a ConfigMap can hold."""

from __future__ import annotations

import json
from typing import Any

from canary.history import DATA_KEY, MAX_BYTES, dump


def test_a_huge_history_is_trimmed_oldest_checks_first() -> None:
    check = {"step": 1, "measurements": [{"query": "x" * 2000}]}
    records = [{"revision": f"r{i}", "checks": [check] * 100} for i in range(10)]
    text = dump(records)[DATA_KEY]
    assert len(text) <= MAX_BYTES
    kept = json.loads(text)
    assert [r["revision"] for r in kept] == [f"r{i}" for i in range(10)]
    assert len(kept[-1]["checks"]) == 100  # the newest revision keeps everything
    assert len(kept[0]["checks"]) < 100


def test_a_decision_applied_late_shows_both_times_in_the_timeline() -> None:
    from analysis.run import StepResult
    from analysis.verdicts import Verdict
    from canary import render
    from canary.history import add_check, add_event, check_entry

    records: list[dict[str, Any]] = [{"revision": "r2", "number": 2, "checks": [], "actions": []}]
    result = StepResult(Verdict.FAIL, (), "success-rate = 50")
    records = add_check(
        records, "r2", check_entry(0, 25, 25.0, result, "rolled back", at=100.0, applied=122.0)
    )
    records = add_event(records, "r2", 100.0, "RolledBack", "traffic is back", applied=122.0)
    check = records[0]["checks"][0]
    assert (check["at"], check["applied"]) == (100.0, 122.0)
    text = render.timeline(records[0], color=False)
    assert text.count("22.0s after it was decided") == 2


def test_a_check_judged_again_after_a_failed_cycle_is_recorded_once() -> None:
    from analysis.run import StepResult
    from analysis.verdicts import Verdict
    from canary.history import add_check, check_entry

    records: list[dict[str, Any]] = [{"revision": "r2", "number": 2, "checks": [], "actions": []}]
    result = StepResult(Verdict.PASS, (), "success-rate = 100")
    for at in (100.0, 100.5, 101.5):  # the first cycle wrote it, then its status write failed
        records = add_check(
            records, "r2", check_entry(0, 25, 25.0, result, "next step", at=at, evaluated=99.0)
        )
    later = add_check(
        records, "r2", check_entry(0, 25, 25.0, result, "next step", at=110.0, evaluated=109.0)
    )
    assert len(records[0]["checks"]) == 1
    assert [c["evaluated"] for c in later[0]["checks"]] == [99.0, 109.0]
