"""The team's Deployment is paused mid-rollout when its Service is annotated
(`kubectl rollout pause` after one new pod: the poor man's canary, or
changes batched between pause and resume): its pods run the template its
ReplicaSets had, most of them the older one, and its spec holds the new
one, which only one pod runs. Found by review; the test failed before the
fix: adoption built the stable twin from the spec, so the paused release
went to every pod and all traffic, unanalysed, recorded as "the revision
running when management began"."""

from __future__ import annotations

from dataclasses import replace

from canary.model import ApplyTwin, ClaimSource, SetSelector
from canary.observe import source_of
from tests.unit.objects import source_deployment
from tests.unit.world import World, spec

CANARY = spec(steps="25")


def _paused(updated: int) -> World:
    deployment = source_deployment(generation=2)
    deployment["spec"]["paused"] = True
    deployment["status"] = {
        "observedGeneration": 2,
        "replicas": 3,
        "updatedReplicas": updated,
        "readyReplicas": 3,
    }
    source, _ = source_of(deployment, lambda kind, name: None)
    assert source.paused
    return World(source=source)


def test_a_deployment_paused_mid_rollout_is_not_adopted_on_its_new_template() -> None:
    world = _paused(updated=1)
    for _ in range(3):
        plan = world.step(CANARY, advance=1)
        written = [a for a in plan.actions if isinstance(a, ApplyTwin | SetSelector | ClaimSource)]
        assert not written, plan.actions
    assert world.selector == {"app": "web"} and not world.twins
    assert "paused" in world.state.message and "resume" in world.state.message
    # Resumed, its rollout ends by itself and the app is adopted on it.
    world.source = replace(world.source, paused=False, rolled_out=True)
    world.settle(CANARY)
    assert world.state.adopted and world.twins["blue"].revision == world.source.revision


def test_a_paused_deployment_whose_pods_all_run_its_template_is_adopted() -> None:
    # Paused with nothing pending (every pod of its template): adopted as
    # before; a later release then waits while it stays paused.
    world = _paused(updated=3)
    world.settle(CANARY)
    assert world.state.adopted
    assert world.selector == {"app": "web", "canary.io/twin": "blue"}
    assert world.twins["blue"].revision == world.source.revision
