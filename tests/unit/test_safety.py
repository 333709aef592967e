"""decide() on a bad day: lost status, a second Service, a deleted source,
a deleted twin, a GitOps re-apply, a Prometheus outage, a hand-back after an
abort. Each scenario is one an SRE would try; none needs a cluster."""

from __future__ import annotations

from dataclasses import replace

import pytest

from analysis.verdicts import Verdict
from canary import handback
from canary.decide import phase
from canary.model import (
    ApplyTwin,
    Checked,
    Claim,
    ClaimSource,
    DeleteTwins,
    Emit,
    GateSource,
    Phase,
    RestoreSource,
    ScaleSource,
    ScaleTwin,
    SetSelector,
    Source,
    State,
    Twin,
)
from canary.schedule import Due, analysis_due
from canary.spec import SERVICE_LABEL, TWIN_LABEL, SpecError
from tests.unit.world import World, result, spec

CANARY = spec(steps="25,50")


def release(world: World, revision: str = "r2") -> None:
    world.source = replace(world.source, revision=revision)


def serving_canary() -> World:
    world = World().adopted(CANARY)
    release(world)
    world.settle(CANARY)
    assert world.state.canary == "green" and world.state.step_ready
    return world


def only_events(plan_actions: tuple[object, ...]) -> bool:
    return all(isinstance(a, Emit) for a in plan_actions)


# -- a lost or corrupt status -------------------------------------------------------


def test_a_lost_status_is_rebuilt_from_the_twins_never_adopting_at_zero() -> None:
    world = World().adopted(CANARY)
    assert world.source.replicas == 0  # we scaled it down
    world.state = State()
    world.lost = "missing"
    plan = world.step(CANARY)
    assert world.state.adopted and world.state.stable == "blue"
    assert world.state.replicas == 3 and world.twins["blue"].replicas == 3
    assert world.selector == {"app": "web", TWIN_LABEL: "blue"}
    assert not any(isinstance(a, ScaleTwin) and a.replicas == 0 for a in plan.actions)
    rebuilt = [e for e in world.events if e.reason == "StateRebuilt"]
    assert rebuilt and rebuilt[0].warning and "named by the Service selector" in rebuilt[0].message


def test_a_lost_status_mid_rollout_keeps_the_stable_twin_and_restarts_the_analysis() -> None:
    world = serving_canary()
    world.step(CANARY, result(Verdict.PASS), advance=10)
    world.state = State()
    world.lost = "not valid JSON"
    world.step(CANARY)
    state = world.state
    assert state.stable == "blue" and state.stable_revision == "r1"
    assert state.canary == "green" and state.step == 0  # analysed again from step 1
    assert world.twins["blue"].replicas == 3


def test_a_lost_status_with_the_selector_reset_uses_the_claim_on_the_source() -> None:
    world = serving_canary()
    world.step(CANARY, result(Verdict.PASS), advance=10)
    world.settle(CANARY)
    world.step(CANARY, result(Verdict.PASS), advance=10)  # promoted: green is stable
    world.settle(CANARY)
    assert world.state.stable == "green" and world.source.claim.stable_revision == "r2"
    world.state = State()
    world.lost = "missing"
    world.selector = {"app": "web"}  # the Service was recreated from its manifest
    world.step(CANARY)
    assert world.state.stable == "green" and world.selector[TWIN_LABEL] == "green"


def test_a_lost_status_keeps_a_rolled_back_revision_out() -> None:
    strict = spec(steps="50", failure_limit="0")
    world = World().adopted(strict)
    release(world)
    world.settle(strict)
    world.fail(strict)
    assert world.state.failed_revision == "r2"
    world.state = State()
    world.lost = "missing"
    world.revisions = {}
    plan = world.step(strict, advance=1)
    # Without the history the controller cannot know r2 failed: it is analysed
    # again from the first step, never promoted without a check.
    assert world.state.stable == "blue"
    assert all(
        not (isinstance(a, SetSelector) and a.selector.get(TWIN_LABEL) == "green")
        for a in plan.actions
    )


