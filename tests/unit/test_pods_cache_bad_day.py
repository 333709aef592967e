"""The twins' pods cache only vetoes what the EndpointSlices say
(observe.vetoed). Found by review: without it (the image upgraded before its
ClusterRole grants pods) the controller never synced at all, and a cache
whose watch had stopped kept vetoing from what it last saw."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from canary.controller import Controller
from canary.kube import ApiError
from canary.kube.resources import PODS
from canary.kube.watch import Informer
from canary.observe import slim_pod
from canary.reconcile import Caches, Edges, Reconciler
from tests.unit.test_publish_not_ready import _pod


class _NoPods:
    """An API server that lists every kind but refuses pods (the
    ClusterRole of the release before: no pods rule)."""

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}

    async def get(self, path: str, **_: Any) -> dict[str, Any]:
        if path.endswith("/pods"):
            raise ApiError(403, "Forbidden", "pods is forbidden")
        return {"items": [], "metadata": {"resourceVersion": "1"}}

    async def watch(self, *_: Any, **__: Any) -> AsyncIterator[dict[str, Any]]:
        await asyncio.sleep(3600)
        yield {}


async def test_a_controller_without_pods_rbac_still_syncs() -> None:
    # Before: Controller.run waited for every cache before the first
    # reconcile: nothing reconciled at all, /readyz 503 for good.
    controller = Controller(Edges(kube=_NoPods(), prometheus=None))  # type: ignore[arg-type]
    running = asyncio.create_task(controller.run())
    try:
        await asyncio.wait_for(controller.synced.wait(), 3)
        assert controller.ready()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


def _reconciler(pods: Informer) -> Reconciler:
    other = Informer(None, PODS)  # type: ignore[arg-type]
    caches = Caches(other, other, other, other, other, None, pods)
    return Reconciler(Edges(kube=None, prometheus=None), caches)  # type: ignore[arg-type]


def test_a_pods_cache_whose_watch_fails_vetoes_nothing() -> None:
    # Its watch refused (the rule dropped, a proxy failing only that watch):
    # a pod it last saw starting would stay "not Ready" and veto its
    # endpoint for good: a step never has its pods (the deadline rolls a
    # good release back), a stable twin stays Degraded.
    pods = Informer(None, PODS, slim=slim_pod)  # type: ignore[arg-type]
    pods.remember(_pod("web-green-5d4f-a", "False"))
    reconciler = _reconciler(pods)
    assert reconciler._pods("ns") is None  # not listed yet
    pods.synced.set()
    pod_of = reconciler._pods("ns")
    assert pod_of is not None and pod_of("web-green-5d4f-a") == slim_pod(
        _pod("web-green-5d4f-a", "False")
    )
    pods.failing_since = 0.0
    assert reconciler._pods("ns") is None
