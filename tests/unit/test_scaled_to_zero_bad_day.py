"""An app its team keeps at 0 replicas (a staging app stopped at night, an
app stopped mid-incident) on a bad day: a release, adoption, a hand-back."""

from __future__ import annotations

from dataclasses import replace

import pytest

from analysis.verdicts import Verdict
from canary import autoscaling
from canary.decide import phase
from canary.model import Autoscaler, Phase, ScaleSource, SetSelector
from canary.spec import RolloutSpec
from tests.unit.test_autoscaling import SERVICE, hpa
from tests.unit.world import World, result, source, spec

CANARY = spec(steps="25,50")
BLUE_GREEN = spec(strategy="blue-green")
TEAM_HPA = Autoscaler("web", min_replicas=2, max_replicas=20)


def stopped(the_spec: RolloutSpec) -> World:
    """Adopted while its Deployment was at 0: the stable twin runs no pod."""
    world = World(source=source(replicas=0)).adopted(the_spec)
    assert world.twins["blue"].replicas == 0
    return world


@pytest.mark.parametrize("the_spec", [CANARY, BLUE_GREEN], ids=["canary", "blue-green"])
def test_release_while_the_app_is_scaled_to_zero_waits_until_it_is_scaled_up(
    the_spec: RolloutSpec,
) -> None:
    """No pod would serve the release and none would measure it: starting it
    ran a canary pod against the team's 0 (serving every request that came,
    at a 25 % step), or a blue-green preview of no pod, and either was one
    passing check away from being promoted on nothing."""
    world = stopped(the_spec)
    world.source = replace(world.source, revision="r2")
    world.settle(the_spec)
    running = {color: twin.replicas for color, twin in world.twins.items() if twin.replicas}
    assert not running, f"the team keeps its app at 0; pods were started: {running}"
    for _ in range(3):
        world.step(the_spec, result(Verdict.PASS), advance=10)
    assert world.state.stable_revision == "r1", "promoted a release no pod ever served"
    assert world.state.canary is None
    assert "RolloutStarted" not in world.reasons()
    assert world.reasons().count("RolloutWaiting") == 1, world.reasons()
    assert "scaled to 0" in world.state.message
    assert phase(the_spec, world.state) is Phase.HEALTHY
    # The team scales its app up: the stable twin comes back at its revision,
    # then the release goes out through the strategy.
    world.source = replace(world.source, replicas=3)
    world.settle(the_spec)
    assert world.twins["blue"].replicas == 3
    assert world.state.canary == "green" and world.state.canary_revision == "r2"
    if the_spec is CANARY:
        assert world.state.effective_weight == 25.0


def test_hand_back_of_an_app_scaled_to_zero_leaves_it_at_zero() -> None:
    """Before, the hand-back scaled the team's Deployment to 1 (an HPA's
    minimum, with no HPA) and waited for that pod before letting go."""
    world = stopped(CANARY)
    scaled = []
    for _ in range(5):
        plan = world.step(None)
        scaled += [a.replicas for a in plan.actions if isinstance(a, ScaleSource)]
        if world.released:
            break
    assert not any(scaled), f"the app was at 0; the hand-back scaled it to {scaled}"
    assert world.released
    assert world.source.replicas == 0
    assert "0 replicas" in world.events[-1].message


def test_status_of_an_app_scaled_to_zero_says_no_pod_serves() -> None:
    """Before, it said "serving revision r1 from the blue twin" while no pod
    ran: on-call looking for why requests fail was told all was served."""
    world = stopped(CANARY)
    for message in (world.state.message, (world.step(CANARY), world.state.message)[1]):
        assert "scaled to 0" in message and "serving revision" not in message, message
    world.source = replace(world.source, replicas=3)
    world.settle(CANARY)
    assert world.state.message == "serving revision r1 from the blue twin"


