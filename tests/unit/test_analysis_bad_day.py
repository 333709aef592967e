"""Wrong verdicts found by review of the analysis path (each test failed on
the code before its fix): a typo in a template, a status label named
otherwise, a partial answer, a baseline error, too few samples to ever
fail, a judge window shorter than a sample, result shapes, a judge window
reaching back, a failure seen as a canary pod crashes.

The fake Prometheus below evaluates only the query shapes the analysis
sends (sum(fn(selector[range])), `or vector(0)`, *, /), with PromQL's rules
for label matchers: a label a series does not have has the value "", and a
regex matcher is anchored. Nothing else is emulated."""

from __future__ import annotations

import json
import math
import re
import time
import urllib.parse
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from requests import Response
from requests.adapters import BaseAdapter

from analysis.judge import judge
from analysis.prometheus import Prometheus, PrometheusConfig, _single_value
from analysis.provider import QueryError
from analysis.run import StepContext, StepResult, _infinite, analyze
from analysis.spec import AnalysisSpec, Direction, Judge, MetricSpec, Relative
from analysis.templates import Target, TemplateError, render, variables
from analysis.verdicts import Measurement, Verdict, assess
from canary.model import Checked, Color, Observed
from canary.schedule import analysis_due
from canary.spec import RolloutSpec
from canary.twins import pods_regex
from tests.unit.world import World, result, spec

NS = "shop"
CANARY_RS = "web-green-5f1c2a9e0b"
STABLE_RS = "web-blue-7c4d1e2f3a"
CANARY = Target(NS, "web", "green", pods_regex(CANARY_RS))
STABLE = Target(NS, "web", "blue", pods_regex(STABLE_RS))

_SUM = re.compile(
    r"sum\((?:rate|increase|increase_prometheus|last_over_time)\((\w+)\{(.*?)\}\[[^\]]+\]\)\)"
)
_NEWEST = re.compile(r"time\(\) - max\(timestamp\((\w+)\{(.*?)\}\)\)")
_GUARDED = re.compile(r"\((.*)\) and on \(\) \((.*) >= (\d+)\)")
_MATCHER = re.compile(r'(\w+)(=~|!~|!=|=)"((?:[^"\\]|\\.)*)"')


@dataclass
class FakePrometheus:
    """Series: (metric name, labels, increase over the window). Ratios of
    rates equal ratios of increases, so one number per series serves both."""

    series: list[tuple[str, dict[str, str], float]] = field(default_factory=list)
    fail_when: str = ""  # a query containing this raises a QueryError (overloaded)
    range_values: dict[str, float] = field(default_factory=dict)  # twin -> value per sample
    queries: list[str] = field(default_factory=list)
    # How old the newest sample of any series is at the query time (None:
    # every series went stale, as after a failed scrape's staleness marker).
    stale_by: float | None = 0.0
    clock_offset: float = 0.0  # it answers in the caller's clock

    def _sum(self, name: str, matchers: str) -> float | None:
        parsed = _MATCHER.findall(matchers)
        values = []
        for metric, labels, value in self.series:
            if metric != name:
                continue
            ok = True
            for label, op, raw in parsed:
                have = labels.get(label, "")
                want = raw.replace('\\"', '"').replace("\\\\", "\\")
                if op == "=":
                    ok &= have == want
                elif op == "!=":
                    ok &= have != want
                elif op == "=~":
                    ok &= re.fullmatch(want, have) is not None
                else:
                    ok &= re.fullmatch(want, have) is None
            if ok:
                values.append(value)
        return sum(values) if values else None

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        self.queries.append(promql)
        if self.fail_when and self.fail_when in promql:
            raise QueryError("Prometheus at http://prom unavailable: 503 Service Unavailable")

        newest = _NEWEST.fullmatch(promql)
        if newest is not None:
            found = self._sum(newest.group(1), newest.group(2)) is not None
            if not found or self.stale_by is None or at is None:
                return None
            return self.stale_by

        def total(m: re.Match[str]) -> str:
            v = self._sum(m.group(1), m.group(2))
            return "EMPTY" if v is None else repr(float(v))

        expr = _SUM.sub(total, promql)
        expr = re.sub(
            r"\((EMPTY|[-0-9.e+]+) or vector\(0\)\)",
            lambda m: "0.0" if m.group(1) == "EMPTY" else m.group(1),
            expr,
        )
        guarded = _GUARDED.fullmatch(expr)
        if guarded is not None:
            # templates.guarded: the metric, where its own guard holds.
            guard = guarded.group(2)
            if "EMPTY" in guard or float(eval(guard, {"__builtins__": {}})) < int(guarded.group(3)):
                return None
            expr = guarded.group(1)
        if "EMPTY" in expr:
            return None
        try:
            value = float(eval(expr, {"__builtins__": {}}))
        except ZeroDivisionError:
            return None  # 0/0: NaN, which the provider reports as None
        return value

    async def query_range(
        self, promql: str, start: float, end: float, step_s: float, timeout_s: float
    ) -> list[float]:
        self.queries.append(promql)
        if end < start:
            # What Prometheus answers (HTTP 400, errorType bad_data), as the
            # real provider translates it.
            raise QueryError(
                "Prometheus rejected the query: end timestamp must not be before start time",
                invalid=True,
            )
        n = math.floor((end - start) / step_s + 1e-9) + 1
        twin = "green" if "green" in promql else "blue"
        base = self.range_values[twin]
        return [base + i * 0.01 for i in range(n)]

    async def query_range_series(
        self, promql: str, start: float, end: float, step_s: float, timeout_s: float
    ) -> list[list[float]]:
        return [await self.query_range(promql, start, end, step_s, timeout_s)]


