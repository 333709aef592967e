"""The analysis against real Prometheus servers: exact values from series
backfilled with promtool, live values from the simulator, and the failure
modes (idle service, bad template, Prometheus gone, webhook refusing)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from analysis.gates import Webhooks
from analysis.prometheus import Prometheus, PrometheusConfig
from analysis.run import StepContext, StepResult, analyze
from analysis.spec import AnalysisSpec, GateKind, GateSpec
from analysis.templates import Target
from analysis.verdicts import Verdict
from canary.kube import Kube
from canary.kube.resources import DEPLOYMENTS, SERVICES
from canary.sandbox import cluster, processes
from canary.sandbox.binaries import binary_dir
from tests.integration.helpers import PromAPI, deployment, eventually, ready_endpoints, service

# Backfilled series: 10 minutes ending 3 hours ago, one sample every 15 s.
END = (int(time.time()) // 60) * 60 - 3 * 3600
START = END - 600
CANARY = Target("bf", "web", "green", "web-green-[a-z0-9]+-[a-z0-9]+")
STABLE = Target("bf", "web", "blue", "web-blue-[a-z0-9]+-[a-z0-9]+")


def _openmetrics() -> str:
    """Canary: 10 req/s, 0.5 of them 5xx (success 95 %). Stable: 10 req/s, none."""
    lines = ["# TYPE http_requests counter"]
    for pod, errors_per_s in (("web-green-abc12-xyz12", 0.5), ("web-blue-def34-uvw34", 0.0)):
        for code, per_s in (("200", 10 - errors_per_s), ("500", errors_per_s)):
            for t in range(START - 300, END + 1, 15):
                value = per_s * (t - START + 300)
                lines.append(
                    f'http_requests_total{{namespace="bf",pod="{pod}",code="{code}"}} {value} {t}'
                )
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Backfilled:
    def __init__(self, url: str, proc: processes.Proc) -> None:
        self.url = url
        self.proc = proc

    def stop(self) -> None:
        processes.stop([self.proc])


def _lazy_openmetrics() -> str:
    """Like a real app (Go's promhttp, Python's prometheus_client), each pod
    has a series only for the codes it answered: green only 200s, blue only
    500s, 10 req/s each."""
    lines = ["# TYPE http_requests counter"]
    for pod, code in (("web-green-abc12-xyz12", "200"), ("web-blue-def34-uvw34", "500")):
        for t in range(START - 300, END + 1, 15):
            value = 10 * (t - START + 300)
            lines.append(
                f'http_requests_total{{namespace="lz",pod="{pod}",code="{code}"}} {value} {t}'
            )
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _quiet_stable_openmetrics() -> str:
    """Canary: 10 req/s, 40 % of them 5xx. Stable: 1 request a minute, one
    in three a 5xx (33 %): a baseline of about 9 requests in the window."""
    lines = ["# TYPE http_requests counter"]
    for pod, per_s, error_share in (
        ("web-green-abc12-xyz12", 10.0, 0.4),
        ("web-blue-def34-uvw34", 1 / 60, 1 / 3),
    ):
        for code, share in (("200", 1 - error_share), ("500", error_share)):
            for t in range(START - 300, END + 1, 15):
                value = per_s * share * (t - START + 300)
                lines.append(
                    f'http_requests_total{{namespace="qs",pod="{pod}",code="{code}"}} {value} {t}'
                )
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@pytest.fixture
def backfilled(tmp_path: Path) -> Iterator[Backfilled]:
    yield from _backfilled(tmp_path, _openmetrics())


@pytest.fixture
def lazily_exported(tmp_path: Path) -> Iterator[Backfilled]:
    yield from _backfilled(tmp_path, _lazy_openmetrics())


@pytest.fixture
def quiet_stable(tmp_path: Path) -> Iterator[Backfilled]:
    yield from _backfilled(tmp_path, _quiet_stable_openmetrics())


def _backfilled(tmp_path: Path, series: str) -> Iterator[Backfilled]:
    """A Prometheus of its own, started on a TSDB that promtool filled."""
    data = tmp_path / "tsdb"
    source = tmp_path / "series.om"
    source.write_text(series)
    bins = binary_dir()
    subprocess.run(
        [
            str(bins / "promtool"),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "-q",
            str(source),
            str(data),
        ],
        check=True,
    )
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {scrape_interval: 15s}\nscrape_configs: []\n")
    port = _free_port()
    proc, popen = processes.start(
        "prometheus",
        [
            str(bins / "prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=30d",
        ],
        log_dir=tmp_path,
        cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        cluster._wait("prometheus", popen, lambda: cluster._http_ok(f"{url}/-/ready"), 30, proc.log)
        yield Backfilled(url, proc)
    finally:
        processes.stop([proc])


def spec_of(text: str) -> AnalysisSpec:
    import yaml

    return AnalysisSpec.model_validate(yaml.safe_load(text))


async def test_backfilled_series_give_exact_values_and_the_exact_verdicts(
    backfilled: Backfilled,
) -> None:
    spec = spec_of("""
