"""A pod readiness gate set by a load balancer's controller (the AWS Load
Balancer controller's target health, a GKE NEG's) is injected into a pod
at its creation when a Service it serves selects the pod, and is set True
only once the pod is healthy in the load balancer, which it is registered
with only while the Service selects it. A first-step canary pod evicted
(a node drained, Karpenter consolidating, a spot interruption) is
replaced by a pod created while the Service selects both twins: it gets
the gate. Found by review; the test failed before the fix: the first step
took the canary out of the Service while it was short of pods, so the
new pod was never registered, its gate never set, and the good release
was rolled back at its progress deadline."""

from __future__ import annotations

from dataclasses import replace

from canary.spec import SERVICE_LABEL, TWIN_LABEL
from tests.unit.world import World, spec

CANARY = spec(steps="25,50", progress_deadline="60s")
BOTH = {"app": "web", SERVICE_LABEL: "web"}


def test_a_first_step_canary_pod_replaced_behind_a_readiness_gate_gets_ready() -> None:
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2")
    world.step(CANARY)
    # Its pods' ReplicaSet, as their endpoints name it.
    world.twins["green"] = replace(world.twins["green"], replica_set="web-green-7c9f")
    world.settle(CANARY)
    assert world.state.step == 0 and world.state.step_ready
    assert world.state.canary_pods == "web-green-7c9f" and world.selector == BOTH
    world.pending = {"green"}  # evicted; its replacement waits for its gate
    for _ in range(20):
        world.step(CANARY, advance=5)
        if TWIN_LABEL not in world.selector:
            # Selected, the replacement is registered and its gate set.
            world.pending = set()
    assert world.state.canary_revision == "r2", world.reasons()
    assert "RolledBack" not in world.reasons(), world.state.message
    assert world.selector == BOTH and world.state.step_ready


def test_a_first_step_canary_not_yet_served_stays_out_until_ready() -> None:
    # Unchanged: a canary twin that has not served its first step yet (its
    # pods may be an earlier release's) joins only once every pod is ready.
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2")
    world.ready = False
    world.step(CANARY)
    world.step(CANARY, advance=1)
    assert world.selector == {"app": "web", TWIN_LABEL: "blue"}
