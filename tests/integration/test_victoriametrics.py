"""The analysis against a real single-node VictoriaMetrics (built by
`hack/build-binaries.sh --victoria-metrics`), on loopback, with its
defaults.

VictoriaMetrics answers an instant query whose time is within
`-search.latencyOffset` (30 s by default) of its now as of that long ago,
and says nothing of it: the result's timestamp is moved forward again. Sent
as Prometheus is, every check read the canary as it was 30 s before: a
canary whose scrapes had stopped 20 s ago read fresh, errors of its last
20 s were not there, and `time()` read 30 s behind, so the clock probe took
VictoriaMetrics' clock for 30 s slow and told on-call to fix NTP.

In the first three tests the samples are written through VictoriaMetrics'
own import API at times of this host's clock (so the test knows exactly
where the data ends). The last runs the whole controller on the sandbox
with VictoriaMetrics scraping the simulator."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from analysis.prometheus import Prometheus, PrometheusConfig
from analysis.run import StepContext, analyze
from analysis.scrape import VICTORIA_METRICS_FLUSH_S
from analysis.spec import AnalysisSpec
from analysis.templates import Target
from analysis.verdicts import Verdict
from canary.kube import Kube
from canary.sandbox import cluster
from canary.sandbox.binaries import victoria_metrics_dir
from canary.twins import pods_regex
from tests.integration.conftest import running_controller
from tests.integration.helpers import history_of
from tests.integration.test_rollouts import deploy_app, release, wait_phase
from tests.integration.test_verdicts import (
    GOOD,
    hotfix_service,
    promoted,
    roll_back_a_bad_release,
)

NS = "shop"
CANARY_RS = "web-green-5f1c2a9e0b"
STABLE_RS = "web-blue-7c4d1e2f3a"
SCRAPE_S = 5.0
SPEC = AnalysisSpec.model_validate(
    {
        "min-requests": 20,
        "scrape-interval": f"{SCRAPE_S:g}s",
        "metrics": [{"name": "success-rate", "min": 95}],
    }
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _victoria(directory: Path, *args: str) -> Iterator[str]:
    """A single-node VictoriaMetrics on loopback, with its defaults but `args`."""
    binary = victoria_metrics_dir() / "victoria-metrics"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(directory / "victoria-metrics.log", "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [
            str(binary),
            f"-storageDataPath={directory / 'victoria-data'}",
            f"-httpListenAddr=127.0.0.1:{port}",
            "-loggerLevel=ERROR",
            *args,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"victoria-metrics did not start (log: {log.name})")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[str]:
    with _victoria(tmp_path) as url:
        yield url


def _series(rs: str, code: str, start: float, end: float, rate: Callable[[float], float]) -> str:
    """One counter of a pod, scraped every SCRAPE_S from start to end;
    `rate(t)`: what it adds in the scrape interval ending at t."""
    times = [start + i * SCRAPE_S for i in range(int((end - start) / SCRAPE_S) + 1)]
    values, total = [], 1000.0
    for t in times:
        total += rate(t)
        values.append(total)
    labels = {"__name__": "http_requests_total", "namespace": NS, "pod": f"{rs}-abcde"}
    return json.dumps(
        {
            "metric": {**labels, "code": code},
            "values": values,
            "timestamps": [int(t * 1000) for t in times],
        }
    )


def _import(url: str, lines: list[str]) -> None:
    request = urllib.request.Request(
        f"{url}/api/v1/import", data="\n".join(lines).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


def _until_readable(url: str, end: float, timeout_s: float = 30.0) -> None:
    """Imported samples become searchable a few seconds later (its in-memory
    parts are flushed every 5 s): wait until the newest one is, asking as of
    the sample's own time (an explicit time long past is never shifted)."""
    deadline = time.monotonic() + timeout_s
    query = urllib.parse.urlencode({"query": "count(http_requests_total)", "time": f"{end:.3f}"})
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=5) as answer:
            if json.load(answer)["data"]["result"]:
                return
        time.sleep(0.5)
    raise AssertionError("the imported samples never became searchable")


def _context(provider: Prometheus, start: float, now: float) -> StepContext:
    return StepContext(
        Target(NS, "web", "green", pods_regex(CANARY_RS)),
        Target(NS, "web", "blue", pods_regex(STABLE_RS)),
        start,
        now,
        60.0,
        scrape_s=SCRAPE_S,
        scrape_known=True,
        metricsql=bool(provider.metricsql),
    )


async def _checked(url: str, start: float) -> tuple[float, Verdict, str]:
    provider = Prometheus(PrometheusConfig(url=url))
    try:
        await provider.check()
        assert provider.metricsql, "victoria-metrics was not recognised as such"
        result = await analyze(SPEC, _context(provider, start, time.time()), provider)
        return provider.clock_offset, result.verdict, result.reason
    finally:
        provider.close()


