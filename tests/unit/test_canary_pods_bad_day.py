"""The per-pod checks (canary-pods-unseen, canary-pods-never-scraped) on a
bad day, against a Prometheus that keeps each pod's sample times: a healthy
canary is never no data for them."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from urllib.parse import urlencode

from analysis.durations import parse_duration
from analysis.run import analyze
from analysis.templates import names_regex, seen_pods_query, unseen_pods_query, variables
from analysis.verdicts import Verdict
from canary.observe import ready_since, slim_pod
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

_RANGE = re.compile(
    r"(count_over_time|max_over_time)\((\w+)\{([^}]*)\}\[(\w+)\](?: offset (\w+))?\)"
)
_PODS = re.compile(r'pod=~"((?:[^"\\]|\\.)*)"')


def _names(matchers: str, pods: Iterable[str]) -> set[str]:
    """Those of `pods` the pod matcher matches (as Prometheus: anchored)."""
    found = _PODS.search(matchers)
    assert found is not None, matchers
    regex = found.group(1).replace("\\\\", "\\")  # PromQL's string escapes
    if "[" in regex:
        return set()  # a ReplicaSet's every pod: the jobs that scrape them (any here)
    return {pod for pod in pods if re.fullmatch(regex, pod)}


@dataclass
class _Pods(FakePrometheus):
    """Per pod, the times its request samples were taken (and landed: all
    of them by the query's time unless `landed_by` is earlier)."""

    samples: dict[str, tuple[float, ...]] = field(default_factory=dict)
    landed_by: float | None = None
    # Per pod, the times of its scrapes (`up`, of value `up`).
    scraped: dict[str, tuple[float, ...]] = field(default_factory=dict)
    up: float = 1.0

    def _pods_with(
        self, fn: str, metric: str, matchers: str, span: str, off: str | None, *, at: float
    ) -> set[str]:
        end = at - (parse_duration(off) if off else 0.0)
        start = end - parse_duration(span)
        last = end if self.landed_by is None else min(end, self.landed_by)
        if metric == "up" and fn == "max_over_time":  # max_over_time(up[...]) == 1
            times, ok = self.scraped, self.up == 1.0
        elif metric == "http_requests_total" and fn == "count_over_time":
            times, ok = self.samples, True
        else:
            raise AssertionError(f"unexpected {fn}({metric})")
        return {
            pod
            for pod in _names(matchers, [*self.samples, *self.scraped])
            if ok and any(start < t <= last for t in times.get(pod, ()))
        }

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        if promql.startswith("count(count by (pod) (max_over_time(up"):
            # templates.scrape_targets_query: the canary's pods with an `up`.
            self.queries.append(promql)
            return float(len([p for p, times in self.scraped.items() if times])) or None
        if not promql.startswith("count(count by (pod)"):
            return await super().query(promql, at, timeout_s)
        self.queries.append(promql)
        assert at is not None
        sets = [self._pods_with(*m.groups(), at=at) for m in _RANGE.finditer(promql)]
        found = (
            sets[0] - set[str]().union(*sets[1:])
            if " unless " in promql
            else set[str]().union(*sets)
        )
        return float(len(found)) if found else None


def _every(scrape: float, first: float, last: float) -> tuple[float, ...]:
    times, t = [], first
    while t <= last:
        times.append(t)
        t += scrape
    return tuple(times)


def _prometheus(samples: dict[str, tuple[float, ...]]) -> _Pods:
    series = requests(CANARY_RS, "code", 400.0, 0.0) + requests(STABLE_RS, "code", 1200.0, 0.0)
    return _Pods(series=series, samples=samples)


def _checked(
    prometheus: _Pods, now: float = 1120.0, since: tuple[float, ...] = (400.0,) * 3
) -> tuple[Verdict, str]:
    context = replace(ctx(start=1000.0, now=now), scrape_known=True, pods=PODS, ready_since=since)
    result = asyncio.run(analyze(SPEC, context, prometheus))
    return result.verdict, result.reason


def test_a_pod_back_from_a_container_restart_before_its_next_scrape_is_not_unseen() -> None:
    # Scrapes every 15 s. The third pod's container crashed at 1088 (its
    # last sample at 1085), its scrapes at 1100 and 1115 failed while it
    # was down, and it turned ready again at 1117, 29 s after it was lost
    # (two scrapes or less: the step's window is kept). Its next scrape is
    # at 1130; the check due as it came back runs at 1120. Before, it was
    # no data: "1 of the canary's 3 serving pods had request samples
    # earlier in the step but none in its newest two scrapes".
    prometheus = _prometheus(
        {
            PODS[0]: _every(15.0, 1003.0, 1120.0),
            PODS[1]: _every(15.0, 1009.0, 1120.0),
            PODS[2]: _every(15.0, 1010.0, 1085.0),
        }
    )
    verdict, reason = _checked(prometheus, since=(400.0, 400.0, 1117.0))
    assert verdict is Verdict.PASS, reason


def test_a_long_serving_pod_whose_scrapes_fail_is_still_unseen() -> None:
    prometheus = _prometheus(
        {
            PODS[0]: _every(15.0, 1003.0, 1120.0),
            PODS[1]: _every(15.0, 1009.0, 1120.0),
            PODS[2]: _every(15.0, 1010.0, 1085.0),
        }
    )
    verdict, reason = _checked(prometheus)
    assert verdict is Verdict.NO_DATA, reason
    assert reason.startswith("canary-pods-unseen: 1 of the canary's 3 serving pods"), reason


def _landing_late(last_of_third: float) -> _Pods:
    # Scrapes every 10 s; a remote-write backend takes 13 s to make them
    # readable (a scrape's batch sent on its deadline): at 1120 it holds
    # nothing newer than 1107. The newest sample of the canary is 14 s old
    # (within two scrapes: the newest-sample check passes).
    prometheus = _prometheus(
        {
            PODS[0]: _every(10.0, 1003.0, 1120.0),
            PODS[1]: _every(10.0, 1006.0, 1120.0),
            PODS[2]: _every(10.0, 1009.5, last_of_third),
        }
    )
    prometheus.landed_by = 1107.0
    prometheus.stale_by = 14.0
    return prometheus


def _checked_at_10s(prometheus: _Pods) -> tuple[Verdict, str]:
    context = replace(
        ctx(start=1000.0, now=1120.0, scrape=10.0),
        scrape_known=True,
        pods=PODS,
        ready_since=(400.0,) * 3,
    )
    result = asyncio.run(analyze(SPEC, context, prometheus))
    return result.verdict, result.reason


def test_the_newest_two_scrapes_are_where_the_samples_have_landed() -> None:
    # The third pod's newest scrape (1109.5) has not landed yet and the one
    # before (1099.5) is more than two scrapes before the check: its newest
    # two scrapes at the check's time hold nothing readable. Before, every
    # check whose timing fell so was no data: "1 of the canary's 3 serving
    # pods had request samples earlier in the step but none in its newest
    # two scrapes", though every pod was scraped every 10 s.
    prometheus = _landing_late(1120.0)
    verdict, reason = _checked_at_10s(prometheus)
    assert verdict is Verdict.PASS, reason
    unseen = [q for q in prometheus.queries if " unless " in q]
    assert unseen and "[20s] offset 14s)" in unseen[0], unseen


def test_behind_a_late_backend_a_pod_whose_scrapes_stopped_is_still_unseen() -> None:
    verdict, reason = _checked_at_10s(_landing_late(1079.5))
    assert verdict is Verdict.NO_DATA, reason
    assert reason.startswith("canary-pods-unseen: 1 of the canary's 3 serving pods"), reason


def _lazy(third_scraped: tuple[float, ...], up: float = 1.0) -> _Pods:
    # The third pod serves but no request reached it: its clients' few
    # long-lived connections (gRPC, keep-alive pools) all went to other
    # pods. The app creates its request counter at its first request, so
    # the pod has no request series; Prometheus scrapes it every 15 s.
    prometheus = _prometheus(
        {PODS[0]: _every(15.0, 1003.0, 1120.0), PODS[1]: _every(15.0, 1009.0, 1120.0)}
    )
    prometheus.scraped = {
        PODS[0]: _every(15.0, 1003.0, 1120.0),
        PODS[1]: _every(15.0, 1009.0, 1120.0),
        PODS[2]: third_scraped,
    }
    prometheus.up = up
    return prometheus


def test_a_scraped_pod_no_request_reached_yet_is_not_never_scraped() -> None:
    # Before: no data, "1 of the canary's 3 serving pods ... has no request
    # sample in the step: Prometheus does not scrape it", which nobody saw:
    # Prometheus scraped it every time (up == 1), and it served nothing.
    prometheus = _lazy(_every(15.0, 1010.0, 1120.0))
    verdict, reason = _checked(prometheus)
    assert verdict is Verdict.PASS, reason


def test_a_pod_prometheus_cannot_scrape_is_still_never_scraped() -> None:
    # Not discovered at all (no `up`), or over its sample limit (up == 0).
    for prometheus in (_lazy(()), _lazy(_every(15.0, 1010.0, 1120.0), up=0.0)):
        verdict, reason = _checked(prometheus)
        assert verdict is Verdict.NO_DATA, reason
        assert reason.startswith("canary-pods-never-scraped: 1 of the canary's 3"), reason


def test_a_scrape_counts_only_on_a_job_that_scrapes_the_request_metric() -> None:
    # A sidecar's own target (a mesh proxy's: a job of its own; a JMX
    # exporter's port in the app's ServiceMonitor: the same job, another
    # container and endpoint) up while the app's port is not scraped is no
    # sign of the app's requests.
    canary = variables(CANARY, 120.0, 30.0)
    pods = variables(replace(CANARY, pods=names_regex(PODS[2:])), 120.0, 30.0)
    one = f'namespace="shop",pod=~"{PODS[2]}"'
    every = f'namespace="shop",pod=~"{canary["pods"]}"'
    assert seen_pods_query(SPEC, pods, canary) == (
        f"count(count by (pod) (count_over_time(http_requests_total{{{one}}}[120s])) "
        f"or count by (pod) ((max_over_time(up{{{one}}}[120s]) == 1) "
        f"and on (job, container, endpoint) count by (job, container, endpoint) "
        f"(http_requests_total{{{every}}})))"
    )


def test_a_pod_is_never_taken_for_ready_before_it_was_created() -> None:
    # A canary pod created 10 s ago (the app grew: the step's window goes
    # on) on a node whose clock is 5 minutes behind: its kubelet stamps
    # Ready 5 minutes back. Taken at its word, the pod had served for over
    # the grace, was due its share of the window's requests, and, not
    # discovered and scraped yet, made the check no data: "each serving
    # for over 90s, has no request sample in the step". The API server's
    # creationTimestamp bounds it.
    pod = {
        "metadata": {"name": PODS[2], "creationTimestamp": "2026-12-01T21:05:00Z"},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-01T21:00:10Z"}
            ]
        },
    }
    created = 1796159100.0  # 2026-12-01T21:05:00Z
    assert ready_since(slim_pod(pod)) == created
    prometheus = _prometheus(
        {PODS[0]: _every(15.0, 1003.0, 1120.0), PODS[1]: _every(15.0, 1009.0, 1120.0)}
    )
    # Ready since it was created, 10 s before the check: not asked about.
    verdict, reason = _checked(prometheus, since=(400.0, 400.0, 1110.0))
    assert verdict is Verdict.PASS, reason


