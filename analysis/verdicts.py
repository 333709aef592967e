"""Verdicts: pure judgements of measured values against thresholds.

No-data is never a pass: an empty result, NaN (0/0 when nothing was served)
or a missing stable baseline for a relative check all give NO_DATA, and the
step waits or halts; it never advances on them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from analysis.spec import Direction, MetricSpec


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NO_DATA = "no-data"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Measurement:
    """One query as sent and what came of it: the decision record's unit."""

    metric: str
    twin: str
    query: str
    start: float  # window start, epoch seconds
    end: float  # window end (query time), epoch seconds
    value: float | None
    threshold: str
    verdict: Verdict
    duration_ms: float
    stable_value: float | None = None
    error: str = ""
    invalid: bool = False  # the backend rejected the query text itself
    baseline: bool = False  # the stable twin's value, measured for comparison only
    detail: str = ""  # e.g. the statistical judge's p-value and effect size


def _present(value: float | None) -> bool:
    # +Inf is data (histogram_quantile gives it when every request is slow); NaN is not.
    return value is not None and not math.isnan(value)


def thresholds(metric: MetricSpec) -> str:
    parts = []
    if metric.min is not None:
        parts.append(f">= {metric.min:g}")
    if metric.max is not None:
        parts.append(f"<= {metric.max:g}")
    relative = metric.relative
    if relative is not None:
        worse = "above" if metric.worse_when is Direction.HIGHER_IS_WORSE else "below"
        ratio = f"x{relative.max_ratio:g}" if relative.max_ratio is not None else ""
        delta = f"+{relative.max_delta:g}" if relative.max_delta is not None else ""
        if ratio and delta:
            parts.append(f"not {worse} stable {ratio} and {delta}")
        else:
            parts.append(f"not {worse} stable {ratio or delta}")
    return ", ".join(parts)


def good_infinity(metric: MetricSpec) -> float:
    """The infinity on the metric's good side. A value there is no reading of
    the release but a division by zero (`ok / errors` with no errors, a
    per-request figure over no requests): it would pass any bound on that
    side, so it counts as no data. The other infinity is the worst value
    and fails (a latency quantile with every request timing out)."""
    return math.inf if metric.worse_when is Direction.LOWER_IS_WORSE else -math.inf


# How far past a bound a value may read and still be on it: a double's
# rounding, never a request's (one failure in 10^6 is 1e-6 relative).
_ROUNDING = 1e-12


def _beyond(value: float, bound: float, below: bool) -> bool:
    """`value` is past `bound` (below it, or above) by more than rounding.
    The builtin success rate is `100 * ok / total`, evaluated left to right
    in doubles: a canary that failed nothing read 99.99999999999999 at some
    request rates (1/3 a second: (100 * r) / r), and `min: 100` failed it."""
    if math.isclose(value, bound, rel_tol=_ROUNDING, abs_tol=0.0):
        return False
    return value < bound if below else value > bound


def assess(metric: MetricSpec, value: float | None, stable: float | None = None) -> Verdict:
    if not _present(value) or value == good_infinity(metric):
        return Verdict.NO_DATA
    assert value is not None
    if metric.min is not None and _beyond(value, metric.min, below=True):
        return Verdict.FAIL
    if metric.max is not None and _beyond(value, metric.max, below=False):
        return Verdict.FAIL
    relative = metric.relative
    if relative is None:
        return Verdict.PASS
    if not _present(stable) or math.isinf(stable or 0.0):
        # An infinite baseline compares with nothing: any canary would pass
        # a ratio or a delta against it, +Inf against +Inf too (inf - inf).
        return Verdict.NO_DATA
    assert stable is not None
    higher_is_worse = metric.worse_when is Direction.HIGHER_IS_WORSE
    excess = value - stable if higher_is_worse else stable - value
    checks = []
    if relative.max_delta is not None:
        checks.append(excess > relative.max_delta)
    if relative.max_ratio is not None:
        limit = stable * relative.max_ratio if higher_is_worse else stable / relative.max_ratio
        checks.append(value > limit if higher_is_worse else value < limit)
    # With both set, the delta is a noise floor for the ratio: 0.4 errors/s
    # against 0.1 is 4x but may be nothing; fail only when both are exceeded.
    return Verdict.FAIL if checks and all(checks) else Verdict.PASS


def combine(verdicts: Iterable[Verdict]) -> Verdict:
    """One verdict for a step: a definite failure outranks everything, since
    rolling back is the safe answer to it; then errors, then missing data."""
    seen = set(verdicts)
    for verdict in (Verdict.FAIL, Verdict.ERROR, Verdict.NO_DATA):
        if verdict in seen:
            return verdict
    return Verdict.PASS
