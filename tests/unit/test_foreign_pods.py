"""A second workload behind the Service at adoption: two Deployments with the
same labels (zones, a hand-made canary, a worker), a StatefulSet, a bare pod.
Pointing the Service at one twin would silently take them out of traffic."""

from __future__ import annotations

from canary.model import ApplyTwin, Emit, SetSelector
from canary.observe import foreign_pods
from canary.twins import of_deployment
from tests.unit.world import World, spec

CANARY = spec(steps="25,50")


def test_pods_are_told_apart_by_the_replica_set_in_their_name() -> None:
    assert of_deployment("web-6f7d8c9b5-abcde", "web")
    assert not of_deployment("web-worker-6f7d8c9b5-abcde", "web")  # another Deployment
    assert not of_deployment("web-0", "web")  # a StatefulSet's
    assert not of_deployment("web-abcde", "web")  # a bare pod with a generated name
    assert not of_deployment("web", "web")
    # A name cut to 58 characters before the random suffix.
    long = "a" * 50
    cut = f"{long}-6f7d8c9b5-"[:58] + "x2x4z"
    assert of_deployment(cut, long)
    assert not of_deployment(cut, "b" * 50)


def test_only_pods_of_neither_the_source_nor_a_twin_are_foreign() -> None:
    live = [
        "web-6f7d8c9b5-abcde",
        "web-blue-7c9d8f6b4-qwert",
        "web-green-5b8c7d9f6-zxcvb",
        "web-eu-6f7d8c9b5-abcde",
        "web-0",
    ]
    assert foreign_pods(live, "web") == ("web-0", "web-eu-6f7d8c9b5-abcde")


def test_adoption_never_drops_another_deployments_pods_from_the_service() -> None:
    world = World(foreign=("web-eu-6f7d8c9b5-abcde", "web-eu-6f7d8c9b5-fghij"))
    plan = world.step(CANARY)
    assert all(isinstance(a, Emit) for a in plan.actions), plan.actions
    assert world.reasons() == ["ForeignPods"]
    warning = world.events[0]
    assert warning.warning and "web-eu-6f7d8c9b5-abcde" in warning.message
    assert "2 ready pods" in warning.message
    assert world.selector == {"app": "web"} and not world.twins
    # Said once, not at every cycle.
    assert world.step(CANARY).actions == ()
    # They leave the selector (their own Service, relabelled, scaled to 0):
    # adoption goes on by itself.
    world.foreign = ()
    plan = world.step(CANARY)
    assert any(isinstance(a, ApplyTwin) for a in plan.actions)
    world.settle(CANARY)
    assert world.state.adopted
    assert world.selector.get("canary.io/twin") == "blue"


def test_a_workload_that_appears_mid_adoption_stops_it_before_the_switch() -> None:
    world = World()
    world.step(CANARY)  # the stable twin is created; the Service still selects every pod
    assert "blue" in world.twins
    world.foreign = ("web-0",)
    for _ in range(3):
        plan = world.step(CANARY)
        assert not any(isinstance(a, SetSelector) for a in plan.actions)
    assert world.selector == {"app": "web"}
    assert world.reasons().count("ForeignPods") == 1


def test_a_long_named_other_deployment_is_foreign_to_a_short_named_source() -> None:
    # Its ReplicaSet's generateName reaches 58 characters and is cut; web's
    # own never can (at most `web-` and a 10-character hash).
    other = "web-checkout-worker-eu-west-1a-experimental-v2"
    pod = f"{other}-6f7d8c9b5f-"[:58] + "x2x4z"
    assert not of_deployment(pod, "web")
    assert foreign_pods([pod, "web-6f7d8c9b5-abcde"], "web") == (pod,)


def test_foreign_pods_warn_once_while_the_other_workload_scales() -> None:
    world = World(foreign=("web-eu-6f7d8c9b5-aaaaa", "web-eu-6f7d8c9b5-bbbbb"))
    world.step(CANARY)
    for suffix in ("ccccc", "ddddd", "eeeee"):  # its HPA, a rolling restart
        world.foreign = ("web-eu-6f7d8c9b5-aaaaa", f"web-eu-6f7d8c9b5-{suffix}")
        world.step(CANARY, advance=30)
    assert world.reasons().count("ForeignPods") == 1, world.reasons()
    # A dual-stack Service lists each pod in two EndpointSlices: counted once.
    world.foreign = ("web-0", "web-0")
    world.step(CANARY, advance=30)
    assert "1 ready pods" in world.state.message, world.state.message
