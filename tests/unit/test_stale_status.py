"""A decision whose status write failed (chaos soak finding 3): the cycle
that rolled back or promoted made its traffic changes and wrote the history,
then the status write failed, and later cycles read the older status that
still has the rollout in flight. The history is the fact: a recorded
outcome is never rewritten, and the older status never undoes it."""

from __future__ import annotations

from dataclasses import replace

from analysis.verdicts import Verdict
from canary import history
from canary.decide import decide, phase
from canary.model import (
    ApplyTwin,
    Checked,
    Emit,
    Phase,
    Plan,
    Record,
    ScaleTwin,
    SetSelector,
    Source,
    State,
    Twin,
)
from canary.spec import TWIN_LABEL
from tests.unit.world import World, result, source, spec

STRICT = spec(steps="25,50", failure_limit="0")


def serving_canary() -> World:
    world = World().adopted(STRICT)
    world.source = replace(world.source, revision="r2")
    world.settle(STRICT)
    assert world.state.canary == "green" and world.state.step_ready
    return world


def rolled_back_but_status_unwritten() -> tuple[World, State]:
    """r2 rolled back; the world's status is the one from before."""
    world = serving_canary()
    world.step(STRICT, result(Verdict.FAIL, "success-rate = 50"), advance=10)
    older = world.state
    world.step(STRICT, Checked("fast", result(Verdict.FAIL, "success-rate = 50"), world.now + 1), 1)
    assert world.state.canary is None and world.records[-1]["outcome"] == "rolled-back"
    assert world.selector[TWIN_LABEL] == "blue" and world.twins["green"].replicas == 0
    world.state = older  # the status write of the rollback failed
    world.events.clear()
    return world, older


def test_an_older_status_never_gives_a_rolled_back_canary_its_traffic_back() -> None:
    world, _ = rolled_back_but_status_unwritten()
    plan = world.step(STRICT, advance=1)
    assert not any(isinstance(a, Record) for a in plan.actions)
    assert not any(isinstance(a, ScaleTwin | ApplyTwin) and a.replicas > 0 for a in plan.actions)
    assert not any(isinstance(a, SetSelector) for a in plan.actions)
    assert world.state.canary is None and world.state.failed_revision == "r2"
    assert phase(STRICT, world.state) is Phase.ROLLED_BACK
    assert world.reasons() == ["StateRebuilt"]
    assert "rolled-back" in world.events[0].message
    world.events.clear()
    world.settle(STRICT)  # and r2 is not rolled out again
    assert world.state.canary is None and "RolloutStarted" not in world.reasons()


def test_a_check_that_finishes_against_the_older_status_records_nothing_again() -> None:
    world, _ = rolled_back_but_status_unwritten()
    before = [dict(r) for r in world.records]
    plan = world.step(
        STRICT, Checked("scheduled", result(Verdict.FAIL, "success-rate = 40"), world.now), 1
    )
    assert not any(isinstance(a, Record) for a in plan.actions)
    assert without_events(world.records) == without_events(before)  # its Event is news
    assert world.twins["green"].replicas == 0


def without_events(records: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in r.items() if k != "actions"} for r in records]


def test_a_promotion_whose_status_write_failed_stays_promoted() -> None:
    lenient = spec(steps="50")
    world = World().adopted(lenient)
    world.source = replace(world.source, revision="r2")
    world.settle(lenient)
    older = world.state
    world.step(lenient, result(Verdict.PASS), advance=10)
    assert world.state.stable == "green" and world.records[-1]["outcome"] == "promoted"
    world.state = older  # the status write of the promotion failed
    plan = world.step(lenient, advance=1)
    assert not any(isinstance(a, Record) for a in plan.actions)
    assert world.selector[TWIN_LABEL] == "green"
    state = world.state
    assert (state.stable, state.stable_revision, state.canary) == ("green", "r2", None)
    assert state.scale_down == "blue" and state.previous_revision == "r1"
    assert phase(lenient, state) is Phase.HEALTHY


def test_a_retried_revision_is_not_ended_by_the_outcome_of_its_earlier_attempt() -> None:
    world = serving_canary()
    world.fail(STRICT)
    world.action = "retry 1"
    world.step(STRICT, advance=1)
    world.settle(STRICT)
    assert world.state.canary_revision == "r2" and world.records[-1]["outcome"] == "progressing"
    # the earlier attempt's rolled-back entry must not end this one, even if
    # the history write of the retry was lost
    world.records = world.records[:-1]
    world.step(STRICT, advance=1)
    assert world.state.canary == "green" and world.state.canary_revision == "r2"