def requests(rs: str, code_label: str, ok: float, errors: float) -> list[Any]:
    pod = f"{rs}-abcde"
    return [
        ("http_requests_total", {"namespace": NS, "pod": pod, code_label: "200"}, ok),
        ("http_requests_total", {"namespace": NS, "pod": pod, code_label: "500"}, errors),
    ]


def ctx(start: float = 1000.0, now: float = 1030.0, scrape: float = 15.0) -> StepContext:
    return StepContext(CANARY, STABLE, start, now, 30.0, scrape_s=scrape)


def analysis(text: dict[str, Any]) -> AnalysisSpec:
    return AnalysisSpec.model_validate(text)


# -- 1. a template typo makes a custom check pass a failing canary ---------------------------


def test_a_typo_in_a_template_variable_does_not_pass_a_failing_canary() -> None:
    # The README's own recipe for a share, with `{{ Pods }}` mistyped in the
    # numerator. A lower-case unknown name ({{ pod }}) was a TemplateError; an
    # upper-case one (or {{ pods-regex }}, {{ .pods }}) was left in the query
    # as text, matched no pod, and `or vector(0)` turned that into 0 errors:
    # a canary failing half its requests passed.
    query = (
        '100 * (sum(rate(http_requests_total{namespace="{{ namespace }}",pod=~"{{ Pods }}",'
        'code=~"5.."}[{{ window }}])) or vector(0)) / '
        'sum(rate(http_requests_total{namespace="{{ namespace }}",'
        'pod=~"{{ pods }}"}[{{ window }}]))'
    )
    # Refused with the annotation (InvalidSpec names it), before any step.
    with pytest.raises(ValueError, match=r"unknown variable \{\{ Pods \}\}"):
        analysis({"metrics": [{"name": "error-share", "query": query, "max": 1}]})
    for typo in ("{{ Pods }}", "{{ pods-regex }}", "{{ .pods }}", "{{\n  Pods }}"):
        with pytest.raises(TemplateError):
            render(query.replace("{{ Pods }}", typo), variables(CANARY, 30, 30))


# -- 2. a status label that is not called `code` makes every builtin pass ---------------------


async def test_a_request_metric_without_the_code_label_is_not_a_pass() -> None:
    # The exporter labels the status `status` (Spring, many ingress exporters),
    # the analysis keeps the default `code`. `code!~"5.."` then matches every
    # series (a missing label is ""), `code=~"5.."` none: a canary answering
    # 50 % 5xx reads 100 % success. No series carries the label the verdict
    # rests on: that is missing data, not a clean release.
    the_spec = analysis(
        {"metrics": [{"name": "success-rate", "min": 99}, {"name": "error-rate", "max": 1}]}
    )
    prom = FakePrometheus(requests(CANARY_RS, "status", ok=50, errors=50))
    result_ = await analyze(the_spec, ctx(), prom)
    assert result_.verdict is Verdict.NO_DATA, result_.reason
    assert "labels: {code: <its name>}" in result_.reason  # where to look