# -- two Services, one Deployment -------------------------------------------------------


def test_a_second_service_for_a_claimed_deployment_writes_nothing() -> None:
    world = World()
    world.source = replace(world.source, claim=Claim("web2", 3, "r1"))
    plan = world.step(CANARY)
    assert only_events(plan.actions)
    assert world.reasons() == ["Conflict"] and world.events[0].warning
    assert "web2" in world.events[0].message
    assert phase(CANARY, world.state) is Phase.CONFLICT
    assert world.step(CANARY).actions == ()  # said once


def test_twins_labelled_for_another_service_are_a_conflict_too() -> None:
    world = World().adopted(CANARY)
    world.twins["blue"] = replace(world.twins["blue"], service="other")
    plan = world.step(CANARY)
    assert only_events(plan.actions) and "other" in world.events[-1].message


# -- the team's Deployment deleted, recreated -------------------------------------------


def test_a_deleted_source_never_stops_the_stable_twin() -> None:
    world = serving_canary()
    world.source = Source()
    world.step(CANARY)
    assert world.twins["blue"].replicas == 3
    assert world.selector == {"app": "web", TWIN_LABEL: "blue"}
    assert world.twins["green"].replicas == 0  # the canary in flight is taken out
    assert phase(CANARY, world.state) is Phase.WAITING
    assert "SourceMissing" in world.reasons()
    assert "keeps serving" in world.state.message


def test_a_recreated_source_is_taken_back_without_a_gap() -> None:
    world = World().adopted(CANARY)
    world.source = Source()
    world.step(CANARY)
    world.source = replace(World().source, replicas=3)  # re-applied at full size
    world.events.clear()
    plan = world.step(CANARY)
    assert ScaleSource(0) in plan.actions
    assert world.selector == {"app": "web", TWIN_LABEL: "blue"}
    assert world.twins["blue"].replicas == 3
    assert "SourceFound" in world.reasons()
    assert world.source.claim.service == "web"


# -- twins deleted or emptied by hand ------------------------------------------------


def test_a_deleted_stable_twin_is_recreated_and_reported_degraded() -> None:
    world = World().adopted(CANARY)
    del world.twins["blue"]
    world.ready = False
    plan = world.step(CANARY)
    assert ApplyTwin("blue", "r1", 3) in plan.actions
    assert phase(CANARY, world.state) is Phase.DEGRADED
    assert "Degraded" in world.reasons()
    world.ready = True
    world.step(CANARY)
    assert phase(CANARY, world.state) is Phase.HEALTHY
    assert world.reasons()[-1] == "Recovered"


def test_a_service_with_no_ready_endpoint_is_degraded_never_healthy() -> None:
    world = World().adopted(CANARY)
    world.ready = False
    world.step(CANARY)
    assert phase(CANARY, world.state) is Phase.DEGRADED
    assert "no ready endpoint" in world.state.degraded


# -- GitOps and selectors ---------------------------------------------------------------


def test_a_selector_reset_by_gitops_is_put_back_first_naming_who() -> None:
    world = World().adopted(CANARY)
    world.selector = {"app": "web"}
    world.source = replace(world.source, replicas=3)  # the same sync re-scaled the source
    plan = world.step(CANARY)
    assert plan.actions[0] == SetSelector({"app": "web", TWIN_LABEL: "blue"})
    restored = next(e for e in world.events if e.reason == "SelectorRestored")
    assert "gitops" in restored.message and restored.warning


def test_adoption_never_points_the_service_at_pods_it_cannot_select() -> None:
    world = World()
    world.source = replace(world.source, pod_labels={"app": "web-v2"})
    plan = world.step(CANARY)
    assert only_events(plan.actions) and world.reasons() == ["SelectorMismatch"]
    assert world.selector == {"app": "web"}
    assert world.step(CANARY).actions == ()