scrape-interval: 15s
min-requests: 100
metrics:
  - {name: success-rate, min: 99}
  - {name: error-rate, max: 10}
  - name: errors-vs-stable
    query: >-
      sum(rate(http_requests_total{namespace="{{ namespace }}",pod=~"{{ pods }}",code="500"}
      [{{ window }}]))
    relative: {max-delta: 0.1}
  - name: errors-judged
    query: >-
      sum(rate(http_requests_total{namespace="{{ namespace }}",pod=~"{{ pods }}",code="500"}
      [{{ window }}]))
    judge: {sample-every: 30s, effect-size: 0.1}
""")
    provider = Prometheus(PrometheusConfig(backfilled.url))
    try:
        ctx = StepContext(CANARY, STABLE, start=START + 60, now=END, interval_s=60)
        result = await analyze(spec, ctx, provider)
    finally:
        provider.close()
    by_metric = {(m.metric, m.twin): m for m in result.measurements}
    requests = by_metric[("requests", "green")]
    assert requests.value == pytest.approx(10 * (END - START - 60), rel=0.01)
    assert by_metric[("success-rate", "green")].value == pytest.approx(95.0)
    assert by_metric[("success-rate", "green")].verdict is Verdict.FAIL
    assert by_metric[("error-rate", "green")].value == pytest.approx(5.0)
    assert by_metric[("error-rate", "green")].verdict is Verdict.PASS
    relative = [m for m in result.measurements if m.metric == "errors-vs-stable"]
    canary_rel = next(m for m in relative if not m.baseline)
    assert canary_rel.value == pytest.approx(0.5) and canary_rel.stable_value == pytest.approx(0.0)
    assert canary_rel.verdict is Verdict.FAIL
    judged = by_metric[("errors-judged", "green")]
    assert judged.verdict is Verdict.FAIL and "p=" in judged.detail
    assert result.verdict is Verdict.FAIL
    assert 'pod=~"web-green-[a-z0-9]+-[a-z0-9]+"' in by_metric[("success-rate", "green")].query
    assert requests.start == pytest.approx(START + 60) and requests.end == END


@pytest.mark.parametrize("totals", [False, True])
async def test_a_status_code_never_answered_is_a_zero_share_not_missing_data(
    lazily_exported: Backfilled, totals: bool
) -> None:
    # Before: a healthy canary had no 5xx series, so error-rate was empty
    # (NoData until the rollout halted), and one failing every request had no
    # 2xx series, so success-rate was empty instead of 0.
    spec = spec_of("""
scrape-interval: 15s
min-requests: 100
metrics:
  - {name: success-rate, min: 99}
  - {name: error-rate, max: 1}
""")
    provider = Prometheus(PrometheusConfig(lazily_exported.url))
    found: dict[str, tuple[float | None, Verdict]] = {}
    try:
        for twin, regex in (
            ("green", "web-green-[a-z0-9]+-[a-z0-9]+"),
            ("blue", "web-blue-[a-z0-9]+-[a-z0-9]+"),
            ("none", "web-none-[a-z0-9]+-[a-z0-9]+"),
        ):
            target = Target("lz", "web", twin, regex)
            ctx = StepContext(target, None, START + 60, END, interval_s=60, totals=totals)
            result = await analyze(spec, ctx, provider)
            found[twin] = (None, result.verdict)
            for m in result.measurements:
                found[f"{twin} {m.metric}"] = (m.value, m.verdict)
    finally:
        provider.close()
    for name, value, verdict in (
        ("green success-rate", 100.0, Verdict.PASS),
        ("green error-rate", 0.0, Verdict.PASS),
        ("blue success-rate", 0.0, Verdict.FAIL),
        ("blue error-rate", 100.0, Verdict.FAIL),
    ):
        assert found[name][0] == pytest.approx(value) and found[name][1] is verdict, name
    assert found["green"][1] is Verdict.PASS and found["blue"][1] is Verdict.FAIL
    # No series at all is still no data, never a pass or a 0.
    assert found["none"][1] is Verdict.NO_DATA


async def test_prometheus_gone_mid_analysis_gives_errors_never_a_pass(tmp_path: Path) -> None:
    spec = spec_of("{scrape-interval: 1s, min-requests: 0, query-timeout: 2s}")
    port = _free_port()  # nothing listens here any more: Prometheus is gone
    provider = Prometheus(PrometheusConfig(f"http://127.0.0.1:{port}"))
    try:
        now = time.time()
        result = await analyze(spec, StepContext(CANARY, STABLE, now - 30, now, 30), provider)
    finally:
        provider.close()
    assert result.verdict is Verdict.ERROR
    assert "unavailable" in result.reason


async def test_stopping_prometheus_between_checks_turns_the_next_one_into_errors(
    backfilled: Backfilled,
) -> None:
    spec = spec_of("{scrape-interval: 15s, min-requests: 1, query-timeout: 2s}")
    provider = Prometheus(PrometheusConfig(backfilled.url))
    ctx = StepContext(CANARY, STABLE, start=START + 60, now=END, interval_s=60)
    try:
        assert (await analyze(spec, ctx, provider)).verdict is Verdict.FAIL  # 95 % < 99 %
        await asyncio.to_thread(backfilled.stop)
        after = await analyze(spec, ctx, provider)
    finally:
        provider.close()
    assert after.verdict is Verdict.ERROR


async def test_a_template_prometheus_rejects_is_an_invalid_spec(backfilled: Backfilled) -> None:
    spec = spec_of("""
