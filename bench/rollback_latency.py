"""Rollback latency, false rollbacks and promotion time, on the sandbox with a
real `canary run` process.

    python -m bench.rollback_latency [--rounds 10] [--intervals 5,30,60]
                                     [--failure-limits 0,1] [--seed 1]

Every (interval, failure-limit) setting is an app of its own (4 replicas,
100 req/s, one 50 % step, success-rate >= 99, the scrape interval learned
from Prometheus), all in one sandbox under one controller, run side by side.
Each round of a setting releases, in this order:

1. a good release, right after the previous round's rolled-back bad one, on
   the same twin: it must be promoted (else a false rollback);
2. a bad release: once its canary serves, at a random point of the step,
   its pods start failing half their requests (time 0). Measured from then:
   (a) Prometheus first shows a 5xx from the canary pods (the time of the
       first sample whose 5xx counter grew, read back from Prometheus; or
       when polling saw it, if earlier),
   (b) the controller records the failed verdict that decides the rollback,
   (c) the Service selector excludes the canary twin (seen by a watch),
   (d) the EndpointSlices no longer list any canary pod;
3. a good release with a one-scrape blip: at a random point of its step its
   pods fail half their requests for 0.4 s, started just after a scrape so
   that only one scrape holds the failures, then recover. It must be
   promoted (else a false rollback).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench import harness
from canary.kube import Informer, Kube, WatchEvent
from canary.kube.resources import CONFIGMAPS, DEPLOYMENTS, ENDPOINTSLICES, PODS, SERVICES
from canary.observe import ready_endpoints
from canary.spec import STATUS, TWIN_LABEL

SLOW_S = 2.9  # a rollback slower than this (c - a) prints its checks


@dataclass
class Rollback:
    a: float  # Prometheus shows the failure
    b: float  # the deciding failed verdict
    c: float  # selector excludes the canary
    d: float  # no canary pod in the EndpointSlices


@dataclass
class Setting:
    interval: float
    failure_limit: int
    rollbacks: list[Rollback] = field(default_factory=list)
    promotions: list[float] = field(default_factory=list)  # last pass -> flip
    good: int = 0  # good releases tried
    false_rollbacks: int = 0
    bad: int = 0
    false_promotions: int = 0
    timeouts: int = 0

    @property
    def name(self) -> str:
        return f"interval {self.interval:g}s, failure-limit {self.failure_limit}"


class Watch:
    """The Service's selector, status and ready endpoints, as the watches
    deliver them."""

    def __init__(self, kube: Kube, ns: str) -> None:
        self.selector: tuple[float, dict[str, str]] = (0.0, {})
        self.slices: dict[str, Any] = {}
        self.endpoints: tuple[float, list[str]] = (0.0, [])
        self.endpoint_log: list[tuple[float, list[str]]] = []
        self.services = Informer(kube, SERVICES, namespace=ns, on_event=self._service)
        self.eps = Informer(kube, ENDPOINTSLICES, namespace=ns, on_event=self._slice)

    def _service(self, event: WatchEvent) -> None:
        if event.key[1] == "web":
            selector = dict(event.object["spec"].get("selector") or {})
            if selector != self.selector[1]:
                self.selector = (time.time(), selector)

    def _slice(self, event: WatchEvent) -> None:
        labels = event.object["metadata"].get("labels") or {}
        if labels.get("kubernetes.io/service-name") != "web":
            return
        if event.type == "DELETED":
            self.slices.pop(event.key[1], None)
        else:
            self.slices[event.key[1]] = event.object
        self.endpoints = (time.time(), ready_endpoints(self.slices.values()))
        self.endpoint_log.append(self.endpoints)

    def status(self) -> dict[str, Any]:
        for obj in self.services.items():
            if obj["metadata"]["name"] == "web":
                raw = (obj["metadata"].get("annotations") or {}).get(STATUS)
                return dict(json.loads(raw)) if raw else {}
        return {}


async def until(
    check: Callable[[], bool], timeout_s: float = 120.0, every_s: float = 0.02
) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return time.time()
        await asyncio.sleep(every_s)
    raise TimeoutError("benchmark step timed out")


async def prometheus_sees_errors(url: str, ns: str, color: str) -> float:
    query = (
        f'sum(increase(http_requests_total{{namespace="{ns}",pod=~"web-{color}-.*",'
        f'code="500"}}[5s])) > 0'
    )
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(f"{url}/api/v1/query", params={"query": query}) as response:
                body = await response.json()
            if body["data"]["result"]:
                return time.time()
            await asyncio.sleep(0.05)


async def first_error_sample(url: str, ns: str, pods: set[str], t0: float) -> float | None:
    """The time of the first sample after t0 in which a canary pod's 5xx
    counter had grown: the raw samples, read back after the fact."""
    if not pods:
        return None
    names = "|".join(sorted(pods))
    query = f'http_requests_total{{namespace="{ns}",pod=~"{names}",code="500"}}[120s]'
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/api/v1/query", params={"query": query}) as response,
    ):
        series = (await response.json())["data"]["result"]
    firsts = []
    for one in series:
        samples = [(float(at), float(v)) for at, v in one["values"]]
        before = [v for at, v in samples if at < t0]
        base = before[-1] if before else 0.0
        grown = [at for at, v in samples if at >= t0 and v > base]
        if grown:
            firsts.append(grown[0])
    return min(firsts, default=None)


async def history(kube: Kube, ns: str) -> list[dict[str, Any]]:
    configmap = await kube.get(CONFIGMAPS.path(ns, "web-canary-history"))
    records: list[dict[str, Any]] = json.loads(configmap["data"]["history.json"])
    return records


def check_time(check: dict[str, Any]) -> float:
    return max(float(m["end"]) for m in check["measurements"])


async def release(kube: Kube, ns: str, image: str) -> None:
    await kube.patch(
        DEPLOYMENTS.path(ns, "web"),
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}},
        patch_type="strategic",
    )


async def set_error_rate(kube: Kube, ns: str, color: str, rate: str) -> None:
    pods = await kube.get(PODS.path(ns), labelSelector=f"{TWIN_LABEL}={color}")
    await asyncio.gather(
        *(
            kube.patch(
                PODS.path(ns, pod["metadata"]["name"]),
                {"metadata": {"annotations": {"sandbox.canary.io/error-rate": rate}}},
            )
            for pod in pods["items"]
            if not pod["metadata"].get("deletionTimestamp")
        )
    )


async def outcome_of(kube: Kube, ns: str, image: str, timeout_s: float) -> dict[str, Any]:
    """The history record of `image` once it has ended."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for record in reversed(await history(kube, ns)):
            if image in record.get("images", []) and record.get("ended"):
                return dict(record)
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{image} did not end")


