"""On-call commands at awkward moments: each test failed on the code before
its fix (found by a review of promote, abort, retry, resume and undo given
while something else happens)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from analysis.verdicts import Verdict
from canary import oncall
from canary.decide import decide, phase
from canary.model import Checked, Emit, Phase, ScaleTwin, SetSelector, State
from canary.spec import ACTION, SERVICE_LABEL, STATUS, TWIN_LABEL, RolloutSpec, SpecError
from tests.unit.world import World, result, spec

CANARY = spec(steps="25,50")
STRICT = spec(steps="50", failure_limit="0")
ONE = spec(steps="50")


def release(world: World, revision: str = "r2") -> None:
    world.source = replace(world.source, revision=revision)


def serving_canary(the_spec: RolloutSpec, revision: str = "r2") -> World:
    world = World().adopted(the_spec)
    release(world, revision)
    world.settle(the_spec)
    return world


def selects(world: World, revision: str) -> bool:
    """Whether the Service selector reaches pods of `revision`."""
    for color, twin in world.twins.items():
        if twin.revision != revision or twin.replicas == 0:
            continue
        if world.selector.get(TWIN_LABEL) == color:
            return True
        if TWIN_LABEL not in world.selector and SERVICE_LABEL in world.selector:
            return True
    return False


def passed_and_settled(world: World, the_spec: RolloutSpec) -> None:
    """The canary's one step passes, it is promoted and the old twin goes."""
    world.step(the_spec, result(Verdict.PASS), advance=10)
    world.settle(the_spec, cycles=20)
    world.step(the_spec, advance=400)
    world.settle(the_spec)


def promoted_then_undone(world: World) -> None:
    """r2 promoted, then `undo 1` back to r1, promoted in turn."""
    world.step(ONE, result(Verdict.PASS), advance=10)
    world.settle(ONE)
    world.revisions = {1: "r1", 2: "r2"}
    world.action = "undo 1 t1"
    world.step(ONE, advance=400)
    world.settle(ONE)
    passed_and_settled(world, ONE)
    assert world.state.stable_revision == "r1" and world.state.undone


# -- a command lands only on the revision it was meant for ----------------------------------


def test_a_promote_meant_for_one_release_never_promotes_the_one_that_replaced_it() -> None:
    world = serving_canary(CANARY)  # on-call reads r2 at step 1
    release(world, "r3")  # CI releases r3 meanwhile
    world.step(CANARY)
    world.events.clear()
    world.action = "promote revision=r2 t1"
    world.settle(CANARY)
    assert world.state.canary_revision == "r3" and not world.state.promoting
    ignored = [e for e in world.events if e.reason == "ActionIgnored"]
    assert ignored and "asked for revision r2" in ignored[0].message
    world.action = "promote revision=r3 t2"  # asked again, for what runs now
    world.settle(CANARY)
    assert world.state.promoting or world.state.stable_revision == "r3"


def test_an_abort_meant_for_a_promoted_release_flips_back_only_for_it() -> None:
    world = serving_canary(ONE)
    world.step(ONE, result(Verdict.PASS), advance=10)
    world.settle(ONE)
    assert world.state.stable_revision == "r2" and world.state.scale_down == "blue"
    world.action = "abort revision=r9 t1"
    world.step(ONE, advance=1)
    assert world.state.stable_revision == "r2" and "ActionIgnored" in world.reasons()
    world.action = "abort revision=r2 t2"
    world.step(ONE, advance=1)
    assert world.state.stable_revision == "r1" and world.state.failed_revision == "r2"


def test_the_cli_pins_the_revision_it_would_act_on_and_refuses_another() -> None:
    status = State(canary="green", canary_revision="abc123", stable="blue", stable_revision="r1")
    service = {"metadata": {"annotations": {STATUS: status_text(status)}}}
    assert oncall.pin("promote", service, None) == "abc123"
    assert oncall.pin("promote", service, "abc") == "abc123"  # the start of a hash will do
    assert oncall.pin("pause", service, None) == ""  # not tied to a revision
    with pytest.raises(oncall.UserError, match="asked for revision def"):
        oncall.pin("abort", service, "def")


