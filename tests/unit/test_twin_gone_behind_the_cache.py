"""The stable twin deleted (`kubectl delete --cascade=orphan` while the API
server was stopped, chaos seed 34) while the controller's cache still held
it: putting the twin back replaced an object the API server no longer had.
Every cycle failed on that 404 before its other writes, backing off to 30 s,
and a failing canary (error-rate 0.5) its rollback had ended kept serving
for 51 s. The twin is created when the replace finds it gone."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from canary.kube import NotFound
from canary.twins import twin_deployment
from tests.unit.objects import cached_actor, source_deployment


class _Gone:
    """An API server that no longer has the twin the cache holds."""

    def __init__(self) -> None:
        self.stored: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []

    async def create(self, path: str, body: dict[str, Any], **_: object) -> dict[str, Any]:
        self.calls.append("create")
        self.stored[body["metadata"]["name"]] = copy.deepcopy(body)
        return copy.deepcopy(body)

    async def replace(self, path: str, body: dict[str, Any], **_: object) -> dict[str, Any]:
        self.calls.append("replace")
        name = path.rsplit("/", 1)[-1]
        if name not in self.stored:
            raise NotFound(404, "NotFound", f'deployments.apps "{name}" not found')
        self.stored[name] = copy.deepcopy(body)
        return copy.deepcopy(body)

    async def patch(self, path: str, body: dict[str, Any], *_: object, **__: object) -> Any:
        self.calls.append("patch")
        twin = self.stored[path.rsplit("/", 1)[-1]]
        twin["metadata"]["annotations"].update(body["metadata"]["annotations"])
        return copy.deepcopy(twin)


def test_a_twin_the_cache_still_holds_but_the_api_server_lost_is_created() -> None:
    kube = _Gone()
    service = {"metadata": {"name": "web", "namespace": "ns", "resourceVersion": "1", "uid": "u"}}
    source = source_deployment(uid="d-1")
    stale = twin_deployment(source, "web", "blue", "r1", 3, source["spec"]["template"])
    stale["metadata"]["deletionTimestamp"] = "2026-12-01T21:06:16Z"
    actor = cached_actor(kube, {("Deployment", "web-blue"): stale}, service)
    asyncio.run(actor.apply_twin("blue", "r1", 3, source, source["spec"]["template"], {}))
    assert kube.calls[:2] == ["replace", "create"], kube.calls
    created = kube.stored["web-blue"]
    assert created["spec"]["replicas"] == 3
    assert "deletionTimestamp" not in created["metadata"]
    assert "resourceVersion" not in created["metadata"]
