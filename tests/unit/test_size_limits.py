"""Size limits over a long life: what the controller writes (and asks
Prometheus for) must stay under the limits it meets without losing what a
rollback or an undo needs. Sizes are measured on realistic states (a
production pod template, real checks). Each test failed on the code before
its fix."""

from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import replace as replaced
from typing import Any

from analysis.verdicts import Verdict
from canary import history
from canary.model import JSON, Checked, Emit, Record, Source
from canary.plan import Draft
from canary.rollout import RESUMED_WINDOW_SCRAPES, _told_churn
from canary.schedule import analysis_due
from tests.unit.objects import cached_actor
from tests.unit.test_slow_prometheus import _serving
from tests.unit.world import result
from tests.unit.world import spec as a_spec


def _template(image: str) -> JSON:
    """A production-sized pod template (about 9 KB as JSON): an app with its
    settings in env, a log shipper, probes, volumes, spreading rules."""
    env: list[JSON] = [
        {"name": f"CHECKOUT_SETTING_{i:02d}", "value": f"value-{i}-" + "x" * 60} for i in range(80)
    ]
    probe = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10}
    app = {
        "name": "checkout-api",
        "image": image,
        "env": env,
        "envFrom": [{"configMapRef": {"name": "checkout-config-1a2b3c4d5e"}}],
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}},
        "livenessProbe": probe,
        "readinessProbe": probe,
    }
    shipper = {"name": "log-shipper", "image": "registry.example.com/fluent-bit:2.2.0"}
    return {
        "metadata": {"labels": {"app": "checkout-api", "team": "payments"}},
        "spec": {
            "containers": [app, shipper],
            "volumes": [{"name": "config", "configMap": {"name": "checkout-files-1a2b3c4d5e"}}],
        },
    }


def _source(revision: str, image: str) -> Source:
    return Source(
        exists=True,
        revision=revision,
        images=(image,),
        template=_template(image),
        config={"ConfigMap/checkout-config": "1a2b3c4d5e"},
    )


def _size(records: list[JSON]) -> int:
    return len(json.dumps(records, separators=(",", ":")))


def test_a_config_churn_never_trims_the_serving_template_out_of_the_history() -> None:
    """history-limit 100, and a Secret that rotates faster than a rollout
    lasts (ConfigChurn): every release is superseded by the next, none is
    promoted, for a day (144 at one every 10 minutes). _trim keeps the
    serving entry (the only one holding the stable revision's template: the
    source is always on a newer revision), first among the 100 kept; the
    whole history passes dump's 900 KB, and dump dropped whole revisions
    oldest first: the serving one. Then a stable twin deleted (or edited by
    hand) mid-rollout could not be put back ("no template known"), and the
    Service had no pod."""
    image = "registry.example.com/payments/checkout-api:v2.31.4"
    serving = _source("r0", image)
    records = history.apply_record([], Record("r0", "adopted", "adopted"), serving, 0.0, 100)
    for n in range(1, 145):
        release = _source(f"r{n}", image)
        at = n * 600.0
        records = history.apply_record(
            records, Record(f"r{n}", "progressing", "release"), release, at, 100
        )
        for i in range(3):
            records = history.add_event(
                records, f"r{n}", at + i, "RolloutStarted", f"revision r{n}: " + "y" * 200
            )
        records = history.apply_record(
            records, Record(f"r{n}", "superseded", "a newer revision"), release, at + 590, 100
        )
    assert _size(records) > history.MAX_BYTES  # what dump must trim
    assert history.template_of(records, "r0") == serving.template

    kept = history.load({"data": history.dump(records)})

    assert history.template_of(kept, "r0") == serving.template
    assert kept[-1]["revision"] == "r144"  # the newest still there
    assert _size(kept) <= history.MAX_BYTES


def test_a_history_too_big_keeps_the_rollout_in_flight_and_the_serving_entry() -> None:
    """Even when the two alone are all that fits, they are what stays."""
    big: Any = {"x": "z" * 500_000}
    serving = {"number": 1, "revision": "r1", "outcome": "promoted", "template": big}
    older = {"number": 2, "revision": "r2", "outcome": "rolled-back", "template": big}
    flight = {"number": 3, "revision": "r3", "outcome": "progressing", "template": {}}
    kept = history.load({"data": history.dump([copy.deepcopy(serving), older, flight])})
    assert [r["revision"] for r in kept] == ["r1", "r3"]


