"""On-call scales the stable twin itself (`kubectl scale deployment web-blue
--replicas=6`): under a load spike, the Deployment whose pods they see. Up
is the app's new size; before, it was put back at once, the new pods deleted
as they came, and nothing said why. Down is put back, and now said why."""

from __future__ import annotations

from dataclasses import replace

from canary.model import ClaimSource, ScaleTwin
from canary.twins import canary_replicas
from tests.unit.world import World, spec

CANARY = spec(steps="25,50")


def scaled(world: World, replicas: int, by: str = "kubectl") -> None:
    world.twins["blue"] = replace(world.twins["blue"], replicas=replicas, scaled_by=by)


def test_a_scale_up_of_the_stable_twin_is_the_apps_new_size() -> None:
    world = World().adopted(CANARY)
    assert world.state.replicas == 3
    scaled(world, 6)
    plan = world.step(CANARY, advance=1)
    assert not any(isinstance(a, ScaleTwin) and a.color == "blue" for a in plan.actions)
    assert world.state.replicas == 6 and world.twins["blue"].replicas == 6
    assert any(isinstance(a, ClaimSource) and a.claim.replicas == 6 for a in plan.actions)
    told = [e for e in world.events if e.reason == "TwinScaled"]
    assert told and not told[0].warning and "kubectl scaled the blue twin" in told[0].message
    world.settle(CANARY)
    assert world.twins["blue"].replicas == 6 and len(told) == 1


def test_the_canary_follows_a_stable_twin_scaled_up_mid_step() -> None:
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    assert world.state.canary == "green" and world.twins["green"].replicas == 1
    scaled(world, 8)
    world.step(CANARY, advance=1)
    assert world.state.replicas == 8
    assert world.twins["green"].replicas == canary_replicas(8, 25) > 1


def test_a_scale_down_of_the_stable_twin_is_put_back_and_said_why_once() -> None:
    world = World().adopted(CANARY)
    scaled(world, 1)
    plan = world.step(CANARY, advance=1)
    assert ScaleTwin("blue", 3) in plan.actions and world.state.replicas == 3
    told = [e for e in world.events if e.reason == "TwinScaled"]
    assert told and told[0].warning and "put back to 3" in told[0].message
    scaled(world, 2)  # a tool that keeps at it: put back, told once per period
    plan = world.step(CANARY, advance=30)
    assert ScaleTwin("blue", 3) in plan.actions
    assert len([e for e in world.events if e.reason == "TwinScaled"]) == 1


def test_the_teams_scale_of_its_deployment_in_the_same_cycle_wins() -> None:
    world = World().adopted(CANARY)
    scaled(world, 10)
    world.source = replace(world.source, replicas=5)  # `kubectl scale deployment/web`
    world.step(CANARY, advance=1)
    assert world.state.replicas == 5 and world.twins["blue"].replicas == 5


def test_our_own_size_is_not_a_hand_scale() -> None:
    world = World().adopted(CANARY)
    scaled(world, 1, by="")
    plan = world.step(CANARY, advance=1)
    assert ScaleTwin("blue", 3) in plan.actions
    assert not [e for e in world.events if e.reason == "TwinScaled"]


def test_who_scaled_a_twin_is_read_from_managed_fields() -> None:
    from canary.observe import twin_of
    from canary.twins import twin_deployment
    from tests.unit.objects import source_deployment

    source = source_deployment()
    twin = twin_deployment(source, "web", "blue", "r1", 3, source["spec"]["template"])
    ours = {"manager": "canary-controller", "operation": "Update", "time": "2026-11-30T10:00:00Z"}
    ours["fieldsV1"] = {"f:spec": {"f:replicas": {}, "f:template": {}}}  # type: ignore[assignment]
    twin["metadata"]["managedFields"] = [ours]
    assert twin_of(twin, []).scaled_by == ""
    twin["metadata"]["managedFields"] = [
        {**ours, "fieldsV1": {"f:spec": {"f:template": {}}}},
        {
            "manager": "kubectl",
            "operation": "Update",
            "subresource": "scale",
            "time": "2026-11-30T11:00:00Z",
            "fieldsV1": {"f:spec": {"f:replicas": {}}},
        },
    ]
    assert twin_of(twin, []).scaled_by == "kubectl"


def test_an_hpa_on_the_stable_twin_itself_decides_its_size_down_too() -> None:
    """`kubectl autoscale deployment web-blue` on the twin whose pods serve:
    taken up and down (a scale-down put back would leave only growth), and
    a Warning says to point it at the team's Deployment."""
    from canary.model import Autoscaler

    world = World().adopted(CANARY)
    world.hpa = Autoscaler(on_twins=(("blue", "web-blue"),))
    scaled(world, 6, by="kube-controller-manager")
    world.step(CANARY, advance=1)
    assert world.state.replicas == 6
    told = [e for e in world.events if e.reason == "TwinScaled"]
    assert told and told[0].warning and "HPA web-blue targets the blue twin" in told[0].message
    scaled(world, 4, by="kube-controller-manager")
    plan = world.step(CANARY, advance=60)
    assert world.state.replicas == 4 and not any(
        isinstance(a, ScaleTwin) and a.color == "blue" for a in plan.actions
    )
    assert len([e for e in world.events if e.reason == "TwinScaled"]) == 1


def test_an_hpa_that_targets_a_twin_is_found() -> None:
    from canary.autoscaling import observe

    def hpa(name: str, target: str) -> dict[str, object]:
        return {
            "metadata": {"name": name},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                "minReplicas": 2,
                "maxReplicas": 9,
            },
        }

    service = {"metadata": {"name": "web", "namespace": "ns"}}
    found = observe([hpa("oncall", "web-blue"), hpa("other", "api")], service, "web")
    assert found.on_twins == (("blue", "oncall"),) and not found.followed
