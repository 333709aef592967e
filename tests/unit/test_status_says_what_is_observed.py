"""A status describes what is observed: after the Deployment is set back to
the serving revision, while a rollback is held on the canary's pods, after
an undo's promotion is aborted (found by a review of the status wording)."""

from __future__ import annotations

from dataclasses import replace

from analysis.verdicts import Verdict
from canary import oncall
from canary.decide import phase
from canary.model import Phase
from canary.spec import TWIN_LABEL, RolloutSpec
from tests.unit.test_dashboard_bad_day import IN_FLIGHT
from tests.unit.test_drain_bad_day import CANARY as HELD
from tests.unit.test_held_rollback_review import _held_rollback
from tests.unit.test_manual_actions import ONE, STRICT, promoted_then_undone, serving_canary
from tests.unit.test_oncall_unreadable import REV, Kube, check, entry
from tests.unit.world import World, result


def _rolled_back() -> World:
    """r2 rolled back; r1 serves; the Deployment still holds r2."""
    world = serving_canary(STRICT)
    world.fail(STRICT)
    world.settle(STRICT)
    assert world.state.canary is None and world.state.failed_revision == "r2", world.state
    assert phase(STRICT, world.state) is Phase.ROLLED_BACK
    return world


def _set_back_to_r1(world: World, the_spec: RolloutSpec) -> None:
    """The Deployment set back to r1, which serves: nothing is kept out."""
    world.source = replace(world.source, revision="r1")
    world.step(the_spec, advance=10)
    world.settle(the_spec)
    assert world.state.failed_revision == "" and not world.state.undone, world.state
    assert phase(the_spec, world.state) is Phase.HEALTHY
    assert world.state.message.startswith("serving revision r1"), world.state.message


def test_a_deployment_set_back_to_the_serving_revision_after_a_rollback_is_healthy() -> None:
    """`kubectl rollout undo` (a Git revert) puts r1 back in the Deployment:
    nothing is kept out any more. Before, the phase stayed RolledBack and
    the status said to run `canary retry`, for ever."""
    world = _rolled_back()
    _set_back_to_r1(world, STRICT)


def test_a_retry_after_the_deployment_was_set_back_asks_for_nothing() -> None:
    world = _rolled_back()
    world.source = replace(world.source, revision="r1")
    world.step(STRICT, advance=10)
    world.events.clear()
    world.action = "retry r2 t1"
    world.step(STRICT, advance=1)
    world.settle(STRICT)
    assert "RetryRequested" not in world.reasons(), world.events
    assert world.state.canary is None and world.state.stable_revision == "r1"


def test_the_bad_release_applied_again_after_the_revert_rolls_out() -> None:
    """As in Argo Rollouts and Flagger: applied again after the revert, r2 is
    a new change, and goes out through the strategy."""
    world = _rolled_back()
    world.source = replace(world.source, revision="r1")
    world.step(STRICT, advance=10)
    world.settle(STRICT)
    world.source = replace(world.source, revision="r2")
    world.step(STRICT, advance=10)
    world.settle(STRICT)
    assert world.state.canary_revision == "r2", (world.state, world.reasons())


def test_an_undone_release_stays_out_until_the_deployment_changes() -> None:
    """After `undo 1` (r2 promoted, then r1 rolled out again and promoted),
    the Deployment still holds r2, which stays out; set back to r1, nothing
    is kept out, and r2 applied again after that is a new change."""
    world = serving_canary(ONE)
    promoted_then_undone(world)
    world.step(ONE, advance=10)
    world.settle(ONE)
    assert world.state.failed_revision == "r2" and world.state.canary is None
    assert "(undo)" in world.state.message, world.state.message
    _set_back_to_r1(world, ONE)
    world.source = replace(world.source, revision="r2")
    world.step(ONE, advance=10)
    world.settle(ONE)
    assert world.state.canary_revision == "r2", (world.state, world.reasons())


