"""A canary that hangs completes no request: its success rate and latency
see nothing new, the window's earlier traffic passes the step, and nothing
fails. Before, such a canary was promoted on the part of its window before
the hang (found by review). Now a scheduled check whose newest two scrapes
hold no canary request, while the stable twin still served and the canary's
window promised plenty, is no data, never a pass."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from analysis.provider import QueryError
from analysis.run import QUIET_METRIC, analyze
from analysis.verdicts import Verdict
from tests.unit.test_analysis_bad_day import (
    CANARY_RS,
    STABLE_RS,
    FakePrometheus,
    analysis,
    ctx,
    requests,
)

SPEC = analysis({"min-requests": 20, "metrics": [{"name": "success-rate", "min": 95}]})
NEWEST = "[30s]"  # two scrapes of 15 s


@dataclass
class _Hung(FakePrometheus):
    """The whole window's increases as given; over the newest two scrapes,
    the canary served `canary_newest`, the stable twin `stable_newest`."""

    canary_newest: float = 0.0
    stable_newest: float = 150.0
    hang_error: str = ""  # the newest-scrapes query of this twin fails...
    hang_skip: int = 0  # ...once it was answered this many times

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        if NEWEST in promql and promql.startswith("sum(increase(") and "5.." not in promql:
            self.queries.append(promql)
            if self.hang_error and self.hang_error in promql:
                self.hang_skip -= 1
            if self.hang_error in promql and self.hang_skip < 0:
                raise QueryError("Prometheus at http://prom unavailable: 503 Service Unavailable")
            return self.canary_newest if CANARY_RS in promql else self.stable_newest
        return await super().query(promql, at, timeout_s)


def _prometheus(
    canary_ok: float = 400.0, canary_newest: float = 0.0, stable_newest: float = 150.0
) -> _Hung:
    series = requests(CANARY_RS, "code", canary_ok, 0.0) + requests(STABLE_RS, "code", 1200.0, 0.0)
    return _Hung(series=series, canary_newest=canary_newest, stable_newest=stable_newest)


def _checked(prometheus: _Hung, known: bool = True) -> tuple[Verdict, str]:
    # A two-minute window: the newest two scrapes are a quarter of it.
    context = replace(ctx(start=1000.0, now=1120.0), scrape_known=known)
    result = asyncio.run(analyze(SPEC, context, prometheus))
    return result.verdict, result.reason


def test_a_canary_that_stops_answering_is_no_data_not_a_pass() -> None:
    verdict, reason = _checked(_prometheus())
    assert verdict is Verdict.NO_DATA, reason
    assert "no request answered by the canary in its newest two scrapes (30s)" in reason
    assert "averaged 100 per two scrapes" in reason and "stable twin answered 150" in reason


def test_a_canary_that_still_answers_passes() -> None:
    verdict, reason = _checked(_prometheus(canary_newest=90.0))
    assert verdict is Verdict.PASS, reason


def test_load_that_stopped_for_both_twins_leaves_the_windows_pass() -> None:
    verdict, reason = _checked(_prometheus(stable_newest=0.0))
    assert verdict is Verdict.PASS, reason


def test_a_canary_too_quiet_to_tell_leaves_the_windows_pass() -> None:
    # 30 requests in two minutes: about 7 per two scrapes, 3.75 in the one
    # interval their samples span; none by chance happens (e^-3.75), so it
    # is not taken as a hang.
    verdict, reason = _checked(_prometheus(canary_ok=30.0))
    assert verdict is Verdict.PASS, reason


def test_with_the_scrape_interval_a_guess_nothing_is_read_into_quiet_scrapes() -> None:
    prometheus = _prometheus()
    verdict, reason = _checked(prometheus, known=False)
    assert verdict is Verdict.PASS, reason
    assert not any(NEWEST in q and STABLE_RS in q for q in prometheus.queries)


def test_the_quiet_measurement_is_recorded_for_on_call() -> None:
    context = replace(ctx(start=1000.0, now=1120.0), scrape_known=True)
    result = asyncio.run(analyze(SPEC, context, _prometheus()))
    quiet = [m for m in result.measurements if m.metric == QUIET_METRIC]
    assert [(m.twin, m.value, m.verdict) for m in quiet] == [
        ("green", 0.0, Verdict.NO_DATA),
        ("blue", 150.0, Verdict.PASS),
    ]


def test_the_newest_two_scrapes_hold_one_interval_of_requests() -> None:
    # increase() over two scrapes reads the two samples they hold: the
    # requests between them, one scrape interval's. A canary that averaged
    # 12 per two scrapes has 6 due there, and none by chance about one
    # check in 400 (e^-6), not the e^-10 the README promised: a healthy
    # canary at a low share was taken for one that hangs (found by review).
    verdict, reason = _checked(_prometheus(canary_ok=48.0))
    assert verdict is Verdict.PASS, reason


def test_no_answer_about_the_newest_scrapes_is_an_error_not_the_windows_pass() -> None:
    # Whether the canary still answers went unanswered: before, the pass
    # stood, and a hung canary was promoted whenever that query failed.
    # (The canary's is asked first by the newest scrape's own look.)
    for twin_rs, skip in ((CANARY_RS, 1), (STABLE_RS, 0)):
        prometheus = _prometheus()
        prometheus.hang_error, prometheus.hang_skip = twin_rs, skip
        verdict, reason = _checked(prometheus)
        assert verdict is Verdict.ERROR, (twin_rs, reason)
        assert reason.startswith(f"{QUIET_METRIC}: "), reason


def test_a_canary_that_still_answers_passes_whatever_the_stable_twins_query_does() -> None:
    # The canary's newest two scrapes hold requests: it is not quiet, and
    # the stable twin's count (asked beside it) can change nothing. That
    # query failing alone (a timeout, a 503 on one of two parallel
    # queries) made the whole check an error, counted towards error-limit,
    # for a canary whose own answer had already vouched for the window.
    prometheus = _prometheus(canary_newest=90.0)
    prometheus.hang_error = STABLE_RS
    verdict, reason = _checked(prometheus)
    assert verdict is Verdict.PASS, reason


@dataclass
class _Unflushed(FakePrometheus):
    """VictoriaMetrics at a 1 s scrape, just before its flush: the canary's
    newest two scrapes are not searchable yet (its pods were scraped later
    in the interval than the stable twin's); four seconds back, they are."""

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        if promql.startswith("sum(increase_prometheus(") and "5.." not in promql:
            if "[2s]" in promql:
                return 0.0 if CANARY_RS in promql else 120.0
            if "[4s]" in promql:
                return 40.0 if CANARY_RS in promql else 240.0
        return await super().query(promql, at, timeout_s)


def test_on_victoriametrics_scrapes_not_yet_searchable_are_not_a_hang() -> None:
    # VictoriaMetrics makes samples searchable at its flush, within 4 s
    # (analysis.scrape.searchable_after): at a 1 s scrape the canary's newest
    # two scrapes read empty while the stable twin's, scraped earlier in
    # the interval, were flushed. Read over two scrapes only, a healthy
    # canary was no data, which no-data-limit counts towards a rollback.
    # 2,400 requests in two minutes: 40 promised per two scrapes.
    series = requests(CANARY_RS, "code", 2400.0, 0.0) + requests(STABLE_RS, "code", 7200.0, 0.0)
    context = replace(ctx(start=1000.0, now=1120.0, scrape=1.0), scrape_known=True, metricsql=True)
    result = asyncio.run(analyze(SPEC, context, _Unflushed(series=series)))
    assert result.verdict is Verdict.PASS, result.reason
