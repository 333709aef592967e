"""A cycle cut short between its writes: a write after the first failed
(an API error, a timeout after commit, an Event refused) or the fence fell
(the lease lost, the process killed). The retry, or the next leader, decides
again over a cluster that already carries part of the decision. A decision
that ends a rollout (a rollback, an abort, a promotion) writes its record
before its traffic moves, so the next cycle finds the outcome in the
history and only finishes it; from the older status alone it took the moved
selector for a reset to put back and gave a release judged failing its
traffic again."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from analysis.verdicts import Verdict
from canary import history
from canary.decide import decide
from canary.model import Checked, Emit, Plan, Record, ScaleTwin, SetSelector, Source, State
from canary.schedule import analysis_due
from canary.spec import TWIN_LABEL, RolloutSpec
from tests.unit.test_stale_status import STRICT, serving_canary
from tests.unit.world import World, result, source, spec


def _fail_confirmed(world: World, cut_after: type) -> None:
    world.step(STRICT, result(Verdict.FAIL, "success-rate = 50"), advance=10)
    confirm = Checked("fast", result(Verdict.FAIL, "success-rate = 50"), world.now + 1)
    world.step(STRICT, confirm, advance=1, cut_after=cut_after)


def test_a_rollback_cut_after_its_selector_stays_rolled_back() -> None:
    world = serving_canary()
    _fail_confirmed(world, SetSelector)  # the canary's scale to 0 and the Events refused
    assert world.selector.get(TWIN_LABEL) == "blue"
    assert world.twins["green"].replicas > 0
    plan = world.step(STRICT, advance=15)  # the retry, or the next leader
    assert world.selector.get(TWIN_LABEL) == "blue", (
        f"the release judged failing was given its traffic back: {plan.actions}"
    )
    world.settle(STRICT)
    assert world.twins["green"].replicas == 0
    assert world.state.canary is None and world.state.failed_revision == "r2"
    assert [r.get("outcome") for r in world.records][-1] == "rolled-back"


def test_a_rollback_cut_after_its_events_stays_rolled_back() -> None:
    world = serving_canary()
    _fail_confirmed(world, Emit)
    world.step(STRICT, advance=15)
    assert world.selector.get(TWIN_LABEL) == "blue"


def test_a_rollback_cut_mid_way_is_never_promoted_later() -> None:
    """The errors came in bursts: the checks after the cut pass. From the
    older status the release went on and was promoted (history: a clean
    promotion; Events: AnalysisFailed, RolledBack, StepAdvanced, Promoted)."""
    world = serving_canary()
    _fail_confirmed(world, ScaleTwin)
    for _ in range(30):
        due = analysis_due(STRICT, world.state, world.now + 5, world.scrape)
        checked = Checked(due.kind, result(Verdict.PASS), world.now + 5) if due else None
        world.step(STRICT, checked, advance=5)
    assert world.state.stable_revision != "r2", world.reasons()


def _promotion_cut_after(cut_after: type, the_spec: RolloutSpec | None = None) -> World:
    """A one-step rollout promoted, its promotion's cycle cut right after
    the first write of `cut_after`'s kind, then run on. The Promoted Event
    goes right before the flip (so the status rides along with the
    selector): cut after it is the flip's own write refused (a 409: the
    Service changed since the decision), or the process killed."""
    canary = the_spec or spec(steps="50")
    world = World().adopted(canary)
    world.source = replace(world.source, revision="r2")
    world.settle(canary)
    checked: object = result(Verdict.PASS)
    for _ in range(20):
        before, used = copy.deepcopy(world), checked
        plan = world.step(canary, used, advance=10)  # type: ignore[arg-type]
        checked = None
        if any(
            isinstance(a, SetSelector) and a.selector.get(TWIN_LABEL) == "green"
            for a in plan.actions
        ):
            break
    else:
        raise AssertionError("never promoted")
    world = before  # the promotion's cycle again, cut
    world.step(canary, used, 10, cut_after)  # type: ignore[arg-type]
    world.step(canary, advance=1)
    return world


def test_a_promotion_cut_after_its_selector_stays_promoted() -> None:
    """Its status rode along with the selector: promoted, the claim on the
    source re-derived by the next cycle."""
    world = _promotion_cut_after(SetSelector)
    assert "StateRebuilt" not in world.reasons()
    world.settle(spec(steps="50"))
    assert world.state.stable_revision == "r2" and world.selector.get(TWIN_LABEL) == "green"
    assert world.source.claim.stable_revision == "r2"
    assert [r.get("outcome") for r in world.records][-1] == "promoted"


def test_a_promotion_whose_flip_is_refused_is_finished_from_the_history() -> None:
    world = _promotion_cut_after(Emit)
    assert world.reasons()[-1] == "StateRebuilt"  # from the history, nothing decided again
    world.settle(spec(steps="50"))
    assert world.state.stable_revision == "r2" and world.selector.get(TWIN_LABEL) == "green"
    assert [r.get("outcome") for r in world.records][-1] == "promoted"


BG = spec(strategy="blue-green")


def test_a_blue_green_promotion_whose_flip_is_refused_flips_on_the_retry() -> None:
    """The flip's selector write refused (a 409: the Service changed since
    the decision), with `promoted` already in the history: the retry makes
    the other twin stable, which the Service has never selected. Its 0
    endpoints were taken for no pods (stable_down), and production stayed
    on the old twin for good under a false Degraded (a review found it)."""
    world = _promotion_cut_after(Emit, BG)
    for _ in range(5):
        world.step(BG, advance=30)
    assert world.state.stable_revision == "r2"
    assert world.selector.get(TWIN_LABEL) == "green", (world.selector, world.state.message)


# -- more phases cut after each of their writes ----------------------------------------


def _writes(plan: Plan) -> list[int]:
    """The positions of the plan's writes that may be cut after (not the
    records: written once, before the actions when the plan ends a rollout)."""
    seen: set[type] = set()
    positions = []
    for i, a in enumerate(plan.actions):
        if isinstance(a, Record) or (isinstance(a, Emit) and a.noted) or type(a) in seen:
            continue
        seen.add(type(a))
        positions.append(i)
    return positions


def _undo_mid_rollout() -> World:
    """r2 in flight at its first step, r1 stable; on-call asks `undo 1`."""
    world = serving_canary()
    world.revisions = {1: "r1", 2: "r2"}
    world.action = "undo 1"
    return world


def test_an_undo_to_the_serving_revision_cut_after_any_write_keeps_the_undone_one_out() -> None:
    """`undo 1` while r2 is in flight: r2 superseded and the undo's start
    (r1 again, UndoRequested) are recorded before the traffic moves. Cut
    after the selector, the retry took r2's end from the history, judged
    the undo again against r1 serving ('already rolling out or serving':
    ActionIgnored), and rolled r2, which on-call had undone, out again
    and promoted it; r1's entry stayed `progressing` for good."""
    before = _undo_mid_rollout()
    plan = decide(STRICT, before.state, before.observed(), None, before.now + 1)
    for index in _writes(plan):
        world = _undo_mid_rollout()
        cut = type(plan.actions[index]).__name__
        world.step(STRICT, None, 1, type(plan.actions[index]))
        for k in range(12):
            world.step(STRICT, result(Verdict.PASS) if k % 3 == 2 else None, advance=10)
        assert world.state.stable_revision == "r1", (cut, world.reasons())
        assert world.state.failed_revision == "r2" and world.state.undone, (cut, world.state)
        assert "ActionIgnored" not in world.reasons(), (cut, world.events)
        assert [(r["revision"], r.get("outcome")) for r in world.records][-2:] == [
            ("r2", "superseded"),
            ("r1", "promoted"),
        ], cut


