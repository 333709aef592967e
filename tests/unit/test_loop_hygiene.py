"""The event loop is never blocked by work that grows with the cluster: each
test drives the real code at a size a big install meets and checks the work
is done off the loop, or once instead of again and again (never a timing).
Each test failed on the code before its fix."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from analysis.run import StepResult
from analysis.verdicts import Measurement, Verdict
from canary import history
from canary.model import JSON, Record
from canary.serve import serve
from canary.telemetry import Metrics
from tests.unit.test_size_limits import _source


class _Slow(Collector):
    """A collector that takes as long as a scrape of thousands of series
    (525 ms for 1,000 Services at 2026-12-02, 1.7 s for 3,000): it holds
    the rendering until the test has had /healthz answered, or gives up."""

    def __init__(self) -> None:
        self.rendering = threading.Event()
        self.answered = threading.Event()
        self.healthz_during_render = False

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self.rendering.set()
        self.healthz_during_render = self.answered.wait(timeout=10.0)
        yield GaugeMetricFamily("slow", "a big scrape", value=1.0)


async def test_a_big_scrape_does_not_stop_the_liveness_probe_being_answered() -> None:
    """/metrics rendered its text on the event loop: 86 ms for 200 managed
    Services, 525 ms for 1,000 (54 series each), every scrape, during which
    no watch event, reconcile, Lease renewal or probe was served. Now the
    text is made in a thread, and /healthz is answered meanwhile."""
    registry = CollectorRegistry()
    slow = _Slow()
    registry.register(slow)
    runner, port = await serve("127.0.0.1:0", registry, lambda: True)
    try:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{port}"
            scrape = asyncio.ensure_future(session.get(f"{base}/metrics"))
            assert await asyncio.to_thread(slow.rendering.wait, 10.0)
            async with session.get(f"{base}/healthz") as probe:
                assert probe.status == 200
            slow.answered.set()
            async with await scrape as response:
                assert b"slow 1.0" in await response.read()
    finally:
        await runner.cleanup()
    assert slow.healthz_during_render


_QUERY = (
    'sum(rate(http_requests_total{namespace="payments",pod=~"checkout-api-green-7d9f8c-.*",'
    'code!~"5.."}[30s])) / sum(rate(http_requests_total{namespace="payments",'
    'pod=~"checkout-api-green-7d9f8c-.*"}[30s])) * 100'
)


def _long_history(revisions: int) -> list[JSON]:
    """A history as a busy Service's grows: production templates (9 KB),
    each rollout with its 60 checks of three metrics and 30 Events."""
    image = "registry.example.com/payments/checkout-api:v2.31.4"
    records = history.apply_record(
        [], Record("r0", "adopted", "adopted"), _source("r0", image), 0.0, 100
    )
    m = Measurement("success-rate", "green", _QUERY, 0.0, 30.0, 99.93, ">= 99", Verdict.PASS, 1.0)
    passed = StepResult(Verdict.PASS, (m, m, m), "pass")
    for n in range(1, revisions + 1):
        at, revision = n * 3600.0, f"r{n}"
        release = _source(revision, image)
        records = history.apply_record(
            records, Record(revision, "progressing", "x"), release, at, 100
        )
        for i in range(60):
            check = history.check_entry(
                i % 3, 25, 25.0, passed, "pass", at + i, at + i, "scheduled", at + i
            )
            records = history.add_check(records, revision, check)
        for i in range(30):
            records = history.add_event(records, revision, at + i, "StepAdvanced", "y" * 150)
        records = history.apply_record(
            records, Record(revision, "promoted", "ok"), release, at + 600, 100
        )
    return records


def _dumped_whole(records: list[JSON]) -> dict[str, str]:
    """dump() as it was: the whole history serialised again after each trim."""
    text = json.dumps(records, separators=(",", ":"))
    records = [dict(r) for r in records]
    while len(text) > history.MAX_BYTES:
        oldest = next((r for r in records if r.get("checks")), None)
        if oldest is None:
            records = history._without_oldest(records)
        else:
            oldest["checks"] = oldest["checks"][len(oldest["checks"]) // 2 + 1 :]
        text = json.dumps(records, separators=(",", ":"))
    return {history.DATA_KEY: text}


def test_a_history_at_its_limit_is_serialised_about_once_per_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A history near its 900 KB (a busy Service: 40 rollouts of 60 checks)
    takes a rollout's end, and dump() trims the oldest checks to stay under
    it: it serialised the whole history again after each trim, 6 to 8 times
    (50-170 ms on the event loop, in the very cycle that rolls a release
    back). Now each entry is serialised once, and again only when trimmed;
    the text is the same."""
    grown = _long_history(41)
    ended = grown[-1]  # the next rollout's end, with its 60 checks
    records = [*json.loads(history.dump(grown[:-1])[history.DATA_KEY]), ended]
    # Whole entries go too once no checks are left (a ConfigChurn: no checks).
    image = "registry.example.com/payments/checkout-api:v2.31.4"
    churn = [
        {
            **history.apply_record(
                [], Record(f"r{n}", "superseded", "x"), _source(f"r{n}", image), n, 9
            )[0],
            "number": n,
        }
        for n in range(110)
    ]
    for trimmed in (records, churn, []):
        assert history.dump(trimmed) == _dumped_whole(trimmed)
    whole = len(json.dumps(records, separators=(",", ":")))
    assert whole > history.MAX_BYTES  # what dump must trim
    encoded: list[int] = []
    dumps = json.dumps

    def counted(value: Any, **options: Any) -> str:
        text = dumps(value, **options)
        encoded.append(len(text))
        return text

    monkeypatch.setattr(json, "dumps", counted)
    history.dump(records)
    assert sum(encoded) < 1.5 * whole, (sum(encoded), whole, len(encoded))