# -- 3. Prometheus warnings (a partial response) are ignored ----------------------------------


class _Answers(BaseAdapter):
    """A transport answering every request with `answer(query)`: requests
    builds real Responses, so the session's hooks run as in production.
    The adapter's clock probe (`time()` at Prometheus's now) is answered by
    a Prometheus `ahead_s` ahead of this host's clock (None: with a 503)."""

    def __init__(self, answer: Any, ahead_s: float | None = 0.0) -> None:
        super().__init__()
        self.answer = answer
        self.ahead_s = ahead_s
        self.probe_delay = 0.0  # seconds the clock probe takes to answer
        self.sent: list[dict[str, str]] = []

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        query = urllib.parse.urlsplit(request.url).query
        if request.body:
            body = request.body if isinstance(request.body, str) else request.body.decode()
            query = f"{query}&{body}" if query else body
        params = dict(urllib.parse.parse_qsl(query))
        self.sent.append(params)
        status: int
        payload: Any
        if params.get("query") == "time()" and "time" not in params:
            time.sleep(self.probe_delay)
            if self.ahead_s is None:
                status, payload = 503, {"status": "error", "error": "overloaded"}
            else:
                now = time.time() + self.ahead_s
                result = [now, f"{now:.3f}"]
                status, payload = 200, {"status": "success", "data": {"result": result}}
        else:
            status, payload = self.answer(request.url, params)
        response = Response()
        response.status_code = status
        response._content = json.dumps(payload).encode()
        response.headers["Content-Type"] = "application/json"
        response.url = request.url
        response.request = request
        return response

    def close(self) -> None:
        pass


def _vector(value: str) -> list[dict[str, Any]]:
    return [{"metric": {}, "value": [1030.0, value]}]


def _prometheus(answer: Any, ahead_s: float | None = 0.0) -> tuple[Prometheus, _Answers]:
    prom = Prometheus(PrometheusConfig(url="http://prom:9090"))
    transport = _Answers(answer, ahead_s)
    prom._client._session.mount("http://prom:9090", transport)
    return prom, transport


