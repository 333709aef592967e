"""Annotation values that parsed (or escaped the parser) but could not be
used: each must be a SpecError naming the annotation and what it accepts,
never an exception that fails the reconcile, nor a spec that checks
nothing or breaks the schedule later (review of the parser, 2026-12-02)."""

from __future__ import annotations

import re

import pytest

from canary.spec import SpecError, parse


def _analysis(text: str) -> None:
    parse("web", {"canary.io/strategy": "canary", "canary.io/analysis": text})


@pytest.mark.parametrize(
    "text",
    [
        "[" * 5000 + "]" * 5000,
        "metrics: " + "{a: " * 3000 + "1" + "}" * 3000,
    ],
)
def test_an_analysis_nested_too_deeply_is_a_spec_error(text: str) -> None:
    """PyYAML composes recursively: a document nested a few thousand deep
    (well within the 256 KiB annotations may hold) raised RecursionError out
    of parse(). The reconcile failed at every cycle (ReconcileFailed, with a
    traceback's text), so no InvalidSpec named the annotation, and what runs
    while a spec is invalid (an abort, the selector put back) did not run."""
    with pytest.raises(SpecError) as caught:
        _analysis(text)
    assert caught.value.field == "canary.io/analysis"
    assert "nested" in caught.value.message


@pytest.mark.parametrize(
    "threshold",
    ["min: nan", "min: .nan", "max: NaN", "min: 99, max: .nan", "max: .inf", "min: -.inf"],
)
def test_a_threshold_that_is_not_a_finite_number_is_a_spec_error(threshold: str) -> None:
    """`min: nan` (a templating tool's empty value, `.nan` in YAML) was taken:
    every comparison with NaN is false, so the metric never failed and a
    canary failing half its requests passed every check and was promoted.
    An infinite bound likewise checks nothing."""
    with pytest.raises(SpecError) as caught:
        _analysis(f"metrics: [{{name: success-rate, {threshold}}}]")
    assert caught.value.field == "canary.io/analysis"
    assert "metrics.0." in caught.value.message and "finite" in caught.value.message


@pytest.mark.parametrize("timeout", ["0", "0s", "1e308", "100000h"])
def test_a_query_timeout_of_zero_or_beyond_any_prometheus_is_a_spec_error(timeout: str) -> None:
    """`query-timeout: 0` was taken: the HTTP client refuses a timeout of 0
    with a ValueError, which is no QueryError, so every check "crashed" into
    an error verdict: a healthy release halted at `error-limit`, or was
    rolled back as AnalysisError with `on-limit: rollback`, under a message
    naming neither the annotation nor the fix. A huge one is sent as
    `timeout=1e+308s`, which Prometheus rejects at every query."""
    with pytest.raises(SpecError) as caught:
        _analysis(f"query-timeout: {timeout}")
    assert caught.value.field == "canary.io/analysis"
    assert "query-timeout" in caught.value.message


@pytest.mark.parametrize("interval", ["0", "0s", "10ms", "1e308", "25h"])
def test_a_scrape_interval_no_prometheus_scrapes_at_is_a_spec_error(interval: str) -> None:
    """`scrape-interval: 0` was taken. Set mid-rollout, once the interval
    had been learned (so the scrape's phase is known), every cycle divided
    by it when timing the next fast look (schedule.next_fast ->
    next_landing): ZeroDivisionError, a ReconcileFailed at every cycle, the
    canary left at its weight unanalysed and an abort not carried out.
    Unlearned, the next look was always due at once: a loop of queries
    (10ms: one every 10 ms; the learner, sampling every second, never sees
    a sub-second scrape either). A huge one put the first look of a step
    two scrapes away: never, the step held for good."""
    with pytest.raises(SpecError) as caught:
        _analysis(f"scrape-interval: {interval}")
    assert caught.value.field == "canary.io/analysis"
    assert "scrape-interval" in caught.value.message


def test_a_scrape_interval_of_a_second_to_a_day_is_taken() -> None:
    for interval, seconds in (("1s", 1.0), ("15s", 15.0), ("1h", 3600.0)):
        spec = parse(
            "web",
            {"canary.io/strategy": "canary", "canary.io/analysis": f"scrape-interval: {interval}"},
        )
        assert spec is not None and spec.analysis.scrape_interval == seconds