scrape-interval: 15s
min-requests: 1
metrics:
  - {name: broken, query: 'sum(rate(http_requests_total{pod=~"{{ pods }}"}[{{ window }}]', max: 1}
""")
    provider = Prometheus(PrometheusConfig(backfilled.url))
    try:
        result = await analyze(spec, StepContext(CANARY, STABLE, START + 60, END, 60), provider)
    finally:
        provider.close()
    assert result.verdict is Verdict.ERROR and result.invalid
    assert "rejected the query" in result.reason


async def test_live_traffic_with_a_20_percent_error_pod_fails_and_idle_gives_no_data(
    kube: Kube, sandbox: cluster.Sandbox, prometheus: PromAPI, namespace: str
) -> None:
    good, bad = {"app": "web", "canary.io/twin": "blue"}, {"app": "web", "canary.io/twin": "green"}
    await kube.create(DEPLOYMENTS.path(namespace), deployment("web-blue", 2, good))
    await kube.create(
        DEPLOYMENTS.path(namespace),
        deployment("web-green", 1, bad, {"sandbox.canary.io/error-rate": "0.2"}),
    )
    await kube.create(
        SERVICES.path(namespace),
        service("web", {"app": "web"}, labels={"sandbox.canary.io/simulate": "true"}),
    )
    await kube.create(SERVICES.path(namespace), service("idle", {"app": "web"}))
    pods = await eventually(lambda: ready_endpoints(kube, namespace, "web"), lambda p: len(p) == 3)
    started = time.time()
    # Judge a window once Prometheus holds 20 s of every pod's traffic in it.
    await eventually(
        lambda: prometheus.covered(f'http_requests_total{{namespace="{namespace}"}}', "pod"),
        lambda spans: set(pods) <= set(spans) and all(spans[p][1] >= started + 20 for p in pods),
        timeout_s=120,
        every_s=1,
    )
    spec = spec_of(
        "{scrape-interval: 1s, min-requests: 20, metrics: [{name: success-rate, min: 99}]}"
    )
    canary = Target(namespace, "web", "green", "web-green-[a-z0-9]+-[a-z0-9]+")
    stable = Target(namespace, "web", "blue", "web-blue-[a-z0-9]+-[a-z0-9]+")
    provider = Prometheus(PrometheusConfig(sandbox.prometheus_url))
    try:
        live = await analyze(spec, StepContext(canary, stable, started, time.time(), 20), provider)
        nobody = Target(namespace, "idle", "green", "nothing-[a-z0-9]+-[a-z0-9]+")
        idle = await analyze(spec, StepContext(nobody, None, started, time.time(), 10), provider)
    finally:
        provider.close()
    assert live.verdict is Verdict.FAIL, live.reason
    success = next(m for m in live.measurements if m.metric == "success-rate")
    # 20 % of the canary's requests fail: well below 99 %, well above none.
    assert success.value is not None and 60 <= success.value <= 95
    assert idle.verdict is Verdict.NO_DATA


@contextlib.asynccontextmanager
async def webhook(status: int) -> AsyncIterator[tuple[str, list[dict[str, object]]]]:
    received: list[dict[str, object]] = []

    async def handle(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=status, text="no" if status >= 300 else "ok")

    app = web.Application()
    app.router.add_post("/gate", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/gate", received
    finally:
        await runner.cleanup()


async def test_a_webhook_answering_500_keeps_the_gate_closed_and_200_opens_it() -> None:
    webhooks = Webhooks()
    payload = {
        "namespace": "ns",
        "service": "web",
        "revision": "r2",
        "phase": "pre-step",
        "step": 1,
        "weight": 10,
    }
    try:
        async with webhook(500) as (url, received):
            gate = GateSpec(name="load-test", when=GateKind.PRE_STEP, url=url, retries=2, timeout=2)
            closed = await webhooks.ask([gate], payload)
        assert not closed.open and "HTTP 500" in closed.reason
        assert len(received) == 3 and received[0]["revision"] == "r2"  # 1 try + 2 retries
        async with webhook(200) as (url, received):
            gate = GateSpec(name="load-test", when=GateKind.PRE_STEP, url=url)
            opened = await webhooks.ask([gate], payload)
        assert opened.open and received[0]["gate"] == "load-test"
    finally:
        await webhooks.close()


async def test_a_baseline_from_a_handful_of_stable_requests_is_no_data_not_a_pass(
    quiet_stable: Backfilled,
) -> None:
    """A low-traffic stable twin at a high step: about 9 requests in the
    window, 33 % errors. Before, a canary with 40 % errors passed `max-ratio:
    1.5` against it; the baseline now needs min-requests like the canary."""
    spec = spec_of("""
