"""An admission webhook that mutates Deployments on the way in (Kyverno's
rules auto-generated for pod controllers: a sidecar, default resources): the
twin the API server stores is not the one the controller sent."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from canary.observe import twin_of
from canary.twins import twin_deployment
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


class _MutatingReplaceKube(_MutatingKube):
    async def replace(self, path: str, body: dict[str, Any], **_: object) -> dict[str, Any]:
        return await self.create(path, body)


def test_a_put_back_mutated_by_an_admission_webhook_is_still_seen_rolling() -> None:
    """The put-back mark (the digest of the template a put-back wrote) is how
    a put-back is known while it rolls once the status is lost (a kill after
    the twin's write, a status refused or rebuilt): marked with the digest of
    what was sent, not of what was stored, it never matched on a cluster
    that mutates templates, and the stable twin read `Healthy` while pods
    of the edited template still served (test_put_back_observed)."""
    kube = _MutatingReplaceKube()
    service = {"metadata": {"name": "web", "namespace": "ns", "resourceVersion": "1", "uid": "u"}}
    source = source_deployment(uid="d-1")
    edited = twin_deployment(source, "web", "blue", "r1", 3, source["spec"]["template"])
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "web:hand"
    actor = cached_actor(kube, {("Deployment", "web-blue"): edited}, service)
    template = source["spec"]["template"]
    asyncio.run(actor.apply_twin("blue", "r1", 3, source, template, {}, put_back=True))
    stored = copy.deepcopy(kube.stored["web-blue"])
    stored["metadata"]["generation"] = 2
    # Observed by the Deployment controller, pods of the edited template left.
    stored["status"] = {"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1}
    seen = twin_of(stored, [])
    assert seen.edited_by == "" and seen.put_back, stored["metadata"]["annotations"]