# What the API server takes as a Service's name (DNS-1035 label).
SERVICE_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize("preview", ["Web-Preview", "web_preview", "web.preview", "-web", "web-"])
def test_a_preview_service_name_no_service_can_have_is_a_spec_error(preview: str) -> None:
    """Any text up to 63 characters was taken: the blue-green rollout
    started, and creating the preview Service was refused (422) at every
    cycle, a ReconcileFailed naming `metadata.name`, never the annotation."""
    with pytest.raises(SpecError) as caught:
        parse(
            "web",
            {"canary.io/strategy": "blue-green", "canary.io/preview-service": preview},
        )
    assert caught.value.field == "canary.io/preview-service"
    assert "accepts a Service name" in caught.value.message


@pytest.mark.parametrize("length", [55, 56, 61, 62, 63])
def test_the_default_preview_of_a_long_service_name_is_a_service_name_of_its_own(
    length: int,
) -> None:
    """`<service>-preview` cut at 63 characters: for a Service name of 62 it
    ended in "-" (refused by the API server at every cycle), for one of 63
    it was the Service itself (an InvalidSpec blaming preview-service, which
    the team never set)."""
    name = "w" * length
    spec = parse(name, {"canary.io/strategy": "blue-green"})
    assert spec is not None
    assert SERVICE_NAME.match(spec.preview_service) and len(spec.preview_service) <= 63
    assert spec.preview_service != name
    if length <= 61:  # the names that worked stay as they were
        assert spec.preview_service == f"{name}-preview"[:63]


@pytest.mark.parametrize(
    "text",
    [
        "metrics: [{name: success-rate, min: 99, min: 1}]",
        "metrics:\n  - name: success-rate\n    min: 99\nmin-requests: 20\nmin-requests: 0\n",
        "metrics: [{name: success-rate, min: 99}]\nmetrics: [{name: error-rate, max: 50}]\n",
    ],
)
def test_a_key_given_twice_in_the_analysis_is_a_spec_error(text: str) -> None:
    """YAML mappings take each key once, but the reader kept the last: a
    merge left with both sides (`min: 99` over `min: 1`, a second
    `metrics:` list) silently loosened or replaced the checks, with no
    word of the one dropped."""
    with pytest.raises(SpecError) as caught:
        _analysis(text)
    assert caught.value.field == "canary.io/analysis"
    assert "duplicate key" in caught.value.message and "line" in caught.value.message


def test_a_yaml_merge_key_still_overrides_what_it_merges() -> None:
    """`<<:` merges a mapping whose keys the explicit ones override: no
    duplicate."""
    spec = parse(
        "web",
        {
            "canary.io/strategy": "canary",
            "canary.io/analysis": "metrics: [{<<: {name: success-rate, min: 99}, min: 95}]",
        },
    )
    assert spec is not None and spec.analysis.metrics[0].min == 95


@pytest.mark.parametrize(
    "text",
    [
        "metrics: [{name: success-rate, min: 99, fast: !!bool maybe}]",
        "min-requests: !!int ''",
        "no-data-limit: !!timestamp soon",
    ],
)
def test_an_explicit_yaml_tag_on_a_value_it_does_not_fit_is_a_spec_error(text: str) -> None:
    """PyYAML's constructors raise KeyError, IndexError or AttributeError
    (not YAMLError) for `!!bool maybe`, `!!int ''`, `!!timestamp soon`: out
    of parse(), a ReconcileFailed at every cycle instead of an InvalidSpec."""
    with pytest.raises(SpecError) as caught:
        _analysis(text)
    assert caught.value.field == "canary.io/analysis"
    assert "not valid YAML" in caught.value.message


SWITCHES = ("off", "no", "false", "on", "yes", "true")  # YAML 1.1 booleans, unquoted


