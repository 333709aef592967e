"""Wrong verdicts found by a second adversarial review of the analysis path
(each test failed on the code before its fix)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from analysis.prometheus import _single_value
from analysis.provider import QueryError
from analysis.run import analyze
from analysis.verdicts import Verdict
from canary.model import Checked
from tests.unit.test_analysis_bad_day import (
    CANARY_RS,
    STABLE_RS,
    FakePrometheus,
    _prometheus,
    _second_step_serving,
    ctx,
    requests,
    success_rate_answered_with,
)
from tests.unit.world import result, spec

# -- 1. a query found invalid hides a failure in the same check -------------------------------


class _PerPod(FakePrometheus):
    """A custom query without sum(): one series per pod once the canary has
    grown to two, which the provider refuses as the spec's fault."""

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        if "queue_depth" in promql:
            self.queries.append(promql)
            raise QueryError(
                "query returned 2 series; wrap it in sum() or another aggregation", invalid=True
            )
        return await super().query(promql, at, timeout_s)


async def test_a_failing_metric_outranks_an_invalid_query_in_the_same_check() -> None:
    # README: "A failing metric outranks errors and missing data in the same
    # check." At the second step the canary has grown to two pods, so a
    # custom query without sum() returns two series (invalid: a spec to fix)
    # in the very check that finds the builtin error rate at 50 %. Before,
    # the result was `invalid` and the rollout halted (InvalidSpec): the
    # failure never counted, and a rollout halted on an invalid query is not
    # looked at (watched_standing), so the bad release kept serving its
    # errors at the step's weight until a person fixed the query.
    analysis = {
        "metrics": [
            {"name": "error-rate", "max": 1},
            {"name": "queue-depth", "query": 'queue_depth{pod=~"{{ pods }}"}', "max": 100},
        ]
    }
    strict = spec(steps="10,50", failure_limit="0", analysis=json.dumps(analysis))
    prom = _PerPod(requests(CANARY_RS, "code", 50, 50) + requests(STABLE_RS, "code", 100, 0))
    found = await analyze(strict.analysis, ctx(), prom)
    assert found.verdict is Verdict.FAIL, found.reason
    assert any("queue_depth" in q for q in prom.queries)  # it was asked, and refused

    world = _second_step_serving(strict)
    at = world.state.step_ready + strict.interval
    world.step(strict, Checked("scheduled", found, at), advance=strict.interval)
    assert world.state.halt_kind != "invalid", world.state.halted
    assert world.state.suspected, world.state  # the next scrape confirms it
    world.step(strict, Checked("fast", result(Verdict.FAIL), at + 1), advance=1)
    assert world.state.canary is None and "AnalysisFailed" in world.reasons(), world.reasons()


# -- 2. Thanos with no store for the query answers "success" with a warning ------------------


async def test_an_answer_no_store_matched_is_never_a_pass() -> None:
    # Thanos Querier whose store for these series is gone from its store set
    # (a sidecar unreachable, its Prometheus restarting; or a query whose
    # external-label matchers fit only that store) answers HTTP 200 with the
    # warning "No StoreAPIs matched for this query" and what the other
    # stores hold: nothing of the canary, which `or vector(0)` (the README's
    # own recipe for a share's numerator, or an error count's `max:`) turns
    # into 0 errors. The warning says the answer lacks data, as the others
    # refused already do; it said none of their words, and the step passed.
    warning = "No StoreAPIs matched for this query"
    result_ = await success_rate_answered_with({"warnings": [warning]})
    assert result_.verdict is Verdict.ERROR, result_.reason
    assert "without part of the data" in result_.reason and warning in result_.reason


# -- 3. a native histogram where one number is due is taken for Prometheus trouble ------------

_HISTOGRAM = {
    "count": "120",
    "sum": "9.5",
    "buckets": [[0, "0.064", "0.128", "120"]],
}


def test_a_native_histogram_result_is_a_query_to_fix_not_an_outage() -> None:
    # With native histograms (Prometheus 3, or the feature flag), the latency
    # metric is one series of histogram samples, and a custom query such as
    # `sum(rate(http_request_duration_seconds{pod=~"{{ pods }}"}[{{ window }}]))`
    # answers one series whose sample is under "histogram", not "value"
    # ("histograms", not "values", in a range). Read as an unexpected shape,
    # it was a Prometheus error: counted towards error-limit, halted as
    # "resumes by itself once queries succeed" (it never does), or with
    # on-limit: rollback, a healthy release rolled back as AnalysisError.
    # It is the query's fault, as a range vector is.
    with pytest.raises(QueryError) as caught:
        _single_value([{"metric": {}, "histogram": [1030.0, _HISTOGRAM]}])
    assert caught.value.invalid and "histogram" in str(caught.value)


async def test_a_native_histogram_range_is_a_query_to_fix_not_an_outage() -> None:
    # The statistical judge's range query over the same: "histograms".
    def answer(url: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        points = [[1005.0 + 5 * i, _HISTOGRAM] for i in range(6)]
        series = [{"metric": {}, "histograms": points}]
        return 200, {"status": "success", "data": {"resultType": "matrix", "result": series}}

    prom, _ = _prometheus(answer)
    try:
        with pytest.raises(QueryError) as caught:
            await prom.query_range("sum(rate(h[5s]))", 1005.0, 1030.0, 5.0, 5.0)
    finally:
        prom.close()
    assert caught.value.invalid and "histogram" in str(caught.value)
