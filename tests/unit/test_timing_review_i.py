"""Review of the fast looks' timing (rev-i): a lasting failure is rolled back
within two scrapes of showing in Prometheus, whenever its samples land and
however late a look's queries go out; and a step passes only on a window
that covered it at its own weight, paused or not.

The first two drive the shell's own Checks (its queue, its retries) against
a Prometheus of samples: a scrape's samples carry the scrape's time and can
be queried only `delay` seconds after it (a slow /metrics, a busy
Prometheus, remote-write), on a fake clock."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, replace
from types import SimpleNamespace

import pytest

from analysis.durations import parse_duration
from analysis.run import StepContext
from analysis.scrape import ScrapeTiming
from analysis.templates import Target
from analysis.verdicts import Verdict
from canary import checks as checks_module
from canary.checks import Checks
from canary.model import Checked
from canary.schedule import analysis_due
from canary.spec import RolloutSpec
from tests.unit.test_looks_while_unready import first_step_serving
from tests.unit.test_newest_scrape import InstantOnly
from tests.unit.test_slow_prometheus import _serving
from tests.unit.test_standing_still import SlowCanary
from tests.unit.world import World, result, spec

KEY = ("ns", "web")
IDENT = ("r2",)
CANARY = Target("ns", "web", "green", "web-green-5d8f-.*")
_RANGE = re.compile(r"\[(\d+(?:ms|s))\]")


@dataclass
class Samples(InstantOnly):
    """One canary pod scraped every `scrape` s at `phase` + k * scrape,
    serving 10 requests/s; from `bad_from` on half of them fail. Each
    sample can be queried `delay` s after its time. Answers the queries
    analysis/run.py sends, from the samples that have landed when asked."""

    phase: float
    scrape: float
    delay: float
    bad_from: float = float("inf")
    clock_offset: float = 0.0

    def counters(self, t: float) -> tuple[float, float]:
        """(ok, errors) counted up to t."""
        bad = max(0.0, t - self.bad_from)
        return 10.0 * (t - bad) + 5.0 * bad, 5.0 * bad

    def landed(self, at: float, window: float) -> list[float]:
        k = int((at - self.phase) // self.scrape) + 1
        times = [self.phase + i * self.scrape for i in range(k - 10, k + 1)]
        return [t for t in times if at - window < t <= at and t + self.delay <= at + 1e-9]

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        assert at is not None
        if promql.startswith("time() - max(timestamp("):
            newest = self.landed(at, 300.0)
            return at - newest[-1] if newest else None
        found = _RANGE.search(promql)
        assert found is not None, promql
        samples = self.landed(at, parse_duration(found.group(1)))
        if "last_over_time" in promql:
            if not samples:
                return None
            ok, errors = self.counters(samples[-1])
        else:
            if len(samples) < 2:
                return None  # rate() and increase() need two samples
            ok1, errors1 = self.counters(samples[0])
            ok2, errors2 = self.counters(samples[-1])
            ok, errors = ok2 - ok1, errors2 - errors1
        if "/" not in promql:
            return ok + errors  # the request guard
        return 100.0 * ok / (ok + errors)


class FakeClock:
    """canary.checks' clock and its pauses, moved by hand: a shell loop's
    time, with each pause woken once the clock passes its end."""

    def __init__(self, now: float, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = now
        self._sleeping: list[tuple[float, asyncio.Event]] = []
        monkeypatch.setattr(checks_module, "time", SimpleNamespace(time=lambda: self.now))
        monkeypatch.setattr(checks_module, "_pause", self._pause, raising=False)

    async def _pause(self, seconds: float) -> None:
        woken = asyncio.Event()
        self._sleeping.append((self.now + seconds - 1e-9, woken))
        await woken.wait()

    def tick(self, world_now: float) -> float:
        """A shell cycle later (50 ms after the later of the world's time
        and the clock's): the new time, every pause due by then woken."""
        self.now = max(world_now, self.now) + 0.05
        for until, woken in self._sleeping:
            if until <= self.now:
                woken.set()
        return self.now


def _shell(
    the_spec: RolloutSpec,
    world: World,
    prometheus: Samples,
    seconds: float,
    monkeypatch: pytest.MonkeyPatch,
    queued: float = 0.0,
) -> None:
    """Reconcile every 50 ms as the shell does: take a finished check, decide,
    start the check now due. Every fast look that follows a passing one runs
    `queued` s after it was asked (behind other Services' checks)."""
    clock = FakeClock(world.now, monkeypatch)

    async def run() -> None:
        checks = Checks(prometheus, None, lambda key: None)  # type: ignore[arg-type]
        checks._scrape[KEY] = (ScrapeTiming(prometheus.scrape, prometheus.phase), world.now)
        end = world.now + seconds
        while world.now < end and world.state.canary is not None:
            world.phase = checks.scrape_phase(KEY)
            world.step(the_spec, checks.take_analysis(KEY, IDENT))
            if not checks.analysing(KEY) and world.state.canary is not None:
                due = analysis_due(the_spec, world.state, world.now, world.scrape, world.phase)
                if due is not None:
                    context = StepContext(
                        CANARY, None, due.start, due.end, the_spec.interval, world.scrape
                    )
                    context = replace(context, totals=due.totals, scrape_known=True)
                    checks.start_analysis(KEY, IDENT, due.kind, the_spec.analysis, context)
                    if due.kind == "fast" and not world.state.fast_failed:
                        clock.now += queued  # its queries go out this much later
            for _ in range(20):
                await asyncio.sleep(0)
            world.now = clock.tick(world.now)
        await checks.close()

    asyncio.run(run())


def _rolled_back_after_visible(delay: float, queued: float, mp: pytest.MonkeyPatch) -> float:
    """Seconds from when the first failing scrape can be queried to the rollback."""
    the_spec = spec(steps="50", interval="120s", failure_limit="0")
    world = _serving(the_spec, scrape=10.0)
    # Turns bad 35 s into the step: mid-way between two scrapes, so the first
    # failing scrape has a quarter of its requests failing (fails `min: 99`).
    prometheus = Samples(phase=world.now - 3.0, scrape=10.0, delay=delay)
    prometheus.bad_from = world.now + 35.0
    first_bad = prometheus.phase + 10.0 * (int(38.0 // 10.0) + 1)
    assert prometheus.counters(first_bad)[1] > 0 == prometheus.counters(first_bad - 10.0)[1]
    _shell(the_spec, world, prometheus, 120.0, mp, queued)
    assert world.state.canary is None and "AnalysisFailed" in world.reasons(), world.reasons()
    return world.now - (first_bad + delay)


def test_a_failure_whose_samples_land_on_time_is_rolled_back_within_two_scrapes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The reference: the look after the failing one's confirms it.
    assert _rolled_back_after_visible(0.2, 0.0, monkeypatch) < 15.0


def test_a_failure_whose_samples_land_late_is_rolled_back_within_two_scrapes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A scrape queryable 2 s after its time (a slow /metrics, a busy
    Prometheus, remote-write) is missed by a look timed 0.5 s after it
    (analysis.scrape.landing_lag): the two-scrape window holds one sample,
    the request guard finds no series. Before, such a look read nothing, the
    next one read the scrape before it (quiet_from widened its window), and
    looks went blind and a scrape late by turns: 38.6 s from the failure
    showing to the rollback at a 10 s scrape (10.4 s when samples land on
    time)."""
    taken = _rolled_back_after_visible(2.0, 0.0, monkeypatch)
    assert taken < 15.0, f"{taken:.1f}s from the failure showing in Prometheus to the rollback"


def test_a_failing_look_queued_behind_other_checks_is_confirmed_by_the_next_scrape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failing look whose queries went out 2 s late (queued behind other
    Services' checks, _when_run moves its window along) read the same
    scrape it would have read on time. The next look, on time, reads the
    next scrape; compared on when their queries went out (8 s apart, under
    0.9 of the 10 s interval) it was taken for the same scrape and did not
    count: the rollback came a scrape later (20.3 s after the failure
    showed, instead of 10.3 s)."""
    taken = _rolled_back_after_visible(0.2, 2.0, monkeypatch)
    assert taken < 15.0, f"{taken:.1f}s from the failure showing in Prometheus to the rollback"


def test_two_looks_at_the_same_sample_are_one_scrape_however_far_apart_they_went_out() -> None:
    """The other side of comparing on the sample read: a look a whole
    interval after a failing one that still reads the same newest sample
    (the next scrape not landed yet: a landing delay that varies) is the
    same failing scrape, and one bad scrape is never a rollback."""
    the_spec = spec(steps="50", failure_limit="0")
    world = _serving(the_spec, scrape=1.0)
    sample = world.now + 2.6
    failing = replace(result(Verdict.FAIL, "success-rate = 50"), newest=sample)
    world.step(the_spec, Checked("fast", failing, world.now + 2.9), advance=2.9)
    world.step(the_spec, Checked("fast", failing, world.now + 1.0), advance=1.0)
    assert world.state.canary == "green" and world.state.fast_failed, world.reasons()
    # The next sample counts, however soon after the last look it is read.
    later = replace(failing, newest=sample + 1.0)
    world.step(the_spec, Checked("fast", later, world.now + 0.2), advance=0.2)
    assert world.state.canary is None and "AnalysisFailed" in world.reasons()


# -- a canary pod lost and back while the rollout is paused ---------------------------------


def _passing(the_spec: RolloutSpec, world: SlowCanary, seconds: float) -> float | None:
    """Every check asked for passes; when the step passed (None: it did not)."""
    step = world.state.step
    end = world.now + seconds
    while world.now < end:
        due = analysis_due(the_spec, world.state, world.now, world.scrape, world.phase)
        checked = Checked(due.kind, result(Verdict.PASS), due.end) if due else None
        world.step(the_spec, checked)
        if world.state.promoting or world.state.step != step or world.state.canary is None:
            return world.now
        world.now += 0.5
    return None


@pytest.mark.parametrize("how", ["action", "annotation"])
def test_a_step_short_of_pods_while_paused_is_not_passed_on_it_once_resumed(how: str) -> None:
    """`canary pause` (or canary.io/paused) holds the step, and the step's
    placement, which notes a pod lost (unready_since), does not run while
    it holds: a canary pod lost for 8 s of the 10 s interval and back while
    paused left no trace, and the scheduled check due at the resume passed
    the step on the window from its start, at once (the fix of 2264623,
    `placement._back_at_weight`, never ran)."""
    one_step = spec(steps="50", failure_limit="0")
    paused = spec(steps="50", failure_limit="0", paused="true")
    world = first_step_serving(one_step, SlowCanary())
    held = paused if how == "annotation" else one_step
    if how == "action":
        world.action = "pause"
    world.step(held, advance=1)
    assert world.state.paused or how == "annotation"
    world.cap = world.twins["green"].replicas - 1  # a canary pod is lost
    for _ in range(16):
        world.step(held, advance=0.5)
    world.cap = 0
    world.step(held, advance=0.5)
    back = world.now
    if how == "action":
        world.action = "resume"
    world.step(one_step, advance=0.5)
    assert not world.state.paused and world.state.canary == "green"
    passed = _passing(one_step, world, 30)
    assert passed is not None, world.state.message
    assert passed - back >= one_step.interval, (passed - back, world.reasons())


def test_a_pause_with_every_pod_serving_keeps_the_steps_window() -> None:
    """Paused with all its pods, the step served at its weight all along: the
    resume does not start its window again."""
    one_step = spec(steps="50", failure_limit="0")
    world = first_step_serving(one_step, SlowCanary())
    started = world.state.window_start
    world.action = "pause"
    world.step(one_step, advance=1)
    for _ in range(20):
        world.step(one_step, advance=0.5)
    world.action = "resume"
    world.step(one_step, advance=0.5)
    assert world.state.window_start == started and not world.state.unready_since
