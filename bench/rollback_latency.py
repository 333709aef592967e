"""Rollback latency and promotion time, on the sandbox with a real
`canary run` process.

    python -m bench.rollback_latency [--rollbacks 20] [--intervals 5,10] [--failure-limit 1]

Each round releases a good revision (promotion time: last passing verdict ->
the Service selects only the new twin), then a bad one: once its canary
serves, at a random point of the step, its pods start failing half their
requests (time 0). Measured from then:
  (a) Prometheus first shows a 5xx from the canary pods,
  (b) the controller records the failed verdict that decides the rollback,
  (c) the Service selector excludes the canary twin (seen by a watch),
  (d) the EndpointSlices no longer list any canary pod.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench import harness
from canary.kube import Informer, Kube, WatchEvent
from canary.kube.resources import CONFIGMAPS, DEPLOYMENTS, ENDPOINTSLICES, PODS, SERVICES
from canary.observe import ready_endpoints
from canary.spec import STATUS, TWIN_LABEL


@dataclass
class Round:
    a: float  # Prometheus shows the failure
    b: float  # the deciding failed verdict
    c: float  # selector excludes the canary
    d: float  # no canary pod in the EndpointSlices
    promotion: float  # last pass -> selector on the new twin only


class Watch:
    """The Service's selector and ready endpoints, with the time each changed."""

    def __init__(self, kube: Kube, ns: str) -> None:
        self.selector: tuple[float, dict[str, str]] = (0.0, {})
        self.slices: dict[str, Any] = {}
        self.endpoints: tuple[float, list[str]] = (0.0, [])
        self.endpoint_log: list[tuple[float, list[str]]] = []  # every change, as it arrived
        self.services = Informer(kube, SERVICES, namespace=ns, on_event=self._service)
        self.eps = Informer(kube, ENDPOINTSLICES, namespace=ns, on_event=self._slice)

    def _service(self, event: WatchEvent) -> None:
        if event.key[1] == "web":
            selector = dict(event.object["spec"].get("selector") or {})
            if selector != self.selector[1]:
                self.selector = (time.time(), selector)

    def _slice(self, event: WatchEvent) -> None:
        if (event.object["metadata"].get("labels") or {}).get(
            "kubernetes.io/service-name"
        ) != "web":
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


async def until(check: Any, timeout_s: float = 120.0, every_s: float = 0.02) -> float:
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


async def one_round(
    kube: Kube, box_url: str, ns: str, watch: Watch, n: int, interval: float
) -> Round:
    # A good release, promoted.
    before = watch.status().get("stable_revision")
    await release(kube, ns, f"r.example/app:{n}-good")
    await until(
        lambda: (
            watch.status().get("stable_revision") not in (None, before)
            and watch.status().get("phase") == "Healthy"
        ),
        timeout_s=20 * interval,
    )
    record = (await history(kube, ns))[-1]
    last_pass = check_time([c for c in record["checks"] if c["verdict"] == "pass"][-1])
    promoted_at = watch.selector[0]
    # A bad one, rolled back.
    await release(kube, ns, f"r.example/app:{n}-bad")
    await until(
        lambda: (
            watch.status().get("step_ready", 0) > 0 and watch.status().get("canary") is not None
        ),
        timeout_s=60,
    )
    canary = str(watch.status()["canary"])
    watch.endpoint_log.clear()
    await asyncio.sleep(random.uniform(0, interval))
    pods = await kube.get(PODS.path(ns), labelSelector=f"{TWIN_LABEL}={canary}")
    t0 = time.time()
    for pod in pods["items"]:
        await kube.patch(
            PODS.path(ns, pod["metadata"]["name"]),
            {"metadata": {"annotations": {"sandbox.canary.io/error-rate": "0.5"}}},
        )
    seen = asyncio.create_task(prometheus_sees_errors(box_url, ns, canary))
    await until(
        lambda: watch.selector[1].get(TWIN_LABEL) not in (None, canary) and watch.selector[0] > t0,
        timeout_s=10 * interval,
    )
    c = watch.selector[0]  # when the watch delivered the change
    await until(lambda: not any(p.startswith(f"web-{canary}-") for p in watch.endpoints[1]))
    d = next(
        at
        for at, pods in watch.endpoint_log
        if at >= t0 and not any(p.startswith(f"web-{canary}-") for p in pods)
    )
    a = await asyncio.wait_for(seen, 30)
    # The status is written after the history: once RolledBack shows, the
    # deciding check is readable.
    await until(lambda: watch.status().get("phase") == "RolledBack", timeout_s=30)
    record = (await history(kube, ns))[-1]
    b = check_time([ch for ch in record["checks"] if ch["verdict"] == "fail"][-1])
    return Round(a - t0, b - t0, c - t0, d - t0, promoted_at - last_pass)


