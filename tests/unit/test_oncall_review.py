"""What on-call reads on a bad day (CLI, timeline, /metrics), found by an
adversarial review; each test failed before its fix."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from prometheus_client import generate_latest

from analysis.run import StepResult
from analysis.verdicts import Measurement, Verdict
from canary import history, jsonout, oncall, render
from canary import wait as waiting
from canary.kube import ApiError
from canary.model import Plan, Record, SetSelector, Source, State
from canary.reconcile import Caches, Edges, Reconciler
from canary.release_outcome import Outcome
from canary.spec import FIELD_MANAGER, TWIN_LABEL
from tests.unit.in_flight import in_flight
from tests.unit.test_config_bad_day import _Writes
from tests.unit.test_dashboard_bad_day import IN_FLIGHT, FakeKube, svc
from tests.unit.test_stale_status import STRICT, serving_canary
from tests.unit.test_wait_recreated import IN_FLIGHT as WAIT_IN_FLIGHT
from tests.unit.test_wait_recreated import PROMOTED as WAIT_PROMOTED
from tests.unit.test_wait_recreated import REV as WAIT_REV
from tests.unit.test_wait_recreated import svc as wait_svc
from tests.unit.world import World, spec

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


# -- 1. a status that is a JSON object of the wrong types -----------------------------------


async def test_cli_status_survives_a_status_object_with_fields_of_the_wrong_type() -> None:
    """`kubectl edit` leaves `"step": "1"` or `"effective_weight": null`: still
    a JSON object, so oncall._status passed it through and status_rows did
    `"1" + 1` (TypeError): `canary status -A` died with a traceback and
    showed no Service at all. The controller reads such a status through
    State.from_json (a numeric string is taken as the number; anything else
    is rebuilt), and the CLI must read it the same way."""
    coerced = svc({**IN_FLIGHT, "step": "1", "effective_weight": "25"})
    item = (await oncall.status(FakeKube(coerced), "shop", None))[0]  # type: ignore[arg-type]
    text = oncall.status_text([item], color=False)
    assert "Progressing" in text and "25%/25%" in text, text
    broken = svc({**IN_FLIGHT, "effective_weight": None, "step": "two"})
    item = (await oncall.status(FakeKube(broken), "shop", None))[0]  # type: ignore[arg-type]
    text = oncall.status_text([item], color=False)
    assert "Unreadable" in text and "step" in text, text


# -- 2. a check without a measurement (analysis timed out or crashed) -------------------------


def timed_out_rollout() -> list[dict[str, Any]]:
    source = Source(exists=True, revision="r2", images=("web:v2",))
    records = history.apply_record([], Record("r2", "progressing", "started"), source, T0, 10)
    records = history.add_event(records, "r2", T0, "RolloutStarted", "revision r2 rolling out")
    measurement = Measurement(
        "success-rate", "green", "q", T0, T0 + 60, 99.9, ">= 99", Verdict.PASS, 12.0
    )
    passed = StepResult(Verdict.PASS, (measurement,), "all pass")
    records = history.add_check(
        records,
        "r2",
        history.check_entry(0, 10, 10.0, passed, "step 2/3", at=T0 + 60, evaluated=T0 + 60),
    )
    # Prometheus hung: checks.py makes this result, with no measurement at all.
    hung = StepResult(Verdict.ERROR, (), "analysis did not finish within 35s")
    return history.add_check(
        records,
        "r2",
        history.check_entry(
            1,
            25,
            25.0,
            hung,
            "step 2/3: analysis error (analysis did not finish within 35s)",
            at=T0 + 155,
            evaluated=T0 + 120,
        ),
    )


def test_a_check_with_no_measurement_is_shown_at_its_time_and_says_why() -> None:
    """The timeline placed a check by its measurements' window end: one with
    none (the analysis timed out, or crashed: Prometheus hanging is exactly
    the bad day) sorted at 0, above the RolloutStarted it followed, with `-`
    for its time."""
    text = render.timeline(timed_out_rollout()[-1], color=False)
    body = text.split("\n\n", 1)[1]
    heads = [line.split()[0] for line in body.splitlines() if not line.startswith(" ")]
    assert heads == ["08:00:00", "08:01:00", "08:02:00"], text
    assert text.count("analysis did not finish within 35s") == 1, text


def test_the_dashboard_gives_a_check_with_no_measurement_its_time_too() -> None:
    """The same check on the dashboard: its "last check" read `error -` and
    the revision page's decision had no time, while Prometheus hung."""
    from canary.dashboard import views

    hung = timed_out_rollout()[-1]["checks"][-1]
    assert views.check_time(hung) == T0 + 120


