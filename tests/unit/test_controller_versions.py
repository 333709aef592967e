"""The controller itself upgraded, rolled back or run twice mid-rollout: a
status or a history written by another version of it (fields or values this
one does not know), read back by this one. Each test failed on the code
before its fix."""

from __future__ import annotations

import json
from dataclasses import replace

from canary.model import SetSelector
from canary.spec import STATUS, TWIN_LABEL
from canary.status_writes import read_state
from tests.unit.world import World, spec

STRICT = spec(steps="25,50", failure_limit="0")


def _service(status: dict[str, object]) -> dict[str, object]:
    meta = {"name": "web", "namespace": "ns", "annotations": {STATUS: json.dumps(status)}}
    return {"metadata": meta, "spec": {}}


def test_a_gate_kind_this_version_does_not_know_never_sticks_the_rollout() -> None:
    """A newer controller waits on a gate kind of its own (or on-call
    mistypes one by hand) and is rolled back to this version mid-step.
    Before, every cycle raised ValueError (`GateKind(state.gate_wait)`):
    ReconcileFailed for good, the unanalysed canary kept its 25 %, and a
    failing one was never rolled back."""
    world = World().adopted(STRICT)
    world.source = replace(world.source, revision="r2")
    world.settle(STRICT)
    assert world.state.canary == "green" and world.state.requested_weight == 25
    newer = {**world.state.to_json(), "gate_wait": "pre-step-approval"}
    state, lost = read_state(_service(newer))
    world.state, world.lost = state, lost
    plan = world.step(STRICT, advance=1)  # raised ValueError before
    # Not a status this version can go on from: rebuilt, the canary is
    # taken out and its revision analysed again from the first step.
    assert "gate" in lost, lost
    assert SetSelector({"app": "web", TWIN_LABEL: "blue"}) in plan.actions
    world.settle(STRICT)
    assert world.state.canary == "green" and world.state.step == 0 and not world.state.gate_wait