def test_a_pod_back_from_a_restart_no_request_reached_yet_is_not_unseen() -> None:
    # The third pod's container restarted at 1016 and serves again since
    # 1020, scraped every 15 s since. Its request counter went with the old
    # process, and the app creates it at its first request: none reached
    # the pod since (its clients' long-lived connections went to the other
    # pods when it went down). Before, at 1120 (past the grace) it was no
    # data: "had request samples earlier in the step but none in its newest
    # two scrapes: their scrapes fail", though every scrape of it answered.
    prometheus = _prometheus(
        {
            PODS[0]: _every(15.0, 1003.0, 1120.0),
            PODS[1]: _every(15.0, 1009.0, 1120.0),
            PODS[2]: _every(15.0, 1010.0, 1010.0),
        }
    )
    prometheus.scraped = {
        PODS[0]: _every(15.0, 1003.0, 1120.0),
        PODS[1]: _every(15.0, 1009.0, 1120.0),
        PODS[2]: _every(15.0, 1025.0, 1120.0),
    }
    verdict, reason = _checked(prometheus, since=(400.0, 400.0, 1020.0))
    assert verdict is Verdict.PASS, reason
    # Its scrapes failing (up == 0) it is unseen, as before.
    prometheus.up = 0.0
    verdict, reason = _checked(prometheus, since=(400.0, 400.0, 1020.0))
    assert verdict is Verdict.NO_DATA, reason
    assert reason.startswith("canary-pods-unseen: 1 of the canary's 3 serving pods"), reason
    assert "their scrapes fail" in reason and "restarted" not in reason, reason


