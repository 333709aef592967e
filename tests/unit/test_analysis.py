"""Verdicts, thresholds, templates and durations of the analysis package."""

from __future__ import annotations

import math

import pytest

from analysis.durations import parse_duration, promql_duration
from analysis.http_trouble import reason as _reason
from analysis.scrape import ScrapeTiming, next_landing, timing_of
from analysis.spec import AnalysisSpec, MetricSpec, Relative
from analysis.templates import (
    Target,
    TemplateError,
    metric_query,
    render,
    requests_query,
    variables,
)
from analysis.verdicts import Verdict, assess, combine, thresholds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("1m30s", 90), ("500ms", 0.5), ("2h", 7200), ("15", 15), ("1.5s", 1.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "1x", "-5s", "s30", "inf", "nan"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_promql_ranges_are_whole_milliseconds() -> None:
    assert promql_duration(30) == "30s"
    assert promql_duration(37.2) == "37200ms"


success = MetricSpec(name="success-rate", min=99)
latency = MetricSpec(name="latency-p99-ms", max=400)


@pytest.mark.parametrize(
    ("metric", "value", "verdict"),
    [
        (success, 99.5, Verdict.PASS),
        (success, 99.0, Verdict.PASS),
        (success, 98.9, Verdict.FAIL),
        (success, None, Verdict.NO_DATA),
        (success, math.nan, Verdict.NO_DATA),
        (latency, 120.0, Verdict.PASS),
        (latency, 401.0, Verdict.FAIL),
        (latency, math.inf, Verdict.FAIL),  # every request in the +Inf bucket is data: slow
    ],
)
def test_absolute_thresholds(metric: MetricSpec, value: float | None, verdict: Verdict) -> None:
    assert assess(metric, value) is verdict


def test_relative_checks_compare_with_the_stable_twin() -> None:
    errors = MetricSpec(
        name="errors", query='x{pod=~"{{ pods }}"}', relative=Relative(max_ratio=1.5, max_delta=0.5)
    )
    assert assess(errors, 1.4, stable=1.0) is Verdict.PASS
    assert assess(errors, 1.6, stable=1.0) is Verdict.FAIL  # beyond both
    assert assess(errors, 0.4, stable=0.1) is Verdict.PASS  # 4x, but within the 0.5 floor
    assert assess(errors, 0.7, stable=0.1) is Verdict.FAIL
    ratio_only = MetricSpec(
        name="e", query='x{pod=~"{{ pods }}"}', relative=Relative(max_ratio=1.5)
    )
    assert assess(ratio_only, 0.4, stable=0.1) is Verdict.FAIL
    assert assess(errors, 1.0, stable=None) is Verdict.NO_DATA
    lower = MetricSpec(name="success-rate", relative=Relative(max_delta=1.0))
    assert assess(lower, 98.5, stable=99.0) is Verdict.PASS
    assert assess(lower, 97.5, stable=99.0) is Verdict.FAIL


def test_thresholds_are_readable() -> None:
    assert thresholds(success) == ">= 99"
    both = MetricSpec(
        name="x", query='q{pod=~"{{ pods }}"}', min=1, max=2, relative=Relative(max_ratio=1.5)
    )
    assert thresholds(both) == ">= 1, <= 2, not above stable x1.5"


def test_a_failure_outranks_errors_and_missing_data() -> None:
    assert combine([Verdict.PASS, Verdict.NO_DATA, Verdict.FAIL]) is Verdict.FAIL
    assert combine([Verdict.PASS, Verdict.NO_DATA, Verdict.ERROR]) is Verdict.ERROR
    assert combine([Verdict.PASS, Verdict.NO_DATA]) is Verdict.NO_DATA
    assert combine([Verdict.PASS]) is Verdict.PASS


def test_templates_render_every_variable_for_one_twin() -> None:
    values = variables(Target("shop", "web", "green", "web-green-.*"), 42, 30)
    text = render("{{namespace}} {{ service }} {{pods}} {{twin}} {{window}} {{interval}}", values)
    assert text == "shop web web-green-.* green 42s 30s"
    with pytest.raises(TemplateError, match="unknown variable"):
        render("{{ nope }}", values)


def test_builtins_follow_the_configured_metric_and_labels() -> None:
    spec = AnalysisSpec.model_validate(
        {"request-metric": "requests_total", "labels": {"code": "status", "pod": "kubernetes_pod"}}
    )
    values = variables(Target("shop", "web", "green", "web-green-.*"), 30, 30)
    query = metric_query(spec, success, values)
    selector = 'requests_total{namespace="shop",kubernetes_pod=~"web-green-.*",status!~"5.."'
    assert selector in query and 'status!=""' in query
    assert "histogram_quantile(0.99" in metric_query(spec, latency, values)


def test_the_scrape_interval_is_the_typical_step_between_sample_times() -> None:
    assert timing_of([]) is None
    assert timing_of([[100.0, 100.0, 101.0]]) is None  # one step is not enough
    one_second = [100.0 + i // 3 for i in range(30)]  # evaluated thrice per scrape
    assert timing_of([[float(v) for v in one_second]]) == ScrapeTiming(1.0, 109.0)
    fifteen = [1000.0] * 15 + [1015.0] * 15 + [1030.0] * 15 + [1045.2] * 5
    assert timing_of([fifteen]) == ScrapeTiming(15.0, 1045.2)


def test_pods_scraped_at_different_offsets_do_not_shorten_the_interval() -> None:
    # Four pods, each its own target at its own offset within a 15 s interval:
    # together a new sample lands every 3.75 s, yet each pod is scraped every 15 s.
    pods = [
        [1000.0 + offset + 15 * (i // 15) for i in range(60)] for offset in (0, 3.75, 7.5, 11.25)
    ]
    timing = timing_of(pods)
    assert timing is not None and timing.interval == 15.0 and timing.last == 1056.25


def test_fast_checks_are_timed_just_after_a_scrape_lands() -> None:
    # Scrapes every 1 s at .300; samples are queryable 0.15 s later.
    assert next_landing(1000.0, 1.0, 990.3) == pytest.approx(1000.45)
    assert next_landing(1000.45, 1.0, 990.3) == pytest.approx(1000.45)  # at one: that one
    assert next_landing(1000.46, 1.0, 990.3) == pytest.approx(1001.45)


def test_prometheus_rejections_are_shown_whole() -> None:
    body = b'{"status":"error","errorType":"bad_data","error":"invalid parameter \\"query\\": x"}'
    text = f"HTTP Status Code 400 ({body!r})"
    assert _reason(text) == 'invalid parameter "query": x'


def test_a_young_first_step_reads_counter_totals_not_rates() -> None:
    spec = AnalysisSpec.model_validate({"metrics": [{"name": "success-rate", "min": 99}]})
    values = variables(Target("shop", "web", "green", "web-green-6d9f-[a-z0-9]+"), 1, 10)
    query = metric_query(spec, spec.metrics[0], values, totals=True)
    assert "rate(" not in query and query.count("last_over_time(") == 2
    assert "last_over_time(" in requests_query(spec, values, totals=True)
    assert "rate(" in metric_query(spec, spec.metrics[0], values)
