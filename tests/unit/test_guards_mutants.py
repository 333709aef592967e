"""Directed tests for this evening's guards outside max-restarts (a history
entry put back whole, `canary resume` refused, a preview retired, the chaos
checker's restored entries, a start's status write held) that a mutation
pass showed no other test held."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from analysis.verdicts import Verdict
from canary import history, manual, oncall
from canary.kube import NotFound
from canary.model import JSON, Restarted, State
from canary.reconcile import Reconciler
from canary.status_writes import holdable
from chaos.checker import promotions
from tests.unit.objects import cached_actor
from tests.unit.test_chaos_checker import check, promoted
from tests.unit.test_dashboard_bad_day import IN_FLIGHT, FakeKube, svc
from tests.unit.test_history_record import Recorded
from tests.unit.world import World, result, spec

KEY = ("ns", "web")
R2 = {"number": 4, "revision": "r2", "outcome": "progressing", "checks": [{"step": 1}]}


def _reconciler() -> Reconciler:
    return Recorded(World()).reconciler


def test_an_entry_put_back_under_a_number_taken_since_goes_above_the_others() -> None:
    # The history deleted, then rewritten by hand from an export with a
    # later entry #5: the entry put back must not go under it, out of order.
    edited = [{"number": 5, "revision": "r1", "outcome": "promoted", "ended": 1.0}]
    records = history.ensure_entry(edited, "r2", World().source, 1.0, 2.0, 10, kept=R2)
    assert [(r["number"], r["revision"]) for r in records] == [(5, "r1"), (6, "r2")], records


def test_an_entry_edited_by_hand_under_its_number_is_replaced_not_doubled() -> None:
    # Its revision mistyped by hand: the same entry (#4), no longer found
    # by revision, is replaced by the copy kept, not kept beside it.
    typo = {**R2, "revision": "r2x", "checks": []}
    records = history.ensure_entry(
        [{"number": 3, "revision": "r1", "outcome": "promoted", "ended": 1.0}, typo],
        "r2",
        World().source,
        1.0,
        2.0,
        10,
        kept=R2,
    )
    assert [(r["number"], r["revision"]) for r in records] == [(3, "r1"), (4, "r2")], records
    assert records[-1]["checks"] == [{"step": 1}]


def test_an_entry_put_back_keeps_the_history_within_its_limit() -> None:
    old = [
        {"number": n, "revision": f"old{n}", "outcome": "rolled-back", "ended": 1.0}
        for n in range(1, 4)
    ]
    kept = {**R2, "number": 9}
    records = history.ensure_entry(old, "r2", World().source, 1.0, 2.0, 3, kept=kept)
    assert len(records) == 3 and records[-1]["revision"] == "r2", records


def test_a_corrupt_history_read_keeps_the_entry_in_flight_it_can_put_back() -> None:
    # Damaged by hand (not JSON any more): it reads as empty and is set
    # aside, and the entry it held is what the controller puts back.
    reconciler = _reconciler()
    reconciler._saw_history(KEY, [R2], present=True)
    corrupt = {"metadata": {"name": "web-canary-history"}, "data": {history.DATA_KEY: "{oops"}}
    records, why = reconciler._read_history(KEY, corrupt)
    assert records == [] and why, why
    assert reconciler._in_flight[KEY] is R2


def test_the_entry_kept_is_the_newest_in_flight_not_an_orphan_before_it() -> None:
    reconciler = _reconciler()
    orphan = {"number": 2, "revision": "r0", "outcome": "progressing", "checks": []}
    reconciler._saw_history(KEY, [orphan, R2], present=True)
    assert reconciler._in_flight[KEY] is R2


class _Writes:
    """An Actor's history write, and nothing else."""

    namespace, name = KEY

    async def write_history(self, *_: Any, **__: Any) -> None:
        return None


def test_what_the_controller_writes_into_the_history_is_what_it_keeps() -> None:
    # The check a cycle writes into the history goes with a `kubectl delete`
    # that follows before the watch brings the write back: kept from the
    # write, it is put back; kept from the read before it, it was lost.
    reconciler = _reconciler()
    before = {**R2, "checks": []}
    reconciler._saw_history(KEY, [before], present=True)

    def add_check(records: list[JSON]) -> list[JSON]:
        return [{**r, "checks": [{"step": 1}]} for r in records]

    asyncio.run(reconciler._record(_Writes(), (add_check,), [before]))  # type: ignore[arg-type]
    assert reconciler._in_flight[KEY]["checks"] == [{"step": 1}]


