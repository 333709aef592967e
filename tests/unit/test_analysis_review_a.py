"""Wrong verdicts found by an adversarial review of the analysis path (each
test failed on the code before its fix)."""

from __future__ import annotations

from typing import Any

import pytest

from analysis.prometheus import _single_value
from analysis.provider import QueryError
from analysis.run import analyze
from analysis.verdicts import Verdict
from tests.unit.test_analysis_bad_day import _prometheus, _vector, analysis, ctx

# -- 1. partial answers worded otherwise than "partial" or "unavailable" ---------------------

# What the stores behind a Prometheus URL really say when part of the data is
# missing. Prometheus's own remote read (a secondary querier: its failure is a
# warning) writes "remote_read:" with an underscore; a Thanos store that is
# slow, or whose stream breaks, is named "failed to receive any data ... from"
# or "receive series from" (with the gRPC code, e.g. DeadlineExceeded);
# VictoriaMetrics cluster sets "isPartial": true with no warning at all when a
# vmstorage node is down.
_REMOTE_READ = (
    'remote_read: error sending request: Post "http://lts:9201/read": dial tcp '
    "10.0.4.2:9201: connect: connection refused"
)
_THANOS_SLOW = (
    "failed to receive any data in 5s from Addr: 10.0.3.7:10901 LabelSets: "
    '{replica="eu-west-0"} MinTime: 1700000000000 MaxTime: 1700003600000: '
    "context deadline exceeded"
)
_THANOS_BROKEN = (
    'receive series from Addr: 10.0.3.7:10901 LabelSets: {replica="eu-west-0"}: '
    "rpc error: code = DeadlineExceeded desc = context deadline exceeded"
)


@pytest.mark.parametrize(
    "extra",
    [
        {"warnings": [_REMOTE_READ]},
        {"warnings": [_THANOS_SLOW]},
        {"warnings": [_THANOS_BROKEN]},
        {"isPartial": True},
    ],
    ids=["prometheus-remote-read", "thanos-store-slow", "thanos-stream-broken", "vm-isPartial"],
)
async def test_an_answer_missing_part_of_the_data_is_never_a_pass(extra: dict[str, Any]) -> None:
    # The store holding the canary's 5xx series did not answer: the success
    # rate reads 100 over what is left. Before, only warnings saying
    # "partial", "unavailable" or "remote read" (with a space) were refused,
    # and each of these passed the step.
    def answer(url: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if params["query"].startswith("sum(increase("):
            return 200, {"status": "success", "data": {"result": _vector("120")}}
        return 200, {"status": "success", **extra, "data": {"result": _vector("100")}}

    prom, _ = _prometheus(answer)
    try:
        the_spec = analysis({"metrics": [{"name": "success-rate", "min": 99}]})
        result_ = await analyze(the_spec, ctx(), prom)
    finally:
        prom.close()
    assert result_.verdict is Verdict.ERROR, result_.reason
    assert "without part of the data" in result_.reason


async def test_a_warning_that_says_nothing_is_missing_still_passes() -> None:
    # PromQL's own annotations (Prometheus 2.46+) are no missing data.
    warning = 'PromQL warning: encountered a mix of histograms and floats for metric name "x"'

    def answer(url: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if params["query"].startswith("sum(increase("):
            return 200, {"status": "success", "data": {"result": _vector("120")}}
        return 200, {
            "status": "success",
            "warnings": [warning],
            "isPartial": False,
            "data": {"result": _vector("100")},
        }

    prom, _ = _prometheus(answer)
    try:
        the_spec = analysis({"metrics": [{"name": "success-rate", "min": 99}]})
        result_ = await analyze(the_spec, ctx(), prom)
    finally:
        prom.close()
    assert result_.verdict is Verdict.PASS, result_.reason


# -- 2. a comparison whose query does not name the pods compares the canary with itself ------


@pytest.mark.parametrize(
    "check",
    [{"relative": {"max-ratio": 1.5}}, {"judge": {}}],
    ids=["relative", "judge"],
)
def test_a_comparison_whose_query_names_no_pods_is_refused(check: dict[str, Any]) -> None:
    # Without {{ pods }} or {{ twin }} the canary's query and the stable's
    # are the same text: the canary is compared with the very same series,
    # a ratio of 1 whatever it does, and a canary failing every checkout
    # passed `max-ratio: 1.5` (or the judge) at every step. Refused with the
    # annotation, as an unknown variable is.
    query = 'sum(rate(checkout_errors_total{namespace="{{ namespace }}"}[{{ window }}]))'
    with pytest.raises(ValueError, match=r"\{\{ pods \}\}"):
        analysis({"metrics": [{"name": "checkout-errors", "query": query, **check}]})
    named = query.replace('"}', '",pod=~"{{ pods }}"}')
    analysis({"metrics": [{"name": "checkout-errors", "query": named, **check}]})
    by_twin = query.replace('"}', '",twin="{{ twin }}"}')
    analysis({"metrics": [{"name": "checkout-errors", "query": by_twin, **check}]})
    # An absolute threshold on a query about something else (a queue both
    # twins feed) is the team's to judge: it compares nothing with itself.
    analysis({"metrics": [{"name": "checkout-errors", "query": query, "max": 0.5}]})


# -- 3. a range vector answered to an instant query is the query's fault ----------------------


def test_a_range_vector_result_is_a_spec_error_not_an_outage() -> None:
    # A custom query ending in a range or a subquery (`...[{{ window }}]`,
    # `sum(rate(...))[1m:]`) answers resultType "matrix": one series with
    # "values", no "value". Read as "unexpected result shape", an error
    # counted as Prometheus trouble: it halted as "resumes by itself once
    # queries succeed" (they never do), or with on-limit: rollback rolled a
    # healthy release back, as several series did before they were made a
    # spec error.
    matrix = [{"metric": {}, "values": [[1000.0, "1"], [1015.0, "2"]]}]
    with pytest.raises(QueryError) as caught:
        _single_value(matrix)
    assert caught.value.invalid
    assert "range" in str(caught.value)
