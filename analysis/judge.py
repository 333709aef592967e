"""The statistical judge: is the canary's metric distribution worse than the
stable's? Kayenta's approach, kept small: a one-sided Mann-Whitney U test over
per-interval samples of both twins in the same window, plus an effect-size
tolerance so a real but negligible shift does not fail a release.

Pure: samples in, verdict out. scipy does the test itself."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from analysis.spec import Direction, Judge
from analysis.verdicts import Verdict

# Fewer samples than this per twin cannot reach any useful confidence.
MIN_SAMPLES = 3


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    p_value: float | None
    effect: float | None  # the worse relative shift, median's or mean's; worse-positive
    canary_median: float | None
    stable_median: float | None
    detail: str


def _no_data(detail: str) -> Judgement:
    return Judgement(Verdict.NO_DATA, None, None, None, None, detail)


def load_judge() -> None:
    """Import scipy's test (slow the first time); call it off the event loop."""
    import scipy.stats  # noqa: F401


def judge(
    canary: Sequence[float], stable: Sequence[float], spec: Judge, direction: Direction
) -> Judgement:
    # NaN is no data (0/0: no requests), and so is the infinity on the good
    # side (x/0, see verdicts.good_infinity); the other one is data, the
    # worst there is (a latency quantile with every request timing out).
    good = math.inf if direction is Direction.LOWER_IS_WORSE else -math.inf
    canary = [v for v in canary if not math.isnan(v) and v != good]
    stable = [v for v in stable if not math.isnan(v) and v != good]
    if len(canary) < MIN_SAMPLES or len(stable) < MIN_SAMPLES:
        return _no_data(
            f"{len(canary)} canary and {len(stable)} stable samples; need {MIN_SAMPLES} of each"
        )
    # Imported here: scipy costs ~60 MiB of RSS, paid only by controllers
    # whose Services use the statistical judge.
    from scipy.stats import mannwhitneyu

    # The smallest p-value the test can give these samples, that of complete
    # separation (3 and 3 samples give 0.05 against 0.02 at the default
    # 0.98): at or above 1 - confidence no canary could fail, however much
    # worse. Not enough samples to judge is no data, never a pass. Asked of
    # the test itself, not taken as the exact test's 1 / C(n+m, n): above 8
    # samples a twin scipy's test is the normal approximation, whose
    # smallest p-value at 9 and 9 is 2.1e-04, not 2.1e-05, and at
    # `confidence: 0.9999` a canary 50 times slower passed (found by review).
    smallest = float(mannwhitneyu(*_separated(canary, stable), alternative="greater").pvalue)
    if smallest >= 1 - spec.confidence:
        return _no_data(
            f"{len(canary)} canary and {len(stable)} stable samples cannot reach the "
            f"confidence {spec.confidence:g} (the test's smallest p-value is {smallest:.3g}); "
            "waiting for more"
        )
    worse_is_greater = direction is Direction.HIGHER_IS_WORSE
    # H1: the canary's values tend to be worse (greater, or smaller) than the stable's.
    result = mannwhitneyu(canary, stable, alternative="greater" if worse_is_greater else "less")
    p_value = float(result.pvalue)
    canary_median, stable_median = statistics.median(canary), statistics.median(stable)
    # The worse of two shifts. The median's alone passed a canary failing in
    # 14 of 30 intervals against a stable failing in none (its median is the
    # stable's: "+0.0%" at p=1.2e-05); the mean's alone (Kayenta's default
    # measure) passes a canary twice as slow in every interval when the
    # stable had one outlier interval that lifts its mean.
    by_median = _shift(canary_median, stable_median, worse_is_greater)
    by_mean = _mean_shift(canary, stable, worse_is_greater)
    effect = max(by_median, by_mean)
    significant = p_value < 1 - spec.confidence
    verdict = Verdict.FAIL if significant and effect > spec.effect_size else Verdict.PASS
    detail = (
        f"Mann-Whitney p={p_value:.3g} (fails below {1 - spec.confidence:.3g}), "
        f"median shift {by_median:+.1%}, mean shift {by_mean:+.1%} "
        f"(tolerated {spec.effect_size:.0%}), "
        f"n={len(canary)}/{len(stable)}"
    )
    return Judgement(verdict, p_value, effect, canary_median, stable_median, detail)


def _separated(canary: Sequence[float], stable: Sequence[float]) -> tuple[list[float], list[float]]:
    """Samples of the same sizes, and the same ties within each twin, with
    every canary sample above every stable one: complete separation."""

    def ranks(values: Sequence[float]) -> list[float]:
        order = {v: float(i) for i, v in enumerate(sorted(set(values)))}
        return [order[v] for v in values]

    above = float(len(set(stable)))
    return [above + r for r in ranks(canary)], ranks(stable)


def _mean_shift(canary: Sequence[float], stable: Sequence[float], worse_is_greater: bool) -> float:
    """The means' shift, where a sample may be the bad infinity (a latency
    quantile beyond the top bucket; the good one is dropped as no data).
    Both means infinite, their shift inf - inf was NaN, read as 0: a canary
    timing out in 8 intervals of 20 passed beside a stable that did in one
    (found by review). An infinity is a value beyond any bound: the means'
    relative shift as it grows without bound is the ratio of the two
    twins' shares of such samples, less one (+inf with none in the stable,
    0 with as many). And the worse of that and the shift of the other
    samples' means: by the shares alone, one timeout in each twin hid a
    canary twice as slow in 13 intervals of 30, which the mean is for."""
    bad = math.inf if worse_is_greater else -math.inf
    worst_canary = sum(v == bad for v in canary) / len(canary)
    worst_stable = sum(v == bad for v in stable) / len(stable)
    if not worst_stable:
        return _shift(statistics.fmean(canary), statistics.fmean(stable), worse_is_greater)
    by_share = worst_canary / worst_stable - 1
    finite_canary = [v for v in canary if v != bad]
    finite_stable = [v for v in stable if v != bad]
    if not finite_canary or not finite_stable:
        return by_share
    others = _shift(
        statistics.fmean(finite_canary), statistics.fmean(finite_stable), worse_is_greater
    )
    return max(by_share, others)


def _shift(canary: float, stable: float, worse_is_greater: bool) -> float:
    """How much worse the canary's value is, as a fraction of the stable's."""
    shift = canary - stable if worse_is_greater else stable - canary
    if math.isnan(shift):
        shift = 0.0  # both infinite: the canary is no worse
    if stable and math.isfinite(stable):
        return shift / abs(stable)
    return math.inf if shift > 0 else 0.0