async def serving(watch: Watch, timeout_s: float) -> str:
    await until(
        lambda: watch.status().get("step_ready", 0) > 0 and bool(watch.status().get("canary")),
        timeout_s=timeout_s,
    )
    return str(watch.status()["canary"])


async def after_a_scrape(url: str, ns: str, color: str, scrape_s: float = 1.0) -> None:
    """Return just after Prometheus took a new sample of the canary's pods."""
    query = f'max(timestamp(http_requests_total{{namespace="{ns}",pod=~"web-{color}-.*"}}))'
    result: list[Any] = []
    async with aiohttp.ClientSession() as session:
        while not result:
            async with session.get(f"{url}/api/v1/query", params={"query": query}) as response:
                result = (await response.json())["data"]["result"]
            if not result:
                await asyncio.sleep(0.2)
    last = float(result[0]["value"][1])
    wait = last + scrape_s + 0.05 - time.time()
    while wait < 0:
        wait += scrape_s
    await asyncio.sleep(wait)


async def good_release(
    kube: Kube,
    url: str,
    ns: str,
    watch: Watch,
    setting: Setting,
    image: str,
    rng: random.Random,
    blip: bool,
) -> None:
    setting.good += 1
    await release(kube, ns, image)
    if blip:
        canary = await serving(watch, 60)
        await asyncio.sleep(rng.uniform(0, setting.interval * 0.8))
        # Confined to one scrape: start just after a sample is taken, end
        # well before the next (the sandbox scrapes every second).
        await after_a_scrape(url, ns, canary)
        await set_error_rate(kube, ns, canary, "0.5")
        await asyncio.sleep(0.4)
        await set_error_rate(kube, ns, canary, "0")
    record = await outcome_of(kube, ns, image, 6 * setting.interval + 60)
    if record["outcome"] != "promoted":
        setting.false_rollbacks += 1
        print(f"  {setting.name}: FALSE ROLLBACK of {image}: {record['reason']}", flush=True)
        return
    passes = [c for c in record["checks"] if c["verdict"] == "pass"]
    await until(lambda: watch.status().get("phase") == "Healthy", timeout_s=30)
    if passes:
        setting.promotions.append(watch.selector[0] - check_time(passes[-1]))