def test_an_abort_after_promotion_cut_after_its_flip_then_an_old_service_applied() -> None:
    """`abort` right after r2's promotion: the flip back to blue landed and
    `aborted` is in the history, the claim on the source (r2, written after
    the record) and the status did not. Then a sync applies the Service of
    a minute before (selector on green, status: r2 promoted), which is not
    trusted: rebuilt, the claim's r2 outranked the history, which records
    it aborted. r2 was made stable, the Service put back on it, and the
    old twin, which the abort had put traffic back on, scaled to 0."""
    canary = spec(steps="50")
    world = World().adopted(canary)
    world.source = replace(world.source, revision="r2")
    world.settle(canary)
    world.step(canary, result(Verdict.PASS), advance=10)
    world.settle(canary)
    assert world.state.stable_revision == "r2" and world.twins["blue"].replicas > 0
    exported, selector = world.state, dict(world.selector)
    world.action = "abort"
    world.step(canary, advance=1, cut_after=SetSelector)
    assert world.selector.get(TWIN_LABEL) == "blue"
    assert [r.get("outcome") for r in world.records][-1] == "aborted"
    world.state, world.selector = exported, selector  # the old Service applied
    world.lost = "last written by argocd-controller, not by the controller"
    world.selector_ours = False
    for _ in range(5):
        world.step(canary, advance=10)
        world.lost, world.selector_ours = "", True
        assert world.state.stable_revision == "r1", (world.state, world.reasons())
        assert world.selector.get(TWIN_LABEL) == "blue"
        assert world.twins["blue"].replicas == 3
    assert world.source.claim.stable_revision == "r1"
    assert [r.get("outcome") for r in world.records][-1] == "aborted"