async def success_rate_answered_with(extra: dict[str, Any]) -> StepResult:
    """A success-rate check whose 100 % comes with `extra` in the answer
    (warnings, isPartial), over 120 requests."""

    def answer(url: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if params["query"].startswith("sum(increase("):
            return 200, {"status": "success", "data": {"result": _vector("120")}}
        return 200, {"status": "success", **extra, "data": {"result": _vector("100")}}

    prom, _ = _prometheus(answer)
    try:
        the_spec = analysis({"metrics": [{"name": "success-rate", "min": 99}]})
        return await analyze(the_spec, ctx(), prom)
    finally:
        prom.close()


async def test_a_partial_response_from_prometheus_is_never_a_pass() -> None:
    # Thanos/Cortex/Mimir answer HTTP 200 with "warnings" when part of the
    # data could not be read: here the store holding the canary's 5xx series
    # is down, so the success rate reads 100. prometheus-api-client returns
    # data.result and drops the warnings: the step passed on partial data.
    warning = "partial response: store 10.0.3.7:10901 (eu-west) unavailable"
    result_ = await success_rate_answered_with({"warnings": [warning]})
    assert result_.verdict is Verdict.ERROR, result_.reason
    assert "without part of the data" in result_.reason and "eu-west" in result_.reason


# -- 4. a baseline error hides an absolute failure -------------------------------------------


async def test_an_absolute_threshold_fails_even_when_the_baseline_query_errors() -> None:
    # README: "A failing metric outranks errors and missing data" and a
    # relative check's "absolute thresholds still fail it". A canary at 50 %
    # errors against `max: 5` is reported as an ERROR because the stable
    # twin's baseline query timed out: no failure is counted, fast looks
    # pause until the next scheduled check, and error-limit halts the
    # rollout with traffic unchanged (on-limit: halt, the default).
    the_spec = analysis(
        {"metrics": [{"name": "error-rate", "max": 5, "relative": {"max-ratio": 1.5}}]}
    )
    prom = FakePrometheus(
        requests(CANARY_RS, "code", ok=50, errors=50) + requests(STABLE_RS, "code", 100, 0),
        fail_when=STABLE_RS,
    )
    result_ = await analyze(the_spec, ctx(), prom)
    assert result_.verdict is Verdict.FAIL, result_.reason


# -- 5. the statistical judge cannot fail on 3 samples a twin ---------------------------------


async def test_the_judge_never_passes_on_too_few_samples_to_ever_fail() -> None:
    # Defaults: interval 30s, judge confidence 0.98, sample-every 5s; scrape
    # 15s makes samples 30 s apart. The first checks are no-data (1 and 2
    # samples), the third (90 s) has 3 per twin: Mann-Whitney's smallest
    # one-sided p-value for 3 vs 3 is 1/20 = 0.05 > 0.02, so it can never
    # fail. A canary 50x slower than the stable passes.
    the_spec = analysis({"metrics": [{"name": "latency-p99-ms", "judge": {"confidence": 0.98}}]})
    prom = FakePrometheus(
        requests(CANARY_RS, "code", 100, 0), range_values={"green": 5000.0, "blue": 100.0}
    )
    result_ = await analyze(the_spec, ctx(start=1000.0, now=1090.0), prom)
    judged = [m for m in result_.measurements if m.metric == "latency-p99-ms"]
    assert judged and judged[0].verdict is Verdict.NO_DATA, judged
    assert "cannot reach the confidence 0.98" in judged[0].detail
    assert result_.verdict is not Verdict.PASS, result_.reason
    # One more sample each, and the same canary fails (4/4: smallest p 1/70).
    slow = judge(
        [5000.0, 5001, 5002, 5003], [100.0, 101, 102, 103], Judge(), Direction.HIGHER_IS_WORSE
    )
    assert slow.verdict is Verdict.FAIL, slow.detail


# -- 6. sample-every longer than the window halts a valid spec as InvalidSpec -----------------


async def test_a_judge_sampling_slower_than_the_window_is_not_an_invalid_query() -> None:
    # interval 30s, judge sample-every 1m: the first check's range query has
    # start = now + 30 s > end; Prometheus answers 400 bad_data, the result is
    # `invalid`, and decide() halts the rollout with InvalidSpec "fix the
    # query, then canary retry" - a query that is not wrong, and a retry that
    # halts again. Too few samples is no-data.
    the_spec = analysis({"metrics": [{"name": "latency-p99-ms", "judge": {"sample-every": "1m"}}]})
    prom = FakePrometheus(
        requests(CANARY_RS, "code", 100, 0), range_values={"green": 100.0, "blue": 100.0}
    )
    result_ = await analyze(the_spec, ctx(start=1000.0, now=1030.0), prom)
    assert not result_.invalid, result_.reason
    assert result_.verdict is Verdict.NO_DATA


# -- 7. a scalar result, or several series, is taken for a Prometheus outage ------------------


def test_a_scalar_result_is_one_value_not_two_series() -> None:
    # `scalar(...)` (or any scalar expression) answers resultType "scalar",
    # whose result is [time, "value"]: read as "query returned 2 series", an
    # error counted as Prometheus trouble (error-limit; on-limit: rollback
    # rolls a good release back as AnalysisError).
    assert _single_value([1030.0, "0.5"]) == 0.5


def test_a_query_returning_several_series_is_a_spec_error_not_an_outage() -> None:
    # README: "a query must return one series (wrap it in sum())". Several
    # series is the team's query bug, like a query Prometheus rejects, yet
    # it is not `invalid`: it counts towards error-limit, halts as
    # "Prometheus still fails ... resumes by itself once queries succeed"
    # (it never does), or with on-limit: rollback rolls a healthy release back.
    two = [
        {"metric": {"pod": "a"}, "value": [1.0, "1"]},
        {"metric": {"pod": "b"}, "value": [1.0, "2"]},
    ]
    with pytest.raises(QueryError) as caught:
        _single_value(two)
    assert caught.value.invalid


# -- 8. the judge's range query reaches back before the step began ----------------------------


async def test_the_judges_samples_never_reach_back_before_the_step_began() -> None:
    # prometheus-api-client rounds start/end of a range query to whole
    # seconds (round(), so down by up to 0.5 s): the first sample's window
    # [start - every, start] began before the step did.
    def answer(url: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if url.split("?", maxsplit=1)[0].endswith("query_range"):
            values = [[1005.0 + 5 * i, "100"] for i in range(6)]
            return 200, {
                "status": "success",
                "data": {"result": [{"metric": {}, "values": values}]},
            }
        return 200, {"status": "success", "data": {"result": _vector("120")}}

    prom, transport = _prometheus(answer)
    try:
        the_spec = analysis({"metrics": [{"name": "latency-p99-ms", "judge": {}}]})
        step_start = 1000.4
        await analyze(the_spec, ctx(start=step_start, now=1030.4, scrape=1.0), prom)
    finally:
        prom.close()
    every = 5.0
    ranges = [p for p in transport.sent if "start" in p]
    assert ranges and all(float(p["start"]) - every >= step_start for p in ranges), ranges


# -- 9. a failure seen as a canary pod crashes is dropped for the whole deadline --------------


@dataclass
class OnePodDown(World):
    """World with one of a twin's pods not ready (its others still serve)."""

    down: Color | None = None

    def observed(self) -> Observed:
        observed = super().observed()
        if not self.down:
            return observed
        twin = observed.twins[self.down]
        twins = {
            **observed.twins,
            self.down: replace(twin, ready=twin.ready - 1, endpoints=max(twin.endpoints - 1, 0)),
        }
        return replace(observed, twins=twins, endpoints=observed.endpoints - 1)


def _second_step_serving(strict: RolloutSpec) -> OnePodDown:
    """Step 1 passed; step 2 (50 %: 3 canary pods beside 3) serves."""
    world = OnePodDown()
    world.adopted(strict)
    world.source = replace(world.source, revision="r2")
    world.settle(strict)
    world.step(strict, Checked("scheduled", result(Verdict.PASS), world.now + 30), advance=30)
    world.settle(strict)
    assert world.state.step == 1 and world.state.step_ready
    return world


def test_a_confirmed_failure_counts_when_a_canary_pod_crashes_at_the_same_time() -> None:
    # failure-limit 0: two failing scrapes in a row roll back. The bad release
    # also crashes one of its three pods; the other two keep serving 5xx at
    # the step's weight (later steps keep the canary in the Service). The
    # confirming failure is handed in after the pod went unready: it is
    # dropped (the step is "not ready"), no check is due while a pod is
    # missing, and the release serves errors until progress-deadline (10 m).
    strict = spec(steps="10,50", failure_limit="0")
    world = _second_step_serving(strict)
    at = world.state.step_ready + 5
    world.step(strict, Checked("fast", result(Verdict.FAIL), at), advance=5)
    assert world.state.fast_failed  # suspect: the next scrape confirms
    world.down = "green"  # a canary pod crashes; the other two keep serving
    world.step(strict, Checked("fast", result(Verdict.FAIL), at + 1), advance=1)
    assert world.state.canary is None or world.selector.get("canary.io/service") == "web"
    started = world.now
    while world.state.canary is not None and world.now < started + 900:
        if analysis_due(strict, world.state, world.now, world.scrape) is not None:
            break  # a check would be started: Prometheus gets asked again
        world.step(strict, advance=10)
    assert world.state.canary is None and "AnalysisFailed" in world.reasons(), (
        f"after {world.now - started:.0f}s of no analysis: {world.reasons()}"
    )
    assert world.now - started <= 30, (
        f"rolled back {world.now - started:.0f}s later, as {world.reasons()[-2]}"
    )


def test_a_failure_first_seen_after_a_canary_pod_crashed_is_confirmed_and_rolls_back() -> None:
    # The pod crashes first; the failure shows in the next scrape. No check
    # ran while a pod was missing, so the suspicion was never confirmed and
    # the release served errors until the progress deadline. (Later, not
    # even the first failing look was asked for: the pods that still serve
    # are now looked at every scrape, failure-only.)
    strict = spec(steps="10,50", failure_limit="0")
    world = _second_step_serving(strict)
    world.down = "green"
    world.step(strict, advance=2)  # the loss is seen: unready
    assert world.state.unready_since
    due = analysis_due(strict, world.state, world.now, world.scrape)
    assert due is not None and due.kind == "fast", due
    at = world.now + 1
    world.step(strict, Checked("fast", result(Verdict.FAIL), at), advance=1)
    assert world.state.fast_failed  # suspect: the next scrape confirms
    world.now += world.scrape
    due = analysis_due(strict, world.state, world.now, world.scrape)
    assert due is not None and due.kind == "fast", due
    confirmed = replace(world, state=world.state, events=list(world.events))
    world.step(strict, Checked("fast", result(Verdict.FAIL), world.now), advance=0)
    assert world.state.canary is None and "AnalysisFailed" in world.reasons(), world.reasons()
    # Had the scrape passed: the suspicion goes, nothing passes, and the
    # next look waits for the next scrape (not one every cycle).
    confirmed.twins = dict(confirmed.twins)
    confirmed.step(strict, Checked("fast", result(Verdict.PASS), confirmed.now), advance=0)
    assert confirmed.state.canary is not None and not confirmed.state.fast_failed
    assert confirmed.state.unready_since and confirmed.state.step == 1
    scrape = confirmed.scrape
    assert analysis_due(strict, confirmed.state, confirmed.now + scrape / 4, scrape) is None
    later = analysis_due(strict, confirmed.state, confirmed.now + 2 * scrape, scrape)
    assert later is not None and later.kind == "fast", later


def test_a_probe_that_finds_the_canary_failing_counts_as_a_failed_check() -> None:
    """Halted on query errors, the probe that finds Prometheus back also
    finds the canary failing. Before, it resumed on a fresh window and let
    the bad release serve one more whole interval before any check could
    fail it."""
    spec_ = spec(steps="25,50", failure_limit="0")
    assert spec_.failure_limit == 0
    world = World().adopted(spec_)
    world.source = replace(world.source, revision="r2")
    world.settle(spec_)
    for _ in range(spec_.analysis.error_limit + 1):
        world.step(spec_, result(Verdict.ERROR, "Prometheus unavailable"), advance=10)
    assert world.state.halt_kind == "errors"
    probe = Checked("probe", result(Verdict.FAIL, "5xx 50%"), world.now + 10)
    world.step(spec_, probe, advance=10)
    assert world.state.suspected == "5xx 50%"  # confirmed by the next scrape, as any check
    due = analysis_due(spec_, world.state, probe.at + 2, 1.0)
    assert due is not None and due.kind == "fast"
    world.step(spec_, Checked("fast", result(Verdict.FAIL, "5xx 50%"), world.now + 1), advance=1)
    assert world.state.canary is None and world.state.stable == "blue"
    assert "RolledBack" in world.reasons()


def test_an_infinity_on_the_good_side_is_no_data_never_a_pass() -> None:
    """`+Inf` passed any `min:` (and `-Inf` any `max:`): a ratio with a zero
    denominator (`ok / errors` while nothing fails yet, throughput per
    request over no requests) let a canary pass on no reading at all."""
    throughput = MetricSpec(name="ok-per-error", query="x", min=50)
    assert assess(throughput, math.inf) is Verdict.NO_DATA
    assert assess(throughput, -math.inf) is Verdict.FAIL  # the worst value still fails
    drop = MetricSpec(name="drop", query="x", max=0.0)
    assert assess(drop, -math.inf) is Verdict.NO_DATA
    latency = MetricSpec(name="latency-p99-ms", max=400)
    assert assess(latency, math.inf) is Verdict.FAIL  # every request timing out


def test_an_infinite_baseline_compares_with_nothing() -> None:
    """A stable twin whose every request times out (+Inf p99) let any canary
    pass a relative check: value < inf * ratio, and inf - inf is NaN."""
    slower = MetricSpec(
        name="latency", query='x{pod=~"{{ pods }}"}', relative=Relative(max_ratio=1.2)
    )
    assert assess(slower, 5000.0, stable=math.inf) is Verdict.NO_DATA
    assert assess(slower, math.inf, stable=math.inf) is Verdict.NO_DATA
    capped = MetricSpec(
        name="latency", query='x{pod=~"{{ pods }}"}', max=400, relative=Relative(max_ratio=1.2)
    )
    assert assess(capped, 5000.0, stable=math.inf) is Verdict.FAIL  # the absolute bound holds


def test_an_infinite_reading_says_why_it_is_no_data() -> None:
    throughput = MetricSpec(name="ok-per-error", query="x", min=50)
    measured = Measurement(
        "ok-per-error", "green", "q", 0, 1, math.inf, ">= 50", Verdict.NO_DATA, 1
    )
    assert "division by zero" in _infinite(throughput, measured).detail
