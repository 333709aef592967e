"""What on-call reads at 3 a.m. when more than one thing is wrong (the
status, `canary status`, /metrics), found by an adversarial review; each
test failed before its fix."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import generate_latest

from analysis.run import StepResult
from analysis.verdicts import Measurement, Verdict
from canary import oncall, release_outcome
from canary.act import Actor, Target
from canary.decide import decide, phase
from canary.kube import ApiError, NotFound
from canary.model import Checked, Emit, Phase, Plan, State
from canary.reconcile import Edges, Reconciler
from canary.telemetry import Metrics
from canary.writeguard import WriteGuard
from tests.unit.test_dashboard_bad_day import IN_FLIGHT, FakeKube, svc
from tests.unit.world import World, result, spec

CANARY = spec(steps="25,50")


def serving_canary() -> World:
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    assert world.state.canary == "green" and world.state.step_ready
    return world


def halted_on_errors(world: World) -> str:
    """Halted on Prometheus errors, then probed (still failing): the line
    the rollout keeps between probes."""
    for _ in range(CANARY.analysis.error_limit + 1):
        world.step(CANARY, result(Verdict.ERROR, "Prometheus unavailable"), advance=10)
    assert world.state.halt_kind == "errors"
    world.now += 10
    probe = Checked("probe", result(Verdict.ERROR, "503 from Prometheus"), world.now)
    world.state = decide(CANARY, world.state, world.observed(), probe, world.now).state
    return world.state.message


def stable_short(world: World, advance: float = 1.0) -> Plan:
    """One cycle in which the stable twin has one ready pod fewer than the
    app's size (a drain evicted it, and no node fits it yet)."""
    world.now += advance
    observed = world.observed()
    blue = observed.twins["blue"]
    short = replace(blue, ready=blue.ready - 1, endpoints=blue.endpoints - 1)
    plan = decide(
        CANARY,
        world.state,
        replace(observed, twins={**observed.twins, "blue": short}),
        None,
        world.now,
    )
    world.state = plan.state
    return plan


# -- 1. a halted rollout whose stable twin then loses a pod ----------------------------------


def test_a_halted_rollout_still_says_it_waits_for_a_person_while_degraded() -> None:
    """Halted on no data (the canary in production, waiting for `canary
    promote`, `abort` or `retry`), then a drain takes a stable pod. Degraded
    wins the phase, and its reason replaced the status message: `canary
    status` read "Degraded ... degraded: 2/3 pods of the blue twin (stable)
    ready", which clears by itself, and nothing said the rollout waits for a
    person (the CanaryRolloutHalted alert resolves at the same moment)."""
    world = serving_canary()
    for _ in range(CANARY.analysis.no_data_limit + 2):
        world.step(CANARY, result(Verdict.NO_DATA), advance=10)
    assert phase(CANARY, world.state) is Phase.HALTED
    halted = world.state.message
    assert halted.startswith("halted: "), halted
    for _ in range(3):  # said the same way cycle after cycle, never nested
        stable_short(world)
        assert phase(CANARY, world.state) is Phase.DEGRADED
        message = world.state.message
        assert message.startswith("degraded: 2/3 pods of the blue twin (stable) ready"), message
        assert halted in message and message.count("degraded:") == 1, message
    row = oncall.status_text(
        [{"namespace": "ns", "service": "web", **world.state.to_json(), "phase": "Degraded"}],
        color=False,
    )
    assert "canary promote" in row, row
    world.step(CANARY, advance=1)  # the pod is back
    assert phase(CANARY, world.state) is Phase.HALTED
    assert "degraded" not in world.state.message, world.state.message