# -- 3. a Service deleted keeps its analysis values on /metrics -------------------------------


def test_a_forgotten_service_keeps_no_analysis_series() -> None:
    """Metrics.forget() (Service deleted, or no longer managed) removed the
    phase, weight, rollout and schedule series but not
    canary_analysis_value nor canary_analysis_measurements_total: the last
    canary's error rate stayed exported for a Service that no longer
    exists, and an alert on it fired for ever."""
    from canary.telemetry import Metrics

    metrics = Metrics()
    metrics.service("shop", "web", "Progressing", IN_FLIGHT)
    failing = Measurement("error-rate", "green", "q", T0, T0 + 60, 7.5, "<= 1", Verdict.FAIL, 9.0)
    metrics.analysis("shop", "web", StepResult(Verdict.FAIL, (failing,), "error-rate = 7.5"))
    metrics.forget("shop", "web")
    left = [
        line
        for line in generate_latest(metrics.registry).decode().splitlines()
        if 'service="web"' in line
    ]
    assert left == []


# -- 4. a history ConfigMap that cannot be read --------------------------------------------


class HistoryKube(FakeKube):
    def __init__(self, data: str) -> None:
        super().__init__(svc())
        self.data = data

    async def get(self, path: str, **kw: Any) -> dict[str, Any]:
        if path.endswith("/configmaps/web-canary-history"):
            return {"metadata": {"name": "web-canary-history"}, "data": {"history.json": self.data}}
        return await super().get(path, **kw)


async def test_history_and_timeline_say_a_corrupt_history_is_corrupt() -> None:
    """A history ConfigMap that is not valid JSON (truncated, hand-edited)
    read as empty: `canary history` printed only its headers and `canary
    timeline` "no revisions recorded yet", the same as a Service that never
    had a rollout, while the controller (when one runs) copies it aside
    and starts a new one. On-call must be told the record is damaged."""
    kube = HistoryKube('[{"number": 1, "revision": "r1"')
    try:
        records = await oncall.revisions(kube, "shop", "web")  # type: ignore[arg-type]
    except oncall.UserError as exc:
        assert "not valid JSON" in str(exc) and "web-canary-history" in str(exc)
    else:
        raise AssertionError(f"a corrupt history read as {records!r}")
    good = json.dumps(timed_out_rollout())
    records = await oncall.revisions(HistoryKube(good), "shop", "web")  # type: ignore[arg-type]
    assert [r["revision"] for r in records] == ["r2"]


# -- 5. how old the status is, and who wrote it ----------------------------------------------


def managed(manager: str, ago: float) -> dict[str, Any]:
    at = dt.datetime.fromtimestamp(time.time() - ago, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "manager": manager,
        "operation": "Update",
        "time": at,
        "fieldsV1": {"f:metadata": {"f:annotations": {"f:canary.io/status": {}}}},
    }


