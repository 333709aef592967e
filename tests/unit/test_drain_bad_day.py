"""Cluster operations on a bad day, mid-rollout: nodes drained or cordoned,
pods evicted and left Pending with no node that fits."""

from __future__ import annotations

from dataclasses import replace

import pytest

from canary.model import Observed, other
from canary.spec import TWIN_LABEL
from tests.unit.world import World, spec

CANARY = spec(steps="25,50", failure_limit="0")


def _serving_a_step() -> World:
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    assert world.state.canary == "green" and world.state.step_ready, world.state
    assert world.selector.get(TWIN_LABEL) is None  # both twins serve
    return world


@pytest.mark.parametrize("how", ["analysis", "abort"])
def test_a_rollback_while_the_stable_twin_has_no_ready_pod_keeps_the_service_serving(
    how: str,
) -> None:
    """A drain evicts every pod of the stable twin (blue) and they stay
    Pending: no node fits (cordoned nodes mid node-pool upgrade, a quota).
    A PodDisruptionBudget on app=web lets that happen, as the canary's pods
    count towards it. The canary (green) now serves every request; then its
    check fails (one pod taking all the traffic is slow), or on-call aborts.
    Before, the rollback pointed the Service at the blue twin, which had no
    ready pod, and scaled green to 0 in the same decision: the Service went
    from the canary's ready pods to none at all, and the RolledBack Event said
    traffic was back on the blue twin. The release is rolled back (recorded,
    kept out), but traffic moves to the stable twin only once it has a ready
    pod, as `abort` after a promotion already waits (manual.flip_back_refused)."""
    world = _serving_a_step()
    world.pending = {"blue"}
    world.step(CANARY, advance=1)
    assert world.observed().endpoints > 0  # the canary's pods serve
    world.events.clear()
    if how == "abort":
        world.action = "abort now"
        world.step(CANARY, advance=1)
    else:
        world.fail(CANARY)
    assert world.state.canary is None and world.state.failed_revision == "r2", world.state
    assert world.observed().endpoints > 0, (world.selector, world.twins)
    rolled_back = next(e for e in world.events if e.reason == "RolledBack")
    assert "traffic is back on the blue twin" not in rolled_back.message, rolled_back.message
    world.settle(CANARY)
    world.step(CANARY, advance=30)
    world.settle(CANARY)
    assert world.observed().endpoints > 0, (world.selector, world.twins)
    # The stable twin's pods are scheduled again: traffic goes back to it,
    # and the rolled-back twin stops only once the Service has left it.
    world.pending = set()
    world.settle(CANARY)
    assert world.selector.get(TWIN_LABEL) == "blue", world.selector
    assert world.twins["green"].replicas == 0, world.twins
    assert world.state.stable == "blue" and world.state.canary is None


def test_a_rollback_with_both_twins_down_moves_traffic_back_at_once() -> None:
    """The hold is only for a canary that serves: when neither twin has a
    ready pod, the rollback goes as before (selector on the stable twin,
    canary to 0), so the stable pods are what serves as they come back."""
    world = _serving_a_step()
    world.pending = {"blue", "green"}
    world.fail(CANARY)
    assert world.state.canary is None
    assert world.selector.get(TWIN_LABEL) == "blue", world.selector
    assert world.twins["green"].replicas == 0, world.twins


def test_a_hotfix_released_while_a_rollback_waits_on_the_stable_twin_waits_too() -> None:
    """The rollback above holds the Service on the rolled-back twin's pods
    (blue has none ready); then the team releases a hotfix. Before, the
    rollout started at once: the Service went to the blue twin alone, which
    had no ready pod (no endpoint at all), and the green twin was
    re-templated under it. The hotfix now waits, said in the status, until
    the stable twin serves again; then it rolls out as any release."""
    world = _serving_a_step()
    world.pending = {"blue"}
    world.step(CANARY, advance=1)
    world.fail(CANARY)
    assert world.state.canary is None and world.observed().endpoints > 0
    world.source = replace(world.source, revision="r3")
    for _ in range(5):
        world.step(CANARY, advance=5)
        assert world.observed().endpoints > 0, (world.selector, world.twins)
    assert world.state.canary is None and world.twins["green"].revision == "r2"
    assert "revision r3 waits" in world.state.message, world.state.message
    world.pending = set()
    world.settle(CANARY)
    assert world.state.canary == "green" and world.state.canary_revision == "r3"
    assert world.observed().endpoints > 0


def test_a_release_replacing_a_canary_that_serves_alone_keeps_the_service_serving() -> None:
    """Mid-step, the stable twin's pods are evicted and stay Pending: the
    canary's pods carry every request. A new release replaces the canary.
    Before, the replaced rollout moved the Service to the stable twin alone
    (no endpoint at all) and re-templated the twin that served. The replaced
    revision now ends as superseded with its pods kept serving (as a rollback
    would), and the new release waits for the stable twin."""
    world = _serving_a_step()
    world.pending = {"blue"}
    world.step(CANARY, advance=1)
    world.source = replace(world.source, revision="r3")
    for _ in range(5):
        world.step(CANARY, advance=5)
        assert world.observed().endpoints > 0, (world.selector, world.twins)
    assert world.state.canary is None and world.twins["green"].revision == "r2"
    assert world.state.failed_revision == ""  # superseded, not failed
    world.pending = set()
    world.settle(CANARY)
    assert world.state.canary == "green" and world.state.canary_revision == "r3"


class LaggingStatus(World):
    """The stable twin's pods are deleted: the EndpointSlices no longer list
    them, while its Deployment still counts them ready (readyReplicas lags,
    as kube-controller-manager's status updates do under load)."""

    lagging: bool = False

    def observed(self) -> Observed:
        observed = super().observed()
        if not self.lagging or self.state.stable is None:
            return observed
        blue = observed.twins[self.state.stable]
        lagging = replace(blue, ready=blue.replicas - 1, endpoints=0)
        green = observed.twins[other(self.state.stable)]
        return replace(
            observed,
            twins={**observed.twins, self.state.stable: lagging},
            endpoints=green.endpoints,
        )


def test_an_abort_holds_when_the_stable_twins_ready_count_lags_its_endpoints() -> None:
    # Before, stable_down asked both counts to be 0; on the sandbox the
    # Deployment still said "2/3 ready" after its pods were deleted, and the
    # abort pointed the Service at it: no endpoint at all.
    world = LaggingStatus().adopted(CANARY)
    assert isinstance(world, LaggingStatus)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    assert world.state.canary == "green" and world.state.step_ready
    world.lagging = True
    world.action = "abort now"
    world.step(CANARY, advance=1)
    assert world.state.canary is None and world.state.failed_revision == "r2"
    assert world.selector.get(TWIN_LABEL) is None, world.selector  # both twins, green serves
    assert world.twins["green"].replicas > 0
