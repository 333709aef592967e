"""`canary undo web --to N` where N is the revision that serves, asked while
a newer release is in flight. Before, the serving revision went out again
as a canary against itself on the other twin: a failed check of it (noise,
a flaky dependency) recorded what serves 100 % as `rolled-back`, with the
phase RolledBack, and a lost status then let the undone release out again.
As Argo Rollouts' undo to the stable revision (a fast-track rollback), it
is now an abort of the release in flight, back on what serves at once, the
undone release kept out and recorded so."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from analysis.gate_results import GateAnswer, GateResult
from analysis.spec import GateSpec
from analysis.verdicts import Verdict
from canary.decide import phase
from canary.model import Phase, State
from canary.spec import TWIN_LABEL
from tests.unit.test_events_refused import _revision, _Shell
from tests.unit.test_stale_status import STRICT, serving_canary
from tests.unit.world import World, result


def _undone_to_serving() -> World:
    """r2 in flight at its first step (green), r1 serving (blue); `undo 1`."""
    world = serving_canary()
    world.revisions = {1: "r1", 2: "r2"}
    world.events.clear()
    world.action = "undo 1 t1"
    world.step(STRICT, advance=1)
    world.settle(STRICT)
    return world


def _outcomes(world: World) -> list[tuple[int, str, str]]:
    return [(r["number"], r["revision"], r.get("outcome", "")) for r in world.records]


def test_an_undo_to_the_serving_revision_mid_rollout_takes_the_release_out_at_once() -> None:
    world = _undone_to_serving()
    assert world.state.canary is None, (world.state.canary_revision, world.reasons())
    assert world.selector.get(TWIN_LABEL) == "blue" and world.twins["green"].replicas == 0
    assert "RolloutStarted" not in world.reasons(), world.events
    assert world.state.stable_revision == "r1"
    assert world.state.failed_revision == "r2" and world.state.undone
    assert phase(STRICT, world.state) is Phase.HEALTHY
    # r2 superseded by the undo; the undo itself an entry of r1, which serves.
    assert _outcomes(world) == [
        (1, "r1", "adopted"),
        (2, "r2", "superseded"),
        (3, "r1", "promoted"),
    ]
    undo = world.records[-1]
    assert [a["reason"] for a in undo["actions"]] == ["UndoRequested"]


def test_nothing_a_check_says_afterwards_records_the_serving_revision_rolled_back() -> None:
    """A failing check arriving after the undo judges nothing: no canary runs."""
    world = _undone_to_serving()
    world.fail(STRICT)
    for _ in range(10):
        world.step(STRICT, result(Verdict.FAIL, "success-rate = 50"), advance=10)
    assert phase(STRICT, world.state) is Phase.HEALTHY, world.state.message
    assert "r1" not in {r["revision"] for r in world.records if r.get("outcome") == "rolled-back"}
    assert world.state.canary is None and world.state.failed_revision == "r2"


def test_the_undone_release_stays_out_after_the_status_is_lost() -> None:
    world = _undone_to_serving()
    world.state, world.lost = State(), "missing"
    world.events.clear()
    world.step(STRICT, advance=10)
    world.settle(STRICT)
    assert world.state.canary is None, world.reasons()
    assert world.state.failed_revision == "r2" and world.state.undone
    assert phase(STRICT, world.state) is Phase.HEALTHY


def test_an_undo_to_the_serving_revision_with_nothing_in_flight_is_refused() -> None:
    world = World().adopted(STRICT)
    world.revisions = {1: "r1"}
    world.action = "undo 1 t1"
    world.step(STRICT, advance=1)
    world.settle(STRICT)
    assert world.state.canary is None and world.twins.get("green") is None
    ignored = [e.message for e in world.events if e.reason == "ActionIgnored"]
    assert ignored and "serving" in ignored[0], world.events
    assert _outcomes(world) == [(1, "r1", "adopted")]


def test_with_no_ready_stable_pod_it_is_carried_out_as_an_abort_is() -> None:
    """A drain left the stable twin with no ready pod: the release in flight
    is taken out (its pods keep serving until a stable pod is ready, as for
    an abort), not refused, and no canary of r1 is started on its twin."""
    world = serving_canary()
    world.revisions = {1: "r1", 2: "r2"}
    world.pending = {"blue"}
    world.step(STRICT, advance=1)
    world.action = "undo 1 t1"
    world.step(STRICT, advance=1)
    world.settle(STRICT)
    assert world.state.canary is None and world.state.failed_revision == "r2"
    assert world.twins["green"].revision == "r2" and world.twins["green"].replicas > 0
    world.pending = set()
    world.step(STRICT, advance=10)
    world.settle(STRICT)
    assert world.selector.get(TWIN_LABEL) == "blue" and world.twins["green"].replicas == 0
    assert phase(STRICT, world.state) is Phase.HEALTHY


class _Told:
    """A post-rollout gate's webhook (a deploy tracker): what it was told."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    async def ask(self, gates: Sequence[GateSpec], payload: dict[str, Any]) -> GateResult:
        self.payloads.append(payload)
        answer = GateAnswer(gates[0].name, "post-rollout", True, 200, "ok", 1, 1.0)
        return GateResult("post-rollout", (answer,))


