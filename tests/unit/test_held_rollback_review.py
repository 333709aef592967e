"""Review of the held rollback (the stable twin has no ready pod, the other
twin's pods serve alone) read together with the manual actions and the
other fixes merged the same day."""

from __future__ import annotations

from dataclasses import replace

import pytest

from canary.model import SetSelector
from canary.spec import TWIN_LABEL, RolloutSpec
from tests.unit.test_drain_bad_day import CANARY, _serving_a_step
from tests.unit.world import World, source, spec


def _held_rollback() -> World:
    world = _serving_a_step()
    world.pending = {"blue"}
    world.step(CANARY, advance=1)
    world.fail(CANARY)
    assert world.state.canary is None and world.state.failed_revision == "r2"
    assert world.observed().endpoints > 0
    return world


@pytest.mark.parametrize("held", ["after-rollback", "mid-rollout"])
def test_an_undo_while_the_stable_twin_has_no_ready_pod_keeps_the_service_serving(
    held: str,
) -> None:
    """On-call, seeing the rolled-back release's pods still serving, runs
    `canary undo 1` (or runs it mid-rollout while the stable twin's pods
    are evicted). The undo started at once: the Service went to the stable
    twin alone, which has no ready pod, and the twin that served was
    re-templated under it. It waits as a new release does."""
    world = _held_rollback() if held == "after-rollback" else _serving_a_step()
    if held == "mid-rollout":
        world.pending = {"blue"}
        world.step(CANARY, advance=1)
    world.revisions = {1: "r0"}
    world.action = "undo 1 t1"
    for _ in range(5):
        world.step(CANARY, advance=5)
        assert world.observed().endpoints > 0, (world.selector, world.twins)
    assert world.twins["green"].revision == "r2", world.twins
    assert any(e.reason == "ActionIgnored" and "no ready pod" in e.message for e in world.events), (
        world.reasons()
    )
    # Once the stable twin serves again, the undo asked again goes out.
    world.pending = set()
    world.settle(CANARY)
    if held == "after-rollback":
        assert world.selector.get(TWIN_LABEL) == "blue", world.selector
    world.action = "undo 1 t2"
    world.settle(CANARY)
    assert world.state.canary_revision == "r0", world.state
    assert world.observed().endpoints > 0


def test_a_switch_to_blue_green_while_the_canary_serves_alone_keeps_the_service_serving() -> None:
    """Mid-step, the stable twin's pods are evicted and stay Pending: the
    canary's pods carry every request. The team (or its GitOps sync)
    switches the strategy to blue-green. Production went back to the stable
    twin at once (keep_weight, the blue-green placement), which has no
    ready pod: no endpoint at all, for as long as the drain lasted. It goes
    back once the stable twin has a ready pod, as a held rollback does."""
    blue_green = spec(strategy="blue-green", failure_limit="0")
    world = _serving_a_step()
    world.pending = {"blue"}
    world.step(CANARY, advance=1)
    assert world.observed().endpoints > 0
    for _ in range(5):
        world.step(blue_green, advance=1)
        assert world.observed().endpoints > 0, (world.selector, world.twins)
    # What the status says serves is what serves: the canary, alone.
    assert world.state.effective_weight == 100.0, world.state
    world.pending = set()
    world.settle(blue_green)
    assert world.selector.get(TWIN_LABEL) == "blue", world.selector
    assert world.state.effective_weight == 0.0 and world.state.canary == "green"


@pytest.mark.parametrize("when", ["mid-rollout", "after-rollback"])
def test_the_deployment_deleted_while_the_canary_serves_alone_keeps_the_service_serving(
    when: str,
) -> None:
    """The stable twin's pods are evicted and stay Pending; the canary's (or
    a held rollback's) pods serve alone. The team's Deployment is deleted
    and created again (`kubectl replace --force`, a Helm reinstall). The
    rollback held the Service on the canary's pods, then _source_missing
    pointed it at the stable twin anyway (no endpoint at all), and its
    SourceMissing Event said the stable twin kept serving."""
    world = _held_rollback() if when == "after-rollback" else _serving_a_step()
    if when == "mid-rollout":
        world.pending = {"blue"}
        world.step(CANARY, advance=1)
    source = world.source
    world.source = replace(source, exists=False)
    for _ in range(3):
        world.step(CANARY, advance=1)
        assert world.observed().endpoints > 0, (world.selector, world.twins)
    assert world.state.canary is None
    missing = next(e for e in world.events if e.reason == "SourceMissing")
    assert "keeps serving" not in missing.message, missing.message
    # The stable twin has ready pods again: traffic goes back to it, with
    # the Deployment still gone, then the rolled-back twin stops once the
    # Deployment is back (the steady state).
    world.pending = set()
    world.settle(CANARY)
    assert world.selector.get(TWIN_LABEL) == "blue", world.selector
    # ...and the twin that served stops once the Service has left it, as a
    # rollback does (not left running for as long as the Deployment is gone).
    assert world.twins["green"].replicas == 0, world.twins
    world.source = source
    world.settle(CANARY)
    assert world.observed().endpoints > 0
    if when == "after-rollback":  # r2 stays out; mid-rollout it was superseded, and goes out again
        assert world.twins["green"].replicas == 0, world.twins
    else:
        assert world.state.canary_revision == "r2", world.state


