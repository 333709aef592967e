"""Verdicts while the canary's pods churn (review "churn"): a canary pod
that crash-loops while it serves (OOM-killed a few seconds after each
start, back after its back-off)."""

from __future__ import annotations

from dataclasses import replace

from analysis.verdicts import Verdict
from canary.model import Checked, Observed, Source, State
from canary.placement import _back_at_weight, _deadline_basis, _lose, follow_lag
from canary.plan import Draft
from canary.schedule import analysis_due
from canary.spec import RolloutSpec
from tests.unit.world import World, result, spec


def _serving(the_spec: RolloutSpec) -> World:
    world = World().adopted(the_spec)
    world.source = replace(world.source, revision="r2")
    world.settle(the_spec)
    return world


def test_a_canary_pod_that_crash_loops_while_it_serves_is_rolled_back_at_the_deadline() -> None:
    """Each loss of more than two scrapes starts the step's window again,
    and each loss moved the progress deadline's basis to itself: a canary
    pod OOM-killed 10 s after every start (back-off 20 s, interval 30 s,
    deadline 60 s) never served a whole interval, never reached its
    deadline, and stood at its first step for good, neither promoted nor
    rolled back (stuck: the looks in between passed)."""
    quick = spec(steps="25,50", interval="30s", progress_deadline="60s")
    world = _serving(quick)
    assert world.state.canary == "green" and world.state.step_ready
    for _ in range(20):  # 10 minutes, ten progress deadlines
        for _ in range(10):  # it serves 10 s; the looks between find nothing wrong
            world.step(quick, advance=1)
            due = analysis_due(quick, world.state, world.now, world.scrape)
            if due is not None:
                world.step(quick, Checked(due.kind, result(Verdict.PASS), due.end))
        if world.state.canary is None:
            break
        world.pending = {"green"}  # OOM-killed: CrashLoopBackOff for 20 s
        for _ in range(4):
            world.step(quick, advance=5)
        world.pending = set()
        world.step(quick, advance=1)
        if world.state.canary is None:
            break
    assert "Promoted" not in world.reasons()
    assert world.state.canary is None and "ProgressDeadlineExceeded" in world.reasons(), (
        world.state.step,
        world.reasons(),
    )


def test_a_run_of_losses_ends_with_its_step() -> None:
    """A run of losses (State.lost_from) is the step's: the next step, or
    the promotion, counts a pod lost from that loss, as before (a run kept
    would roll a release that passed its step back at once)."""
    run = State(
        step_started=100.0, step_ready=110.0, lost_from=150.0, lost_s=20.0, unready_since=200.0
    )
    assert _deadline_basis(run) == 180.0
    promoting = replace(run, promoting=True, step_started=180.0, unready_since=400.0)
    assert _deadline_basis(promoting) == 400.0
    advanced = replace(run, step=1, step_started=300.0, step_ready=310.0, unready_since=400.0)
    assert _deadline_basis(advanced) == 400.0


def test_a_pod_lost_after_a_whole_interval_served_since_its_run_has_its_own_deadline() -> None:
    """The run of losses ends once the step served a whole interval since
    its window started again (here too few requests to judge it, so the
    step stays): a later loss is counted from itself, as a first one is."""
    quick = spec(steps="25,50", interval="30s", progress_deadline="60s")
    world = _serving(quick)
    world.pending = {"green"}
    world.step(quick, advance=5)
    world.step(quick, advance=20)  # lost 25 s: the window starts again at its return
    world.pending = set()
    world.step(quick, advance=1)
    world.settle(quick)
    assert world.state.lost_from and not world.state.unready_since, world.state
    for _ in range(4):  # 40 s served: a whole interval, judged as no data
        world.step(quick, advance=10)
        due = analysis_due(quick, world.state, world.now, world.scrape)
        if due is not None:
            world.step(quick, Checked(due.kind, result(Verdict.NO_DATA), due.end))
    assert world.state.canary == "green" and world.state.step == 0
    world.pending = {"green"}
    world.step(quick, advance=1)
    for _ in range(5):  # lost 55 s of its own 60
        world.step(quick, advance=11)
    assert world.state.canary == "green", world.reasons()
    world.step(quick, advance=10)
    assert world.state.canary is None and "ProgressDeadlineExceeded" in world.reasons()


def test_a_drain_that_evicts_canary_pods_one_after_another_is_no_crash_loop() -> None:
    """Nodes drained one after another (a cluster upgrade) evict the
    canary's pods minutes apart, each back a minute later: each return
    starts the window again, so at a 10-minute interval the step never
    served a whole one between them. A run of losses counted from its first
    with the time served between them rolled this good release back at the
    third eviction (180 s lost of a 600-s deadline). The run counts the time
    its pods were lost, not the time they served."""
    slow = spec(steps="25,50", interval="10m", progress_deadline="600s")
    world = _serving(slow)
    for _ in range(3):
        for _ in range(24):  # it serves 4 minutes; the looks find nothing wrong
            world.step(slow, advance=10)
            due = analysis_due(slow, world.state, world.now, world.scrape)
            if due is not None:
                world.step(slow, Checked(due.kind, result(Verdict.PASS), due.end))
        world.pending = {"green"}  # evicted; its replacement is ready a minute later
        for _ in range(6):
            world.step(slow, advance=10)
        world.pending = set()
        world.step(slow, advance=1)
    assert "ProgressDeadlineExceeded" not in world.reasons(), world.reasons()
    assert world.state.canary == "green"