def test_repeated_source_rescales_make_one_event_with_a_count() -> None:
    world = World().adopted(CANARY)
    for _ in range(5):
        world.source = replace(world.source, replicas=3)
        world.step(CANARY, advance=30)
    assert world.reasons().count("SourceScaled") == 1
    world.source = replace(world.source, replicas=3)
    world.step(CANARY, advance=600)
    scaled = [e for e in world.events if e.reason == "SourceScaled"]
    assert len(scaled) == 2 and "5 times" in scaled[1].message


def test_a_managed_source_is_gated_once_at_zero_and_stays_gated() -> None:
    world = World()
    world.settle(CANARY, cycles=1)
    assert not world.source.gated  # never while its pods serve
    world.adopted(CANARY)
    assert world.source.replicas == 0 and world.source.gated
    assert world.step(CANARY).actions == ()  # gated: nothing more to write


def test_a_rescaled_source_is_scaled_down_before_its_lost_gate_is_put_back() -> None:
    world = World().adopted(CANARY)
    # `kubectl replace` of the Deployment: full size, and our gate gone.
    world.source = replace(world.source, replicas=3, gated=False)
    plan = world.step(CANARY)
    writes = [a for a in plan.actions if not isinstance(a, Emit)]
    assert writes[:2] == [ScaleSource(0), GateSource(True)]
    # A re-apply that keeps the gate (apply leaves fields it does not name):
    world.source = replace(world.source, replicas=3)
    plan = world.step(CANARY, advance=30)
    assert ScaleSource(0) in plan.actions and GateSource(True) not in plan.actions


def test_a_hand_back_removes_the_gate_before_it_scales_the_source_up() -> None:
    world = World().adopted(CANARY)
    plan = world.step(None)
    writes = [a for a in plan.actions if isinstance(a, GateSource | ScaleSource)]
    assert writes == [GateSource(False), ScaleSource(3)]
    for _ in range(3):
        world.step(None)
    assert world.released and not world.source.gated


def test_an_orphan_without_twins_leaves_the_source_ungated() -> None:
    world = World().adopted(CANARY)
    world.twins = {}
    plan = handback.orphan(replace(world.observed(), selector={}), missing_for=60.0)
    assert GateSource(False) in plan.actions and plan.release


# -- Prometheus outages -------------------------------------------------------------------


def test_a_rollout_halted_only_by_query_errors_resumes_by_itself() -> None:
    world = serving_canary()
    for _ in range(CANARY.analysis.error_limit + 1):
        world.step(CANARY, result(Verdict.ERROR, "Prometheus unavailable"), advance=10)
    assert phase(CANARY, world.state) is Phase.HALTED and world.state.halt_kind == "errors"
    due = analysis_due(CANARY, world.state, world.now + 10, 1.0)
    assert due is not None and due.kind == "probe"
    world.step(CANARY, Checked("probe", result(Verdict.ERROR), world.now + 10), advance=10)
    assert phase(CANARY, world.state) is Phase.HALTED
    world.step(CANARY, Checked("probe", result(Verdict.PASS), world.now + 10), advance=10)
    assert phase(CANARY, world.state) is Phase.PROGRESSING
    assert world.state.window_start == world.now and world.state.step == 0
    assert "RolloutResumed" in world.reasons()


def test_a_no_data_halt_still_waits_for_a_person() -> None:
    world = serving_canary()
    for _ in range(CANARY.analysis.no_data_limit + 1):
        world.step(CANARY, result(Verdict.NO_DATA), advance=10)
    assert world.state.halt_kind == "no-data"
    # Only failure-only fast looks go on (test_standing_still): no check that
    # could pass, and a passing look resumes nothing.
    due = analysis_due(CANARY, world.state, world.now + 100, 1.0)
    assert due is not None and due.kind == "fast"
    world.step(CANARY, Checked("fast", result(Verdict.PASS), world.now + 100), advance=100)
    assert world.state.halt_kind == "no-data" and world.state.step == 0


# -- judging only fresh data, and fast ----------------------------------------------------