def _scaled_every_10_minutes(
    records: list[JSON], revision: str, since: float, hours: int
) -> list[JSON]:
    """A GitOps tool re-applying `replicas` on the team's Deployment while a
    rollout stands still: a SourceScaled Event every 10 minutes (its pace),
    filed under the rollout in flight's entry, as the status carries them
    into the history (apply_items)."""
    items = [
        history.event_item(
            revision,
            since + 600.0 * n,
            since + 600.0 * n,
            "SourceScaled",
            "Deployment web was scaled to 3 (6 times since the last such Event): "
            "it is back at 0, and the blue twin runs 3 replicas",
        )
        for n in range(1, hours * 6 + 1)
    ]
    return history.apply_items(records, items)


def test_a_pause_held_for_a_day_is_still_read_back_from_the_history() -> None:
    """`canary pause web` on a Friday; over the weekend Argo CD re-applies the
    Deployment's `replicas` (a SourceScaled every 10 minutes) and, with
    `Replace=true`, replaces the Service (status and action gone). The
    pause is read back from the RolloutPaused Event in the history
    (paused_by_hand); the entry kept only its newest 100 Events, so after
    17 hours the pause was gone from it and a rebuilt status rolled the
    release on, against the person holding it."""
    records: list[JSON] = [{"number": 2, "revision": "r2", "checks": [], "actions": []}]
    records = history.apply_items(
        records, [history.event_item("r2", 100.0, 100.0, "RolloutPaused", "paused by alice")]
    )
    assert history.paused_by_hand(records, []) == "paused by alice"
    records = _scaled_every_10_minutes(records, "r2", 100.0, hours=48)
    assert len(records[0]["actions"]) <= 100
    assert history.paused_by_hand(records, []) == "paused by alice"
    # A resume lifts it, however many Events follow.
    records = history.apply_items(
        records,
        [history.event_item("r2", 200_000.0, 200_000.0, "RolloutResumed", "resumed by bob")],
    )
    records = _scaled_every_10_minutes(records, "r2", 200_000.0, hours=48)
    assert history.paused_by_hand(records, []) == ""


def test_an_undo_held_for_a_day_is_still_an_undo_in_the_history() -> None:
    """An `undo` (r1 again, away from r2 promoted and found bad later) waits
    at a closed gate for a day while SourceScaled Events pile up: its entry
    must still say it was an undo (history.undos), which a rebuilt status
    reads so that it does not roll r2 out again (rebuild._undone)."""
    records: list[JSON] = [{"number": 3, "revision": "r1", "checks": [], "actions": []}]
    records = history.apply_items(
        records, [history.event_item("r1", 100.0, 100.0, "UndoRequested", "alice asked to undo")]
    )
    records = _scaled_every_10_minutes(records, "r1", 100.0, hours=24)
    assert len(records[0]["actions"]) <= 100
    assert "r1" in history.undos(records)


def test_a_probe_after_a_long_outage_asks_for_one_interval_not_the_whole_outage() -> None:
    """Halted on query errors, the rollout probes Prometheus every interval
    and resumes by itself once queries succeed. Each probe that failed kept
    the window's start, so the next asked for the whole halt again: after a
    night's outage at a 1 s scrape, `rate(...[8h])` over the canary's
    latency buckets is 50 million samples, more than Prometheus loads for
    one query (422 "query processing would load too many samples") or
    answers within query-timeout. Every probe then failed though Prometheus
    was back: halted for good, the canary serving its weight with no look
    (none runs while halted on errors) until a person came."""

    the_spec = a_spec(steps="50")
    world = _serving(the_spec, scrape=1.0)
    for _ in range(the_spec.analysis.error_limit + 1):
        world.step(the_spec, result(Verdict.ERROR, "Prometheus unavailable"), advance=30)
    assert world.state.halt_kind == "errors", world.state
    outage_began = world.state.window_start or world.state.step_ready
    for _ in range(8 * 120):  # a probe every 30 s for 8 hours, each failing
        due = analysis_due(the_spec, world.state, world.now + 30, world.scrape, world.phase)
        assert due is not None and due.kind == "probe", due
        failed = Checked("probe", result(Verdict.ERROR, "query timed out after 10s"), due.end)
        world.step(the_spec, failed, advance=30)
    assert world.state.halt_kind == "errors"
    due = analysis_due(the_spec, world.state, world.now + 30, world.scrape, world.phase)
    assert due is not None and due.kind == "probe", due
    assert due.start >= outage_began  # never before the step served
    assert due.end - due.start <= max(the_spec.interval, 2 * world.scrape), due
    # It answers: the rollout goes on with a fresh window.
    world.step(the_spec, Checked("probe", result(Verdict.PASS), due.end), advance=30)
    assert world.state.halt_kind == "" and "RolloutResumed" in world.reasons()