def test_the_cli_refuses_to_overwrite_a_request_the_controller_has_not_taken() -> None:
    status = State(adopted=True, canary="green", canary_revision="r2", last_action="pause t0")
    taken = {"metadata": {"annotations": {STATUS: status_text(status), ACTION: "pause t0"}}}
    oncall._not_pending(taken)
    waiting = {"metadata": {"annotations": {STATUS: status_text(status), ACTION: "abort t1"}}}
    with pytest.raises(oncall.UserError, match="has not been taken"):
        oncall._not_pending(waiting)
    # Where the controller takes no request (a Conflict, before adoption, the
    # Deployment gone), one stuck there may be replaced.
    for stuck in (
        replace(status, conflict="managed through web"),
        replace(status, adopted=False),
        replace(status, source_missing=True),
    ):
        oncall._not_pending(
            {"metadata": {"annotations": {STATUS: status_text(stuck), ACTION: "abort t1"}}}
        )


def status_text(state: State) -> str:
    return json.dumps(state.to_json())


# -- abort after a promotion never empties the Service --------------------------------------


def test_abort_after_promotion_never_flips_to_a_twin_without_every_pod_ready() -> None:
    world = serving_canary(ONE)
    world.step(ONE, result(Verdict.PASS), advance=10)
    world.settle(ONE)
    assert world.state.stable == "green" and world.state.scale_down == "blue"
    observed = world.observed()
    twins = dict(observed.twins)
    twins["blue"] = replace(twins["blue"], ready=0, endpoints=0)
    observed = replace(observed, twins=twins, action="abort t1")
    plan = decide(ONE, world.state, observed, None, world.now + 5)
    assert not [a for a in plan.actions if isinstance(a, SetSelector)], plan.actions
    assert not [a for a in plan.actions if isinstance(a, ScaleTwin)], plan.actions
    assert plan.state.stable == "green"
    assert any(
        e.reason == "ActionIgnored" and "no ready pod" in e.message
        for e in plan.actions
        if isinstance(e, Emit)
    )
    # One pod back is enough: on-call asked to leave the release.
    twins["blue"] = replace(twins["blue"], ready=1, endpoints=0)
    plan = decide(ONE, world.state, replace(observed, twins=twins), None, world.now + 6)
    assert SetSelector({"app": "web", TWIN_LABEL: "blue"}) in plan.actions


def test_abort_after_promotion_scales_the_promoted_twin_down_only_once_the_service_left_it() -> (
    None
):
    world = serving_canary(ONE)
    world.step(ONE, result(Verdict.PASS), advance=10)
    world.settle(ONE)
    world.action = "abort t1"
    plan = world.step(ONE, advance=1)
    assert SetSelector({"app": "web", TWIN_LABEL: "blue"}) in plan.actions
    assert not [a for a in plan.actions if isinstance(a, ScaleTwin)]  # the Service is still on it
    assert world.twins["green"].replicas == 3
    world.step(ONE, advance=1)  # the EndpointSlice now holds the blue pods only
    assert world.twins["green"].replicas == 0 and world.state.stable == "blue"


def test_abort_after_promotion_with_the_old_twin_gone_says_why_it_cannot_flip_back() -> None:
    # The old twin deleted, or scaled to 0 by hand, within scale-down-delay:
    # the abort of the release just promoted cannot flip back. Before, it
    # was a Normal "nothing to abort right now", as if nothing had been
    # promoted (the refusal that names the old twin was never reached).
    for gone in ("deleted", "scaled to 0"):
        world = serving_canary(ONE)
        world.step(ONE, result(Verdict.PASS), advance=10)
        world.settle(ONE)
        assert world.state.stable == "green" and world.state.scale_down == "blue"
        if gone == "deleted":
            del world.twins["blue"]
        else:
            world.twins["blue"] = replace(world.twins["blue"], replicas=0)
        world.events.clear()
        world.action = "abort t1"
        world.step(ONE, advance=1)
        ignored = [e for e in world.events if e.reason == "ActionIgnored"]
        assert len(ignored) == 1 and ignored[0].warning, (gone, world.events)
        assert "blue twin" in ignored[0].message and "traffic stays on r2" in ignored[0].message
        assert world.state.stable == "green" and world.selector[TWIN_LABEL] == "green"


# -- a lost status never replays or undoes what people did ----------------------------------