def _measured(metrics: Metrics, namespace: str, service: str) -> None:
    """A Service mid-rollout as /metrics has it: three metrics checked."""
    metrics.service(namespace, service, "Progressing", {"canary": "green", "requested_weight": 25})
    checked = tuple(
        Measurement(name, "green", "q", 0.0, 1.0, 99.0, ">= 99", Verdict.PASS, 1.0)
        for name in ("success-rate", "latency-p99-ms", "checkout-errors")
    )
    metrics.analysis(namespace, service, StepResult(Verdict.PASS, checked, "pass"))


def test_a_service_forgotten_reads_none_of_the_other_services_series(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Metrics.forget (a Service deleted or handed back) and the end of a
    rollout (its values dropped) found the Service's series by collecting
    every Service's: 96 ms on the event loop per Service forgotten with
    1,000 managed (a namespace deleted with 50 of them: 5 s), 9 ms per
    rollout's end. Now the Service's own label values are kept as they are
    made, and only those are removed."""
    metrics = Metrics()
    for i in range(50):
        _measured(metrics, "shop", f"svc-{i}")
    read: list[str] = []
    for metric in (metrics.measurements, metrics.value):
        collect = metric.collect

        def counted(collect: Any = collect) -> Any:
            families = list(collect())
            read.extend(s.labels["service"] for f in families for s in f.samples)
            return families

        monkeypatch.setattr(metric, "collect", counted)
    before = generate_latest(metrics.registry).decode().splitlines()
    metrics.service("shop", "svc-1", "Healthy", {})  # its rollout ended: its values go
    metrics.forget("shop", "svc-2")
    after = generate_latest(metrics.registry).decode().splitlines()
    read.clear()  # (the scrapes above read every series, as they should)
    metrics.service("shop", "svc-3", "Healthy", {})
    metrics.forget("shop", "svc-4")
    assert [s for s in read if s not in ("svc-3", "svc-4")] == []
    gone = {line for line in before if line not in after and line.startswith("canary_")}
    assert gone, "nothing removed"
    assert all('service="svc-1"' in g or 'service="svc-2"' in g for g in gone), gone
    assert not [a for a in after if 'service="svc-2"' in a]
    assert not [a for a in after if 'service="svc-1"' in a and "canary_analysis_value" in a]
