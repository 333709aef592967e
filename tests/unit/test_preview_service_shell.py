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
    'ClusterIP'", 422), and no ports on one that is not headless
    ("spec.ports: Required value")."""

    def __init__(self) -> None:
        self.stored: dict[str, dict[str, Any]] = {}

    async def create(self, path: str, body: dict[str, Any], **_: object) -> dict[str, Any]:
        spec = body["spec"]
        if spec.get("type", "ClusterIP") == "ClusterIP":
            for port in spec.get("ports") or []:
                if port.get("nodePort"):
                    raise AssertionError("422: nodePort may not be used when type is ClusterIP")
        headless = spec.get("clusterIP") == "None"
        if not spec.get("ports") and not headless:
            raise AssertionError("422: spec.ports: Required value")
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


class _PatchingKube(_ValidatingKube):
    async def patch(
        self, path: str, body: dict[str, Any], *_: object, **__: object
    ) -> dict[str, Any]:
        stored = self.stored[path.rsplit("/", 1)[-1]]
        # A JSON merge patch: a list (the ports) is replaced whole.
        for key, value in body["spec"].items():
            stored["spec"][key] = value
        return copy.deepcopy(stored)


def _preview(ports: list[dict[str, Any]], owner: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web-preview",
            "namespace": "ns",
            "ownerReferences": [{"kind": "Service", "name": "web", "uid": owner}],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {"app": "web", TWIN_LABEL: "blue"},
            "ports": ports,
        },
    }


def test_the_previews_ports_follow_the_services_at_the_next_rollout() -> None:
    """The team adds a port to the Service (`grpc`, targetPort `grpc`) after
    the preview was made. Before, the preview kept the ports it was created
    with for good: no preview request ever reached `grpc`, its endpoints
    could not say the release's pods lack it (observe counts a port the
    preview lacks as reached), and a release that renamed the container's
    `grpc` port was flipped onto pods the Service sends nothing to there."""
    http = {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    grpc = {"name": "grpc", "port": 9090, "targetPort": "grpc", "protocol": "TCP"}
    kube = _PatchingKube()
    ours = _preview([http], owner="u")
    kube.stored["web-preview"] = copy.deepcopy(ours)
    actor = cached_actor(
        kube, {("Service", "web-preview"): ours}, _service("ClusterIP", [http, grpc])
    )
    asyncio.run(actor.apply_preview("web-preview", GREEN))
    assert kube.stored["web-preview"]["spec"]["ports"] == [http, grpc]
    assert kube.stored["web-preview"]["spec"]["selector"] == GREEN
    # A team's own preview Service (not made by the controller) keeps its ports.
    kube = _PatchingKube()
    theirs = _preview([http], owner="someone-else")
    kube.stored["web-preview"] = copy.deepcopy(theirs)
    actor = cached_actor(
        kube, {("Service", "web-preview"): theirs}, _service("ClusterIP", [http, grpc])
    )
    asyncio.run(actor.apply_preview("web-preview", GREEN))
    assert kube.stored["web-preview"]["spec"]["ports"] == [http]
    assert kube.stored["web-preview"]["spec"]["selector"] == GREEN


def test_a_preview_on_call_made_a_node_port_keeps_its_node_ports() -> None:
    """On-call turned our preview into a NodePort Service to try it from
    outside: the same ports are not written again (its nodePort is no
    difference), and a port kept keeps its nodePort when one is added."""
    http = {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    grpc = {"name": "grpc", "port": 9090, "targetPort": "grpc", "protocol": "TCP"}
    kube = _PatchingKube()
    ours = _preview([{**http, "nodePort": 30080}], owner="u")
    ours["spec"]["type"] = "NodePort"
    kube.stored["web-preview"] = copy.deepcopy(ours)
    actor = cached_actor(kube, {("Service", "web-preview"): ours}, _service("ClusterIP", [http]))
    asyncio.run(actor.apply_preview("web-preview", GREEN))
    assert kube.stored["web-preview"]["spec"]["ports"] == [{**http, "nodePort": 30080}]
    actor = cached_actor(
        kube, {("Service", "web-preview"): ours}, _service("ClusterIP", [http, grpc])
    )
    asyncio.run(actor.apply_preview("web-preview", GREEN))
    assert kube.stored["web-preview"]["spec"]["ports"] == [{**http, "nodePort": 30080}, grpc]


def test_the_preview_of_a_headless_service_is_headless() -> None:
    """A headless Service (`clusterIP: None`, clients that resolve the pods
    through DNS, gRPC's client-side balancing) often has no ports. Before,
    its preview was a ClusterIP Service with no ports, refused at every
    cycle, and every blue-green release was rolled back at its deadline; a
    headless preview is also what such clients need to try the release."""
    kube = _ValidatingKube()
    service = _service("ClusterIP", [])
    service["spec"]["clusterIP"] = "None"
    actor = cached_actor(kube, {}, service)
    asyncio.run(actor.apply_preview("web-preview", GREEN))
    preview = kube.stored["web-preview"]["spec"]
    assert preview["clusterIP"] == "None" and preview["selector"] == GREEN