def test_a_stale_retry_is_not_carried_out_again_after_the_status_is_lost() -> None:
    world = serving_canary(STRICT)
    world.fail(STRICT)
    world.action = "retry t1"
    world.step(STRICT)
    world.settle(STRICT)
    assert world.state.canary_revision == "r2"
    world.fail(STRICT)  # rolled back a second time
    world.settle(STRICT)
    assert world.state.canary is None and world.state.failed_revision == "r2"
    world.state, world.lost = State(), "missing"  # hours later; the action is still there
    world.events.clear()
    world.step(STRICT, advance=3600)
    world.settle(STRICT)
    assert "RetryRequested" not in world.reasons(), world.reasons()
    assert world.state.canary is None and not selects(world, "r2")
    rebuilt = [e for e in world.events if e.reason == "StateRebuilt"]
    assert "'retry t1' is taken as done" in rebuilt[0].message


def test_a_pause_stays_when_the_status_is_rebuilt() -> None:
    """On-call paused a rollout; then a GitOps sync applied an old export of
    the Service (its status distrusted) or the status was lost. The pause
    lived only in the status: taken as done, the rebuilt rollout went on
    through its steps unwatched by the person who held it."""
    world = serving_canary(CANARY)
    world.action = "pause t1"
    world.step(CANARY, advance=1)
    assert world.state.paused
    world.state, world.lost = State(), "missing"
    world.events.clear()
    world.step(CANARY, advance=1)
    world.step(CANARY, result(Verdict.PASS), advance=11)
    world.step(CANARY, result(Verdict.PASS), advance=11)
    assert world.state.paused and world.state.step == 0, world.reasons()
    rebuilt = [e for e in world.events if e.reason == "StateRebuilt"]
    assert "'pause t1' is kept: the rollout stays paused" in rebuilt[0].message
    assert "ActionIgnored" not in world.reasons()
    world.action = "resume t2"  # the person's resume still lifts it
    world.step(CANARY, result(Verdict.PASS), advance=11)
    assert not world.state.paused


def test_a_revert_then_a_re_apply_is_not_taken_for_an_undo_after_the_status_is_lost() -> None:
    world = serving_canary(ONE)
    passed_and_settled(world, ONE)
    release(world, "r1")  # the team reverts its Deployment: r1 rolls out again, promoted
    world.settle(ONE)
    passed_and_settled(world, ONE)
    assert world.state.stable_revision == "r1" and not world.state.undone
    world.records = [{**r, "actions": []} for r in world.records]  # no UndoRequested anywhere
    release(world, "r2")  # and re-applies r2; the status is lost before the next cycle
    world.state, world.lost = State(), "missing"
    world.step(ONE, advance=10)
    assert world.state.canary_revision == "r2", world.reasons()


@pytest.mark.parametrize("action_left", [True, False])
def test_an_undone_revision_stays_out_after_the_status_is_lost(action_left: bool) -> None:
    world = serving_canary(ONE)
    promoted_then_undone(world)
    if not action_left:
        world.action = ""
    world.state, world.lost = State(), "missing"
    world.events.clear()
    world.step(ONE, advance=10)
    world.settle(ONE)
    assert world.state.canary is None, world.reasons()
    assert world.state.failed_revision == "r2" and world.state.undone


# -- while the annotations are invalid ------------------------------------------------------


def test_an_abort_while_the_annotations_are_invalid_takes_the_canary_out() -> None:
    world = serving_canary(CANARY)
    broken = SpecError("canary.io/steps", "not a list of weights")
    world.step(broken, advance=1)
    world.action = "abort t1"
    world.step(broken, advance=1)
    assert not selects(world, "r2") and world.state.canary is None
    assert "Aborted" in world.reasons()


def test_a_pause_while_the_annotations_are_invalid_holds_once_they_are_fixed() -> None:
    world = serving_canary(CANARY)
    broken = SpecError("canary.io/steps", "not a list of weights")
    world.step(broken, advance=1)
    world.action = "pause t1"
    world.step(broken, advance=1)
    assert world.state.paused and "RolloutPaused" in world.reasons()
    world.step(CANARY, result(Verdict.PASS), advance=11)  # fixed; a check comes in
    assert world.state.step == 0 and world.state.paused


def test_other_commands_while_invalid_are_refused_and_never_fire_later() -> None:
    world = serving_canary(CANARY)
    broken = SpecError("canary.io/steps", "not a list of weights")
    world.step(broken, advance=1)
    world.action = "promote t1"
    world.step(broken, advance=1)
    assert "ActionIgnored" in world.reasons() and world.state.canary_revision == "r2"
    world.events.clear()
    world.settle(CANARY)  # fixed: the promote asked before is not carried out now
    assert "PromoteRequested" not in world.reasons() and not world.state.promoting