def test_a_step_younger_than_two_scrapes_waits_instead_of_reaching_back() -> None:
    world = serving_canary()
    ready = world.state.step_ready
    assert analysis_due(CANARY, world.state, ready + 10, 15.0) is None  # interval, not 2 scrapes
    due = analysis_due(CANARY, world.state, ready + 30, 15.0)
    assert due is not None and due.start == ready


def test_one_bad_fast_check_is_not_a_rollback_two_in_a_row_count_as_a_failure() -> None:
    strict = spec(steps="25,50", failure_limit="0")
    world = World().adopted(strict)
    release(world)
    world.settle(strict)
    at = world.state.step_ready + 3
    world.step(strict, Checked("fast", result(Verdict.FAIL), at), advance=3)
    assert world.state.canary == "green" and world.state.failed == 0
    world.step(strict, Checked("fast", result(Verdict.PASS), at + 1), advance=1)
    assert world.state.fast_failed == 0.0  # the blip is over
    world.step(strict, Checked("fast", result(Verdict.FAIL), at + 2), advance=1)
    world.step(strict, Checked("fast", result(Verdict.FAIL), at + 3), advance=1)
    assert world.state.canary is None and world.state.failed_revision == "r2"
    assert world.selector == {"app": "web", TWIN_LABEL: "blue"}


def test_fast_checks_are_due_just_after_each_scrape_lands() -> None:
    world = serving_canary()
    world.phase = 500.3  # scrapes land at .3 of every second (plus 0.15 s to be queryable)
    ready = world.state.step_ready
    first = ready + 2
    landing = first + (0.45 - first % 1) % 1  # the next .45 at or after two scrapes
    observed = world.observed()
    assert analysis_due(CANARY, world.state, landing - 0.01, 1.0, world.phase) is None
    due = analysis_due(CANARY, world.state, landing, 1.0, world.phase)
    assert due is not None and due.kind == "fast"
    # A failing scrape, seen late (a slow wake-up): the next look is at the
    # next landing, not a whole interval after the late one.
    plan = world.step(CANARY, Checked("fast", result(Verdict.FAIL), landing + 0.12), advance=0)
    assert observed.scrape_phase == world.phase
    assert plan.requeue_after == pytest.approx(landing + 1 - world.now)


def test_a_first_step_is_fast_checked_one_scrape_after_it_serves_on_counter_totals() -> None:
    world = serving_canary()
    state = replace(world.state, canary_pods="web-green-6d9f")
    ready = state.step_ready
    due = analysis_due(CANARY, state, ready + 1, 1.0)
    assert due is not None and due.kind == "fast" and due.start == ready  # never before it
    assert due.totals
    # With landings known, the first landing of a sample taken after the
    # step began (queryable 0.15 s after its .3 timestamp) is enough.
    landing = ready + 0.151 + (0.45 - (ready + 0.151) % 1) % 1
    assert analysis_due(CANARY, state, landing - 0.01, 1.0, 500.3) is None
    first = analysis_due(CANARY, state, landing, 1.0, 500.3)
    assert first is not None and first.start == ready and first.totals
    later = analysis_due(CANARY, replace(state, fast_checked=ready + 1), ready + 2, 1.0)
    assert later is not None and not later.totals  # two scrapes: rates again
    # Not without the revision's own ReplicaSet (older pods of the twin would
    # count), not on a later step (its pods served the step before), not for
    # a custom query (it cannot be read as totals): those wait for two scrapes.
    assert analysis_due(CANARY, replace(state, canary_pods=""), ready + 1, 1.0) is None
    assert analysis_due(CANARY, replace(state, step=1), ready + 1, 1.0) is None
    custom = spec(
        steps="25,50", analysis="metrics: [{name: x, query: 'vector(1)', max: 1, fast: true}]"
    )
    assert analysis_due(custom, state, ready + 1, 1.0) is None


