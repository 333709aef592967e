"""The statistical judge on synthetic good, marginal and bad series."""

from __future__ import annotations

import math
import random

import pytest

from analysis.judge import judge
from analysis.spec import Direction, Judge
from analysis.verdicts import Verdict

# Fixed samples, so the expected p-values below stay true on any Python:
# STABLE is [round(random.Random(7).gauss(100, 5), 2) for 20 draws] and
# NOISE is [round(random.Random(11).gauss(0, 5), 2) for 20 draws], written out.
STABLE = [
    98.72, 102.56, 98.87, 98.42, 95.35, 98.93, 105.56, 102.12, 105.18, 101.24,
    101.97, 100.93, 91.67, 104.28, 102.53, 102.49, 91.54, 91.28, 95.55, 97.66,
]  # fmt: skip
NOISE = [
    -6.12, 1.89, 4.97, -2.57, -6.64, -0.33, 2.39, 5.49, -6.08, -6.46,
    3.53, 2.37, 7.67, 4.91, -0.51, -1.37, 12.85, -1.44, -3.92, -5.69,
]  # fmt: skip
SETTINGS = Judge(confidence=0.98, effect_size=0.1)


@pytest.fixture
def rng() -> random.Random:
    """A generator of its own per test: a test's samples never depend on
    which other tests ran before it."""
    return random.Random(7)


def series(rng: random.Random, mean: float, spread: float = 5, n: int = 20) -> list[float]:
    return [rng.gauss(mean, spread) for _ in range(n)]


def test_a_canary_like_the_stable_passes(rng: random.Random) -> None:
    result = judge(series(rng, 100), STABLE, SETTINGS, Direction.HIGHER_IS_WORSE)
    assert result.verdict is Verdict.PASS


def test_a_clearly_worse_canary_fails_with_its_p_value_and_shift(rng: random.Random) -> None:
    result = judge(series(rng, 150), STABLE, SETTINGS, Direction.HIGHER_IS_WORSE)
    assert result.verdict is Verdict.FAIL
    assert result.p_value is not None and result.p_value < 0.02
    assert result.effect is not None and result.effect > 0.4
    assert "p=" in result.detail


def test_a_significant_but_small_shift_is_tolerated(rng: random.Random) -> None:
    result = judge(
        series(rng, 105, spread=1), series(rng, 100, spread=1), SETTINGS, Direction.HIGHER_IS_WORSE
    )
    assert result.p_value is not None and result.p_value < 0.02
    assert result.verdict is Verdict.PASS  # 5% worse, 10% tolerated


def test_direction_decides_which_way_is_worse(rng: random.Random) -> None:
    lower = series(rng, 60)
    assert judge(lower, STABLE, SETTINGS, Direction.LOWER_IS_WORSE).verdict is Verdict.FAIL
    assert judge(lower, STABLE, SETTINGS, Direction.HIGHER_IS_WORSE).verdict is Verdict.PASS


def test_too_few_samples_is_no_data_never_a_pass() -> None:
    result = judge([1.0, 2.0], STABLE, SETTINGS, Direction.HIGHER_IS_WORSE)
    assert result.verdict is Verdict.NO_DATA
    nan = float("nan")
    assert judge([nan] * 10, STABLE, SETTINGS, Direction.HIGHER_IS_WORSE).verdict is Verdict.NO_DATA


# Computed once with scipy 1.17.1 (Python 3.11):
#   canary = [round(100 + shift + n, 2) for n in NOISE]
#   mannwhitneyu(canary, STABLE, alternative="greater" or "less").pvalue
# (20 samples each: scipy's normal approximation with continuity correction,
# and its tie correction for the one value shared at shift 3). Written out,
# not recomputed: a change in the judge's test or in scipy's shows up here.
@pytest.mark.parametrize(
    ("shift", "direction", "expected"),
    [
        (0, Direction.HIGHER_IS_WORSE, 0.38819525277525657),
        (3, Direction.HIGHER_IS_WORSE, 0.019895923809076274),
        (10, Direction.HIGHER_IS_WORSE, 2.6134426613428786e-07),
        (30, Direction.HIGHER_IS_WORSE, 3.397807564086679e-08),
        (-10, Direction.LOWER_IS_WORSE, 1.4624324663684467e-05),
    ],
)
def test_the_p_value_is_the_one_sided_mann_whitney_test(
    shift: float, direction: Direction, expected: float
) -> None:
    canary = [round(100 + shift + n, 2) for n in NOISE]
    result = judge(canary, STABLE, SETTINGS, direction)
    assert result.p_value == pytest.approx(expected, rel=1e-9)


def test_latency_beyond_the_top_histogram_bucket_is_data_not_missing() -> None:
    # histogram_quantile gives +Inf when the quantile falls in the +Inf bucket
    # (requests timing out). Before, the judge dropped it like NaN: a canary
    # timing out 6 intervals in 10 passed, and one always timing out was no-data.
    inf = float("inf")
    stable = [100.0, 101.0, 99.0, 100.5, 98.5, 100.2, 99.7, 101.3, 99.1, 100.8]
    worse = Direction.HIGHER_IS_WORSE
    assert judge([inf] * 6 + [100.0, 101.0, 99.0, 100.5], stable, SETTINGS, worse).verdict is (
        Verdict.FAIL
    )
    assert judge([inf] * 10, stable, SETTINGS, worse).verdict is Verdict.FAIL
    assert judge([inf] * 10, [inf] * 10, SETTINGS, worse).verdict is Verdict.PASS  # no worse
    assert judge([float("nan")] * 10, stable, SETTINGS, worse).verdict is Verdict.NO_DATA


def test_samples_infinite_on_the_good_side_are_no_data() -> None:
    """A lower-is-worse ratio reading +Inf (x/0: nothing failed *yet*, no
    traffic in the sample) is no reading; before, every such sample counted
    as the best value there is and the canary passed on them."""
    readings = [40.0, 41.0, 39.0]  # the canary's real readings: far worse than ~100
    result = judge([math.inf] * 17 + readings, STABLE, SETTINGS, Direction.LOWER_IS_WORSE)
    assert result.verdict is Verdict.FAIL and result.canary_median == 40.0
    only = judge([math.inf] * 20, STABLE, SETTINGS, Direction.LOWER_IS_WORSE)
    assert only.verdict is Verdict.NO_DATA
    # On the bad side an infinity is still the worst value: a failure.
    slow = [math.inf] * 20
    assert judge(slow, STABLE, SETTINGS, Direction.HIGHER_IS_WORSE).verdict is Verdict.FAIL
