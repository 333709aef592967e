"""Wrong verdicts found by an adversarial review of the analysis path (each
test failed on the code before its fix)."""

from __future__ import annotations

from typing import Any

import pytest

from analysis.prometheus import _single_value
from analysis.provider import QueryError
from analysis.run import StepContext, analyze
from analysis.spec import AnalysisSpec
from analysis.templates import Target
from analysis.verdicts import Verdict
from tests.unit.test_analysis_bad_day import (
    analysis,
    success_rate_answered_with,
)
from tests.unit.test_newest_scrape import _TurnedBad

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
    result_ = await success_rate_answered_with(extra)
    assert result_.verdict is Verdict.ERROR, result_.reason
    assert "without part of the data" in result_.reason


async def test_a_warning_that_says_nothing_is_missing_still_passes() -> None:
    # PromQL's own annotations (Prometheus 2.46+) are no missing data.
    warning = 'PromQL warning: encountered a mix of histograms and floats for metric name "x"'

    result_ = await success_rate_answered_with({"warnings": [warning], "isPartial": False})
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


# -- 4. a window of three scrapes skipped the newest-scrape check -----------------------------


def _turned_bad_late() -> _TurnedBad:
    """A canary that served 400 good requests a scrape, then failed 2 % of
    the newest scrape's: the newest two-scrape window (`[20s]`) reads 98 %,
    the whole window of three scrapes (`[30s]`, two scrapes of traffic) 99 %."""
    return _TurnedBad(98.0, 400.0, newest_window="[20s]", whole=(800.0, 99.0))


async def test_a_window_of_three_scrapes_still_fails_on_its_failing_newest_scrape() -> None:
    # interval 30s, scrape 10s: every scheduled check's window is three
    # scrapes, and the newest-scrape check was skipped as "no wider than
    # what a fast look reads" (it reads two scrapes): the newest scrape's
    # 2 % errors were averaged with the scrape before to 1 %, and the step
    # (a blue-green preview's last) passed against min 99 into production.
    spec_ = AnalysisSpec(min_requests=20, scrape_interval=10.0)
    at = StepContext(
        Target("ns", "web", "green", "web-green-abc-[a-z0-9]+"),
        None,
        start=1000.0,
        now=1030.0,
        interval_s=30.0,
        scrape_s=10.0,
        scrape_known=True,
    )
    result_ = await analyze(spec_, at, _turned_bad_late())
    assert result_.verdict is Verdict.FAIL, result_.reason
    assert "newest scrape fails" in result_.reason
