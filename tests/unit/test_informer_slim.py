"""An informer that slims what it holds (the twins' pods: name and
readiness) slims both what it lists and what it is told by the watch, still
drops a watch event older than what it holds, and tells no change to what
it dropped (a pod's IP): each would wake its Service for nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from canary.kube.resources import PODS
from canary.kube.watch import Informer, WatchEvent
from canary.observe import pod_serves, slim_pod


def _pod(name: str, rv: int, ready: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": str(rv), "uid": name},
        "spec": {"containers": [{"name": "app", "image": "web:v2"}]},
        "status": {"conditions": [{"type": "Ready", "status": ready}]},
    }


class Kube:
    def __init__(self) -> None:
        self.queries: list[dict[str, Any]] = []

    async def get(self, path: str, **query: Any) -> dict[str, Any]:
        self.queries.append(query)
        return {"items": [_pod("a", 5, "True")], "metadata": {"resourceVersion": "5"}}

    async def watch(self, *_: Any, **__: Any) -> AsyncIterator[dict[str, Any]]:
        yield {"type": "MODIFIED", "object": _pod("a", 4, "False")}  # older: dropped
        yield {"type": "MODIFIED", "object": _pod("a", 6, "False")}
        ip = _pod("a", 7, "False")
        ip["status"]["podIP"] = "10.0.0.7"  # dropped by the slimming: no event
        yield {"type": "MODIFIED", "object": ip}
        await asyncio.sleep(3600)


async def test_what_is_listed_and_watched_is_held_slim() -> None:
    kube = Kube()
    events: list[WatchEvent] = []
    cache = Informer(
        kube,  # type: ignore[arg-type]
        PODS,
        label_selector="canary.io/twin",
        slim=slim_pod,
        on_event=events.append,
    )
    running = asyncio.create_task(cache.run())
    try:
        await asyncio.wait_for(cache.synced.wait(), 2)
        for _ in range(200):
            held = cache.get("ns", "a")
            if held and held["metadata"]["resourceVersion"] == "7":
                break
            await asyncio.sleep(0.01)
        assert held is not None and "spec" not in held and "uid" not in held["metadata"]
        assert held["metadata"]["resourceVersion"] == "7" and pod_serves(held) is False
        assert "podIP" not in held["status"]
        assert [e.type for e in events] == ["ADDED", "MODIFIED"]
        assert kube.queries[0]["labelSelector"] == "canary.io/twin"
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