def _first_step_verdict(due: Due, samples: list[tuple[float, int, int]]) -> Verdict:
    """What Prometheus answers for success-rate >= 99 (min-requests 20) over
    the canary pod's cumulative (time, requests, errors) samples: totals read
    the newest sample in the window, rates the growth between the samples in it."""
    inside = [s for s in samples if due.start < s[0] <= due.end]
    if due.totals and inside:
        requests, errors = inside[-1][1], inside[-1][2]
    elif not due.totals and len(inside) >= 2:
        requests, errors = inside[-1][1] - inside[0][1], inside[-1][2] - inside[0][2]
    else:
        return Verdict.NO_DATA
    if requests < 20:
        return Verdict.NO_DATA
    return Verdict.FAIL if 100 * (requests - errors) / requests < 99 else Verdict.PASS


@pytest.mark.parametrize("offset", [0.1, 0.3, 0.6, 0.9])
@pytest.mark.parametrize("bad_scrapes", [1, 6])
def test_a_first_steps_failing_scrape_is_confirmed_only_by_a_later_scrapes_own_traffic(
    offset: float, bad_scrapes: int
) -> None:
    # Counter totals include every earlier scrape: read again, the blip of the
    # first scrape would fail the confirming look too, so one bad scrape would
    # count as two in a row (found by review: a rollback on a 3 % blip).
    strict = spec(steps="25,50", failure_limit="0")
    world = World(phase=500.3).adopted(strict)
    release(world)
    world.settle(strict)
    world.twins["green"] = replace(world.twins["green"], replica_set="web-green-6d9f")
    world.settle(strict)
    ready = world.state.step_ready
    assert world.state.canary_pods and world.state.fresh_pods
    # The canary pod is scraped at `offset` of each second; 100 requests per
    # scrape, 3 of them errors in the first `bad_scrapes` scrapes.
    first = ready - ready % 1 + offset + (1 if ready % 1 >= offset else 0)
    samples = [(first + i, 100 * (i + 1), 3 * min(i + 1, bad_scrapes)) for i in range(8)]
    looks: list[Due] = []
    now = ready
    while world.state.canary is not None and now < ready + 6:
        now += 0.01
        due = analysis_due(strict, world.state, now, 1.0, world.phase)
        if due is None or due.kind != "fast":
            continue
        looks.append(due)
        checked = Checked("fast", result(_first_step_verdict(due, samples)), due.end)
        world.step(strict, checked, advance=now - world.now)
    assert looks and looks[0].totals  # the first look does not wait for two scrapes
    if bad_scrapes == 1:
        assert world.state.canary == "green" and world.state.failed == 0
    else:
        # A failure that lasts is still rolled back within about two scrapes.
        assert world.state.canary is None and world.state.failed_revision == "r2"
        assert now - ready < 3


def test_one_scrape_seen_twice_is_not_two_failures_whatever_the_timing() -> None:
    # A scheduled check fails on the canary's newest scrape; a fast check a
    # moment later (just after the stable pods' scrape lands) can see that
    # same sample of the canary's pods, scraped at an offset of their own.
    strict = spec(steps="25,50", failure_limit="0")
    world = World(phase=500.3).adopted(strict)
    release(world)
    world.settle(strict)
    # The stable pods' scrapes are queryable at .45; the checks straddle one.
    landing = world.now + 10 + (0.45 - (world.now + 10) % 1) % 1
    world.step(
        strict, result(Verdict.FAIL, "success-rate = 80"), advance=landing - 0.05 - world.now
    )
    world.step(strict, Checked("fast", result(Verdict.FAIL), landing), advance=0.05)
    assert world.state.canary == "green" and world.state.failed == 0
    world.step(strict, Checked("fast", result(Verdict.FAIL), world.now + 1), advance=1)
    assert world.state.canary is None and world.state.failed_revision == "r2"


def test_scheduled_checks_fall_on_the_fast_checks_grid() -> None:
    world = serving_canary()
    due = world.state.step_ready + CANARY.interval
    landing = due + (0.45 - due % 1) % 1  # scrapes land at .3, queryable at .45
    early = analysis_due(CANARY, world.state, landing - 0.01, 1.0, 500.3)
    assert early is None or early.kind != "scheduled"
    found = analysis_due(CANARY, world.state, landing, 1.0, 500.3)
    assert found is not None and found.kind == "scheduled"


