"""A Deployment that has a twin's name but that the controller did not
make (the team's own `web-blue`, made while its twin was gone) is never
deleted by a hand-back: before, `delete_twins` took a Deployment without
the `canary.io/service` label for its own (the label's absence read as
this Service's name), and deleted the team's app (found by review)."""

from __future__ import annotations

import asyncio
from typing import Any

from canary.act import Actor, Target
from canary.spec import REVISION_ANNOTATION, SERVICE_LABEL
from canary.writeguard import WriteGuard

JSON = dict[str, Any]


class _Recording:
    def __init__(self) -> None:
        self.deleted: list[str] = []

    async def delete(self, path: str, **_: object) -> JSON:
        self.deleted.append(path.rsplit("/", 1)[-1])
        return {}

    async def get(self, path: str, **_: object) -> JSON:
        return {"items": []}


def _deleted(objects: dict[str, JSON]) -> list[str]:
    kube = _Recording()
    service = {"metadata": {"name": "web", "namespace": "ns", "resourceVersion": "1", "uid": "u"}}
    actor = Actor(
        kube,  # type: ignore[arg-type]
        Target("ns", "web", "web", service),
        lambda obj: None,
        lambda kind, name: objects.get(name) if kind == "Deployment" else None,
        WriteGuard(),
        progress="steady",
        now=1000.0,
    )
    asyncio.run(actor.delete_twins(keep=""))
    return kube.deleted


def test_a_deployment_with_a_twins_name_we_did_not_make_is_never_deleted() -> None:
    theirs = {"metadata": {"name": "web-blue", "labels": {"app": "web-blue"}}}
    ours = {
        "metadata": {
            "name": "web-green",
            "labels": {SERVICE_LABEL: "web"},
            "annotations": {REVISION_ANNOTATION: "r1"},
        }
    }
    assert _deleted({"web-blue": theirs, "web-green": ours}) == ["web-green"]


def test_our_twin_whose_label_was_taken_off_by_hand_is_still_deleted() -> None:
    # Our revision mark says we made it: a label edited away does not leave
    # a twin running after the hand-back.
    ours = {"metadata": {"name": "web-blue", "annotations": {REVISION_ANNOTATION: "r1"}}}
    assert _deleted({"web-blue": ours}) == ["web-blue"]


def test_another_services_twin_is_never_deleted() -> None:
    other = {"metadata": {"name": "web-blue", "labels": {SERVICE_LABEL: "web-canary"}}}
    assert _deleted({"web-blue": other}) == []
