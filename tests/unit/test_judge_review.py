"""Wrong verdicts of the statistical judge found by review (each test failed
on the code before its fix, or is marked xfail where the fix is left)."""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from analysis import run
from analysis.judge import judge
from analysis.provider import QueryError
from analysis.run import StepContext, StepResult, analyze
from analysis.spec import AnalysisSpec, Direction, Judge, MetricSpec
from analysis.verdicts import Measurement, Verdict
from tests.unit.test_analysis_bad_day import (
    CANARY,
    CANARY_RS,
    STABLE,
    FakePrometheus,
    _prometheus,
    _vector,
    requests,
)
from tests.unit.test_judge import NOISE

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


def test_one_timeout_in_each_twin_does_not_hide_a_canary_slower_in_13_intervals() -> None:
    # The mean's own case (judged by the median alone it passed: 13 of 30
    # intervals twice as slow leave the median where it was), with one +Inf
    # interval in each twin. Both means +Inf: "mean shift +0.0%" before, and
    # by the twins' shares of +Inf (equal) still 0: the canary passed at
    # p=1.1e-04. Without the two timeouts it fails at "mean shift +43.3%".
    canary = [100.0] * 16 + [200.0] * 13 + [INF]
    stable = [100.0] * 29 + [INF]
    judged = judge(canary, stable, Judge(), Direction.HIGHER_IS_WORSE)
    assert judged.p_value is not None and judged.p_value < 1e-3
    assert judged.verdict is Verdict.FAIL, judged.detail


# -- a provider whose range queries answer per twin -------------------------------------------


@dataclass
class Twins:
    """Instant queries read `instant` (the request guard: plenty of
    requests; a threshold: within it); range queries the twin's samples
    (by its pods' ReplicaSet in the query), or raise `fail` for that twin."""

    canary: list[float]
    stable: list[float]
    instant: float = 150.0
    fail: dict[str, QueryError] = field(default_factory=dict)
    ranges: list[tuple[str, float, float, float]] = field(default_factory=list)
    clock_offset: float = 0.0

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        return self.instant

    async def query_range(
        self, promql: str, start: float, end: float, step_s: float, timeout_s: float
    ) -> list[float]:
        self.ranges.append((promql, start, end, step_s))
        twin = "canary" if CANARY_RS in promql else "stable"
        if twin in self.fail:
            raise self.fail[twin]
        return list(self.canary if twin == "canary" else self.stable)

    async def query_range_series(
        self, promql: str, start: float, end: float, step_s: float, timeout_s: float
    ) -> list[list[float]]:
        return [await self.query_range(promql, start, end, step_s, timeout_s)]


def judged(result: StepResult, name: str) -> Measurement:
    return next(m for m in result.measurements if m.metric == name and run.judged(m))


# -- 2. a builtin latency with a lower bound is judged as if faster were worse ---------------


async def test_a_latency_judge_beside_a_lower_bound_fails_a_slower_canary() -> None:
    # `min:` on a builtin latency (a floor: a canary answering in under 1 ms
    # serves cached errors) made the metric lower-is-worse ("a lower bound
    # means lower is worse"), and the judge asked whether the canary was
    # *faster*: a canary three times slower in every interval passed
    # (p=1.0), and its +Inf intervals (timeouts) were dropped as no data.
    the_spec = AnalysisSpec.model_validate(
        {"metrics": [{"name": "latency-p99-ms", "min": 1, "judge": {}}]}
    )
    prom = Twins(canary=[300.0 + i for i in range(10)], stable=[100.0 + i for i in range(10)])
    result = await analyze(the_spec, StepContext(CANARY, STABLE, 1000.0, 1300.0, 30.0), prom)
    assert judged(result, "latency-p99-ms").verdict is Verdict.FAIL, result.reason
    assert result.verdict is Verdict.FAIL
    for builtin in ("error-rate", "latency-p95-ms"):
        metric = MetricSpec(name=builtin, min=0, judge=Judge())
        assert metric.worse_when is Direction.HIGHER_IS_WORSE
    # Said explicitly, the team's direction stands; a custom query with only
    # a lower bound is still lower-is-worse, as the README says.
    assert MetricSpec(
        name="latency-p99-ms", min=1, direction=Direction.LOWER_IS_WORSE
    ).worse_when is (Direction.LOWER_IS_WORSE)
    assert MetricSpec(name="ok", query="x", min=1).worse_when is Direction.LOWER_IS_WORSE


# -- 3. a judge sampling at a fraction of a second is a query Prometheus refuses --------------

# Prometheus's API reads a range query's `step` as a float of seconds or as a
# PromQL duration (web/api/v1/api.go parseDuration: strconv.ParseFloat, then
# model.ParseDuration, whose units take whole numbers only); anything else
# is HTTP 400 bad_data "cannot parse ... to a valid duration".
_PROMQL_DURATION = re.compile(r"(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?")


def prometheus_reads_step(step: str) -> bool:
    try:
        float(step)
    except ValueError:
        return bool(step) and _PROMQL_DURATION.fullmatch(step) is not None
    return True