def test_a_rollback_held_on_the_canarys_pods_names_them_as_serving() -> None:
    """r2 fails while the stable twin (blue, r1) has no ready pod (a drain, no
    node that fits): the rollback is held and r2's pods (green) carry every
    request until blue has one. The line beneath the degradation said
    "revision r2 was rolled back; serving r1"."""
    world = _held_rollback()
    for _ in range(3):
        world.step(HELD, advance=5)
        assert TWIN_LABEL not in world.selector and world.twins["green"].replicas > 0
        line = world.state.message.split(" | ")[-1]
        assert "serving r1" not in line, line
        assert "rollback of r2 held" in line and "green twin's pods (r2) still serve" in line, line
    world.pending = set()
    world.settle(HELD)
    assert world.selector.get(TWIN_LABEL) == "blue"
    assert world.state.message.startswith("revision r2 was rolled back; serving r1"), (
        world.state.message
    )


def test_a_deployment_set_back_while_the_rollback_is_held_does_not_say_the_stable_serves() -> None:
    world = _held_rollback()
    world.source = replace(world.source, revision="r1")
    world.step(HELD, advance=5)
    world.step(HELD, advance=5)
    assert TWIN_LABEL not in world.selector and world.state.failed_revision == ""
    line = world.state.message.split(" | ")[-1]
    assert "serving revision r1" not in line and "green twin's pods (r2) still serve" in line, line
    world.pending = set()
    world.settle(HELD)
    assert world.state.message.startswith("serving revision r1 from the blue twin"), (
        world.state.message
    )


def _undo_promoted_then_aborted() -> World:
    """r3 serves (the Deployment holds it); `undo 1` rolls r1 out again and
    it is promoted; on-call aborts right after the promotion."""
    world = serving_canary(ONE)
    for revision in ("r2", "r3"):
        world.source = replace(world.source, revision=revision)
        world.settle(ONE)
        world.step(ONE, result(Verdict.PASS), advance=10)
        world.settle(ONE)
        world.step(ONE, advance=400)
        world.settle(ONE)
    assert world.state.stable_revision == "r3" and world.state.canary is None
    world.revisions = {1: "r1", 2: "r2", 3: "r3"}
    world.action = "undo 1 t1"
    world.step(ONE, advance=1)
    world.settle(ONE)
    world.step(ONE, result(Verdict.PASS), advance=10)
    world.settle(ONE)
    assert world.state.stable_revision == "r1" and world.state.undone
    assert world.state.scale_down is not None and world.state.previous_revision == "r3"
    world.action = "abort r1 t2"
    world.step(ONE, advance=1)
    world.settle(ONE)
    assert "Aborted" in world.reasons() and world.state.stable_revision == "r3"
    return world


def test_an_abort_of_an_undos_promotion_says_the_revision_flipped_back_to_serves() -> None:
    """The status read "serving revision r1 (undo); the Deployment still
    holds r3, which stays out" while r3 served again, and r1 was out."""
    world = _undo_promoted_then_aborted()
    for _ in range(2):
        serving = world.state.stable
        assert serving is not None and world.selector.get(TWIN_LABEL) == serving
        assert world.twins[serving].revision == "r3"
        assert world.state.failed_revision == "r1" and not world.state.undone, world.state
        assert phase(ONE, world.state) is Phase.ROLLED_BACK
        message = world.state.message
        assert "(undo)" not in message and "serving revision r3" in message, message
        assert "undo to revision r1 was aborted" in message, message
        world.step(ONE, advance=400)
        world.settle(ONE)
    # r1 stays out, the Deployment holds r3: nothing rolls out.
    assert world.state.canary is None and "RolloutStarted" not in world.reasons()[-3:]


