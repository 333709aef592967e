"""Metrics backends that are not one plain Prometheus, as teams run them
(rev-backends): each test failed on the code before its fix.

The stand-ins answer as the backend would, from samples (the shell's own
Checks drive them on a fake clock, as in test_timing_review_i)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from analysis.durations import parse_duration
from analysis.run import StepContext, analyze
from analysis.spec import AnalysisSpec
from analysis.verdicts import Verdict
from tests.unit.test_analysis_bad_day import _prometheus
from tests.unit.test_newest_scrape import InstantOnly
from tests.unit.test_slow_prometheus import _serving
from tests.unit.test_timing_review_i import (
    _RANGE,
    CANARY,
    Samples,
    _rolled_back_after_visible,
    _shell,
)
from tests.unit.world import spec

# -- VictoriaMetrics: rate() and increase() read the sample before the window ---------------


@dataclass
class VictoriaMetrics(Samples):
    """One canary pod as VictoriaMetrics answers for it: its increase() and
    rate() also read the last sample before the window (MetricsQL's
    documented difference), increase_prometheus() only the window's own, as
    Prometheus does. Half the requests fail between `blip_from` and
    `blip_to` only."""

    blip_from: float = float("inf")
    blip_to: float = float("inf")
    metricsql: bool = True

    def counters(self, t: float) -> tuple[float, float]:
        bad = max(0.0, min(t, self.blip_to) - self.blip_from) if t > self.blip_from else 0.0
        return 10.0 * (t - bad) + 5.0 * bad, 5.0 * bad

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        if "increase_prometheus(" in promql or "last_over_time(" in promql:
            return await super().query(promql, at, timeout_s)
        if promql.startswith("time() - max(timestamp("):
            return await super().query(promql, at, timeout_s)
        assert at is not None
        found = _RANGE.search(promql)
        assert found is not None, promql
        window = parse_duration(found.group(1))
        samples = self.landed(at, window)
        before = [t for t in self.landed(at, window + 2 * self.scrape) if t <= at - window]
        if samples and before:
            samples = [before[-1], *samples]
        if len(samples) < 2:
            return None
        ok1, errors1 = self.counters(samples[0])
        ok2, errors2 = self.counters(samples[-1])
        ok, errors = ok2 - ok1, errors2 - errors1
        if "/" not in promql:
            return ok + errors
        return 100.0 * ok / (ok + errors)


def test_one_bad_scrape_on_victoriametrics_is_not_a_rollback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """README: "a blip confined to one scrape never counts". On
    VictoriaMetrics it did: the fast look that confirms a failing scrape
    reads rate() over the scrapes after it, and MetricsQL's rate() reads
    the sample before its window too, i.e. the failing scrape's traffic
    again. With failure-limit 0 a good release was rolled back on one
    scrape in which half its requests failed."""
    the_spec = spec(steps="50", interval="120s", failure_limit="0")
    world = _serving(the_spec, scrape=10.0)
    backend = VictoriaMetrics(phase=world.now - 3.0, scrape=10.0, delay=0.2)
    # Between two scrapes only: the one at phase + 40 holds it all.
    backend.blip_from, backend.blip_to = backend.phase + 31.0, backend.phase + 39.0
    _shell(the_spec, world, backend, 100.0, monkeypatch)
    assert world.state.canary == "green", world.reasons()
    assert "AnalysisFailed" not in world.reasons(), world.reasons()


def test_a_lasting_failure_on_victoriametrics_is_still_rolled_back_within_two_scrapes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    the_spec = spec(steps="50", interval="120s", failure_limit="0")
    world = _serving(the_spec, scrape=10.0)
    backend = VictoriaMetrics(phase=world.now - 3.0, scrape=10.0, delay=0.2)
    backend.blip_from = backend.phase + 31.0  # and it lasts
    _shell(the_spec, world, backend, 100.0, monkeypatch)
    assert world.state.canary is None and "AnalysisFailed" in world.reasons(), world.reasons()
    assert world.now - (backend.phase + 40.0) < 15.0


async def test_the_adapter_tells_victoriametrics_from_prometheus() -> None:
    def victoriametrics(url: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        return 200, {"status": "success", "isPartial": False, "data": {"result": []}}

    def prometheus(url: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if "increase_prometheus" in params["query"]:
            error = 'parse error: unknown function with name "increase_prometheus"'
            return 400, {"status": "error", "errorType": "bad_data", "error": error}
        return 200, {"status": "success", "data": {"resultType": "vector", "result": []}}

    for answer, metricsql in ((victoriametrics, True), (prometheus, False)):
        prom, _ = _prometheus(answer)
        try:
            await prom.check()
            assert prom.metricsql is metricsql
        finally:
            prom.close()


# -- remote-write: samples that land more than half a scrape late -----------------------------


@pytest.mark.parametrize("delay", [6.0, 8.0])
def test_samples_landing_over_half_a_scrape_late_are_rolled_back_within_two_scrapes(
    delay: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prometheus remote-writing into Mimir, Thanos Receive or
    VictoriaMetrics: each scrape can be queried 6-8 s after its time, at a
    10 s scrape. A fast look timed just after a scrape missed it, and its
    retries stopped at half an interval (4 s), short of it: the delay was
    never learned, and looks went blind and a scrape late by turns, 33-35 s
    from the failure showing to its rollback, where README promises two bad
    scrapes (failure-limit 0) whatever the interval."""
    taken = _rolled_back_after_visible(delay, 0.0, monkeypatch)
    assert taken < 15.0, f"{taken:.1f}s from the failure showing in Prometheus to the rollback"