@pytest.mark.parametrize(("every", "scrape"), [("2500ms", 1.0), ("3.5s", 1.0), ("4s", 2.25)])
async def test_a_judge_sampling_at_a_fraction_of_a_second_is_not_an_invalid_query(
    every: str, scrape: float
) -> None:
    # `sample-every: 2500ms` at a 1 s scrape (or a learned interval such as
    # 2.25 s, twice which is the sample step: 4.5 s) went out as `step=2.5s`:
    # Prometheus refuses it, and the judge's query was taken for the spec's
    # fault: InvalidSpec halted a valid analysis, and the judge never ran
    # on a canary three times slower.
    def answer(url: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if url.split("?", maxsplit=1)[0].endswith("query_range"):
            if not prometheus_reads_step(params["step"]):
                error = f'invalid parameter "step": cannot parse "{params["step"]}"'
                return 400, {"status": "error", "errorType": "bad_data", "error": error}
            value = "300" if CANARY_RS in params["query"] else "100"
            values = [[1000.0 + i, value] for i in range(12)]
            return 200, {
                "status": "success",
                "data": {"result": [{"metric": {}, "values": values}]},
            }
        return 200, {"status": "success", "data": {"result": _vector("120")}}

    prom, transport = _prometheus(answer)
    try:
        the_spec = AnalysisSpec.model_validate(
            {"metrics": [{"name": "latency-p99-ms", "judge": {"sample-every": every}}]}
        )
        ctx = StepContext(CANARY, STABLE, 1000.0, 1060.0, 30.0, scrape_s=scrape)
        result = await analyze(the_spec, ctx, prom)
    finally:
        prom.close()
    steps = [p["step"] for p in transport.sent if "step" in p]
    assert steps and all(prometheus_reads_step(s) for s in steps), steps
    measured = judged(result, "latency-p99-ms")
    assert not measured.invalid and measured.verdict is Verdict.FAIL, measured


# -- 4. per-interval ratios of twins at unequal traffic: the judge's test is not fair ---------
# Each sample is a ratio (or a quantile) over the requests one twin served in
# one interval, and at any step but 50 % the twins serve unequal numbers:
# the same release reads differently at 15 requests an interval than at 135
# (Kayenta compares a baseline and a canary of equal size for this reason).
# Latency too: a p99 over 15 requests is about their p94, so at 90 % a
# canary as fast as the stable failed in 31 windows of 100, and at 10 % one
# 1.5 times slower passed in 34 (review's simulation, default buckets).


def _error_rates(rng: random.Random, requests: int, share: float, n: int = 20) -> list[float]:
    """n intervals' error rates (%) of a twin serving `requests` per interval,
    each failing with probability `share`: the builtin error-rate's samples."""
    return [100 * sum(rng.random() < share for _ in range(requests)) / requests for _ in range(n)]


def _wrong(canary: tuple[int, float], stable: tuple[int, float], wrong: Verdict) -> int:
    """In how many of 100 seeded windows the error-rate judge says `wrong`."""
    count = 0
    for seed in range(100):
        rng = random.Random(seed)
        samples = _error_rates(rng, *canary), _error_rates(rng, *stable)
        count += judge(*samples, Judge(), Direction.HIGHER_IS_WORSE).verdict is wrong
    return count


def test_the_judge_is_fair_when_the_twins_serve_alike() -> None:
    # The control: a step at 50 % (75 requests each per interval), the same
    # 1 % errors: failed about as often as its confidence allows.
    assert _wrong((75, 0.01), (75, 0.01), Verdict.FAIL) <= 5


@pytest.mark.xfail(
    strict=True,
    reason="per-interval ratios at unequal volumes; a test on the counts is a design change",
)
def test_a_canary_with_five_times_the_errors_fails_at_a_low_weight() -> None:
    # At 10 % of 150 requests per interval the canary's error rate (15
    # requests, 5 % errors) is 0 in about half its intervals and 7-20 % in
    # the rest; the stable's (135 requests, 1 %) is 0 in a quarter and
    # around 1 % in the rest. Mann-Whitney weighs ranks, not sizes: the
    # canary's zeros rank below most of the stable's values, its few large
    # ones cannot outweigh them, and the canary with five times the stable's
    # errors passes in 80 windows of 100. Summed over the window (300
    # requests, some 15 errors against 3 expected) it is no close call.
    assert _wrong((15, 0.05), (135, 0.01), Verdict.PASS) <= 10


@pytest.mark.xfail(
    strict=True,
    reason="per-interval ratios at unequal volumes; a test on the counts is a design change",
)
def test_a_canary_as_good_as_the_stable_passes_at_a_high_weight() -> None:
    # The other way round, at 90 %: the stable's 15 requests an interval at
    # 1 % read 0 in most intervals, the canary's 135 read about 1 %: its
    # ranks are higher, the stable's median is 0 (an infinite relative
    # shift), and a canary exactly as good as the stable fails (rolled back)
    # in 78 windows of 100.
    assert _wrong((135, 0.01), (15, 0.01), Verdict.FAIL) <= 10


# -- 5. a success-rate judge's effect size is a share of 100 % --------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="the effect of a success rate is measured on the success, not the failures: "
    "a documented rule (README, the judge's row) for the lead to change",
)
def test_a_success_rate_judge_fails_a_canary_failing_nine_percent() -> None:
    # `{name: success-rate, judge: {}}`: the canary fails 9 % of its
    # requests in every interval, the stable none. Significant at p=6e-13,
    # but its shift is 9 % of the stable's 100 %, under the default
    # effect-size of 10 %: it passes and is promoted. On `error-rate` the
    # same canary fails (9 against 0: an infinite shift). The tolerance was
    # meant for a negligible shift; 9 % of requests failing is not one.
    canary = [91.0 + 0.01 * i for i in range(30)]
    stable = [100.0] * 30
    judged = judge(canary, stable, Judge(), Direction.LOWER_IS_WORSE)
    assert judged.p_value is not None and judged.p_value < 1e-6
    errors = judge([100 - v for v in canary], [0.0] * 30, Judge(), Direction.HIGHER_IS_WORSE)
    assert errors.verdict is Verdict.FAIL
    assert judged.verdict is Verdict.FAIL, judged.detail


