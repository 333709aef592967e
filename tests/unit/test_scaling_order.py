"""A team's scale during a promotion, or while a rollout is paused, is
taken in the same cycle, at the size the team asked for."""

from __future__ import annotations

from dataclasses import replace

from analysis.verdicts import Verdict
from tests.unit.world import World, result, spec

ONE_STEP = spec(steps="25")


def test_a_team_scale_down_during_a_promotion_is_kept_after_the_flip() -> None:
    """No HPA. The promotion waits for the new twin's pods; meanwhile the
    team runs `kubectl scale deploy web --replicas=4` (SourceScaled says the
    stable twin now runs 4). advance_promotion keeps max(promotion_size, promote_to)
    = the 10 chosen when it began, and records 10 as the app's size."""
    world = World(source=replace(World().source, replicas=10)).adopted(ONE_STEP)
    world.source = replace(world.source, revision="r2")
    world.settle(ONE_STEP)
    world.step(ONE_STEP, result(Verdict.PASS), advance=10)
    assert world.state.promoting, world.state  # the new twin scaled to 10, not yet ready
    world.source = replace(world.source, replicas=4)  # kubectl scale --replicas=4
    world.settle(ONE_STEP)
    world.step(ONE_STEP, advance=1)
    assert world.state.stable == "green" and world.state.stable_revision == "r2"
    assert (world.state.replicas, world.twins["green"].replicas) == (4, 4), (
        f"the team scaled to 4 mid-promotion (SourceScaled told them the stable twin runs 4); "
        f"after the flip the app runs {world.twins['green'].replicas}, "
        f"status replicas={world.state.replicas}"
    )


def test_a_team_scale_down_while_paused_resizes_the_canary_in_the_same_cycle() -> None:
    """decide() runs placement.keep_weight before _keep_source_at_zero takes
    the team's new size: the cycle that sees `kubectl scale --replicas=2`
    scales the stable twin 9 -> 2 but keeps the canary at 3 (its weight of
    the old 9): the unanalysed canary serves 60% until the next cycle."""
    from canary.model import ScaleTwin

    c = spec(steps="25,50")
    world = World(source=replace(World().source, replicas=9)).adopted(c)
    world.source = replace(world.source, revision="r2")
    world.settle(c)
    world.action = "pause"
    world.step(c, advance=1)
    world.source = replace(world.source, replicas=2)
    plan = world.step(c, advance=1)
    canary, stable = world.twins["green"].replicas, world.twins["blue"].replicas
    assert canary <= stable, (
        f"after this cycle's writes the canary runs {canary} pods beside {stable} stable "
        f"({[a for a in plan.actions if isinstance(a, ScaleTwin)]})"
    )