def test_a_post_rollout_gate_is_told_the_revision_the_undo_went_back_to() -> None:
    """Through the reconciler: the undo's entry is r1's promotion, and the
    post-rollout gate was told the revision in flight (r2, taken out) as
    the one rolled out: a deploy tracker marked the undone release done."""
    shell = _Shell()
    shell.kube.refusing = None
    annotations = shell.service()["metadata"]["annotations"]
    annotations["canary.io/analysis"] += (
        "gates:\n  - name: tracker\n    when: post-rollout\n    url: http://tracker.example\n"
    )
    told = _Told()
    shell.reconciler.webhooks = told  # type: ignore[assignment]
    r1, r2 = _revision(shell, "blue"), _revision(shell, "green")
    number = next(r["number"] for r in shell.records() if r["revision"] == r1)
    annotations["canary.io/action"] = f"undo {number} t1"
    for _ in range(4):
        shell.cycle()
    assert not shell.failures, shell.failures
    status = shell.status()
    assert not status.get("canary") and status["failed_revision"] == r2, status
    assert [p["revision"] for p in told.payloads] == [r1], (told.payloads, r1, r2)


def test_an_undo_as_the_deployment_is_reverted_keeps_nothing_out() -> None:
    """GitOps reverts the Deployment to r1 as on-call runs `undo 1`, read in
    the same cycle: the release in flight goes, and nothing is kept out (the
    Deployment holds r1, which serves). Kept out, r1 read as undone, the
    revision serving 100 %."""
    world = serving_canary()
    world.revisions = {1: "r1", 2: "r2"}
    world.source = replace(world.source, revision="r1")
    world.action = "undo 1 t1"
    world.step(STRICT, advance=1)
    world.settle(STRICT)
    assert world.state.canary is None and world.state.stable_revision == "r1"
    assert world.state.failed_revision != "r1" and not world.state.undone, world.state


def test_a_second_undo_to_the_serving_revision_is_recorded_as_its_own() -> None:
    """An earlier undo to r1 (r2 taken out) is no record of a later one: r3
    released, `undo 1` again mid-rollout writes its own entry, after r3's,
    and r3 stays out once the status is lost. Read as already recorded,
    r3's superseded entry was the newest, and it went out again."""
    world = _undone_to_serving()
    world.source = replace(world.source, revision="r3")
    world.step(STRICT, advance=10)
    world.settle(STRICT)
    assert world.state.canary == "green" and world.state.canary_revision == "r3"
    world.revisions = {1: "r1", 2: "r2", 4: "r3"}
    world.action = "undo 1 t2"
    world.step(STRICT, advance=1)
    world.settle(STRICT)
    assert _outcomes(world)[-2:] == [(4, "r3", "superseded"), (5, "r1", "promoted")]
    world.state, world.lost = State(), "missing"
    world.step(STRICT, advance=10)
    world.settle(STRICT)
    assert world.state.canary is None and world.state.failed_revision == "r3", world.reasons()
