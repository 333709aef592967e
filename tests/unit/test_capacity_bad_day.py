"""Capacity on a bad day: a namespace ResourceQuota that refuses pods, nodes
that are full, a cluster autoscaler that takes minutes. Each test failed on
the code before its fix."""

from __future__ import annotations

from dataclasses import replace

from analysis.verdicts import Verdict
from canary import handback
from canary.model import State
from canary.observe import source_of
from canary.spec import TWIN_LABEL, SpecError
from tests.unit.test_scaling_bad_day import autoscaled, halfway, serving
from tests.unit.world import World, result, spec

CANARY = spec(steps="25,50", progress_deadline="5m")
QUOTA = (
    'pods "web-blue-6d4cf56db6-x2x9k" is forbidden: exceeded quota: pods, '
    "requested: pods=1, used: pods=4, limited: pods=4"
)
UNSCHEDULABLE = "3 pods (e.g. web-blue-6d4cf56db6-a): Unschedulable (0/3 nodes are available)"


def test_an_adoption_whose_twin_pods_a_quota_refuses_says_so() -> None:
    """Adoption runs the app's full size on the stable twin beside the
    team's Deployment until the switch: a pods quota with room for the app
    and a bit more refuses the twin's pods. Before, the Service said
    `adopting: 0/3 pods of the blue twin ready` for good and no Event said
    why (PodsRefused was told only once adopted); the quota was on the
    twin's ReplicaSet alone."""
    world = World()
    world.pending = {"blue"}
    world.settle(CANARY)
    assert not world.state.adopted and "blue" in world.twins
    world.twins["blue"] = replace(world.twins["blue"], refused=QUOTA)
    world.step(CANARY, advance=5)
    told = [e for e in world.events if e.reason == "PodsRefused"]
    assert len(told) == 1 and told[0].warning and "exceeded quota" in told[0].message, told
    assert "canary.io/strategy" in told[0].message  # how to give up
    assert "exceeded quota" in world.state.message, world.state.message
    world.events.clear()
    world.step(CANARY, advance=5)
    assert "PodsRefused" not in world.reasons()  # once
    world.twins["blue"] = replace(world.twins["blue"], refused="")
    world.pending = set()
    world.settle(CANARY)
    assert world.state.adopted and not world.state.refused


def test_an_adoption_whose_twin_pods_no_node_takes_says_why() -> None:
    """Nodes full (the cluster autoscaler adding one, or not allowed to):
    the twin's pods are Pending, Unschedulable. The status says what the
    pods say, as a waiting step does."""
    world = World()
    world.pending = {"blue"}
    world.settle(CANARY)
    world.twins["blue"] = replace(world.twins["blue"], not_ready_why=UNSCHEDULABLE)
    world.step(CANARY, advance=5)
    assert "Unschedulable" in world.state.message, world.state.message


SOURCE_QUOTA = (
    'pods "web-7b9c5d8f4-q8k2m" is forbidden: exceeded quota: pods, '
    "requested: pods=1, used: pods=4, limited: pods=4"
)


def test_a_hand_back_whose_source_pods_a_quota_refuses_says_so() -> None:
    """`canary.io/strategy` removed: the team's Deployment is scaled back up
    beside the stable twin, which serves until the Deployment's pods are
    ready (the hand-back never leaves users on fewer pods). A pods quota
    with room for the app and a bit more refuses them. Before, the status
    said `releasing: 0/3 pods of web ready` for good, and the quota was on
    the Deployment's ReplicaSet alone."""
    world = World().adopted(CANARY)
    world.source = replace(world.source, ready=0)
    world.step(None, advance=1)
    assert world.source.replicas == 3 and not world.released
    world.source = replace(world.source, refused=SOURCE_QUOTA)
    world.step(None, advance=1)
    assert "exceeded quota" in world.state.message, world.state.message
    told = [e for e in world.events if e.reason == "PodsRefused"]
    assert len(told) == 1 and told[0].warning and "exceeded quota" in told[0].message, told
    world.events.clear()
    world.step(None, advance=5)
    assert "PodsRefused" not in world.reasons() and not world.released  # once; still waits
    world.source = replace(world.source, refused="", ready=3)
    world.step(None, advance=1)
    assert world.released


def test_the_team_deployments_refusal_is_read_from_its_replica_failure() -> None:
    deployment = {
        "metadata": {"name": "web", "generation": 2},
        "spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "web"}}}},
        "status": {
            "observedGeneration": 2,
            "conditions": [
                {"type": "ReplicaFailure", "status": "True", "message": SOURCE_QUOTA},
            ],
        },
    }
    source, _ = source_of(deployment, lambda kind, name: None)
    assert source.refused == SOURCE_QUOTA