def test_a_degraded_message_quoting_why_keeps_one_line_beneath_it_as_the_why_changes() -> None:
    """Degraded says why the stable twin's pods do not come (quoted from the
    pods: a crash loop's restart count changes at each restart), then the
    line of a rollout halted on Prometheus errors, which keeps what its last
    probe found between probes. Taken by the degradation's reason alone, the
    quoted part read as the start of the line beneath: the probe's line was
    not found and said again (a write per cycle), or the quote was kept as
    part of the line and grew the message by a copy (the two fixes, merged,
    did that)."""
    world = serving_canary()
    probed = halted_on_errors(world)
    assert "Prometheus still fails: 503 from Prometheus" in probed, probed
    sizes = []
    for restarts in range(3, 9):
        why = f"web-blue-1: container app: CrashLoopBackOff (last exit code 1, {restarts} restarts)"
        world.twins["blue"] = replace(world.twins["blue"], not_ready_why=why)
        stable_short(world)
        message = world.state.message
        assert message.count("CrashLoopBackOff") == 1 and f"{restarts} restarts" in message
        assert message.count(probed) == 1 and message.endswith(probed), message
        sizes.append(len(message))
    assert max(sizes) - min(sizes) <= 1, sizes  # one digit more at 10 restarts at most


def test_what_a_cycle_decided_while_degraded_is_still_said() -> None:
    """The status message is also what a check's line in `canary timeline`
    says it decided ("-> ..."). A failing canary rolled back while a stable
    pod was missing read "-> degraded: 2/3 pods of the blue twin (stable)
    ready", and the RolledBack Service's status the same, with nothing of
    the rollback or of `canary retry`."""
    strict = spec(steps="25,50", failure_limit="0")
    world = World().adopted(strict)
    world.source = replace(world.source, revision="r2")
    world.settle(strict)
    world.step(strict, result(Verdict.FAIL), advance=10)
    observed = world.observed()
    blue = observed.twins["blue"]
    short = replace(blue, ready=blue.ready - 1, endpoints=blue.endpoints - 1)
    world.now += 1
    plan = decide(
        strict,
        world.state,
        replace(observed, twins={**observed.twins, "blue": short}),
        Checked("fast", result(Verdict.FAIL), world.now),
        world.now,
    )
    assert plan.state.canary is None and plan.state.failed_revision == "r2"
    message = plan.state.message
    assert message.startswith("degraded: 2/3 pods of the blue twin (stable) ready"), message
    assert "revision r2 rolled-back" in message, message
    world.state = plan.state
    world.selector = {"app": "web", "canary.io/twin": "blue"}
    stable_short(world)  # the cycle after: RolledBack beneath, and what to run
    assert "canary retry" in world.state.message, world.state.message


def test_a_halt_on_prometheus_errors_keeps_its_line_between_probes_while_degraded() -> None:
    """Halted on query errors, the message keeps what the last probe found
    between probes (said again, it flipped: a status write each time). The
    degradation now goes first: the line beneath must be kept the same way."""
    world = serving_canary()
    for _ in range(CANARY.analysis.error_limit + 1):
        world.step(CANARY, result(Verdict.ERROR, "Prometheus unavailable"), advance=10)
    assert world.state.halt_kind == "errors"
    world.now += 10
    observed = world.observed()
    blue = observed.twins["blue"]
    short = replace(blue, ready=blue.ready - 1, endpoints=blue.endpoints - 1)
    probe = Checked("probe", result(Verdict.ERROR, "503 from Prometheus"), world.now)
    world.state = decide(
        CANARY,
        world.state,
        replace(observed, twins={**observed.twins, "blue": short}),
        probe,
        world.now,
    ).state
    probed = world.state.message
    assert "Prometheus still fails: 503 from Prometheus" in probed, probed
    for _ in range(3):
        stable_short(world)
        assert world.state.message == probed


# -- 2. a rollout that moves while the stable twin is short of a pod ------------------------