scrape-interval: 15s
min-requests: 20
metrics:
  - {name: error-rate, relative: {max-ratio: 1.5}}
""")
    canary = Target("qs", "web", "green", CANARY.pods)
    stable = Target("qs", "web", "blue", STABLE.pods)
    provider = Prometheus(PrometheusConfig(quiet_stable.url))
    try:
        ctx = StepContext(canary, stable, start=START + 60, now=END, interval_s=60)
        result = await analyze(spec, ctx, provider)
    finally:
        provider.close()
    checked = next(m for m in result.measurements if m.metric == "error-rate" and not m.baseline)
    assert checked.value == pytest.approx(40.0, rel=0.01)
    # The baseline's query carries the stable twin's own request guard
    # (18986e4): fewer than min-requests by the Prometheus that computes it is
    # no baseline at all, not a value shown beside a no-data (it was 33 %).
    assert checked.stable_value is None
    assert checked.verdict is Verdict.NO_DATA, result.reason
    assert result.verdict is Verdict.NO_DATA and "a baseline needs" in result.reason, result.reason


FRESH = ("web-green-abc12-aaaa1", "web-green-abc12-aaaa2", "web-green-abc12-aaaa3")


def _late_first_scrape_openmetrics() -> str:
    """Chaos seed 40, replayed: a canary whose 3 pods started with its step
    (at START) and were first scraped 2 s later, their first samples holding
    what they served meanwhile (11 requests, 5 of them errors), then one
    more scrape a second later (5 more requests, no error). The stable
    twin serves throughout. A fourth pod of the same ReplicaSet (aaaa4)
    was sampled before the window, its 40 errors counted by the check
    that ended there, and serves well since."""
    lines = ["# TYPE http_requests counter"]
    firsts = ((2, 1), (2, 1), (2, 3))  # (ok, errors) at the first scrape, per pod
    for pod, (ok, errors) in zip(FRESH, firsts, strict=True):
        for t, more in ((START + 2, 0), (START + 3, 2)):
            lines.append(
                f'http_requests_total{{namespace="fs",pod="{pod}",code="200"}} {ok + more} {t}'
            )
            lines.append(
                f'http_requests_total{{namespace="fs",pod="{pod}",code="500"}} {errors} {t}'
            )
    for t, ok in ((START - 1, 0), (START + 1, 10), (START + 3, 30)):
        labels = 'namespace="fs",pod="web-green-abc12-aaaa4"'
        lines.append(f'http_requests_total{{{labels},code="200"}} {ok} {t}')
        lines.append(f'http_requests_total{{{labels},code="500"}} 40 {t}')
    for t in range(START - 300, START + 4):
        value = 10 * (t - START + 300)
        labels = 'namespace="fs",pod="web-blue-def34-uvw34",code="200"'
        lines.append(f"http_requests_total{{{labels}}} {value} {t}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


async def _judged_in_a_short_step(
    backfilled: Backfilled, namespace: str, interval_s: int, fresh: tuple[str, ...]
) -> StepResult:
    """A success-rate check at a 1 s scrape, `interval_s` and 0.4 s into
    the step's first interval, the step begun at START with `fresh` pods."""
    spec = spec_of("""
scrape-interval: 1s
min-requests: 10
metrics:
  - {name: success-rate, min: 95}
""")
    canary = Target(namespace, "web", "green", "web-green-abc12-[a-z0-9]+")
    stable = Target(namespace, "web", "blue", "web-blue-def34-[a-z0-9]+")
    provider = Prometheus(PrometheusConfig(backfilled.url))
    ctx = StepContext(
        canary,
        stable,
        start=START,
        now=START + interval_s + 0.4,
        interval_s=interval_s,
        scrape_s=1.0,
        fresh=fresh,
        fresh_since=START - 5,
    )
    try:
        return await analyze(spec, ctx, provider)
    finally:
        provider.close()


