"""Scale: one controller and many managed Services (1 replica each).

    python -m bench.scale [--sizes 100,500,2000] [--rollouts 200] [--idle 60] [--audit]

For each size, on a sandbox of its own (enough kwok nodes for the pods):
create the Services, wait until every one is adopted, then with nothing
changing measure the controller's RSS, its CPU, and its API requests per
minute (target about 0: watches only). Restart it and time until every
Service has been reconciled again (target < 30 s at 2,000). Finally start
`--rollouts` rollouts at once and measure step lateness (when each check ran
against when it was due) and API writes per step. With --audit the
controller runs under a user of its own, and the rollouts' writes are also
counted from the API server's audit log, by resource, and per Service (where
the writes above the floor of a quiet rollout go).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import harness
from bench.peers import report
from canary.kube import Kube
from canary.kube.resources import CONFIGMAPS, DEPLOYMENTS, SERVICES
from canary.sandbox import cluster
from canary.spec import STATUS

INTERVAL_S = 10
ANALYSIS = (
    'min-requests: 0\nscrape-interval: 1s\nmetrics: [{name: up, query: "vector(1)", max: 2}]\n'
)
# --builtin: the builtin success rate on simulated traffic, with fast checks
# every scrape (what a real rollout costs Prometheus).
# A simulator starved of CPU on a shared 2-core machine can miss scrapes for
# tens of seconds; the run measures query cost, so no-data does not halt early.
BUILTIN = "min-requests: 5\nno-data-limit: 10\nmetrics: [{name: success-rate, min: 99}]\n"
WRITES = ("POST", "PUT", "PATCH", "DELETE")
# --audit: the controller runs under a user of its own, and its writes are
# also read from the API server's audit log, object by object.
USER = "canary-controller-bench"
TWIN_SUFFIXES = ("-green", "-blue", "-canary-history")


def audited_writes(log: str, began: float, ended: float) -> tuple[dict[str, int], dict[int, int]]:
    """From the audit log, the controller user's writes between `began` and
    `ended` (wall clock): counted by verb and resource, and how many
    Services had each count of writes to their own objects (the Service, its
    twins, its history, the team's Deployment; Events, named by the API
    server, are in the first count only)."""
    by_kind: dict[str, int] = {}
    per_service: dict[str, int] = {}
    for write in report.audit_writes(Path(log), [USER]):
        if not began <= write.at <= ended:
            continue
        kind = f"{write.verb} {write.resource}"
        by_kind[kind] = by_kind.get(kind, 0) + 1
        if write.resource == "events" or not write.name:
            continue
        name = write.name
        for suffix in TWIN_SUFFIXES:
            name = name.removesuffix(suffix)
        per_service[name] = per_service.get(name, 0) + 1
    counts: dict[int, int] = {}
    for n in per_service.values():
        counts[n] = counts.get(n, 0) + 1
    return by_kind, dict(sorted(counts.items()))


def proc_stats(pid: int) -> tuple[float, float]:
    """(RSS in MiB, CPU seconds used so far)."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return rss, ticks / 100.0


async def statuses(kube: Kube, ns: str) -> list[dict[str, Any]]:
    listing = await kube.get(SERVICES.path(ns))
    found = []
    for service in listing.get("items", []):
        raw = (service["metadata"].get("annotations") or {}).get(STATUS)
        found.append(json.loads(raw) if raw else {})
    return found


async def wait_all(kube: Kube, ns: str, n: int, check: Any, timeout_s: float) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        if sum(1 for s in await statuses(kube, ns) if check(s)) >= n:
            return time.monotonic() - began
        await asyncio.sleep(1)
    raise TimeoutError(f"not all {n} Services got there in {timeout_s:.0f}s")


async def api_counts(controller: harness.Controller) -> dict[str, float]:
    metrics = await controller.metrics()
    return {m: metrics.get(f'canary_api_requests{{method="{m}"}}', 0.0) for m in ("GET", *WRITES)}


async def create_many(kube: Kube, ns: str, n: int, builtin: bool) -> None:
    annotations = {
        "canary.io/strategy": "canary",
        "canary.io/steps": "25,50,75",
        "canary.io/interval": f"{INTERVAL_S}s",
        "canary.io/analysis": BUILTIN if builtin else ANALYSIS,
        "canary.io/scale-down-delay": "0s",
    }
    if builtin:
        annotations["sandbox.canary.io/rps"] = "10"
    limit = asyncio.Semaphore(20)

    async def one(i: int) -> None:
        async with limit:
            await harness.create_app(kube, ns, f"app-{i:05d}", 1, annotations, simulate=builtin)

    await asyncio.gather(*(one(i) for i in range(n)))