def _each_cut(build: Callable[[], World], the_spec: RolloutSpec | None) -> Iterator[World]:
    """The cycle after `build()` cut after each of its writes in turn, each
    in a world of its own."""
    before = build()
    plan = decide(the_spec, before.state, before.observed(), None, before.now + 1)
    assert _writes(plan), plan
    for index in _writes(plan):
        world = build()
        world.step(the_spec, None, 1, type(plan.actions[index]))
        yield world


def _released(the_spec: RolloutSpec) -> World:
    world = World().adopted(the_spec)
    world.source = replace(world.source, revision="r2")
    return world


def _serving_endpoints(world: World) -> None:
    observed = world.observed()
    assert observed.endpoints > 0, (world.selector, world.twins)


def test_a_start_cut_after_each_write_goes_on_to_the_same_first_step() -> None:
    """Canary and blue-green: Event, twin, preview. Passed at once."""
    for the_spec in (STRICT, BG):
        for world in _each_cut(lambda s=the_spec: _released(s), the_spec):  # type: ignore[misc]
            _serving_endpoints(world)
            world.settle(the_spec)
            _serving_endpoints(world)
            assert (world.state.canary, world.state.canary_revision, world.state.step) == (
                "green",
                "r2",
                0,
            )
            assert world.state.step_ready and world.twins["green"].revision == "r2"
            assert [r.get("outcome") for r in world.records] == ["adopted", "progressing"]


def test_a_step_advance_cut_after_each_write_never_skips_the_next_steps_check() -> None:
    """The Event, the canary's scale, the selector. Passed at once: the
    retry judges the step again or advances once; never promoted on it."""

    before = serving_canary()
    plan = decide(STRICT, before.state, before.observed(), result(Verdict.PASS), before.now + 10)
    for index in _writes(plan):
        world = serving_canary()
        world.step(STRICT, result(Verdict.PASS), 10, type(plan.actions[index]))
        for _ in range(5):
            world.step(STRICT, advance=1)
            _serving_endpoints(world)
        assert world.state.canary == "green" and world.state.stable_revision == "r1"
        assert world.state.step in (0, 1), world.state


def test_a_hand_back_cut_after_each_write_ends_with_the_source_serving() -> None:
    """`canary.io/strategy` removed mid-rollout and at rest: the selector,
    the twin's scale, the source's template put back, the gate, the scale.
    Passed at once."""
    for build in (serving_canary, lambda: World().adopted(STRICT)):
        for world in _each_cut(build, None):
            for _ in range(6):
                if world.released:
                    break  # no longer managed: no more cycles
                world.step(None, advance=1)
                _serving_endpoints(world)
            assert world.released and not world.twins
            assert world.source.revision != "r2"  # nobody analysed r2