@pytest.fixture
def late_first_scrape(tmp_path: Path) -> Iterator[Backfilled]:
    yield from _backfilled(tmp_path, _late_first_scrape_openmetrics())


@pytest.mark.parametrize(
    "fresh",
    [
        # Without fresh pods (before the fix; still so for pods that served
        # before the step) the first samples are left out.
        (),
        # The three fresh pods count whole: 16 requests, 5 errors. The
        # fourth, sampled before the window, counts from that sample (its
        # 40 errors before are the earlier check's): 20 more, all good
        # (increase() extrapolates them to the window's ends).
        FRESH,
        # The fourth named fresh too: its sample before the window (since
        # the step began) still keeps its errors out.
        (*FRESH, "web-green-abc12-aaaa4"),
    ],
)
async def test_a_canary_first_scraped_late_in_its_step_is_judged_with_its_first_samples(
    late_first_scrape: Backfilled, fresh: tuple[str, ...]
) -> None:
    """Chaos seed 40: increase() and rate() leave out what a series holds
    at its first sample, which for a pod started in the step is all it
    served before its first scrape. The check read 5 requests and no error,
    extrapolated them over min-requests, and passed a canary that failed 5
    of its first 16. Its fresh pods' series first sampled in the window now
    count whole, against a real Prometheus."""
    result = await _judged_in_a_short_step(late_first_scrape, "fs", 3, fresh)
    measured = {m.metric: m.value for m in result.measurements if not m.baseline}
    if not fresh:
        # The fourth pod's 20 good requests in the window alone (extrapolated).
        assert result.verdict is Verdict.PASS, (result.reason, result.measurements)
        return
    requests = measured["requests"]
    assert requests is not None and requests >= 16 + 20, result.measurements
    # Exactly the fresh pods' 5 errors, none of the fourth's 40.
    assert measured["success-rate"] == pytest.approx(100 * (requests - 5) / requests)
    assert result.verdict is Verdict.FAIL, (result.reason, result.measurements)


def _crashed_once_openmetrics() -> str:
    """A canary pod started with its step, first scraped 2 s in (4 good
    requests, 6 failed), failing 4 more by the next scrape; then its
    container restarts (an OOM kill, a panic) and is back within the next
    scrape, its counters from 0, and serves 30 good requests. The stable
    twin serves throughout."""
    lines = ["# TYPE http_requests counter"]
    pod = FRESH[0]
    for t, ok, errors in ((2, 4, 6), (3, 8, 10), (4, 0, 0), (5, 30, 0)):
        labels = f'namespace="cr",pod="{pod}"'
        lines.append(f'http_requests_total{{{labels},code="200"}} {ok} {START + t}')
        lines.append(f'http_requests_total{{{labels},code="500"}} {errors} {START + t}')
    for t in range(START - 300, START + 6):
        value = 10 * (t - START + 300)
        labels = 'namespace="cr",pod="web-blue-def34-uvw34",code="200"'
        lines.append(f"http_requests_total{{{labels}}} {value} {t}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@pytest.fixture
def crashed_once(tmp_path: Path) -> Iterator[Backfilled]:
    yield from _backfilled(tmp_path, _crashed_once_openmetrics())


async def test_a_fresh_canary_pod_that_restarted_in_the_window_keeps_its_errors_from_before(
    crashed_once: Backfilled,
) -> None:
    """A fresh pod's series counts whole (its newest value) only when its
    counter did not go back in the window: after a restart the newest value
    holds what came after it alone (30 good requests), and the 10 errors
    before were left out, a bad release passed at 100 %. increase() counts
    across the reset, against a real Prometheus."""
    result = await _judged_in_a_short_step(crashed_once, "cr", 5, FRESH[:1])
    measured = {m.metric: m.value for m in result.measurements if not m.baseline}
    # 4 + 30 good and 4 failed after the first sample (extrapolated alike).
    assert measured["success-rate"] == pytest.approx(100 * 34 / 38, abs=0.5), result.measurements
    assert result.verdict is Verdict.FAIL, (result.reason, result.measurements)