@pytest.mark.parametrize(
    ("where", "text"),
    [
        ("min-requests", "min-requests: {}"),
        ("max-restarts", "max-restarts: {}"),
        ("no-data-limit", "no-data-limit: {}"),
        ("error-limit", "error-limit: {}"),
        ("scrape-interval", "scrape-interval: {}"),
        ("query-timeout", "query-timeout: {}"),
        ("metrics.0.min", "metrics: [{{name: success-rate, min: {}}}]"),
        ("metrics.0.max", "metrics: [{{name: error-rate, max: {}}}]"),
        (
            "metrics.0.relative.max-ratio",
            "metrics: [{{name: error-rate, relative: {{max-ratio: {}}}}}]",
        ),
        (
            "metrics.0.relative.max-delta",
            "metrics: [{{name: error-rate, relative: {{max-delta: {}}}}}]",
        ),
        (
            "metrics.0.judge.confidence",
            "metrics: [{{name: error-rate, judge: {{confidence: {}}}}}]",
        ),
        (
            "metrics.0.judge.effect-size",
            "metrics: [{{name: error-rate, judge: {{effect-size: {}}}}}]",
        ),
        (
            "metrics.0.judge.sample-every",
            "metrics: [{{name: error-rate, judge: {{sample-every: {}}}}}]",
        ),
        ("gates.0.timeout", "gates: [{{name: g, when: pre-step, url: 'http://g', timeout: {}}}]"),
        ("gates.0.retries", "gates: [{{name: g, when: pre-step, url: 'http://g', retries: {}}}]"),
    ],
)
def test_a_yaml_boolean_in_a_numeric_analysis_field_is_a_spec_error(where: str, text: str) -> None:
    """YAML 1.1 reads an unquoted off/no/false as False and on/yes/true as
    True, which a lax number took as 0 and 1: `no-data-limit: off` (meant:
    never act on no data) halted at the first empty check, `max: off` on
    error-rate failed at the first error, `retries: no` was 0, and
    `query-timeout: on` was a 1 s timeout. Refused as max-restarts is,
    naming the field, why, and what to write instead."""
    for switch in SWITCHES:
        with pytest.raises(SpecError) as caught:
            _analysis(text.format(switch))
        assert caught.value.field == "canary.io/analysis"
        message = caught.value.message
        assert message.startswith(f"at {where}: "), message
        assert f"not {switch in ('on', 'yes', 'true')}".lower() in message, message
        assert "as a boolean" in message and ("set " in message or "leave it out" in message)


def test_a_numeric_analysis_field_still_takes_its_numbers() -> None:
    """0 and 1 written as numbers (or quoted) are what they say."""
    spec = parse(
        "web",
        {
            "canary.io/strategy": "canary",
            "canary.io/analysis": (
                "metrics: [{name: error-rate, max: 0, relative: {max-delta: 0}}, "
                "{name: latency-p99-ms, judge: {effect-size: 0, sample-every: 1}}]\n"
                "min-requests: 0\nno-data-limit: '1'\nerror-limit: 0\nquery-timeout: 1\n"
                "gates: [{name: g, when: pre-step, url: 'http://g', retries: 0, timeout: 1}]\n"
            ),
        },
    )
    assert spec is not None
    analysis = spec.analysis
    assert (analysis.min_requests, analysis.no_data_limit, analysis.error_limit) == (0, 1, 0)
    assert analysis.metrics[0].max == 0 and analysis.metrics[0].relative is not None
    assert analysis.metrics[1].judge is not None and analysis.metrics[1].judge.sample_every == 1
    assert analysis.gates[0].retries == 0 and analysis.query_timeout == 1


def test_fast_is_a_real_switch_and_takes_yaml_booleans() -> None:
    """`fast: off` means what it says: a boolean is its value."""
    for switch, value in (("off", False), ("yes", True)):
        spec = parse(
            "web",
            {
                "canary.io/strategy": "canary",
                "canary.io/analysis": f"metrics: [{{name: error-rate, max: 1, fast: {switch}}}]",
            },
        )
        assert spec is not None and spec.analysis.metrics[0].fast is value


@pytest.mark.parametrize(
    "name", ["failure-limit", "history-limit", "steps", "interval", "progress-deadline"]
)
def test_a_switch_word_in_a_numeric_annotation_is_a_spec_error(name: str) -> None:
    """The other annotations are strings (Kubernetes annotations are, and
    `canary lint` reads a manifest's `off` as "False"): no YAML boolean
    reaches them, and a word is no number."""
    for switch in (*SWITCHES, "False", "True"):
        with pytest.raises(SpecError) as caught:
            parse("web", {"canary.io/strategy": "canary", f"canary.io/{name}": switch})
        assert caught.value.field == f"canary.io/{name}"
