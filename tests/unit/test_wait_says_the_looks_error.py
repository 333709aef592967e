"""While Prometheus fails, the automatic flip and an open gate wait for a
look that reads the canary. On-call reading the status at 3 a.m. needs to
know what the looks get back (a 422 execution error, a timeout, partial
data), not only that the wait may be Prometheus's fault: the wait says the
newest look's error. It is volatile state (a fast look's error is recorded
nowhere else), and an error text that changes with every look costs no
status write of its own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from analysis.verdicts import Verdict
from canary.model import Checked, State
from canary.schedule import analysis_due, gate_due
from canary.spec import RolloutSpec
from canary.status_writes import VOLATILE, durable, progress_only, status_text
from tests.unit.test_decide import answer
from tests.unit.test_flip_while_prometheus_fails import ONE_STEP, _promoting, _requests
from tests.unit.test_slow_prometheus import _at_gate
from tests.unit.test_standing_still import STRICT, _serving
from tests.unit.world import World, result

TIMEOUT = "success-rate: error: Prometheus did not answer within 5s"


def _error(n: int) -> str:
    return f"success-rate: error: Prometheus 422: execution error: query {n} too large"


def _drive(
    the_spec: RolloutSpec,
    world: World,
    seconds: float,
    error: Callable[[int], str] | None,
    gate_open: bool = False,
    late: float = 0.0,
) -> int:
    """The shell, checks and gate calls answered at once, every look erroring
    with `error(n)` (None: passing), and the status written as
    reconcile._write_status does: nothing when no durable field changed, a
    change of progress alone at most every PROGRESS_WRITE_EVERY_S, and each
    cycle going on from the status written (plus the volatile fields kept in
    memory). `late`: a passing look is handed in that long after the end of
    the data it read. Returns the number of status writes."""
    written, at, writes, looks = world.state, world.now, 0, 0
    end = world.now + seconds
    while world.now < end and world.state.canary is not None:
        due = analysis_due(the_spec, world.state, world.now, world.scrape, world.phase)
        checked = None
        if due is not None:
            looks += 1
            verdict = Verdict.ERROR if error else Verdict.PASS
            read_to = due.end - (0.0 if error else late)
            checked = Checked(due.kind, result(verdict, error(looks) if error else ""), read_to)
        if world.state.gate_wait:
            kind = gate_due(the_spec, world.state, world.now)
            world.gate = answer(str(kind), gate_open) if kind is not None else None
        before = world.state
        plan = world.step(the_spec, checked)
        status = status_text(the_spec, before, plan, "web")
        paced = progress_only(before, plan.state) and world.now < at + 5.0
        if status is not None and not paced:
            written, at, writes = plan.state, world.now, writes + 1
        else:
            world.state = replace(written, **{f: getattr(plan.state, f) for f in VOLATILE})
        world.now += 0.5
    return writes


def _flip_waits() -> World:
    """Promoting, every new pod ready, Prometheus down for a minute."""
    world = _promoting()
    _drive(ONE_STEP, world, 20, _error)
    world.cap = 0
    _drive(ONE_STEP, world, 60, _error)
    assert world.state.promoting and world.state.flip_waits, world.reasons()
    return world


def test_the_flips_wait_says_the_newest_looks_error() -> None:
    # Before: "Prometheus failing or answering late, or the canary's pods not
    # scraped", and never what the looks got back.
    world = _flip_waits()
    message = world.state.message
    assert "no check has read the canary since" in message, message
    assert "last look: success-rate: error: Prometheus 422: execution error" in message, message
    _drive(ONE_STEP, world, 12, lambda _: TIMEOUT)
    assert f"last look: {TIMEOUT}" in world.state.message, world.state.message


def test_the_flips_wait_says_when_the_looks_find_no_sample_of_the_canary() -> None:
    world = _promoting()
    for seconds in (20, 60):  # the new pods come up, then all are ready
        for _ in range(int(seconds / 0.5)):
            due = analysis_due(ONE_STEP, world.state, world.now, world.scrape, world.phase)
            checked = Checked(due.kind, _requests(None), due.end) if due else None
            world.step(ONE_STEP, checked)
            world.now += 0.5
        world.cap = 0
    assert world.state.promoting, world.reasons()
    assert "last look: no sample of the canary's requests" in world.state.message


@pytest.mark.parametrize("kind", ["pre-step", "pre-promotion"])
def test_an_open_gates_wait_says_the_newest_looks_error(kind: str) -> None:
    the_spec, world = _at_gate(kind)
    _drive(the_spec, world, 60, _error)
    _drive(the_spec, world, 30, _error, gate_open=True)
    assert world.state.gate_wait == kind, world.reasons()
    message = world.state.message
    assert f"{kind} gate open, but no check has read the canary" in message, message
    assert "last look: success-rate: error: Prometheus 422: execution error" in message, message


def test_a_look_that_reads_the_canary_clears_the_error() -> None:
    world = _flip_waits()
    assert world.state.look_error
    world.step(ONE_STEP, Checked("fast", result(Verdict.PASS), world.now + 0.5), advance=0.5)
    assert not world.state.look_error and world.state.stable == "green", world.reasons()
    assert "last look" not in world.state.message


def test_the_error_is_volatile_and_no_durable_change() -> None:
    state = State(canary="green", message="waiting", look_error="")
    after = replace(state, look_error=_error(2), message=f"waiting; last look: {_error(2)}")
    assert durable(after) == durable(replace(state, message=after.message))
    assert progress_only(state, after)


@pytest.mark.parametrize("where", ["flip", "gate"])
def test_an_error_text_that_changes_with_every_look_costs_no_status_write(where: str) -> None:
    # A minute of erroring looks with one error text writes the status once
    # at most (the waits say since when, not for how long: a count of
    # seconds wrote it every 5 s); each look with its own text, no more than
    # the progress pacing allows (one write per 5 s).
    def writes(error: Callable[[int], str]) -> int:
        if where == "flip":
            world: World = _promoting()
            _drive(ONE_STEP, world, 20, error)
            world.cap = 0  # type: ignore[attr-defined]
            flip = _drive(ONE_STEP, world, 60, error)
            assert world.state.promoting and world.state.flip_waits, world.reasons()
            return flip
        the_spec, world = _at_gate("pre-step")
        _drive(the_spec, world, 30, error)
        return _drive(the_spec, world, 60, error, gate_open=True)

    each_its_own, one_text = writes(_error), writes(lambda _: TIMEOUT)
    assert one_text <= 1, one_text
    assert each_its_own <= 60 / 5 + 1, each_its_own


@pytest.mark.parametrize("kind", ["pre-step", "pre-promotion"])
def test_a_gate_that_stays_closed_writes_no_status_for_each_time_it_is_asked(kind: str) -> None:
    # An approval gate closed for hours is asked again every interval; the
    # time of asking was written each time (6 status writes a minute per
    # waiting Service, an interval of 10 s). It is volatile now: lost on a
    # restart, the gate is asked once more at once.
    the_spec, world = _at_gate(kind)
    _drive(the_spec, world, 30, None)
    writes = _drive(the_spec, world, 60, None, gate_open=False)
    assert world.state.gate_wait == kind and "gate closed" in world.state.message
    assert writes == 0, writes


def test_a_rollout_halted_on_query_errors_writes_no_status_for_each_probe() -> None:
    # Prometheus down: halted on its errors, it is probed every interval.
    # Each probe wrote when it ran (`checked`) and the message flipped
    # between the probe's finding and "checking again" every cycle: 12
    # status writes a minute per halted Service for as long as the outage
    # lasted. When it was probed is volatile now, and the message keeps
    # what the last probe found.
    world = _serving(STRICT)
    for _ in range(STRICT.analysis.error_limit + 1):
        world.step(STRICT, result(Verdict.ERROR, TIMEOUT), advance=10)
    assert world.state.halt_kind == "errors", world.state
    _drive(STRICT, world, 20, lambda _: TIMEOUT)
    writes = _drive(STRICT, world, 60, lambda _: TIMEOUT)
    assert writes == 0, writes
    assert world.state.halt_kind == "errors" and "Prometheus still fails" in world.state.message
    # And it still resumes once Prometheus answers.
    _drive(STRICT, world, 12, None)
    assert not world.state.halted, world.state.message


def test_a_rollout_halted_on_late_answers_writes_no_status_for_each_probe() -> None:
    # Prometheus answers, but too late (an overloaded one, minutes of
    # evaluation): halted, it is probed every interval, and each late probe
    # wrote the status (where the next probe reads from, and the message
    # with the seconds it was late): a write per interval per halted
    # Service for as long as Prometheus stayed slow. Where the next probe
    # reads from is volatile now, and the message names the limit, not the
    # seconds of each answer.
    world = _serving(STRICT)
    for _ in range(STRICT.analysis.error_limit + 1):
        world.step(STRICT, result(Verdict.ERROR, TIMEOUT), advance=10)
    assert world.state.halt_kind == "errors", world.state
    _drive(STRICT, world, 20, None, late=16)
    writes = _drive(STRICT, world, 60, None, late=16)
    assert world.state.halt_kind == "errors" and "answers, but" in world.state.message
    assert writes == 0, writes
    # A late probe still moves the next one on (test_slow_prometheus), and
    # the rollout resumes once answers come in time.
    _drive(STRICT, world, 12, None)
    assert not world.state.halted, world.state.message