def test_a_check_after_a_pause_of_days_reads_minutes_not_the_whole_pause() -> None:
    """`canary pause` on a Friday, `canary resume` on Monday. The step's
    window kept its start from before the pause, so the first scheduled
    check after the resume asked for `rate(...[72h])`: at a 1 s scrape, a
    quarter of a million samples per series, more than Prometheus loads
    for one query (422) or answers within query-timeout. The checks erred,
    each wider than the one before: past error-limit, `on-limit: rollback`
    rolled a good release back (AnalysisError); `halt` halted it. The canary served at
    its weight all along (looked at every scrape, failure-only): the check
    now reads the newest 600 scrapes of it (10 minutes), and the step moves
    on as before."""
    the_spec = a_spec(steps="25,50", analysis="on-limit: rollback")
    world = _serving(the_spec, scrape=1.0)
    world.action = "pause t1"
    world.step(the_spec, advance=1)
    assert world.state.paused
    for _ in range(3 * 24 * 60):  # three days, a look every minute (all pass)
        due = analysis_due(the_spec, world.state, world.now, world.scrape, world.phase)
        looked = Checked(due.kind, result(Verdict.PASS), due.end) if due else None
        world.step(the_spec, looked, advance=60)
    world.action = "resume t2"
    world.step(the_spec, advance=0.5)
    assert not world.state.paused and "RolloutResumed" in world.reasons()
    for _ in range(100):
        due = analysis_due(the_spec, world.state, world.now, world.scrape, world.phase)
        if due is not None and due.kind == "scheduled":
            break
        world.step(the_spec, advance=0.5)
    assert due is not None and due.kind == "scheduled", due
    assert due.end - due.start <= RESUMED_WINDOW_SCRAPES * world.scrape + 1, due
    world.step(the_spec, Checked("scheduled", result(Verdict.PASS), due.end), advance=0.5)
    assert "StepAdvanced" in world.reasons()


class _EventsKube:
    """Records the Events created."""

    def __init__(self) -> None:
        self.events: list[JSON] = []

    async def create(self, path: str, body: JSON, **_: object) -> JSON:
        self.events.append(body)
        return body


def test_a_long_event_keeps_what_to_do_about_it() -> None:
    """ConfigChurn names every tracked ConfigMap and Secret, then the fix.
    An app reading 30 of them (a Secret per dependency) made a message of
    about 1,700 characters; the Event kept its first 1,024, and the fix
    (`canary.io/config-tracking: disabled` on the object that rotates) was
    cut off: on-call read a list of names and no reason to act."""
    the_spec = a_spec(steps="50")
    world = _serving(the_spec)
    tracked = {f"Secret/checkout-dependency-{n:02d}-credentials": "1a2b3c4d5e" for n in range(30)}
    observed = world.observed()
    observed = replaced(observed, source=replaced(observed.source, config=tracked))
    draft = Draft(world.state, observed)
    _told_churn(draft, observed, "r9", 3, 40.0)
    (told,) = [a for a in draft.actions if isinstance(a, Emit) and a.reason == "ConfigChurn"]
    assert len(told.message) > 1024 and "config-tracking: disabled" in told.message
    kube = _EventsKube()
    service = {"metadata": {"name": "web", "namespace": "ns", "resourceVersion": "1", "uid": "u"}}
    asyncio.run(cached_actor(kube, {}, service).emit(told))
    (event,) = kube.events
    assert len(event["message"]) <= 1024
    assert event["message"].startswith(told.message[:200])  # what happened
    assert "config-tracking: disabled" in event["message"]  # what to do about it
