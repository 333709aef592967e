"""Fewer Service writes per step (issue #12), without a status that says
less than what is observed: a change of progress alone (pods coming up) is
written at most every few seconds, and the status rides along with a
selector write only when nothing after it can fail the decision and no
Event follows it (whoever sees the new status finds its Events)."""

from __future__ import annotations

from dataclasses import replace

from canary.model import Claim, ClaimSource, Emit, Record, ScaleTwin, SetSelector, State
from canary.reconcile import _carriable, _progress_only

STEP = State(stable="blue", canary="green", step=1, effective_weight=20.0, message="waiting 1/4")


def test_pods_coming_up_are_progress_only() -> None:
    after = replace(STEP, effective_weight=40.0, message="waiting 2/4", fast_checked=3.0)
    assert _progress_only(STEP, after)


def test_a_step_ready_or_a_new_step_is_not_progress_only() -> None:
    assert not _progress_only(STEP, replace(STEP, step_ready=5.0, message="analysing"))
    assert not _progress_only(STEP, replace(STEP, step=2, message="waiting 0/8"))
    assert not _progress_only(STEP, replace(STEP, halted="Prometheus down"))


def test_the_status_rides_with_a_selector_that_ends_the_plan() -> None:
    selector = SetSelector({"app": "web"})
    claim = ClaimSource(Claim())
    assert _carriable([ScaleTwin("green", 1), selector])
    assert _carriable([selector, Record("r2", "promoted", ""), claim])


def test_not_when_an_event_or_a_cluster_write_follows() -> None:
    selector = SetSelector({"app": "web"})
    assert not _carriable([selector, Emit("Promoted", "revision r2 promoted")])
    assert not _carriable([selector, ScaleTwin("green", 0)])  # a rollback's order stays
    assert not _carriable([ScaleTwin("green", 1)])
    assert not _carriable([selector, ScaleTwin("blue", 1), SetSelector({"app": "x"})])