def test_adoption_at_zero_goes_on_after_the_selector_with_no_endpoint_to_wake_it() -> None:
    """Each adoption step waits for the watch event its write causes; the
    switch of the selector waits for the EndpointSlice. With no pod on
    either side nothing in the slice changes, and our own write sends no
    event: the sandbox sat in `Adopting` ("Service now selects the blue
    twin") past 90 s."""
    world = World(source=source(replicas=0))
    for _ in range(6):
        plan = world.step(CANARY)
        if world.state.adopted:
            break
        if plan.actions == (SetSelector({"app": "web", "canary.io/twin": "blue"}),):
            wake = plan.requeue_after
            assert wake is not None and wake <= 5, f"nothing wakes it (requeue_after={wake})"
    assert world.state.adopted


@pytest.mark.parametrize("hpa", [Autoscaler(), TEAM_HPA], ids=["fixed size", "autoscaled"])
def test_an_app_at_zero_scaled_up_through_its_deployment_runs_at_that_size(
    hpa: Autoscaler,
) -> None:
    """`kubectl scale deployment/web --replicas=2` is the way back from 0
    (the status says so). Autoscaled, it was put back to 0 and nothing else
    moved: the team's HPA and its copy on the twin are idle at 0, so the app
    stayed at 0 for good, under a Warning to leave `replicas` out of the
    manifest."""
    world = World(hpa=hpa, source=source(replicas=0)).adopted(CANARY)
    world.settle(CANARY)
    world.source = replace(world.source, replicas=2)
    world.settle(CANARY)
    assert world.source.replicas == 0  # its pods would bypass the rollout
    assert world.twins["blue"].replicas == 2, world.events
    assert world.state.message == "serving revision r1 from the blue twin"
    [scaled] = [e for e in world.events if e.reason == "SourceScaled"]
    assert not scaled.warning and "was at 0" in scaled.message, scaled


def keda(low: int = 1) -> Autoscaler:
    """What a KEDA ScaledObject makes: an HPA on an External metric, owned by
    the ScaledObject, as the controller observes it (refused)."""
    made = hpa("keda-hpa-web", metrics=[{"type": "External", "external": {}}], low=low)
    made["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "name": "web",
            "controller": True,
        }
    ]
    return autoscaling.observe([made], SERVICE, "web")


def test_keda_waking_the_deployment_we_keep_at_zero_never_cuts_the_app() -> None:
    """KEDA reads the 0 we keep the Deployment at as its app idle and, with
    its triggers active (under load), writes its minimum (1) there at every
    poll. Taken as the team's new size, an app serving on 6 pods was cut to
    1 at KEDA's first poll."""
    world = World(hpa=keda(), source=source(replicas=6)).adopted(CANARY)
    assert world.hpa.refused  # on an External metric
    for _ in range(3):  # one poll every 30 s
        world.source = replace(world.source, replicas=1)
        world.settle(CANARY)
        world.now += 30
    assert world.twins["blue"].replicas == 6
    assert world.source.replicas == 0
    [told] = [e for e in world.events if e.reason == "SourceScaled"]
    assert "KEDA" in told.message and "keeps 6 replicas" in told.message, told.message
    assert "autoscaling.keda.sh/paused" in told.message  # how to stop the writes


def test_keda_waking_an_app_at_zero_scales_it_up() -> None:
    """From 0, KEDA's write is the wake-up it means: the app runs at it."""
    world = World(hpa=keda(low=2), source=source(replicas=0)).adopted(CANARY)
    world.source = replace(world.source, replicas=2)
    world.settle(CANARY)
    assert world.twins["blue"].replicas == 2


def test_twins_scaled_to_zero_by_hand_mid_rollout_are_put_back() -> None:
    """The twins are the controller's, as a Rollout's ReplicaSets are Argo's:
    the app's size is its Deployment's (already 0 here, so a scale of it to
    0 changes nothing and cannot be seen). A guard of what the README says."""
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    assert world.state.effective_weight == 25.0
    world.twins["blue"] = replace(world.twins["blue"], replicas=0)
    world.step(CANARY)
    assert world.twins["blue"].replicas == 3 and world.state.canary == "green"
    world.settle(CANARY)
    world.twins["green"] = replace(world.twins["green"], replicas=0)
    world.step(CANARY)
    assert world.twins["green"].replicas == 1
    assert world.selector == {"app": "web", "canary.io/twin": "blue"}  # until it is ready
    world.settle(CANARY)
    assert world.state.effective_weight == 25.0 and world.state.canary_revision == "r2"


