"""Annotation parsing: good input becomes a spec, bad input a SpecError that
names the annotation, and nothing else ever escapes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from canary.spec import ACCEPTS, PREFIX, SpecError, Strategy, parse


def test_a_service_without_a_strategy_is_not_managed() -> None:
    assert parse("web", {"other/annotation": "x"}) is None


def test_defaults_follow_the_readme() -> None:
    spec = parse("web", {"canary.io/strategy": "canary"})
    assert spec is not None
    assert spec.strategy is Strategy.CANARY
    assert spec.deployment == "web" and spec.preview_service == "web-preview"
    assert spec.steps == (10, 25, 50) and spec.interval == 30 and spec.failure_limit == 1
    assert spec.analysis.metrics[0].name == "success-rate"
    assert spec.analysis.min_requests == 20


def test_the_design_example_parses() -> None:
    spec = parse(
        "web",
        {
            "canary.io/strategy": "canary",
            "canary.io/deployment": "web",
            "canary.io/steps": "10,25,50",
            "canary.io/interval": "30s",
            "canary.io/failure-limit": "1",
            "canary.io/analysis": (
                "metrics:\n"
                "  - name: success-rate\n    min: 99\n"
                "  - name: latency-p99-ms\n    max: 400\n"
                "  - name: checkout-errors\n"
                '    query: sum(rate(checkout_errors_total{pod=~"{{ pods }}"}[{{ window }}]))\n'
                "    max: 0.5\n"
            ),
        },
    )
    assert spec is not None and [m.name for m in spec.analysis.metrics] == [
        "success-rate",
        "latency-p99-ms",
        "checkout-errors",
    ]


@pytest.mark.parametrize(
    ("annotation", "value", "says"),
    [
        ("strategy", "rainbow", "canary or blue-green"),
        ("steps", "10,x", "whole percentages"),
        ("steps", "50,10", "strictly increase"),
        ("steps", "0,100", "1-99"),
        ("interval", "soon", "duration"),
        ("interval", "0s", "greater than or equal to 1"),
        ("failure-limit", "-1", "0 to 100"),
        ("paused", "maybe", "true or false"),
        ("analysis", "metrics: [{name: nope, max: 1}]", "not a builtin"),
        ("analysis", "metrics: [{name: success-rate}]", "nothing to check"),
        ("analysis", "[1, 2", "not valid YAML"),
        ("analysis", "on-limit: explode", "halt"),
        ("stpes", "10", "unknown annotation"),
    ],
)
def test_bad_annotations_name_the_field_and_what_it_accepts(
    annotation: str, value: str, says: str
) -> None:
    with pytest.raises(SpecError) as caught:
        parse("web", {"canary.io/strategy": "canary", f"canary.io/{annotation}": value})
    assert caught.value.field == f"canary.io/{annotation}"
    assert says in str(caught.value)


annotation_names = st.sampled_from([*ACCEPTS, "status", "action", "bogus"])
values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "10,25,50",
            "30s",
            "1m",
            "true",
            "-1",
            "1e309",
            "nan",
            "metrics: []",
            "metrics: [{name: success-rate, min: 99}]",
            "{",
            "[]",
            "null",
            "0",
        ]
    ),
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(annotation_names, values, max_size=6))
def test_any_annotations_give_a_spec_or_a_spec_error_and_nothing_else(
    annotations: dict[str, str],
) -> None:
    full = {"canary.io/strategy": "canary", **{PREFIX + k: v for k, v in annotations.items()}}
    try:
        parse("web", full)
    except SpecError as error:
        assert error.field.startswith(PREFIX)


def test_an_analysis_that_checks_nothing_is_refused() -> None:
    with pytest.raises(SpecError, match="metrics"):
        parse("web", {"canary.io/strategy": "canary", "canary.io/analysis": "metrics: []"})
