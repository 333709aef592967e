"""A second Service for the same app that canary does not manage (an
internal one, a headless one for discovery) selects the app's pods by its
labels, so kube-proxy sends its requests to every twin: the canary at its
share of the pods whatever the step, a blue-green preview to about half of
them before it is promoted. Nothing said so; on-call saw canary traffic
that no step had asked for. Now the rollout's start says so (PodsShared)."""

from __future__ import annotations

from typing import Any

from canary.controller import Controller
from canary.kube.watch import WatchEvent
from canary.model import JSON
from canary.observe import sharing
from canary.reconcile import Edges, Reconciler
from canary.spec import STRATEGY, TWIN_LABEL
from tests.unit.test_decide import release
from tests.unit.test_not_ready_why import _Quiet
from tests.unit.world import World, spec

APP = {"app": "web", "tier": "front"}


def _service(name: str, selector: dict[str, str], **annotations: str) -> JSON:
    return {
        "metadata": {"name": name, "namespace": "ns", "annotations": annotations},
        "spec": {"selector": selector},
    }


def test_the_services_that_pick_the_apps_pods_are_found_and_only_those() -> None:
    services = [
        _service("web", {"app": "web"}),  # the managed one
        _service("web-preview", {"app": "web"}),  # its preview
        _service("web-internal", {"app": "web"}),
        _service("web-headless", {"tier": "front", "app": "web"}),
        _service("web-green-only", {"app": "web", TWIN_LABEL: "green"}),  # on purpose
        _service("other", {"app": "other"}),
        _service("wider", {"app": "web", "version": "v1"}),  # a label the pods lack
        _service("external", {}),  # no selector: endpoints by hand
        _service("web-too", {"app": "web"}, **{STRATEGY: "canary"}),  # a Conflict, told so
    ]
    assert sharing(services, "web", "web-preview", APP) == ("web-headless", "web-internal")


def test_a_canary_rollout_says_once_which_services_share_the_pods() -> None:
    the_spec = spec(steps="25,50")
    world = World().adopted(the_spec)
    world.sharing = ("web-internal",)
    world.events.clear()
    release(world)
    world.settle(the_spec)
    told = [e for e in world.events if e.reason == "PodsShared"]
    assert len(told) == 1 and told[0].warning, world.reasons()
    assert "Service web-internal (not managed by canary) also selects" in told[0].message
    assert "whatever the step's weight" in told[0].message
    assert "Point it at the web Service" in told[0].message


def test_a_blue_green_rollout_says_the_preview_takes_their_requests() -> None:
    the_spec = spec(strategy="blue-green")
    world = World().adopted(the_spec)
    world.sharing = ("web-a", "web-b")
    world.events.clear()
    release(world)
    world.settle(the_spec)
    [told] = [e for e in world.events if e.reason == "PodsShared"]
    assert told.message.startswith("Services web-a, web-b (not managed by canary) also select ")
    assert "the preview twin's pods (about half of them) before revision" in told.message


def test_no_other_service_nothing_said() -> None:
    the_spec = spec(steps="25,50")
    world = World().adopted(the_spec)
    release(world)
    world.settle(the_spec)
    assert "PodsShared" not in world.reasons()


def test_the_controller_indexes_a_namespaces_services_for_the_reconciler() -> None:
    controller = Controller(Edges(kube=_Quiet(), prometheus=None))  # type: ignore[arg-type]
    caches = controller.caches
    reconciler = Reconciler(Edges(kube=None, prometheus=None), caches)  # type: ignore[arg-type]
    internal: dict[str, Any] = _service("web-internal", {"app": "web"})
    caches.services.remember(internal)
    controller._on_service(WatchEvent("ADDED", ("ns", "web-internal"), internal))
    assert [s["metadata"]["name"] for s in reconciler._services_in("ns")] == ["web-internal"]
    assert reconciler._services_in("elsewhere") == []
    controller._on_service(WatchEvent("DELETED", ("ns", "web-internal"), internal))
    assert "ns" not in caches.services_by_namespace  # nothing kept for a namespace emptied
