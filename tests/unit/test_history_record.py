"""What goes into the revision history each cycle (Reconciler._edits, which
does no I/O), run over the idealised World: the record on-call reads must
say what happened. Each test failed on the code before its fix."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from analysis.verdicts import Verdict
from canary import history, reconcile
from canary.model import JSON, Checked, Emit, Plan, Record, State
from canary.reconcile import Caches, Edges, Reconciler, _judged
from canary.spec import RolloutSpec
from tests.unit.world import World, result, spec


class _Empty:
    """An informer with nothing in it: _edits reads only twins' templates."""

    def get(self, namespace: str, name: str) -> JSON | None:
        return None

    def items(self) -> list[JSON]:
        return []


class Recorded:
    """The World, plus the history exactly as the shell's _edits builds it."""

    def __init__(self, world: World) -> None:
        empty: Any = _Empty()
        self.world = world
        self.reconciler = Reconciler(Edges(kube=None, prometheus=None), Caches(*[empty] * 5))  # type: ignore[arg-type]
        self.records: list[JSON] = [dict(r) for r in world.records]

    def cycle(
        self, the_spec: RolloutSpec, checked: Checked | None = None, advance: float = 0.0
    ) -> Plan:
        before: State = self.world.state
        observed = self.world.observed()
        plan = self.world.step(the_spec, checked, advance=advance)
        now = self.world.now
        judged = _judged(("ns", "web"), plan, checked)
        key = (observed.namespace, observed.service)
        # As the shell reads the history at a cycle's start (gone: nothing
        # to see) and after each write of it.
        self.reconciler._saw_history(key, self.records, present=bool(self.records))
        edits = self.reconciler._edits(the_spec, before, plan, observed, judged, now, now, "test")
        for edit in edits:
            self.records = edit(self.records)
        if edits:
            self.reconciler._saw_history(key, self.records, present=True)
        return plan

    def entry(self, revision: str) -> dict[str, Any]:
        found = [r for r in self.records if r.get("revision") == revision]
        assert found, self.records
        return found[-1]


def rolling(the_spec: RolloutSpec) -> Recorded:
    world = World().adopted(the_spec)
    world.source = replace(world.source, revision="r2")
    world.settle(the_spec)
    return Recorded(world)


def test_a_history_deleted_mid_rollout_still_records_the_rollout_in_flight() -> None:
    # Before: every later check and Event of r2 was dropped (no entry to add
    # them to), and its rollback created an entry that started as it ended,
    # without the failing check that decided it.
    strict = spec(steps="25,50", failure_limit="0")
    shell = rolling(strict)
    world = shell.world
    started = world.state.rollout_started
    shell.records = []  # kubectl delete configmap web-canary-history
    shell.cycle(strict, Checked("scheduled", result(Verdict.PASS), world.now + 10), advance=10)
    for _ in range(5):
        shell.cycle(strict, advance=0.5)
    assert world.state.step == 1 and world.state.step_ready
    failing = result(Verdict.FAIL, "success-rate 50")
    shell.cycle(strict, Checked("scheduled", failing, world.now + 10), advance=10)
    shell.cycle(strict, Checked("fast", failing, world.now + 1), advance=1)
    assert world.state.canary is None
    entry = shell.entry("r2")
    steps = [(c["step"], c["verdict"]) for c in entry["checks"]]
    assert entry["outcome"] == "rolled-back" and entry["started"] == started
    assert (1, "pass") in steps and (2, "fail") in steps, steps
    reasons = [a["reason"] for a in entry["actions"]]
    assert reasons[0] == "EntryRestored" and "StepAdvanced" in reasons, reasons


def test_a_history_deleted_after_a_step_check_went_into_it_keeps_that_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Chaos seed 48: step 1's check went into the history ConfigMap (the
    # status carries only so much), `kubectl delete configmap` took it, and
    # the promoted entry had no passing check for step 1: a promotion whose
    # record on-call cannot check. The controller had read that check back.
    monkeypatch.setattr(reconcile, "CARRIED_MAX_BYTES", 0)  # each check into the history
    two = spec(steps="25,50")
    shell = rolling(two)
    world = shell.world
    shell.cycle(two, Checked("scheduled", result(Verdict.PASS), world.now + 10), advance=10)
    for _ in range(5):
        shell.cycle(two, advance=0.5)
    assert world.state.step == 1 and world.state.step_ready, world.state
    assert (1, "pass") in [(c["step"], c["verdict"]) for c in shell.entry("r2")["checks"]]
    shell.records = []  # kubectl delete configmap web-canary-history
    shell.cycle(two, advance=0.5)
    shell.cycle(two, Checked("scheduled", result(Verdict.PASS), world.now + 10), advance=10)
    for _ in range(6):
        shell.cycle(two, advance=0.5)
    assert world.state.stable_revision == "r2", world.state
    entry = shell.entry("r2")
    steps = [(c["step"], c["verdict"]) for c in entry["checks"]]
    assert entry["outcome"] == "promoted" and (1, "pass") in steps and (2, "pass") in steps, steps
    [restored] = [a for a in entry["actions"] if a["reason"] == "EntryRestored"]
    assert "put back" in restored["message"], restored


