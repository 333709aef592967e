"""Our write's answer can come back after the watch told the object's
deletion (a write sent as on-call deletes the twin, the API server paused
between them: chaos seed 34). Put into the cache then (write-through), the
deleted twin stayed there until the next re-list, which a healthy watch
never needs: every cycle replaced a twin the API server no longer had (a
404 before the cycle's other writes) and a failing canary kept serving.
The deletion is remembered: an older version of a deleted object is not
taken back in; a newer one (created again) is."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from canary.kube.resources import DEPLOYMENTS
from canary.kube.watch import Informer


def _twin(rv: int) -> dict[str, Any]:
    return {"metadata": {"name": "web-blue", "namespace": "ns", "resourceVersion": str(rv)}}


class Kube:
    def __init__(self) -> None:
        self.deleted = asyncio.Event()

    async def get(self, path: str, **query: Any) -> dict[str, Any]:
        return {"items": [_twin(5)], "metadata": {"resourceVersion": "5"}}

    async def watch(self, *_: Any, **__: Any) -> AsyncIterator[dict[str, Any]]:
        yield {"type": "DELETED", "object": _twin(7)}
        self.deleted.set()
        await asyncio.sleep(3600)


async def test_a_write_answered_after_the_deletion_does_not_bring_the_object_back() -> None:
    kube = Kube()
    cache = Informer(kube, DEPLOYMENTS)  # type: ignore[arg-type]
    running = asyncio.create_task(cache.run())
    try:
        await asyncio.wait_for(kube.deleted.wait(), 2)
        await asyncio.sleep(0)
        assert cache.get("ns", "web-blue") is None
        cache.remember(_twin(6))  # our scale, answered before the delete took effect
        assert cache.get("ns", "web-blue") is None
        cache.remember(_twin(9))  # created again by us
        assert cache.get("ns", "web-blue") == _twin(9)
    finally:
        running.cancel()
