"""The controller's host clock is off from Prometheus's (broken NTP, a VM
resumed from suspend). Every query is still asked at the same instant in
Prometheus's clock, and every sample time read back is ours: behind, the
canary's last seconds were never read and a canary whose scrapes stopped
read as fresh; ahead, every sample read as too old and the rollout halted
on no data.

The adapter runs against a fake transport (tests/unit/test_analysis_bad_day
_Answers) whose Prometheus is `ahead_s` ahead of this host's clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from analysis import prometheus as prometheus_module
from analysis.run import StepContext, analyze
from analysis.scrape import learn_scrape_timing
from analysis.verdicts import Verdict
from tests.unit.test_analysis_bad_day import CANARY, STABLE, _prometheus, _vector, analysis

MINUTE = 60.0
# The fake answers on loopback in milliseconds, but a loaded machine (a
# clean-clone `make test` beside a benchmark) delayed one answer past 50 ms
# and failed a test; the skews told apart here are a minute.
EPSILON = 1.0


def _answers(value: str = "100") -> Any:
    def answer(url: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if url.split("?", maxsplit=1)[0].endswith("query_range"):
            values = [[float(params["start"]), value]]
            return 200, {
                "status": "success",
                "data": {"result": [{"metric": {}, "values": values}]},
            }
        return 200, {"status": "success", "data": {"result": _vector(value)}}

    return answer


def _sent(transport: Any) -> list[dict[str, str]]:
    return [p for p in transport.sent if p.get("query") != "time()"]


async def _probed(prom: Any) -> None:
    """Let a re-probe the last query started (beside it) finish."""
    if prom._probing is not None:
        await prom._probing


async def test_a_query_is_asked_at_the_same_instant_in_prometheus_clock() -> None:
    prom, transport = _prometheus(_answers(), ahead_s=MINUTE)
    try:
        now = time.time()
        await prom.query("up", now, 5.0)
        await prom.query_range("up", now - 30.4, now, 5.0, 5.0)
    finally:
        prom.close()
    instant, ranged = _sent(transport)
    assert float(instant["time"]) == pytest.approx(now + MINUTE, abs=EPSILON)
    # Whole seconds (the library rounds them), the start never before the
    # window's: exact in the adapter's own estimate of the offset.
    start = now - 30.4 + prom.clock_offset
    assert start <= float(ranged["start"]) <= start + 1
    assert float(ranged["end"]) == pytest.approx(now + MINUTE, abs=0.5 + EPSILON)
    assert prom.clock_offset == pytest.approx(MINUTE, abs=EPSILON)


def _monotonic_by_hand(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The adapter's monotonic clock, moved by the test (its [0]); the wall
    clock stays real. raising=False: the same assertions fail, rather than
    the patch, on an adapter that reads no clock at all."""
    monotonic = [1000.0]
    fake_time = SimpleNamespace(time=time.time, monotonic=lambda: monotonic[0])
    monkeypatch.setattr(prometheus_module, "time", fake_time, raising=False)
    return monotonic


async def test_the_clock_is_probed_at_most_once_a_minute_and_only_while_queried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monotonic = _monotonic_by_hand(monkeypatch)
    prom, transport = _prometheus(_answers(), ahead_s=3.0)

    def probes() -> int:
        return sum(p.get("query") == "time()" for p in transport.sent)

    try:
        # A check's queries fall due together: they wait for one probe.
        await asyncio.gather(*(prom.query("up", time.time(), 5.0) for _ in range(10)))
        assert probes() == 1
        monotonic[0] += 59.0
        await prom.query("up", time.time(), 5.0)
        await _probed(prom)
        assert probes() == 1
        monotonic[0] += 3600.0  # an hour idle: nothing was probed meanwhile
        assert probes() == 1
        await prom.query("up", time.time(), 5.0)
        await _probed(prom)
        assert probes() == 2
    finally:
        prom.close()


async def test_a_clock_probe_that_fails_fails_no_query() -> None:
    prom, transport = _prometheus(_answers("42"), ahead_s=None)
    try:
        now = time.time()
        value = await prom.query("up", now, 5.0)
    finally:
        prom.close()
    assert value == 42.0
    assert [p.get("query") for p in transport.sent] == ["time()", "up"]
    assert float(_sent(transport)[0]["time"]) == pytest.approx(now, abs=0.001)
    assert prom.clock_offset == 0.0