def test_a_recorded_outcome_is_never_rewritten_by_a_later_record() -> None:
    source = Source(True, "r2", 3, 3)
    records = history.apply_record([], Record("r2", "progressing", "started"), source, 10.0, 20)
    records = history.apply_record(records, Record("r2", "rolled-back", "bad"), source, 20.0, 20)
    for later in ("superseded", "promoted", "rolled-back", "aborted"):
        again = history.apply_record(records, Record("r2", later, "older status"), source, 30, 20)
        assert again == records, later
    retried = history.apply_record(records, Record("r2", "progressing", "retry"), source, 40, 20)
    assert [r["outcome"] for r in retried] == ["rolled-back", "progressing"]


def test_an_abort_right_after_promotion_still_marks_the_promotion_aborted() -> None:
    source = Source(True, "r2", 3, 3)
    records = history.apply_record([], Record("r2", "progressing", "started"), source, 10.0, 20)
    records = history.apply_record(records, Record("r2", "promoted", "passed"), source, 20.0, 20)
    records = history.apply_record(records, Record("r2", "aborted", "by ann"), source, 30.0, 20)
    assert [(r["outcome"], r["ended"]) for r in records] == [("aborted", 30.0)]


# -- found by the soak after the fixes above (seed 1, 30 min run on 77fca05) ----------


def test_a_rebuilt_status_records_the_serving_revision_the_history_lacks() -> None:
    """A recreated Service starts a new history: what serves is recorded."""
    world = World().adopted(STRICT)
    world.records = []
    world.state = State()
    world.lost = "missing"
    plan = world.step(STRICT)
    assert any(
        isinstance(a, Record) and (a.revision, a.outcome) == ("r1", "adopted") for a in plan.actions
    )
    assert [(r["revision"], r["outcome"]) for r in world.records] == [("r1", "adopted")]


def test_a_source_holding_the_stable_twins_own_template_is_not_rolled_out() -> None:
    """A hand-back wrote the stable twin's template (config copies and all)
    into the source: another hash, the same pods; nothing to roll out."""
    world = World().adopted(STRICT)
    world.source = replace(world.source, revision="r1-copied")
    world.restored.add("blue:r1")
    world.settle(STRICT)
    assert world.state.canary is None and "RolloutStarted" not in world.reasons()
    assert phase(STRICT, world.state) is Phase.HEALTHY


def test_a_stable_twin_edited_by_hand_is_degraded_until_put_back() -> None:
    world = World().adopted(STRICT)
    world.twins["blue"] = replace(world.twins["blue"], edited_by="kubectl-edit")
    plan = world.step(STRICT)
    assert any(isinstance(a, ApplyTwin) and a.color == "blue" for a in plan.actions)
    assert "kubectl-edit changed" in world.state.degraded


def test_a_revision_only_a_twin_runs_is_recorded_with_that_template() -> None:
    source = Source(True, "r9", 3, 3)
    running = {"spec": {"containers": [{"name": "app", "image": "web:v1"}]}}
    records = history.apply_record(
        [], Record("r1", "adopted", "rebuilt"), source, 10.0, 20, running
    )
    assert records[0]["template"] == running and records[0]["images"] == ["web:v1"]


def test_a_release_onto_an_idle_twin_that_still_runs_pods_does_not_flap_it() -> None:
    """Soak rule `write-loop` (app-08-green, seed 1 on 77fca05): one decision
    scaled the idle twin to 0 and, starting a rollout on it, straight back up
    (two writes 0.1 s apart, its pods deleted and recreated)."""
    world = World().adopted(STRICT)
    world.twins["green"] = Twin(True, "r0", 3, service="web")
    world.source = replace(world.source, revision="r2")
    plan = world.step(STRICT)
    sizes = [a for a in plan.actions if isinstance(a, ScaleTwin | ApplyTwin) and a.color == "green"]
    assert sizes == [ApplyTwin("green", "r2", 1)], sizes


def _decided_with_blue(world: World, ready: int, endpoints: int | None = None) -> Plan:
    """The decision a second later, with the blue twin observed with `ready`
    ready pods and `endpoints` (unchanged when None) in the EndpointSlices."""
    observed = world.observed()
    blue = observed.twins["blue"]
    blue = replace(blue, ready=ready, endpoints=blue.endpoints if endpoints is None else endpoints)
    twins = {**observed.twins, "blue": blue}
    return decide(STRICT, world.state, replace(observed, twins=twins), None, world.now + 1)


def test_a_stable_twin_short_of_pods_mid_rollout_is_degraded() -> None:
    """Soak rule `status` (b), app-11 at 04:18:44 (seed 1): a quota kept the
    stable twin at 2/3 pods for 36 s of a rollout, and the phase said
    Progressing; only steady phases looked at the stable twin's pods."""
    world = serving_canary()
    world.twins["blue"] = replace(world.twins["blue"], replicas=3)
    world.ready = True
    plan = _decided_with_blue(world, ready=2, endpoints=2)
    assert "2/3 pods of the blue twin (stable) ready" in plan.state.degraded
    assert phase(STRICT, plan.state) is Phase.DEGRADED and plan.state.canary == "green"


