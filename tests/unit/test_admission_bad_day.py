"""An admission webhook that mutates Deployments on the way in (Kyverno's
rules auto-generated for pod controllers: a sidecar, default resources): the
twin the API server stores is not the one the controller sent."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from canary.observe import twin_of
from tests.unit.objects import cached_actor, source_deployment


class _MutatingKube:
    """Stores what it is sent plus a default a webhook adds to every container."""

    def __init__(self) -> None:
        self.stored: dict[str, dict[str, Any]] = {}

    def _mutate(self, body: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(body)
        for container in body["spec"]["template"]["spec"]["containers"]:
            container.setdefault("resources", {"requests": {"cpu": "100m"}})
        return body

    async def create(self, path: str, body: dict[str, Any], **_: object) -> dict[str, Any]:
        self.stored[body["metadata"]["name"]] = self._mutate(body)
        return copy.deepcopy(self.stored[body["metadata"]["name"]])

    async def patch(
        self, path: str, body: dict[str, Any], *_: object, **__: object
    ) -> dict[str, Any]:
        twin = self.stored[path.rsplit("/", 1)[-1]]
        twin["metadata"]["annotations"].update(body["metadata"]["annotations"])
        return copy.deepcopy(twin)


def test_a_twin_mutated_by_an_admission_webhook_is_not_taken_for_a_hand_edit() -> None:
    """Taken for a hand edit, the stable twin would be put back (TwinRestored)
    at every cycle, and mutated again each time: a write loop, and a canary
    taken out of traffic as edited. The digest of what was stored is kept
    instead (Actor._check_digest)."""
    kube = _MutatingKube()
    service = {"metadata": {"name": "web", "namespace": "ns", "resourceVersion": "1", "uid": "u"}}
    actor = cached_actor(kube, {}, service)
    source = source_deployment(uid="d-1")
    asyncio.run(actor.apply_twin("blue", "r1", 3, source, source["spec"]["template"], {}))
    stored = kube.stored["web-blue"]
    assert stored["spec"]["template"]["spec"]["containers"][0]["resources"]  # mutated
    assert twin_of(stored, []).edited_by == ""