@pytest.mark.parametrize("when", ["mid-rollout", "after-rollback"])
def test_a_selector_reset_by_a_sync_while_the_canary_serves_alone_keeps_the_service_serving(
    when: str,
) -> None:
    """The stable twin's pods are evicted and stay Pending; the canary's (or
    a held rollback's) pods serve alone. A GitOps sync writes the Service's
    selector back as in Git (app=web: our keys gone). _restore_selector put
    it back on the stable twin alone: no endpoint at all. It now keeps both
    twins (never the source's pods) until the stable twin has a ready pod."""
    world = _held_rollback() if when == "after-rollback" else _serving_a_step()
    if when == "mid-rollout":
        world.pending = {"blue"}
        world.step(CANARY, advance=1)
    world.selector = {"app": "web"}
    for _ in range(3):
        plan = world.step(CANARY, advance=1)
        assert world.observed().endpoints > 0, (world.selector, world.twins)
        # Not even for a moment within one decision (mid-rollout the step
        # put both twins back right after): each write lands on its own.
        emptied = [
            a for a in plan.actions if isinstance(a, SetSelector) and a.selector.get(TWIN_LABEL)
        ]
        assert not emptied, plan.actions
    assert "SelectorRestored" in world.reasons()
    assert world.selector.get("canary.io/service") == "web", world.selector
    world.pending = set()
    world.settle(CANARY)
    assert world.observed().endpoints > 0
    if when == "after-rollback":
        assert world.selector.get(TWIN_LABEL) == "blue", world.selector


def _reinstall_served_on(world: World, canary: RolloutSpec) -> None:
    """The Deployment created afresh at r1 and the selector written back
    as in Git (a reinstall): its 3 pods serve, and go on serving for the
    next cycles while the stable twin has no ready pod."""
    world.source = source("r1")
    world.selector = {"app": "web"}
    assert world.observed().endpoints == 3
    for _ in range(3):
        world.step(canary, advance=1)
        assert world.observed().endpoints > 0, (world.selector, world.source, world.state.message)


def test_a_reinstall_while_the_stable_twin_has_no_ready_pod_keeps_the_source_serving() -> None:
    """The stable twin's pods are evicted and stay Pending; a reinstall (the
    Deployment deleted and created afresh, the Service's selector written
    back as in Git) leaves the Deployment's own pods, at the stable
    revision and ungated, all the Service has. _restore_selector put the
    selector back on the stable twin and the source went to 0: the Service
    went from 3 endpoints to none (found by the random-operations fuzz).
    The source's pods now serve until the stable twin has a ready pod."""
    canary = spec()
    world = World().adopted(canary)
    world.pending = {"blue"}
    world.step(canary, advance=1)
    _reinstall_served_on(world, canary)
    assert "Deployment web's own pods serve" in world.state.degraded, world.state
    world.pending = set()
    world.settle(canary)
    assert world.selector.get(TWIN_LABEL) == "blue", world.selector
    assert (world.source.replicas, world.source.gated) == (0, True), world.source
    assert world.observed().endpoints == 3


def test_a_reinstall_while_the_stable_twin_is_scaled_to_zero_scales_it_back_and_moves_on() -> None:
    """The same reinstall, but the stable twin scaled to 0 by hand (no pod
    to wait for, none Pending): held as above, nothing would ever scale it
    back, and the source's pods would serve outside the controller for
    good. It is scaled back while they serve, and the selector and the
    source are put back once it is ready."""
    canary = spec()
    world = World().adopted(canary)
    world.twins["blue"] = replace(world.twins["blue"], replicas=0)
    world.source = source("r1")
    world.selector = {"app": "web"}
    assert world.observed().endpoints == 3
    plan = world.step(canary, advance=1)
    assert world.observed().endpoints > 0, (plan.actions, world.selector)
    world.settle(canary)
    assert world.twins["blue"].replicas == 3, world.twins
    assert world.selector.get(TWIN_LABEL) == "blue", world.selector
    assert (world.source.replicas, world.source.gated) == (0, True), world.source