def test_a_moving_rollout_keeps_its_next_decision_exported_while_degraded() -> None:
    """canary_rollout_next_decision_timestamp_seconds is exported "while a
    rollout moves (not paused or halted)", so CanaryRolloutStuck fires when
    nothing acts on it. It was removed whenever the phase read Degraded: a
    drain mid-rollout (a stable pod evicted) took the rollout out of the
    alert's sight exactly when the controller is most likely to fail on it
    (a webhook on Deployments down with the nodes), and a rollout stuck then
    paged no one."""
    world = serving_canary()
    plan = stable_short(world)
    assert phase(CANARY, plan.state) is Phase.DEGRADED and plan.requeue_after is not None
    reconciler = Reconciler(Edges(kube=None, prometheus=None), None)  # type: ignore[arg-type]
    reconciler._report("ns", "web", CANARY, world.state, plan, None)
    exported = generate_latest(reconciler.metrics.registry).decode()
    assert 'canary_rollout_next_decision_timestamp_seconds{namespace="ns",service="web"}' in (
        exported
    )
    assert 'canary_service_phase{namespace="ns",phase="Degraded",service="web"} 1.0' in exported
    halted = replace(plan, state=replace(plan.state, halted="no data", halt_kind="no-data"))
    reconciler._report("ns", "web", CANARY, world.state, halted, None)
    exported = generate_latest(reconciler.metrics.registry).decode()
    assert "canary_rollout_next_decision_timestamp_seconds{" not in exported  # waits for a person


# -- 3. a request while the status is one the controller will not use ----------------------


def test_a_request_the_controller_would_take_as_done_says_so() -> None:
    """The controller down, and the status garbled (a hand edit, a truncated
    write): `canary abort` printed "abort requested", and the lease warning
    said nothing acts on it "until a controller runs". The controller back
    rebuilt the status and took the abort on the Service as done ("ask
    again", in a StateRebuilt Warning on the Service): the release on-call
    meant to abort went out again from its first step. The CLI reads the
    status as the controller does and says so; a pause, kept on a rebuild,
    is said nothing of."""
    world = serving_canary()
    world.state = State()
    world.lost = "not valid JSON"
    world.action = "abort revision=r2 t1"
    world.settle(CANARY)
    assert world.state.canary_revision == "r2"  # what that abort came to: r2 out again

    applied = svc()  # an old export applied by a sync
    applied["metadata"]["managedFields"] = [
        {
            "manager": "argocd-controller",
            "operation": "Update",
            "time": "2026-12-01T03:00:00Z",
            "fieldsV1": {"f:metadata": {"f:annotations": {"f:canary.io/status": {}}}},
        }
    ]
    for service, why in (
        (svc(raw='{"phase": "Progressing", "canary": "gr'), "is not valid JSON"),
        (svc(raw=""), "is missing"),
        (applied, "was last written by argocd-controller"),
    ):
        for verb in ("abort", "promote", "retry", "pause"):
            said: list[str] = []
            kube = FakeKube(service)
            asyncio.run(oncall.request(kube, "shop", "web", verb, None, say=said.append))  # type: ignore[arg-type]
            assert len(kube.patches) == 1  # written all the same (see _taken_as_done)
            if verb == "pause":
                assert not said, said
                continue
            assert len(said) == 1 and why in said[0] and "taken as done" in said[0], said
            assert f"this {verb} is likely not to be carried out" in said[0], said
    said = []
    asyncio.run(oncall.request(FakeKube(svc()), "shop", "web", "abort", None, say=said.append))  # type: ignore[arg-type]
    assert not said, said  # the controller's own status


# -- 4. `canary undo --to N` for a revision the history no longer holds ---------------------


class HistoryKube(FakeKube):
    def __init__(self, service: dict[str, Any], records: list[dict[str, Any]] | None) -> None:
        super().__init__(service)
        self.records = records  # None: reading it is forbidden

    async def get(self, path: str, **kw: Any) -> dict[str, Any]:
        if path.endswith("/configmaps/web-canary-history"):
            if self.records is None:
                raise ApiError(403, "Forbidden", "configmaps is forbidden")
            return {"metadata": {}, "data": {"history.json": json.dumps(self.records)}}
        return await super().get(path, **kw)


