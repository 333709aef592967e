"""Wrong verdicts of the statistical judge found by review (each test failed
on the code before its fix, or is marked xfail where the fix is left)."""

from __future__ import annotations

import math

from analysis.judge import judge
from analysis.spec import Direction, Judge
from analysis.verdicts import Verdict

INF = math.inf
# 20 per-interval p99 latencies (ms) of a healthy twin (test_judge.STABLE).
HEALTHY = [
    98.72, 102.56, 98.87, 98.42, 95.35, 98.93, 105.56, 102.12, 105.18, 101.24,
    101.97, 100.93, 91.67, 104.28, 102.53, 102.49, 91.54, 91.28, 95.55, 97.66,
]  # fmt: skip


# -- 1. one stable interval beyond the top bucket hides a canary timing out in 8 --------------


def test_a_canary_timing_out_in_many_intervals_fails_beside_one_stable_timeout() -> None:
    # histogram_quantile reads +Inf in an interval whose p99 falls in the
    # +Inf bucket (requests beyond the largest bound: timeouts). The canary
    # does so in 8 of 20 intervals, the stable in 1 (a slow client, a GC
    # pause). Significant (p=0.012), but both means are +Inf, their shift
    # inf - inf is NaN, read as 0: "mean shift +0.0%", median +2.8%, and the
    # canary passed. Without the stable's one +Inf it fails ("+inf%").
    stable = [*HEALTHY[:19], INF]
    canary = HEALTHY[:12] + [INF] * 8
    judged = judge(canary, stable, Judge(), Direction.HIGHER_IS_WORSE)
    assert judged.p_value is not None and judged.p_value < 0.02
    assert judged.verdict is Verdict.FAIL, judged.detail
    # The same on a lower-is-worse metric whose worst value is -Inf.
    flipped = judge([-v for v in canary], [-v for v in stable], Judge(), Direction.LOWER_IS_WORSE)
    assert flipped.verdict is Verdict.FAIL, flipped.detail


def test_as_many_timeouts_as_the_stable_is_no_worse() -> None:
    # The control: the same share of +Inf intervals in both twins, the rest
    # alike, is no shift (the test finds nothing either).
    stable = HEALTHY[:17] + [INF] * 3
    canary = HEALTHY[3:] + [INF] * 3
    assert judge(canary, stable, Judge(), Direction.HIGHER_IS_WORSE).verdict is Verdict.PASS
    assert judge([INF] * 10, [INF] * 10, Judge(), Direction.HIGHER_IS_WORSE).verdict is (
        Verdict.PASS
    )