async def test_cli_status_says_when_and_by_whom_the_status_was_last_written() -> None:
    """The controller rewrites an in-flight rollout's status at every check,
    but a controller that holds its Lease and fails on this one Service
    every cycle (ReconcileFailed, on the Events only) leaves "Progressing:
    step 2/3 at 25%: analysing" standing for an hour, printed exactly like
    a live one: the lease warning cannot see it. Nor could on-call tell a
    status someone rewrote by hand. The Service's managedFields say when the
    status annotation was last written, and by which field manager."""
    stuck = svc()
    applied = {**managed("kubectl-client-side-apply", 86400), "fieldsV1": {"f:spec": {}}}
    stuck["metadata"]["managedFields"] = [applied, managed("canary-controller", 3600)]
    item = (await oncall.status(FakeKube(stuck), "shop", None))[0]  # type: ignore[arg-type]
    text = oncall.status_text([item], color=False)
    assert "WRITTEN" in text and re.search(r"\b60m0\ds ago\b", text), text
    assert str(jsonout.status(item).get("status_written")).endswith("Z")
    edited = svc()
    edited["metadata"]["managedFields"] = [
        managed("canary-controller", 3600),
        managed("kubectl-edit", 120),
    ]
    item = (await oncall.status(FakeKube(edited), "shop", None))[0]  # type: ignore[arg-type]
    text = oncall.status_text([item], color=False)
    assert re.search(r"\b2m0\ds ago by kubectl-edit\b", text), text
    assert render.CONTROLLER_MANAGER == FIELD_MANAGER  # the controller is not named


# -- 6. an abort whose cycle was cut short after its record ---------------------------------


def test_an_abort_cut_short_after_its_record_is_not_reported_as_ignored() -> None:
    """`canary abort` lands; the decision writes its record (aborted), moves
    the selector, and the canary's scale-down fails (an API error, the
    lease lost). The retry finds the outcome in the history and finishes it
    (already_ended), but it read the older status, where the abort was not
    yet taken: it judged the request again and told on-call, as a Warning,
    "abort ... was asked for revision r2, but there is nothing to abort;
    nothing was done", for the abort that was done. And its StateRebuilt
    said "the status write of that decision failed" when it was the scale."""
    world = serving_canary()
    world.action = "abort revision=r2 t1"
    world.step(STRICT, advance=1, cut_after=SetSelector)
    assert world.records[-1]["outcome"] == "aborted" and world.state.canary == "green"
    world.events.clear()
    world.step(STRICT, advance=15)  # the retry, or the next leader
    assert world.state.canary is None and world.state.last_action == "abort revision=r2 t1"
    assert "ActionIgnored" not in world.reasons(), [e.message for e in world.events]
    rebuilt = next(e.message for e in world.events if e.reason == "StateRebuilt")
    assert "status write" not in rebuilt and "abort revision=r2 t1" in rebuilt, rebuilt


