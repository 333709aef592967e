"""A namespace ResourceQuota (or a policy) that refuses a twin's pods: the
twin Deployment is accepted, its ReplicaSet's pod creates are not
(FailedCreate), and only the Deployment's ReplicaFailure condition says so."""

from __future__ import annotations

from dataclasses import replace

from canary.model import JSON
from canary.observe import twin_of
from canary.spec import REVISION_ANNOTATION
from tests.unit.world import World, spec

CANARY = spec(steps="25,50", progress_deadline="5m")
QUOTA = (
    'pods "web-green-6d4cf56db6-x2x9k" is forbidden: exceeded quota: pods, '
    "requested: pods=1, used: pods=3, limited: pods=3"
)


def test_a_twin_whose_pods_are_refused_says_why() -> None:
    """The Deployment controller copies its ReplicaSet's FailedCreate into a
    ReplicaFailure condition on the twin; that is all the controller sees."""
    deployment: JSON = {
        "metadata": {"name": "web-green", "annotations": {REVISION_ANNOTATION: "r2"}},
        "spec": {"replicas": 1, "template": {}},
        "status": {
            "observedGeneration": 1,
            "replicas": 0,
            "updatedReplicas": 0,
            "conditions": [
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetCreated"},
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "reason": "FailedCreate",
                    "message": QUOTA,
                },
            ],
        },
    }
    assert twin_of(deployment, []).refused == QUOTA
    deployment["status"]["conditions"][1]["status"] = "False"
    assert twin_of(deployment, []).refused == ""


def test_a_canary_whose_pods_a_quota_refuses_is_told_on_the_service_at_once() -> None:
    """A pods quota with room for the stable twin only: the canary twin is
    scaled up, but none of its pods is ever created. Before, the Service said
    `waiting for the canary, 0/1 pods ready` for the whole progress deadline
    and then rolled the release back for it, and nothing on the Service (its
    Events, `canary status`) said a quota was the reason: that was on the
    twin's ReplicaSet alone. Now a Warning says so when it is first seen
    (once), and the waiting status and the rollback's Event name it."""
    world = World().adopted(CANARY)
    world.pending = {"green"}
    world.source = replace(world.source, revision="r2")
    world.step(CANARY, advance=1)
    assert world.twins["green"].revision == "r2" and world.state.canary == "green"
    world.twins["green"] = replace(world.twins["green"], refused=QUOTA)
    world.events.clear()
    world.step(CANARY, advance=1)
    told = [e for e in world.events if e.reason == "PodsRefused"]
    assert len(told) == 1 and told[0].warning and "exceeded quota" in told[0].message, told
    assert "exceeded quota" in world.state.message, world.state.message
    world.events.clear()
    world.step(CANARY, advance=10)
    assert "PodsRefused" not in world.reasons()  # once, not every cycle
    world.step(CANARY, advance=300)
    [deadline] = [e for e in world.events if e.reason == "ProgressDeadlineExceeded"]
    assert "exceeded quota" in deadline.message, deadline.message
