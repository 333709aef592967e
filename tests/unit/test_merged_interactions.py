"""Interactions between the changes merged together (the Service's own
fields, controller version skew, clocks, RBAC refusals, the per-pod
analysis check): found by the combined review. Each test failed before its
fix."""

from __future__ import annotations

from dataclasses import replace

from canary.model import Action, Observed, SetSelector
from canary.spec import FIELD_MANAGER, SERVICE_LABEL, TWIN_LABEL
from tests.unit.test_service_fields import ONE_STEP, _Labelled
from tests.unit.world import spec


class _Written(_Labelled):
    """A World that tells who last wrote the selector (managedFields), as
    observe does: the controller once it has, the team's tool before."""

    manager: str = "gitops"

    def observed(self) -> Observed:
        return replace(super().observed(), selector_manager=self.manager)

    def _land(self, action: Action) -> None:
        super()._land(action)
        if isinstance(action, SetSelector):
            self.manager = FIELD_MANAGER


def test_a_pause_while_the_first_steps_pods_wait_to_be_listed_keeps_the_steps_selector() -> None:
    # The first step put the canary in the Service as its pods got ready
    # (placement._placed); they are listed as endpoints an instant later,
    # or, lacking a key of the selector (a chart refactor), never: the step
    # waits, and on-call pauses it to look. Both twins was then taken for a
    # sync of an exported manifest (test_service_fields): the pause moved the
    # Service off the canary with a SelectorRestored Warning saying the
    # controller's own write was someone else's ("canary-controller set the
    # Service selector ... it is back on the blue twin, as the step had it"),
    # and the resume moved it back: two selector writes and a false Warning.
    labels = {"app": "web", "tier": "frontend"}
    world = _Written(selector=dict(labels))
    world.source = replace(world.source, pod_labels=dict(labels))
    world.adopted(ONE_STEP)
    world.source = replace(world.source, revision="r2", pod_labels={"app": "web"})
    world.settle(ONE_STEP)
    both = {**labels, SERVICE_LABEL: "web"}
    assert world.selector == both and not world.state.step_ready, world.selector
    world.events.clear()
    paused = spec(steps="25", paused="true")
    for _ in range(3):
        plan = world.step(paused, advance=1)
        assert not any(isinstance(a, SetSelector) for a in plan.actions), plan.actions
    assert world.selector == both, world.selector
    assert "SelectorRestored" not in world.reasons(), world.events
    world.step(ONE_STEP, advance=1)
    assert world.selector == both and TWIN_LABEL not in world.selector