async def run(rollbacks: int, interval: float, failure_limit: int, log: Path) -> list[Round]:
    with harness.sandbox() as box:
        ns = f"bench-rollback-{int(interval)}s-{random.randrange(10**6)}"
        async with await harness.client(box) as kube, harness.namespace(kube, ns):
            controller = harness.Controller(box, ns, log)
            try:
                await controller.ready()
                watch = Watch(kube, ns)
                tasks = [
                    asyncio.create_task(watch.services.run()),
                    asyncio.create_task(watch.eps.run()),
                ]
                analysis = (
                    "scrape-interval: 1s\nmin-requests: 10\n"
                    "metrics: [{name: success-rate, min: 99}]\n"
                )
                await harness.create_app(
                    kube,
                    ns,
                    "web",
                    3,
                    {
                        "canary.io/strategy": "canary",
                        "canary.io/steps": "50,75",
                        "canary.io/interval": f"{interval:g}s",
                        "canary.io/failure-limit": str(failure_limit),
                        "canary.io/scale-down-delay": "0s",
                        "canary.io/analysis": analysis,
                        "sandbox.canary.io/rps": "100",
                    },
                )
                await until(lambda: watch.status().get("phase") == "Healthy", timeout_s=60)
                rounds = []
                for n in range(rollbacks):
                    try:
                        rounds.append(
                            await one_round(kube, box.prometheus_url, ns, watch, n, interval)
                        )
                    except TimeoutError:
                        print(f"  round {n + 1}: timed out; see {log}", flush=True)
                        await until(lambda: watch.status().get("canary") is None, timeout_s=300)
                        continue
                    r = rounds[-1]
                    print(
                        f"  interval {interval:g}s round {n + 1}: a={r.a:.2f} b={r.b:.2f} "
                        f"c={r.c:.2f} d={r.d:.2f} promotion={r.promotion:.3f}",
                        flush=True,
                    )
                for task in tasks:
                    task.cancel()
                return rounds
            finally:
                controller.stop()


def report(interval: float, failure_limit: int, rounds: list[Round]) -> str:
    rows = []
    for label, values in (
        ("(a) Prometheus shows 5xx", [r.a for r in rounds]),
        ("(b) failed verdict recorded", [r.b for r in rounds]),
        ("(c) selector excludes canary", [r.c for r in rounds]),
        ("(d) canary gone from EndpointSlices", [r.d for r in rounds]),
        ("(c)-(a) detection to rollback", [r.c - r.a for r in rounds]),
        ("(c)-(b) decision overhead", [r.c - r.b for r in rounds]),
        ("promotion: last pass -> flip", [r.promotion for r in rounds]),
    ):
        p50, p99, worst = harness.quantiles(values)
        rows.append([label, f"{p50:.3f}", f"{p99:.3f}", f"{worst:.3f}"])
    head = (
        f"interval {interval:g}s, failure-limit {failure_limit}, {len(rounds)} rollbacks "
        "(seconds after the canary pods start failing)"
    )
    return head + "\n" + harness.table(["", "p50", "p99", "max"], rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rollbacks", type=int, default=20)
    parser.add_argument("--intervals", default="5,10")
    parser.add_argument("--failure-limit", type=int, default=1)
    parser.add_argument("--log", default="/tmp/canary-bench-controller.log")
    args = parser.parse_args()
    reports = []
    for interval in (float(i) for i in args.intervals.split(",")):
        rounds = asyncio.run(run(args.rollbacks, interval, args.failure_limit, Path(args.log)))
        reports.append(report(interval, args.failure_limit, rounds))
        print("\n" + reports[-1] + "\n", flush=True)
    print("\n\n".join(reports))


if __name__ == "__main__":
    main()
