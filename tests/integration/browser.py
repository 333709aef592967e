"""A real browser for the dashboard tests: Debian's chromium driven through its
chromedriver (W3C WebDriver, by selenium), headless, with a fresh profile.

Selenium blocks, and the controller and the dashboard under test run in this
event loop, so every browser call runs in a thread."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1500,950",
)
ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def artifacts() -> Path:
    """Where screenshots go: $CANARY_ARTIFACTS, else artifacts/browser in the checkout."""
    path = Path(os.environ.get("CANARY_ARTIFACTS") or ROOT / "artifacts" / "browser")
    path.mkdir(parents=True, exist_ok=True)
    return path


class Browser:
    def __init__(self, profile: Path) -> None:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        # An explicit driver path: selenium never looks for (or downloads) a driver.
        self.driver: webdriver.Chrome = webdriver.Chrome(
            options=options, service=Service(CHROMEDRIVER)
        )

    @classmethod
    async def start(cls, profile: Path) -> Browser:
        return await asyncio.to_thread(cls, profile)

    async def quit(self) -> None:
        await asyncio.to_thread(self.driver.quit)

    async def run(self, action: Callable[[WebDriver], T]) -> T:
        return await asyncio.to_thread(action, self.driver)

    async def open(self, url: str) -> None:
        await self.run(lambda d: d.get(url))

    async def js(self, script: str, *args: Any) -> Any:
        return await self.run(lambda d: d.execute_script(script, *args))

    async def text(self, css: str, timeout_s: float = 10) -> str:
        return await self.until(
            f"text of {css}", lambda d: d.find_element(By.CSS_SELECTOR, css).text, timeout_s
        )

    async def click(self, css: str, timeout_s: float = 10) -> None:
        """Click as a person would; a part swapped by a live update is found again."""

        def press(d: WebDriver) -> bool:
            d.find_element(By.CSS_SELECTOR, css).click()
            return True

        await self.until(f"click {css}", press, timeout_s)

    async def until(self, what: str, probe: Callable[[WebDriver], T], timeout_s: float = 60) -> T:
        """Wait on what the page shows (the page's own DOM; no reload)."""

        def wait(d: WebDriver) -> T:
            def attempt(driver: WebDriver) -> T | bool:
                try:
                    return probe(driver)
                except WebDriverException:
                    return False  # the part was being replaced; look again

            return WebDriverWait(d, timeout_s, poll_frequency=0.2).until(attempt, message=what)  # type: ignore[return-value]

        return await self.run(wait)

    async def screenshot(self, name: str) -> Path:
        path = artifacts() / name
        await self.run(lambda d: d.save_screenshot(str(path)))
        return path

    async def console_errors(self) -> list[str]:
        logs = await asyncio.to_thread(self.driver.get_log, "browser")
        return [str(e["message"]) for e in logs if e.get("level") == "SEVERE"]