async def bad_release(
    kube: Kube, url: str, ns: str, watch: Watch, setting: Setting, image: str, rng: random.Random
) -> None:
    setting.bad += 1
    await release(kube, ns, image)
    canary = await serving(watch, 60)
    watch.endpoint_log.clear()
    await asyncio.sleep(rng.uniform(0, setting.interval * 0.8))
    t0 = time.time()
    failing = set(watch.endpoints[1])  # the canary's pods among them: their 5xx give (a)
    await set_error_rate(kube, ns, canary, "0.5")
    seen = asyncio.create_task(prometheus_sees_errors(url, ns, canary))
    try:
        await until(
            lambda: (
                watch.selector[1].get(TWIN_LABEL) not in (None, canary) and watch.selector[0] > t0
            ),
            timeout_s=6 * setting.interval + 30,
        )
    except TimeoutError:
        seen.cancel()
        record = await outcome_of(kube, ns, image, 60)
        if record["outcome"] == "promoted":
            setting.false_promotions += 1
        raise
    c = watch.selector[0]
    prefix = f"web-{canary}-"
    await until(lambda: not any(p.startswith(prefix) for p in watch.endpoints[1]))
    d = next(
        at
        for at, pods in watch.endpoint_log
        if at >= t0 and not any(p.startswith(prefix) for p in pods)
    )
    polled = await asyncio.wait_for(seen, 30)
    served = {p for p in failing if p.startswith(prefix)}
    served |= {p for at, pods in watch.endpoint_log for p in pods if p.startswith(prefix)}
    first = await first_error_sample(url, ns, served, t0)
    if first is None:
        print(f"  {setting.name}: (a) from polling only (no sample read back)", flush=True)
    # The sample's own time is when Prometheus could first show it; polling
    # can only be later (a busy bench process sees it late).
    a = min(first, polled) if first is not None else polled
    record = await outcome_of(kube, ns, image, 30)
    fails = [ch for ch in record["checks"] if ch["verdict"] == "fail"]
    b = check_time(fails[-1]) if fails else c
    setting.rollbacks.append(Rollback(a - t0, b - t0, c - t0, d - t0))
    r = setting.rollbacks[-1]
    print(
        f"  {setting.name} rollback {len(setting.rollbacks)}: a={r.a:.2f} b={r.b:.2f} "
        f"c={r.c:.2f} d={r.d:.2f} (c-a={r.c - r.a:.2f})",
        flush=True,
    )
    if r.c - r.a > SLOW_S:
        print(timeline(record, t0), flush=True)


def timeline(record: dict[str, Any], t0: float) -> str:
    """A slow rollback's checks as the record has them (seconds after the
    failure began): what to read when a rollback took longer than it should."""
    lines = []
    for check in record.get("checks") or []:
        measurements = check.get("measurements") or []
        values = ", ".join(
            f"{m.get('metric')}={m.get('value')} "
            f"[{m.get('start', 0) - t0:.2f}..{m.get('end', 0) - t0:.2f}]"
            for m in measurements
        )
        lines.append(
            f"      {check.get('kind', 'scheduled')} {check.get('verdict')}: {values} -> "
            f"{check.get('decided', '')}"
        )
    return "\n".join(lines)


