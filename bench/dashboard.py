"""The dashboard with many managed Services.

    python -m bench.dashboard [--services 500] [--loads 10]

Creates the Services through the real API server of a sandbox (each with a
status annotation, phases mixed, and a history ConfigMap of three revisions
with their checks), starts `canary dashboard` as a process, and measures:
the time until its caches hold them all, the overview's server time and size,
the overview's load in headless chromium (Navigation Timing: HTML received,
DOM ready, load; skipped when chromium is not installed), how long a status
change takes to reach an open tab, and the dashboard's memory.
No controller runs: the statuses are written by the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import harness
from canary.kube import Kube
from canary.kube.resources import CONFIGMAPS, SERVICES
from canary.sandbox.cluster import free_port

NAMESPACE = "bench-dashboard"
PHASES = ("Healthy",) * 6 + ("Progressing",) * 2 + ("RolledBack", "Paused")


def status(i: int, rng: random.Random) -> dict[str, Any]:
    phase = PHASES[i % len(PHASES)]
    flying = phase in ("Progressing", "Paused")
    return {
        "phase": phase,
        "deployment": f"app-{i}",
        "stable": "blue",
        "stable_revision": f"r{i}a",
        "canary": "green" if flying else None,
        "canary_revision": f"r{i}c" if flying else "",
        "step": rng.randrange(3) if flying else 0,
        "requested_weight": 25 if flying else 0,
        "effective_weight": 25.0 if flying else 0.0,
        "step_ready": time.time() - rng.uniform(0, 60),
        "failed_revision": f"r{i}b" if phase == "RolledBack" else "",
        "message": f"{phase.lower()} at step 2/3" if flying else f"serving r{i}a",
    }


def history(i: int, now: float) -> list[dict[str, Any]]:
    records = []
    for n, (revision, outcome) in enumerate(
        ((f"r{i}a", "promoted"), (f"r{i}b", "rolled-back"), (f"r{i}c", "progressing")), start=1
    ):
        checks = [
            {
                "step": step,
                "weight": 25 * step,
                "effective_weight": 25.0 * step,
                "verdict": "pass",
                "decided": "advance",
                "measurements": [
                    {
                        "metric": metric,
                        "twin": "green",
                        "query": f'sum(rate(http_requests_total{{pod=~"app-{i}-green-.*"}}[30s]))',
                        "start": now - 300 + 30 * step,
                        "end": now - 270 + 30 * step,
                        "value": value,
                        "threshold": threshold,
                        "verdict": "pass",
                        "duration_ms": 8.0,
                    }
                    for metric, value, threshold in (
                        ("requests", 900.0, ">= 20"),
                        ("success-rate", 99.7, ">= 99"),
                    )
                ],
            }
            for step in (1, 2, 3, 4)
        ]
        records.append(
            {
                "number": n,
                "revision": revision,
                "images": [f"registry.example/app-{i}:v{n}"],
                "template": {"spec": {"containers": [{"name": "app"}]}},
                "started": now - 400,
                "ended": now - 200,
                "outcome": outcome,
                "reason": "all steps passed",
                "checks": checks,
                "actions": [{"at": now - 400, "reason": "RolloutStarted", "message": "started"}],
            }
        )
    return records


async def create(kube: Kube, count: int) -> None:
    rng = random.Random(13)
    now = time.time()
    semaphore = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        name = f"app-{i}"
        async with semaphore:
            await kube.create(
                SERVICES.path(NAMESPACE),
                {
                    "metadata": {
                        "name": name,
                        "annotations": {
                            "canary.io/strategy": "canary",
                            "canary.io/steps": "25,50,75",
                            "canary.io/status": json.dumps(status(i, rng)),
                        },
                    },
                    "spec": {"ports": [{"port": 80}]},
                },
            )
            await kube.create(
                CONFIGMAPS.path(NAMESPACE),
                {
                    "metadata": {
                        "name": f"{name}-canary-history",
                        "labels": {"canary.io/service": name, "canary.io/history": "true"},
                    },
                    "data": {"history.json": json.dumps(history(i, now))},
                },
            )

    await asyncio.gather(*(one(i) for i in range(count)))


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def wait_rows(url: str, count: int, timeout_s: float = 120) -> float:
    began = time.monotonic()
    async with aiohttp.ClientSession() as http:
        while time.monotonic() - began < timeout_s:
            try:
                async with http.get(url) as response:
                    if (await response.text()).count('class="service-link"') >= count:
                        return time.monotonic() - began
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"the overview never listed {count} Services")


async def server_times(url: str, loads: int) -> tuple[list[float], int]:
    times, size = [], 0
    async with aiohttp.ClientSession() as http:
        for _ in range(loads):
            began = time.perf_counter()
            async with http.get(url) as response:
                body = await response.read()
            times.append(time.perf_counter() - began)
            size = len(body)
    return times, size


def browser_times(url: str, loads: int, count: int) -> list[dict[str, float]] | None:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None
    if not Path("/usr/bin/chromium").exists() or not Path("/usr/bin/chromedriver").exists():
        return None
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as profile:
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--window-size=1500,950",
            f"--user-data-dir={profile}",
        ):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
        try:
            found = []
            for _ in range(loads):
                driver.get(url)
                rows = driver.execute_script("return document.querySelectorAll('#rows tr').length")
                assert rows == count, rows
                timing = driver.execute_script(
                    "const t = performance.getEntriesByType('navigation')[0];"
                    "return {html: t.responseEnd, dom: t.domContentLoadedEventEnd,"
                    " load: t.loadEventEnd};"
                )
                found.append({k: float(v) / 1000 for k, v in timing.items()})
            return found
        finally:
            driver.quit()


async def update_latency(url: str, kube: Kube, samples: int) -> list[float]:
    """A status change written to the API server until it reaches an open tab."""
    latencies = []
    async with aiohttp.ClientSession() as http:
        for n in range(samples):
            name = f"app-{n}"
            marker = f"bench-marker-{n}-{time.time_ns()}"
            async with http.get(f"{url}stream?view=overview&namespace=&phase=") as response:
                await response.content.readline()  # the stream is open
                await asyncio.sleep(0.3)
                began = time.perf_counter()
                await kube.patch(
                    SERVICES.path(NAMESPACE, name),
                    {
                        "metadata": {
                            "annotations": {
                                "canary.io/status": json.dumps(
                                    {"phase": "Halted", "message": marker}
                                )
                            }
                        }
                    },
                )
                async with asyncio.timeout(30):
                    async for line in response.content:
                        if marker.encode() in line:
                            latencies.append(time.perf_counter() - began)
                            break
    return latencies


def ms(values: list[float]) -> str:
    p50, p99, top = harness.quantiles(values)
    return f"{p50 * 1000:.0f} / {p99 * 1000:.0f} / {top * 1000:.0f}"


async def run(count: int, loads: int) -> None:
    with harness.sandbox() as box:
        kube = await harness.client(box)
        try:
            async with harness.namespace(kube, NAMESPACE):
                began = time.monotonic()
                await create(kube, count)
                took = time.monotonic() - began
                print(f"created {count} Services and history ConfigMaps in {took:.0f}s")
                port = free_port()
                url = f"http://127.0.0.1:{port}/"
                with tempfile.NamedTemporaryFile(prefix="dashboard-", suffix=".log") as log:
                    process = await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "canary", "dashboard",
                        "--kubeconfig", box.kubeconfig,
                        "-n", NAMESPACE,
                        "--address", f"127.0.0.1:{port}",
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        cwd=harness.ROOT,
                    )  # fmt: skip
                    try:
                        synced = await wait_rows(url, count)
                        server, size = await server_times(url, loads)
                        browser = await asyncio.to_thread(browser_times, url, loads, count)
                        updates = await update_latency(url, kube, 20)
                        memory = rss_mib(process.pid)
                    finally:
                        process.terminate()
                        await asyncio.wait_for(process.wait(), 30)
        finally:
            await kube.close()
    rows = [
        ["start until all listed", f"{synced:.1f} s"],
        ["overview server time p50 / p99 / max", f"{ms(server)} ms ({size / 1024:.0f} KiB HTML)"],
    ]
    if browser:
        for key, label in (("html", "HTML received"), ("dom", "DOM ready"), ("load", "load")):
            rows.append(
                [f"chromium: {label} p50 / p99 / max", f"{ms([b[key] for b in browser])} ms"]
            )
    else:
        rows.append(["chromium", "not installed (hack/browser.sh): skipped"])
    rows += [
        ["status change to an open tab p50 / p99 / max", f"{ms(updates)} ms"],
        ["dashboard RSS", f"{memory:.0f} MiB"],
    ]
    print(f"\n{count} managed Services, {loads} loads")
    print(harness.table(["what", "measured"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, default=500)
    parser.add_argument("--loads", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(run(args.services, args.loads))


if __name__ == "__main__":
    main()