def test_counter_totals_only_when_no_pod_of_the_revision_served_before() -> None:
    world = World().adopted(CANARY)
    # An undo onto the idle twin while it still runs that revision's pods
    # (kept for scale-down-delay): they served before, so not fresh.
    world.twins["green"] = Twin(True, "r2", 3, ready=3, endpoints=3, service="web")
    release(world)
    world.step(CANARY)
    assert world.state.canary == "green" and not world.state.fresh_pods
    # The idle twin still has the previous revision's pods: they are not in
    # the new revision's ReplicaSet, so its pods are all new.
    world = World().adopted(CANARY)
    world.twins["green"] = Twin(True, "r0", 3, ready=3, endpoints=3, service="web")
    release(world)
    world.step(CANARY)
    assert world.state.canary == "green" and world.state.fresh_pods


def test_a_retried_step_is_not_read_as_counter_totals() -> None:
    world = serving_canary()
    world.action = "retry"
    world.step(CANARY, advance=1)
    world.action = ""
    world.settle(CANARY)
    state = replace(world.state, canary_pods="web-green-6d9f")
    assert state.step_started != state.rollout_started
    assert analysis_due(CANARY, state, state.step_ready + 1, 1.0) is None  # two scrapes, as before


def test_a_passing_fast_check_never_advances_a_step() -> None:
    world = serving_canary()
    world.step(CANARY, Checked("fast", result(Verdict.PASS), world.now + 3), advance=3)
    assert world.state.step == 0 and not world.state.checked


def test_fast_checks_pause_after_a_query_error_until_the_scheduled_check() -> None:
    world = serving_canary()
    world.step(CANARY, Checked("fast", result(Verdict.ERROR), world.now + 3), advance=3)
    due = analysis_due(CANARY, world.state, world.now + 1, 1.0)
    assert due is None
    due = analysis_due(CANARY, world.state, world.state.step_ready + 10, 1.0)
    assert due is not None and due.kind == "scheduled"


# -- the team pauses its Deployment ---------------------------------------------------------


def test_a_paused_source_holds_the_rollout_and_resuming_continues() -> None:
    world = serving_canary()
    world.source = replace(world.source, paused=True, paused_by="kubectl-rollout")
    world.step(CANARY)
    assert phase(CANARY, world.state) is Phase.PAUSED
    assert "kubectl-rollout" in world.events[-1].message
    due = analysis_due(CANARY, world.state, world.now + 100, 1.0)
    assert due is not None and due.kind == "fast"  # failure-only looks (test_standing_still)
    world.source = replace(world.source, paused=False)
    world.step(CANARY, advance=5)
    assert phase(CANARY, world.state) is Phase.PROGRESSING
    assert world.reasons()[-1] == "RolloutResumed" or "RolloutResumed" in world.reasons()


def test_a_new_revision_on_a_paused_source_waits() -> None:
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2", paused=True)
    world.step(CANARY)
    assert world.state.canary is None and "green" not in world.twins


# -- handing back --------------------------------------------------------------------------


def test_release_after_an_abort_hands_back_the_serving_revision_not_the_aborted_one() -> None:
    world = serving_canary()
    world.action = "abort"
    world.step(CANARY)
    assert world.state.failed_revision == "r2"
    world.events.clear()
    plan = world.step(None)
    assert RestoreSource("blue") in plan.actions
    restored = next(e for e in world.events if e.reason == "SourceRestored")
    assert restored.warning and "r2" in restored.message
    world.step(None)  # now the source runs blue's template: scale it up
    assert world.source.replicas == 3
    world.step(None)
    assert world.released and world.twins == {}
    assert world.selector == {"app": "web"}