# -- what the status and Events say ---------------------------------------------------------


def test_a_failed_undo_names_the_undo_target_as_rolled_back_not_what_serves() -> None:
    world = serving_canary(STRICT)
    passed_and_settled(world, STRICT)
    world.revisions = {1: "r1", 2: "r2"}
    world.action = "undo 1 t1"
    world.step(STRICT, advance=1)
    world.settle(STRICT)
    assert world.state.canary_revision == "r1"
    world.fail(STRICT)
    world.settle(STRICT)
    assert world.state.stable_revision == "r2" and world.state.failed_revision == "r1"
    assert phase(STRICT, world.state) is Phase.ROLLED_BACK


def test_resume_says_resumed_only_when_the_rollout_moves() -> None:
    world = serving_canary(CANARY)
    world.source = replace(world.source, paused=True, paused_by="kubectl")
    world.step(CANARY, advance=1)
    world.events.clear()
    world.action = "resume t1"
    world.step(CANARY, advance=1)
    assert phase(CANARY, world.state) is Phase.PAUSED
    assert "RolloutResumed" not in world.reasons()
    ignored = [e for e in world.events if e.reason == "ActionIgnored"]
    assert ignored and "kubectl rollout resume" in ignored[0].message


def test_a_service_seen_for_the_first_time_with_an_old_action_is_adopted_quietly() -> None:
    # A manifest copied with its canary.io/action: not carried out, and no
    # StateRebuilt for a status that never existed.
    world = World()
    world.action, world.lost = "abort t0", "missing"
    world.step(CANARY)
    world.settle(CANARY)
    assert world.state.adopted and world.state.last_action == "abort t0"
    assert "StateRebuilt" not in world.reasons() and "Aborted" not in world.reasons()


def test_an_unknown_action_is_named_in_a_warning_and_changes_nothing() -> None:
    world = serving_canary(CANARY)
    world.action = "promtoe t1"
    world.step(CANARY, advance=1)
    ignored = [e for e in world.events if e.reason == "ActionIgnored"]
    assert ignored and "'promtoe t1'" in ignored[0].message and ignored[0].warning
    assert world.state.canary_revision == "r2" and not world.state.promoting


# -- a request left in Git and re-applied by a sync -----------------------------------------


def test_an_abort_left_in_git_and_re_applied_by_a_sync_never_aborts_a_later_release() -> None:
    # The team aborted r2 the GitOps way: `canary.io/action: abort 1` in Git.
    world = serving_canary(ONE)
    world.action = "abort 1"
    world.step(ONE, advance=1)
    world.settle(ONE)
    assert world.state.failed_revision == "r2" and "Aborted" in world.reasons()
    release(world, "r3")  # a fixed release, promoted from the CLI
    world.settle(ONE)
    world.action = "promote revision=r3 t2"
    world.step(ONE, advance=1)
    world.settle(ONE)
    assert world.state.stable_revision == "r3" and world.state.scale_down == "blue"
    world.events.clear()
    world.action = "abort 1"  # Argo CD's self-heal puts Git's value back
    world.step(ONE, advance=1)
    world.settle(ONE)
    assert world.state.stable_revision == "r3", world.reasons()
    assert "Aborted" not in world.reasons() and selects(world, "r3")
    ignored = [e for e in world.events if e.reason == "ActionIgnored"]
    assert ignored and ignored[0].warning and "'abort 1'" in ignored[0].message
    world.events.clear()
    world.step(ONE, advance=1)  # said once, not every cycle
    assert "ActionIgnored" not in world.reasons()


def test_a_pause_left_in_git_and_re_applied_after_a_resume_does_not_pause_again() -> None:
    world = serving_canary(CANARY)
    world.action = "pause 1"  # in Git
    world.step(CANARY, advance=1)
    assert world.state.paused
    world.action = "resume t2"  # on-call, from the CLI
    world.step(CANARY, advance=1)
    assert not world.state.paused
    world.action = "pause 1"  # the sync writes Git's value back
    world.step(CANARY, advance=1)
    assert not world.state.paused and phase(CANARY, world.state) is Phase.PROGRESSING


# -- a check run under annotations edited since -----------------------------------------------

LENIENT = spec(steps="50", analysis="metrics: [{name: success-rate, min: 95}]")
TIGHTENED = spec(steps="50", analysis="metrics: [{name: success-rate, min: 99.5}]")