async def run_setting(kube: Kube, url: str, setting: Setting, rounds: int, seed: int) -> Setting:
    rng = random.Random(f"{seed}-{setting.interval}-{setting.failure_limit}")
    ns = f"bench-rb-{int(setting.interval)}s-l{setting.failure_limit}-{rng.randrange(10**4)}"
    async with harness.namespace(kube, ns):
        watch = Watch(kube, ns)
        tasks = [asyncio.create_task(watch.services.run()), asyncio.create_task(watch.eps.run())]
        try:
            analysis = "min-requests: 10\nmetrics: [{name: success-rate, min: 99}]\n"
            await harness.create_app(
                kube,
                ns,
                "web",
                4,
                {
                    "canary.io/strategy": "canary",
                    "canary.io/steps": "50",
                    "canary.io/interval": f"{setting.interval:g}s",
                    "canary.io/failure-limit": str(setting.failure_limit),
                    "canary.io/scale-down-delay": "0s",
                    "canary.io/analysis": analysis,
                    "sandbox.canary.io/rps": "100",
                },
            )
            await until(lambda: watch.status().get("phase") == "Healthy", timeout_s=60)
            for n in range(rounds):
                steps: list[Coroutine[Any, Any, None]] = [
                    good_release(
                        kube, url, ns, watch, setting, f"r.example/app:{n}-good", rng, False
                    ),
                    bad_release(kube, url, ns, watch, setting, f"r.example/app:{n}-bad", rng),
                    good_release(
                        kube, url, ns, watch, setting, f"r.example/app:{n}-blip", rng, True
                    ),
                ]
                for step in steps:
                    try:
                        await step
                    except TimeoutError as exc:
                        setting.timeouts += 1
                        print(f"  {setting.name} round {n + 1}: timed out ({exc})", flush=True)
                        with contextlib.suppress(TimeoutError):
                            await until(lambda: watch.status().get("canary") is None, 300)
        finally:
            for task in tasks:
                task.cancel()
    return setting


def report(setting: Setting) -> str:
    rows = []
    rollbacks = setting.rollbacks
    for label, values in (
        ("(a) Prometheus shows 5xx", [r.a for r in rollbacks]),
        ("(b) failed verdict recorded", [r.b for r in rollbacks]),
        ("(c) selector excludes canary", [r.c for r in rollbacks]),
        ("(d) canary gone from EndpointSlices", [r.d for r in rollbacks]),
        ("(c)-(a) failure visible to rollback", [r.c - r.a for r in rollbacks]),
        ("(c)-(b) decision overhead", [r.c - r.b for r in rollbacks]),
        ("promotion: last pass -> flip", setting.promotions),
    ):
        p50, p99, worst = harness.quantiles(values)
        rows.append([label, f"{p50:.3f}", f"{p99:.3f}", f"{worst:.3f}"])
    head = (
        f"{setting.name}: {len(rollbacks)} rollbacks of {setting.bad} bad releases, "
        f"{setting.false_rollbacks} false rollbacks in {setting.good} good releases, "
        f"{setting.false_promotions} false promotions, {setting.timeouts} timeouts "
        "(seconds after the canary pods start failing)"
    )
    return head + "\n" + harness.table(["", "p50", "p99", "max"], rows)


async def run(
    rounds: int, intervals: list[float], limits: list[int], seed: int, log: Path
) -> list[Setting]:
    with harness.sandbox() as box:
        async with await harness.client(box) as kube:
            controller = harness.Controller(box, None, log)
            try:
                await controller.ready()
                settings = [Setting(i, limit) for i in intervals for limit in limits]
                return list(
                    await asyncio.gather(
                        *(run_setting(kube, box.prometheus_url, s, rounds, seed) for s in settings)
                    )
                )
            finally:
                controller.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--intervals", default="5,30,60")
    parser.add_argument("--failure-limits", default="0,1")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log", default="/tmp/canary-bench-controller.log")
    args = parser.parse_args()
    settings = asyncio.run(
        run(
            args.rounds,
            [float(i) for i in args.intervals.split(",")],
            [int(v) for v in args.failure_limits.split(",")],
            args.seed,
            Path(args.log),
        )
    )
    print("\n\n".join(report(s) for s in settings))


if __name__ == "__main__":
    main()
