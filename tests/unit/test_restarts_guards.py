"""Directed tests for the max-restarts guards (canary.restarts) that a
mutation pass showed no other test held: where a restart is judged, which
twin's pods count, and which pod on-call is told of."""

from __future__ import annotations

from dataclasses import replace

from analysis.verdicts import Verdict
from canary.model import Observed, Restarted, State
from canary.observe import restarted, slim_pod
from canary.restarts import restart_text, watched_for_restarts
from canary.spec import REVISION_LABEL, SERVICE_LABEL, TWIN_LABEL
from tests.unit.test_restarts import observed_with
from tests.unit.world import World, result, spec

CANARY = spec(steps="25,50")
BG = spec(strategy="blue-green")
OOM = Restarted("web-green-7d9-abc", 2, "app", "OOMKilled", 137)

# A blue-green preview up at full size, its step ready: it serves no
# production traffic, so a failed check standing still would not be judged.
PREVIEW = State(
    stable="blue", canary="green", canary_revision="r2", step_ready=1.0, requested_weight=0
)


def _rolling() -> World:
    """Revision r2 serving at step 1 (25%), its window begun."""
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    assert world.state.canary == "green" and world.state.step == 0, world.state
    world.events.clear()
    return world


def test_a_preview_moving_through_its_steps_is_watched() -> None:
    assert watched_for_restarts(PREVIEW, BG, World().observed())


def test_a_preview_held_by_the_paused_annotation_is_not_judged_for_restarts() -> None:
    # canary.io/paused stands the rollout still as `canary pause` does: a
    # preview, serving nobody, waits as a failed check would.
    held = spec(strategy="blue-green", paused="true")
    assert held.paused
    assert not watched_for_restarts(PREVIEW, held, World().observed())


def test_a_preview_being_promoted_is_judged_for_restarts_unless_paused() -> None:
    # Its flip ends the rollout: a restart not judged before it never is.
    promoting = replace(PREVIEW, promoting=True)
    assert watched_for_restarts(promoting, BG, World().observed())
    # Paused, the flip waits too: judged once resumed, as a paused preview is.
    assert not watched_for_restarts(replace(promoting, paused=True), BG, World().observed())


def test_a_preview_held_by_a_paused_deployment_is_not_judged_for_restarts() -> None:
    observed = World().observed()
    paused = replace(observed, source=replace(observed.source, paused=True, paused_by="kubectl"))
    assert not watched_for_restarts(PREVIEW, BG, paused)


def test_restarts_of_a_twin_not_yet_at_the_revision_under_analysis_count_for_nothing() -> None:
    # The canary twin's Deployment still reports the revision it ran
    # before (its new template not rolled out yet): the pods that restarted
    # are that revision's, not the release's.
    world = _rolling()
    world.twins["green"] = replace(world.twins["green"], revision="r1", restarted=(OOM,))
    world.step(CANARY, result(Verdict.PASS), advance=10)
    assert "PodRestarts" not in world.reasons(), world.events
    assert world.state.canary == "green", world.state


def test_the_pod_named_is_the_one_most_over_the_limit() -> None:
    world = _rolling()
    worst = Restarted("web-green-7d9-zzz", 7, "app", "Error", 1)
    world.twins["green"] = replace(world.twins["green"], restarted=(worst, OOM))
    world.step(CANARY, result(Verdict.PASS), advance=10)
    [event] = [e for e in world.events if e.reason == "PodRestarts"]
    assert "pod web-green-7d9-zzz: container app restarted 7 times" in event.message, event


def test_a_single_restart_over_max_restarts_zero_reads_one_time() -> None:
    strict = spec(steps="25,50", analysis="max-restarts: 0\n")
    world = _rolling()
    world.twins["green"] = replace(world.twins["green"], restarted=(replace(OOM, restarts=1),))
    world.step(strict, advance=1)
    [event] = [e for e in world.events if e.reason == "PodRestarts"]
    assert "container app restarted 1 time (max-restarts 0" in event.message, event


def _observed(pods_of: object) -> Observed:
    return observed_with("green", "r2", pods_of)


def test_without_a_pods_cache_the_restarts_are_not_known() -> None:
    # Not listed yet (a start) or its watch failing: `restarted` is empty
    # whatever runs, and a rollout begun then reads its reused pods' restarts
    # later (restarts._read_late), not as none.
    assert not _observed(None).pods_known
    assert _observed(lambda color: []).pods_known


def test_a_container_that_exited_cleanly_and_restarted_keeps_its_exit_code_zero() -> None:
    status = {
        "name": "app",
        "ready": True,
        "restartCount": 2,
        "state": {"running": {}},
        "lastState": {"terminated": {"reason": "Completed", "exitCode": 0}},
    }
    labels = {TWIN_LABEL: "green", SERVICE_LABEL: "web", REVISION_LABEL: "r2"}
    pod = {
        "metadata": {"name": "web-green-7d9-abc", "namespace": "ns", "labels": labels},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [status],
        },
    }
    [found] = restarted([slim_pod(pod)], "r2")
    assert (found.exit_reason, found.exit_code) == ("Completed", 0), found
    text = restart_text(found, "canary", 1)
    assert text.endswith("(max-restarts 1; last exit Completed, code 0)"), text
