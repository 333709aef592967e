"""A Prometheus that answers late (overloaded, restarting): the shell runs
one analysis per Service at a time (canary/checks.py), so while a slow
scheduled check is in flight no fast look runs, and its answer describes
the canary only up to the moment it was asked (`Checked.at`). What the
canary did since is unseen; a pass must not move the rollout on over it.

The driver below is the shell's single slot: a check is started when
analysis_due asks for one and none is in flight, and its result is handed
to decide() `latency` seconds later, evaluated at the moment it was asked."""

from __future__ import annotations

from dataclasses import replace

import pytest

from analysis.run import StepContext, analyze
from analysis.verdicts import Verdict
from canary.model import Checked
from canary.schedule import analysis_due, gate_due
from canary.spec import RolloutSpec
from tests.unit.test_analysis_bad_day import (
    CANARY_RS,
    STABLE_RS,
    FakePrometheus,
    analysis,
    ctx,
    requests,
)
from tests.unit.test_decide import answer, release
from tests.unit.world import World, result, spec


def _serving(the_spec: RolloutSpec, scrape: float = 1.0) -> World:
    world = World(scrape=scrape).adopted(the_spec)
    release(world)
    world.settle(the_spec)
    assert world.state.step_ready and world.state.canary == "green"
    return world


def _run(
    the_spec: RolloutSpec,
    world: World,
    seconds: float,
    latency: float,
    bad_from: float | None = None,
    tick: float = 0.5,
) -> list[tuple[str, float, float]]:
    """Reconcile every `tick` for `seconds`; each check answers `latency`
    seconds after it was asked. The canary fails from `bad_from` on: a check
    fails when the newest scrape it reads was taken after that. Returns the
    checks handed in: (kind, asked at, handed in at)."""
    handed: list[tuple[str, float, float]] = []
    in_flight: tuple[str, float, float] | None = None  # kind, end of window, done at
    end = world.now + seconds
    while world.now < end and world.state.canary is not None:
        checked = None
        if in_flight is not None and world.now >= in_flight[2]:
            kind, at, _ = in_flight
            bad = bad_from is not None and at >= bad_from + world.scrape
            verdict = Verdict.FAIL if bad else Verdict.PASS
            checked = Checked(kind, result(verdict, "success-rate = 50" if bad else ""), at)
            handed.append((kind, at, world.now))
            in_flight = None
        world.step(the_spec, checked)
        if in_flight is None and world.state.canary is not None:
            due = analysis_due(the_spec, world.state, world.now, world.scrape, world.phase)
            if due is not None:
                in_flight = (due.kind, due.end, world.now + latency)
        world.now += tick
    return handed


def _first_scheduled_due(the_spec: RolloutSpec, world: World) -> float:
    for _ in range(1000):
        due = analysis_due(the_spec, world.state, world.now, world.scrape, world.phase)
        if due is not None and due.kind == "scheduled":
            return world.now
        world.step(the_spec)
        world.now += 0.5
    raise AssertionError("no scheduled check came due")


def test_a_pass_that_answers_late_does_not_promote_what_the_canary_did_since() -> None:
    # The last (only) step's scheduled check is asked at T and passes, but
    # Prometheus answers 30 s later. The canary went bad at T + 1: no look
    # saw it (the slot was busy with the slow check). Before: the pass
    # promoted it, 30 s after its data ended; a promoted release is never
    # rolled back.
    the_spec = spec(steps="50", failure_limit="0")
    world = _serving(the_spec)
    asked = _first_scheduled_due(the_spec, world)
    handed = _run(the_spec, world, 120, latency=30, bad_from=asked + 1)
    assert handed[0][0] == "scheduled" and handed[0][2] - handed[0][1] >= 30
    assert "Promoted" not in world.reasons(), handed
    assert world.state.canary is None and "AnalysisFailed" in world.reasons()
    assert world.state.stable == "blue"


def test_a_pass_that_answers_late_does_not_advance_the_step_over_what_nobody_saw() -> None:
    the_spec = spec(steps="25,50", failure_limit="0")
    world = _serving(the_spec)
    asked = _first_scheduled_due(the_spec, world)
    _run(the_spec, world, 120, latency=30, bad_from=asked + 1)
    assert "StepAdvanced" not in world.reasons()
    assert world.state.canary is None and world.state.stable == "blue"