def test_the_clock_of_victoriametrics_is_read_as_it_is(victoria: str) -> None:
    # Its time() at its own now read 30 s behind: the probe took that for
    # its clock, said "fix NTP", and shifted every query 30 s back.
    provider = Prometheus(PrometheusConfig(url=victoria))
    try:
        asyncio.run(provider.check())
        assert abs(provider.clock_offset) < 1.0, provider.clock_offset
    finally:
        provider.close()


def test_a_canary_whose_scrapes_stopped_20s_ago_is_not_read_as_fresh(victoria: str) -> None:
    now = time.time()
    stopped = now - 20.0
    _import(
        victoria,
        [
            _series(CANARY_RS, "200", now - 120.0, stopped, lambda _: 50.0),
            _series(STABLE_RS, "200", now - 120.0, now, lambda _: 150.0),
        ],
    )
    _until_readable(victoria, stopped)
    offset, verdict, reason = asyncio.run(_checked(victoria, start=now - 100.0))
    # Before: read 30 s back, its newest sample was a scrape old, and the
    # step passed on a canary nobody had seen for 20 s.
    assert verdict is Verdict.NO_DATA, (offset, reason)
    assert "newest-sample-age-s" in reason, reason


def test_errors_in_the_canarys_last_20s_fail_the_check(victoria: str) -> None:
    now = time.time()
    turned = now - 20.0
    _import(
        victoria,
        [
            # Until `turned` all its answers are 200s; from then on, 500s.
            _series(CANARY_RS, "200", now - 120.0, now, lambda t: 50.0 if t <= turned else 0.0),
            _series(CANARY_RS, "500", now - 120.0, now, lambda t: 0.0 if t <= turned else 50.0),
            _series(STABLE_RS, "200", now - 120.0, now, lambda _: 150.0),
        ],
    )
    _until_readable(victoria, now)
    offset, verdict, reason = asyncio.run(_checked(victoria, start=now - 100.0))
    # Before: read 30 s back, the canary had served no error yet, and passed.
    assert verdict is Verdict.FAIL, (offset, reason)


def test_a_canary_started_in_the_step_counts_its_first_samples(victoria: str) -> None:
    """Chaos seed 40 on VictoriaMetrics: a pod first scraped 7 s into the
    step holds what it served before (10 errors in 25 requests) in its
    first samples, which increase_prometheus() leaves out as increase()
    does. Named fresh (created in the step), its series count whole."""
    now = time.time()
    start = now - 60.0
    pod = f"{CANARY_RS}-fresh"
    times = [start + 7.0 + i * SCRAPE_S for i in range(int((now - start - 7.0) / SCRAPE_S) + 1)]
    lines = [
        json.dumps(
            {
                "metric": {
                    "__name__": "http_requests_total",
                    "namespace": NS,
                    "pod": pod,
                    "code": code,
                },
                "values": values,
                "timestamps": [int(t * 1000) for t in times],
            }
        )
        for code, values in (
            ("200", [15.0 + 10.0 * i for i in range(len(times))]),
            ("500", [10.0] * len(times)),
        )
    ]
    lines.append(_series(STABLE_RS, "200", now - 120.0, now, lambda _: 150.0))
    _import(victoria, lines)
    _until_readable(victoria, times[-1])
    verdicts = {}
    for fresh in ((), (pod,)):
        provider = Prometheus(PrometheusConfig(url=victoria))
        try:
            asyncio.run(provider.check())
            ctx = replace(
                _context(provider, start, time.time()), fresh=fresh, fresh_since=start - 5.0
            )
            result = asyncio.run(analyze(SPEC, ctx, provider))
        finally:
            provider.close()
        verdicts[fresh] = (result.verdict, result.reason)
    # Without: the 10 errors unseen, 100 % success.
    assert verdicts[()][0] is Verdict.PASS, verdicts
    assert verdicts[(pod,)][0] is Verdict.FAIL, verdicts