def test_a_reinstall_with_the_stable_twin_deleted_serves_on_the_source_until_it_is_back() -> None:
    """A reinstall that deleted the stable twin too (`helm uninstall` with
    the twins labelled as the chart's, then `helm install`): the twin is
    made again, and until its pods are ready the Deployment's own pods of
    the same revision serve. Before, the selector went back onto the twin
    being made and the source to 0 in the same decision: no endpoint until
    the new pods were ready."""
    canary = spec()
    world = World().adopted(canary)
    world.twins["blue"] = replace(world.twins["blue"], exists=False, replicas=0)
    world.pending = {"blue"}  # made again, its pods take a while
    world.source = source("r1")
    world.selector = {"app": "web"}
    assert world.observed().endpoints == 3
    for _ in range(3):
        plan = world.step(canary, advance=1)
        assert world.observed().endpoints > 0, (plan.actions, world.selector, world.source)
    assert world.twins["blue"].exists and world.twins["blue"].replicas == 3, world.twins
    world.pending = set()
    world.settle(canary)
    assert world.selector.get(TWIN_LABEL) == "blue", world.selector
    assert (world.source.replicas, world.source.gated) == (0, True), world.source
    assert world.observed().endpoints == 3


def _reinstalled_while_drained(canary: RolloutSpec) -> World:
    world = World().adopted(canary)
    world.pending = {"blue"}
    world.step(canary, advance=1)
    world.source = source("r1")
    world.selector = {"app": "web"}
    world.step(canary, advance=1)
    assert "own pods serve" in world.state.degraded, world.state
    return world


def test_a_hand_back_while_the_source_stands_in_lets_go_without_waiting_for_the_stable_twin() -> (
    None
):
    """The reinstall's hold (the stable twin's pods Pending, the
    Deployment's own pods at the stable revision serving), then on-call
    removes `canary.io/strategy` to get the controller out of the way. The
    hand-back waited for the stable twin's pods to move the Service onto
    them first: with a quota the Deployment's pods use, they never came, and
    the Service stayed `releasing` for good while the Deployment already
    served as the team wants it (found by review). It is handed back as it
    stands: the Deployment's pods keep serving, the twins go."""
    canary = spec()
    world = _reinstalled_while_drained(canary)
    for _ in range(5):
        world.step(None, advance=10)
        assert world.observed().endpoints == 3, (world.selector, world.source)
        if world.released:
            break
    assert world.released, world.state.message
    assert world.selector == {"app": "web"} and not world.twins, (world.selector, world.twins)
    assert (world.source.replicas, world.source.gated) == (3, False), world.source


def test_a_reinstall_hold_ends_once_the_stable_twin_serves_what_the_source_serves() -> None:
    """The hold ended at the stable twin's first ready pod: the selector
    moved onto it and the source went to 0 in one cycle, from 3 endpoints
    to 1 (found by review). It ends once the twin has as many ready pods as
    the source's that serve."""
    canary = spec()
    world = _reinstalled_while_drained(canary)
    world.pending = set()
    world.stalled = {"blue": ("r1", 1), "source": ("r1", 3)}  # 1 of 3 comes up
    for _ in range(3):
        world.step(canary, advance=1)
        assert world.observed().endpoints >= 3, (world.selector, world.observed().twins)
    assert "own pods serve" in world.state.degraded, world.state
    world.stall(False)
    world.settle(canary)
    assert world.selector.get(TWIN_LABEL) == "blue", world.selector
    assert world.observed().endpoints == 3


def test_a_reinstall_hold_takes_the_size_the_source_grew_to() -> None:
    """The source scaled up during the hold (its HPA, `kubectl scale`):
    taken only in the cycle the hold ended, with the selector move, so 8
    pods' load went onto the stable twin's 3 ready pods (found by review).
    The stable twin now grows with it while the source's pods serve."""
    canary = spec()
    world = _reinstalled_while_drained(canary)
    world.source = replace(world.source, replicas=8, ready=8)
    world.step(canary, advance=1)
    assert world.twins["blue"].replicas == 8, world.twins
    world.pending = set()
    world.settle(canary)
    assert world.selector.get(TWIN_LABEL) == "blue", world.selector
    assert world.state.replicas == 8 and world.observed().twin("blue").ready == 8, world.state


def test_a_reinstall_during_a_rollout_whose_canary_has_no_pod_keeps_the_source_serving() -> None:
    """A rollout paused before its canary has a pod (nothing of it serves),
    the stable twin's pods evicted and Pending, then a reinstall at the
    stable revision. The hold was for "no canary in flight", not "none
    serving": the selector went back onto the stable twin with no ready
    pod, 3 endpoints to none (found by the random-operations fuzz)."""
    canary = spec()
    world = World().adopted(canary)
    world.action = "pause t1"
    world.step(canary, advance=1)
    world.source = replace(
        world.source, revision="r2", template={"metadata": {"annotations": {"rev": "r2"}}}
    )
    world.step(canary, advance=1)
    # Drained once the rollout is in flight: drained first, the release now
    # waits for a stable pod (test_stable_twin_with_no_ready_pod).
    world.pending = {"blue"}
    world.step(canary, advance=1)
    assert world.state.canary_revision == "r2" and not world.observed().twin("green").endpoints
    _reinstall_served_on(world, canary)
    world.pending = set()
    world.settle(canary)
    assert world.selector.get(TWIN_LABEL) == "blue", world.selector
    assert world.state.canary_revision == "", world.state
    assert (world.source.replicas, world.source.gated) == (0, True), world.source
    assert world.observed().endpoints == 3
