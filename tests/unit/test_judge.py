"""The statistical judge on synthetic good, marginal and bad series."""

from __future__ import annotations

import random

import pytest
from scipy.stats import mannwhitneyu

from analysis.judge import judge
from analysis.spec import Direction, Judge
from analysis.verdicts import Verdict

rng = random.Random(7)
STABLE = [rng.gauss(100, 5) for _ in range(20)]
SETTINGS = Judge(confidence=0.98, effect_size=0.1)


def series(mean: float, spread: float = 5, n: int = 20) -> list[float]:
    return [rng.gauss(mean, spread) for _ in range(n)]


def test_a_canary_like_the_stable_passes() -> None:
    assert judge(series(100), STABLE, SETTINGS, Direction.HIGHER_IS_WORSE).verdict is Verdict.PASS


def test_a_clearly_worse_canary_fails_with_its_p_value_and_shift() -> None:
    result = judge(series(150), STABLE, SETTINGS, Direction.HIGHER_IS_WORSE)
    assert result.verdict is Verdict.FAIL
    assert result.p_value is not None and result.p_value < 0.02
    assert result.effect is not None and result.effect > 0.4
    assert "p=" in result.detail


def test_a_significant_but_small_shift_is_tolerated() -> None:
    result = judge(
        series(105, spread=1), series(100, spread=1), SETTINGS, Direction.HIGHER_IS_WORSE
    )
    assert result.p_value is not None and result.p_value < 0.02
    assert result.verdict is Verdict.PASS  # 5% worse, 10% tolerated


def test_direction_decides_which_way_is_worse() -> None:
    lower = series(60)
    assert judge(lower, STABLE, SETTINGS, Direction.LOWER_IS_WORSE).verdict is Verdict.FAIL
    assert judge(lower, STABLE, SETTINGS, Direction.HIGHER_IS_WORSE).verdict is Verdict.PASS


def test_too_few_samples_is_no_data_never_a_pass() -> None:
    result = judge([1.0, 2.0], STABLE, SETTINGS, Direction.HIGHER_IS_WORSE)
    assert result.verdict is Verdict.NO_DATA
    nan = float("nan")
    assert judge([nan] * 10, STABLE, SETTINGS, Direction.HIGHER_IS_WORSE).verdict is Verdict.NO_DATA


@pytest.mark.parametrize("shift", [0, 3, 10, 30])
def test_the_p_value_is_scipys_one_sided_test(shift: float) -> None:
    canary = series(100 + shift)
    result = judge(canary, STABLE, SETTINGS, Direction.HIGHER_IS_WORSE)
    expected = mannwhitneyu(canary, STABLE, alternative="greater").pvalue
    assert result.p_value == pytest.approx(float(expected))