def test_the_events_ending_one_rollout_are_recorded_on_it_not_on_the_undo_that_follows() -> None:
    one = spec(steps="50")
    shell = rolling(one)
    world = shell.world
    shell.cycle(one, Checked("scheduled", result(Verdict.PASS), world.now + 10), advance=10)
    for _ in range(6):
        shell.cycle(one, advance=0.5)
    assert world.state.stable_revision == "r2"
    world.source = replace(world.source, revision="r3")
    for _ in range(6):
        shell.cycle(one, advance=0.5)
    assert world.state.canary_revision == "r3"
    number = next(int(r["number"]) for r in shell.records if r["revision"] == "r1")
    world.revisions = {number: "r1"}
    world.action = f"undo {number} t1"
    shell.cycle(one, advance=1)
    assert world.state.canary_revision == "r1"
    on_r3 = [a["reason"] for a in shell.entry("r3")["actions"]]
    on_r1 = [a["reason"] for a in shell.entry("r1")["actions"]]
    assert "RolledBack" in on_r3 and "RolledBack" not in on_r1, (on_r3, on_r1)
    assert "RolloutStarted" in on_r1 and "UndoRequested" in on_r1, on_r1


def test_each_event_belongs_to_the_record_that_follows_it_else_to_the_canary() -> None:
    plan = Plan(
        (
            Emit("RolloutCancelled", "a"),
            Record("r3", "superseded", "x"),
            Emit("RolloutStarted", "b"),
            Record("r1", "progressing", "y"),
            Emit("StepReady", "c"),
        ),
        State(canary="green", canary_revision="r1"),
        None,
    )
    got = [(r, e.reason) for r, e in history.events_by_revision(State(canary_revision="r3"), plan)]
    assert got == [("r3", "RolloutCancelled"), ("r1", "RolloutStarted"), ("r1", "StepReady")]


def test_an_event_handed_in_twice_is_recorded_once() -> None:
    # A cycle whose history write landed, then failed (a timeout after the
    # server applied it), hands the same Events to its retry.
    records = history.apply_record([], Record("r2", "progressing", "x"), World().source, 1.0, 10)
    for _ in range(2):
        records = history.add_event(records, "r2", 5.0, "StepAdvanced", "m", 5.1)
    assert [a["reason"] for a in records[-1]["actions"]] == ["StepAdvanced"]


def test_two_events_of_one_reason_in_one_cycle_are_both_recorded() -> None:
    # Both twins edited by hand at once: two TwinRestored in one decision.
    records = history.apply_record([], Record("r2", "progressing", "x"), World().source, 1.0, 10)
    records = history.add_event(records, "r2", 5.0, "TwinRestored", "stable twin", 5.1)
    records = history.add_event(records, "r2", 5.0, "TwinRestored", "canary twin", 5.1)
    assert [a["message"] for a in records[-1]["actions"]] == ["stable twin", "canary twin"]


def test_a_kept_entry_is_put_back_only_for_the_rollout_in_flight() -> None:
    reconciler = Recorded(World()).reconciler
    key = ("ns", "web")
    progressing = {"number": 4, "revision": "r2", "outcome": "progressing", "checks": [{}]}
    reconciler._saw_history(key, [progressing], present=True)
    reconciler._saw_history(key, [], present=False)  # deleted: what it lost is kept
    assert reconciler._in_flight[key] is progressing
    # The rollout ended (rolled back): forgotten, so a retry of r2 whose
    # history is then deleted never gets the failed attempt's checks.
    reconciler._saw_history(key, [{**progressing, "outcome": "rolled-back"}], present=True)
    assert key not in reconciler._in_flight
    source = World().source
    for kept in (
        {**progressing, "revision": "r3"},
        {**progressing, "outcome": "rolled-back", "ended": 1.0},
    ):
        [entry] = history.ensure_entry([], "r2", source, 1.0, 2.0, 10, kept=kept)
        assert entry["checks"] == [] and entry["number"] == 1, entry
    [entry] = history.ensure_entry([], "r2", source, 1.0, 2.0, 10, kept=progressing)
    assert entry["number"] == 4 and entry["checks"] == [{}], entry
