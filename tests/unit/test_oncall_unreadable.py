"""On-call readers over a history or a carried record edited by hand or
damaged (`effective_weight: "x"`, `measurements: "abc"`, an Event with no
message...), and over a history ConfigMap deleted or emptied mid-rollout.
`canary timeline`, `history`, `wait`, `status` and the dashboard stopped
with a traceback on the first, and showed nothing of the rollout in flight
on the second, though its status carried it. Now the unreadable piece is
left out and named (history.read, readable.py), and the rest is shown."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from canary import history, jsonout, oncall, release_outcome, render
from canary import wait as waiting
from canary.changes import changes
from canary.kube import NotFound
from canary.release_outcome import Outcome
from tests.unit.test_dashboard import json_values
from tests.unit.test_dashboard_bad_day import IN_FLIGHT, FakeKube, loaded_site, svc

REV = str(IN_FLIGHT["canary_revision"])
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def measurement(**extra: Any) -> dict[str, Any]:
    return {
        "metric": "error-rate",
        "twin": "green",
        "query": "q",
        "start": T0 + 55,
        "end": T0 + 60,
        "value": 7.5,
        "threshold": "<= 1",
        "verdict": "fail",
        "duration_ms": 9.0,
        **extra,
    }


def check(step: int, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "scheduled",
        "at": T0 + 60 * step,
        "evaluated": T0 + 60 * step,
        "applied": T0 + 60 * step,
        "step": step,
        "weight": 10 * step,
        "effective_weight": 10.0 * step,
        "verdict": "fail",
        "reason": "error-rate = 7.5",
        "decided": f"decided at step {step}",
        "measurements": [measurement(end=T0 + 60 * step)],
        **extra,
    }


def event(when: float, reason: str, **extra: Any) -> dict[str, Any]:
    return {"at": when, "applied": when, "reason": reason, "message": f"{reason} said", **extra}


def entry(checks: Any, actions: Any, **extra: Any) -> dict[str, Any]:
    return {
        "number": 1,
        "revision": REV,
        "images": ["web:v2"],
        "config": {},
        "started": T0,
        "checks": checks,
        "actions": actions,
        "outcome": "progressing",
        "reason": "started",
        **extra,
    }


# What a hand edit leaves in a check or an Event: each made a reader stop.
# With the steps then shown: a check of the wrong shape is left out; one
# with a measurement of the wrong shape is shown without that measurement.
BAD_CHECKS = {
    "effective_weight": (check(2, effective_weight="x"), [1, 3]),
    "measurements not a list": (check(2, measurements="abc"), [1, 3]),
    "measurements not objects": (check(2, measurements=[1, 2]), [1, 2, 3]),
    "verdict a number": (check(2, verdict=3), [1, 3]),
    "at not a time": (check(2, at="yesterday", evaluated="yesterday", measurements=[]), [1, 3]),
    "a window end not a time": (check(2, measurements=[measurement(end="x")]), [1, 2, 3]),
    "value not a number": (check(2, measurements=[measurement(value="x")]), [1, 2, 3]),
    "metric null": (check(2, measurements=[measurement(metric=None)]), [1, 2, 3]),
}
BAD_EVENTS = {
    "message null": event(T0 + 90, "Bad", message=None),
    "at not a time": event(T0 + 90, "Bad", at="yesterday"),
    "at null": event(T0 + 90, "Bad", at=None),
}


class Kube(FakeKube):
    """One Service with its status; its history ConfigMap as given (None: not found)."""

    def __init__(self, status: dict[str, Any], records: Any) -> None:
        super().__init__(svc(status))
        self.records = records

    async def get(self, path: str, **kw: Any) -> dict[str, Any]:
        if path.endswith("/configmaps/web-canary-history"):
            if self.records is None:
                raise NotFound(404, "NotFound", "configmaps not found")
            data = {} if self.records == "" else {"history.json": json.dumps(self.records)}
            return {"metadata": {"name": "web-canary-history"}, "data": data}
        return await super().get(path, **kw)


def carrying(*items: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {**IN_FLIGHT, "rollout_started": T0, history.CARRIED: list(items), **status}


async def on_call(kube: Kube) -> tuple[list[dict[str, Any]], str, str, list[str]]:
    """What `canary history` and `canary timeline` print, and their warnings."""
    said: list[str] = []
    records = await oncall.revisions(kube, "shop", "web", said.append)  # type: ignore[arg-type]
    json.dumps(jsonout.history(records))  # -o json
    table = oncall.history_text(records, color=False)
    return records, table, oncall.timeline_text(records, None, color=False), said


# -- 1. an unreadable check or Event -------------------------------------------------------


@pytest.mark.parametrize(("bad", "shown"), BAD_CHECKS.values(), ids=BAD_CHECKS.keys())
@pytest.mark.parametrize("where", ["history", "status"])
async def test_the_timeline_leaves_out_an_unreadable_check_and_shows_the_rest(
    bad: dict[str, Any], shown: list[int], where: str
) -> None:
    good = [check(1), check(3)]
    if where == "history":
        kube = Kube(IN_FLIGHT, [entry([good[0], bad, good[1]], [event(T0, "RolloutStarted")])])
    else:
        items = [history.check_item(REV, c) for c in (good[0], bad, good[1])]
        kube = Kube(carrying(*items), [entry([], [event(T0, "RolloutStarted")])])
    records, table, timeline, said = await on_call(kube)
    assert REV in table, table
    assert "decided at step 1" in timeline and "decided at step 3" in timeline, timeline
    assert "RolloutStarted: RolloutStarted said" in timeline, timeline
    checks = records[-1]["checks"]
    assert [c["step"] for c in checks] == shown, checks
    if 2 in shown:
        assert "decided at step 2" in timeline and checks[1]["measurements"] == [], timeline
    assert len(said) == 1 and "cannot be read" in said[0], said
    assert ("checks[1]" if where == "history" else "record[1].check") in said[0], said


@pytest.mark.parametrize("bad", BAD_EVENTS.values(), ids=BAD_EVENTS.keys())
@pytest.mark.parametrize("where", ["history", "status"])
async def test_the_timeline_leaves_out_an_unreadable_event_and_shows_the_rest(
    bad: dict[str, Any], where: str
) -> None:
    started, advanced = event(T0, "RolloutStarted"), event(T0 + 120, "StepAdvanced")
    if where == "history":
        kube = Kube(IN_FLIGHT, [entry([check(1)], [started, bad, advanced])])
    else:
        items = [{"revision": REV, "event": e} for e in (started, bad, advanced)]
        kube = Kube(carrying(*items), [entry([check(1)], [])])
    _, _, timeline, said = await on_call(kube)
    lines = [line.split("  ", 1)[1] for line in timeline.splitlines()[4:] if line[:1].isdigit()]
    assert lines[0] == "RolloutStarted: RolloutStarted said", timeline
    assert lines[-1] == "StepAdvanced: StepAdvanced said", timeline
    assert "Bad" not in timeline and len(said) == 1, (timeline, said)
    assert ("actions[1]" if where == "history" else "record[1].event") in said[0], said


async def test_history_lists_an_entry_with_unreadable_fields_without_them() -> None:
    """`started: "x"` with an `ended`: the duration was `ended - "x"`."""
    kube = Kube(
        {**IN_FLIGHT, "canary_revision": "cccccccccc"},
        [entry([], [], started="x", ended=T0 + 30, images="web:v2", config=[1], number="one")],
    )
    records, table, timeline, said = await on_call(kube)
    assert records[0]["revision"] == REV and "web:v2" not in table, table
    assert "started -, ended 2027-01-15 08:00:30Z" in timeline, timeline
    assert all(f in said[0] for f in ("started", "images", "config", "number")), said


async def test_wait_settles_on_a_history_with_an_unreadable_check_and_says_so_once() -> None:
    """A halted release whose history has a check with `measurements:
    [1, {...}]`: failing() did `1.get` and `canary wait` died with a
    traceback instead of exit 5 with the failing measurement."""
    halted = {**IN_FLIGHT, "phase": "Halted", "halted": "error-rate = 7.5"}
    records = [entry([check(1, measurements=[1, measurement()]), check(2, verdict=5)], [])]
    kube = _WaitKube(halted, records)
    told: list[str] = []
    request = waiting.Request("shop", "web", revision=REV, timeout_s=5)
    result = await waiting.wait(kube, request, told.append)  # type: ignore[arg-type]
    assert result.settled.outcome is Outcome.HALTED, result.settled
    assert [m["metric"] for m in result.settled.failing] == ["error-rate"]
    assert "error-rate (green) = 7.5, want <= 1: fail" in render.waited(result)
    warnings = [t for t in told if t.startswith("warning:")]
    assert len(warnings) == 1 and "measurements[0]" in warnings[0] and "verdict" in warnings[0]


async def test_status_says_why_a_release_was_held_back_over_an_unreadable_check() -> None:
    held = {**IN_FLIGHT, "phase": "RolledBack", "failed_revision": REV, "canary": None}
    bad = check(2, measurements=[measurement(value="x")])
    kube = Kube(held, [entry([check(1), bad], [], outcome="rolled-back", ended=T0 + 200)])
    item = (await oncall.status(kube, "shop", "web"))[0]  # type: ignore[arg-type]
    assert [m["value"] for m in item["rolled_back"]["failing"]] == [7.5], item
    assert "rolled-back" in oncall.status_text([item], color=False)


def test_the_dashboard_leaves_out_an_unreadable_check_and_names_it() -> None:
    """Merging a carried check into an entry whose `checks` is "abc" did
    `"a".get`: the Service's row and page would not render."""
    site = loaded_site(Kube(carrying(history.check_item(REV, check(2))), None))
    configmap = {
        "metadata": {"namespace": "shop", "name": "web-canary-history", "resourceVersion": "3"},
        "data": {"history.json": json.dumps([entry("abc", [event(T0, "RolloutStarted")])])},
    }
    site.feeds.histories[None].informer._cache[("shop", "web-canary-history")] = configmap
    shown = site.history("shop", "web")
    assert [c["step"] for c in shown.records[0]["checks"]] == [2]
    assert "checks is" in shown.problem and "not a list" in shown.problem, shown.problem
    page = site.service_page("shop", "web")
    assert page is not None and page.row.last_verdict == "fail"


