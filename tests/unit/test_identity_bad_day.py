"""Identity changes on a bad day (found by an adversarial review of
renames, recreations and re-targeted annotations): each test failed on the
code before its fix."""

from __future__ import annotations

from dataclasses import replace

from canary.model import SetSelector
from canary.spec import SERVICE_LABEL, TWIN_LABEL
from tests.unit.world import World, spec

CANARY = spec(steps="25,50")


def _selected(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_a_label_added_by_a_client_side_apply_never_empties_the_service() -> None:
    """One commit adds `tier: fe` to the pod template and to the Service
    selector, applied with a client-side `kubectl apply` (or Argo CD's
    default apply): the three-way merge of a map adds `tier` and keeps our
    canary.io/twin key, so the Service selects {app, tier, twin=blue}. The
    stable twin's pods (r1) lack `tier`: no endpoint at all. Then r2's
    canary step selects {app, tier, service}: r2's pods only, 100 % of the
    traffic on a release nobody analysed. (The same commit synced by a
    tool that drops our keys was already put back, see test_source_bad_day.)"""
    world = World().adopted(CANARY)
    stable_pods = {**world.source.pod_labels, TWIN_LABEL: "blue", SERVICE_LABEL: "web"}  # r1's
    world.source = replace(world.source, revision="r2", pod_labels={"app": "web", "tier": "fe"})
    world.selector = {"app": "web", "tier": "fe", TWIN_LABEL: "blue"}  # the merge result
    for _ in range(6):
        world.step(CANARY, advance=1)
        assert _selected(world.selector, stable_pods), (world.selector, world.reasons())
    told = next(e.message for e in world.events if e.reason == "SelectorRestored")
    assert "tier=fe left out" in told, told


def test_a_label_added_mid_step_by_a_client_side_apply_never_hands_the_canary_all_traffic() -> None:
    """The same merge while r2's first step serves (selector {app, service}):
    {app, tier, service} selects r2's pods alone."""
    world = World().adopted(CANARY)
    stable_pods = {**world.source.pod_labels, TWIN_LABEL: "blue", SERVICE_LABEL: "web"}
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    assert world.state.canary == "green" and SERVICE_LABEL in world.selector, world.selector
    world.source = replace(world.source, revision="r3", pod_labels={"app": "web", "tier": "fe"})
    world.selector = {**world.selector, "tier": "fe"}
    plan = world.step(CANARY, advance=1)
    written = [a.selector for a in plan.actions if isinstance(a, SetSelector)]
    assert written and _selected(written[0], stable_pods), (written, world.reasons())