def test_a_run_counts_the_time_lost_not_the_time_served_between() -> None:
    """While a pod of a run is lost, the deadline counts from as far before
    this loss as the run's earlier losses lasted."""
    quick = spec(steps="25,50", interval="30s", progress_deadline="60s")
    world = _serving(quick)
    world.pending = {"green"}
    world.step(quick, advance=1)
    lost = world.now
    world.step(quick, advance=20)  # lost 20 s
    world.pending = set()
    world.step(quick, advance=1)
    world.settle(quick)
    back = world.state.window_start  # its window starts again on its return
    assert world.state.lost_from == lost and not world.state.unready_since, world.state
    world.step(quick, advance=10)  # serves 10 s, less than an interval
    world.pending = {"green"}
    world.step(quick, advance=1)
    assert world.state.unready_since == world.now
    assert _deadline_basis(world.state) == world.now - (back - lost)


def test_a_blip_between_the_losses_of_a_run_moves_nothing_ahead_of_now() -> None:
    """A blip of up to two scrapes (a readiness probe timing out once) is no
    loss of the run: its window goes on, and so must the run's count. The
    next loss added the time served since the window started again a second
    time, over the blip's own: lost 60 s, back, 140 s served, a blip, 10 s
    served, lost again, and the run's start (State.lost_from) stood 80 s
    ahead of now. The next cycle took it for a clock ahead and moved every
    time of the step back by as much (its start, its window: decide._not_ahead)."""
    slow = spec(steps="25,50", interval="10m", progress_deadline="600s")
    world = _serving(slow)
    world.pending = {"green"}
    world.step(slow, advance=10)
    lost = world.now
    world.step(slow, advance=60)  # lost 60 s: its window starts again at its return
    world.pending = set()
    world.step(slow, advance=1)
    world.settle(slow)
    back = world.state.window_start
    assert world.state.lost_from == lost and not world.state.unready_since, world.state
    for _ in range(14):  # 140 s served
        world.step(slow, advance=10)
    world.pending = {"green"}  # a blip: back a scrape later
    world.step(slow, advance=1)
    world.pending = set()
    world.step(slow, advance=1)
    world.step(slow)
    assert not world.state.unready_since and world.state.window_start == back
    world.step(slow, advance=10)
    world.pending = {"green"}  # lost again
    world.step(slow, advance=1)
    started = world.state.step_started
    assert world.state.lost_from <= world.now, (world.state.lost_from, world.now)
    assert _deadline_basis(world.state) == world.now - (back - lost)
    world.step(slow, advance=1)
    assert world.state.step_started == started and world.state.window_start == back


def test_a_blip_that_ends_a_lag_in_a_run_takes_back_no_more_than_it_added() -> None:
    """A loss in a run while the Deployment controller lags (or the app
    grows): the lag moves the loss to its end (follow_lag), and so must the
    run, or the blip back a scrape later took back more than the loss had
    added (the time served, and the lag with it): the next loss of the run
    counted the lag as lost, the deadline that much early."""
    slow = spec(steps="25,50", interval="10m", progress_deadline="600s")
    # Lost 150 -> 200 (its window started again at 200), served 100 s.
    draft, observed = _back_at_200()
    _lose(draft, slow, 300.0)  # lost again, as the controller-manager lags
    draft = Draft(replace(draft.state, lagging_since=300.0, lag_from=300.0), observed)
    follow_lag(draft, observed, 340.0)  # it has observed the twin: the lag is credited
    _back_at_weight(draft, observed, 341.0)  # back a scrape after: a blip
    assert draft.state.window_start == 200.0 and draft.state.lost_from == 150.0, draft.state
    _lose(draft, slow, 351.0)
    assert _deadline_basis(draft.state) == 351.0 - (200.0 - 150.0), draft.state


def test_a_run_of_losses_ends_with_the_pods_a_restart_replaced() -> None:
    """`kubectl rollout restart` of the canary twin serves the step anew
    (step_ready again, its step_started kept): a run of the replaced pods'
    losses is none of the new pods'. Their first loss is counted from
    itself; counted with the old run's time lost, the deadline came early."""
    restarted = State(
        step_started=100.0, step_ready=300.0, lost_from=150.0, lost_s=20.0, unready_since=400.0
    )
    assert _deadline_basis(restarted) == 400.0


def test_a_loss_a_whole_interval_to_the_second_after_the_window_is_its_own() -> None:
    """A whole interval served since the run's window started again ends the
    run, to the second: the loss then is counted from itself."""
    slow = spec(steps="25,50", interval="10m", progress_deadline="600s")
    draft, _ = _back_at_200()
    _lose(draft, slow, 800.0)  # 600 s after the window started again: a whole interval
    assert draft.state.lost_from == 0.0 and draft.state.lost_s == 0.0, draft.state
    assert _deadline_basis(draft.state) == 800.0


def _back_at_200() -> tuple[Draft, Observed]:
    """A step whose canary pod was lost from 150 to 200 (a run of one loss,
    its window started again at 200), at a 1-s scrape."""
    observed = Observed("ns", "web", "web", {}, Source(), {}, scrape_interval=1.0)
    run = State(
        canary="green",
        stable="blue",
        canary_revision="r2",
        step_started=100.0,
        step_ready=110.0,
        window_start=200.0,
        checked=200.0,
        lost_from=150.0,
        lost_s=50.0,
    )
    return Draft(run, observed), observed
