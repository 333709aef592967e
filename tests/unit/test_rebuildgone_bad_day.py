"""The records a rebuild or a hand-back goes by, partly gone at once: the
Service (or its status) lost together with a twin. Each test failed on the
code before its fix."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from analysis.verdicts import Verdict
from canary import handback
from canary.model import (
    COLORS,
    Action,
    ApplyTwin,
    Checked,
    Observed,
    RestoreSource,
    ScaleSource,
    Twin,
    Unclaim,
)
from canary.spec import TWIN_LABEL
from tests.unit.test_events_refused import KEY, _Shell
from tests.unit.world import World, result, spec

CANARY = spec(steps="25,50")


def _mid_rollout() -> World:
    """Blue serves r1; r2 (the team's Deployment) is green's canary at 25 %."""
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    assert world.state.canary == "green" and world.twins["green"].revision == "r2"
    assert world.source.claim.stable_revision == "r1", world.source.claim
    return world


def _orphaned(world: World, blue: Twin) -> Observed:
    """What the orphan cycle observes: the Service gone (no selector, no
    history read), blue as given."""
    observed = world.observed()
    green = replace(observed.twins["green"], endpoints=0)
    return replace(observed, selector={}, twins={"blue": blue, "green": green}, endpoints=0)


def test_an_orphan_whose_stable_twin_went_never_hands_back_the_canary_at_full_size() -> None:
    """Mid-rollout the Service is deleted while blue (stable, r1) is being
    deleted (a foreground cascade) or already gone. The orphan hand-back
    took the one twin left (green, the canary: r2, never passed) for the
    stable one and, the team's Deployment holding r2 too, scaled it to the
    app's full size and let go: all of the app on a release nobody had
    analysed."""
    for blue in (Twin(deleting=True), Twin()):
        world = _mid_rollout()
        plan = handback.orphan(_orphaned(world, blue), missing_for=60.0)
        up = [a for a in plan.actions if isinstance(a, ScaleSource) and a.replicas > 0]
        assert not up, (blue, plan.actions)


def _orphan_cycles(world: World, cycles: int = 8) -> list[Action]:
    """The orphan hand-back run to its end on World (the Service gone)."""
    world.selector = {}
    done: list[Action] = []
    for _ in range(cycles):
        observed = world.observed()
        # (the real observe() has both colours; a Service gone, no endpoints)
        twins = {c: replace(observed.twin(c), endpoints=0) for c in COLORS}
        observed = replace(observed, twins=twins, endpoints=0)
        plan = handback.orphan(observed, missing_for=60.0)
        for action in plan.actions:
            world._land(action)
        done.extend(plan.actions)
        if plan.release:
            world.released = True
            break
    return done


def test_an_orphan_puts_the_serving_twin_back_from_the_history_and_hands_back_through_it() -> None:
    """The same, blue gone and the history still there (orphaned with the
    Service, or not yet collected): blue is made again at r1 from the
    history's template, and the hand-back goes through it: the canary stops,
    the team's Deployment is set back to r1 (SourceRestored) and only then
    scaled up."""
    world = _mid_rollout()
    del world.twins["blue"]
    done = _orphan_cycles(world)
    assert world.released, done
    assert done[0] == ApplyTwin("blue", "r1", 3), done
    restored = done.index(RestoreSource("blue"))
    up = [i for i, a in enumerate(done) if isinstance(a, ScaleSource) and a.replicas > 0]
    assert up and up[0] > restored, done
    assert world.source.revision == "restored-blue" and world.source.replicas == 3, world.source
    assert "SourceRestored" in world.reasons(), world.reasons()


def test_an_orphan_waits_for_a_stable_twin_being_deleted_before_making_it_again() -> None:
    """Blue is being deleted (its name taken until it is gone): nothing is
    written, and nothing scaled up, until it is."""
    world = _mid_rollout()
    plan = handback.orphan(_orphaned(world, Twin(deleting=True)), missing_for=60.0)
    assert not plan.actions and not plan.release and plan.requeue_after, plan


def test_an_orphan_with_no_record_of_the_serving_revision_scales_nothing_up() -> None:
    """Blue gone and the history with it: r1's template is kept nowhere.
    Nothing unanalysed is scaled up: the team's Deployment is let go at the
    0 it was held at (un-gated, unclaimed), the canary's twin goes, and a
    Warning says why and what to do."""
    world = _mid_rollout()
    world.records = []
    del world.twins["blue"]
    done = _orphan_cycles(world)
    assert world.released, done
    assert not [a for a in done if isinstance(a, ScaleSource) and a.replicas > 0], done
    assert not [a for a in done if isinstance(a, ApplyTwin | RestoreSource)], done
    assert Unclaim() in done and not world.twins and not world.source.gated, done
    [told] = [e for e in world.events if e.reason == "ReleasedAtZero"]
    assert told.warning and "r2, which never passed" in told.message, told.message


def test_the_orphan_cycle_reads_the_history_to_make_the_serving_twin_again() -> None:
    """The shell's part (reconcile._orphans): r2 in flight on green, the
    Service deleted and web-blue (r1) deleted with it, the history not yet
    collected. The team's Deployment is handed back at r1's template and
    size; never scaled up while it holds r2."""
    shell = _Shell()
    for deployment in shell.informers[1].items():
        deployment["metadata"].setdefault("uid", f"d-{deployment['metadata']['name']}")
    shell.informers[0].forget("ns", "web")
    shell.informers[1].forget("ns", "web-blue")
    for _ in range(10):
        shell.reconciler._missing[KEY] = time.time() - 100
        asyncio.run(shell.reconciler.reconcile(*KEY))
        web = shell.informers[1].get("ns", "web")
        image = web["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == "web:v1" or web["spec"]["replicas"] == 0, (image, web["spec"])
    assert web["spec"]["replicas"] == 3 and image == "web:v1", web["spec"]
    assert [d["metadata"]["name"] for d in shell.informers[1].items()] == ["web"]
    assert "canary.io/managed-by" not in web["metadata"]["annotations"], web["metadata"]


def _promoted() -> World:
    """r2 promoted on green; blue (r1, the previous release) idle at 0."""
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    for _ in range(6):
        world.step(CANARY, result(Verdict.PASS), advance=11)
        world.settle(CANARY)
    world.step(CANARY, advance=60)  # past scale-down-delay
    world.settle(CANARY)
    assert world.state.stable == "green" and world.state.stable_revision == "r2", world.state
    assert world.twins["blue"].replicas == 0 and world.source.claim.stable_revision == "r2"
    world.events.clear()
    return world


def test_a_status_lost_while_the_stable_twin_is_gone_never_brings_the_older_release_back() -> None:
    """The status is lost (a sync with Replace=true) while green, the stable
    twin (r2, promoted), is being deleted or already gone. The rebuild took
    the idle twin (blue: r1, the release before, at 0) for the stable one:
    scaled it to full size, put the Service on it (a rollback nobody asked
    for), and rolled r2 out again as a new release. The claim and the
    history both name r2: green is made again at r2, and blue stays at 0."""
    for green in (Twin(deleting=True), Twin()):
        world = _promoted()
        world.twins["green"] = green
        world.lost = "removed"
        for _ in range(4):
            world.step(CANARY, advance=1)
            assert world.twins["blue"].replicas == 0, (green, world.twins, world.reasons())
            assert world.selector.get(TWIN_LABEL) != "blue", (green, world.selector)
            assert "RolloutStarted" not in world.reasons(), (green, world.reasons())
            assert world.state.stable == "green" and world.state.stable_revision == "r2"
            if world.twins["green"].deleting:
                world.twins["green"] = Twin()  # gone at last
        assert world.twins["green"].revision == "r2" and world.twins["green"].replicas == 3


def test_a_status_lost_mid_rollout_as_the_stable_twin_is_deleted_never_serves_the_canary() -> None:
    """Mid-rollout (blue r1 stable, green r2 the canary at 25 %) the status
    is lost while blue is being deleted: the rebuild took green, the canary
    nobody had analysed, for the stable twin and scaled it to full size.
    Blue is stable at r1 (made again from the history once gone), green
    never grows."""
    world = _mid_rollout()
    world.twins["blue"] = Twin(deleting=True)
    world.lost = "removed"
    for _ in range(3):
        world.step(CANARY, advance=1)
        assert world.twins["green"].replicas <= 1, (world.twins, world.reasons())
        assert world.state.stable == "blue" and world.state.stable_revision == "r1", world.state


def test_a_status_lost_after_a_rollback_while_the_stable_twin_is_deleted_keeps_it_out() -> None:
    """r2 rolled back (green at 0), the team's Deployment still at r2; the
    status is lost while blue (r1) is being deleted: the rebuild took green
    (the rolled-back release) for the stable twin and scaled it up."""
    world = _mid_rollout()
    world.fail(CANARY)
    world.step(CANARY, Checked("fast", result(Verdict.FAIL), world.now + 1), advance=1)
    world.settle(CANARY)
    assert world.state.failed_revision == "r2" and world.twins["green"].replicas == 0
    world.twins["blue"] = Twin(deleting=True)
    world.lost = "removed"
    for _ in range(3):
        world.step(CANARY, advance=1)
        assert world.twins["green"].replicas == 0, (world.twins, world.reasons())
        assert world.state.stable_revision == "r1" and world.state.failed_revision == "r2"


def test_a_service_recreated_as_the_stable_twin_is_gone_never_brings_the_older_release_back() -> (
    None
):
    """The Service is recreated with the controller down (`kubectl replace
    --force`, a Helm `--force` upgrade): the status is lost and the history
    went with the old Service (collected), while green, the stable twin
    (r2, promoted), is being deleted or gone. The claim on the team's
    Deployment (ours) names r2, which the Deployment holds, and blue (r1)
    idles at 0: the rebuild took blue for the stable twin ("the twin with
    the most ready pods", none), scaled it up, put the Service on it and
    rolled r2 out again. r2 is stable; green is made again from the
    Deployment."""
    for green in (Twin(deleting=True), Twin()):
        world = _promoted()
        world.twins["green"] = green
        world.records = []
        world.lost = "removed"
        for _ in range(4):
            world.step(CANARY, advance=1)
            assert world.twins["blue"].replicas == 0, (green, world.twins, world.reasons())
            assert world.selector.get(TWIN_LABEL) != "blue", (green, world.selector)
            assert "RolloutStarted" not in world.reasons(), (green, world.reasons())
            assert world.state.stable == "green" and world.state.stable_revision == "r2"
            if world.twins["green"].deleting:
                world.twins["green"] = Twin()  # gone at last
        assert world.twins["green"].revision == "r2" and world.twins["green"].replicas == 3


def test_a_status_lost_as_the_promoted_twin_is_deleted_keeps_the_old_one_for_an_abort() -> None:
    """Within scale-down-delay of r2's promotion (blue, r1, still up) the
    status is lost while green, the promoted twin, is being deleted. Green
    is made again (above); blue's ready pods, the only ones the app has,
    stay up while green has none, as they would with the status there, and
    `canary abort` puts production back on them. Dropped with the status,
    blue went to 0 at once."""
    slow = spec(steps="25,50", scale_down_delay="5m")
    world = World().adopted(slow)
    world.source = replace(world.source, revision="r2")
    world.settle(slow)
    for _ in range(6):
        world.step(slow, result(Verdict.PASS), advance=11)
        world.settle(slow)
    assert world.state.stable == "green" and world.state.scale_down == "blue"
    world.twins["green"] = Twin(deleting=True)
    world.lost = "removed"
    world.stall(True)  # green's pods made again do not come up yet
    for _ in range(3):
        world.step(slow, advance=100)
        assert world.twins["blue"].replicas == 3, (world.twins, world.reasons())
        assert world.selector.get(TWIN_LABEL) == "green", world.selector
    assert "`canary abort` puts production back on it" in world.state.message, world.state.message
    world.action = "abort"
    world.step(slow, advance=1)
    assert world.selector.get(TWIN_LABEL) == "blue", (world.selector, world.reasons())


def test_a_status_lost_as_the_stable_twin_is_undone_by_hand_never_adopts_the_old_revision() -> None:
    """`kubectl rollout undo deployment/web-blue` (an older ReplicaSet's
    template and annotations: blue now names r0) while the status is lost,
    steady or mid-rollout. The rebuild took blue at its word: r0 recorded as
    the serving revision ("adopted"), the claim rewritten to it, and r1, the
    revision that passed, rolled out again as a new release while r0 served.
    The claim and the history name r1: blue is put back to it, as with the
    status there (TwinRestored)."""
    for world in (World().adopted(CANARY), _mid_rollout()):
        world.twins["blue"] = replace(world.twins["blue"], revision="r0")
        world.lost = "removed"
        plan = world.step(CANARY, advance=1)
        assert world.state.stable == "blue" and world.state.stable_revision == "r1", world.state
        assert ApplyTwin("blue", "r1", 3, put_back=True) in plan.actions, plan.actions
        assert "TwinRestored" in world.reasons(), world.reasons()
        world.settle(CANARY)
        assert "r0" not in world.observed().outcomes, world.records
        assert world.source.claim.stable_revision == "r1", world.source.claim
        assert world.twins["blue"].revision == "r1", world.twins


def test_an_orphan_with_both_twins_gone_mid_rollout_goes_through_the_serving_revision() -> None:
    """Mid-rollout, the Service deleted with both twins gone (deleted by
    hand, the controller down): the team's Deployment holds r2, which never
    passed, and was let go silently at the 0 it was held at. With the
    history still there, blue is made again at r1 and the hand-back goes
    through it; with none, the Deployment is let go at 0 with a Warning
    saying why."""
    world = _mid_rollout()
    world.twins = {}
    done = _orphan_cycles(world)
    assert world.released and done[0] == ApplyTwin("blue", "r1", 3), done
    assert world.source.revision == "restored-blue" and world.source.replicas == 3, world.source
    world = _mid_rollout()
    world.twins = {}
    world.records = []
    done = _orphan_cycles(world)
    assert world.released, done
    assert not [a for a in done if isinstance(a, ScaleSource) and a.replicas > 0], done
    [told] = [e for e in world.events if e.reason == "ReleasedAtZero"]
    assert "let go at 0 replicas, not 3" in told.message, told.message


def test_a_hand_back_never_copies_a_hand_edit_of_the_stable_twin_into_the_deployment() -> None:
    """Mid-rollout, the stable twin is edited by hand (`kubectl edit
    deployment web-blue`) in the cycle management is removed, or while the
    controller is down and the Service deleted. The hand-back copied blue's
    live template, the edit, into the team's Deployment ("set back to the
    blue twin's ... the one serving (r1)") and scaled it to full size. Blue
    is put back to r1 from the history first; with no template kept, the
    Warning says the copy is the edit."""
    for orphaned in (False, True):
        world = _mid_rollout()
        world.twins["blue"] = replace(world.twins["blue"], edited_by="kubectl-edit")
        if orphaned:
            done = _orphan_cycles(world)
        else:
            done = []
            for _ in range(8):
                done.extend(world.step(None, advance=1).actions)
        assert world.released, done
        restored = done.index(RestoreSource("blue"))
        assert ApplyTwin("blue", "r1", 3, put_back=True) in done[:restored], done
    world = _mid_rollout()
    world.records = []
    world.twins["blue"] = replace(world.twins["blue"], edited_by="kubectl-edit")
    _orphan_cycles(world)
    [told] = [e.message for e in world.events if e.reason == "SourceRestored"]
    assert "as kubectl-edit edited it" in told, told


def test_a_twin_made_again_never_takes_the_name_of_a_deployment_someone_else_made() -> None:
    """The stable twin gone and, in its place, a Deployment named web-green
    that someone else made (no label or revision of ours): the rebuild, or
    the orphan hand-back, making green again would write over it."""
    world = _promoted()
    world.twins["green"] = Twin(exists=True, replicas=2)
    world.lost = "removed"
    plan = world.step(CANARY, advance=1)
    assert not [a for a in plan.actions if isinstance(a, ApplyTwin) and a.color == "green"]
    world = _mid_rollout()
    world.twins["blue"] = Twin(exists=True, replicas=2)
    plan = handback.orphan(_orphaned(world, world.twins["blue"]), missing_for=60.0)
    assert not [a for a in plan.actions if isinstance(a, ApplyTwin) and a.color == "blue"]


def test_a_service_recreated_after_an_abort_cut_before_its_claim_keeps_the_twin_that_serves() -> (
    None
):
    """r2 was promoted on green; within scale-down-delay on-call aborts it:
    the abort records it, flips the Service back to blue (r1, still up),
    and is cut before it rewrites the claim on the team's Deployment, which
    still names r2. On-call then deletes the green twin (the bad release),
    and the Service is recreated with the controller down (`kubectl replace
    --force`): status and history are gone. The claim alone names r2, but
    blue's pods serve every request. Taken at its word, the rebuild read
    blue's r1 as a hand undo of the stable twin and put r2's template back
    on it (TwinRestored): the release just aborted served all traffic,
    unanalysed. The twin that serves is stable at what it runs; r2 may only
    go out again as a canary."""
    world = _promoted()
    world.twins["blue"] = replace(world.twins["blue"], replicas=3)  # kept for the abort
    world.selector = {**world.selector, TWIN_LABEL: "blue"}  # the abort's flip back
    world.twins["green"] = Twin()  # deleted by on-call
    assert world.source.claim.stable_revision == "r2"  # the claim write was cut
    world.records = []
    world.lost = "removed"
    for _ in range(4):
        world.step(CANARY, advance=1)
        assert world.state.stable == "blue" and world.state.stable_revision == "r1", world.state
        assert world.selector.get(TWIN_LABEL) in (None, "blue"), world.selector
        assert world.state.canary is None or world.state.canary_revision == "r2"
    assert world.twins["blue"].revision == "r1", world.twins
    assert "TwinRestored" not in world.reasons(), world.reasons()
