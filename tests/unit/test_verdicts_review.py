"""An adversarial review of the verdicts: inputs on which a good release
failed, or a bad one passed, without it being the release's doing."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from analysis.judge import judge
from analysis.run import JUDGED, StepResult, analyze
from analysis.spec import Direction, Judge, MetricSpec
from analysis.verdicts import Measurement, Verdict, assess, combine
from canary.model import Checked
from canary.schedule import analysis_due
from canary.spec import RolloutSpec
from tests.unit.test_analysis_bad_day import _prometheus, _vector, analysis, ctx
from tests.unit.test_decide import release
from tests.unit.world import World, spec


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


def _judged(metric: str, threshold: Verdict, judged: Verdict) -> StepResult:
    """A scheduled check of one metric with a threshold and a statistical
    judge: two measurements under the metric's one name (run._measure_metric)."""
    checks = (
        Measurement(metric, "green", "q", 0.0, 1.0, 120.0, "<= 400", threshold, 1.0),
        Measurement(
            metric,
            "green",
            "q",
            0.0,
            1.0,
            300.0,
            f"{JUDGED} 98%",
            judged,
            1.0,
            stable_value=100.0,
            detail="Mann-Whitney p=0.001, median shift +200%",
        ),
    )
    verdict = combine(m.verdict for m in checks)
    return StepResult(verdict, checks, f"{metric}: {verdict}")


def _run_judged(the_spec: RolloutSpec, seconds: float) -> list[str]:
    """The shell for `seconds`: scheduled checks whose judge fails (the
    canary's latency three times the stable's), fast looks that pass (the
    judge never runs fast; the threshold holds)."""
    world = World().adopted(the_spec)
    release(world)
    world.settle(the_spec)
    assert world.state.step_ready and world.state.canary == "green"
    end = world.now + seconds
    while world.state.canary is not None and world.now < end:
        due = analysis_due(the_spec, world.state, world.now, world.scrape, world.phase)
        checked = None
        if due is not None:
            verdict = Verdict.PASS if due.kind == "fast" else Verdict.FAIL
            result = _judged("latency-p99-ms", Verdict.PASS, verdict)
            if due.kind == "fast":
                result = StepResult(Verdict.PASS, result.measurements[:1], "passed")
            checked = Checked(due.kind, result, due.end)
        world.step(the_spec, checked)
        world.now += world.scrape / 2
    return world.reasons()


JUDGE = "{confidence: 0.98, effect-size: 0.1}"


def test_a_judge_failure_alone_rolls_a_release_back() -> None:
    # The control: a metric with a judge and no threshold.
    alone = spec(analysis=f"metrics: [{{name: latency-p99-ms, judge: {JUDGE}}}]")
    reasons = _run_judged(alone, 300)
    assert reasons.count("AnalysisFailed") == 2 and "RolledBack" in reasons, reasons


def test_a_judge_failure_beside_a_fast_threshold_of_the_same_metric_counts() -> None:
    # One metric with `max:` and `judge:`: its threshold is checked fast,
    # its judge only by scheduled checks. A judge failure was taken for one
    # the fast looks could confirm (judging._confirmable goes by the metric's
    # name), and the next look, which runs the threshold alone, "cleared"
    # it: "the failure did not last; checking a full interval again", check
    # after check. The release, three times slower than the stable, served
    # at its step for good: never rolled back, no failure ever counted.
    both = spec(analysis=f"metrics: [{{name: latency-p99-ms, max: 400, judge: {JUDGE}}}]")
    reasons = _run_judged(both, 300)
    assert reasons.count("AnalysisFailed") == 2 and "RolledBack" in reasons, reasons


def test_a_judge_fails_a_canary_worse_in_almost_half_its_intervals() -> None:
    # Half its requests failed in 14 of 30 intervals (23 % overall) against a
    # stable failing none: the canary's median is the stable's (100 %), so
    # judged by the median's shift alone it passed at p=1.2e-05 as
    # "median shift +0.0%". The mean's shift (Kayenta's measure) sees it.
    canary = [100.0] * 16 + [50.0] * 14
    stable = [100.0] * 30
    judged = judge(canary, stable, Judge(), Direction.LOWER_IS_WORSE)
    assert judged.p_value is not None and judged.p_value < 1e-4
    assert judged.verdict is Verdict.FAIL, judged.detail
    assert "median shift +0.0%, mean shift +23.3%" in judged.detail


