"""The dashboard's pure parts: what on-call sees from what the controller
wrote, including status and history written by an older or newer controller,
or damaged by hand."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from canary.dashboard import actions, charts, pages, site, views
from canary.dashboard.read import History, number_of, read_history, read_status
from canary.dashboard.stream import Hub

NOW = 1_700_000_000.0


def service(
    status: Any = None, raw_status: str | None = None, **annotations: str
) -> dict[str, Any]:
    values = {"canary.io/strategy": "canary", "canary.io/steps": "10,25,50"}
    values.update({f"canary.io/{k.replace('_', '-')}": v for k, v in annotations.items()})
    if raw_status is not None:
        values["canary.io/status"] = raw_status
    elif status is not None:
        values["canary.io/status"] = json.dumps(status)
    return {
        "metadata": {
            "namespace": "shop",
            "name": "web",
            "resourceVersion": "1",
            "annotations": values,
        }
    }


def measurement(metric: str, value: float | None, verdict: str, at: float, **extra: Any) -> Any:
    return {
        "metric": metric,
        "twin": "green",
        "query": f'sum(rate({metric}{{pod=~"web-green-.*"}}[5s]))',
        "start": at - 5,
        "end": at,
        "value": value,
        "threshold": extra.pop("threshold", "<= 5"),
        "verdict": verdict,
        "duration_ms": 12.0,
        **extra,
    }


def record(number: int, revision: str, outcome: str, checks: list[Any], **extra: Any) -> Any:
    return {
        "number": number,
        "revision": revision,
        "images": [f"registry.example/web:{revision}"],
        "template": {"spec": {}},
        "started": NOW,
        "ended": NOW + 30,
        "outcome": outcome,
        "reason": extra.pop("reason", ""),
        "checks": checks,
        "actions": extra.pop("actions", []),
        **extra,
    }


def history(*records: Any) -> History:
    return read_history({"data": {"history.json": json.dumps(list(records))}})


IN_FLIGHT = {
    "phase": "Progressing",
    "stable": "blue",
    "stable_revision": "aaa",
    "canary": "green",
    "canary_revision": "bbb",
    "step": 1,
    "requested_weight": 25,
    "effective_weight": 25.0,
    "step_ready": NOW - 12,
    "message": "",
}


def test_a_rollout_in_flight_shows_its_step_weight_and_both_revisions_images() -> None:
    checks = [
        {
            "step": 1,
            "verdict": "pass",
            "measurements": [measurement("error-rate", 0.1, "pass", NOW)],
        }
    ]
    h = history(record(1, "aaa", "promoted", []), record(2, "bbb", "progressing", checks))
    row = views.row(service(IN_FLIGHT), h)
    assert (row.phase, row.phase_class, row.step) == ("Progressing", "active", "2/3")
    assert row.stable and row.stable.images == ("registry.example/web:aaa",)
    assert row.canary and row.canary.revision == "bbb" and row.canary.number == 2
    assert (row.requested, row.effective, row.since) == (25, 25.0, NOW - 12)
    assert (row.last_verdict, row.last_checked) == ("pass", NOW)
    strip = views.strip(service(IN_FLIGHT), h)
    assert [c.state for c in strip.cells] == ["done", "current", "waiting", "waiting"]
    assert [c.label for c in strip.cells] == ["10%", "25%", "50%", "promote"]


def test_an_unknown_phase_from_a_newer_controller_is_shown_as_is_in_a_neutral_colour() -> None:
    status = {**IN_FLIGHT, "phase": "Conflict", "conflict_with": "argo-rollouts"}
    row = views.row(service(status), History())
    assert (row.phase, row.phase_class) == ("Conflict", "neutral")
    assert row.step == "2/3" and not row.problems


def test_missing_status_fields_are_unknown_not_guessed() -> None:
    row = views.row(service({"canary": "green"}), History())
    assert row.phase == "unknown" and "the status has no phase" in row.problems
    assert row.step == "unknown" and row.requested is None and row.canary
    assert row.canary.revision == "unknown"
    assert views.strip(service({"canary": "green"}), History()).note == "current step unknown"
    assert pages.pct(row.requested) == "unknown"


def test_a_corrupt_status_annotation_is_named_and_the_rest_still_shows() -> None:
    checks = [
        {"step": 1, "verdict": "fail", "measurements": [measurement("error-rate", 40, "fail", NOW)]}
    ]
    h = history(record(1, "aaa", "rolled-back", checks, reason="error-rate = 40"))
    row = views.row(service(raw_status='{"phase": "Progr'), h)
    assert row.phase == "unknown"
    assert any("not valid JSON" in p for p in row.problems)
    assert row.last_verdict == "fail"  # the history is still read
    assert views.revisions(service(raw_status="[1,2]"), h)[0].outcome == "rolled-back"
    assert "not an object" in read_status(service(raw_status="[1,2]")).problem


def test_a_corrupt_history_says_what_could_not_be_read() -> None:
    broken = read_history({"data": {"history.json": "[{"}})
    assert broken.exists and not broken.records and "not valid JSON" in broken.problem
    partial = read_history(
        {"data": {"history.json": json.dumps([1, record(1, "a", "promoted", [])])}}
    )
    assert len(partial.records) == 1 and "1 of 2" in partial.problem
    missing = read_history({"data": {}})
    assert "no history.json" in missing.problem


def test_a_rolled_back_rollout_marks_the_step_that_failed() -> None:
    checks = [
        {"step": 1, "verdict": "pass", "measurements": []},
        {"step": 2, "verdict": "fail", "measurements": []},
    ]
    h = history(record(1, "aaa", "promoted", []), record(2, "bbb", "rolled-back", checks))
    status = {**IN_FLIGHT, "phase": "RolledBack", "canary": None, "failed_revision": "bbb"}
    strip = views.strip(service(status), h)
    assert [c.state for c in strip.cells] == ["done", "failed", "waiting", "waiting"]
    assert "rolled-back" in strip.title


def test_blue_green_has_a_preview_and_a_flip() -> None:
    status = {**IN_FLIGHT, "step": 0, "promoting": True}
    svc = service(status, strategy="blue-green")
    assert [c.state for c in views.strip(svc, History()).cells] == ["done", "current"]
    assert views.row(svc, History()).step == "flip"


def test_revisions_are_newest_first_and_only_the_newest_entry_is_serving() -> None:
    h = history(
        record(1, "aaa", "promoted", []),
        record(2, "bbb", "rolled-back", [{"step": 1, "verdict": "fail"}]),
        record(3, "aaa", "promoted", []),
    )
    status = {**IN_FLIGHT, "canary": None, "stable_revision": "aaa"}
    rows = views.revisions(service(status), h)
    assert [r.number for r in rows] == [3, 2, 1]
    assert [r.serving for r in rows] == ["stable", "", ""]
    assert rows[1].failed_checks == 1 and rows[1].undoable


def test_a_failing_metric_is_charted_above_its_max_threshold() -> None:
    checks = [
        {
            "step": 1,
            "verdict": "fail",
            "measurements": [
                measurement("requests", 60, "pass", NOW, threshold=">= 20"),
                measurement("error-rate", 48.0, "fail", NOW),
            ],
        },
        {
            "step": 1,
            "verdict": "fail",
            "measurements": [measurement("error-rate", 52.0, "fail", NOW + 3)],
        },
    ]
    drawn = charts.charts(record(2, "bbb", "rolled-back", checks))
    assert [c.metric for c in drawn] == ["error-rate", "requests"]  # what failed comes first
    error_rate = drawn[0]
    assert error_rate.failing == 2
    assert error_rate.data["fail"] == [48.0, 52.0] and error_rate.data["max"] == [5.0, 5.0]
    assert "min" not in error_rate.data and "pass" not in error_rate.data
    assert drawn[1].data["min"] == [20.0]


def test_relative_checks_draw_the_stable_value_and_the_limit_it_implies() -> None:
    m = measurement(
        "error-rate", 3.0, "fail", NOW, threshold="not above stable x1.5 and +0.5", stable_value=1.0
    )
    baseline = {**measurement("error-rate", 1.0, "pass", NOW), "baseline": True}
    chart = charts.charts(
        record(1, "b", "rolled-back", [{"step": 1, "measurements": [m, baseline]}])
    )[0]
    assert len(chart.points) == 1  # the baseline reading is the canary's stable value, not a point
    assert chart.data["stable"] == [1.0] and chart.data["limit"] == [1.5]
    below = charts.limits("not below stable x2")
    assert below.relative_limit(10.0) == 5.0
    assert not charts.limits("a threshold from the future").readable


def test_no_data_is_marked_and_never_drawn_as_a_value() -> None:
    checks = [{"step": 1, "measurements": [measurement("error-rate", None, "no-data", NOW)]}]
    chart = charts.charts(record(1, "b", "progressing", checks))[0]
    assert chart.data["nodata"] == [NOW] and "value" not in chart.data
    inf = [{"step": 1, "measurements": [measurement("latency-p99-ms", float("inf"), "fail", NOW)]}]
    assert charts.charts(record(1, "b", "progressing", inf))[0].data["nodata"] == [NOW]


def test_each_action_says_what_happens_to_traffic() -> None:
    svc = service(IN_FLIGHT)
    h = history(record(1, "aaa", "promoted", []), record(2, "bbb", "progressing", []))
    abort = actions.offer("abort", svc, h)
    assert abort.applies and "back to the stable blue twin (aaa)" in abort.consequence
    assert "25%" in abort.consequence
    assert actions.offer("promote", svc, h).applies
    assert not actions.offer("resume", svc, h).applies
    undo = actions.offer("undo", svc, h, 1)
    assert undo.applies and "registry.example/web:aaa" in undo.consequence
    assert "cancelled first" in undo.consequence
    healthy = service({**IN_FLIGHT, "phase": "Healthy", "canary": None, "canary_revision": ""})
    nothing = actions.offer("abort", healthy, h)
    assert not nothing.applies and "nothing to abort" in nothing.consequence
    assert [o.verb for o in actions.offers(healthy, h)] == ["pause"]


def test_the_anti_forgery_token_refuses_anything_but_itself() -> None:
    token = actions.Token()
    assert token.accepts(token.value)
    assert not token.accepts(None) and not token.accepts("") and not token.accepts("x")
    assert actions.manager_for("system:serviceaccount:ops:bob") == (
        "canary-dashboard-system:serviceaccount:ops:bob"
    )
    assert actions.manager_for("ä b\n") == "canary-dashboard-b"


def test_a_tab_that_connects_late_gets_what_changed_since_its_page() -> None:
    hub = Hub()
    hub.changed(("shop", "web"))
    seen = hub.generation
    hub.changed(("shop", "api"))
    late = hub.subscribe(seen)
    assert late.take() == ({("shop", "api")}, False)
    current = hub.subscribe(hub.generation)
    hub.changed(None)
    assert current.take() == (set(), True)
    assert hub.subscribe(-100).everything  # older than the log: everything


def test_html_from_the_cluster_is_escaped() -> None:
    status = {**IN_FLIGHT, "message": "<script>alert(1)</script>"}
    html = pages.part("row", views.row(service(status), History()), NOW)
    assert "<script>" not in html and "&lt;script&gt;" in html
    for text in ("</script>", "<!--<script>", "</SCRIPT >"):
        encoded = pages.chart_json({"q": text})
        assert "<" not in encoded and json.loads(encoded) == {"q": text}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=30,
)
status_keys = st.sampled_from(
    [
        "phase",
        "canary",
        "stable",
        "canary_revision",
        "stable_revision",
        "step",
        "promoting",
        "requested_weight",
        "effective_weight",
        "step_ready",
        "message",
        "scale_down",
        "failed_revision",
    ]
)
record_keys = st.sampled_from(
    [
        "number",
        "revision",
        "images",
        "outcome",
        "reason",
        "checks",
        "actions",
        "started",
        "ended",
        "template",
        "measurements",
        "step",
        "verdict",
        "metric",
        "value",
        "end",
        "start",
        "threshold",
        "stable_value",
        "baseline",
        "at",
    ]
)
loose = st.recursive(
    json_values,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(record_keys, inner, max_size=8),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(
    status=st.dictionaries(status_keys, json_values, max_size=10),
    records=st.lists(loose, max_size=4),
)
def test_no_status_or_history_shape_breaks_a_page(
    status: dict[str, Any], records: list[Any]
) -> None:
    svc = service(status)
    h = read_history({"data": {"history.json": json.dumps(records, default=str)}})
    row = views.row(svc, h)
    pages.part("row", row, NOW)
    views.strip(svc, h)
    views.revisions(svc, h)
    for verb in actions.VERBS:
        actions.offer(verb, svc, h, 1)
    page = site.service_page(svc, h, records, "")
    for part in ("head", "revisions"):
        pages.part(part, page)
    pages.part("strip", page.strip)
    pages.part("events", page.events, "")
    for r in h.records:
        for c in charts.charts(r):
            json.dumps(c.data, allow_nan=False)
    for number in {number_of(r) for r in h.records} - {None}:
        assert number is not None
        timeline = site.revision_page("shop", "web", number, h)
        assert timeline is not None
        pages.part("timeline", timeline)


def test_a_history_with_times_no_calendar_holds_still_renders() -> None:
    from canary import render
    from canary.jsonout import rfc3339

    for epoch in (1e15, -1e15, float("inf")):
        assert pages.when(epoch) == "unknown" and pages.iso(epoch) == ""
        assert render.when(epoch) == "-" and rfc3339(epoch) is None
    records = [{"revision": "r1", "number": 1, "started": 1e15, "checks": [{"at": -1e15}]}]
    h = read_history({"data": {"history.json": json.dumps(records)}})
    page = site.service_page(service({}), h, records, "")
    pages.part("revisions", page)


def test_an_undo_to_the_serving_revision_mid_rollout_says_nothing_rolls_out() -> None:
    """The confirmation of an undo to the revision that serves while another
    rolls out (manual._back_to_serving: the release in flight taken out at
    once, no canary of the serving one) said it would be "rolled out again as
    a new rollout", starting at the first step's share: on-call confirmed a
    rollout that never came, and read the fast rollback as something amiss."""
    svc = service(IN_FLIGHT)
    h = history(record(1, "aaa", "promoted", []), record(2, "bbb", "progressing", []))
    undo = actions.offer("undo", svc, h, 1)
    assert undo.applies and "cancelled first" in undo.consequence
    assert "nothing rolls out" in undo.consequence, undo.consequence
    assert "new rollout" not in undo.consequence and "% of traffic" not in undo.consequence
    assert "bbb stays out" in undo.consequence