def _orphaned(world: World) -> None:
    """The Service goes (or comes back without our annotations) and is handed
    back on its own, as the controller's orphan path does it, cycle by cycle."""
    for cycle in range(10):
        plan = handback.orphan(world.observed(), missing_for=60.0 + cycle)
        for action in plan.actions:
            world._land(action)
        if plan.release:
            return
    raise AssertionError("never handed back")


def test_an_orphaned_autoscaled_rollout_is_handed_back_at_what_both_twins_served() -> None:
    """An autoscaled rollout at its 50 % step: the stable twin's HPA sized it
    for its share (8), the canary serves the rest (8). The Service is
    recreated without our annotations (a Helm reinstall) or deleted: the
    orphan hand-back sized the team's Deployment from the claim, which held
    the stable twin's share, so the load of 16 pods came back on 8 until the
    team's HPA, woken on the Deployment, caught up. A hand-back by removing
    canary.io/strategy already gave it what both twins served."""
    world = halfway()
    assert serving(world) == 16
    world.selector = {"app": "web"}  # recreated without our annotations
    world.source = replace(world.source, ready=100)  # its pods ready once scaled
    _orphaned(world)
    assert world.source.replicas >= 16, f"16 pods served; handed back at {world.source.replicas}"
    assert serving(world) >= 16


def test_an_orphaned_fixed_size_rollout_is_handed_back_at_the_apps_size() -> None:
    """Not autoscaled, the canary's pods were on top of the app's size: the
    Deployment gets that size back, not more."""
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    assert world.twins["green"].replicas == 1
    world.selector = {"app": "web"}
    world.source = replace(world.source, ready=100)
    _orphaned(world)
    assert world.source.replicas == 3


PROMOTION_QUOTA = (
    'pods "web-green-6d4cf56db6-z7p4q" is forbidden: exceeded quota: pods, '
    "requested: pods=1, used: pods=4, limited: pods=4"
)


def test_a_promotion_a_quota_holds_is_rolled_back_naming_it_and_told_once() -> None:
    """A pods quota with room for the app and its last step, not for the
    canary at full size beside the stable twin: the promotion waits, saying
    so, and is rolled back at its progress deadline naming the quota,
    traffic never flipped onto the pods it has. Before, the rollback's own
    cycle told a second PodsRefused Warning about the twin it had just
    scaled to 0 ("the green twin (idle) cannot create its pods ... a
    rollout waiting for these pods is rolled back at its progress
    deadline"), as if something still waited for them."""
    one_step = spec(steps="25", progress_deadline="5m")
    world = World().adopted(one_step)
    world.source = replace(world.source, revision="r2")
    world.settle(one_step)
    assert world.twins["green"].replicas == 1
    world.stall(True)  # no new pod comes any more
    world.twins["green"] = replace(world.twins["green"], refused=PROMOTION_QUOTA)
    world.step(one_step, result(Verdict.PASS), advance=10)
    world.settle(one_step)
    assert world.state.promoting and "exceeded quota" in world.state.message
    for _ in range(4):
        world.step(one_step, advance=100)
        assert world.selector.get(TWIN_LABEL) != "green", "flipped onto too few pods"
    assert world.state.canary is None and world.selector.get(TWIN_LABEL) == "blue"
    [deadline] = [e for e in world.events if e.reason == "ProgressDeadlineExceeded"]
    assert "exceeded quota" in deadline.message
    told = [e for e in world.events if e.reason == "PodsRefused"]
    assert len(told) == 1 and "(canary)" in told[0].message, [e.message for e in told]


DRAINED = (
    "2 pods (e.g. web-blue-6d4cf56db6-b): Unschedulable (0/3 nodes are available: "
    "3 Insufficient cpu)"
)


def test_a_stable_twin_short_of_pods_says_why_they_do_not_come() -> None:
    """A drain evicts two stable pods and no node has room for them (the
    cluster autoscaler adding one takes minutes), or a pods quota refuses
    their replacements. Before, the Degraded Event and the status said only
    "1/3 pods of the blue twin (stable) ready"; the pods' own words (or the
    quota's, on the ReplicaSet alone) were nowhere on the Service."""
    world = World().adopted(CANARY)
    world.stall(True)
    assert world.stalled is not None
    world.stalled["blue"] = ("r1", 1)
    world.twins["blue"] = replace(world.twins["blue"], not_ready_why=DRAINED)
    world.step(CANARY, advance=5)
    [degraded] = [e for e in world.events if e.reason == "Degraded"]
    assert "Unschedulable" in degraded.message, degraded.message
    assert "Unschedulable" in world.state.message, world.state.message
    world.twins["blue"] = replace(world.twins["blue"], not_ready_why="", refused=QUOTA)
    world.step(CANARY, advance=5)
    assert "exceeded quota" in world.state.message, world.state.message


