"""What teams do to their own Deployment, and to the twins, while a rollout
or a rollback is in flight."""

from __future__ import annotations

from dataclasses import replace

from analysis.verdicts import Verdict
from canary.model import Checked, SetSelector
from canary.spec import TWIN_LABEL
from tests.unit.world import World, result, spec

CANARY = spec(steps="25,50")


def _at_second_step() -> World:
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    world.step(CANARY, result(Verdict.PASS), advance=10)
    world.settle(CANARY)
    assert world.state.step == 1 and world.state.step_ready, world.state
    assert world.selector.get(TWIN_LABEL) is None  # both twins serve
    return world


def test_a_canary_twin_edited_by_hand_at_a_later_step_leaves_traffic_until_put_back() -> None:
    """On-call runs `kubectl set image deployment/web-green ...` (or edits it)
    while r2 serves at 50 %. The edited pods are nobody's revision: at the
    first step the Service takes the canary in only once every pod is the
    revision's, but at a later step it kept selecting both twins, so the
    edited pods served at the step's weight, unanalysed (the step is judged
    afresh only once they are gone), for as long as the put-back rolls."""
    world = _at_second_step()
    world.twins["green"] = replace(world.twins["green"], edited_by="kubectl-set")
    world.step(CANARY, advance=1)
    assert "TwinRestored" in world.reasons()
    assert world.selector.get(TWIN_LABEL) == "blue", world.selector
    # The put-back rolls: pods of the edited template are still there.
    world.twins["green"] = replace(world.twins["green"], updated=False)
    world.step(CANARY, advance=1)
    assert world.selector.get(TWIN_LABEL) == "blue", world.selector
    # Every pod is r2's again: back at the step's weight, judged afresh.
    world.twins["green"] = replace(world.twins["green"], updated=True)
    world.settle(CANARY)
    assert world.selector.get(TWIN_LABEL) is None and world.state.step == 1
    assert world.state.step_ready and not world.state.checked


def test_a_canary_twin_edited_by_hand_while_promoting_is_judged_again_before_the_flip() -> None:
    """The same edit while the promotion scales the canary to full size: the
    template was put back and, once its pods were ready, all traffic flipped
    to the twin; the edited pods served meanwhile, and nothing analysed the
    pods that came back."""
    one_step = spec(steps="25")
    world = World().adopted(one_step)
    world.source = replace(world.source, revision="r2")
    world.settle(one_step)
    world.step(one_step, result(Verdict.PASS), advance=10)
    assert world.state.promoting, world.state  # 3 canary pods asked for, not endpoints yet
    world.twins["green"] = replace(world.twins["green"], edited_by="kubectl-set")
    world.step(one_step, advance=1)
    assert "TwinRestored" in world.reasons()
    assert world.selector.get(TWIN_LABEL) == "blue", world.selector
    world.settle(one_step)
    # Not promoted on the analysis of the pods before the edit: the last step
    # serves again and is judged afresh.
    assert world.state.canary == "green" and not world.state.promoting, world.state
    assert world.state.stable == "blue" and world.state.step_ready and not world.state.checked


def test_the_deployment_reverted_to_the_serving_revision_during_an_undo_cancels_it() -> None:
    """r2 serves; r3 was rolled back (the Deployment still holds it); on-call
    runs `canary undo --to 1`, and meanwhile the team reverts its Deployment
    in Git to r2, the revision serving. The new change wins, as always: but
    it is what serves, so there is nothing to roll out. Before, r2 was rolled
    out against itself onto the other twin, and a check of it that failed
    recorded the serving revision as rolled back (RolledBack phase, `canary
    wait` exit 3 for what serves, a history that no longer shows it serving)."""
    one_step = spec(steps="50", failure_limit="0")
    world = World().adopted(one_step)
    world.source = replace(world.source, revision="r2")
    world.settle(one_step)
    world.step(one_step, result(Verdict.PASS), advance=10)
    world.settle(one_step)
    assert world.state.stable_revision == "r2" and world.state.stable == "green"
    world.source = replace(world.source, revision="r3")
    world.settle(one_step)
    world.fail(one_step)
    assert world.state.canary is None and world.state.failed_revision == "r3"
    world.revisions = {1: "r1", 2: "r2", 3: "r3"}
    world.action = "undo 1 now"
    world.step(one_step, advance=40)
    assert world.state.canary_revision == "r1" and world.state.undo_of == "r3"
    world.events.clear()
    world.source = replace(world.source, revision="r2")  # the revert, synced
    world.step(one_step, advance=1)
    assert world.state.canary is None, world.state
    assert world.state.stable == "green" and world.selector.get(TWIN_LABEL) == "green"
    assert "RolloutCancelled" in world.reasons(), world.reasons()
    world.settle(one_step)
    assert world.state.canary is None and world.twins["blue"].replicas == 0


