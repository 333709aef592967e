"""Review of the VictoriaMetrics flush, the guarded builtins and the exported
deadline of a check in flight (rev-combined4): each test failed on the code
before its fix."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from analysis.run import analyze
from analysis.verdicts import Verdict
from tests.unit.test_analysis_bad_day import CANARY_RS, STABLE_RS, FakePrometheus, ctx, requests
from tests.unit.test_canary_went_quiet import SPEC

# -- a canary gone quiet, on VictoriaMetrics --------------------------------------------------


@dataclass
class _HungOnVictoriaMetrics(FakePrometheus):
    """The whole window's increases as given; over the newest part the quiet
    check reads (two scrapes of 15 s and the flush: 34 s), the canary served
    nothing, the stable twin 150."""

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        newest = promql.startswith("sum(increase_prometheus(") and "[34s]" in promql
        if newest and "5.." not in promql:
            return 0.0 if CANARY_RS in promql else 150.0
        return await super().query(promql, at, timeout_s)


def test_a_quiet_canary_on_victoriametrics_is_told_with_the_rate_it_read() -> None:
    """On VictoriaMetrics the quiet check reads the newest two scrapes and a
    flush (34 s at a 15 s scrape): 400 requests in 120 s promise 113 there,
    100 per two scrapes. The reason said "averaged 113 per two scrapes" and
    "its newest two scrapes (34s)": a rate a flush's worth too high (at a
    1 s scrape three times), over a span that is not two scrapes."""
    series = requests(CANARY_RS, "code", 400.0, 0.0) + requests(STABLE_RS, "code", 1200.0, 0.0)
    prometheus = _HungOnVictoriaMetrics(series=series)
    context = replace(ctx(start=1000.0, now=1120.0), scrape_known=True, metricsql=True)
    result = asyncio.run(analyze(SPEC, context, prometheus))
    assert result.verdict is Verdict.NO_DATA, result.reason
    assert "newest two scrapes and a flush (34s)" in result.reason, result.reason
    assert "averaged 113 per 34s" in result.reason, result.reason
    assert "per two scrapes" not in result.reason, result.reason
