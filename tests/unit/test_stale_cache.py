"""A cache that cannot be refreshed (every list and watch refused, e.g. a
403 after an RBAC change) keeps answering with what it last saw: it says so,
so /readyz can, instead of staying ready on an old picture."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from canary.kube import ApiError
from canary.kube.resources import SERVICES
from canary.kube.watch import Informer


class Refusing:
    """Lists once, then refuses every list and watch until `allowed`."""

    def __init__(self) -> None:
        self.allowed = True
        self.lists = 0
        self.watches = 0

    async def get(self, path: str, **_: Any) -> dict[str, Any]:
        self.lists += 1
        if not self.allowed:
            raise ApiError(403, "Forbidden", "services is forbidden")
        return {"items": [], "metadata": {"resourceVersion": "1"}}

    async def watch(self, *_: Any, **__: Any) -> AsyncIterator[dict[str, Any]]:
        if not self.allowed:
            raise ApiError(403, "Forbidden", "services is forbidden")
        self.watches += 1
        if self.watches == 1:
            self.allowed = False  # the RBAC change lands: this watch ends, and access too
            return
        await asyncio.sleep(3600)  # access back: the watch stays open
        yield {}


async def test_a_cache_refused_for_longer_than_the_limit_is_stale() -> None:
    kube = Refusing()
    cache = Informer(kube, SERVICES)  # type: ignore[arg-type]
    running = asyncio.create_task(cache.run())
    try:
        await asyncio.wait_for(cache.synced.wait(), 2)
        for _ in range(200):
            if cache.failing_since is not None:
                break
            await asyncio.sleep(0.01)
        since = cache.failing_since
        assert since is not None
        assert not cache.stale(60, now=since + 5)  # a blip
        assert cache.stale(60, now=since + 61)
        kube.allowed = True  # fixed: the next list clears it
        for _ in range(300):
            if cache.failing_since is None:
                break
            await asyncio.sleep(0.01)
        assert cache.failing_since is None and not cache.stale(60)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