def test_one_late_answer_costs_a_check_then_a_timely_pass_promotes() -> None:
    # Prometheus was slow once (a restart): the step is judged again over the
    # whole window, gap included, and moves on when that answer is timely.
    the_spec = spec(steps="50")
    world = _serving(the_spec)
    _first_scheduled_due(the_spec, world)
    handed = _run(the_spec, world, 30.5, latency=30)  # asked, and answered 30 s later
    assert [kind for kind, _, _ in handed] == ["scheduled"]
    assert "Promoted" not in world.reasons()
    assert "after the data it judged" in world.state.message  # the check's record says why
    _run(the_spec, world, 40, latency=0.0)
    assert "Promoted" in world.reasons()
    assert "AnalysisFailed" not in world.reasons() and "RolledBack" not in world.reasons()


def test_a_consistently_slow_prometheus_halts_clearly_and_never_rolls_back() -> None:
    # Every check takes 16 s (two queries of 8 s) on a 1 s scrape: no answer
    # ever covers what the canary did up to the decision. The good release
    # is neither promoted nor rolled back; the rollout halts once, says why,
    # and stays halted (no halt, resume, halt loop) until answers are timely.
    the_spec = spec(steps="50", analysis="on-limit: rollback")
    world = _serving(the_spec)
    _run(the_spec, world, 600, latency=16)
    assert "Promoted" not in world.reasons() and "RolledBack" not in world.reasons()
    assert world.state.canary == "green" and world.state.halt_kind == "errors"
    assert world.reasons().count("RolloutHalted") == 1, world.reasons()
    assert "RolloutResumed" not in world.reasons()
    halted = next(e for e in world.events if e.reason == "RolloutHalted")
    assert "late" in halted.message, halted.message
    # Prometheus is healthy again: the probe resumes, and the rollout ends.
    _run(the_spec, world, 120, latency=0.0)
    assert "RolloutResumed" in world.reasons() and "Promoted" in world.reasons()


def test_a_slow_prometheus_at_a_production_scrape_interval_still_promotes() -> None:
    # 16 s answers on a 15 s scrape: within the two scrapes a failure needs
    # to count, so nothing a timely look could have counted went unseen.
    the_spec = spec(steps="50", interval="60s")
    world = _serving(the_spec, scrape=15.0)
    _run(the_spec, world, 400, latency=16)
    assert "Promoted" in world.reasons(), world.reasons()


# -- the data itself ends early: the canary's scrapes fail, or Prometheus lags --------------


def _known(context: StepContext) -> StepContext:
    return replace(context, scrape_known=True)  # learned, or set in the analysis


def _healthy_canary() -> FakePrometheus:
    return FakePrometheus(
        requests(CANARY_RS, "code", ok=1000, errors=0) + requests(STABLE_RS, "code", 1000, 0)
    )


async def test_a_scheduled_check_whose_newest_canary_sample_is_old_is_not_a_pass() -> None:
    # The canary's pods stopped answering scrapes 40 s ago (a release that
    # thrashes under load, a broken metrics handler; `up == 0`), or an
    # overloaded Prometheus skips them. increase()/rate() over the step's
    # window read the samples that are there, from before: before, the check
    # passed (and on the last step promoted) on the first part of the
    # interval while the canary's last 40 s were never seen.
    the_spec = analysis({"metrics": [{"name": "success-rate", "min": 99}]})
    prom = _healthy_canary()
    prom.stale_by = 40.0
    checked = await analyze(the_spec, _known(ctx(start=1000.0, now=1060.0, scrape=15.0)), prom)
    assert checked.verdict is Verdict.NO_DATA, checked.reason
    assert "40s old" in checked.reason, checked.reason
    # Staleness markers after failed scrapes: no current sample at all.
    prom.stale_by = None
    checked = await analyze(the_spec, _known(ctx(start=1000.0, now=1060.0, scrape=15.0)), prom)
    assert checked.verdict is Verdict.NO_DATA, checked.reason