def test_a_big_canarys_per_pod_query_fits_a_proxys_request_line() -> None:
    # 250 canary pods of one ReplicaSet. The query goes in the URL (GET);
    # an nginx in front of Prometheus (an ingress, a Mimir gateway) answers
    # a request line over 8 KiB with 414, and the check, finding no answer,
    # let the window's pass stand at every step: a canary pod whose scrapes
    # failed was never unseen. Each name was written out whole, three times.
    pods = tuple(f"{CANARY_RS}-{i:05d}" for i in range(250))
    values = variables(replace(CANARY, pods=names_regex(pods)), 120.0, 30.0)
    query = unseen_pods_query(SPEC, values, "30s", "14s", variables(CANARY, 120.0, 30.0))
    line = f"GET /api/v1/query?{urlencode({'query': query, 'time': '1796158800.000'})} HTTP/1.1"
    assert len(line) < 8192, len(line)
    # Still exactly those pods, dots and all.
    regex = names_regex([*pods[:2], "web.v2-green-1-abcde", f"{CANARY_RS}-0000"])
    for name in (*pods[:2], "web.v2-green-1-abcde", f"{CANARY_RS}-0000"):
        assert re.fullmatch(regex, name), (regex, name)
    for name in (pods[2], "webxv2-green-1-abcde", f"{CANARY_RS}-000", CANARY_RS):
        assert not re.fullmatch(regex, name), (regex, name)
    assert re.fullmatch(names_regex(pods), pods[249])
    assert not re.fullmatch(names_regex(pods), f"{CANARY_RS}-00250")


def test_a_busy_pod_whose_readiness_blipped_a_minute_ago_is_still_unseen() -> None:
    # Too busy, the third pod failed a readiness probe and was ready again
    # at 1060; its scrapes fail since 1085. Ready for 60 s, over three
    # scrapes: its newest two should hold a sample. Left out for 90 s
    # after each blip, a pod blipping every minute was never asked about.
    prometheus = _prometheus(
        {
            PODS[0]: _every(15.0, 1003.0, 1120.0),
            PODS[1]: _every(15.0, 1009.0, 1120.0),
            PODS[2]: _every(15.0, 1010.0, 1085.0),
        }
    )
    verdict, reason = _checked(prometheus, since=(400.0, 400.0, 1060.0))
    assert verdict is Verdict.NO_DATA, reason
    assert reason.startswith("canary-pods-unseen: 1 of the canary's 3 serving pods"), reason