def test_release_mid_rollout_takes_the_canary_out_first() -> None:
    world = serving_canary()
    plan = world.step(None)
    assert plan.actions[0] == SetSelector({"app": "web", TWIN_LABEL: "blue"})
    assert ScaleTwin("green", 0) in plan.actions


def test_an_orphan_is_handed_back_only_after_the_grace_period() -> None:
    world = World().adopted(CANARY)
    observed = replace(world.observed(), selector={})
    plan = handback.orphan(observed, missing_for=1.0)
    assert plan.actions == () and plan.requeue_after == handback.ORPHAN_GRACE_S - 1.0


def test_an_orphan_hand_back_scales_the_source_before_removing_the_twins() -> None:
    world = serving_canary()
    world.selector = {}  # the Service is gone
    observed = world.observed()
    plan = handback.orphan(observed, missing_for=60.0)
    assert ScaleTwin("green", 0) in plan.actions  # unanalysed pods stop first
    assert RestoreSource("blue") in plan.actions  # the source held r2, never analysed
    assert not any(isinstance(a, DeleteTwins) for a in plan.actions)
    source = replace(world.source, revision="r1", replicas=3, ready=3, gated=False)
    world.source = source
    plan = handback.orphan(replace(world.observed(), selector={}), missing_for=61.0)
    assert any(isinstance(a, DeleteTwins) for a in plan.actions) and plan.release


def test_claim_records_size_and_stable_revision_on_the_source() -> None:
    world = World().adopted(CANARY)
    assert world.source.claim == Claim("web", 3, "r1")
    world.source = replace(world.source, claim=Claim())
    plan = world.step(CANARY)
    assert ClaimSource(Claim("web", 3, "r1")) in plan.actions


def test_both_twin_keys_in_a_selector_are_ours() -> None:
    assert SERVICE_LABEL != TWIN_LABEL


def test_a_blip_seen_by_a_fast_check_and_then_a_scheduled_one_is_still_not_counted() -> None:
    strict = spec(steps="25,50", failure_limit="0")
    world = World().adopted(strict)
    release(world)
    world.settle(strict)
    ready = world.state.step_ready
    world.step(strict, Checked("fast", result(Verdict.FAIL), ready + 9.5), advance=9.5)
    world.step(strict, result(Verdict.FAIL), advance=0.5)  # the whole window still fails
    assert world.state.canary == "green" and world.state.failed == 0
    world.step(strict, Checked("fast", result(Verdict.PASS), world.now + 1), advance=1)
    assert world.state.canary == "green" and world.state.failed == 0


def test_a_failure_the_newest_scrape_cannot_judge_for_lack_of_traffic_still_counts() -> None:
    strict = spec(steps="25,50", failure_limit="0")
    world = World().adopted(strict)
    release(world)
    world.settle(strict)
    world.step(strict, result(Verdict.FAIL, "success-rate = 50"), advance=10)
    world.step(strict, Checked("fast", result(Verdict.NO_DATA), world.now + 1), advance=1)
    assert world.state.canary is None and world.state.failed_revision == "r2"
    assert "success-rate = 50" in world.events[-1].message


def test_a_failing_custom_metric_counts_without_waiting_for_a_fast_check() -> None:
    custom = spec(
        steps="25,50",
        failure_limit="0",
        analysis="metrics: [{name: queue, query: 'sum(q)', max: 1}]",
    )
    world = World().adopted(custom)
    release(world)
    world.settle(custom)
    failing = replace(
        result(Verdict.FAIL),
        measurements=(replace(result(Verdict.FAIL).measurements[0], metric="queue"),),
    )
    world.step(custom, failing, advance=10)
    assert world.state.canary is None


def test_twin_names_stay_short_enough_for_pod_names_to_hold_the_replicaset() -> None:
    from canary.twins import MAX_TWIN_NAME, pods_regex, twin_name

    long = "a" * 52 + "-frontend-x"
    for color in ("blue", "green"):
        name = twin_name(long, color)
        assert len(name) <= MAX_TWIN_NAME and name.endswith(f"-{color}")
        # <twin>-<hash of up to 10>-: within the 58 characters kept in a pod name
        assert len(f"{name}-0123456789-") <= 58
    assert twin_name(long, "blue") != twin_name(long + "y", "blue")
    assert twin_name("web", "blue") == "web-blue"
    assert pods_regex("web-blue-5d8f") == "web-blue-5d8f-[a-z0-9]+"