def test_an_undo_to_a_revision_the_history_does_not_hold_is_refused_at_once() -> None:
    """On-call reads `canary history` (#3 the last good one), and by the
    time they type `canary undo web --to 3` the entry is gone (trimmed by
    `history-limit` as releases went on, or a new history started), or they
    mistype it. The CLI printed "undo requested"; the controller ignored it
    in a Warning Event only (no such revision), and `canary status` showed
    nothing happening and nothing saying why. The CLI reads the same history
    the controller rolls undos out from, and refuses at once."""
    template = {"metadata": {"labels": {"app": "web"}}}
    records = [
        {"number": 4, "revision": "aaaaaaaaaa", "template": template, "outcome": "promoted"},
        {"number": 5, "revision": "bbbbbbbbbb", "outcome": "rolled-back"},  # no template
        {"number": 6, "revision": "cccccccccc", "template": template, "outcome": "promoted"},
    ]
    serving = {**IN_FLIGHT, "canary": None, "canary_revision": "", "stable_revision": "cccccccccc"}
    for to, why in ((3, "no revision #3"), (5, "no revision #5"), (6, "already serves")):
        kube = HistoryKube(svc(serving), records)
        with pytest.raises(oncall.UserError, match=why) as refused:
            asyncio.run(oncall.request(kube, "shop", "web", "undo", to))  # type: ignore[arg-type]
        assert "nothing requested" in str(refused.value) and not kube.patches
    kube = HistoryKube(svc(serving), records)
    asyncio.run(oncall.request(kube, "shop", "web", "undo", 4))  # type: ignore[arg-type]
    assert len(kube.patches) == 1
    # Mid-rollout, an undo to what serves takes the canary out: allowed, as
    # the controller carries it out (only the revision in flight is refused).
    kube = HistoryKube(svc(IN_FLIGHT), records)
    asyncio.run(oncall.request(kube, "shop", "web", "undo", 4))  # type: ignore[arg-type]
    assert len(kube.patches) == 1
    # No permission to read the history: the controller decides.
    kube = HistoryKube(svc(serving), None)
    asyncio.run(oncall.request(kube, "shop", "web", "undo", 3))  # type: ignore[arg-type]
    assert len(kube.patches) == 1


# -- 5. an Event message too long for the API's 1024 characters -----------------------------


