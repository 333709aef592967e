"""The status says what is observed, not what was intended (review f): a
retry taken while a rollback is held, an aborted release kept out, ..."""

from __future__ import annotations

from dataclasses import replace

import pytest

from analysis.verdicts import Verdict
from canary import oncall
from canary.decide import phase
from canary.model import Autoscaler, Phase
from canary.spec import TWIN_LABEL
from tests.unit.test_drain_bad_day import CANARY as HELD
from tests.unit.test_drain_bad_day import _serving_a_step
from tests.unit.test_held_rollback_review import _held_rollback
from tests.unit.test_manual_actions import ONE, STRICT, serving_canary
from tests.unit.test_oncall_unreadable import Kube, check, entry
from tests.unit.world import World, result, spec

CANARY_2 = spec(steps="25,50")


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


@pytest.mark.parametrize("when", ["mid-rollout", "after-promotion"])
def test_an_aborted_release_kept_out_is_said_aborted_as_its_history_says(when: str) -> None:
    """`canary abort` mid-step, or within scale-down-delay after the
    promotion: the history records `aborted` (and `canary status`, `canary
    wait`'s exit 4, the dashboard's strip say so), and the status message
    (what `kubectl get`, the dashboard's Service row and alerts show) said
    "revision r2 was rolled back", as for a failed analysis."""
    world = serving_canary(ONE)
    if when == "after-promotion":
        world.step(ONE, result(Verdict.PASS), advance=10)
        world.settle(ONE)
        assert world.state.stable_revision == "r2" and world.state.scale_down == "blue"
    world.action = "abort t1"
    world.step(ONE, advance=1)
    world.settle(ONE)
    assert world.state.failed_revision == "r2" and world.state.stable_revision == "r1"
    assert world.observed().outcomes["r2"] == "aborted"
    assert phase(ONE, world.state) is Phase.ROLLED_BACK  # the phase, as documented
    assert world.state.message.startswith("revision r2 was aborted; serving r1"), (
        world.state.message
    )


def test_a_release_rolled_back_by_its_analysis_is_still_said_rolled_back() -> None:
    world = serving_canary(STRICT)
    world.fail(STRICT)
    world.settle(STRICT)
    assert world.observed().outcomes["r2"] == "rolled-back", world.observed().outcomes
    assert world.state.message.startswith("revision r2 was rolled back; serving r1"), (
        world.state.message
    )


def test_an_abort_held_on_the_canarys_pods_is_said_an_abort() -> None:
    """On-call aborts mid-step while a drain leaves the stable twin with no
    ready pod: the abort is held on the canary's pods (as a rollback is)."""
    world = _serving_a_step()
    world.pending = {"blue"}
    world.step(HELD, advance=1)
    world.action = "abort t1"
    world.step(HELD, advance=1)
    world.step(HELD, advance=5)
    assert world.observed().outcomes["r2"] == "aborted"
    assert "abort of r2 held" in world.state.message, world.state.message
    assert world.observed().endpoints > 0


async def test_canary_status_shows_the_release_that_waits_after_a_rollback() -> None:
    """r2 rolled back; the team ships a fix (r3) while its Deployment is
    paused (`kubectl rollout pause` to batch changes). The controller says
    "revision r3 waits: Deployment web is paused" (phase RolledBack: r2
    stays out, nothing is in flight). `canary status` replaced that line
    with the rollback's reason and "Change the Deployment or run `canary
    retry`": a Deployment already changed, and nothing said that r3 waits
    for the resume."""
    world = serving_canary(STRICT)
    world.fail(STRICT)
    world.settle(STRICT)
    world.source = replace(world.source, revision="r3", paused=True)
    world.step(STRICT, advance=5)
    world.step(STRICT, advance=5)
    assert phase(STRICT, world.state) is Phase.ROLLED_BACK
    said = world.state.message
    assert said.startswith("revision r3 waits: Deployment web is paused"), said
    status = {**world.state.to_json(), "phase": str(phase(STRICT, world.state))}
    records = [entry([check(1)], [], outcome="rolled-back", reason="AnalysisFailed")]
    records[0]["revision"] = "r2"
    item = (await oncall.status(Kube(status, records), "shop", "web"))[0]  # type: ignore[arg-type]
    text = oncall.status_text([item], color=False)
    assert "revision r2 rolled-back: AnalysisFailed" in text, text  # why, as before
    assert said in text, text
    assert "Change the Deployment" not in text, text
    # With the Deployment still at r2, the reason and what to do, as before.
    status["message"] = "revision r2 was rolled back; serving r1. Change the Deployment or run"
    item = (await oncall.status(Kube(status, records), "shop", "web"))[0]  # type: ignore[arg-type]
    text = oncall.status_text([item], color=False)
    assert "revision r2 rolled-back: AnalysisFailed; serving r1. Change the Deployment" in text
    assert "was rolled back" not in text, text


@pytest.mark.parametrize("promoting", [False, True])
def test_a_release_while_an_hpa_holds_the_canary_waits_as_in_the_steady_state(
    promoting: bool,
) -> None:
    """An HPA is put on the canary twin mid-rollout (`kubectl autoscale
    deployment web-green`): the rollout holds, the canary out of the
    Service. The team then ships r3. Before, r3 was started on that twin
    (RolloutRestarted, RolloutStarted, a history entry 'progressing') and
    held at once: the status named r3 the canary while the twin still ran
    r2 at the HPA's 6 pods, where in the steady state the same release
    waits. Now, as for a paused Deployment (_replaced_while_paused), the
    rollout in flight ends (superseded) and r3 waits until the HPA goes."""
    world = World().adopted(CANARY_2)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY_2)
    if promoting:  # its new pods not up yet: the flip waits for them
        world.pending = {"green"}
        world.action = "promote t1"
        world.step(CANARY_2, advance=1)
        assert world.state.promoting
    world.hpa = Autoscaler(on_twins=(("green", "oncall"),))
    world.twins["green"] = replace(world.twins["green"], replicas=6, scaled_by="hpa")
    world.step(CANARY_2, advance=10)
    world.events.clear()
    world.source = replace(world.source, revision="r3")
    for _ in range(3):
        world.step(CANARY_2, advance=5)
        assert world.selector.get(TWIN_LABEL) == "blue", world.selector
        # What the status names as in flight is what runs: nothing.
        assert world.state.canary is None and world.state.canary_revision == "", world.state
        assert "r3 waits: HPA oncall" in world.state.message, world.state.message
    assert "RolloutStarted" not in world.reasons(), world.events
    outcomes = [(r["revision"], r.get("outcome")) for r in world.records]
    assert ("r2", "superseded") in outcomes and "r3" not in dict(outcomes), outcomes
    world.hpa = Autoscaler()  # deleted, or pointed at Deployment web
    world.pending = set()
    world.settle(CANARY_2)
    assert world.state.canary_revision == "r3" and world.twins["green"].revision == "r3"
    assert world.observed().endpoints > 0