class _ScaleFails(_Writes):
    """The API server refuses writes to the canary twin (an etcd leader
    change); everything else lands."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = True
        self.bodies: list[tuple[str, dict[str, Any]]] = []

    async def patch(self, path: str, body: dict[str, Any], *a: object, **k: object) -> Any:
        self.bodies.append((path, body))
        if self.failing and "web-green" in path:
            raise ApiError(500, "InternalError", "etcd leader changed")
        return await super().patch(path, body)


def _in_flight_cluster() -> tuple[list[Any], dict[str, Any]]:
    """Informers for Service web with r2 in flight on the green twin (r1
    stable on blue), an abort requested, and its history."""
    informers, service, _ = in_flight(
        900.0,
        lambda state, s2: {
            "canary.io/strategy": "canary",
            "canary.io/steps": "25,50",
            "canary.io/status": json.dumps({"phase": "Progressing", **state.to_json()}),
            "canary.io/action": f"abort revision={s2.revision} t1",
        },
    )
    return informers, service


def test_a_rollout_end_cut_short_after_its_record_is_counted_in_the_metrics() -> None:
    """canary_rollouts_total is "counted from what the controller records
    in the history" (README). The abort's cycle wrote its record, then the
    canary's scale-down failed: the cycle raised before _landed counted it,
    and its retry (already_ended) records nothing again, so the history said
    aborted and canary_rollouts_total{outcome="aborted"} stayed 0 for ever:
    an alert on increase() never fired, on exactly the day it should."""
    informers, service = _in_flight_cluster()
    kube = _ScaleFails()
    reconciler = Reconciler(Edges(kube=kube, prometheus=None), Caches(*informers))  # type: ignore[arg-type]
    with contextlib.suppress(ApiError):
        asyncio.run(reconciler.reconcile("ns", "web"))
    written = [b for p, b in kube.bodies if p.endswith("/configmaps/web-canary-history")]
    assert json.loads(written[-1]["data"]["history.json"])[-1]["outcome"] == "aborted"
    kube.failing = False  # the retry: the history as written, the selector moved
    informers[3].held["web-canary-history"]["data"] = written[-1]["data"]
    informers[0].held["web"] = {**service, "spec": {"selector": {"app": "web", TWIN_LABEL: "blue"}}}
    asyncio.run(reconciler.reconcile("ns", "web"))
    assert "StateRebuilt" in kube.reasons, kube.reasons
    counted = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in generate_latest(reconciler.metrics.registry).decode().splitlines()
        if line.startswith("canary_rollouts_total{")
    }
    assert counted['canary_rollouts_total{namespace="ns",outcome="aborted",service="web"}'] == 1


def test_only_what_the_retry_will_not_record_again_is_counted_for_a_cut_cycle() -> None:
    """An abort right after a promotion, or the start of an undo's rollout,
    is decided again by the retry (no rollout in flight to be found ended),
    and counted when that lands: counted at the cut too, it was twice."""
    informers, _ = _in_flight_cluster()
    reconciler = Reconciler(Edges(kube=None, prometheus=None), Caches(*informers))  # type: ignore[arg-type]
    flip_back = Plan((Record("r2", "aborted", "aborted by alice after promotion"),), State(), None)
    promoted = State(stable="green", stable_revision="r2", scale_down="blue")
    reconciler._cut_short(("ns", "web"), promoted, None, None, flip_back)
    undo = Plan(
        (Record("r3", "superseded", "undo"), Record("r1", "progressing", "undo")), State(), 1.0
    )
    in_flight = State(stable="blue", stable_revision="r1", canary="green", canary_revision="r3")
    reconciler._cut_short(("ns", "web"), in_flight, None, None, undo)
    counted = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in generate_latest(reconciler.metrics.registry).decode().splitlines()
        if line.startswith("canary_rollouts_total{")
    }
    assert counted == {
        'canary_rollouts_total{namespace="ns",outcome="superseded",service="web"}': 1.0
    }, counted


# -- 7. `canary wait` right after `canary retry` ---------------------------------------------


class _WaitKube:
    """The Service as listed, then the versions its watch delivers."""

    def __init__(self, first: dict[str, Any], then: list[dict[str, Any]]) -> None:
        self.first, self.then = first, then

    async def get(self, path: str, **_: Any) -> dict[str, Any]:
        items = [self.first] if path.endswith("/services") else []
        return {"items": items, "metadata": {"resourceVersion": "10"}}

    async def watch(self, path: str, rv: str, timeout: int, **_: Any) -> AsyncIterator[Any]:
        if path.endswith("/services"):
            events, self.then = self.then, []
            for event in events:
                yield {"type": "MODIFIED", "object": event}
        await asyncio.sleep(3600)


def _with_action(status: dict[str, Any], action: str) -> dict[str, Any]:
    service = wait_svc(status, "10")
    service["metadata"]["annotations"]["canary.io/action"] = action
    return service


async def test_wait_after_a_retry_not_yet_taken_waits_for_the_retry() -> None:
    """CI re-runs a release that was rolled back: `canary retry web` then
    `canary wait web --revision R`. Until the controller takes the retry
    (a moment; or until it is back, when it is restarting) the status still
    holds R as rolled back, and wait settled on that at once: exit 3 with
    the old attempt's reason, while the retry then rolled R out again."""
    retry = f"retry revision={WAIT_REV} t1"
    held_back = {
        **WAIT_PROMOTED,
        "stable": "blue",
        "stable_revision": "aaaaaaaaaa",
        "failed_revision": WAIT_REV,
        "phase": "RolledBack",
        "last_action": "",
    }
    again = {**WAIT_IN_FLIGHT, "last_action": retry, "failed_revision": ""}
    promoted = {**WAIT_PROMOTED, "last_action": retry}
    kube = _WaitKube(
        _with_action(held_back, retry),
        [_with_action(again, retry), _with_action(promoted, retry)],
    )
    request = waiting.Request("shop", "web", revision=WAIT_REV, timeout_s=5)
    result = await waiting.wait(kube, request)  # type: ignore[arg-type]
    assert result.settled.outcome is Outcome.PROMOTED, result.settled
    # Taken, and held back again: that is the answer.
    taken = {**held_back, "last_action": retry}
    kube = _WaitKube(_with_action(taken, retry), [])
    result = await waiting.wait(kube, request)  # type: ignore[arg-type]
    assert result.settled.outcome is Outcome.ROLLED_BACK, result.settled


