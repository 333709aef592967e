"""The Service's own fields as teams set and change them: dual-stack
(`ipFamilyPolicy: RequireDualStack`, one EndpointSlice per address family),
many EndpointSlices per Service, a second EndpointSlice controller, a
selector the team removes. Found by review; each test failed before its fix."""

from __future__ import annotations

from dataclasses import replace

from analysis.verdicts import Verdict
from canary.decide import decide
from canary.model import JSON, Color, Observed, SetSelector
from canary.observe import observe, ready_endpoints, routed_endpoints, twin_pods
from canary.spec import TWIN_LABEL
from canary.twins import twin_name
from tests.unit.objects import source_deployment
from tests.unit.world import World, result, spec

ONE_STEP = spec(steps="25")

READY = {"ready": True, "serving": True, "terminating": False}
NOT_READY = {"ready": False, "serving": False, "terminating": False}


def _slice(family: str, conditions: dict[str, JSON], name: str = "") -> JSON:
    """An EndpointSlice of `family` (IPv4, IPv6) listing these pods."""
    return {
        "metadata": {"name": name or f"web-{family.lower()}"},
        "addressType": family,
        "endpoints": [
            {
                "addresses": [f"{'fd00::' if family == 'IPv6' else '10.0.0.'}{i + 1}"],
                "targetRef": {"kind": "Pod", "name": pod},
                "conditions": c,
            }
            for i, (pod, c) in enumerate(conditions.items())
        ],
        "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
    }


def _dual_stack(conditions: dict[str, JSON]) -> list[JSON]:
    """What the EndpointSlice controller writes for a dual-stack Service:
    every pod once per address family, in a slice of each."""
    return [_slice("IPv4", conditions), _slice("IPv6", conditions)]


def _pods(color: Color, count: int, conditions: JSON, start: int = 0) -> dict[str, JSON]:
    return {f"{twin_name('web', color)}-5d4f-{i}": conditions for i in range(start, count)}


def _seen_through(observed: Observed, slices: list[JSON]) -> Observed:
    """`observed` with the endpoint counts observe() reads from these slices."""
    live = ready_endpoints(slices)
    twins = {
        c: replace(t, endpoints=len(twin_pods(live, "web", c))) for c, t in observed.twins.items()
    }
    return replace(observed, twins=twins, endpoints=len(live))


def test_a_pod_listed_in_both_address_families_is_one_endpoint() -> None:
    # A dual-stack Service has an IPv4 and an IPv6 EndpointSlice, each
    # listing every pod; kube-proxy programs each family from its own slices,
    # so a pod is one endpoint of either. Counted in both, every twin had
    # twice its pods as endpoints. (The same pod also shows in two slices of
    # one family for a moment when the controller rebalances a Service of
    # more than 100 endpoints, or when a second EndpointSlice controller
    # lists it: the API's consumers are told to de-duplicate.)
    service = {
        "metadata": {"name": "web", "namespace": "ns", "annotations": {}},
        "spec": {
            "selector": {"app": "web"},
            "ipFamilyPolicy": "RequireDualStack",
            "ipFamilies": ["IPv4", "IPv6"],
        },
    }
    objects = {("Deployment", "web"): source_deployment(rolled_out=True)}
    listed = _dual_stack({"web-6fbbcc66fb-7gchx": READY, "web-eu-7c9f4d5b6-ll8fp": READY})

    def lookup(kind: str, name: str) -> JSON | None:
        return objects.get((kind, name))

    observed, _ = observe(service, "web", lookup, lambda n: listed, lookup, "web-preview")
    assert observed.endpoints == 2
    assert observed.foreign_pods == ("web-eu-7c9f4d5b6-ll8fp",)
    assert ready_endpoints(listed) == ["web-6fbbcc66fb-7gchx", "web-eu-7c9f4d5b6-ll8fp"]
    assert routed_endpoints(listed) == ["web-6fbbcc66fb-7gchx", "web-eu-7c9f4d5b6-ll8fp"]


def test_a_dual_stack_promotion_does_not_flip_onto_a_pod_that_just_turned_unready() -> None:
    # A new pod turns unready as the promotion is about to flip: its
    # EndpointSlices say so first (the event that wakes this cycle), the
    # Deployment's readyReplicas a controller hop later, so the endpoints
    # are what holds the flip. Counted once per family, 2 ready pods of 3
    # were 4 endpoints: the flip went onto them, and the old twin to 0 after
    # the scale-down delay, with a third of the capacity not serving.
    world = World().adopted(ONE_STEP)
    world.source = replace(world.source, revision="r2")
    world.settle(ONE_STEP)
    world.step(ONE_STEP, result(Verdict.PASS), advance=10)
    assert world.state.promoting, world.state
    blue = _pods("blue", 3, READY)
    green = {**_pods("green", 2, READY), **_pods("green", 3, NOT_READY, start=2)}
    observed = _seen_through(world.observed(), _dual_stack({**blue, **green}))
    plan = decide(ONE_STEP, world.state, observed, None, world.now + 1)
    assert SetSelector({"app": "web", TWIN_LABEL: "green"}) not in plan.actions, plan.actions
    assert plan.state.promoting and plan.state.stable == "blue"
    assert "promoting: 3/3 pods ready, 2/3 endpoints" in plan.state.message, plan.state.message


def test_a_dual_stack_stable_twin_short_of_a_pod_is_degraded() -> None:
    # A drain evicts one of the stable twin's 3 pods and no node has room:
    # 2 ready pods, listed in both families. Counted twice, they were 4
    # endpoints, "at least 3", and the Service read Healthy at two thirds of
    # its capacity: no Degraded Warning.
    world = World().adopted(ONE_STEP)
    observed = world.observed()
    observed = replace(
        observed, twins={**observed.twins, "blue": replace(observed.twins["blue"], ready=2)}
    )
    observed = _seen_through(observed, _dual_stack(_pods("blue", 2, READY)))
    plan = decide(ONE_STEP, world.state, observed, None, world.now + 1)
    assert plan.state.degraded == "2/3 pods of the blue twin (stable) ready", plan.state
