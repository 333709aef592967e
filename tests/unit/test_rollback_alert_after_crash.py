"""CanaryRolledBack after the leader that rolled back dies before its next
scrape. The rollback is counted on canary_rollouts_total by the process that
recorded it; killed before Prometheus scraped it (an OOM kill, a node lost,
a second after the write), no scrape ever showed it, and the next leader
finds the rollback in the history and records (so counts) nothing: no
series carried it and no one was paged. When each rollout ended is now
exported from the history by whichever process reconciles the Service."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from analysis.verdicts import Verdict
from canary import history
from canary.model import Record
from canary.reconcile import Edges, Reconciler
from tests.unit.test_oncall_bad_night import CANARY, serving_canary
from tests.unit.test_operating_bad_day import _promtool_case
from tests.unit.test_preview_refused import past_the_deadline
from tests.unit.world import result


def _ended(reconciler: Reconciler, outcome: str) -> float | None:
    return reconciler.metrics.registry.get_sample_value(
        "canary_rollout_ended_timestamp_seconds",
        {"namespace": "shop", "service": "web", "outcome": outcome},
    )


def _exported(reconciler: Reconciler) -> str:
    return generate_latest(reconciler.metrics.registry).decode()


def test_a_new_process_exports_a_rollback_it_finds_in_the_history(tmp_path: Path) -> None:
    world = serving_canary()
    for _ in range(CANARY.failure_limit + 3):
        world.step(CANARY, result(Verdict.FAIL), advance=10)
        if world.state.canary is None:
            break
    at = world.now
    assert history.outcomes(world.records)[world.source.revision] == "rolled-back"
    # The next leader: a fresh process whose first cycle finds the rollback
    # recorded, and so records nothing more (its counter stays at 0).
    later = world.step(CANARY, advance=5)
    assert not any(isinstance(a, Record) for a in later.actions)
    fresh = Reconciler(Edges(kube=None, prometheus=None), None)  # type: ignore[arg-type]
    fresh._report("shop", "web", CANARY, world.state, later, None)
    fresh._export_endings(("shop", "web"), world.observed(), later, world.now)
    assert _ended(fresh, "rolled-back") == at
    assert (
        fresh.metrics.registry.get_sample_value(
            "canary_rollouts_total",
            {"namespace": "shop", "service": "web", "outcome": "rolled-back"},
        )
        == 0.0
    )
    _promtool_case(tmp_path, "killed before its next scrape")


def test_the_process_that_rolls_back_exports_it_at_once() -> None:
    world = serving_canary()
    reconciler = Reconciler(Edges(kube=None, prometheus=None), None)  # type: ignore[arg-type]
    for _ in range(CANARY.failure_limit + 3):
        observed = world.observed()  # what the cycle read, before its decision
        plan = world.step(CANARY, result(Verdict.FAIL), advance=10)
        reconciler._export_endings(("shop", "web"), observed, plan, world.now)
        if world.state.canary is None:
            break
    assert history.outcomes(world.records)[world.source.revision] == "rolled-back"
    assert _ended(reconciler, "rolled-back") == world.now


def test_the_newest_ending_of_each_outcome_in_prometheus_clock() -> None:
    newest = history.endings(
        {"r1": "promoted", "r2": "rolled-back", "r3": "promoted", "r4": "progressing"},
        {"r1": 100.0, "r2": 200.0, "r3": 300.0, "r4": 0.0},
    )
    assert newest == {"promoted": 300.0, "rolled-back": 200.0}
    reconciler = Reconciler(Edges(kube=None, prometheus=None), None)  # type: ignore[arg-type]
    reconciler.metrics._offset = lambda: 7.0
    reconciler.metrics.endings("shop", "web", newest)
    assert _ended(reconciler, "rolled-back") == 207.0
    reconciler.metrics.forget("shop", "web")
    assert "canary_rollout_ended_timestamp_seconds{" not in _exported(reconciler)


def test_only_rollouts_that_ended_are_exported_each_at_its_newest() -> None:
    # In any order of the history's revisions; an adoption, a rollout in
    # flight (an earlier entry of its revision ended) and an end with no
    # time (a damaged entry) export nothing: a 1970 timestamp read as the
    # newest rollback of all.
    newest = history.endings(
        {"r3": "promoted", "r1": "promoted", "r0": "adopted", "r4": "progressing"},
        {"r3": 300.0, "r1": 100.0, "r0": 50.0, "r4": 400.0},
    )
    assert newest == {"promoted": 300.0}
    assert history.endings({"r2": "rolled-back"}, {}) == {}


def test_a_cycle_that_starts_a_rollout_exports_no_ending() -> None:
    world = serving_canary()
    reconciler = Reconciler(Edges(kube=None, prometheus=None), None)  # type: ignore[arg-type]
    world.source = replace(world.source, revision="r9")
    observed = world.observed()
    plan = world.step(CANARY, advance=10)
    assert any(isinstance(a, Record) and a.outcome == "progressing" for a in plan.actions)
    reconciler._export_endings(("shop", "web"), observed, plan, world.now)
    assert _ended(reconciler, "progressing") is None
    assert _ended(reconciler, "adopted") is None


def test_the_reconcile_cycle_itself_exports_the_rollback(monkeypatch: Any) -> None:
    # Through the real reconciler (a blue-green release whose preview is
    # refused, rolled back at its deadline): the cycle that rolls back
    # exports it, with no one calling _export_endings by hand.
    shell = past_the_deadline(monkeypatch)
    assert shell.status().get("failed_revision"), shell.status()
    ended = shell.reconciler.metrics.registry.get_sample_value(
        "canary_rollout_ended_timestamp_seconds",
        {"namespace": "ns", "service": "web", "outcome": "rolled-back"},
    )
    assert ended is not None and ended > 0
