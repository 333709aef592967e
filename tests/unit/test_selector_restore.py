"""A selector put back without the team's keys the stable pods lack: when
that is every key, it still names this Service's twin, never every managed
app's twin of that colour (canary.io/twin alone)."""

from __future__ import annotations

from dataclasses import replace

from canary.model import SetSelector
from canary.spec import SERVICE_LABEL, TWIN_LABEL
from tests.unit.world import World, spec

CANARY = spec(steps="25,50")


def test_a_renamed_app_label_never_leaves_a_selector_of_the_twin_label_alone() -> None:
    """A chart migration renames the app label in one commit: the template's
    `app: web` becomes `app.kubernetes.io/name: web`, and so does the
    Service selector (the sync drops our keys). Every key of the new
    selector is missing from the stable (r1) pods, so _restore_selector
    keeps none of them and writes {canary.io/twin: blue}: every blue twin of
    every canary-managed app in the namespace (they all carry that label)."""
    world = World().adopted(CANARY)
    world.source = replace(
        world.source, revision="r2", pod_labels={"app.kubernetes.io/name": "web"}
    )
    world.selector = {"app.kubernetes.io/name": "web"}
    plan = world.step(CANARY, advance=1)
    written = [a.selector for a in plan.actions if isinstance(a, SetSelector)]
    assert written, plan.actions
    own = {k: v for k, v in written[0].items() if k != TWIN_LABEL}
    assert own or SERVICE_LABEL in written[0], (
        f"the Service now selects {written[0]}: the blue pods of every managed app in the "
        f"namespace, not only web's"
    )
