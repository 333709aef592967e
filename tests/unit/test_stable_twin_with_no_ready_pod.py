"""The stable twin exists at its size but has no ready pod (a drain evicted
them all and they are Pending on other nodes, they all crash, it was
scaled to 0 by hand and put back) when a release lands. Started then, the
canary's first ready pod took every request ("step 1/3 at 10% (100%
effective)"), judged against no baseline, and could pass a step before the
stable twin served again. The release waits for the stable twin's first
ready pod, as after a scale-up from 0 or with the twin deleted and made
again (rollout.waking), at most the progress deadline counted from when
the twin was first seen with no ready pod: a stable revision that no
longer starts does not hold back a release that may fix it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from canary.model import Color, Observed
from canary.spec import RolloutSpec
from tests.unit.world import World, spec

CANARY = spec(steps="10,25,50")
BLUE_GREEN = spec(strategy="blue-green")
DEADLINE = CANARY.progress_deadline


def _drained(the_spec: RolloutSpec) -> World:
    """An adopted app of 3 whose stable twin's pods were all evicted by a
    drain, re-created Pending on other nodes: replicas 3, ready 0, no
    endpoint."""
    world = World().adopted(the_spec)
    assert world.state.replicas == 3 and world.state.woken == 0.0
    world.pending = {"blue"}
    world.step(the_spec, advance=1)
    assert world.twins["blue"].replicas == 3
    seen = world.observed().twin("blue")
    assert (seen.ready, seen.endpoints) == (0, 0)
    return world


def _release(world: World, the_spec: RolloutSpec, revision: str = "r2") -> None:
    world.source = replace(world.source, revision=revision)
    world.settle(the_spec)


def _waits(world: World, revision: str = "r2") -> None:
    assert world.state.canary is None, f"{revision} started with no ready stable pod"
    assert world.twins.get("green") is None or world.twins["green"].replicas == 0, world.twins
    message = world.state.message
    assert f"{revision} waits" in message, message
    # What is observed, not a cause that did not happen.
    assert "scaled up from 0" not in message and "made again" not in message, message


@pytest.mark.parametrize("the_spec", [CANARY, BLUE_GREEN], ids=["canary", "blue-green"])
def test_a_release_waits_for_the_first_ready_pod_of_a_drained_stable_twin(
    the_spec: RolloutSpec,
) -> None:
    world = _drained(the_spec)
    _release(world, the_spec)
    _waits(world)
    world.step(the_spec, advance=30)
    _waits(world)
    world.pending = set()  # rescheduled: the stable twin's pods are ready
    world.settle(the_spec)
    assert world.state.canary == "green" and world.state.stable_revision == "r1"
    if the_spec is CANARY:
        # One canary pod beside the stable twin's 3, not alone (100 %).
        assert world.state.effective_weight == 25.0, world.state.effective_weight
    assert world.state.woken == 0.0


def test_the_wait_says_what_is_observed() -> None:
    world = _drained(CANARY)
    _release(world, CANARY)
    message = world.state.message
    assert "the blue twin" in message and "0/3" in message, message
    assert "r2 waits for" in message, message


def test_a_drain_seen_in_the_cycle_the_release_lands_holds_it_too() -> None:
    world = World().adopted(CANARY)
    world.pending = {"blue"}
    world.source = replace(world.source, revision="r2")
    world.step(CANARY, advance=1)
    world.settle(CANARY)
    _waits(world)


def test_a_stable_twin_that_never_gets_ready_holds_a_release_only_till_the_deadline() -> None:
    """Counted from when the twin was first seen with no ready pod, not from
    the release: its revision may no longer start (a dependency gone, an
    image pulled from the registry), and the release may be the fix."""
    world = _drained(CANARY)
    first_seen = world.now
    world.step(CANARY, advance=DEADLINE / 2)
    _release(world, CANARY)
    _waits(world)
    world.step(CANARY, advance=first_seen + DEADLINE - world.now - 1)
    _waits(world)
    world.step(CANARY, advance=2)
    assert world.state.canary == "green", world.state.message


def test_a_release_after_the_twin_had_no_ready_pod_for_longer_than_the_deadline_starts() -> None:
    """The wait is a bound on how long a stable twin that does not come back
    holds a release; one already down for longer has shown it does not, and
    holding the release another deadline would delay what may be the fix.
    Nor is the wait started again and again while nothing is released (a
    status write per deadline, and a release always held anew)."""
    world = _drained(CANARY)
    for _ in range(3):
        world.step(CANARY, advance=DEADLINE)
    world.source = replace(world.source, revision="r2")
    world.step(CANARY, advance=1)
    assert world.state.canary == "green", world.state.message


def test_a_stable_twin_scaled_to_zero_by_hand_and_put_back_holds_a_release() -> None:
    world = World().adopted(CANARY)
    world.twins["blue"] = replace(world.twins["blue"], replicas=0, scaled_by="kubectl")
    world.pending = {"blue"}  # put back: its new pods are starting
    world.step(CANARY, advance=1)
    assert world.twins["blue"].replicas == 3 and world.state.replicas == 3
    _release(world, CANARY)
    _waits(world)
    world.pending = set()
    world.settle(CANARY)
    assert world.state.canary == "green"


def test_an_undo_while_the_stable_twin_has_no_ready_pod_is_refused_and_says_why() -> None:
    world = _drained(CANARY)
    world.revisions = {1: "r0", 2: "r1"}
    world.action = "undo 1 t1"
    world.settle(CANARY)
    assert world.state.canary is None, "an undo started with no ready stable pod"
    [ignored] = [e for e in world.events if e.reason == "ActionIgnored"]
    assert "no ready pod" in ignored.message, ignored.message
    assert "scaled up from 0" not in ignored.message, ignored.message
    assert "made again" not in ignored.message, ignored.message


@dataclass
class _Replacing(World):
    """Pods of the stable twin replaced one at a time (a node drained pod by
    pod under a PodDisruptionBudget, a `kubectl rollout restart`): `short`
    of them not ready, the rest serving throughout."""

    short: dict[Color, int] = field(default_factory=dict)
    # Mid `kubectl rollout restart`: the Deployment counts no `ready` pod
    # until it has rolled (Twin.ready_mixed has them), and the EndpointSlices
    # lag behind.
    restarting: bool = False

    def observed(self) -> Observed:
        seen = super().observed()
        twins = dict(seen.twins)
        if self.restarting:
            blue = twins["blue"]
            twins["blue"] = replace(
                blue, ready=0, ready_mixed=blue.ready, updated=False, endpoints=0
            )
            seen = replace(seen, endpoints=seen.endpoints - blue.endpoints)
        for color, missing in self.short.items():
            twin = twins[color]
            twins[color] = replace(
                twin,
                ready=max(twin.ready - missing, 0),
                endpoints=max(twin.endpoints - missing, 0),
            )
        gone = sum(seen.twins[c].endpoints - twins[c].endpoints for c in self.short)
        return replace(seen, twins=twins, endpoints=seen.endpoints - gone)


def test_a_healthy_stable_twin_whose_pods_are_replaced_one_by_one_never_holds_a_release() -> None:
    """Ready > 0 throughout: no wait, and no woken time written to the
    status (a write of its own, each cycle a pod is replaced)."""
    world = _Replacing()
    world.adopted(CANARY)
    for missing in (1, 2, 1, 0, 1, 2):
        world.short = {"blue": missing}
        world.step(CANARY, advance=5)
        assert world.state.woken == 0.0, (missing, world.state)
    world.short = {"blue": 1}
    world.source = replace(world.source, revision="r2")
    world.step(CANARY, advance=1)
    assert world.state.canary == "green", world.state.message
    assert world.state.woken == 0.0


def test_a_healthy_stable_twin_never_sets_woken() -> None:
    world = World().adopted(CANARY)
    for _ in range(5):
        plan = world.step(CANARY, advance=30)
        assert world.state.woken == 0.0
        assert not plan.actions, plan.actions


def test_a_stable_twin_mid_restart_never_holds_a_release() -> None:
    """Its pods of the old template serve while the new ones come up: the
    Deployment's `ready` is 0 until it has rolled, and the EndpointSlices
    may lag; its ready pods of either template are pods that serve."""
    world = _Replacing()
    world.adopted(CANARY)
    world.restarting = True
    world.step(CANARY, advance=5)
    assert world.state.woken == 0.0, world.state


def test_a_drain_that_healed_mid_rollout_leaves_no_old_time_to_cut_the_next_wait() -> None:
    """Drained and back mid-rollout, long ago; drained again, the rollout
    aborted (its canary had no pod serving), and a release lands: it waits
    its full deadline from the second drain, not none from the first."""
    world = World().adopted(CANARY)
    world.pending = {"green"}  # the canary's pod never gets ready
    world.source = replace(world.source, revision="r2")
    world.step(CANARY, advance=1)
    assert world.state.canary == "green", world.state
    world.pending = {"blue", "green"}  # drained
    world.step(CANARY, advance=1)
    world.pending = {"green"}  # back
    world.step(CANARY, advance=1)
    world.step(CANARY, advance=DEADLINE / 2)
    world.step(CANARY, advance=DEADLINE / 2 + 1)
    world.pending = {"blue", "green"}  # drained again
    world.step(CANARY, advance=1)
    world.action = "abort t1"
    world.settle(CANARY)
    assert world.state.canary is None, world.state
    world.pending = {"blue"}
    _release(world, CANARY, "r3")
    _waits(world, "r3")


def test_a_release_replacing_a_rollout_in_flight_waits_for_the_stable_twins_first_ready_pod() -> (
    None
):
    """Neither twin has a ready pod (nodes lost, a dependency both need
    down) when a release replaces the one in flight: the canary has no
    endpoint, so the replaced rollout is not one whose pods serve alone
    (_replaced_while_stable_down), and the new one started at once; its
    first ready pod, up before the stable twin's, took every request.
    Found by the random-operations fuzz (check_waits_for_stable)."""
    world = World().adopted(CANARY)
    _release(world, CANARY)
    assert world.state.canary == "green" and world.state.canary_revision == "r2"
    world.pending = {"blue", "green"}
    world.step(CANARY, advance=1)
    _release(world, CANARY, "r3")
    _waits(world, "r3")
    world.step(CANARY, advance=30)
    _waits(world, "r3")
    world.pending = set()
    world.settle(CANARY)
    assert world.state.canary == "green" and world.state.canary_revision == "r3", world.state
    assert world.state.effective_weight == 25.0, world.state.effective_weight


def test_a_release_replacing_a_rollout_in_flight_the_cycle_the_stable_twin_goes_down_waits() -> (
    None
):
    world = World().adopted(CANARY)
    _release(world, CANARY)
    world.pending = {"blue", "green"}
    world.source = replace(world.source, revision="r3")
    world.step(CANARY, advance=1)
    world.settle(CANARY)
    _waits(world, "r3")


def test_an_undo_the_cycle_the_stable_twin_goes_down_is_refused() -> None:
    """The drain and the undo seen in one cycle (the controller restarted,
    both happened meanwhile): the undo is read before the stable twin is."""
    world = World().adopted(CANARY)
    world.revisions = {1: "r0", 2: "r1"}
    world.pending = {"blue"}
    world.action = "undo 1 t1"
    world.step(CANARY, advance=1)
    world.settle(CANARY)
    assert world.state.canary is None, "an undo started with no ready stable pod"
    [ignored] = [e for e in world.events if e.reason == "ActionIgnored"]
    assert "no ready pod" in ignored.message, ignored.message


def test_a_drain_that_healed_during_a_hand_back_leaves_no_old_time_to_cut_the_next_wait() -> None:
    """Drained (the time noted), then `canary.io/strategy` removed: the
    hand-back waits for the team's Deployment's pods (a quota refuses them)
    while the stable twin's pods come back and serve. Its cycles never
    looked at the stable twin's pods, so the old time stayed; drained again
    past the deadline and the strategy put back with a release, the wait
    looked long over and the release started at once, its canary's first
    ready pod taking every request ("step 1/3 at 10% (100% effective)").
    Found by review."""
    world = _drained(CANARY)
    assert world.state.woken
    world.source = replace(world.source, ready=0)  # the team's pods never come up
    world.step(None, advance=5)
    world.pending = set()  # the stable twin's pods are back and serve
    for _ in range(3):
        world.step(None, advance=DEADLINE / 2)
        assert not world.released and world.observed().twin("blue").ready == 3
    world.pending = {"blue"}  # drained again
    world.step(None, advance=5)
    _release(world, CANARY)
    _waits(world)
