"""Ordinary operations of the team and of on-call, one right after another
(an adversarial review of deletions, recreations, second Services and
hotfixes after a rollback, rev-o): each test failed before its fix."""

from __future__ import annotations

from dataclasses import replace

from analysis.verdicts import Verdict
from canary.decide import decide
from canary.model import Action, ApplyTwin, Observed, ScaleTwin, Source
from canary.spec import TWIN_LABEL
from tests.unit.world import World, result, source, spec

ONE = spec(steps="25")  # r3 starts at 1 of the 3 pods green serves with


def _promoted() -> World:
    """r2 promoted onto green; blue (r1) kept up for scale-down-delay."""
    world = World().adopted(ONE)
    world.source = replace(world.source, revision="r2")
    world.settle(ONE)
    world.step(ONE, result(Verdict.PASS), advance=10)
    world.settle(ONE)
    assert world.state.stable == "green" and world.state.scale_down == "blue", world.state
    return world


def _hotfix(world: World, revision: str = "r3") -> None:
    world.source = replace(
        world.source, revision=revision, template={"metadata": {"annotations": {"rev": revision}}}
    )


def _touches(actions: tuple[Action, ...], color: str) -> list[Action]:
    return [a for a in actions if isinstance(a, (ApplyTwin, ScaleTwin)) and a.color == color]


def _lagging(world: World) -> Observed:
    """A moment after the abort flipped the Service back to blue: its
    EndpointSlice still lists only green's pods."""
    observed = world.observed()
    twins = dict(observed.twins)
    twins["green"] = replace(twins["green"], endpoints=twins["green"].replicas)
    twins["blue"] = replace(twins["blue"], endpoints=0)
    return replace(observed, twins=twins, endpoints=twins["green"].replicas)


def test_a_hotfix_right_after_an_abort_flip_back_waits_for_the_service_to_leave_the_twin() -> None:
    """r2 was promoted; on-call aborts it within scale-down-delay (the
    Service flips back to blue) and the team's hotfix r3 lands at once. The
    abort alone scales green down only once the Service has left it (its
    pods were all the Service had); the hotfix re-templated green to r3 at
    its first step's size in the very decision that flipped away from it
    (or while the EndpointSlice still listed only green's pods): the pods
    serving every request were replaced under the Service (with a Recreate
    strategy, all at once)."""
    # The abort and the hotfix in one cycle.
    world = _promoted()
    world.action = "abort t1"
    _hotfix(world)
    plan = world.step(ONE, advance=1)
    assert world.selector == {"app": "web", TWIN_LABEL: "blue"}, world.selector
    assert not _touches(plan.actions, "green"), plan.actions
    # The hotfix in the next cycle, the EndpointSlice still on green.
    world = _promoted()
    world.action = "abort t1"
    world.step(ONE, advance=1)
    assert world.state.stable == "blue" and world.state.failed_revision == "r2"
    _hotfix(world)
    plan = decide(ONE, world.state, _lagging(world), None, world.now + 0.1)
    assert not _touches(plan.actions, "green"), plan.actions
    # Once the Service has left green, r3 goes out through the strategy.
    world.settle(ONE)
    assert world.state.canary == "green" and world.state.canary_revision == "r3", world.state


def test_an_abort_right_after_a_promotion_is_carried_out_while_the_deployment_is_gone() -> None:
    """r2 was promoted; within scale-down-delay the team's Deployment is
    deleted (`kubectl replace --force`, a Helm reinstall, Argo CD's
    Replace=true, or deleted to be recreated under another selector) and
    on-call, seeing r2 fail, runs `canary abort`. The old twin (r1) is up
    and ready, and an abort needs no Deployment (it only moves traffic back
    to what served, as it is carried out while the annotations are
    invalid). No request was taken while the Deployment was gone: r2 kept
    every request, with nothing said, for as long as it stayed away."""
    world = _promoted()
    world.source = Source()
    world.step(ONE, advance=1)
    assert world.state.source_missing and world.selector[TWIN_LABEL] == "green"
    world.action = "abort revision=r2 t1"
    world.step(ONE, advance=1)
    assert world.selector == {"app": "web", TWIN_LABEL: "blue"}, (world.selector, world.reasons())
    assert world.state.stable == "blue" and world.state.failed_revision == "r2", world.state
    assert "Aborted" in world.reasons(), world.reasons()
    world.settle(ONE)
    assert world.twins["green"].replicas == 0 and world.twins["blue"].replicas == 3
    # Recreated with r2, it stays out, as after any abort.
    world.source = replace(_source_of_r2(), claim=world.source.claim)
    world.settle(ONE)
    assert world.state.canary is None and world.selector[TWIN_LABEL] == "blue", world.state


def _source_of_r2() -> Source:
    return replace(source("r2"), template={"metadata": {"annotations": {"rev": "r2"}}})