def test_a_released_service_forgets_the_entry_it_kept() -> None:
    reconciler = _reconciler()
    reconciler._saw_history(KEY, [R2], present=True)
    reconciler._forget_carried(KEY)
    assert KEY not in reconciler._in_flight


def test_a_gate_being_asked_is_no_hold_on_a_resume() -> None:
    # At a gate whose first answer has not come (gate_wait, no reason): it
    # is not closed, and a resume is no more refused than ignored there.
    asking = State(canary="green", gate_wait="pre-promotion")
    assert manual.resume_holds(asking, False) == []
    closed = replace(asking, gate_reason="change freeze")
    assert manual.resume_holds(closed, False) == [
        "the pre-promotion gate is closed (change freeze): `canary promote` overrides it"
    ]


def _requested(service: dict[str, Any], verb: str) -> FakeKube:
    kube = FakeKube(service)
    asyncio.run(oncall.request(kube, "shop", "web", verb, None))  # type: ignore[arg-type]
    return kube


def test_a_pause_of_a_halted_rollout_is_written() -> None:
    # Only a resume is refused for what still holds the rollout: a pause
    # of a halted one keeps it paused once `canary retry` clears the halt.
    assert _requested(svc({**IN_FLIGHT, "phase": "Halted", "halted": "no data"}), "pause").patches


def test_a_resume_on_a_status_the_controller_rebuilds_from_invalid_is_written() -> None:
    # The status says the annotations did not parse: the controller carries
    # a resume out there (manual.while_invalid), so the CLI writes it.
    status = {**IN_FLIGHT, "phase": "Halted", "halted": "no data", "invalid": "bad steps"}
    assert _requested(svc(status), "resume").patches


def test_a_whole_entry_put_back_does_not_excuse_a_step_missing_before_its_checks() -> None:
    # Put back whole (the copy this controller last read), nothing of it was
    # lost: a step with no check is a promotion nobody verified.
    whole = {"reason": "EntryRestored", "message": "... put back from the copy ..."}
    entry = promoted(check(2, "pass"), check(3, "pass"), actions=[whole])
    assert promotions.plan(entry, steps=3)[1].problems, entry


class _Gone:
    """An API server on which the old preview was deleted meanwhile."""

    async def patch(self, path: str, *_: Any, **__: Any) -> JSON:
        raise NotFound(404, "NotFound", f"{path} not found")


def test_a_preview_retired_after_it_was_deleted_needs_nothing() -> None:
    service = {"metadata": {"name": "web", "namespace": "ns", "uid": "u1"}, "spec": {}}
    actor = cached_actor(_Gone(), {}, service)
    asyncio.run(actor.retire_preview("web-preview"))  # raises nothing: the cycle goes on


def test_a_rollout_begun_on_reused_pods_is_held_as_any_start() -> None:
    # The start's status write may wait for its step's pods as any start's:
    # the restarts its reused pods had are no reason to write it at once.
    start = State(
        stable="blue",
        canary="green",
        canary_revision="r2",
        step=0,
        restarts_before=(("web-green-7d9-abc/app", 2),),
    )
    assert holdable(State(stable="blue"), start)


def test_a_rollout_that_ends_forgets_what_its_pods_had_restarted() -> None:
    # A rollback clears what the rollout kept (ending.FRESH_ROLLOUT): the
    # status written after it says nothing of pods no rollout reuses.
    steps = spec(steps="25,50")
    world = World().adopted(steps)
    world.source = replace(world.source, revision="r2")
    world.settle(steps)
    world.state = replace(world.state, restarts_before=(("web-green-7d9-abc/app", 2),))
    crash = Restarted("web-green-7d9-abc", 5, "app")
    world.twins["green"] = replace(world.twins["green"], restarted=(crash,))
    world.step(steps, result(Verdict.PASS), advance=10)
    assert world.state.canary is None and world.state.restarts_before == (), world.state
