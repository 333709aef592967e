"""An adversarial review of the verdicts: inputs on which a good release
failed, or a bad one passed, without it being the release's doing."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from analysis.spec import MetricSpec
from analysis.verdicts import Verdict, assess


def _builtin_success_rate(ok: float, total: float) -> float:
    """The builtin success rate as Prometheus evaluates its query,
    `100 * (<ok> or vector(0)) / <total>`: PromQL's `*` and `/` bind left
    to right, so (100 * ok) / total, in IEEE doubles."""
    return (100 * ok) / total


# Request rates a healthy canary may have (sum(rate(...)) of its pods):
# 20, 10 and 5 requests over a minute, 10 over 370 s. With no 5xx series
# the ok and total sums read the same series in the same order, so they
# are the same double. (Of random rates, 13 % give a value below 100.)
HEALTHY_RATES = [20 / 60, 10 / 60, 5 / 60, 10 / 370]


@pytest.mark.parametrize("rate", HEALTHY_RATES)
def test_a_canary_that_failed_nothing_meets_success_rate_min_100(rate: float) -> None:
    # `min: 100` says "no request may fail". A canary that failed none read
    # 99.99999999999999 at these rates, below 100: a failing check for a
    # perfect canary; a look at every scrape lands on such a rate again and
    # again, and two in a row roll it back.
    value = _builtin_success_rate(rate, rate)
    assert value == pytest.approx(100)
    assert assess(MetricSpec(name="success-rate", min=100), value) is Verdict.PASS


def test_a_bound_met_within_rounding_passes_on_either_side() -> None:
    # The same rounding on an upper bound: a ratio that is the bound exactly
    # in real numbers, a rounding above it in doubles.
    ratio = 0.1 + 0.2  # 0.30000000000000004
    assert assess(MetricSpec(name="q", query="x", max=0.3), ratio) is Verdict.PASS


def test_a_real_shortfall_still_fails_at_the_bound() -> None:
    # The tolerance is rounding's, not a request's: one failure in a
    # million requests is still below min 100.
    one_in_a_million = _builtin_success_rate(999_999, 1_000_000)
    assert assess(MetricSpec(name="success-rate", min=100), one_in_a_million) is Verdict.FAIL
    assert assess(MetricSpec(name="q", query="x", max=0.3), 0.3000001) is Verdict.FAIL


@pytest.mark.parametrize("fraction", [0.99, 0.995, 0.5, 1.0])
def test_a_success_rate_minimum_given_as_a_fraction_is_refused(fraction: float) -> None:
    # The builtin is a percentage (0-100). `min: 0.99`, meant as 99 % (the
    # way Flagger's and many dashboards' ratios are written), was taken as
    # 0.99 %: a canary failing 98 % of its requests passed and was promoted.
    with pytest.raises(ValidationError, match=rf"percentage.*write min: {fraction * 100:g}\b"):
        MetricSpec(name="success-rate", min=fraction)


@pytest.mark.parametrize("minimum", [0.0, 1.5, 50.0, 99.0, 100.0])
def test_a_success_rate_minimum_in_percent_is_taken(minimum: float) -> None:
    assert MetricSpec(name="success-rate", min=minimum).min == minimum
    # A custom query's value is the team's unit: a ratio of 0.99 is theirs.
    assert MetricSpec(name="ok-ratio", query="x", min=0.99).min == 0.99