def test_a_release_once_adoption_switched_the_service_goes_out_as_a_rollout() -> None:
    """Adoption points the Service at the blue twin (r1), then waits for its
    endpoints and for the source to reach 0 (a GitOps tool that re-scales the
    source can hold that write back for minutes: WriteLoop). A release r2
    meanwhile re-templated the blue twin in place: r2 served all traffic,
    analysed by nothing, and was recorded as `adopted` ("running when
    management began"). The app is managed from the switch: r2 goes out
    through the strategy once adoption ends, on r1."""
    world = World()
    while not any(isinstance(a, SetSelector) for a in world.step(CANARY).actions):
        assert not world.state.adopted
    assert world.selector.get(TWIN_LABEL) == "blue" and world.twins["blue"].revision == "r1"
    world.source = replace(world.source, revision="r2")
    for _ in range(10):
        world.step(CANARY)
        if world.selector.get(TWIN_LABEL) == "blue":
            assert world.twins["blue"].revision == "r1", world.twins
        if world.state.canary is not None:
            break
    assert world.state.adopted and world.state.stable_revision == "r1", world.state
    assert world.state.canary == "green" and world.state.canary_revision == "r2"
    adopted = [e.message for e in world.events if e.reason == "Adopted"]
    assert adopted and "revision r1" in adopted[0], adopted


def test_a_failure_measured_on_hand_edited_pods_does_not_count_once_the_put_back_lost_a_pod() -> (
    None
):
    """On-call edits the canary twin by hand at the first step (`kubectl set
    image` on web-green): its pods are nobody's revision, so the template is
    put back and the step judged afresh from when r2's own pods serve again.
    A scheduled check that ran over the edited pods (it ends before the
    put-back's pods served) answers late, just as one of r2's pods crashes.
    It measured pods that were not r2: taken as a failure of the step (a
    suspicion), the next failing scrape of r2's pods confirmed it, and r2
    was rolled back (failure-limit 0) on one scrape of its own plus what the
    hand edit did. Only a failure measured while the step's own pods served
    counts while a pod is gone (rollout._failed_while_serving)."""
    strict = spec(steps="25,50", failure_limit="0")
    world = World().adopted(strict)
    world.source = replace(world.source, revision="r2")
    world.settle(strict)
    assert world.state.canary == "green" and world.state.step_ready, world.state
    world.twins["green"] = replace(world.twins["green"], edited_by="kubectl-set")
    world.step(strict, advance=1)
    assert "TwinRestored" in world.reasons()
    world.settle(strict)
    put_back = world.state.step_ready
    assert put_back == world.now, world.state  # r2's own pods serve the step again
    world.pending = {"green"}  # one of r2's pods crashes: the step is short of pods
    world.step(strict, advance=3)
    assert world.state.unready_since, world.state
    over_the_edit = Checked("scheduled", result(Verdict.FAIL), put_back - 0.5)
    world.step(strict, over_the_edit, advance=1)
    assert not world.state.suspected and not world.state.fast_failed, world.state
    # One failing scrape of r2's pods is a suspicion, to be confirmed by the
    # next: not the confirmation of a failure r2 never had.
    world.step(strict, Checked("fast", result(Verdict.FAIL), world.now + 1), advance=1)
    assert world.state.canary == "green" and world.state.failed == 0, world.state
    assert "RolledBack" not in world.reasons(), world.reasons()


def test_a_twin_edited_while_promoting_past_steps_cut_goes_on_at_the_last_left() -> None:
    """The steps were cut while the promotion waited (25,40 -> 25: nothing
    to do then, past the last step), then the canary twin is edited by hand:
    the promotion is taken back to the step in flight, which no longer
    exists. Placed as it was, it raised IndexError, nothing was written,
    and every cycle after (still promoting) raised again: ReconcileFailed
    for good, the edited pods at full size in the Service."""
    two = spec(steps="25,40")
    world = World().adopted(two)
    world.source = replace(world.source, revision="r2")
    world.settle(two)
    world.step(two, result(Verdict.PASS), advance=10)
    world.settle(two)
    world.stall(True)  # a pod of the full size waits for a node
    world.step(two, result(Verdict.PASS), advance=10)
    assert world.state.promoting and world.state.step == 1, world.state
    cut = spec(steps="25")
    world.step(cut, advance=1)
    assert world.state.promoting
    world.twins["green"] = replace(world.twins["green"], edited_by="kubectl-set")
    world.step(cut, advance=1)
    assert "TwinRestored" in world.reasons()
    assert not world.state.promoting and world.state.step == 0, world.state
    world.stall(False)
    world.settle(cut)
    assert world.state.canary == "green" and world.state.requested_weight == 25, world.state