async def test_on_victoriametrics_a_sample_not_yet_searchable_is_not_a_stopped_scrape() -> None:
    # VictoriaMetrics makes a sample searchable only when it flushes its
    # pending rows, every 2 to 4 s ("rawRows aren't visible for search",
    # lib/storage/partition.go; pendingRowsFlushInterval, raw_row.go). At a
    # 1 s scrape a healthy canary's newest searchable sample is up to 3 s
    # old and more: the limit of two scrapes (2 s) made most checks no
    # data, and the sandbox's rollout on VictoriaMetrics never promoted its
    # good release in CI (90 s of no data under load).
    the_spec = analysis({"metrics": [{"name": "success-rate", "min": 99}]})
    prom = _healthy_canary()
    prom.stale_by = 3.6
    on_vm = replace(_known(ctx(start=1000.0, now=1060.0, scrape=1.0)), metricsql=True)
    checked = await analyze(the_spec, on_vm, prom)
    assert checked.verdict is Verdict.PASS, checked.reason
    # Prometheus's samples are searchable once appended: the limit stays two scrapes.
    on_prometheus = replace(on_vm, metricsql=False)
    assert (await analyze(the_spec, on_prometheus, prom)).verdict is Verdict.NO_DATA
    # Scrapes that stopped still read as stopped on VictoriaMetrics: two
    # scrapes and a flush (which takes up to 4 s, not 2: rev-vmtiming).
    prom.stale_by = 6.5
    checked = await analyze(the_spec, on_vm, prom)
    assert checked.verdict is Verdict.NO_DATA, checked.reason
    assert "want <= 6" in checked.reason, checked.reason


async def test_a_fresh_canary_still_passes_and_a_failure_outranks_old_data() -> None:
    the_spec = analysis({"metrics": [{"name": "success-rate", "min": 99}]})
    prom = _healthy_canary()
    prom.stale_by = 15.2  # the newest scrape, a landing lag ago: fresh
    assert (await analyze(the_spec, _known(ctx(now=1060.0)), prom)).verdict is Verdict.PASS
    failing = FakePrometheus(requests(CANARY_RS, "code", ok=500, errors=500), stale_by=40.0)
    assert (await analyze(the_spec, _known(ctx(now=1060.0)), failing)).verdict is Verdict.FAIL


async def test_with_the_scrape_interval_a_guess_old_data_is_not_judged_by_its_age() -> None:
    # Until the interval is learned the 15 s default stands in: a Prometheus
    # scraping every 60 s would read as stopped scrapes half the time.
    the_spec = analysis({"metrics": [{"name": "success-rate", "min": 99}]})
    prom = _healthy_canary()
    prom.stale_by = 40.0
    assert (await analyze(the_spec, ctx(now=1060.0), prom)).verdict is Verdict.PASS


# -- a gate opens while Prometheus fails: no look has read the canary for minutes ------------


def _at_gate(kind: str) -> tuple[RolloutSpec, World]:
    gated = spec(
        steps="25,50",
        failure_limit="0",
        analysis=f"gates: [{{name: approve, when: {kind}, url: 'http://127.0.0.1:1/x'}}]",
    )
    world = _serving(gated)
    if kind == "pre-promotion":
        world.step(gated, result(Verdict.PASS), advance=10)
        world.settle(gated)
    world.step(gated, result(Verdict.PASS), advance=10)
    assert world.state.gate_wait == kind
    return gated, world


def _wait_at_gate(
    the_spec: RolloutSpec,
    world: World,
    seconds: float,
    prometheus_down: bool,
    gate_open: bool,
    bad: bool = False,
) -> None:
    """The shell, with checks and gate calls answered at once: every look
    errors while Prometheus is down, else fails (`bad`) or passes."""
    end = world.now + seconds
    while world.now < end and world.state.canary is not None and world.state.gate_wait:
        due = analysis_due(the_spec, world.state, world.now, world.scrape, world.phase)
        checked = None
        if due is not None:
            verdict = Verdict.ERROR if prometheus_down else Verdict.FAIL if bad else Verdict.PASS
            checked = Checked(due.kind, result(verdict, "success-rate = 50"), due.end)
        kind = gate_due(the_spec, world.state, world.now)
        world.gate = answer(str(kind), gate_open) if kind is not None else None
        world.step(the_spec, checked)
        world.now += 0.5