async def prometheus_queries(url: str) -> float:
    """Queries Prometheus has answered (instant and range), from its own metrics."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        text = await response.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("prometheus_http_requests_total{") and (
            'handler="/api/v1/query"' in line or 'handler="/api/v1/query_range"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def checks_lateness(kube: Kube, ns: str, services: list[str]) -> list[float]:
    """For each check the Services' histories hold (one per step analysed):
    how long its window ran past the interval."""
    lateness = []
    for name in services:
        cm = await kube.get(CONFIGMAPS.path(ns, f"{name}-canary-history"))
        for record in json.loads(cm["data"]["history.json"]):
            for check in record.get("checks", []):
                start = min(m["start"] for m in check["measurements"])
                end = max(m["end"] for m in check["measurements"])
                lateness.append(end - start - INTERVAL_S)
    return lateness


async def size_run(
    n: int, rollouts: int, idle_s: float, log: Path, builtin: bool = False, audit: bool = False
) -> dict[str, Any]:
    nodes = max(3, math.ceil(2.5 * n / 250))
    options = cluster.Options(users=(USER,), audit=True) if audit else None
    user = USER if audit else ""
    with harness.sandbox(nodes=nodes, options=options) as box:
        async with await harness.client(box) as kube, harness.namespace(kube, "scale") as ns:
            controller = harness.Controller(box, ns, log, user)
            await controller.ready()
            began = time.monotonic()
            await create_many(kube, ns, n, builtin)
            adopt_s = await wait_all(kube, ns, n, lambda s: s.get("phase") == "Healthy", 1800)
            print(f"  {n}: all adopted in {time.monotonic() - began:.0f}s", flush=True)
            await asyncio.sleep(10)  # let the last writes settle
            _, cpu0 = proc_stats(controller.popen.pid)
            api0 = await api_counts(controller)
            await asyncio.sleep(idle_s)
            rss1, cpu1 = proc_stats(controller.popen.pid)
            api1 = await api_counts(controller)
            idle_cpu = (cpu1 - cpu0) / idle_s * 100
            idle_api = sum(api1[m] - api0[m] for m in api0) / idle_s * 60
            # Restart: time until every Service has been reconciled again.
            controller.stop()
            restarted = harness.Controller(box, ns, log, user)
            t0 = time.monotonic()
            while True:
                try:
                    reconciled = (await restarted.metrics()).get("canary_reconciles_total", 0)
                except aiohttp.ClientError:  # not listening yet
                    reconciled = 0
                if reconciled >= n:
                    break
                await asyncio.sleep(0.2)
            resume_s = time.monotonic() - t0
            controller = restarted
            # Concurrent rollouts.
            chosen = [f"app-{i:05d}" for i in range(min(rollouts, n))]
            writes0 = await api_counts(controller)
            prometheus = next(p for p in box.procs if p.name == "prometheus")
            queries0, (_, prom_cpu0), rolled_at = (
                await prometheus_queries(box.prometheus_url),
                proc_stats(prometheus.pid),
                time.monotonic(),
            )
            released = time.time()
            for name in chosen:
                await kube.patch(
                    DEPLOYMENTS.path(ns, name),
                    {
                        "spec": {
                            "template": {
                                "spec": {
                                    "containers": [{"name": "app", "image": "r.example/app:1"}]
                                }
                            }
                        }
                    },
                    patch_type="strategic",
                )
            await wait_all(
                kube,
                ns,
                len(chosen),
                lambda s: s.get("phase") == "Healthy" and s.get("stable") == "green",
                900,
            )
            writes1 = await api_counts(controller)
            settled = time.time()
            rolled_s = time.monotonic() - rolled_at
            queries = await prometheus_queries(box.prometheus_url) - queries0
            prom_cpu = (proc_stats(prometheus.pid)[1] - prom_cpu0) / rolled_s * 100
            lateness = await checks_lateness(kube, ns, chosen)
            steps = len(lateness)
            p50, p99, worst = harness.quantiles(lateness)
            writes = sum(writes1[m] - writes0[m] for m in WRITES)
            controller.stop()
            audited = audited_writes(box.audit_log, released, settled) if audit else ({}, {})
            return {
                "services": n,
                "adopt_s": adopt_s,
                "rss_mib": rss1,
                "idle_cpu_pct": idle_cpu,
                "idle_api_per_min": idle_api,
                "resume_s": resume_s,
                "rollouts": len(chosen),
                "steps": steps,
                "lateness_p50": p50,
                "lateness_p99": p99,
                "lateness_max": worst,
                "writes_per_step": writes / max(steps, 1),
                "writes_per_rollout": writes / max(len(chosen), 1),
                "queries_per_service_min": queries / max(len(chosen), 1) / (rolled_s / 60),
                "prometheus_cpu_pct": prom_cpu,
                "rollouts_s": rolled_s,
                # --audit: the API server's count (verb resource -> writes),
                # and writes to a Service's own objects -> how many Services.
                "audit_writes": audited[0],
                "services_by_writes": audited[1],
            }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,500,2000")
    parser.add_argument("--rollouts", type=int, default=200)
    parser.add_argument("--idle", type=float, default=60)
    parser.add_argument("--log", default="/tmp/canary-bench-scale.log")
    parser.add_argument(
        "--builtin",
        action="store_true",
        help="builtin success-rate on simulated traffic (fast checks) instead of vector(1)",
    )
    parser.add_argument(
        "--audit",
        action="store_true",
        help="also count the rollouts' writes from the API server's audit log, by resource",
    )
    args = parser.parse_args()
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        results.append(
            asyncio.run(
                size_run(n, args.rollouts, args.idle, Path(args.log), args.builtin, args.audit)
            )
        )
        print(json.dumps(results[-1]), flush=True)
    rows = [
        [
            f"{r['services']:.0f}",
            f"{r['rss_mib']:.0f}",
            f"{r['idle_cpu_pct']:.1f}",
            f"{r['idle_api_per_min']:.1f}",
            f"{r['resume_s']:.1f}",
            f"{r['rollouts']:.0f}",
            f"{r['lateness_p50']:.2f}",
            f"{r['lateness_p99']:.2f}",
            f"{r['writes_per_step']:.1f}",
            f"{r['writes_per_rollout']:.1f}",
            f"{r['queries_per_service_min']:.0f}",
            f"{r['prometheus_cpu_pct']:.0f}",
        ]
        for r in results
    ]
    print(
        harness.table(
            [
                "services",
                "RSS MiB",
                "idle CPU %",
                "idle API req/min",
                "resume s",
                "rollouts",
                "lateness p50 s",
                "lateness p99 s",
                "writes/step",
                "writes/rollout",
                "queries/Service/min",
                "Prometheus CPU %",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
