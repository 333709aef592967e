"""Releases arriving at every phase of a rollout (found by review: each
test failed on the code before its fix)."""

from __future__ import annotations

from dataclasses import replace

from analysis.verdicts import Verdict
from canary import history
from canary.model import Action, ApplyTwin
from canary.spec import SERVICE_LABEL, RolloutSpec
from tests.unit.world import World, result, source, spec

CANARY = spec(steps="25,50")


def release(world: World, revision: str) -> None:
    """The team's Deployment at `revision`, with that revision's template."""
    world.source = replace(world.source, revision=revision, template=source(revision).template)


def promoted(the_spec: RolloutSpec, revision: str = "r2") -> World:
    """Adopted at r1, then `revision` released, passed and promoted."""
    world = World().adopted(the_spec)
    release(world, revision)
    world.settle(the_spec)
    while world.state.canary is not None:
        world.step(the_spec, result(Verdict.PASS), advance=10)
        world.settle(the_spec)
    assert world.state.stable_revision == revision
    return world


def test_the_deployment_set_to_an_undos_target_mid_undo_does_not_start_it_again() -> None:
    # r2 promoted, then found bad: on-call runs `canary undo` back to r1, and
    # the team follows in Git (a revert to r1, or `kubectl rollout undo
    # deployment/web`) while the undo is at its second step. Before, the
    # Deployment now holding r1 was taken for a new release replacing the
    # undo: r1's entry ended "superseded: replaced by r1", RolloutRestarted
    # said "revision r1 replaces the undo to r1", and r1, already past its
    # first step, started again from it (its canary cut from 3 pods to 1).
    world = promoted(CANARY)
    number = next(n for n, r in world.observed().revisions.items() if r == "r1")
    world.action = f"undo {number} t1"
    world.step(CANARY, advance=1)
    world.settle(CANARY)
    world.step(CANARY, result(Verdict.PASS), advance=10)
    world.settle(CANARY)
    assert world.state.canary_revision == "r1" and world.state.step == 1
    canary = world.state.canary
    assert canary is not None and world.twins[canary].replicas == 3
    world.events.clear()

    release(world, "r1")  # the team's Deployment follows the undo
    world.step(CANARY, advance=1)
    world.settle(CANARY)

    assert "RolloutRestarted" not in world.reasons(), world.reasons()
    assert world.state.canary_revision == "r1" and world.state.step == 1
    assert world.twins[canary].replicas == 3 and SERVICE_LABEL in world.selector
    assert history.outcomes(world.records).get("r1") == "progressing", world.records
    world.step(CANARY, result(Verdict.PASS), advance=10)
    world.settle(CANARY)
    assert world.state.stable_revision == "r1" and world.state.canary is None
    # The Deployment holds what serves: nothing is kept out (r2 is gone from it).
    assert world.state.failed_revision == "" and not world.state.undone
    assert [(r["revision"], r.get("outcome")) for r in world.records][-2:] == [
        ("r2", "promoted"),
        ("r1", "promoted"),
    ], world.records


def test_a_release_replacing_a_preview_does_not_count_the_old_pods_as_its_own() -> None:
    # r2 previewed on green at full size; r3 replaces it. Before, the status
    # of the decision that re-templated green read "waiting for the canary,
    # 3/3 pods ready, 3/3 endpoints": r2's pods, counted as r3's (kept there
    # for up to PROGRESS_WRITE_EVERY_S, and in a rollback's Event had the
    # twin's write never taken).
    blue_green = spec(strategy="blue-green")
    world = World().adopted(blue_green)
    release(world, "r2")
    world.settle(blue_green)
    assert world.state.canary_revision == "r2" and world.state.step_ready
    assert world.observed().twin("green").ready == 3
    release(world, "r3")
    world.step(blue_green, advance=1)
    assert world.state.canary_revision == "r3"
    assert "0/3 pods ready, 0/3 endpoints" in world.state.message, world.state.message


class _TwinWritesRefused(World):
    """The canary twin's re-templating never lands (an admission webhook on
    Deployments refusing it, a policy): it keeps the revision it ran."""

    def _land(self, action: Action) -> None:
        if isinstance(action, ApplyTwin) and action.revision == "r3":
            return
        super()._land(action)


def test_a_rollback_at_the_deadline_of_a_release_never_written_counts_none_of_its_pods() -> None:
    # Before, ProgressDeadlineExceeded said "waiting for the canary, 3/3
    # pods ready, 3/3 endpoints after 900s": the pods of r2, which r3 never
    # replaced, and on-call looked for why ready pods had not served.
    blue_green = spec(strategy="blue-green")
    world = _TwinWritesRefused().adopted(blue_green)
    release(world, "r2")
    world.settle(blue_green)
    release(world, "r3")
    for _ in range(4):
        world.step(blue_green, advance=blue_green.progress_deadline / 2)
    told = [e.message for e in world.events if e.reason == "ProgressDeadlineExceeded"]
    assert told and "0/3 pods ready" in told[0], told


def test_a_release_replacing_a_canary_has_no_effective_weight_before_its_pods_serve() -> None:
    # r2 at 25 % (1 pod of 4 ready endpoints); r3 replaces it. Before, the
    # decision that re-templated green and moved the Service onto blue alone
    # set r3's effective weight from r2's pod: `canary status -A` read
    # "25%/25%" and canary_effective_weight exported 25 for a release with no pod.
    world = World().adopted(CANARY)
    release(world, "r2")
    world.settle(CANARY)
    assert world.state.effective_weight == 25.0
    release(world, "r3")
    world.step(CANARY, advance=1)
    assert world.state.canary_revision == "r3" and SERVICE_LABEL not in world.selector
    assert world.state.effective_weight == 0.0, world.state.message


def test_edits_batched_on_a_paused_deployment_mid_rollout_wait_for_the_resume() -> None:
    # r2 at its second step; the team pauses its Deployment to batch changes
    # (`kubectl rollout pause`, `set image` (r3), `set env` (r4), `rollout
    # resume`). A release waits while a Deployment of the app is paused (as
    # in the steady state). Before, each edit mid-rollout was started on
    # the canary twin at once: r3, half a change, got a template and pods
    # of its own, RolloutStarted and a history entry (superseded by r4),
    # while the same edits in the steady state started nothing.
    world = World().adopted(CANARY)
    release(world, "r2")
    world.settle(CANARY)
    world.step(CANARY, result(Verdict.PASS), advance=10)
    world.settle(CANARY)
    assert world.state.step == 1 and SERVICE_LABEL in world.selector
    world.source = replace(world.source, paused=True, paused_by="kubectl-rollout")
    world.step(CANARY, advance=1)
    world.events.clear()
    for revision in ("r3", "r4"):
        release(world, revision)
        for _ in range(3):
            world.step(CANARY, advance=1)
    assert "RolloutStarted" not in world.reasons(), world.events
    assert world.twins["green"].revision == "r2"
    assert SERVICE_LABEL not in world.selector  # r2, replaced, serves no more
    assert "revision r4 waits" in world.state.message, world.state.message
    outcomes = [(r["revision"], r.get("outcome")) for r in world.records]
    assert ("r2", "superseded") in outcomes and "r3" not in dict(outcomes), outcomes
    world.source = replace(world.source, paused=False, paused_by="")
    world.settle(CANARY)
    assert world.state.canary_revision == "r4" and world.twins["green"].revision == "r4"
