"""A Service port whose `targetPort` names a container port (`targetPort:
http`) reaches only the pods whose template declares a port of that name.
The EndpointSlice controller still lists every other ready pod, in a slice
without that port (`ports: []` when it was the Service's only one), and
kube-proxy sends it nothing there. A release that renames the container
port (`http` to `web`) or drops the `ports:` list of its container (taken
for documentation: it is, for a numeric targetPort) is such a pod. Found by
review; each test failed before the fix: its endpoints counted as ready, so
a blue-green flip put production on pods the Service cannot reach, and a
canary step said it served its weight while it served none."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from analysis.verdicts import Verdict
from canary.decide import decide
from canary.model import JSON, Observed, SetSelector, Twin
from canary.observe import observe
from canary.spec import REVISION_ANNOTATION, TWIN_LABEL
from canary.twins import twin_name
from tests.unit.test_blue_green_bad_day import BG, previewing
from tests.unit.world import World, result, spec

CANARY = spec(steps="25")

HTTP = {"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}
METRICS = {"name": "metrics", "port": 9090, "protocol": "TCP", "targetPort": 9090}
# How the EndpointSlice controller lists a pod under each Service port it has.
WITH_HTTP = {"name": "http", "port": 8080, "protocol": "TCP"}
WITH_METRICS = {"name": "metrics", "port": 9090, "protocol": "TCP"}


def _slice(pods: list[str], ports: list[JSON]) -> JSON:
    ready = {"ready": True, "serving": True, "terminating": False}
    endpoints = [{"targetRef": {"kind": "Pod", "name": p}, "conditions": ready} for p in pods]
    return {"endpoints": endpoints, "ports": ports}


def _pods(color: str, count: int) -> list[str]:
    return [f"{twin_name('web', color)}-5d4f-{i}" for i in range(count)]  # type: ignore[arg-type]


def _deployment(name: str, replicas: int, revision: str) -> JSON:
    return {
        "metadata": {"name": name, "generation": 1, "annotations": {REVISION_ANNOTATION: revision}},
        "spec": {"replicas": replicas, "template": {"metadata": {"labels": {"app": "web"}}}},
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
        },
    }


def _seen(world: World, ports: list[JSON], slices: dict[str, list[JSON]]) -> Observed:
    """The world's observation with what observe() reads from these
    EndpointSlices of a Service with these ports (and its preview, made
    with the same ports, as the controller makes it)."""
    selector = dict(world.selector)
    service = {
        "metadata": {"name": "web", "namespace": "ns", "annotations": {}},
        "spec": {"selector": selector, "ports": ports},
    }
    objects: dict[tuple[str, str], Any] = {
        ("Deployment", "web"): _deployment("web", 0, "r1"),
        ("Service", "web-preview"): {
            "metadata": {"name": "web-preview"},
            "spec": {"selector": world.preview or {}, "ports": ports},
        },
    }
    for color, twin in world.twins.items():
        name = twin_name("web", color)
        objects[("Deployment", name)] = _deployment(name, twin.replicas, twin.revision)

    def lookup(kind: str, name: str) -> Any:
        return objects.get((kind, name))

    seen, _ = observe(service, "web", lookup, lambda n: slices.get(n, []), lookup, "web-preview")
    base = world.observed()
    # What the slices say: the endpoint counts, and whatever the model
    # keeps of the ports they list.
    read = [f.name for f in fields(Twin) if f.name == "endpoints" or "ports" in f.name]
    twins = {
        c: replace(t, **{k: getattr(seen.twins[c], k) for k in read}) for c, t in base.twins.items()
    }
    extra = {f.name: getattr(seen, f.name) for f in fields(Observed) if "ports" in f.name}
    return replace(
        base,
        twins=twins,
        preview_endpoints=seen.preview_endpoints,
        endpoints=seen.endpoints,
        **extra,
    )


def test_a_blue_green_flip_waits_for_pods_the_service_can_reach() -> None:
    # v2 renamed its container port `http` to `web`: its 3 pods are ready,
    # and the preview's slice lists them with no port. Before, they were 3
    # ready endpoints of 3 and the flip put all production on them: every
    # request to port 80 refused, under a Healthy status.
    world = previewing()
    flip = SetSelector({"app": "web", TWIN_LABEL: "green"})
    portless = {
        "web": [_slice(_pods("blue", 3), [WITH_HTTP])],
        "web-preview": [_slice(_pods("green", 3), [])],
    }
    seen = _seen(world, [HTTP], portless)
    plan = decide(BG, world.state, seen, result(Verdict.PASS), world.now + 10)
    assert flip not in plan.actions, plan.actions
    assert plan.state.stable == "blue" and plan.state.canary == "green"
    assert "http" in plan.state.message, plan.state.message
    # With the port there, the same pass flips.
    fine = {**portless, "web-preview": [_slice(_pods("green", 3), [WITH_HTTP])]}
    seen = _seen(world, [HTTP], fine)
    assert flip in decide(BG, world.state, seen, result(Verdict.PASS), world.now + 10).actions


def test_a_canary_listed_without_one_of_the_services_ports_serves_no_step() -> None:
    # Two ports: requests on `http` (named), metrics on 9090 (a number,
    # which every pod has). The canary's slice carries only `metrics`: it
    # takes none of the step's requests. Before, its step was ready ("25%
    # requested, 25% effective") on endpoints that served no request.
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2")
    world.pending = {"green"}  # the canary's pod is not ready yet: the step waits
    world.settle(CANARY)
    world.pending = set()
    world.settle(CANARY, cycles=1)
    assert world.state.canary == "green" and not world.state.step_ready
    canary = world.twins["green"].replicas
    slices = {
        "web": [
            _slice(_pods("blue", 3), [WITH_HTTP, WITH_METRICS]),
            _slice(_pods("green", canary), [WITH_METRICS]),
        ]
    }
    seen = _seen(world, [HTTP, METRICS], slices)
    plan = decide(CANARY, world.state, seen, None, world.now + 1)
    assert not plan.state.step_ready, plan.state
    assert plan.state.effective_weight == 0.0, plan.state.effective_weight
    assert "http" in plan.state.message, plan.state.message
    # A Service port no pod of either twin was ever listed with (an old
    # `debug` port nothing declares) holds nothing back.
    debug = {"name": "debug", "port": 5005, "protocol": "TCP", "targetPort": "debug"}
    slices = {
        "web": [
            _slice(_pods("blue", 3), [WITH_HTTP, WITH_METRICS]),
            _slice(_pods("green", canary), [WITH_HTTP, WITH_METRICS]),
        ]
    }
    seen = _seen(world, [HTTP, METRICS, debug], slices)
    assert decide(CANARY, world.state, seen, None, world.now + 1).state.step_ready