def test_a_status_lost_mid_autoscaled_rollout_is_rebuilt_at_the_stable_twins_live_size() -> None:
    """The claim holds what both twins serve mid-rollout (for an orphaned
    hand-back); a rebuilt status still takes the stable twin's size from
    its HPA copy, and says the size it runs, not the claim's."""
    world = halfway()
    assert world.source.claim.replicas == 16
    world.state = State()
    world.lost = "removed"
    world.events.clear()
    world.step(CANARY, advance=1)
    [rebuilt] = [e for e in world.events if e.reason == "StateRebuilt"]
    assert "8 replicas" in rebuilt.message, rebuilt.message


def test_a_hand_back_waiting_for_a_drained_stable_twin_says_why() -> None:
    """A drain left the stable twin with no ready pod (Pending, no node fits)
    while the canary's pods serve a step, and the team removes
    canary.io/strategy: the hand-back waits for a stable pod before moving
    the Service. Before, it said only "waiting for the blue twin's pods"."""
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    assert world.state.step_ready and world.state.canary == "green"
    world.pending = {"blue"}
    world.twins["blue"] = replace(world.twins["blue"], not_ready_why=DRAINED)
    world.step(None, advance=1)
    assert world.selector.get(TWIN_LABEL) != "blue", "moved onto no pod"
    assert "Unschedulable" in world.state.message, world.state.message


def test_a_status_lost_mid_autoscaled_rollout_gives_the_stable_twin_the_load_back() -> None:
    """The status is lost at a 50 % step of an autoscaled app (8 stable + 8
    canary pods serve; `kubectl annotate svc web canary.io/status-`, an old
    export applied): the rebuild takes the canary out (not analysed, its
    revision goes out again from the first step). Before, the stable twin
    stayed at its HPA share: the load of 16 pods on 8, as a rollback had it
    before take_the_load_back. The claim keeps what both served."""
    world = halfway()
    world.state = State()
    world.lost = "removed"
    world.step(CANARY, advance=1)
    assert world.selector.get(TWIN_LABEL) == "blue"  # the canary is out
    assert world.twins["blue"].replicas >= 16, world.twins["blue"]
    assert serving(world) >= 16
    world.settle(CANARY)
    assert world.twins["blue"].replicas >= 16  # not cut back by follow_size


def test_a_status_lost_while_the_annotations_cannot_be_read_still_gives_the_load_back() -> None:
    """As above, while an annotation cannot be read (a typo in
    canary.io/analysis): the rebuild takes the canary out there too
    (decide._unknown_canary_out, no rollout can start to analyse it), so
    the stable twin takes the load back at once. Before, only the valid
    path did: all 16 pods' load went onto the stable twin's 8."""
    world = halfway()
    invalid = parse_error(interval="30x")
    world.step(invalid, advance=1)
    world.state = State()
    world.lost = "removed"
    world.step(invalid, advance=1)
    assert world.selector.get(TWIN_LABEL) == "blue"  # the canary is out
    assert world.twins["blue"].replicas >= 16, world.twins["blue"]
    assert serving(world) >= 16


def parse_error(**annotations: str) -> SpecError:
    try:
        spec(**annotations)
    except SpecError as error:
        return error
    raise AssertionError(annotations)


def test_a_growth_of_the_stable_twin_a_quota_refuses_is_degraded() -> None:
    """The team's HPA (through our copy) grows the stable twin from 8 to 12
    under load, and a pods quota refuses the 4 new pods: they never come
    while the quota is full. Before, the growth was judged on the size that
    served (8, as for pods on their way) for good: `Healthy`, while the app
    ran 8 of the 12 pods its HPA asked for (Kubernetes itself has the
    Deployment not Available); only a PodsRefused Event said so."""
    world = autoscaled()
    world.autoscale(8)
    world.settle(CANARY)
    assert not world.state.degraded
    world.stall(True)  # no new pod comes
    world.autoscale(12)
    world.twins["blue"] = replace(world.twins["blue"], refused=QUOTA)
    world.step(CANARY, advance=5)
    [degraded] = [e for e in world.events if e.reason == "Degraded"]
    assert "8/12" in degraded.message and "exceeded quota" in degraded.message, degraded.message
    world.stall(False)  # room again: the pods come
    world.twins["blue"] = replace(world.twins["blue"], refused="")
    world.step(CANARY, advance=5)
    assert not world.state.degraded and "Recovered" in world.reasons()


def test_a_growth_of_the_stable_twin_on_its_way_is_not_degraded() -> None:
    """Pods the HPA just asked for and that are coming (no refusal) are
    growth, as before: judged on the size that served."""
    world = autoscaled()
    world.autoscale(8)
    world.settle(CANARY)
    world.stall(True)
    world.autoscale(12)
    world.step(CANARY, advance=5)
    assert not world.state.degraded and "Degraded" not in world.reasons()
