"""VictoriaMetrics makes a sample searchable only when it flushes its
pending rows (rev-vmtiming): each test failed on the code before its fix.

The stand-in answers as VictoriaMetrics v1.151 does under steady ingestion
(lib/storage/raw_row.go, partition.go): a shard's rows are flushed at the
first tick of a 2 s ticker at or after its deadline, 2 s after its first
pending row. Rows keep coming, so each shard takes rows again right after a
flush, misses the next tick and is flushed every 4 s: a sample is
searchable at the first such flush after it landed, up to 4 s later."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, replace
from types import SimpleNamespace

import pytest

from analysis.run import StepContext, analyze
from analysis.scrape import ScrapeTiming, landing_retries, searchable_after
from analysis.verdicts import Verdict
from canary import checks as checks_module
from canary.checks import Checks
from canary.schedule import analysis_due, gate_due
from canary.spec import RolloutSpec
from tests.unit.test_analysis_bad_day import analysis, ctx
from tests.unit.test_backends_bad_day import VictoriaMetrics
from tests.unit.test_canary_pods_bad_day import PODS, SPEC, _every, _Pods, _prometheus
from tests.unit.test_decide import answer
from tests.unit.test_slow_prometheus import _healthy_canary, _known, _serving
from tests.unit.test_timing_review_i import CANARY, IDENT, KEY, FakeClock, Samples, _shell
from tests.unit.world import World, spec

FLUSH_CYCLE_S = 4.0


@dataclass
class Flushed(VictoriaMetrics):
    """One canary pod on a busy VictoriaMetrics: a sample landed `delay`
    after its time is searchable at the next flush (`flushed` + k * 4 s).
    With `metricsql` False, Prometheus: searchable once landed."""

    flushed: float = 0.0

    def searchable(self, t: float) -> float:
        landed = t + self.delay
        if not self.metricsql:
            return landed  # Prometheus: once appended
        k = math.ceil((landed - self.flushed) / FLUSH_CYCLE_S - 1e-9)
        return self.flushed + k * FLUSH_CYCLE_S

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        if not self.metricsql:  # Prometheus's rate() and increase(): the window's own samples
            return await Samples.query(self, promql, at, timeout_s)
        return await super().query(promql, at, timeout_s)

    def landed(self, at: float, window: float) -> list[float]:
        # Searchable by now (the shell's clock: checks.time), whatever
        # time the query is evaluated at.
        now = max(at, getattr(checks_module, "time").time())  # noqa: B009 (patched by _shell)
        k = int((at - self.phase) // self.scrape) + 1
        times = [self.phase + i * self.scrape for i in range(k - 30, k + 1)]
        return [t for t in times if at - window < t <= at and self.searchable(t) <= now + 1e-9]


def on_busy_backend(
    the_spec: RolloutSpec, flushed: float, metricsql: bool = True
) -> tuple[World, Flushed]:
    """A canary serving `the_spec`'s first step at a 1 s scrape, its samples
    landing 0.1 s after their time, flushed first `flushed` s from now."""
    world = _serving(the_spec, scrape=1.0)
    backend = Flushed(phase=world.now - 0.7, scrape=1.0, delay=0.1, metricsql=metricsql)
    backend.flushed = world.now + flushed
    return world, backend


# -- the flush takes up to 4 s, not 2 ----------------------------------------------------------


@pytest.mark.parametrize(("scrape", "age"), [(1.0, 4.9), (2.0, 6.1)])
async def test_a_sample_that_waited_a_whole_flush_cycle_is_not_a_stopped_scrape(
    scrape: float, age: float
) -> None:
    """A row waits for its shard's deadline, 2 s after the shard's first
    pending row, and the deadline is only looked at by a 2 s ticker: under
    steady ingestion every shard is flushed every 4 s (measured on
    v1.151.0 at a 1 s import: the newest searchable sample 1-5 s old,
    4.96 s at most). Allowed 2 s only, a healthy canary read as stopped
    scrapes a quarter of the time at a 1 s scrape ("4s old: the canary's
    pods' scrapes fail"), and at a 2 s scrape whenever the scrape took
    longer than 0.1 s."""
    the_spec = analysis({"metrics": [{"name": "success-rate", "min": 99}]})
    prom = _healthy_canary()
    prom.stale_by = age
    on_vm = replace(_known(ctx(start=1000.0, now=1060.0, scrape=scrape)), metricsql=True)
    checked = await analyze(the_spec, on_vm, prom)
    assert checked.verdict is Verdict.PASS, checked.reason
    # Prometheus's samples are searchable once appended: two scrapes.
    on_prometheus = replace(on_vm, metricsql=False)
    assert (await analyze(the_spec, on_prometheus, prom)).verdict is Verdict.NO_DATA
    # Stopped scrapes still read as stopped: two scrapes and a flush cycle.
    prom.stale_by = 2 * scrape + 4.5
    checked = await analyze(the_spec, on_vm, prom)
    assert checked.verdict is Verdict.NO_DATA, checked.reason


def test_a_healthy_canary_checked_just_before_a_flush_is_not_rolled_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At a 1 s scrape, scheduled checks timed just before VictoriaMetrics'
    flush read the canary's newest sample 4.2 s old: no data, and with
    `no-data-limit: 0` and `on-limit: rollback` a good release was rolled
    back on it."""
    the_spec = spec(
        steps="50",
        interval="20s",
        analysis="no-data-limit: 0\non-limit: rollback\n"
        "metrics: [{name: success-rate, min: 99, fast: false}]",
    )
    # The check at +20.5 comes just before the flush at +20.6.
    world, backend = on_busy_backend(the_spec, 0.6)
    _shell(the_spec, world, backend, 60.0, monkeypatch)
    assert world.state.canary is None and "Promoted" in world.reasons(), world.reasons()


# -- the look that confirms a failing check reads a scrape not flushed yet --------------------


@pytest.mark.parametrize("metricsql", [True, False])
def test_one_bad_scrape_before_a_check_is_not_confirmed_by_a_look_that_read_nothing(
    metricsql: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scheduled check fails on one bad scrape, its newest (half its
    requests failed), and waits for the next scrape to confirm or clear it.
    On VictoriaMetrics at a 1 s scrape the look after it, a landing lag
    after that scrape, found it not flushed yet: its retries slid their
    two-scrape window along with them and never held two searchable
    samples, and a look that cannot tell counts the failure. With
    `failure-limit: 0` a good release was rolled back on a blip Prometheus
    would have cleared."""
    # 10 requests a scrape: enough for one scrape to tell.
    the_spec = spec(steps="50", interval="20s", failure_limit="0", analysis="min-requests: 5")
    world, backend = on_busy_backend(the_spec, 0.2, metricsql)
    # The scrape at +19.3 holds it all; flushed at +20.2, before the check at +20.5.
    backend.blip_from, backend.blip_to = world.now + 18.4, world.now + 19.2
    _shell(the_spec, world, backend, 60.0, monkeypatch)
    assert world.state.canary is None and "Promoted" in world.reasons(), world.reasons()


def test_on_victoriametrics_a_look_waits_for_the_flush_on_prometheus_as_before() -> None:
    assert landing_retries(1.0) == (0.15, 0.3)  # Prometheus: within an interval
    waits = landing_retries(1.0, searchable_after(True))
    assert waits[:2] == (0.15, 0.3) and sum(waits) == pytest.approx(0.85 + 4.0)
    assert sum(landing_retries(10.0, searchable_after(True))) == pytest.approx(9.5 + 4.0)


@pytest.mark.parametrize("metricsql", [True, False])
def test_a_lasting_failure_at_a_1s_scrape_is_rolled_back_within_seconds(
    metricsql: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other side: looks that wait for the flush still confirm a
    failure that lasts (6.2 s after it began on VictoriaMetrics, before and
    after; 2.2 s on Prometheus)."""
    the_spec = spec(steps="50", interval="20s", failure_limit="0", analysis="min-requests: 5")
    world, backend = on_busy_backend(the_spec, 0.2, metricsql)
    backend.blip_from = world.now + 10.4  # and it lasts: the scrape at +10.3 is the last clean one
    _shell(the_spec, world, backend, 60.0, monkeypatch)
    assert world.state.canary is None and "RolledBack" in world.reasons(), world.reasons()
    # Two failing scrapes (and their landing) on Prometheus; and the flush
    # on VictoriaMetrics: the looks that wait for it are no slower.
    assert world.now - backend.blip_from < (7.0 if metricsql else 3.0)


# -- the newest-scrape check reads scrapes not flushed yet ------------------------------------


async def test_a_check_whose_newest_searchable_scrape_fails_does_not_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A scheduled check passes only if the newest scrape does not fail
    (_newest_scrape_fails): a failure there is a small share of the window,
    averaged away. On VictoriaMetrics at a 1 s scrape its two scrapes to the
    check's time were not flushed yet (the newest searchable one 4.2 s old
    here): it read nothing, and the window's pass stood over a newest scrape
    in which 15 % of the requests failed (a promotion, a blue-green flip)."""
    now = 1020.5
    monkeypatch.setattr(checks_module, "time", SimpleNamespace(time=lambda: now))
    backend = Flushed(phase=1000.3, scrape=1.0, delay=0.1, flushed=1001.2)  # ... 1017.2, 1021.2
    backend.blip_from, backend.blip_to = 1016.0, 1016.3  # half failing, in the scrape at 1016.3
    the_spec = analysis({"min-requests": 5, "metrics": [{"name": "success-rate", "min": 99}]})
    context = replace(_known(ctx(start=1000.0, now=now, scrape=1.0)), stable=None, metricsql=True)
    checked = await analyze(the_spec, context, backend)
    assert checked.verdict is Verdict.FAIL, checked.reason
    assert "newest scrape" in checked.reason, checked.reason


# -- a pod whose newest scrapes sit in a shard not flushed yet is not unseen -------------------


def _shards(third_searchable_to: float) -> _Pods:
    """Three pods scraped every second. VictoriaMetrics puts each scrape in
    one of its shards (one per CPU, in turn) and flushes each on a deadline
    of its own: the first two pods' newest scrapes went to a shard just
    flushed, the third's newest four to one flushed 4 s before."""
    prometheus = _prometheus(
        {
            PODS[0]: _every(1.0, 1000.7, 1119.7),
            PODS[1]: _every(1.0, 1000.6, 1119.6),
            PODS[2]: _every(1.0, 1000.5, third_searchable_to),
        }
    )
    prometheus.stale_by = 0.3  # the canary's newest sample: the first pod's
    return prometheus


def _checked_on_vm(prometheus: _Pods, since: float = 400.0) -> tuple[Verdict, str]:
    context = replace(
        ctx(start=1000.0, now=1120.0, scrape=1.0),
        scrape_known=True,
        metricsql=True,
        pods=PODS,
        ready_since=(400.0, 400.0, since),
    )
    result = asyncio.run(analyze(SPEC, context, prometheus))
    return result.verdict, result.reason


def test_a_pod_whose_newest_scrapes_wait_in_another_shard_is_not_unseen() -> None:
    """canary-pods-unseen read each pod's two scrapes up to the canary's
    newest sample: at a 1 s scrape the third pod had none there, its newest
    searchable scrape 4.2 s older than the first pod's, and a healthy
    canary was no data ("1 of the canary's 3 serving pods had request
    samples earlier in the step but none in its newest two scrapes: their
    scrapes fail"), though each pod was scraped every second."""
    verdict, reason = _checked_on_vm(_shards(1115.5))
    assert verdict is Verdict.PASS, reason


def test_on_victoriametrics_a_pod_whose_scrapes_stopped_is_still_unseen() -> None:
    verdict, reason = _checked_on_vm(_shards(1110.5))
    assert verdict is Verdict.NO_DATA, reason
    assert reason.startswith("canary-pods-unseen: 1 of the canary's 3 serving pods"), reason


def test_on_victoriametrics_a_pod_back_from_a_restart_is_not_unseen_before_its_flush() -> None:
    # Down from 1105.6 on, ready again at 1116.5 (over three scrapes before
    # the canary's newest sample): its scrapes since, 1116.5-1119.5, all
    # wait in the shard last flushed at 1116.4.
    prometheus = _shards(1105.5)
    verdict, reason = _checked_on_vm(prometheus, since=1116.5)
    assert verdict is Verdict.PASS, reason


# -- an open gate waits for a look that read the canary ---------------------------------------


def _vm_shell(
    the_spec: RolloutSpec,
    world: World,
    backend: Flushed,
    seconds: float,
    mp: pytest.MonkeyPatch,
    gate_opens: float | None = None,
) -> str:
    """_shell's loop, told of the backend's flush as reconcile is
    (Observed.searchable_after, analysis_due's flush), and asking the
    gates, which open `gate_opens` s after they are first asked; the
    status it said while an open gate waited for a look, if it did."""
    clock = FakeClock(world.now, mp)
    said = [""]

    async def run() -> None:
        checks = Checks(backend, None, lambda key: None)  # type: ignore[arg-type]
        checks._scrape[KEY] = (ScrapeTiming(backend.scrape, backend.phase), world.now)
        world.flush = checks.searchable_after()  # as reconcile._scrapes
        end, asked = world.now + seconds, 0.0
        while world.now < end and world.state.canary is not None:
            world.phase = checks.scrape_phase(KEY)
            kind = gate_due(the_spec, world.state, world.now)
            world.gate = None
            if kind is not None and gate_opens is not None:
                asked = asked or world.now
                world.gate = answer(str(kind), world.now > asked + gate_opens)
            world.step(the_spec, checks.take_analysis(KEY, IDENT))
            if "no check has read" in world.state.message:
                said[0] = world.state.message
            if not checks.analysing(KEY) and world.state.canary is not None:
                due = analysis_due(
                    the_spec, world.state, world.now, world.scrape, world.phase, world.flush
                )
                if due is not None:
                    context = StepContext(
                        CANARY, None, due.start, due.end, the_spec.interval, world.scrape
                    )
                    context = replace(context, totals=due.totals, scrape_known=True)
                    checks.start_analysis(KEY, IDENT, due.kind, the_spec.analysis, context)
            for _ in range(20):
                await asyncio.sleep(0)
            world.now = clock.tick(world.now)
        await checks.close()

    asyncio.run(run())
    return said[0]


def _gate_opens(metricsql: bool, flushed: float, mp: pytest.MonkeyPatch) -> tuple[World, str]:
    """At a pre-promotion gate that opens 30 s after it is first asked, at
    a 1 s scrape."""
    gated = spec(
        steps="50",
        interval="20s",
        analysis="min-requests: 5\n"
        "gates: [{name: approve, when: pre-promotion, url: 'http://127.0.0.1:1/x'}]",
    )
    world, backend = on_busy_backend(gated, flushed, metricsql)
    said = _vm_shell(gated, world, backend, 90.0, mp, gate_opens=30.0)
    return world, said


@pytest.mark.parametrize("metricsql", [True, False])
@pytest.mark.parametrize("flushed", [0.2, 1.2, 2.2, 3.2])
def test_a_gate_that_opens_on_victoriametrics_moves_on_over_the_looks(
    metricsql: bool, flushed: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Standing at a closed gate, fast looks watch the canary; once it
    opens, the rollout moves on only over what a look read in the last two
    scrapes (looks.unlooked). On VictoriaMetrics at a 1 s scrape a look
    reads its two scrapes once flushed, up to 4 s after they landed, so
    every look's data was older than that: the open gate waited for good,
    saying "no check has read the canary since ... (Prometheus failing, or
    the canary's pods not scraped?)", at every flush phase (at one in four
    before looks waited for the flush: they read nothing most of the time)."""
    world, said = _gate_opens(metricsql, flushed, monkeypatch)
    assert "Promoted" in world.reasons(), (world.reasons(), said)
    assert not said, said


def test_the_shell_tells_the_core_of_the_flush_as_the_backends_dialect_says() -> None:
    for metricsql, flush in ((True, 4.0), (False, 0.0), (None, 0.0)):
        provider = SimpleNamespace(metricsql=metricsql)
        assert Checks(provider, None, lambda key: None).searchable_after() == flush  # type: ignore[arg-type]


# -- the re-check of a tolerated failure ---------------------------------------------------


@pytest.mark.parametrize("metricsql", [True, False])
@pytest.mark.parametrize("flushed", [0.2, 1.2, 2.2, 3.2])
def test_a_tolerated_failure_is_rechecked_once_its_scrapes_are_searchable(
    metricsql: bool, flushed: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed check within failure-limit is checked again as soon as a
    window of fresh data holds two scrapes (schedule.recheck_delay): 2 s
    at a 1 s scrape. On VictoriaMetrics those two scrapes were mostly not
    flushed yet: the re-check read no sample ("0 requests to the canary
    since the step began"), no data, and with `no-data-limit: 0` and
    `on-limit: rollback` a release whose failure was over was rolled back
    (at three flush phases in four), where Prometheus's re-check passed."""
    the_spec = spec(
        steps="50",
        interval="20s",
        failure_limit="1",
        analysis="min-requests: 5\nno-data-limit: 0\non-limit: rollback\n"
        "metrics: [{name: success-rate, min: 99, fast: false}]",
    )
    world, backend = on_busy_backend(the_spec, flushed, metricsql)
    backend.blip_from, backend.blip_to = world.now + 14.4, world.now + 17.2  # then over
    _vm_shell(the_spec, world, backend, 80.0, monkeypatch)
    assert world.reasons() == ["RolloutStarted", "StepReady", "AnalysisFailed", "Promoted"]