def test_a_halted_or_paused_release_with_a_request_waiting_is_not_settled() -> None:
    """`canary promote` (or resume) a moment before `canary wait`: exit 5
    (halted) or 6 (paused) for a release the request then moves on."""
    from canary.release_outcome import Pending, judge

    halted = {**WAIT_IN_FLIGHT, "phase": "Halted", "halted": "no data for 3 checks"}
    paused = {**WAIT_IN_FLIGHT, "phase": "Paused", "paused": True}
    promote = f"promote revision={WAIT_REV} t1"
    assert isinstance(judge(WAIT_REV, halted, [], None, asked=promote), Pending)
    assert isinstance(judge(WAIT_REV, paused, [], None, asked="resume t2"), Pending)
    settled = judge(WAIT_REV, halted, [], None, asked="promote revision=cccccccccc t1")
    assert getattr(settled, "outcome", None) is Outcome.HALTED  # meant for another release
    assert getattr(judge(WAIT_REV, paused, [], None), "outcome", None) is Outcome.PAUSED


# -- 8. the timeline's day -----------------------------------------------------------------


def test_the_timeline_says_which_day_its_times_are() -> None:
    """Every line of the timeline is a clock time (08:01:00) and nothing in
    it gave the date: at 3 a.m. yesterday's rollout (or last month's, with
    --revision) read as one that ran a few hours ago, and one that ran over
    midnight went from 23:59 to 00:00 with nothing saying a day passed."""
    record = timed_out_rollout()[-1]
    text = render.timeline(record, color=False)
    assert "started 2027-01-15 08:00:00Z" in text and "not ended" in text, text
    ended = {**record, "outcome": "rolled-back", "ended": T0 + 86_400 + 60}
    text = render.timeline(ended, color=False)
    assert "ended 2027-01-16 08:01:00Z" in text, text


# -- 9. the weight while a promotion waits for its pods ------------------------------------


def test_a_promotion_waiting_for_its_pods_reports_the_weight_the_canary_serves() -> None:
    """`canary promote` at step 1 (25%): the canary twin grows to the app's
    size under a Service that selects both twins, and the flip waits until
    every new pod is a ready endpoint. Meanwhile the canary served half the
    traffic, and the status (WEIGHT 25%/25%) and canary_weight_percent
    {kind="effective"} still said 25% effective: nothing updated the
    effective weight while promoting."""
    canary = spec(steps="25,50")
    world = World().adopted(canary)
    world.source = replace(world.source, revision="r2")
    world.settle(canary)
    assert world.state.effective_weight == 25.0
    world.action = "promote t1"
    world.step(canary, advance=1)  # the canary twin grows to 3 pods
    assert world.state.promoting and world.twins["green"].replicas == 3
    # Its 3 pods ready and serving, one ReplicaSet still rolling: no flip yet.
    world.twins["green"] = replace(world.twins["green"], updated=False)
    world.step(canary, advance=5)
    assert world.state.promoting and world.selector.get(TWIN_LABEL) is None
    served = world.observed().twins
    share = 100 * served["green"].endpoints / (served["green"].endpoints + served["blue"].endpoints)
    assert share == 50.0
    assert world.state.effective_weight == share, render.weight(world.state.to_json())
