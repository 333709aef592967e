"""A rollout stands at a closed pre-step or pre-promotion gate, fast looks
watching the canary. A look finds a query invalid (a custom query without
sum(): one series per pod): that halts the rollout for a person to fix the
query, and nothing about the canary was read. The gate must not open over
it, neither in the cycle the look halts nor later, as the automatic flip
does not (test_flip_while_prometheus_fails)."""

from __future__ import annotations

import pytest

from analysis.verdicts import Verdict
from canary.model import Checked
from canary.schedule import analysis_due, gate_due
from canary.spec import RolloutSpec
from tests.unit.test_decide import answer
from tests.unit.test_standing_still import STRICT, _closed_gate
from tests.unit.world import World, result

INVALID = result(Verdict.ERROR, "query returned 3 series; wrap it in sum()", invalid=True)
KINDS = ["pre-step", "pre-promotion"]


def _where(world: World) -> tuple[int, bool, int, dict[str, str]]:
    replicas = world.twins["green"].replicas
    return world.state.step, world.state.promoting, replicas, dict(world.selector)


@pytest.mark.parametrize("kind", KINDS)
def test_a_gate_that_opens_in_the_cycle_a_look_finds_a_query_invalid_does_not_move_on(
    kind: str,
) -> None:
    # Before: the look halted the rollout (InvalidSpec), which ends the fast
    # looks, so the open gate found "nothing to wait for" and advanced the
    # step (or started the promotion) in that same cycle.
    the_spec, world = _closed_gate(kind)(STRICT)
    world.events.clear()
    where = _where(world)
    world.gate = answer(kind, True)
    world.step(the_spec, Checked("fast", INVALID, world.now + 0.5), advance=0.5)
    world.gate = None
    reasons = world.reasons()
    assert "InvalidSpec" in reasons, reasons
    assert not {"GateOpened", "StepAdvanced", "PromotionStarted", "Promoted"} & set(reasons), (
        reasons
    )
    assert _where(world) == where
    assert world.state.halt_kind == "invalid" and world.state.gate_wait == kind
    assert "a query is invalid" in world.state.message, world.state.message


@pytest.mark.parametrize("kind", KINDS)
def test_a_gate_that_opens_after_a_look_found_a_query_invalid_does_not_move_on(
    kind: str,
) -> None:
    # Halted in an earlier cycle: the gate is not asked while halted
    # (gate_due), and an answer that comes anyway (asked before the halt)
    # opens nothing.
    the_spec, world = _closed_gate(kind)(STRICT)
    world.events.clear()
    world.step(the_spec, Checked("fast", INVALID, world.now + 0.5), advance=0.5)
    assert world.state.halt_kind == "invalid"
    where = _where(world)
    assert gate_due(the_spec, world.state, world.now + 60) is None
    assert analysis_due(the_spec, world.state, world.now + 60, world.scrape) is None
    world.gate = answer(kind, True)
    for _ in range(20):
        world.step(the_spec, advance=1)
    reasons = world.reasons()
    assert not {"GateOpened", "StepAdvanced", "PromotionStarted", "Promoted"} & set(reasons), (
        reasons
    )
    assert _where(world) == where and world.state.gate_wait == kind
    assert "a query is invalid" in world.state.message, world.state.message


# -- what a person can do there (today's behaviour, kept) ------------------------


def _halted_at_gate(kind: str) -> tuple[World, RolloutSpec]:
    the_spec, world = _closed_gate(kind)(STRICT)
    world.events.clear()
    world.step(the_spec, Checked("fast", INVALID, world.now + 0.5), advance=0.5)
    assert world.state.halt_kind == "invalid" and world.state.gate_wait == kind
    return world, the_spec


@pytest.mark.parametrize("kind", KINDS)
def test_resume_does_not_move_a_rollout_halted_on_an_invalid_query_and_says_why(
    kind: str,
) -> None:
    world, the_spec = _halted_at_gate(kind)
    where = _where(world)
    world.action = "resume"
    world.step(the_spec, advance=1)
    ignored = next(e for e in world.events if e.reason == "ActionIgnored")
    assert "halted (a query is invalid" in ignored.message, ignored.message
    assert _where(world) == where and world.state.halt_kind == "invalid"


@pytest.mark.parametrize("kind", KINDS)
def test_retry_judges_the_step_again_before_the_gate_is_asked(kind: str) -> None:
    world, the_spec = _halted_at_gate(kind)
    step = world.state.step
    world.action = "retry"
    world.step(the_spec, advance=1)
    assert "RetryRequested" in world.reasons()
    assert not world.state.halted and not world.state.gate_wait
    assert world.state.step == step and not world.state.promoting
    # The query is still invalid: the step's next check halts it again.
    world.settle(the_spec)
    world.step(the_spec, INVALID, advance=10)
    assert world.state.halt_kind == "invalid" and world.state.step == step


@pytest.mark.parametrize("kind", KINDS)
def test_promote_ships_over_the_halt_as_it_overrides_a_closed_gate(kind: str) -> None:
    world, the_spec = _halted_at_gate(kind)
    world.action = "promote"
    world.step(the_spec, advance=1)
    world.settle(the_spec)
    assert world.state.stable == "green" and "Promoted" in world.reasons(), world.reasons()
