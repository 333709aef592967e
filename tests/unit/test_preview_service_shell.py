"""The blue-green preview Service as the shell writes it (Actor.apply_preview),
against a stand-in API server that validates what a real one refuses."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from canary.spec import TWIN_LABEL
from tests.unit.objects import cached_actor

GREEN = {"app": "web", TWIN_LABEL: "green"}


class _ValidatingKube:
    """Stores Services, refusing what kube-apiserver's validation refuses:
    a `nodePort` on a ClusterIP Service ("may not be used when `type` is
    'ClusterIP'", 422)."""

    def __init__(self) -> None:
        self.stored: dict[str, dict[str, Any]] = {}

    async def create(self, path: str, body: dict[str, Any], **_: object) -> dict[str, Any]:
        spec = body["spec"]
        if spec.get("type", "ClusterIP") == "ClusterIP":
            for port in spec.get("ports") or []:
                if port.get("nodePort"):
                    raise AssertionError("422: nodePort may not be used when type is ClusterIP")
        self.stored[body["metadata"]["name"]] = copy.deepcopy(body)
        return copy.deepcopy(body)


def _service(type_: str, ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "ns", "resourceVersion": "1", "uid": "u"},
        "spec": {"type": type_, "selector": {"app": "web", TWIN_LABEL: "blue"}, "ports": ports},
    }


def test_the_preview_of_a_load_balancer_service_is_created() -> None:
    """A Service of type LoadBalancer or NodePort (the usual way in from
    outside) has a nodePort on each port; copied into the ClusterIP preview,
    its creation was refused at every cycle, no preview ever served, and
    every blue-green release was rolled back at its progress deadline."""
    kube = _ValidatingKube()
    ports = [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP", "nodePort": 31080}
    ]
    for type_ in ("LoadBalancer", "NodePort"):
        kube.stored.clear()
        actor = cached_actor(kube, {}, _service(type_, ports))
        asyncio.run(actor.apply_preview("web-preview", GREEN))
        preview = kube.stored["web-preview"]["spec"]
        assert preview["type"] == "ClusterIP" and preview["selector"] == GREEN
        assert preview["ports"] == [
            {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
        ]