def test_a_pass_measured_under_an_analysis_tightened_since_promotes_nothing() -> None:
    # On-call sees the canary's errors and tightens canary.io/analysis while
    # the last step's check is in flight: it measured against the old
    # threshold, and passing it promoted a release the new one fails.
    world = serving_canary(LENIENT)
    world.events.clear()
    check = Checked("scheduled", result(Verdict.PASS), world.now + 10, LENIENT.analysis)
    world.step(TIGHTENED, check, advance=10)
    world.settle(TIGHTENED)
    assert world.state.canary_revision == "r2" and not world.state.promoting, world.reasons()
    assert world.state.stable_revision == "r1" and world.state.checked == 0.0  # decided nothing
    assert "Promoted" not in world.reasons() and "PromotionStarted" not in world.reasons()
    # A check run under the annotations as they are now decides as before.
    world.step(
        TIGHTENED,
        Checked("scheduled", result(Verdict.PASS), world.now + 10, TIGHTENED.analysis),
        advance=10,
    )
    world.settle(TIGHTENED)
    assert world.state.stable_revision == "r2" and "Promoted" in world.reasons()


# -- the strategy switched while the rollout stands still ----------------------------------------

BLUE_GREEN = spec(steps="25,50", strategy="blue-green")


@pytest.mark.parametrize("held_by", ["pause", "annotation", "halt"])
def test_a_switch_to_blue_green_while_the_rollout_stands_still_never_grows_the_live_canary(
    held_by: str,
) -> None:
    world = serving_canary(CANARY)  # r2 serves at 25 %: 1 canary pod beside 3
    held = CANARY
    if held_by == "pause":
        world.action = "pause t1"
        world.step(CANARY, advance=1)
    elif held_by == "annotation":
        held = spec(steps="25,50", paused="true")
    else:
        world.state = replace(world.state, halted="no data", halt_kind="no-data")
    switched = spec(steps="25,50", strategy="blue-green", paused=str(held is not CANARY))
    world.step(switched, advance=1)
    world.settle(switched)
    canary = world.twins["green"]
    stable = world.twins["blue"]
    live = canary.replicas if selects(world, "r2") else 0
    assert live / (live + stable.replicas) <= 0.25, (world.selector, canary, world.reasons())


def test_resume_on_a_halted_rollout_does_not_say_resumed() -> None:
    world = serving_canary(CANARY)
    world.state = replace(world.state, halted="no data for 3 checks", halt_kind="no-data")
    world.events.clear()
    world.action = "resume t1"
    world.step(CANARY, advance=1)
    assert phase(CANARY, world.state) is Phase.HALTED
    assert "RolloutResumed" not in world.reasons(), world.reasons()
    ignored = [e for e in world.events if e.reason == "ActionIgnored"]
    assert ignored and "halted" in ignored[0].message and "retry" in ignored[0].message


def test_a_pause_that_outlives_its_rollout_is_said_when_the_next_one_starts() -> None:
    """Paused to look closer, the release is aborted (or rolled back while
    paused); the pause stays, a freeze until someone resumes. The next
    release's RolloutStarted said it was rolling out while it sat at its
    first step, paused, with no Event saying why."""
    world = serving_canary(CANARY)
    world.action = "pause t1"
    world.step(CANARY, advance=1)
    world.action = "abort t2"
    world.step(CANARY, advance=1)
    world.settle(CANARY)
    assert world.state.canary is None and world.state.paused
    world.events.clear()
    world.source = replace(world.source, revision="r3")
    world.step(CANARY, advance=1)
    [started] = [e for e in world.events if e.reason == "RolloutStarted"]
    assert "canary resume" in started.message


def test_a_pinned_pause_that_was_carried_out_is_kept_on_a_rebuild() -> None:
    """pause is not a PINNED verb: `pause revision=r1` pauses whatever rolls
    out (r2 here). _pause_kept honours the pin, so after a rebuild the pause
    that held r2 is dropped and r2 goes on under the person holding it."""
    from canary.model import State
    from tests.unit.test_manual_actions import CANARY as MCANARY
    from tests.unit.test_manual_actions import serving_canary

    world = serving_canary(MCANARY)
    world.action = "pause revision=r1 t1"
    world.step(MCANARY, advance=1)
    assert world.state.paused and world.state.canary_revision == "r2"  # carried out on r2
    world.state, world.lost = State(), "missing"
    world.step(MCANARY, advance=1)
    assert world.state.paused, world.reasons()