# -- 2. the history ConfigMap deleted or emptied mid-rollout ---------------------------------


START = {"revision": REV, "start": {"at": T0, "reason": "started: steps 10,25,50%"}}


@pytest.mark.parametrize("configmap", [None, "", []], ids=["deleted", "no data", "empty list"])
@pytest.mark.parametrize("start", [True, False], ids=["start carried", "start written"])
async def test_history_and_timeline_show_the_rollout_the_status_carries(
    configmap: Any, start: bool
) -> None:
    items = [
        history.check_item(REV, check(1)),
        history.event_item(REV, T0 + 61, T0 + 61, "StepAdvanced", "to 25%"),
    ]
    kube = Kube(carrying(*([START] if start else []), *items), configmap)
    records, table, timeline, said = await on_call(kube)
    assert [r["revision"] for r in records] == [REV] and not said, records
    assert REV in table and "progressing" in table, table
    assert "decided at step 1" in timeline and "StepAdvanced: to 25%" in timeline, timeline
    assert "started 2027-01-15 08:00:00Z" in timeline, timeline


@pytest.mark.parametrize("configmap", [None, ""], ids=["deleted", "no data"])
def test_the_dashboard_shows_the_rollout_the_status_carries(configmap: Any) -> None:
    items = [START, history.check_item(REV, check(1))]
    site = loaded_site(Kube(carrying(*items), None))
    if configmap is not None:
        cm = {"metadata": {"namespace": "shop", "name": "web-canary-history"}, "data": {}}
        site.feeds.histories[None].informer._cache[("shop", "web-canary-history")] = cm
    shown = site.history("shop", "web")
    assert [r["revision"] for r in shown.records] == [REV]
    page = site.service_page("shop", "web")
    assert page is not None and page.row.last_verdict == "fail"
    assert [r.revision for r in page.revisions] == [REV]
    timeline = site.revision_page("shop", "web", 1)
    assert timeline is not None and [d.step for d in timeline.decisions] == ["1"]