def test_bad_releases_rolled_back_in_a_row_are_not_a_write_loop() -> None:
    """Soak rule `outcomes` (b), app-07 at 05:15:22 (seed 1 on 4779e9e): four
    rollbacks of successive bad releases within a minute wrote the same
    selector (the stable twin only) at the same rollout position, so the
    write guard took them for a fight and blocked the selector for 5
    minutes; a GitOps re-apply then left every pod selected, a superseded
    bad canary's included, for 44 s."""
    from canary.reconcile import _progress
    from canary.writeguard import REPEATS, WriteGuard

    world = World().adopted(STRICT)
    guard, key, seen = WriteGuard(), ("Service", "ns", "web", "selector"), []
    for n in range(2, 2 + REPEATS + 1):
        world.source = replace(world.source, revision=f"r{n}")
        world.settle(STRICT)
        world.fail(STRICT, advance=2)
        assert world.state.canary is None and world.state.failed_revision == f"r{n}"
        seen.append(guard.wrote(key, _progress(world.state), world.now))
    assert not any(seen), "rollbacks of different releases taken for a loop"


# -- CI on 8f4a04a: the history a recreated Service read was collected after ----------


def test_the_serving_revision_is_recorded_whenever_the_history_lacks_it() -> None:
    """The history a recreated Service read belonged to the deleted one and
    the garbage collector removed it a moment later, with the stable
    revision's template: no rebuilt status this time, the record still
    comes back (and holds the template an edited twin is put back from)."""
    world = World().adopted(STRICT)
    world.records = []
    world.step(STRICT)
    assert [(r["revision"], r["outcome"]) for r in world.records] == [("r1", "adopted")]
    assert history.template_of(world.records, "r1") is not None
    world.step(STRICT)  # recorded once, not every cycle
    assert len(world.records) == 1


def test_a_run_of_rollbacks_never_trims_the_serving_revision_away() -> None:
    source = Source(True, "r1", 3, 3)
    records = history.apply_record([], Record("r1", "adopted", "first"), source, 1.0, 3)
    for n in range(2, 8):
        bad = Source(True, f"r{n}", 3, 3)
        records = history.apply_record(records, Record(f"r{n}", "progressing", ""), bad, n, 3)
        records = history.apply_record(records, Record(f"r{n}", "rolled-back", ""), bad, n, 3)
    assert [r["revision"] for r in records] == ["r1", "r6", "r7"]
    assert history.template_of(records, "r1") is not None
    one = history.apply_record(records, Record("r8", "progressing", ""), source, 9.0, 1)
    assert [r["revision"] for r in one] == ["r1", "r8"]


def test_a_twin_whose_status_lags_our_own_write_is_not_called_degraded() -> None:
    """bench.scale, 200 rollouts: right after a promotion (whose cycle scaled
    the twin it made stable), the twin's readyReplicas went unread until the
    Deployment controller observed the write, and 101 of 220 promotions
    emitted "0/1 pods of the green twin (stable) ready; users may see
    failures", then Recovered 50 ms later, while its pods served throughout.
    The pods the EndpointSlices list as ready are what serves."""
    world = World().adopted(STRICT)
    plan = _decided_with_blue(world, ready=0)  # its generation not observed yet
    assert world.observed().twins["blue"].endpoints == world.state.replicas
    assert not plan.state.degraded, plan.state.degraded
    assert "Degraded" not in [a.reason for a in plan.actions if isinstance(a, Emit)]


def test_a_rolled_back_release_stays_out_when_the_status_is_lost_while_the_deployment_is_gone() -> (
    None
):
    """r2 rolled back; the team's Deployment deleted (a `replace --force`, a
    Helm reinstall) and, meanwhile, the status lost (an old export applied).
    Rebuilt with no Deployment to read r2 from, the status kept nothing out:
    the Deployment back at r2, r2 rolled out again from its first step,
    though the history said it was rolled back (a fuzzer found it)."""
    world = serving_canary()
    world.fail(STRICT)
    assert world.records[-1]["outcome"] == "rolled-back"
    world.source = Source()
    world.step(STRICT, advance=5)
    world.state, world.lost = State(), "missing"
    world.settle(STRICT)
    world.source = source("r2")  # created again as it was
    world.settle(STRICT)
    world.step(STRICT, advance=30)
    assert world.state.canary_revision == "", world.reasons()
    assert world.state.failed_revision == "r2", world.state
    assert world.reasons().count("RolloutStarted") == 1, world.reasons()