def test_a_judge_fails_a_canary_slower_in_every_interval_beside_a_stable_outlier() -> None:
    # The other way round: a stable interval of 100 s (a GC storm, a stuck
    # node) lifts the stable's mean above a canary twice as slow in every
    # interval. By the mean alone that canary is "better"; its median is
    # twice the stable's.
    canary = [200.0 + i for i in range(30)]
    stable = [100.0 + i for i in range(29)] + [100_000.0]
    judged = judge(canary, stable, Judge(), Direction.HIGHER_IS_WORSE)
    assert judged.p_value is not None and judged.p_value < 1e-4
    assert judged.verdict is Verdict.FAIL, judged.detail


def test_a_judge_passes_a_canary_like_the_stable_with_one_bad_interval() -> None:
    # One interval in 30 at 50 % moves the mean by 1.7 %, and the test finds
    # nothing significant: no rollback on one bad scrape.
    canary = [100.0] * 29 + [50.0]
    stable = [100.0] * 30
    judged = judge(canary, stable, Judge(), Direction.LOWER_IS_WORSE)
    assert judged.verdict is Verdict.PASS, judged.detail


@pytest.mark.parametrize("op", ["=", "!=", " = "])
def test_the_pods_regex_matched_as_a_plain_string_is_refused(op: str) -> None:
    # {{ pods }} renders a regex (one ReplicaSet's pods). Matched with `=`,
    # it names a pod called `web-green-7d9f8-[a-z0-9]+`: no series, and an
    # error count with the usual `or vector(0)` read 0 however the canary
    # failed, and passed.
    query = f'sum(increase(errors_total{{pod{op}"{{{{ pods }}}}"}}[{{{{ window }}}}])) or vector(0)'
    with pytest.raises(ValidationError, match="=~"):
        MetricSpec(name="errors", query=query, max=5)


@pytest.mark.parametrize(
    "query",
    [
        'sum(increase(errors_total{pod=~"{{ pods }}"}[{{ window }}]))',
        'sum(increase(errors_total{pod!~"{{ pods }}"}[{{ window }}]))',
        'sum(increase(errors_total{pod=~ "{{pods}}"}[{{ window }}]))',
        'sum(increase(errors_total{twin="{{ twin }}"}[{{ window }}]))',
    ],
)
def test_the_pods_regex_matched_as_a_regex_is_taken(query: str) -> None:
    assert MetricSpec(name="errors", query=query, max=5).query == query


@pytest.mark.parametrize("text", ["0", "sum(rate(errors_total[1m]))"])
async def test_a_string_result_is_a_query_to_fix_never_a_value(text: str) -> None:
    # A custom query quoted once too often in its YAML (`query: '"..."'`,
    # a folded block keeping the quotes) is a PromQL string literal, and
    # Prometheus answers resultType "string": [time, "<the text>"], shaped as
    # a scalar is. Read as one, "0" passed `max: 1` on a canary nobody had
    # measured; any other text was "unexpected result shape", an outage to
    # wait out, with on-limit: rollback a good release rolled back.
    def answer(url: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if params["query"].startswith("sum(increase("):
            return 200, {
                "status": "success",
                "data": {"resultType": "vector", "result": _vector("120")},
            }
        data = {"resultType": "string", "result": [1030.0, text]}
        return 200, {"status": "success", "data": data}

    prom, _ = _prometheus(answer)
    try:
        the_spec = analysis({"metrics": [{"name": "errors", "query": f'"{text}"', "max": 1}]})
        checked = await analyze(the_spec, ctx(), prom)
    finally:
        prom.close()
    assert checked.verdict is Verdict.ERROR and checked.invalid, checked
    assert "string" in checked.reason
