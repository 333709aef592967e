"""`canary resume` on a rollout something else holds, as the Service the CLI
reads shows it: the controller answers such a resume with an `ActionIgnored`
Warning (manual._resume). Before, the CLI wrote it and said "resume
requested" (exit 0), as its siblings no longer do for a request the status
shows will be ignored (promote, abort or retry with nothing to act on, an
undo of nothing): on-call read the rollout as going on. Each test failed
on the code before its fix."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import pytest

from canary import oncall
from tests.unit.test_dashboard_bad_day import IN_FLIGHT, FakeKube, svc
from tests.unit.world import World, spec

PAUSED = {**IN_FLIGHT, "phase": "Paused", "paused": True}


def _resume(service: dict[str, Any]) -> FakeKube:
    kube = FakeKube(service)
    asyncio.run(oncall.request(kube, "shop", "web", "resume", None))  # type: ignore[arg-type]
    return kube


def _refused(service: dict[str, Any], because: str) -> None:
    kube = FakeKube(service)
    with pytest.raises(oncall.UserError, match=because) as refused:
        asyncio.run(oncall.request(kube, "shop", "web", "resume", None))  # type: ignore[arg-type]
    assert "nothing requested" in str(refused.value) and not kube.patches


def test_a_resume_under_the_paused_annotation_is_refused_naming_it() -> None:
    held = svc(IN_FLIGHT)
    held["metadata"]["annotations"]["canary.io/paused"] = "true"
    _refused(held, "canary.io/paused is set")
    # What the controller answers to it, for the record.
    world = World().adopted(spec(steps="50", paused="true"))
    world.source = replace(world.source, revision="r2")
    world.settle(spec(steps="50", paused="true"))
    world.events.clear()
    world.action = "resume t1"
    world.step(spec(steps="50", paused="true"), advance=1)
    assert "ActionIgnored" in world.reasons() and "RolloutResumed" not in world.reasons()


def test_a_resume_of_a_halted_rollout_is_refused_with_the_halt() -> None:
    _refused(svc({**IN_FLIGHT, "phase": "Halted", "halted": "no data"}), "halted .no data.")
    # The controller ignores it: test_manual_actions.py, test_resume_on_a_halted_rollout_*.


def test_a_resume_at_a_closed_gate_is_refused_with_its_reason() -> None:
    closed = {**IN_FLIGHT, "gate_wait": "pre-step", "gate_reason": "change freeze"}
    _refused(svc(closed), "gate is closed .change freeze.")


def test_a_resume_that_lifts_a_canary_pause_under_another_hold_is_written() -> None:
    # The controller lifts the `canary pause` (manual_action sets paused
    # False before _resume tells what still holds): refused, the rollout
    # stayed paused once the gate opened, the halt cleared or the annotation
    # went, until someone resumed again (found by the combined read).
    for hold in (
        {"gate_wait": "pre-step", "gate_reason": "change freeze"},
        {"phase": "Halted", "halted": "no data"},
    ):
        assert _resume(svc({**PAUSED, **hold})).patches, hold
    annotated = svc(PAUSED)
    annotated["metadata"]["annotations"]["canary.io/paused"] = "true"
    assert _resume(annotated).patches
    world = World().adopted(spec(steps="50", paused="true"))
    world.source = replace(world.source, revision="r2")
    world.settle(spec(steps="50", paused="true"))
    world.action = "pause t0"
    world.step(spec(steps="50", paused="true"), advance=1)
    assert world.state.paused
    world.events.clear()
    world.action = "resume t1"
    world.step(spec(steps="50", paused="true"), advance=1)
    assert not world.state.paused
    [said] = [e.message for e in world.events if e.reason == "ActionIgnored"]
    assert "`canary pause` is lifted" in said and "canary.io/paused is set" in said, said


def test_a_resume_the_controller_carries_out_is_written() -> None:
    """Paused by `canary pause` alone; with nothing rolling out; and under
    annotations that do not parse (the controller carries a resume out
    then: it needs no spec), though one of them says paused."""
    assert _resume(svc(PAUSED)).patches
    healthy = {**IN_FLIGHT, "phase": "Healthy", "canary": None, "canary_revision": ""}
    assert _resume(svc(healthy)).patches
    invalid = svc({**PAUSED, "invalid": "canary.io/steps: bad"})
    invalid["metadata"]["annotations"].update({"canary.io/paused": "true", "canary.io/steps": "x"})
    assert _resume(invalid).patches
    # A status the controller will rebuild is left to the warning it has.
    lost = svc(PAUSED, raw=json.dumps(PAUSED)[:-1])
    lost["metadata"]["annotations"]["canary.io/paused"] = "true"
    assert _resume(lost).patches
