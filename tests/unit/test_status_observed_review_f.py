"""The status says what is observed, not what was intended (review f): a
retry taken while a rollback is held, an aborted release kept out, ..."""

from __future__ import annotations

from dataclasses import replace

from canary.decide import phase
from canary.model import Phase
from tests.unit.test_drain_bad_day import CANARY as HELD
from tests.unit.test_held_rollback_review import _held_rollback


def test_a_retry_taken_while_the_rollback_is_held_no_longer_asks_for_a_retry() -> None:
    """r2 is rolled back while the stable twin has no ready pod (a drain):
    the rollback is held on r2's pods, and the status asks to change the
    Deployment or run `canary retry`. On-call runs `canary retry`; it is
    taken (RetryRequested, nothing kept out). Before, the status went on
    saying "rollback of r2 held ... run `canary retry` to try again" (and
    said twice that r2 waits) until the stable twin had a pod again."""
    world = _held_rollback()
    world.step(HELD, advance=5)
    assert "run `canary retry`" in world.state.message, world.state.message
    world.action = "retry r2 t1"
    world.step(HELD, advance=1)
    assert "RetryRequested" in world.reasons() and world.state.failed_revision == ""
    for _ in range(3):
        message = world.state.message
        assert "canary retry" not in message and "rollback of r2" not in message, message
        assert "revision r2 rolls out once it has one" in message, message
        assert message.count("revision r2 waits") == 1, message
        assert world.observed().endpoints > 0
        world.step(HELD, advance=5)
    # The stable twin has a pod again: r2 goes out from its first step.
    world.pending = set()
    world.settle(HELD)
    assert world.state.canary_revision == "r2", world.state
    assert phase(HELD, world.state) is Phase.PROGRESSING


def test_a_release_landing_while_the_rollback_is_held_is_said_waiting_not_the_rollback() -> None:
    """The team ships a fix (r3) while r2's rollback is held: the status
    said "rollback of r2 held ... Change the Deployment or run `canary
    retry`", a Deployment already changed, and said twice that r3 waits."""
    world = _held_rollback()
    world.step(HELD, advance=5)
    world.source = replace(world.source, revision="r3")
    for _ in range(2):
        world.step(HELD, advance=5)
        message = world.state.message
        assert "Change the Deployment" not in message, message
        assert "revision r3 rolls out once it has one" in message, message
        assert message.count("revision r3 waits") == 1, message
        assert world.observed().endpoints > 0
    world.pending = set()
    world.settle(HELD)
    assert world.state.canary_revision == "r3", world.state
