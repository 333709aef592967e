"""One Service must not starve the others' checks (canary/checks.py).

The Prometheus adapter runs every query in a pool of its own
(PrometheusConfig.max_concurrent_queries, 8 threads): the rest wait their
turn, in order. A Service whose analysis checks many metrics at once
(each metric's queries are gathered) with queries Prometheus takes 8-9 s
for (within query-timeout) filled that pool, and every other Service's
look queued behind it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from analysis.run import StepContext
from analysis.spec import AnalysisSpec, MetricSpec, Relative
from analysis.templates import Target
from analysis.verdicts import Verdict
from canary.checks import Checks
from canary.model import Checked

POOL = 8  # PrometheusConfig.max_concurrent_queries


class _Pool:
    """The Prometheus adapter as the checks see it: POOL queries at once,
    the rest wait in order (a ThreadPoolExecutor's queue). A heavy query
    holds its thread until `release` is set (it stands for 8-9 s); any
    other answers at once with 50 (a canary failing half its requests)."""

    clock_offset = 0.0

    def __init__(self) -> None:
        self._threads = asyncio.Semaphore(POOL)
        self.release = asyncio.Event()
        self.heavy_running = 0

    async def _answer(self, promql: str) -> float:
        async with self._threads:
            if "heavy" in promql:
                self.heavy_running += 1
                await self.release.wait()
            return 50.0

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        return await self._answer(promql)

    async def query_range(
        self, promql: str, start: float, end: float, step_s: float, timeout_s: float
    ) -> list[float]:
        return [await self._answer(promql)]

    async def query_range_series(
        self, promql: str, start: float, end: float, step_s: float, timeout_s: float
    ) -> list[list[float]]:
        return [[await self._answer(promql)]]


class _Unused:
    """No gate is asked."""


HEAVY = ("reports", "batch")
INNOCENT = ("shop", "web")


def _ctx(namespace: str, service: str, now: float) -> StepContext:
    target = Target(namespace, service, "green", f"{service}-green-abc")
    return StepContext(target, None, now - 20.0, now, 60.0, scrape_s=10.0)


def test_a_service_with_many_slow_metrics_leaves_the_others_looks_a_query_slot() -> None:
    """Before: the heavy Service's scheduled check (10 custom metrics, each
    query 9 s) took all 8 threads, and the failing look of every other
    Service waited for one: 8.8 s per look (the real adapter, its queries
    slept in its threads), each look of a failure's two, while the heavy
    Service's checks follow one another. Now one analysis holds at most
    half the pool, and the others' looks run beside it (0.2 s)."""
    heavy = AnalysisSpec(
        min_requests=0,
        metrics=tuple(
            MetricSpec(name=f"heavy-{i}", query=f"sum(heavy_{i}_total)", max=100) for i in range(10)
        ),
    )
    innocent = AnalysisSpec()  # success-rate >= 99, the request guard at 20

    async def scenario() -> tuple[Checked | None, int]:
        pool = _Pool()
        checks = Checks(pool, _Unused(), lambda key: None)  # type: ignore[arg-type]
        now = time.time()
        checks.start_analysis(HEAVY, ("r2", 0), "scheduled", heavy, _ctx(*HEAVY, now))
        for _ in range(50):
            await asyncio.sleep(0)
        held = pool.heavy_running
        checks.start_analysis(INNOCENT, ("r7", 0), "fast", innocent, _ctx(*INNOCENT, now))
        done = None
        for _ in range(200):  # scheduling order only: the heavy queries never answer meanwhile
            await asyncio.sleep(0)
            if (done := checks.take_analysis(INNOCENT, ("r7", 0))) is not None:
                break
        pool.release.set()
        await checks.close()
        return done, held

    done, held = asyncio.run(scenario())
    assert held >= 1, "the heavy Service's queries were never sent"
    assert done is not None, (
        f"the innocent Service's failing look waited behind the heavy Service's "
        f"{held} queries in flight"
    )
    assert done.result.verdict is Verdict.FAIL, done.result.reason


def test_a_check_whose_queries_take_rounds_of_its_share_is_given_time_for_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An analysis is given 3 query-timeouts + 5 s (a relative metric and the
    newest-scrape check chain up to ten queries; more is Prometheus too
    slow: an error, past error-limit a halt). That counted no round of
    queries waiting for a slot, and with at most half the pool per analysis
    a Service checking 16 metrics that Prometheus answers in 9 s each
    (within its 10 s query-timeout) takes the request guard, 5 rounds of 4
    (the metrics and the newest sample read beside them) and the
    newest-scrape check's guard: 63 s (45 s on the 8 threads, already past
    35 s). Every check of it came back too slow and its rollout halted;
    given a query-timeout more per further round, it is judged."""

    given: list[float] = []
    wait_for = asyncio.wait_for

    async def timed(awaitable: Any, timeout: float | None) -> Any:
        if timeout is not None and timeout > 5.0:  # the analysis's, not a query's
            given.append(timeout)
        return await wait_for(awaitable, timeout)

    monkeypatch.setattr(asyncio, "wait_for", timed)

    async def time_given(spec: AnalysisSpec) -> float:
        given.clear()
        checks = Checks(_Pool(), _Unused(), lambda key: None)  # type: ignore[arg-type]
        checks.start_analysis(INNOCENT, ("r7", 0), "scheduled", spec, _ctx(*INNOCENT, time.time()))
        for _ in range(200):
            await asyncio.sleep(0)
            if checks.take_analysis(INNOCENT, ("r7", 0)) is not None:
                break
        await checks.close()
        return given[0]

    sixteen = AnalysisSpec(
        metrics=tuple(
            MetricSpec(name=f"slo-{i}", query=f"sum(slo_{i}_total)", max=100) for i in range(16)
        ),
    )
    assert asyncio.run(time_given(sixteen)) >= 9.0 * (1 + 5 + 1)
    assert asyncio.run(time_given(AnalysisSpec())) == 3 * 10.0 + 5  # one metric: as before
    relative = AnalysisSpec(
        metrics=(MetricSpec(name="error-rate", relative=Relative(max_ratio=1.5)),),
    )
    assert asyncio.run(time_given(relative)) == 3 * 10.0 + 5