def test_an_undo_while_the_app_is_at_zero_is_refused_and_starts_no_pod() -> None:
    """An undo goes out through the strategy like a release: at 0, a canary
    pod ran against the team's 0 and served everything at a 25 % step.
    Nothing remembers an undo for later, so it is refused, and said so."""
    world = stopped(CANARY)
    world.revisions = {1: "r0", 2: "r1"}
    world.action = "undo 1 t1"
    world.settle(CANARY)
    assert world.twins.get("green") is None or world.twins["green"].replicas == 0, world.twins
    assert world.state.canary is None and world.state.stable_revision == "r1"
    [ignored] = [e for e in world.events if e.reason == "ActionIgnored"]
    assert "scaled to 0" in ignored.message, ignored.message


@pytest.mark.parametrize("the_spec", [CANARY, BLUE_GREEN], ids=["canary", "blue-green"])
def test_a_release_waiting_at_zero_waits_for_a_stable_pod_once_the_app_is_scaled_up(
    the_spec: RolloutSpec,
) -> None:
    """The wake-up scaled the stable twin up and started the release in the
    same cycle: both twins' pods started together, and a canary pod ready
    first served every request (a 25 % step, 100 % effective), passed on
    absolute thresholds alone (no baseline to compare with), and the
    release was promoted while the stable twin had never served: what the
    wait at 0 is there to prevent. Bounded by the progress deadline: a
    stable revision that no longer starts does not hold a fix back."""
    world = stopped(the_spec)
    world.source = replace(world.source, revision="r2")
    world.settle(the_spec)
    world.source = replace(world.source, replicas=3)
    world.pending = {"blue"}  # the stable twin's pods are starting
    world.settle(the_spec)
    assert world.twins["blue"].replicas == 3
    assert world.state.canary is None, "a release started before any stable pod was ready"
    assert world.twins.get("green") is None or world.twins["green"].replicas == 0
    assert "r2 waits for its first ready pod" in world.state.message, world.state.message
    world.step(the_spec, advance=5)
    assert world.state.canary is None
    world.pending = set()  # ready
    world.settle(the_spec)
    assert world.state.canary == "green" and world.state.stable_revision == "r1"
    if the_spec is CANARY:
        assert world.state.effective_weight == 25.0


def test_a_stable_twin_never_up_after_a_wake_up_holds_a_release_only_till_the_deadline() -> None:
    """Its revision may no longer start (a dependency gone while it was at
    0): the release that may fix it goes out after the progress deadline,
    as with any stable twin that has no ready pod."""
    world = stopped(CANARY)
    world.source = replace(world.source, replicas=3)
    world.pending = {"blue"}
    world.settle(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    assert world.state.canary is None
    world.step(CANARY, advance=CANARY.progress_deadline + 1)
    assert world.state.canary == "green"


def test_an_undo_right_after_a_wake_up_waits_for_a_stable_pod_as_a_release_does() -> None:
    """Started while the stable twin's first pods came up, an undo's canary
    pod could be ready first and take every request, as a release's did."""
    world = stopped(CANARY)
    world.revisions = {1: "r0", 2: "r1"}
    world.source = replace(world.source, replicas=3)
    world.pending = {"blue"}
    world.settle(CANARY)
    world.action = "undo 1 t1"
    world.settle(CANARY)
    assert world.state.canary is None, "an undo started before any stable pod was ready"
    [ignored] = [e for e in world.events if e.reason == "ActionIgnored"]
    assert "no ready pod" in ignored.message, ignored.message
