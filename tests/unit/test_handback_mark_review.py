"""Adversarial review of the hand-back mark (canary.io/handback-served):
ordinary operations that leave the mark current when the size it names is
no longer "what both twins served"."""

from __future__ import annotations

from dataclasses import replace

from analysis.verdicts import Verdict
from canary.model import ApplyAutoscaler, Autoscaler, ScaleTwin
from tests.unit.test_autoscaling import CANARY, TEAM, _at_half_under_load
from tests.unit.world import result


def test_a_team_hpa_deleted_and_created_again_takes_the_twins_size_as_its_share() -> None:
    """8 + 8 at 50 %: the team's HPA deleted (a GitOps prune, `kubectl
    replace --force`), the stable twin grows to what both served (16,
    marked) and the rollout goes on at that fixed size, the canary on top
    (16 + 16). The HPA created again: our new copy scales the twin from its
    16, its share now. The strategy then removed, the hand-back took the
    mark (still naming the live 16) for a growth already done and handed
    back 16 pods for the 32 that served (before the mark: 32)."""
    world = _at_half_under_load()
    world.hpa = Autoscaler()
    world.step(CANARY, advance=1)
    world.settle(CANARY)
    assert not world.copies and world.twins["blue"].replicas == 16, world.twins
    assert world.twins["green"].replicas == 16, world.twins
    world.hpa = TEAM
    world.settle(CANARY)
    assert world.copies == {"blue"}, world.copies
    world.step(None, advance=5)
    for _ in range(6):
        world.step(None, advance=5)
    assert world.source.replicas == 32, (world.source, world.twins)


def test_a_new_copy_on_an_unmarked_twin_writes_no_scale() -> None:
    """The happy path keeps its writes: a copy created for a twin with no
    mark comes with no scale of the twin."""
    world = _at_half_under_load()
    world.hpa = Autoscaler()
    world.step(CANARY, advance=1)
    world.settle(CANARY)
    world.twins["blue"] = replace(world.twins["blue"], handback_served=0)
    world.hpa = TEAM
    plan = world.step(CANARY, advance=1)
    assert any(isinstance(a, ApplyAutoscaler) for a in plan.actions), plan.actions
    assert not [a for a in plan.actions if isinstance(a, ScaleTwin)], plan.actions


def test_a_mark_left_by_a_rolled_back_rollout_does_not_count_in_the_next() -> None:
    """Removed mid-step (the stable twin grown to 16, what 8 + 8 served,
    marked), put back, and the rollout rolled back: the twin keeps its 16,
    the load of both on it, and its HPA, seeing that load, keeps it there.
    The next release at 50 % then serves 16 + 16; removed, the hand-back read
    the old rollout's mark (still naming the live 16) as this one's growth
    already done and handed back 16 pods for 32 served."""
    world = _at_half_under_load()
    world.pending = {"blue"}
    world.step(None, advance=5)
    world.pending = set()
    world.step(CANARY, advance=5)
    for _ in range(6):
        if world.state.canary is None:
            break
        world.step(CANARY, result(Verdict.FAIL), advance=10)
    world.settle(CANARY)
    assert world.state.canary is None and world.twins["blue"].replicas == 16, world.twins
    world.source = replace(world.source, revision="r3")
    world.settle(CANARY)
    world.step(CANARY, result(Verdict.PASS), advance=10)
    world.settle(CANARY)
    assert world.twins["green"].replicas == 16 and world.twins["blue"].replicas == 16
    for _ in range(6):
        world.step(None, advance=5)
    assert world.source.replicas == 32, (world.source, world.twins)