@pytest.mark.parametrize("kind", ["pre-step", "pre-promotion"])
def test_a_gate_that_opens_while_prometheus_fails_waits_for_a_look(kind: str) -> None:
    # At a closed gate the rollout stands still and fast looks watch the
    # canary. Prometheus goes down: each look errors and the looks pause an
    # interval (no flood), again and again. Before: the gate opening moved on
    # (advanced, or promoted) with no look at the canary for minutes, over
    # whatever it did meanwhile. Now it waits for a look that answers.
    the_spec, world = _at_gate(kind)
    step = world.state.step
    _wait_at_gate(the_spec, world, 120, prometheus_down=True, gate_open=False)
    _wait_at_gate(the_spec, world, 60, prometheus_down=True, gate_open=True)
    assert world.state.gate_wait == kind, world.reasons()
    assert world.state.step == step and "Promoted" not in world.reasons()
    # Prometheus answers again and the canary went bad while it was down.
    _wait_at_gate(the_spec, world, 30, prometheus_down=False, gate_open=True, bad=True)
    assert world.state.canary is None and world.state.stable == "blue", world.reasons()
    assert "Promoted" not in world.reasons() and "AnalysisFailed" in world.reasons()


def test_a_gate_that_opens_after_prometheus_is_back_moves_on() -> None:
    the_spec, world = _at_gate("pre-promotion")
    _wait_at_gate(the_spec, world, 120, prometheus_down=True, gate_open=False)
    _wait_at_gate(the_spec, world, 60, prometheus_down=True, gate_open=True)
    _wait_at_gate(the_spec, world, 60, prometheus_down=False, gate_open=True)
    assert "Promoted" in world.reasons(), world.reasons()


def test_with_prometheus_healthy_an_open_gate_moves_on_at_once() -> None:
    the_spec, world = _at_gate("pre-step")
    _wait_at_gate(the_spec, world, 30, prometheus_down=False, gate_open=False)
    opened = world.now
    _wait_at_gate(the_spec, world, 30, prometheus_down=False, gate_open=True)
    assert "StepAdvanced" in world.reasons() and world.now - opened <= 1.0


def test_a_late_probe_does_not_widen_the_next_one() -> None:
    # Halted on late answers, the rollout probes Prometheus every interval.
    # Each late probe kept the window's start, so the next probe asked for
    # the whole halt again: an hour halted, an hour of samples per query,
    # on the Prometheus that was already too slow to answer in time (it
    # could then never answer in time again: halted for good). A late probe
    # has read up to its end: the next covers only what it has not read.
    the_spec = spec(steps="50")
    world = _serving(the_spec)
    _run(the_spec, world, 600, latency=16)
    assert world.state.halt_kind == "errors", world.state
    for _ in range(200):
        due = analysis_due(the_spec, world.state, world.now, world.scrape, world.phase)
        if due is not None:
            break
        world.step(the_spec)
        world.now += 0.5
    assert due is not None and due.kind == "probe", due
    assert due.end - due.start <= 2 * (the_spec.interval + 16), (due, world.state.window_start)


def test_a_check_that_does_not_finish_in_time_halts_and_never_rolls_back() -> None:
    # Every query answers within query-timeout, but a relative metric and the
    # newest-scrape check chain up to ten of them: the whole outlasts what
    # the shell waits (3 * query-timeout + 5) and comes back as an error.
    # Before, that was an error like any other: past error-limit, with
    # on-limit: rollback, a good release was rolled back for Prometheus's
    # slowness. Now it is judged as an answer too late: halted, never
    # rolled back, and it resumes once checks finish in time.
    the_spec = spec(steps="50", analysis="on-limit: rollback")
    world = _serving(the_spec)
    hung = replace(result(Verdict.ERROR, "analysis did not finish within 35s"), slow=True)
    for _ in range(8):
        due = _first_scheduled_due(the_spec, world)
        world.step(the_spec, Checked("scheduled", hung, due))
        world.now += 1.0
        if world.state.halted:
            break
    assert "RolledBack" not in world.reasons() and "AnalysisError" not in world.reasons()
    assert world.state.canary == "green" and world.state.halt_kind == "errors"
    halted = next(e for e in world.events if e.reason == "RolloutHalted")
    assert "Prometheus is too slow: analysis did not finish within 35s" in halted.message
    _run(the_spec, world, 120, latency=0.0)
    assert "RolloutResumed" in world.reasons() and "Promoted" in world.reasons()