def test_a_rollout_halted_on_errors_comes_back_to_ask_prometheus() -> None:
    quick = spec(steps="50", analysis="error-limit: 0")
    world = World().adopted(quick)
    release(world)
    world.settle(quick)
    plan = world.step(quick, result(Verdict.ERROR, "Prometheus unavailable"), advance=10)
    assert world.state.halt_kind == "errors" and plan.requeue_after == quick.interval


def test_a_hand_edited_stable_twin_is_put_back_and_said_so() -> None:
    world = World().adopted(CANARY)
    world.twins["blue"] = replace(world.twins["blue"], edited_by="kubectl-edit")
    plan = world.step(CANARY)
    assert ApplyTwin("blue", "r1", 3, put_back=True) in plan.actions
    restored = next(e for e in world.events if e.reason == "TwinRestored")
    assert restored.warning and "kubectl-edit" in restored.message


def test_a_hand_edited_canary_is_put_back_and_its_step_judged_again() -> None:
    world = serving_canary()
    world.twins["green"] = replace(world.twins["green"], edited_by="kubectl-edit")
    plan = world.step(CANARY, result(Verdict.PASS), advance=10)
    assert any(isinstance(a, ApplyTwin) and a.color == "green" for a in plan.actions)
    assert world.state.step == 0  # the passing result was not for this revision's pods
    assert "TwinRestored" in world.reasons()


def test_a_status_lost_mid_rollout_while_the_annotations_are_invalid_takes_the_canary_out() -> None:
    """Found by the random-operations test: the status lost mid-step is
    rebuilt with no rollout (the canary "treated as not analysed"), and with
    annotations that cannot be read no rollout starts again to analyse it.
    Before, the Service kept selecting both twins: the canary served its
    step's share, unanalysed, until the annotations were fixed."""
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    assert world.state.canary == "green" and TWIN_LABEL not in world.selector
    invalid = SpecError("canary.io/interval", "'30x' is not a duration")
    world.step(invalid, advance=1)
    assert TWIN_LABEL not in world.selector  # a rollout known: frozen as it is
    world.state, world.lost = State(), "missing"
    plan = world.step(invalid, advance=1)
    assert SetSelector({"app": "web", TWIN_LABEL: "blue"}) in plan.actions, plan.actions
    world.twins["blue"] = replace(world.twins["blue"], replicas=0)  # none of its pods ready
    world.selector = {"app": "web", SERVICE_LABEL: "web"}
    world.state, world.lost = State(), "missing"
    plan = world.step(invalid, advance=1)
    assert not [a for a in plan.actions if isinstance(a, SetSelector)], plan.actions


def test_a_status_lost_in_the_abort_window_says_the_old_twin_served() -> None:
    """The rebuild called the old twin of a promotion's abort window "not
    analysed", as if a release were in flight: it is the revision that
    served until the promotion (found by review)."""
    with_delay = spec(steps="25,50", scale_down_delay="60s")
    world = World().adopted(with_delay)
    world.source = replace(world.source, revision="r2")
    world.settle(with_delay)
    for _ in range(6):
        if world.state.stable_revision == "r2":
            break
        world.step(with_delay, result(Verdict.PASS), advance=31)
        world.settle(with_delay)
    assert world.state.stable_revision == "r2" and world.state.scale_down == "blue", world.state
    world.state, world.lost = State(), "missing"
    world.step(with_delay, advance=1)
    rebuilt = [e.message for e in world.events if e.reason == "StateRebuilt"][-1]
    assert "revision r1, which served before the last promotion" in rebuilt, rebuilt
    assert "not analysed" not in rebuilt
