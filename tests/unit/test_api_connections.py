"""The API client's connections are shared by every watch, every reconcile
and the leader's Lease renewals (canary/kube/api.py, canary/run.py).

kubernetes_asyncio's client holds at most `connection_pool_maxsize`
connections (100 by default), and over HTTP/1.1 each watch holds one for as
long as it runs (5 minutes, then again). With `--namespace` naming several
namespaces every cached kind is watched in each of them: 7 watches a
namespace. At 15 namespaces the watches alone wanted 105 of the 100: the
last ones wait for a connection with no time limit, the caches never sync,
and the controller never leads. At 10, 70 watches leave 30 connections to
32 reconciles and the Lease: writes answered in 10-30 s (a slow admission
webhook on Deployments) held them, and every other Service's rollback
waited for a connection, and so did the Lease renewal, whose 10 s renew
deadline then passes: the leader exits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from canary.controller import Controller
from canary.kube import connect
from canary.reconcile import Edges

NAMESPACES = tuple(f"team-{i}" for i in range(20))
RECONCILES = 32  # Controller's max_concurrent
LEASE = 1


class _Watched:
    """Counts the watches the controller holds open at once."""

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}
        self.watching = 0

    async def get(self, *_: Any, **__: Any) -> dict[str, Any]:
        return {"items": [], "metadata": {"resourceVersion": "1"}}

    async def watch(self, *_: Any, **__: Any) -> AsyncIterator[dict[str, Any]]:
        self.watching += 1
        await asyncio.sleep(3600)
        yield {}


async def _watches(namespaces: tuple[str, ...]) -> int:
    kube = _Watched()
    controller = Controller(Edges(kube=kube, prometheus=None), namespaces=namespaces)  # type: ignore[arg-type]
    running = asyncio.create_task(controller.run())
    for _ in range(200):
        await asyncio.sleep(0)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    return kube.watching


KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


async def _connections(kubeconfig: Path) -> int:
    kube = await connect(str(kubeconfig))  # builds the client; connects to nothing
    try:
        limit: int = kube.api_client.rest_client.pool_manager.connector.limit
        return limit
    finally:
        await kube.close()


def test_the_api_client_has_a_connection_for_every_watch_the_reconciles_and_the_lease(
    tmp_path: Path,
) -> None:
    watches = asyncio.run(_watches(NAMESPACES))
    assert watches == 7 * len(NAMESPACES), watches
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    limit = asyncio.run(_connections(path))  # aiohttp: 0 is no limit
    needed = watches + RECONCILES + LEASE
    assert limit == 0 or limit >= needed, (
        f"{limit} connections for {watches} watches, {RECONCILES} reconciles and the Lease"
    )
