"""Traffic simulator: request metrics that follow the real EndpointSlices.

For every Service labelled `sandbox.canary.io/simulate: "true"` it generates
requests at the Service's rate (annotation `sandbox.canary.io/rps`, default
50/s) and spreads them uniformly over the Service's ready endpoints, so a pod's
share of traffic moves exactly as selectors and replica counts move it. Each
request's outcome follows the serving pod's own annotations:

    sandbox.canary.io/error-rate: "0.2"   # share of 500 responses (default 0)
    sandbox.canary.io/latency-ms: "120"   # median latency (default 20)
    sandbox.canary.io/no-traffic: "true"  # ready, but no request reaches it
    sandbox.canary.io/series: lazy        # a code's series only once answered
    sandbox.canary.io/scrape: fail        # serves, but its series leave /metrics
                                          # (to Prometheus, as a failing scrape)

and on the Service:

    sandbox.canary.io/hang-pods: web-green-  # pods named so complete no request
                                             # (hung: their share is lost, not
                                             # sent to the others)

No packet is sent: the pod IPs are fake. The requests exist only as the
counters and histograms this process exports on /metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import random
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from canary.kube import Informer, Kube, WatchEvent, connect
from canary.kube.resources import ENDPOINTSLICES, PODS, SERVICES

log = logging.getLogger("canary.sandbox.simulator")

SIMULATE_LABEL = "sandbox.canary.io/simulate"
RATE_ANNOTATION = "sandbox.canary.io/rps"
ERROR_RATE_ANNOTATION = "sandbox.canary.io/error-rate"
LATENCY_ANNOTATION = "sandbox.canary.io/latency-ms"
NO_TRAFFIC_ANNOTATION = "sandbox.canary.io/no-traffic"
SERIES_ANNOTATION = "sandbox.canary.io/series"
SCRAPE_ANNOTATION = "sandbox.canary.io/scrape"
HANG_ANNOTATION = "sandbox.canary.io/hang-pods"
DEFAULT_RPS = 50.0
DEFAULT_LATENCY_MS = 20.0
# Spread of latency around the median (lognormal sigma): p99 is about 2x p50.
LATENCY_SIGMA = 0.3
BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
)
CODES = ("200", "500")


@dataclass(frozen=True, slots=True)
class Behaviour:
    error_rate: float = 0.0
    latency_ms: float = DEFAULT_LATENCY_MS
    # False: a ready endpoint that no request reaches (a release whose route
    # or client never sends it anything); the others share the Service's rate.
    receives_traffic: bool = True
    # True: like most real apps (Go's promhttp, Python's prometheus_client),
    # a status code's series exists only once the pod has answered with it;
    # nothing is exported at 0 beforehand.
    lazy_series: bool = False


def behaviour_of(pod: dict[str, object] | None) -> Behaviour:
    annotations = _annotations(pod)
    return Behaviour(
        error_rate=min(1.0, max(0.0, _number(annotations.get(ERROR_RATE_ANNOTATION), 0.0))),
        latency_ms=max(0.0, _number(annotations.get(LATENCY_ANNOTATION), DEFAULT_LATENCY_MS)),
        receives_traffic=annotations.get(NO_TRAFFIC_ANNOTATION, "").lower() != "true",
        lazy_series=annotations.get(SERIES_ANNOTATION, "").lower() == "lazy",
    )


def _annotations(obj: dict[str, object] | None) -> dict[str, str]:
    meta = obj.get("metadata", {}) if obj else {}
    found = meta.get("annotations") if isinstance(meta, dict) else None
    return found if isinstance(found, dict) else {}


def _number(value: object, default: float) -> float:
    try:
        number = float(str(value))
    except ValueError:
        return default
    return number if math.isfinite(number) else default


class Simulator:
    def __init__(
        self, kube: Kube, registry: CollectorRegistry, rng: random.Random, tick_s: float = 0.1
    ) -> None:
        self._rng = rng
        self._tick_s = tick_s
        self.requests = Counter(
            "http_requests_total",
            "Simulated requests served, by pod and status code.",
            ["namespace", "service", "pod", "code"],
            registry=registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Simulated request latency.",
            ["namespace", "service", "pod", "code"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.services = Informer(kube, SERVICES, label_selector=f"{SIMULATE_LABEL}=true")
        self.slices = Informer(kube, ENDPOINTSLICES, on_event=self._on_slice)
        self.pods = Informer(kube, PODS, on_event=self._on_pod)
        self._carry: dict[tuple[str, str], float] = {}
        # (namespace, service) -> EndpointSlice name -> its ready pods.
        self._ready: dict[tuple[str, str], dict[str, list[str]]] = {}
        # Label sets exported per pod, so a deleted pod's series disappear.
        self._series: dict[tuple[str, str], set[tuple[str, str, str, str]]] = {}

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for informer in (self.services, self.slices, self.pods):
                group.create_task(informer.run())
            group.create_task(self._generate())

    async def _generate(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(self._tick_s)
            now = loop.time()
            elapsed, last = min(now - last, 1.0), now  # no burst after a stall
            self.tick(elapsed)

    def tick(self, elapsed_s: float) -> None:
        for service in self.services.items():
            meta = service["metadata"]
            key = (meta["namespace"], meta["name"])
            pods = [
                pod
                for pod in self.ready_pods(*key)
                if behaviour_of(self.pods.get(key[0], pod)).receives_traffic
            ]
            rate = _number(_annotations(service).get(RATE_ANNOTATION), DEFAULT_RPS)
            due = self._carry.get(key, 0.0) + max(rate, 0.0) * elapsed_s
            count = int(due)
            self._carry[key] = due - count
            if pods:
                hung = _annotations(service).get(HANG_ANNOTATION, "")
                self._serve(key[0], key[1], pods, count, hung)

    def snapshot(self) -> dict[str, list[str]]:
        return {
            f"{meta['namespace']}/{meta['name']}": self.ready_pods(meta["namespace"], meta["name"])
            for meta in (svc["metadata"] for svc in self.services.items())
        }

    def exposition(self, text: bytes) -> bytes:
        """/metrics less the series of pods annotated `scrape: fail`: a pod
        too busy to answer its scrape has its series marked stale by
        Prometheus, as series that leave a scrape are; it still serves."""
        hidden = [
            (f'namespace="{meta["namespace"]}"'.encode(), f'pod="{meta["name"]}"'.encode())
            for meta in (pod["metadata"] for pod in self.pods.items())
            if (meta.get("annotations") or {}).get(SCRAPE_ANNOTATION, "").lower() == "fail"
        ]
        if not hidden:
            return text
        return b"\n".join(
            line
            for line in text.split(b"\n")
            if not any(ns in line and pod in line for ns, pod in hidden)
        )

    def ready_pods(self, namespace: str, service: str) -> list[str]:
        slices = self._ready.get((namespace, service), {})
        return [pod for pods in slices.values() for pod in pods]

    def _serve(
        self, namespace: str, service: str, pods: list[str], count: int, hung: str = ""
    ) -> None:
        """`hung`: a name prefix; those pods get their share of requests and
        complete none (a hang counts nothing, unlike `no-traffic`, whose share
        the other pods serve)."""
        rng = self._rng
        for _ in range(count):
            pod = pods[rng.randrange(len(pods))]
            if hung and pod.startswith(hung):
                continue
            how = behaviour_of(self.pods.get(namespace, pod))
            code = "500" if rng.random() < how.error_rate else "200"
            latency = how.latency_ms / 1000.0 * math.exp(rng.gauss(0.0, LATENCY_SIGMA))
            labels = (namespace, service, pod, code)
            self._series.setdefault((namespace, pod), set()).add(labels)
            self.requests.labels(*labels).inc()
            self.duration.labels(*labels).observe(latency)

    def _on_slice(self, event: WatchEvent) -> None:
        meta = event.object["metadata"]
        service = meta.get("labels", {}).get("kubernetes.io/service-name")
        if not service:
            return
        key = (meta["namespace"], service)
        slices = self._ready.setdefault(key, {})
        if event.type == "DELETED":
            slices.pop(meta["name"], None)
            return
        ready: list[str] = []
        for endpoint in event.object.get("endpoints") or []:
            ref = endpoint.get("targetRef") or {}
            if ref.get("kind") != "Pod":
                continue
            if (endpoint.get("conditions") or {}).get("ready", True) is not False:
                ready.append(ref["name"])
                if self.services.get(*key) is not None:
                    # Export zeros as soon as a pod is ready, so Prometheus has a
                    # sample before its first request and rate() counts them all.
                    # (Not for unready ones: a deleted pod must stay gone.)
                    self._touch(key[0], service, ref["name"])
        slices[meta["name"]] = ready

    def _touch(self, namespace: str, service: str, pod: str) -> None:
        if behaviour_of(self.pods.get(namespace, pod)).lazy_series:
            return
        seen = self._series.setdefault((namespace, pod), set())
        for code in CODES:
            labels = (namespace, service, pod, code)
            if labels not in seen:
                seen.add(labels)
                self.requests.labels(*labels)
                self.duration.labels(*labels)

    def _on_pod(self, event: WatchEvent) -> None:
        if event.type != "DELETED":
            # Like a real app that exports its counters at 0 from start-up, well
            # before it is ready: then rate() loses none of its first requests.
            namespace, pod = event.key
            labels = event.object["metadata"].get("labels") or {}
            for service in self.services.items():
                meta, selector = service["metadata"], service.get("spec", {}).get("selector")
                if (
                    meta["namespace"] == namespace
                    and selector
                    and all(labels.get(k) == v for k, v in selector.items())
                ):
                    self._touch(namespace, meta["name"], pod)
            return
        for labels in self._series.pop(event.key, set()):
            self.requests.remove(*labels)
            self.duration.remove(*labels)


async def serve(kubeconfig: str, host: str, port: int) -> None:
    registry = CollectorRegistry()
    async with await connect(kubeconfig) as kube:
        simulator = Simulator(kube, registry, random.Random())

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(
                body=simulator.exposition(generate_latest(registry)),
                headers={"Content-Type": CONTENT_TYPE_LATEST},
            )

        async def state(_: web.Request) -> web.Response:
            """What the simulator currently sends traffic to, for debugging tests."""
            return web.json_response(simulator.snapshot())

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/state", state)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        log.info("simulator serving metrics on http://%s:%d/metrics", host, port)
        try:
            await simulator.run()
        finally:
            await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m canary.sandbox.simulator")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--listen", default="127.0.0.1:0")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the simulator listens on loopback only")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(serve(args.kubeconfig, host, int(port)))


if __name__ == "__main__":
    main()