class _WaitKube:
    """The Service and its history ConfigMap as listed; nothing changes."""

    def __init__(self, status: dict[str, Any], records: Any) -> None:
        self.service = svc(status)
        self.records = records

    async def get(self, path: str, **_: Any) -> dict[str, Any]:
        items: list[Any] = []
        if path.endswith("/services"):
            items = [copy.deepcopy(self.service)]
        elif path.endswith("/configmaps") and self.records is not None:
            data = {"history.json": json.dumps(self.records)}
            items = [{"metadata": {"name": "web-canary-history"}, "data": data}]
        return {"items": items, "metadata": {"resourceVersion": "10"}}

    async def watch(self, path: str, rv: str, timeout: int, **_: Any) -> AsyncIterator[Any]:
        await asyncio.sleep(3600)
        yield {}


# -- 3. no shape stops a reader -------------------------------------------------------------

keys = st.sampled_from(
    [
        *("number", "revision", "images", "config", "outcome", "reason", "checks", "actions"),
        *("started", "ended", "kind", "at", "evaluated", "applied", "step", "weight"),
        *("effective_weight", "verdict", "decided", "measurements", "metric", "twin"),
        *("query", "start", "end", "value", "threshold", "duration_ms", "stable_value"),
        *("error", "baseline", "message", "check", "event"),
    ]
)
shapes = st.recursive(
    json_values,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=8),
    max_leaves=40,
)


@settings(max_examples=100, deadline=None)
@given(
    records=st.lists(st.dictionaries(keys, shapes, max_size=10), max_size=3),
    carried=st.lists(st.dictionaries(keys, shapes, max_size=4), max_size=3),
)
def test_no_history_or_carried_shape_stops_an_on_call_reader(
    records: list[dict[str, Any]], carried: list[dict[str, Any]]
) -> None:
    status = carrying(*[{**i, "revision": REV} for i in carried])
    shown, _ = history.read(json.loads(json.dumps(records, default=str)), status)
    oncall.history_text(shown, color=False)
    json.dumps(jsonout.history(shown), default=str)
    for record, change in zip(shown, changes(shown), strict=True):
        render.timeline(record, False, change)
        for m in release_outcome.failing(record):
            release_outcome.describe(m)
    for revision in {str(r.get("revision")) for r in shown}:
        for phase in ("Halted", "Paused", "Progressing"):
            state = {**status, "phase": phase, "halted": "x", "canary_revision": revision}
            release_outcome.judge(revision, state, shown, revision)
            release_outcome.judge(revision, {**state, "canary_revision": ""}, shown, "other", 1)
            release_outcome.stale_after(state, shown, revision, revision)
        waiting.resolve(waiting.Request("shop", "web", image="x"), status, shown, None, ())