def test_a_canary_scraped_every_second_reads_fresh_between_flushes(victoria: str) -> None:
    """A sample is searchable only once VictoriaMetrics flushes its shard:
    2 s after the shard's first pending row, looked at by a 2 s ticker, so
    every 4 s under steady ingestion (analysis.scrape.VICTORIA_METRICS_FLUSH_S).
    Both twins are written every second as a 1 s scrape would, and checked
    over 20 s: with 2 s allowed for the flush, about a quarter of the checks
    read the healthy canary's newest sample 4-5 s old, and were no data."""
    spec = AnalysisSpec.model_validate(
        {
            "min-requests": 20,
            "scrape-interval": "1s",
            "metrics": [{"name": "success-rate", "min": 95}],
        }
    )
    began = time.time()

    def sample(rs: str, t: float, per_s: float) -> str:
        labels = {"__name__": "http_requests_total", "namespace": NS, "pod": f"{rs}-abcde"}
        value = 1000.0 + per_s * (t - (began - 120.0))
        return json.dumps(
            {"metric": {**labels, "code": "200"}, "values": [value], "timestamps": [int(t * 1000)]}
        )

    history = [began - 120.0 + i for i in range(120)]
    _import(
        victoria,
        [sample(rs, t, n) for t in history for rs, n in ((CANARY_RS, 10.0), (STABLE_RS, 30.0))],
    )
    stop = threading.Event()
    # (sample time, when its import returned), as the writer measured them.
    imports: list[tuple[float, float]] = []

    def scrape() -> None:
        while not stop.wait(1.0 - (time.time() % 1.0)):
            now = time.time()
            _import(victoria, [sample(CANARY_RS, now, 10.0), sample(STABLE_RS, now, 30.0)])
            imports.append((now, time.time()))

    async def checks() -> list[tuple[float, Verdict, str]]:
        provider = Prometheus(PrometheusConfig(url=victoria))
        found = []
        try:
            await provider.check()
            assert provider.metricsql
            end = time.monotonic() + 20.0
            while time.monotonic() < end:
                now = time.time()
                context = replace(_context(provider, began - 60.0, now), scrape_s=1.0)
                result = await analyze(spec, context, provider)
                found.append((now, result.verdict, f"{result.verdict}: {result.reason}"))
                await asyncio.sleep(0.25)
        finally:
            provider.close()
        return found

    limit = 2 * 1.0 + VICTORIA_METRICS_FLUSH_S  # two scrapes and a flush (run._newest_sample)

    def owed(now: float) -> bool:
        """The writer gave this check a sample young enough (within the
        limit at the check's time), imported a whole flush before it: then
        it must read fresh. Not owed only after a gap in the writer's own
        imports (a thread of this process, late when the machine is loaded):
        that is no lateness of the analysis."""
        return any(
            t >= now - limit and done <= now - VICTORIA_METRICS_FLUSH_S for t, done in imports
        )

    writer = threading.Thread(target=scrape)
    writer.start()
    try:
        _until_readable(victoria, history[-1])
        time.sleep(5.0)  # the writer's first rows flushed: ingestion is steady
        found = asyncio.run(checks())
    finally:
        stop.set()
        writer.join()
    assert len(found) > 20, found
    due = [(verdict, said) for now, verdict, said in found if owed(now)]
    assert len(due) > 20, (len(due), len(found), imports)
    assert all(v is Verdict.PASS for v, _ in due), [
        said for v, said in due if v is not Verdict.PASS
    ]
    # After a gap of the writer's, no data at most (its newest sample is old).
    assert all(v in (Verdict.PASS, Verdict.NO_DATA) for _, v, _ in found), found


async def test_a_rollout_on_victoriametrics_rolls_back_a_bad_release_and_promotes_a_good_one(
    kube: Kube, sandbox: cluster.Sandbox, namespace: str, tmp_path: Path
) -> None:
    """The whole controller with VictoriaMetrics as its only backend, scraping
    the sandbox's simulator every second: its dialect found at the start,
    the scrape interval learned from it, a bad release rolled back and the
    next one promoted, judged in MetricsQL."""
    config = tmp_path / "scrape.yml"
    simulator = urllib.parse.urlsplit(sandbox.simulator_url).netloc
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                "scrape_configs": [
                    {"job_name": "simulator", "static_configs": [{"targets": [simulator]}]}
                ],
            }
        )
    )
    with _victoria(tmp_path, f"-promscrape.config={config}") as url:
        async with running_controller(kube, sandbox, namespace, url) as running:
            assert running.controller is not None
            backend = running.controller.edges.prometheus
            assert isinstance(backend, Prometheus) and backend.metricsql
            await deploy_app(kube, namespace, replicas=4, service=hotfix_service())
            await wait_phase(kube, namespace, "Healthy")
            began = time.monotonic()
            await roll_back_a_bad_release(kube, namespace)
            print(f"bad release rolled back {time.monotonic() - began:.1f} s after it")
            await release(kube, namespace, "registry.example/web:v-good", GOOD)
            await promoted(kube, namespace, "registry.example/web:v-good")
            assert abs(backend.clock_offset) < 1.0, backend.clock_offset
    history = await history_of(kube, namespace)
    checks = [c for r in history for c in r.get("checks", [])]
    queries = {m["query"] for c in checks for m in c["measurements"]}
    assert any("increase_prometheus(" in q for q in queries), queries
    decided = [c["decided"] for c in checks]
    assert any("scrape interval 1s, learned" in d for d in decided), decided
    bad = [r for r in history if "registry.example/web:v-bad" in r.get("images", [])]
    assert bad and bad[0]["outcome"] == "rolled-back", bad