def _canary(ahead_s: float, scraped_ago_s: float) -> Any:
    """A canary serving 100 % success whose newest sample was taken
    `scraped_ago_s` before Prometheus's now, Prometheus `ahead_s` ahead of
    this host. It evaluates the newest-sample query at the time it is sent,
    in its own clock, as Prometheus does."""

    def answer(url: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        query = params["query"]
        if "timestamp(" in query:
            newest = time.time() + ahead_s - scraped_ago_s
            at = float(params["time"])
            value = at - newest if query.startswith("time() - ") else newest
            return 200, {"status": "success", "data": {"result": _vector(f"{value:.3f}")}}
        return 200, {"status": "success", "data": {"result": _vector("100")}}

    return answer


def _now_ctx() -> StepContext:
    now = time.time()
    return StepContext(CANARY, STABLE, now - 30.0, now, 30.0, scrape_s=1.0, scrape_known=True)


SPEC = {"min-requests": 10, "metrics": [{"name": "success-rate", "min": 99}]}


async def test_a_controller_a_minute_ahead_of_prometheus_still_reads_a_fresh_canary() -> None:
    # Before: the newest sample read 60 s old at the controller's clock, more
    # than two scrapes: no data at every scheduled check, then a halt.
    prom, _ = _prometheus(_canary(ahead_s=-MINUTE, scraped_ago_s=0.5), ahead_s=-MINUTE)
    try:
        result = await analyze(analysis(SPEC), _now_ctx(), prom)
    finally:
        prom.close()
    assert result.verdict is Verdict.PASS, result.reason
    newest = [m for m in result.measurements if m.metric == "newest-sample-age-s"]
    assert newest and newest[0].value == pytest.approx(0.5, abs=EPSILON)


async def test_a_controller_a_minute_behind_prometheus_sees_the_canary_s_scrapes_stopped() -> None:
    # Before: a sample 40 s old in Prometheus's clock was 20 s in the future
    # of the controller's: "fresh", and the step passed on the part of the
    # window before the scrapes stopped.
    prom, _ = _prometheus(_canary(ahead_s=MINUTE, scraped_ago_s=40.0), ahead_s=MINUTE)
    try:
        result = await analyze(analysis(SPEC), _now_ctx(), prom)
    finally:
        prom.close()
    assert result.verdict is Verdict.NO_DATA, result.reason
    assert "40s old" in result.reason


class _Scrapes:
    """Two pods scraped every 15 s, stamped in a clock `clock_offset` ahead."""

    def __init__(self, clock_offset: float) -> None:
        self.clock_offset = clock_offset

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        raise AssertionError("not asked")

    async def query_range(
        self, promql: str, start: float, end: float, step_s: float, timeout_s: float
    ) -> list[float]:
        raise AssertionError("not asked")

    async def query_range_series(
        self, promql: str, start: float, end: float, step_s: float, timeout_s: float
    ) -> list[list[float]]:
        grid: Sequence[float] = (1000.0, 1015.0, 1030.0, 1045.0)
        return [[t + self.clock_offset for t in grid], [t + 7.0 + self.clock_offset for t in grid]]


async def test_when_scrapes_land_is_learned_in_the_controllers_clock() -> None:
    # Before: `last` was Prometheus's sample time, and fast looks were
    # scheduled off the scrape grid by the skew.
    timing = await learn_scrape_timing(analysis({}), CANARY, _Scrapes(MINUTE), at=1100.0)
    assert timing is not None and timing.interval == 15.0 and timing.last == 1052.0


async def test_on_call_is_told_once_when_prometheus_clock_is_a_minute_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monotonic = _monotonic_by_hand(monkeypatch)
    prom, transport = _prometheus(_answers(), ahead_s=MINUTE)
    try:
        await prom.check()  # at start, before any rollout queries
        told = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        for _ in range(3):  # re-probed each time: the same offset is no news
            monotonic[0] += 3600.0
            await prom.query("up", time.time(), 5.0)
            await _probed(prom)
        transport.ahead_s = 0.2  # NTP fixed: back in step
        monotonic[0] += 3600.0
        await prom.query("up", time.time(), 5.0)
        await _probed(prom)
    finally:
        prom.close()
    assert len(told) == 1 and "+60.0" in told[0], told
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2 and "+0.2" in warnings[1], warnings
    assert sum(p.get("query") == "time()" for p in transport.sent) == 5


async def test_a_slow_clock_probe_delays_no_query_once_the_offset_is_known(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A Prometheus slow to answer (the probe waits up to 2 s) made every
    # query that fell due while a re-probe ran wait for it, once a minute:
    # with checks a minute apart, every scheduled check started up to 2 s
    # late, counted against answered_late's two scrapes (a pass turned into
    # an error, past error-limit a halt). The offset known, a re-probe runs
    # beside the queries, which use the estimate they have.
    monotonic = _monotonic_by_hand(monkeypatch)
    prom, transport = _prometheus(_answers(), ahead_s=MINUTE)
    try:
        await prom.check()  # the first probe, at start: its offset is known
        assert prom.clock_offset == pytest.approx(MINUTE, abs=EPSILON)
        transport.probe_delay = 1.0
        monotonic[0] += 61.0  # a re-probe is due
        began = time.perf_counter()
        await prom.query("up", time.time(), 5.0)
        took = time.perf_counter() - began
        assert took < 0.5, f"the query waited {took:.2f}s for a clock probe"
        assert float(_sent(transport)[-1]["time"]) == pytest.approx(time.time() + MINUTE, abs=0.5)
    finally:
        prom.close()


def test_one_adapter_serves_queries_from_one_event_loop_after_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The adapter outlives an event loop (a CLI command that runs several,
    # a test suite's loop per test): an asyncio.Lock made in __init__ was
    # bound to the first loop in which queries met a probe, and a probe
    # due in the next loop failed every query waiting on it (RuntimeError,
    # an analysis crash).
    monotonic = _monotonic_by_hand(monkeypatch)
    prom, _ = _prometheus(_answers("7"), ahead_s=MINUTE)

    async def together() -> list[float | None]:
        return await asyncio.gather(*(prom.query("up", time.time(), 5.0) for _ in range(3)))

    try:
        for _ in range(2):
            assert asyncio.run(together()) == [7.0, 7.0, 7.0]
            monotonic[0] += 61.0
    finally:
        prom.close()
