"""The size a hand-back grew the stable twin to (what both twins served)
is marked on the twin in the same write as its scale (HANDBACK_ANNOTATION),
and observed: kept only in the status, written after the scale, a status
write lost or a strategy put back and removed again let the next hand-back
take the grown twin for its HPA's share and grow it once more
(tests/unit/test_autoscaling.py)."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import replace
from typing import Any

from canary.autoscaling import grown_for_handback
from canary.model import JSON, Twin
from canary.observe import twin_of
from canary.spec import HANDBACK_ANNOTATION
from canary.twins import twin_deployment
from tests.unit.objects import cached_actor, source_deployment
from tests.unit.test_source_bad_day import _Kube as _RecordingKube


class _Kube(_RecordingKube):
    """Keeps the bodies written."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[dict[str, Any]] = []

    async def patch(self, path: str, body: dict[str, Any], *a: object, **kw: object) -> JSON:
        self.bodies.append(copy.deepcopy(body))
        return await super().patch(path, body, *a, **kw)

    async def replace(self, path: str, body: dict[str, Any], **kw: object) -> dict[str, Any]:
        self.bodies.append(copy.deepcopy(body))
        return await super().replace(path, body, **kw)


def _twin(replicas: int, mark: str | None = None) -> JSON:
    source = source_deployment()
    twin = twin_deployment(source, "web", "blue", "r1", replicas, source["spec"]["template"])
    twin["metadata"]["resourceVersion"] = "7"
    if mark is not None:
        twin["metadata"]["annotations"][HANDBACK_ANNOTATION] = mark
    return twin


def _actor(kube: _Kube, twin: JSON) -> Any:
    cache = {("Deployment", "web-blue"): twin, ("Deployment", "web"): source_deployment()}
    service = {"metadata": {"name": "web", "namespace": "ns", "resourceVersion": "1"}}
    return cached_actor(kube, cache, service)


def test_the_twin_says_the_size_a_hand_back_grew_it_to() -> None:
    assert twin_of(_twin(16, "16"), []).handback_served == 16
    assert twin_of(_twin(10, "16"), []).handback_served == 16  # outdated: decide compares
    assert twin_of(_twin(16), []).handback_served == 0
    assert twin_of(_twin(16, "sixteen"), []).handback_served == 0  # a hand edit: no mark


def test_the_mark_rides_in_the_scales_own_patch() -> None:
    kube = _Kube()
    asyncio.run(_actor(kube, _twin(8)).scale_twin("blue", 16, handback=True))
    assert kube.calls == [("patch", "/apis/apps/v1/namespaces/ns/deployments/web-blue")]
    assert kube.bodies == [
        {"spec": {"replicas": 16}, "metadata": {"annotations": {HANDBACK_ANNOTATION: "16"}}}
    ]


def test_a_scale_of_an_unmarked_twin_writes_what_it_always_did() -> None:
    kube = _Kube()
    asyncio.run(_actor(kube, _twin(8)).scale_twin("blue", 3))
    assert kube.bodies == [{"spec": {"replicas": 3}}]


def test_any_other_scale_of_ours_takes_the_mark_away_in_the_same_patch() -> None:
    """Our own scale since (a rollback's, a promotion's) sets a size the
    mark does not name: left, a later scale of ours to that very size would
    make it look current again."""
    kube = _Kube()
    asyncio.run(_actor(kube, _twin(16, "16")).scale_twin("blue", 0))
    assert kube.bodies == [
        {"spec": {"replicas": 0}, "metadata": {"annotations": {HANDBACK_ANNOTATION: None}}}
    ]


def test_a_template_written_takes_the_mark_away() -> None:
    kube = _Kube()
    source = source_deployment()
    actor = _actor(kube, _twin(16, "16"))
    asyncio.run(actor.apply_twin("blue", "r3", 16, source, source["spec"]["template"], {}))
    assert HANDBACK_ANNOTATION not in kube.bodies[-1]["metadata"]["annotations"]


def test_the_mark_is_current_only_while_the_size_is_the_one_we_wrote() -> None:
    grown = Twin(True, "r1", 16, handback_served=16)
    assert grown_for_handback(grown)
    assert not grown_for_handback(replace(grown, replicas=10))  # its HPA resized it
    # Resized by its HPA and back to the same size: that is the HPA's share.
    assert not grown_for_handback(replace(grown, scaled_by="kube-controller-manager"))
    assert not grown_for_handback(replace(grown, handback_served=0))
    assert not grown_for_handback(replace(grown, exists=False))
