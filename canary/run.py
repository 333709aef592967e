"""`canary run`: the controller process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from analysis.prometheus import Prometheus, PrometheusConfig
from analysis.provider import QueryError
from canary.controller import Controller
from canary.kube import connect

log = logging.getLogger("canary")


class StartupError(RuntimeError):
    pass


async def run_controller(
    *,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    prometheus: PrometheusConfig,
) -> None:
    provider = Prometheus(prometheus)
    try:
        await provider.check()
    except QueryError as exc:
        provider.close()
        raise StartupError(
            f"cannot query Prometheus at {prometheus.url}: {exc}. "
            "Check --prometheus-url (or PROMETHEUS_URL) and its credentials"
        ) from exc
    kube = await connect(kubeconfig, context)
    controller = Controller(kube, provider, namespace=namespace)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(controller.run(), name="controller")
    try:
        done, _ = await asyncio.wait(
            [task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            task.result()  # a crash surfaces here
        log.info("stopping")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await controller.stop()
        await kube.close()
        provider.close()
