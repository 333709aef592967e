"""The dashboard as on-call uses it: a real browser (Debian's chromium, headless)
against the real controller on the sandbox. Nothing is reloaded by the test
unless a person would click a link; live changes must arrive by themselves.
Screenshots land in artifacts/browser/ (or $CANARY_ARTIFACTS)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from canary.dashboard.app import Options, serving
from canary.kube import Kube
from canary.kube.resources import DEPLOYMENTS, SERVICES
from canary.sandbox import cluster
from tests.integration.browser import Browser
from tests.integration.conftest import RunningController
from tests.integration.helpers import deployment, managed_service
from tests.integration.test_rollouts import release, selector, wait_phase

ANALYSIS = (
    "scrape-interval: 1s\nmin-requests: 10\nno-data-limit: 2\n"
    "metrics:\n  - {name: error-rate, max: 5}\n  - {name: latency-p99-ms, max: 400}\n"
)
BAD = {"sandbox.canary.io/error-rate": "0.5"}


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    started = await Browser.start(tmp_path / "profile")
    try:
        yield started
    finally:
        with contextlib.suppress(Exception):
            await started.screenshot(f"last-{tmp_path.name}.png")  # what it saw when it ended
        await started.quit()


@contextlib.asynccontextmanager
async def dashboard(sandbox: cluster.Sandbox, namespace: str) -> AsyncIterator[str]:
    options = Options(sandbox.kubeconfig, None, (namespace,), "127.0.0.1:0")
    async with serving(options) as (_, url, _):
        yield url.rstrip("/")


async def deploy(
    kube: Kube,
    namespace: str,
    name: str,
    strategy: str = "canary",
    analysis: str = ANALYSIS,
    **extra: str,
) -> None:
    await kube.create(DEPLOYMENTS.path(namespace), deployment(name, 3, {"app": name}))
    service = managed_service(name, strategy, True, analysis=analysis, **extra)
    await kube.create(SERVICES.path(namespace), service)


@contextlib.asynccontextmanager
async def held_gates() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """Gates on loopback that hold a rollout where the test needs it: the
    pre-step gate's answer (open) waits until the Event is set, so the
    rollout stands at its first step (still Progressing: a gate in flight
    is no closed gate) for as long as the browser takes to get there; the
    pre-promotion gate is closed (503), so it never promotes by itself."""
    go = asyncio.Event()

    async def step(_: web.Request) -> web.Response:
        await go.wait()
        return web.Response(text="let through by the test")

    async def promotion(_: web.Request) -> web.Response:
        return web.Response(status=503, text="held by the test")

    app = web.Application()
    app.router.add_post("/step", step)
    app.router.add_post("/promotion", promotion)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", go
    finally:
        go.set()  # a pending answer ends, so the server can stop
        await runner.cleanup()


def row_phase(driver: WebDriver, key: str) -> str:
    row = driver.find_element(By.CSS_SELECTOR, f'tr[data-key="{key}"]')
    return str(row.get_attribute("data-phase"))


def current_step(driver: WebDriver) -> int:
    """Index of the step the strip shows as current (-1: none)."""
    cells = driver.find_elements(By.CSS_SELECTOR, "#strip li.cell")
    states = [c.get_attribute("data-state") for c in cells]
    return states.index("current") if "current" in states else -1


def _containing(text: str, wanted: str) -> str:
    return text if wanted in text else ""


async def mark_page(browser: Browser) -> None:
    """A value that lives only as long as this page: a reload would lose it."""
    await browser.js("window.__notReloaded = true;")


async def still_same_page(browser: Browser) -> bool:
    return bool(await browser.js("return window.__notReloaded === true;"))


async def test_on_call_watches_a_rollout_advance_live_and_aborts_it_from_the_page(
    kube: Kube,
    sandbox: cluster.Sandbox,
    namespace: str,
    controller: RunningController,
    browser: Browser,
) -> None:
    # The gates hold the rollout, not the clock: it waits at its first step
    # until the page shows that step, and never promotes by itself. Before,
    # 5 steps of 6 s had to outlast every browser action up to the abort: on
    # a loaded machine the page could first see the last step (no advance
    # left to watch) or the abort land after the promotion.
    async with held_gates() as (hooks, go), dashboard(sandbox, namespace) as url:
        gates = (
            "gates:\n"
            f"  - {{name: watched, when: pre-step, url: '{hooks}/step', timeout: 60s}}\n"
            f"  - {{name: never, when: pre-promotion, url: '{hooks}/promotion', retries: 0}}\n"
        )
        await deploy(
            kube, namespace, "web", analysis=ANALYSIS + gates, steps="10,20,30,40,50", interval="6s"
        )
        await deploy(kube, namespace, "checkout", "blue-green")
        await wait_phase(kube, namespace, "Healthy")
        await browser.open(f"{url}/")
        web, checkout = f"{namespace}/web", f"{namespace}/checkout"
        await browser.until("both Services listed", lambda d: row_phase(d, checkout) == "Healthy")
        assert await browser.until("web listed", lambda d: row_phase(d, web)) == "Healthy"
        await browser.until("live", lambda d: d.find_element(By.ID, "live").text == "live")
        await mark_page(browser)

        await release(kube, namespace, "registry.example/web:v2")
        await browser.until("web progressing", lambda d: row_phase(d, web) == "Progressing")
        await browser.until(
            "the weight bar shows the canary's share",
            lambda d: (
                "%" in d.find_element(By.CSS_SELECTOR, f'tr[data-key="{web}"] .weight-text').text
            ),
        )
        assert await still_same_page(browser), "the overview was reloaded instead of updated"
        await browser.screenshot("overview.png")

        await browser.click(f'tr[data-key="{web}"] a.service-link')
        await browser.until("the step strip", lambda d: current_step(d) >= 0)
        await mark_page(browser)
        first = await browser.run(current_step)
        assert first == 0  # held by its pre-step gate until now
        go.set()
        advanced = await browser.until(
            "the strip moves to the next step by itself",
            lambda d: current_step(d) > first and current_step(d),
            timeout_s=45,
        )
        assert advanced > first and await still_same_page(browser)
        assert (await kube.get(SERVICES.path(namespace, "web")))["metadata"]["annotations"][
            "canary.io/status"
        ]

        await browser.click("#head a.button.abort")
        consequence = await browser.text(".consequence")
        assert "All traffic goes back to the stable blue twin" in consequence
        await browser.click("#confirm")
        await browser.until(
            "the flash says the request was made",
            lambda d: "abort" in d.find_element(By.CSS_SELECTOR, ".flash").text,
        )
        await browser.until(
            "the page shows the rollback",
            lambda d: d.find_element(By.CSS_SELECTOR, "#head .badge").text == "RolledBack",
        )
        events = await browser.until(
            "the Events name who aborted",
            lambda d: _containing(d.find_element(By.ID, "events").text, "Aborted"),
        )
        assert "canary-dashboard-canary-admin" in events
        strip = await browser.run(
            lambda d: [
                c.get_attribute("data-state")
                for c in d.find_elements(By.CSS_SELECTOR, "#strip li.cell")
            ]
        )
        assert "failed" in strip
    # What the page said is what the cluster did.
    status = await wait_phase(kube, namespace, "RolledBack", timeout_s=10)
    assert status["stable"] == "blue" and status["canary"] is None
    assert await selector(kube, namespace) == {"app": "web", "canary.io/twin": "blue"}
    assert not [e for e in await browser.console_errors() if "favicon" not in e]


FAILING_POINTS_JS = """
const u = window.canaryCharts[arguments[0]];
if (!u) return null;
const fail = u.keys.indexOf("fail"), max = u.keys.indexOf("max");
const ctx = u.ctx, out = [];
u.data[fail].forEach((v, i) => {
  if (v === null) return;
  const x = u.valToPos(u.data[0][i], "x", true), y = u.valToPos(v, "y", true);
  const pixel = ctx.getImageData(Math.round(x), Math.round(y), 1, 1).data;
  out.push({
    value: v,
    threshold: u.data[max][i],
    y: u.valToPos(v, "y"),
    thresholdY: u.valToPos(u.data[max][i], "y"),
    rgb: [pixel[0], pixel[1], pixel[2]],
  });
});
return out;
"""


async def test_a_rolled_back_revisions_chart_shows_its_failing_points_above_the_threshold(
    kube: Kube,
    sandbox: cluster.Sandbox,
    namespace: str,
    controller: RunningController,
    browser: Browser,
) -> None:
    await deploy(kube, namespace, "web", failure_limit="1")
    await wait_phase(kube, namespace, "Healthy")
    await release(kube, namespace, "registry.example/web:v2", BAD)
    await wait_phase(kube, namespace, "RolledBack", timeout_s=90)
    async with dashboard(sandbox, namespace) as url:
        await browser.open(f"{url}/s/{namespace}/web")
        strip = await browser.run(
            lambda d: [
                c.get_attribute("data-state")
                for c in d.find_elements(By.CSS_SELECTOR, "#strip li.cell")
            ]
        )
        assert strip[0] == "failed", strip
        await browser.click("#revisions tbody tr:first-child a")
        points: list[dict[str, Any]] = await browser.until(
            "the error-rate chart is drawn",
            lambda d: d.execute_script(FAILING_POINTS_JS, "error-rate"),
        )
        assert len(points) >= 2, points  # failure-limit 1: the second failure rolled back
        for point in points:
            assert point["value"] > point["threshold"] == 5
            assert point["y"] < point["thresholdY"], point  # drawn above the threshold line
            red, green, blue = point["rgb"]
            assert red > 150 and green < 110 and blue < 110, point  # a red (failing) marker
        rows = await browser.run(
            lambda d: [
                r.text
                for r in d.find_elements(
                    By.CSS_SELECTOR, '.metric[data-metric="error-rate"] tr[data-verdict="fail"]'
                )
            ]
        )
        assert len(rows) == len(points) and all("<= 5" in r for r in rows)
        assert "rolled-back" in await browser.text("#timeline .facts")
        await browser.screenshot("timeline.png")
    assert not [e for e in await browser.console_errors() if "favicon" not in e]
