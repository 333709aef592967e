"""`canary run` as a real child process against a sandbox, with its metrics
on a loopback port: for the demo, the process tests and the benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from canary.sandbox.cluster import Sandbox, free_port

_ROOT = Path(__file__).resolve().parents[2]


class ControllerProcess:
    def __init__(self, sandbox: Sandbox, log: Path, args: Sequence[str] = ()) -> None:
        self.port = free_port()
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "canary",
                    "run",
                    "--kubeconfig",
                    sandbox.kubeconfig,
                    "--prometheus-url",
                    sandbox.prometheus_url,
                    "--metrics-address",
                    f"127.0.0.1:{self.port}",
                    *args,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=_ROOT,
            )

    async def metrics(self) -> dict[str, float]:
        """Its /metrics as `name{labels}` -> value."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self.port}/metrics") as response,
        ):
            text = await response.text()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    async def value(self, name: str) -> float:
        """One metric; -1 while the process does not answer."""
        try:
            return (await self.metrics()).get(name, 0.0)
        except aiohttp.ClientError:
            return -1.0

    async def ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"http://127.0.0.1:{self.port}/readyz") as response,
                ):
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
        raise TimeoutError("the controller did not become ready")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
