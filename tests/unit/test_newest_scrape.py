"""A scheduled check passes only if its newest scrape does not fail too. A
failure that began in that scrape is a small share of the whole window: a
blue-green preview whose canary turned bad 0.4 s before its check passed,
and was flipped into production at once (bench.peers, bad-late)."""

from __future__ import annotations

import asyncio

from analysis.provider import QueryError
from analysis.run import StepContext, analyze
from analysis.spec import AnalysisSpec
from analysis.templates import Target
from analysis.verdicts import Verdict


class InstantOnly:
    """A stand-in Prometheus asked instant queries only: no judge, and the
    scrape timing known (no range query)."""

    async def query_range(
        self, promql: str, start: float, end: float, step_s: float, timeout_s: float
    ) -> list[float]:
        raise AssertionError("no judge here")

    async def query_range_series(
        self, promql: str, start: float, end: float, step_s: float, timeout_s: float
    ) -> list[list[float]]:
        raise AssertionError("no range query here")


class _TurnedBad(InstantOnly):
    """Prometheus for a canary that served 500 good requests over the
    window, then failed half of the newest scrape's 50."""

    clock_offset = 0.0

    def __init__(
        self,
        newest_success: float,
        newest_requests: float = 50.0,
        newest_window: str = "[2s]",
        whole: tuple[float, float] = (550.0, 99.6),  # the window's requests, success rate
    ) -> None:
        self.newest_success = newest_success
        self.newest_requests = newest_requests
        self.newest_window = newest_window
        self.whole = whole

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        newest = self.newest_window in promql
        if "timestamp(" in promql:
            return 0.5
        if "/" not in promql:  # the request guard
            return self.newest_requests if newest else self.whole[0]
        return self.newest_success if newest else self.whole[1]


SPEC = AnalysisSpec(min_requests=20, scrape_interval=1.0)
CTX = StepContext(
    Target("ns", "web", "green", "web-green-abc-.*"),
    None,
    start=1000.0,
    now=1010.0,
    interval_s=10.0,
    scrape_s=1.0,
    scrape_known=True,
)


def test_a_window_that_passes_over_a_failing_newest_scrape_fails_as_a_fast_look_does() -> None:
    result = asyncio.run(analyze(SPEC, CTX, _TurnedBad(newest_success=50.0)))
    assert result.verdict is Verdict.FAIL, result.reason
    assert "newest scrape fails" in result.reason and "success-rate = 50" in result.reason
    failing = [m for m in result.measurements if m.verdict is Verdict.FAIL]
    # The metric's own name: a fast look confirms or clears it (judging._confirmable).
    assert [m.metric for m in failing] == ["success-rate"], failing
    assert failing[0].start == 1008.0 and "newest scrape" in failing[0].detail


def test_a_clean_or_too_quiet_newest_scrape_leaves_the_pass() -> None:
    assert asyncio.run(analyze(SPEC, CTX, _TurnedBad(newest_success=100.0))).verdict is (
        Verdict.PASS
    )
    quiet = _TurnedBad(newest_success=50.0, newest_requests=5.0)
    assert asyncio.run(analyze(SPEC, CTX, quiet)).verdict is Verdict.PASS


class _NewestUnanswered(_TurnedBad):
    """The whole window answers; the newest scrape's queries do not."""

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        if self.newest_window in promql:
            raise QueryError("Prometheus at http://prom unavailable: 503 Service Unavailable")
        return await super().query(promql, at, timeout_s)


def test_no_answer_about_the_newest_scrape_is_an_error_not_the_windows_pass() -> None:
    # A failure that began in the newest scrape is averaged away over the
    # window: only that scrape's own look sees it. Unanswered, the pass
    # stood before, and a canary turned bad an instant before its check was
    # promoted whenever that look's queries failed.
    result = asyncio.run(analyze(SPEC, CTX, _NewestUnanswered(newest_success=50.0)))
    assert result.verdict is Verdict.ERROR, result.reason
    assert "the newest scrape" in result.reason and "503" in result.reason