# A hotfix after a rollback cut after each of its writes (none: not cut),
# with what the team or on-call does next, once each. The hotfix r3 lands
# before the retry of the cut cycle, after it, or not at all.
_FOLLOW_UPS = (
    "nothing",
    "status lost",  # an old export applied
    "Deployment deleted",  # and created again at r3 a few cycles later
    "Deployment recreated as it was",  # a `replace --force` (of r2, or the hotfix)
    "Deployment recreated at r3",
    "r2 applied again",  # the same image, as CI re-runs
    "retry",
    "undo",
)
_HOTFIX_AT = ("never", "before the retry", "after the retry")
_ROLLBACK_CUTS = (None, SetSelector, ScaleTwin, Emit)  # (its Record is its last write)


@pytest.mark.parametrize(
    ("cut_after", "follow_up", "hotfix_at"),
    [
        (cut, follow_up, _HOTFIX_AT[(i + j) % len(_HOTFIX_AT)])
        for i, cut in enumerate(_ROLLBACK_CUTS)
        for j, follow_up in enumerate(_FOLLOW_UPS)
    ],
)
def test_a_rollback_cut_then_a_hotfix_keeps_the_rolled_back_release_out(
    cut_after: type | None, follow_up: str, hotfix_at: str
) -> None:
    """r2 rolled back, its cycle cut; r2 never serves again (unless retried),
    the hotfix r3 serves only as a canary, never promoted unchecked, and the
    Service keeps the app's full size. Passed at once (168 cases, by a
    review; these are the ones that differ)."""
    world = serving_canary()
    confirm = Checked("fast", result(Verdict.FAIL, "success-rate = 50"), world.now + 11)
    world.step(STRICT, result(Verdict.FAIL, "success-rate = 50"), advance=10)
    world.step(STRICT, confirm, advance=1, cut_after=cut_after)
    assert ended_as(world, "r2") == "rolled-back"
    if hotfix_at == "before the retry":
        world.source = _at(world.source, "r3")
    match follow_up:
        case "status lost":
            world.state, world.lost = State(), "missing"
        case "Deployment deleted":
            world.source = Source()
        case "Deployment recreated as it was":
            world.source = source(world.source.revision)  # unclaimed, ungated, full size
        case "Deployment recreated at r3":
            world.source = source("r3")
        case "r2 applied again":
            world.source = _at(world.source, "r2")
        case "retry":
            world.action = "retry 1"
        case "undo":
            world.action = "undo 1 1"
    seen = []
    for cycle in range(12):
        world.step(STRICT, advance=2)
        if cycle == 0 and hotfix_at == "after the retry" and world.source.exists:
            world.source = _at(world.source, "r3")
        if cycle == 3 and not world.source.exists:
            world.source = source("r3")
        observed = world.observed()
        serving = {t.revision for t in observed.twins.values() if t.endpoints > 0}
        seen.append((serving, world.state.canary_revision, dict(world.selector)))
        if follow_up != "retry":
            assert "r2" not in serving, (cycle, seen, world.reasons())
        if "r3" in serving:
            assert world.state.canary_revision == "r3", (cycle, seen, world.reasons())
        assert cycle == 0 or observed.endpoints >= 3, (cycle, world.twins, world.reasons())
    assert ended_as(world, "r3") != "promoted", world.records


def _at(the_source: Source, revision: str) -> Source:
    return replace(the_source, revision=revision, template=source(revision).template)


def ended_as(world: World, revision: str) -> str:
    return history.outcomes(world.records).get(revision, "")


def test_an_undo_to_the_serving_revision_cut_after_any_write_then_the_status_lost() -> None:
    """The undo to r1 (serving) takes r2 out with no canary of r1; cut after
    each write, then the status lost too: r2 stays out, r1 is recorded once
    (promoted by the undo), never rolled back."""
    for world in _each_cut(_undo_mid_rollout, STRICT):
        world.step(STRICT, advance=1)
        world.state, world.lost = State(), "missing"
        for _ in range(6):
            world.step(STRICT, result(Verdict.FAIL, "success-rate = 50"), advance=10)
        assert world.state.canary is None, world.reasons()
        assert world.state.failed_revision == "r2" and world.state.undone, world.state
        assert [(r["revision"], r.get("outcome")) for r in world.records] == [
            ("r1", "adopted"),
            ("r2", "superseded"),
            ("r1", "promoted"),
        ], world.records
