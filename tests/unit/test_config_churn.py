"""A tracked Secret rotated faster than a rollout lasts (dynamic
credentials, a generator refreshed every minute): each rotation is a release,
and one mid-rollout starts it again, so none is ever promoted and the stable
twin keeps its revision's copy (which may expire). Only a Normal
RolloutRestarted said so, each time. Found by review (suspicion)."""

from __future__ import annotations

from dataclasses import replace

from canary.spec import RolloutSpec
from tests.unit.world import World, spec

CANARY = spec(steps="25,50,75")
IMAGES = ("registry.example/web:v2",)


def _rotated(world: World, the_spec: RolloutSpec, revision: str, images: tuple[str, ...]) -> None:
    """The Secret rotates (or the image changes): a release mid-rollout."""
    world.source = replace(
        world.source, revision=revision, images=images, config={"Secret/creds": revision}
    )
    world.step(the_spec, advance=5)
    green = world.twins.get("green")
    if green is not None:  # the twin runs what it was templated from
        world.twins["green"] = replace(green, images=images)


def test_config_only_releases_replacing_each_other_are_told_once_every_third() -> None:
    world = World().adopted(CANARY)
    _rotated(world, CANARY, "r2", IMAGES)
    assert world.state.canary_revision == "r2" and world.state.config_churn == 0
    world.events.clear()
    for n, revision in enumerate(("r3", "r4", "r5", "r6", "r7", "r8"), start=1):
        _rotated(world, CANARY, revision, IMAGES)
        assert world.state.canary_revision == revision and world.state.config_churn == n
    told = [e for e in world.events if e.reason == "ConfigChurn"]
    assert len(told) == 2 and all(e.warning for e in told), world.reasons()
    assert "3 rollouts in a row were replaced by a change of config alone (Secret/creds)" in (
        told[0].message
    )
    assert "canary.io/config-tracking: disabled" in told[0].message
    assert world.reasons().count("RolloutRestarted") == 6


def test_a_new_image_or_an_ended_rollout_starts_the_count_again() -> None:
    world = World().adopted(CANARY)
    _rotated(world, CANARY, "r2", IMAGES)
    _rotated(world, CANARY, "r3", IMAGES)
    _rotated(world, CANARY, "r4", IMAGES)
    assert world.state.config_churn == 2
    _rotated(world, CANARY, "r5", ("registry.example/web:v3",))
    assert world.state.config_churn == 0  # a new image is a release of its own
    _rotated(world, CANARY, "r6", ("registry.example/web:v3",))
    assert world.state.config_churn == 1
    world.action = "abort"
    for _ in range(3):
        world.step(CANARY, advance=1)
    assert world.state.canary is None and world.state.config_churn == 0, world.reasons()