async def test_canary_status_asks_for_no_deployment_change_after_an_undo_was_aborted() -> None:
    """`canary status` tells why a Service is RolledBack from the history,
    and always added "Change the Deployment or run `canary retry`": after an
    undo rolled back or aborted, the Deployment holds what serves, and a
    retry rolls nothing out. The undo is what can be asked again."""
    undo = {"reason": "UndoRequested", "message": "tester asked to go back to revision #1"}
    held = {**IN_FLIGHT, "phase": "RolledBack", "failed_revision": REV, "canary": None}
    records = [entry([check(1)], [undo], outcome="aborted", reason="aborted by tester")]
    item = (await oncall.status(Kube(held, records), "shop", "web"))[0]  # type: ignore[arg-type]
    text = oncall.status_text([item], color=False)
    assert f"the undo to revision {REV} aborted: aborted by tester" in text, text
    assert "Change the Deployment" not in text and "canary undo" in text, text
    # A release rolled back (no undo) is still told how to go again.
    records = [entry([check(1)], [], outcome="rolled-back", reason="AnalysisFailed")]
    item = (await oncall.status(Kube(held, records), "shop", "web"))[0]  # type: ignore[arg-type]
    assert "Change the Deployment or run `canary retry`" in oncall.status_text([item], False)


def test_an_undone_release_serving_while_the_stable_twin_has_no_ready_pod_is_no_rollback() -> None:
    """After `undo 1` (r2 undone, r1 on blue), a sync resets the selector to
    both twins while blue has no ready pod and green (r2) is up again: r2's
    pods serve, held. It was undone, never rolled back."""
    world = serving_canary(ONE)
    promoted_then_undone(world)
    world.step(ONE, advance=10)
    world.settle(ONE)
    assert world.state.stable == "blue" and world.state.undone
    world.pending = {"blue"}
    world.twins["green"] = replace(world.twins["green"], replicas=3)
    world.selector = {"app": "web", "canary.io/service": "web"}
    world.step(ONE, advance=5)
    line = world.state.message.split(" | ")[-1]
    assert "rollback" not in line and "green twin's pods (r2) still serve" in line, line
    assert "the Deployment still holds r2, which stays out" in line, line


def test_a_retry_of_an_aborted_undo_says_the_undo_is_what_to_ask_again() -> None:
    """The Deployment holds r3, which serves; r1 came from the undo. A retry
    said RetryRequested as if r1 went out again, and nothing rolled out: the
    Deployment never held r1. It says so, and what does roll r1 out."""
    world = _undo_promoted_then_aborted()
    world.events.clear()
    world.action = "retry r1 t3"
    world.step(ONE, advance=1)
    world.settle(ONE)
    [retry] = [e for e in world.events if e.reason == "RetryRequested"]
    assert "nothing rolls out" in retry.message and "canary undo --to" in retry.message, retry
    assert world.state.canary is None and world.state.stable_revision == "r3"
    assert world.state.failed_revision == "" and phase(ONE, world.state) is Phase.HEALTHY


def test_a_rolled_back_release_stays_out_after_a_hand_back_cut_short() -> None:
    """r2 rolled back, Git still holds it. canary.io/strategy is removed and
    put back (a sync flapping, an edit undone): the hand-back began by
    copying the stable twin's template into the Deployment, our own write.
    That was taken for the team setting the Deployment back: r2 no longer
    kept out, and when GitOps self-heal put Git's template (r2) back, the
    known-bad release went out again at 50 % with nothing in Git changed."""
    world = _rolled_back()
    world.step(None, advance=1)
    assert world.source.revision == "restored-blue"
    world.step(STRICT, advance=1)
    world.settle(STRICT)
    assert world.state.failed_revision == "r2", world.state
    assert phase(STRICT, world.state) is Phase.ROLLED_BACK
    assert "r2" in world.state.message and "stays out" in world.state.message, world.state.message
    world.events.clear()
    world.restored = set()
    world.source = replace(world.source, revision="r2")  # self-heal: Git's template again
    world.step(STRICT, advance=5)
    world.settle(STRICT)
    assert world.state.canary is None and "RolloutStarted" not in world.reasons(), world.reasons()
    assert world.state.message.startswith("revision r2 was rolled back"), world.state.message