# -- 6. a confidence the test cannot reach at these sizes, though the gate said it could ------


def test_a_canary_fifty_times_slower_never_passes_at_a_high_confidence() -> None:
    # `confidence: 0.9999`, 9 intervals each, the canary 50 times slower in
    # every one. The gate took the smallest p-value to be the exact test's,
    # 1 / C(18, 9) = 2.1e-05, below 1e-4: judgeable. But above 8 samples a
    # twin scipy's test is the normal approximation, whose smallest p-value
    # there is 2.1e-04: no canary could fail, and this one passed.
    settings = Judge(confidence=0.9999)
    slow = [5000.0 + i for i in range(9)]
    fast = [100.0 + i for i in range(9)]
    judged = judge(slow, fast, settings, Direction.HIGHER_IS_WORSE)
    assert judged.verdict is Verdict.NO_DATA, judged.detail
    assert "cannot reach the confidence 0.9999" in judged.detail
    # One interval more each, and it can: it fails.
    more = judge([*slow, 5009.0], [*fast, 109.0], settings, Direction.HIGHER_IS_WORSE)
    assert more.verdict is Verdict.FAIL, more.detail


# -- 7. at a 30 s scrape and a 30 s interval the judge can never judge before no-data-limit ----


@pytest.mark.xfail(
    strict=True,
    reason="what should give (the sample, the limit, or admission) is for the lead to decide",
)
async def test_a_judge_at_a_slow_scrape_judges_before_no_data_limit_halts() -> None:
    # Defaults but for Prometheus's scrape interval (30 s, kube-prometheus'
    # default; Prometheus's own is 1 m): a sample is two scrapes, 60 s. The
    # step's checks at 30, 60, 90 and 120 s hold 0, 1, 1 and 2 samples a
    # twin, each no data; the fourth is past `no-data-limit: 3` and the
    # rollout halts. No release with this judge is ever judged, however
    # good or bad (a judge reached only at 4 samples a twin, 240 s).
    the_spec = AnalysisSpec.model_validate({"metrics": [{"name": "latency-p99-ms", "judge": {}}]})
    prom = FakePrometheus(
        requests(CANARY_RS, "code", 100, 0), range_values={"green": 5000.0, "blue": 100.0}
    )
    verdicts = []
    for seconds in (30.0, 60.0, 90.0, 120.0):  # the last one past no-data-limit 3
        ctx = StepContext(CANARY, STABLE, 1000.0, 1000.0 + seconds, 30.0, scrape_s=30.0)
        verdicts.append((await analyze(the_spec, ctx, prom)).verdict)
    assert Verdict.FAIL in verdicts, verdicts


# -- 8. a tolerated shift and one cold-start interval: two passes make a failure --------------


@pytest.mark.xfail(
    strict=True,
    reason="the mean's shift counts one interval in full; a trimmed mean (or another "
    "measure) is a change of the rule just made, for the lead to decide",
)
def test_a_canary_slower_by_a_tolerated_shift_with_one_cold_start_interval_passes() -> None:
    # The canary is 4 % slower in every interval (significant, p=0.004, and
    # tolerated: it passes), and its first interval, its JIT and caches
    # cold, read 1000 ms (one bad interval in 20 alone is not significant
    # either: p=0.23, it passes). Together they fail: the 4 % shift makes
    # the test significant, the one interval makes the mean's shift +50 %,
    # and a release rolls back for a warm-up that the stable, long warm,
    # never shows. Median shift +4.9 %, as tolerated as before.
    slower = [round(104 + n, 2) for n in NOISE]
    settings, worse = Judge(), Direction.HIGHER_IS_WORSE
    assert judge(slower, HEALTHY, settings, worse).verdict is Verdict.PASS
    warm_up = [round(100 + n, 2) for n in NOISE]
    assert judge([1000.0, *warm_up[1:]], HEALTHY, settings, worse).verdict is Verdict.PASS
    judged = judge([1000.0, *slower[1:]], HEALTHY, settings, worse)
    assert judged.verdict is Verdict.PASS, judged.detail