def test_samples_landing_over_a_scrape_late_are_no_slower_to_roll_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No look can wait that long (its two scrapes would not hold two
    samples): looks that missed are timed as before, on the scrape grid,
    and reading relies on their windows widening (quiet_from) as before.
    Retrying longer, a look that still missed pushed the next one a scrape
    later (58 s here instead of 30 s)."""
    taken = _rolled_back_after_visible(12.0, 0.0, monkeypatch)
    assert taken < 35.0, f"{taken:.1f}s from the failure showing in Prometheus to the rollback"


# -- remote-write more than two scrapes late: what `scrape-interval` to set -------------------


async def _verdicts(setting: float, delay: float, scrape: float) -> set[str]:
    """A healthy canary's scheduled checks and fast looks, over a few
    seconds, with `scrape-interval: <setting>` and samples landing `delay`
    seconds after their time."""
    backend = Samples(phase=1000.0, scrape=scrape, delay=delay)
    the_spec = AnalysisSpec(min_requests=20, scrape_interval=setting)
    seen = set()
    for i in range(20):
        now = 1200.0 + i * 0.7
        for start, fast in ((1100.0, False), (now - 2 * setting, True)):
            context = StepContext(CANARY, None, start, now, 60.0, setting, scrape_known=True)
            checked = await analyze(the_spec, context, backend, fast=fast)
            seen.add(("fast " if fast else "") + str(checked.verdict))
    return seen


async def test_the_scrape_interval_readme_advises_for_a_late_store_reads_the_canary() -> None:
    """README's advice for a store that makes samples queryable more than
    two scrapes late. It said "at least half that delay": at a 30 s delay
    behind a 10 s scrape, 15 s made 19 scheduled checks in 20 no data (the
    newest sample is always older than the delay, the limit two of those
    15 s) and no fast look read anything: following it halted every
    rollout, or with on-limit: rollback rolled every release back. The
    delay itself reads every check."""
    assert await _verdicts(15.0, 30.0, 10.0) != {"pass", "fast pass"}  # the old advice
    assert await _verdicts(30.0, 30.0, 10.0) == {"pass", "fast pass"}
    assert await _verdicts(25.0, 25.0, 10.0) == {"pass", "fast pass"}


# -- a Prometheus HA pair behind one URL (rev-haprom) -----------------------------------------
#
# kube-prometheus-stack with `replicas: 2`, queried through `prometheus-operated`
# (headless: each new connection resolves to either pod) or a Service over both
# pods: the two scrape the same targets, each at an offset of its own within
# the interval (Prometheus hashes the target with the replica's external
# labels), and nothing deduplicates their answers.


@dataclass
class Sparse(Samples):
    """A canary at 1 request/s, one in 40 failing (2.5 %: fails `min: 99`),
    as one replica holds it: from `since` on (its TSDB lost with its pod,
    an emptyDir), nothing before. Reads templates.guarded as Prometheus does."""

    since: float = float("-inf")

    def counters(self, t: float) -> tuple[float, float]:
        served = t - self.phase
        errors = float(math.floor((served + 20.0) / 40.0))  # at +20, +60, +100, +140 s
        return served - errors, errors

    def landed(self, at: float, window: float) -> list[float]:
        return [t for t in super().landed(at, window) if t >= self.since]

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        guarded = re.fullmatch(r"\((.*)\) and on \(\) \((.*) >= (\d+)\)", promql)
        if guarded is None:
            return await super().query(promql, at, timeout_s)
        counted = await super().query(guarded.group(2), at, timeout_s)
        if counted is None or counted < int(guarded.group(3)):
            return None
        return await super().query(guarded.group(1), at, timeout_s)


@dataclass
class EachQuery(InstantOnly):
    """Two replicas behind one URL, each query on the other one (a new
    connection per query, as the adapter's pool opens them for queries in
    parallel)."""

    replicas: tuple[Sparse, Sparse]
    asked: list[tuple[int, str]] = field(default_factory=list)
    clock_offset: float = 0.0

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        which = len(self.asked) % 2
        self.asked.append((which, promql))
        return await self.replicas[which].query(promql, at, timeout_s)


async def test_a_metric_from_a_replica_that_lost_the_window_is_not_judged_on_fewer_requests() -> (
    None
):
    """README: "No-data is never a pass: a step needs a minimum request
    count before its metrics count". The request guard is a query of its
    own: one replica (all of the window) counted 50 requests, and the
    success rate was computed by the other, restarted 25 s before without
    its data (kube-prometheus-stack's default emptyDir): over its last
    scrape, 10 requests and none of the canary's errors. A canary failing
    2.5 % of its requests passed `min: 99` on a window of 10 requests
    against `min-requests: 20`."""
    whole = Sparse(phase=1000.0, scrape=10.0, delay=0.2)
    restarted = Sparse(phase=1000.0, scrape=10.0, delay=0.2, since=1145.0)
    pair = EachQuery((whole, restarted))
    the_spec = AnalysisSpec(min_requests=20, scrape_interval=10.0)
    context = StepContext(CANARY, None, 1100.5, 1160.5, 60.0, 10.0, scrape_known=True)
    one = await analyze(the_spec, context, whole)
    assert one.verdict is Verdict.FAIL, one.reason  # what the window holds
    checked = await analyze(the_spec, context, pair)
    assert pair.asked[0][0] == 0 and pair.asked[1][0] == 1  # the guard, then the metric
    assert checked.verdict is Verdict.NO_DATA, checked.reason
    assert "another Prometheus behind the URL" in checked.reason
