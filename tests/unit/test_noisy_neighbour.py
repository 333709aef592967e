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

from analysis.run import StepContext
from analysis.spec import AnalysisSpec, MetricSpec
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
