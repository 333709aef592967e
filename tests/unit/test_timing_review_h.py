"""Review of the analysis's timing (rev-h): a step advances only on a window
that covered the step at its own weight, whatever happened to its pods."""

from __future__ import annotations

from dataclasses import replace

from analysis.verdicts import Verdict
from canary.model import Checked, Observed
from canary.schedule import analysis_due
from canary.spec import RolloutSpec
from tests.unit.test_looks_while_unready import first_step_serving
from tests.unit.test_standing_still import SlowCanary
from tests.unit.world import World, result, spec, with_twin


def _passing(the_spec: RolloutSpec, world: SlowCanary, seconds: float) -> float | None:
    """Every check asked for passes; when the step passed (None: it did not)."""
    step, canary = world.state.step, world.state.canary
    end = world.now + seconds
    while world.now < end:
        due = analysis_due(the_spec, world.state, world.now, world.scrape, world.phase)
        checked = Checked(due.kind, result(Verdict.PASS), due.end) if due else None
        world.step(the_spec, checked)
        if world.state.promoting or world.state.step != step or world.state.canary != canary:
            return world.now
        world.now += 0.5
    return None


def test_a_step_short_of_pods_for_most_of_its_interval_is_not_passed_on_it() -> None:
    # A canary pod is lost a second into the step (a crash, an eviction) and
    # is back a second before its interval ends. Before, the scheduled check
    # then due judged the whole window from the step's start and promoted: on
    # a first step the canary had been out of the Service meanwhile, so the
    # release had served production for 1.5 s of a 10 s interval.
    one_step = spec(steps="50", failure_limit="0")
    world = first_step_serving(one_step, SlowCanary())
    world.cap = world.twins["green"].replicas - 1
    world.step(one_step, advance=1)
    assert world.state.unready_since
    for _ in range(16):
        world.step(one_step, advance=0.5)
    world.cap = 0
    world.settle(one_step)
    back = world.now
    assert not world.state.unready_since and world.state.step_ready
    passed = _passing(one_step, world, 30)
    assert passed is not None, world.state.message
    assert passed - back >= one_step.interval, (passed - back, world.reasons())


def test_a_readiness_blip_of_a_scrape_does_not_start_the_window_again() -> None:
    """A pod unready for one scrape (a probe timing out once) is not a step
    short of pods: restarting the window for it, a canary whose pods blip
    more often than its interval would never pass a step."""
    the_spec = spec(steps="50", interval="10s")
    world = World().adopted(the_spec)
    world.source = replace(world.source, revision="r2")
    world.settle(the_spec)
    world.step(the_spec, advance=3)
    started = world.state.window_start
    assert started
    world.pending = {"green"}
    world.step(the_spec, advance=0.5)
    assert world.state.unready_since
    world.pending = set()
    world.step(the_spec, advance=0.5)
    world.settle(the_spec)
    assert not world.state.unready_since and world.state.window_start == started


class SlowCluster(SlowCanary):
    """Neither twin's new pods start yet (nodes being added): each twin
    serves with the pods it had."""

    stable_cap: int = 0

    def observed(self) -> Observed:
        observed = super().observed()
        if not self.stable_cap or self.state.stable is None:
            return observed
        return with_twin(observed, self.state.stable, ready=self.stable_cap)


def test_a_step_whose_app_grew_keeps_its_window_while_the_new_pods_start() -> None:
    """The app grows (its HPA, the team) mid-step and both twins' new pods
    take longer than two scrapes to start (the cluster's doing, see
    placement._growing): the canary's old pods served on at their share, so
    the step's window is not started again (under a ramping load it would
    be at every growth, found by review); a pod lost is (above)."""
    the_spec = spec(steps="50", interval="60s")
    world = first_step_serving(the_spec, SlowCluster())
    started = world.state.window_start
    world.cap = world.twins["green"].replicas  # the pods it has now serve; new ones do not
    world.stable_cap = world.twins["blue"].replicas
    world.source = replace(world.source, replicas=6)  # `kubectl scale deployment web`
    world.step(the_spec, advance=1)
    world.settle(the_spec)
    assert world.state.scaled_from and world.state.unready_since, world.state
    world.cap = 0  # the canary's new pods are ready 5 s (5 scrapes) later,
    world.step(the_spec, advance=5)  # the stable twin's a moment after
    world.settle(the_spec)
    assert not world.state.unready_since and world.state.window_start == started


def test_a_canary_pod_lost_while_the_app_grows_starts_the_window_again_once_back() -> None:
    """The app grows (3 to 6 pods) mid-step while nodes are being added, and
    one of the canary's own pods crashes at the same time: it serves 2 of
    the 3 pods it had before the growth, which is the release's doing, not
    the cluster's (placement._growing). 31 s later (31 scrapes) its pods
    are all back and the stable twin still waits for its new ones. The
    canary served below its step's weight all that while: its window starts
    again, as for a pod lost without a growth (above). Kept because the app
    happened to be growing, the check due next passed the step on a window
    the canary had spent short of a pod."""
    the_spec = spec(steps="50", interval="60s")
    world = first_step_serving(the_spec, SlowCluster())
    started = world.state.window_start
    world.stable_cap = world.twins["blue"].replicas  # the stable twin's new pods wait
    world.cap = world.twins["green"].replicas - 1  # and a canary pod it had crashes
    world.source = replace(world.source, replicas=6)  # `kubectl scale deployment web`
    world.step(the_spec, advance=1)
    world.settle(the_spec)
    assert world.state.scaled_from and world.state.unready_since, world.state
    for _ in range(3):
        world.step(the_spec, advance=10)
    world.cap = 0  # the canary's pods are all ready again
    world.step(the_spec, advance=1)
    world.settle(the_spec)
    assert world.state.scaled_from, "the stable twin still grows"
    assert not world.state.unready_since and world.state.window_start > started, world.state
