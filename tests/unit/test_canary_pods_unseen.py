"""A canary pod whose scrapes fail (too busy to answer them, a hung metrics
handler) has its series marked stale: the window's rates keep its samples
from before, the other canary pods' fresh samples pass the newest-sample
check, and whatever it served since is in no query. Before, a step passed
on the pods Prometheus still saw. Now a scheduled check that finds a
serving canary pod with samples earlier in the step but none in its newest
two scrapes is no data, never a pass."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from analysis.run import NEVER_SCRAPED_METRIC, UNSEEN_METRIC, analyze
from analysis.templates import names_regex, unseen_pods_query, variables
from analysis.verdicts import Verdict
from canary.model import Twin
from canary.observe import ready_since, slim_pod, twin_of
from canary.reconcile import _serving_pods
from tests.unit.test_analysis_bad_day import (
    CANARY,
    CANARY_RS,
    STABLE_RS,
    FakePrometheus,
    analysis,
    ctx,
    requests,
)

SPEC = analysis({"min-requests": 20, "metrics": [{"name": "success-rate", "min": 95}]})
PODS = (f"{CANARY_RS}-abcde", f"{CANARY_RS}-fghij", f"{CANARY_RS}-klmno")


@dataclass
class _Unseen(FakePrometheus):
    """Answers the unseen-pods query with `unseen` (None: empty result)."""

    unseen: float | None = None
    down: bool = False
    seen: float | None = 3.0  # pods with a sample in the window
    targets: float | None = 3.0  # pods with an `up` of their own
    seen_down: bool = False  # the pods-with-a-sample query fails
    targets_down: bool = False  # the pods-with-an-up query fails

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        if promql.startswith("count(count by (pod) (max_over_time(up"):
            self.queries.append(promql)
            if self.targets_down:
                return await super().query("fail " + promql, at, timeout_s)
            return self.targets
        if " unless " in promql:
            self.queries.append(promql)
            if self.down:
                return await super().query("fail " + promql, at, timeout_s)
            return self.unseen
        if promql.startswith("count(count by (pod) (count_over_time("):
            self.queries.append(promql)
            if self.seen_down:
                return await super().query("fail " + promql, at, timeout_s)
            return self.seen
        return await super().query(promql, at, timeout_s)


def _prometheus(unseen: float | None, down: bool = False) -> _Unseen:
    series = requests(CANARY_RS, "code", 400.0, 0.0) + requests(STABLE_RS, "code", 1200.0, 0.0)
    return _Unseen(series=series, unseen=unseen, down=down, fail_when="fail " if down else "")


def _checked(
    prometheus: _Unseen, pods: tuple[str, ...] = PODS, since: tuple[float, ...] = ()
) -> tuple[Verdict, str]:
    # A two-minute window: the newest two scrapes (30 s) are a quarter of it.
    context = replace(
        ctx(start=1000.0, now=1120.0), scrape_known=True, pods=pods, ready_since=since
    )
    result = asyncio.run(analyze(SPEC, context, prometheus))
    return result.verdict, result.reason


def test_a_serving_canary_pod_no_longer_scraped_is_no_data_not_a_pass() -> None:
    verdict, reason = _checked(_prometheus(unseen=1.0))
    assert verdict is Verdict.NO_DATA, reason
    assert reason.startswith(f"{UNSEEN_METRIC}: 1 of the canary's 3 serving pods")
    assert "none in its newest two scrapes (30s)" in reason


def test_every_serving_pod_current_passes() -> None:
    verdict, reason = _checked(_prometheus(unseen=None))
    assert verdict is Verdict.PASS, reason


def test_no_answer_is_an_error_not_the_windows_pass() -> None:
    # The window passed on the pods Prometheus saw; whether every serving
    # pod is among them went unanswered (a timeout, a 503, a 414 for a long
    # pod list). Before, the pass stood without a trace: a step passed on
    # data nobody had checked was whole. An error, checked again an interval
    # later and counted towards error-limit, as any query's.
    verdict, reason = _checked(_prometheus(unseen=1.0, down=True))
    assert verdict is Verdict.ERROR, reason
    assert reason.startswith(f"{UNSEEN_METRIC}: "), reason
    assert "503 Service Unavailable" in reason


def test_one_pod_or_pods_not_known_ask_nothing_more() -> None:
    # One pod's silence is the whole canary's: the newest-sample check's.
    for pods in ((), PODS[:1]):
        prometheus = _prometheus(unseen=1.0)
        verdict, reason = _checked(prometheus, pods)
        assert verdict is Verdict.PASS, reason
        assert not [q for q in prometheus.queries if " unless " in q]


def test_the_query_names_exactly_the_serving_pods() -> None:
    target = replace(CANARY, pods=names_regex([*PODS, "web.v2-green-1-abcde"]))
    query = unseen_pods_query(SPEC, variables(target, 120.0, 30.0), "30s")
    names = "|".join(PODS) + "|web\\\\.v2-green-1-abcde"
    selector = f'http_requests_total{{namespace="shop",pod=~"{names}"}}'
    assert query == (
        f"count(count by (pod) (count_over_time({selector}[120s])) "
        f"unless count by (pod) (count_over_time({selector}[30s])))"
    )


def test_only_the_checked_replica_sets_serving_pods_are_expected() -> None:
    twin = Twin(serving=(f"{CANARY_RS}-abcde", "web-green-0ld0ld0ld0-zzzzz"))
    assert _serving_pods(twin, CANARY_RS) == (f"{CANARY_RS}-abcde",)
    assert _serving_pods(twin, "") == ()


def test_a_twins_serving_pods_include_its_preview() -> None:
    deployment = {"metadata": {"name": "web-green"}, "spec": {"replicas": 2}}
    twin = twin_of(deployment, [PODS[1]], previewed=[PODS[0]])
    assert twin.serving == (PODS[0], PODS[1])


# Ready since 10 minutes before the step: each served its 2-minute window,
# over never_scraped_grace (4 scrapes + 30 s = 90 s).
LONG = (400.0, 400.0, 400.0)


def _never(seen: float | None, canary_ok: float = 400.0) -> _Unseen:
    prometheus = _prometheus(unseen=None)
    prometheus.seen = seen
    prometheus.series = requests(CANARY_RS, "code", canary_ok, 0.0) + requests(
        STABLE_RS, "code", 1200.0, 0.0
    )
    return prometheus


def test_a_serving_canary_pod_prometheus_never_scraped_is_no_data_not_a_pass() -> None:
    # Two of three pods in Prometheus: the third (not discovered, over a
    # sample limit, its metrics port not served) served a third of the
    # canary's requests, none of them in any query. Before, the step passed
    # on the two.
    verdict, reason = _checked(_never(seen=2.0), since=LONG)
    assert verdict is Verdict.NO_DATA, reason
    assert reason.startswith(f"{NEVER_SCRAPED_METRIC}: 1 of the canary's 3 serving pods")
    assert "has no request sample in the step: Prometheus does not scrape it" in reason


def test_every_long_serving_pod_seen_passes() -> None:
    verdict, reason = _checked(_never(seen=3.0), since=LONG)
    assert verdict is Verdict.PASS, reason


def test_pods_too_new_too_quiet_or_of_unknown_age_are_not_asked_about() -> None:
    # Ready 60 s ago (its first scrapes may not be in yet); a canary too
    # quiet for an app that exports a series only once it answers one to
    # have any (30 requests in 2 minutes over 3 pods); a pod cache that
    # told no Ready time.
    for since, canary_ok in (((1060.0,) * 3, 400.0), (LONG, 30.0), ((0.0,) * 3, 400.0)):
        prometheus = _never(seen=None, canary_ok=canary_ok)
        verdict, reason = _checked(prometheus, since=since)
        assert verdict is Verdict.PASS, (since, canary_ok, reason)
        assert not [
            q for q in prometheus.queries if q.startswith("count(count") and " unless " not in q
        ]


def test_a_pods_ready_time_is_read_from_its_ready_condition() -> None:
    pod = {
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-01T21:00:00Z"}
            ]
        }
    }
    assert ready_since(slim_pod(pod)) == 1796158800.0
    pod["status"]["conditions"][0]["status"] = "False"
    assert ready_since(pod) == 0.0 and ready_since(None) == 0.0


def test_without_an_up_of_each_pod_a_pod_with_no_series_is_not_called_never_scraped() -> None:
    # Metrics pushed through an OpenTelemetry collector (or labelled by a
    # mesh) give no pod an `up` of its own: a pod with no series may be one
    # no request reached, in an app that makes its series at the first
    # request (a gRPC client's connections pinned to other pods). Taken for
    # never scraped, a healthy canary was no data (found by review).
    prometheus = _never(seen=2.0)
    prometheus.targets = None
    verdict, reason = _checked(prometheus, since=LONG)
    assert verdict is Verdict.PASS, reason


def test_no_answer_about_a_pod_never_scraped_is_an_error_not_the_windows_pass() -> None:
    prometheus = _never(seen=2.0)
    prometheus.seen_down, prometheus.fail_when = True, "fail "
    verdict, reason = _checked(prometheus, since=LONG)
    assert verdict is Verdict.ERROR, reason
    assert reason.startswith(f"{NEVER_SCRAPED_METRIC}: "), reason


def test_no_answer_about_the_pods_own_targets_is_an_error_not_the_windows_pass() -> None:
    # A pod with no sample, and whether the canary's pods have an `up` of
    # their own (telling never scraped from no request yet) unanswered.
    prometheus = _never(seen=2.0)
    prometheus.targets_down, prometheus.fail_when = True, "fail "
    verdict, reason = _checked(prometheus, since=LONG)
    assert verdict is Verdict.ERROR, reason