class _Events:
    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []

    async def create(self, path: str, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.created.append(body)
        return body


def test_an_event_message_cut_to_its_limit_says_it_was_cut() -> None:
    """A rollback at the progress deadline quotes the quota's refusal and
    the pods' reasons (each up to 200 characters): past 1024 characters the
    message was cut mid-word with nothing to show it, so `kubectl describe`
    read "limited: limits.memory=8" for a quota of 8Gi, or lost the deadline
    at the end, as if that were all that was said. The cut says so now, and
    keeps the end."""
    kube = _Events()
    actor = Actor(
        kube,  # type: ignore[arg-type]
        Target("ns", "web", "web", {"metadata": {"name": "web", "uid": "s-1"}}),
        lambda obj: None,
        lambda kind, name: None,
        WriteGuard(),
        "",
        1000.0,
    )
    long = "x" * 1015 + " limits.memory=8Gi after 612s (deadline 600s)"
    asyncio.run(actor.emit(Emit("RolledBack", long, warning=True)))
    asyncio.run(actor.emit(Emit("RolledBack", "short enough")))
    cut, whole = (body["message"] for body in kube.created)
    # The cut is marked where it is, in the middle: the end (the deadline,
    # what to do) is kept whole (act._event_message).
    assert len(cut) <= 1024 and " [...] " in cut, cut[-40:]
    assert cut.endswith("limits.memory=8Gi after 612s (deadline 600s)"), cut[-60:]
    assert whole == "short enough"


# -- 6. a hand-back that waits (canary.io/strategy removed) ---------------------------------


def releasing(status: dict[str, Any]) -> dict[str, Any]:
    service = svc(status)
    del service["metadata"]["annotations"]["canary.io/strategy"]
    return service


async def test_a_hand_back_that_waits_is_shown_not_called_unmanaged() -> None:
    """`canary.io/strategy` removed: the controller hands the app back, and
    until the team's Deployment is up and ready (a paused one, one deleted
    meanwhile: "Recreate the Deployment") its twins serve and its status
    says what it waits for. `canary status -A` left the Service out and
    `canary status web` said "not managed: annotate it with
    canary.io/strategy", as if canary had let go: on-call never saw what to
    do, and was told to do what puts the rollout back instead."""
    waiting = {
        **IN_FLIGHT,
        "phase": "Releasing",
        "canary": None,
        "message": "releasing: Deployment web does not exist and no stable twin does either; "
        "the twin that serves keeps serving. Recreate the Deployment",
    }
    kube = FakeKube(releasing(waiting))
    for name in (None, "web"):
        items = await oncall.status(kube, "shop", name)  # type: ignore[arg-type]
        text = oncall.status_text(items, color=False)
        assert "Releasing" in text and "Recreate the Deployment" in text, text
    with pytest.raises(oncall.UserError, match="handed back") as refused:
        await oncall.request(kube, "shop", "web", "abort", None)  # type: ignore[arg-type]
    assert "not managed" not in str(refused.value) and not kube.patches
    await oncall.revisions(kube, "shop", "web")  # type: ignore[arg-type]
    # Removed while no controller ran: the status is still the last one a
    # managed Service had, and the phase is what the controller derives.
    items = await oncall.status(FakeKube(releasing(IN_FLIGHT)), "shop", "web")  # type: ignore[arg-type]
    assert items[0]["phase"] == "Releasing", items
    assert "canary.io/strategy was removed" in items[0]["message"], items
    # Neither annotation: not managed, as before.
    bare = releasing(IN_FLIGHT)
    del bare["metadata"]["annotations"]["canary.io/status"]
    with pytest.raises(oncall.UserError, match="not managed"):
        await oncall.status(FakeKube(bare), "shop", "web")  # type: ignore[arg-type]
    assert await oncall.status(FakeKube(bare), "shop", None) == []  # type: ignore[arg-type]


# -- 7. the lease's renewTime is the controller's clock, not the API server's ---------------


def stamp(epoch: float, micro: bool = False) -> str:
    at = dt.datetime.fromtimestamp(epoch, dt.UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def lease(holder: str, renew_time: float, written: float | None) -> dict[str, Any]:
    """A Lease as the API server holds it: renewTime as the holder's clock
    read it, and (unless None) when the server saw it written."""
    meta: dict[str, Any] = {"name": "canary-controller", "namespace": "canary-system"}
    if written is not None:
        meta["managedFields"] = [
            {
                "manager": "canary-controller",
                "operation": "Update",
                "time": stamp(written),
                "fieldsV1": {"f:spec": {"f:holderIdentity": {}, "f:renewTime": {}}},
            }
        ]
    return {
        "metadata": meta,
        "spec": {
            "holderIdentity": holder,
            "renewTime": stamp(renew_time, micro=True),
            "leaseDurationSeconds": 15,
        },
    }


NOW = 1_800_000_000.0


def test_a_live_controller_whose_clock_is_behind_is_not_called_gone() -> None:
    """renewTime is written by the holder from its own clock (lease.py, as
    client-go does). The controller's host with a broken NTP, 5 minutes
    behind (a bad day the README covers for Prometheus's clock), renewing
    every 2 s: `canary status` and every action said "no controller holds
    lease (last renewed 5m00s ago): nothing acts on them", and on-call,
    told the controller is gone, would patch selectors and scale twins by
    hand beside a controller that acts. The other way round, a controller
    dead for an hour on a host 2 hours ahead read as live. The API server
    stamps when it saw the renewal (managedFields), in its own clock, which
    the CLI's slack is for."""
    where = "canary-system/canary-controller"
    behind = lease("canary-abc", NOW - 300, written=NOW - 2)
    assert oncall.lease_warning(behind, where, NOW) is None
    ahead_and_dead = lease("canary-abc", NOW + 3600, written=NOW - 3600)
    died = oncall.lease_warning(ahead_and_dead, where, NOW)
    assert died and "60m00s ago by canary-abc" in died, died
    # No managedFields to go by: renewTime, as before.
    assert oncall.lease_warning(lease("canary-abc", NOW - 2, written=None), where, NOW) is None
    old = oncall.lease_warning(lease("canary-abc", NOW - 3600, written=None), where, NOW)
    assert old and "60m00s ago" in old


# -- 8. when the controller has to act next, in the clock the alert reads -------------------


def test_the_next_decision_is_exported_in_prometheus_clock() -> None:
    """CanaryRolloutStuck is `time() - next_decision > 120`, `time()` being
    Prometheus's clock; the controller exported its own host's clock plus
    the requeue. On a host 5 minutes behind (broken NTP, a VM resumed from
    suspend: the controller learns the offset and shows it as
    canary_prometheus_clock_offset_seconds) every moving rollout paged as
    stuck, critical, within a minute; on a host 5 minutes ahead, a stuck one
    paged 5 minutes late. It is exported in Prometheus's clock, by the
    offset last estimated."""
    metrics = Metrics()
    provider = SimpleNamespace(clock_offset=300.0)  # Prometheus ahead of this host
    metrics.track_clock(provider)
    before = time.time()
    metrics.executed("ns", "web", Plan((), State(), 30.0), "Progressing")
    name = 'canary_rollout_next_decision_timestamp_seconds{namespace="ns",service="web"}'
    exported = next(
        float(line.rsplit(" ", 1)[1])
        for line in generate_latest(metrics.registry).decode().splitlines()
        if line.startswith(name)
    )
    assert before + 330.0 <= exported <= time.time() + 330.0, exported - before


# -- 9. a request nobody has taken yet ------------------------------------------------------


async def test_canary_status_shows_a_request_the_controller_has_not_taken() -> None:
    """`canary abort` at 3 a.m. with the controller down: it stays on the
    Service and is carried out whenever a controller runs again, hours
    later, on a rollout the team may have decided otherwise about by then.
    `canary status` showed nothing of it (only the next person's request
    was refused, naming it), so whoever looked next read the rollout as
    left alone."""
    service = svc(IN_FLIGHT)
    service["metadata"]["annotations"]["canary.io/action"] = "abort revision=bbbbbbbbbb t1"
    service["metadata"]["managedFields"] = [
        {
            "manager": "canary-cli-alice",
            "operation": "Update",
            "time": "2026-12-01T03:00:00Z",
            "fieldsV1": {"f:metadata": {"f:annotations": {"f:canary.io/action": {}}}},
        }
    ]
    items = await oncall.status(FakeKube(service), "shop", "web")  # type: ignore[arg-type]
    text = oncall.status_text(items, color=False)
    assert "abort revision=bbbbbbbbbb t1" in text and "not taken yet" in text, text
    assert "canary-cli-alice" in text, text
    assert items[0]["pending_action"] == "abort revision=bbbbbbbbbb t1"
    taken = svc({**IN_FLIGHT, "last_action": "abort revision=bbbbbbbbbb t1"})
    taken["metadata"]["annotations"]["canary.io/action"] = "abort revision=bbbbbbbbbb t1"
    items = await oncall.status(FakeKube(taken), "shop", "web")  # type: ignore[arg-type]
    assert "not taken" not in oncall.status_text(items, color=False)
    assert "pending_action" not in items[0]


# -- 10. a canary's last value, exported after nothing measures it ------------------------


def value_series(metrics: Metrics) -> list[str]:
    return [
        line
        for line in generate_latest(metrics.registry).decode().splitlines()
        if line.startswith("canary_analysis_value{")
    ]


def test_a_canary_value_is_not_exported_once_nothing_measures_it() -> None:
    """canary_analysis_value kept the last value a check read, for as long
    as the Service existed: a release rolled back at error-rate 7.5 went on
    exporting 7.5 for its canary twin (at 0 pods) for days, so the Grafana
    panel drew the failure as ongoing and an alert on it fired until the
    next rollout; and a check that read no data (the canary's pods gone
    quiet) left the previous check's healthy value standing for it. Exported
    only while a rollout is in flight, and only what a check read."""
    metrics = Metrics()
    metrics.service("shop", "web", "Progressing", IN_FLIGHT)
    failing = Measurement("error-rate", "green", "q", 0.0, 60.0, 7.5, "<= 1", Verdict.FAIL, 9.0)
    metrics.analysis("shop", "web", StepResult(Verdict.FAIL, (failing,), "error-rate = 7.5"))
    assert value_series(metrics) == [
        'canary_analysis_value{metric="error-rate",namespace="shop",service="web",twin="green"} 7.5'
    ]
    quiet = replace(failing, value=None, verdict=Verdict.NO_DATA)
    metrics.analysis("shop", "web", StepResult(Verdict.NO_DATA, (quiet,), "no data"))
    assert value_series(metrics) == []  # nothing read: no value, not the last one
    metrics.analysis("shop", "web", StepResult(Verdict.FAIL, (failing,), "error-rate = 7.5"))
    rolled_back = {**IN_FLIGHT, "phase": "RolledBack", "canary": None, "canary_revision": ""}
    metrics.service("shop", "web", "RolledBack", rolled_back)
    assert value_series(metrics) == []
    assert any(  # the counts stay: they are history
        line.startswith("canary_analysis_measurements_total{")
        for line in generate_latest(metrics.registry).decode().splitlines()
    )


# -- 11. why a release was held back, when the history cannot say -------------------------


async def test_a_rolled_back_status_says_why_its_reason_is_not_there() -> None:
    """A RolledBack Service reads its reason from the history entry. A
    history deleted, unreadable (corrupt JSON, the controller down so nothing
    kept it aside) or trimmed past that entry printed "revision ... rolled-
    back: no reason recorded", as if the controller had not said why: it
    had, in a history on-call now knows to look for."""
    rolled = {
        **IN_FLIGHT,
        "phase": "RolledBack",
        "canary": None,
        "canary_revision": "",
        "failed_revision": "bbbbbbbbbb",
    }

    class Histories(FakeKube):
        def __init__(self, data: str | None, error: Exception | None = None) -> None:
            super().__init__(svc(rolled))
            self.data, self.error = data, error

        async def get(self, path: str, **kw: Any) -> dict[str, Any]:
            if path.endswith("/configmaps/web-canary-history"):
                if self.error is not None:
                    raise self.error
                return {"metadata": {}, "data": {"history.json": self.data}}
            return await super().get(path, **kw)

    other = json.dumps([{"number": 9, "revision": "cccccccccc", "outcome": "promoted"}])
    for kube, why in (
        (Histories(None, NotFound(404, "NotFound", "not found")), "is missing"),
        (Histories("[{"), "cannot be read"),
        (Histories(other), "no entry for it"),
        (Histories(None, ApiError(403, "Forbidden", "forbidden")), "could not be read"),
    ):
        items = await oncall.status(kube, "shop", "web")  # type: ignore[arg-type]
        text = oncall.status_text(items, color=False)
        assert "no reason recorded" not in text and why in text, text
        assert "web-canary-history" in text, text


# -- 12. a request to a Service that changes nothing (Conflict) ----------------------------


def test_a_request_to_a_service_in_conflict_is_refused_naming_the_owner() -> None:
    """Two Services annotated for one Deployment: the second is in phase
    Conflict and changes nothing. `canary abort web-next` (the wrong one, at
    3 a.m.) printed "abort requested" while the rollout went on through
    `web`; the request stayed on web-next, to be taken the day it is no
    longer in Conflict (a pause then holding a rollout nobody paused)."""
    message = (
        "Deployment web is already managed through Service web; this Service changes nothing. "
        "Point canary.io/deployment at another Deployment, or remove canary.io/strategy from "
        "one of the two Services"
    )
    conflicted = {**IN_FLIGHT, "phase": "Conflict", "adopted": False, "conflict": message}
    kube = FakeKube(svc(conflicted))
    for verb in ("abort", "promote", "pause"):
        with pytest.raises(oncall.UserError, match="through Service web") as refused:
            asyncio.run(oncall.request(kube, "shop", "web", verb, None))  # type: ignore[arg-type]
        assert "nothing requested" in str(refused.value)
    assert not kube.patches


# -- 13. `canary wait` on a halted (or paused) rollout that is also Degraded ----------------


def test_wait_settles_a_halted_or_paused_rollout_while_degraded() -> None:
    """`canary wait` (CI, or on-call waiting on a release) settles a halted
    rollout with exit 5, "waits for a person", and a paused one with 6. It
    read the phase only: a stable pod lost meanwhile made it Degraded, and
    wait went on waiting for a rollout that waits for a person, until its
    timeout said only "timed out"."""
    degraded = {
        **IN_FLIGHT,
        "phase": "Degraded",
        "degraded": "2/3 pods of the blue twin (stable) ready",
        "message": "degraded: 2/3 pods of the blue twin (stable) ready; halted: ...",
    }
    halted = release_outcome.judge(
        "bbbbbbbbbb", {**degraded, "halted": "step 2/3: no-data"}, [], None
    )
    assert isinstance(halted, release_outcome.Settled), halted
    assert halted.outcome is release_outcome.Outcome.HALTED
    paused = release_outcome.judge("bbbbbbbbbb", {**degraded, "paused": True}, [], None)
    assert isinstance(paused, release_outcome.Settled), paused
    assert paused.outcome is release_outcome.Outcome.PAUSED
    moving = release_outcome.judge("bbbbbbbbbb", degraded, [], None)
    assert isinstance(moving, release_outcome.Pending), moving  # it still moves


# -- 14. the phases that need a look stand out on a terminal -------------------------------


def test_every_phase_that_needs_a_look_is_painted_on_a_terminal() -> None:
    """On a TTY `canary status -A` paints Halted, RolledBack and Invalid red
    and Healthy green, but left Degraded (users may see failures), Conflict
    and Unreadable in plain text: among a hundred green rows, the one
    Service not serving in full did not stand out."""
    from canary.render import paint

    for shown in (*Phase, "Unreadable"):
        assert paint(str(shown), True) != str(shown), shown
    assert paint("Degraded", True) == paint("Halted", True).replace("Halted", "Degraded")


# -- 15. the history ConfigMap deleted --------------------------------------------------------


async def test_history_says_its_configmap_is_missing_instead_of_showing_nothing() -> None:
    """The history ConfigMap deleted by hand (a cleanup of "unknown"
    ConfigMaps at 3 a.m.), the controller down: `canary history` printed its
    headers and nothing else, `canary timeline` "no revisions recorded
    yet", as for a Service that never had a rollout; nothing said the
    record of every release, and of which ones were rolled back, is gone."""

    class Gone(FakeKube):
        async def get(self, path: str, **kw: Any) -> dict[str, Any]:
            if path.endswith("/configmaps/web-canary-history"):
                raise NotFound(404, "NotFound", 'configmaps "web-canary-history" not found')
            return await super().get(path, **kw)

    serving = {**IN_FLIGHT, "phase": "Healthy", "canary": None, "canary_revision": ""}
    said: list[str] = []
    records = await oncall.revisions(Gone(svc(serving)), "shop", "web", said.append)  # type: ignore[arg-type]
    assert records == []
    assert len(said) == 1 and "shop/web-canary-history" in said[0] and "not found" in said[0], said
    said.clear()
    fresh = svc(raw="")  # annotated a moment ago: no history yet, and nothing to say
    await oncall.revisions(Gone(fresh), "shop", "web", said.append)  # type: ignore[arg-type]
    assert not said, said
