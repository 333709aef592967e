"""The automatic promotion's flip (and an open gate) goes only over what a
look has read. With `min-requests: 0` no request guard runs, and every
query of a fast look answers nothing both when the canary's pods are not
scraped (no series) and when they are and served no request (0/0 is NaN,
which the provider reports as None). The first is missing data, the
second the quiet app `min-requests: 0` lets through."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

import pytest

from analysis.run import StepResult, analyze
from analysis.verdicts import Verdict
from canary.controller import Controller
from canary.model import Checked
from canary.reconcile import Edges
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
from tests.unit.test_combined_review_2 import _Asked, _Kube
from tests.unit.test_decide import answer
from tests.unit.test_flip_while_prometheus_fails import ONE_STEP, _looks_answer, _promoting
from tests.unit.test_slow_prometheus import _at_gate
from tests.unit.world import World, result

UNGUARDED = analysis({"min-requests": 0, "metrics": [{"name": "success-rate", "min": 95}]})


def _fast_look(prometheus: FakePrometheus) -> StepResult:
    """A fast look over two scrapes (15 s each) of the promotion's canary."""
    context = replace(ctx(start=1000.0, now=1030.0), scrape_known=True)
    return asyncio.run(analyze(UNGUARDED, context, prometheus, fast=True))


def test_without_the_request_guard_the_flip_does_not_go_over_a_canary_not_scraped() -> None:
    # The canary grown to full size stops answering its scrapes (a release
    # thrashing under the load the promotion gives it): Prometheus holds no
    # series of it in the look's two scrapes, the stable twin's as ever.
    # Before, with min-requests 0, the look's "no data" counted as a read
    # and the Service flipped to a canary no one could see.
    unscraped = FakePrometheus(series=requests(STABLE_RS, "code", 600.0, 0.0))
    look = _fast_look(unscraped)
    assert look.verdict is Verdict.NO_DATA, look.reason
    world = _promoting()
    _looks_answer(world, look, 20)
    world.cap = 0  # every new pod ready
    _looks_answer(world, look, 60)
    assert "Promoted" not in world.reasons(), world.reasons()
    assert world.state.promoting and world.state.canary == "green"
    assert "pods not scraped" in world.state.message, world.state.message
    # Scraped again: the flip goes.
    _looks_answer(world, result(Verdict.PASS), 12)
    assert world.state.stable == "green", world.reasons()


def test_without_the_request_guard_a_scraped_canary_with_no_request_still_flips() -> None:
    # A quiet app: its pods are scraped, their counters exist and stand
    # still (0/0 is NaN, no data). That is what min-requests 0 lets
    # through, as a look with too few requests counts under the guard.
    quiet = FakePrometheus(
        series=requests(CANARY_RS, "code", 0.0, 0.0) + requests(STABLE_RS, "code", 0.0, 0.0)
    )
    look = _fast_look(quiet)
    assert look.verdict is Verdict.NO_DATA, look.reason
    world = _promoting()
    world.cap = 0
    _looks_answer(world, look, 30)
    assert world.state.stable == "green", world.reasons()


def test_without_the_request_guard_a_custom_metric_of_another_exporter_still_flips() -> None:
    # Custom queries only, and no series of the request metric for either
    # twin (the app exports another): nothing tells an unscraped canary from
    # a quiet one, and the flip goes as before rather than wait for good.
    custom = analysis(
        {
            "min-requests": 0,
            "metrics": [
                {
                    "name": "queue-errors",
                    "query": 'sum(rate(jobs_failed_total{pod=~"{{ pods }}"}[{{ window }}])) '
                    '/ sum(rate(jobs_total{pod=~"{{ pods }}"}[{{ window }}]))',
                    "max": 1,
                    "fast": True,
                }
            ],
        }
    )
    context = replace(ctx(start=1000.0, now=1030.0), scrape_known=True)
    look = asyncio.run(analyze(custom, context, FakePrometheus(), fast=True))
    assert look.verdict is Verdict.NO_DATA, look.reason
    world = _promoting()
    world.cap = 0
    _looks_answer(world, look, 30)
    assert world.state.stable == "green", world.reasons()


# -- a canary that hangs at the flip ---------------------------------------------------


@dataclass
class _Hung(FakePrometheus):
    """The canary served 200 requests over the last step's 40 s window and
    none in its newest two scrapes (30 s: the look's window): it hangs,
    its scrapes and readiness still answer. The stable twin serves on."""

    quiet: FakePrometheus = field(default_factory=FakePrometheus)

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        if "[30s]" in promql:
            self.queries.append(promql)
            return await self.quiet.query(promql, at, timeout_s)
        return await super().query(promql, at, timeout_s)


GUARDED = analysis({"min-requests": 20, "metrics": [{"name": "success-rate", "min": 95}]})


def _hung() -> _Hung:
    return _Hung(
        series=requests(CANARY_RS, "code", 200.0, 0.0) + requests(STABLE_RS, "code", 800.0, 0.0),
        quiet=FakePrometheus(
            series=requests(CANARY_RS, "code", 0.0, 0.0) + requests(STABLE_RS, "code", 600.0, 0.0)
        ),
    )


def _standing_look(prometheus: FakePrometheus, span: tuple[float, float]) -> StepResult:
    context = replace(ctx(start=1030.0, now=1060.0), scrape_known=True, served_span=span)
    return asyncio.run(analyze(GUARDED, context, prometheus, fast=True))


def test_the_flip_does_not_go_over_a_canary_that_hangs() -> None:
    # The canary grown to full size hangs under the load (a pool exhausted):
    # it answers no request, while its scrapes and its readiness probe do.
    # Its look reads 0 requests, which counted as "too few to tell", a read:
    # the Service flipped every request of production onto it.
    look = _standing_look(_hung(), span=(990.0, 1030.0))
    assert look.verdict is Verdict.NO_DATA, look.reason
    assert "it hangs" in look.reason, look.reason
    world = _promoting()
    _looks_answer(world, look, 20)  # the new pods starting
    world.cap = 0  # every new pod ready
    _looks_answer(world, look, 60)
    assert "Promoted" not in world.reasons(), world.reasons()
    assert world.state.promoting and world.state.canary == "green"
    assert "it hangs" in world.state.message, world.state.message
    # Answering again: the flip goes.
    _looks_answer(world, result(Verdict.PASS), 12)
    assert world.state.stable == "green", world.reasons()


def test_a_canary_quiet_all_along_still_flips() -> None:
    # Too few requests in the last step too (an app at night): nothing went
    # quiet, and a look too quiet to tell still counts, as documented.
    quiet = _Hung(
        series=requests(CANARY_RS, "code", 20.0, 0.0) + requests(STABLE_RS, "code", 60.0, 0.0),
        quiet=FakePrometheus(
            series=requests(CANARY_RS, "code", 0.0, 0.0) + requests(STABLE_RS, "code", 3.0, 0.0)
        ),
    )
    look = _standing_look(quiet, span=(990.0, 1030.0))
    assert "it hangs" not in look.reason, look.reason
    world = _promoting()
    world.cap = 0
    _looks_answer(world, look, 30)
    assert world.state.stable == "green", world.reasons()
    # And a look while the rollout moves asks nothing more (no span).
    moving = _standing_look(_hung(), span=(0.0, 0.0))
    assert "it hangs" not in moving.reason, moving.reason


def test_the_flips_looks_are_asked_with_the_last_steps_window() -> None:
    controller = Controller(Edges(kube=_Kube(), prometheus=None))  # type: ignore[arg-type]
    world = _promoting()
    asked = _Asked()
    controller.reconciler.checks = asked  # type: ignore[assignment]
    state = world.state
    controller.reconciler._start_checks(
        ("ns", "web"), ONE_STEP, state, world.observed(), world.now + 30
    )
    assert asked.contexts, "no look was asked for"
    assert asked.contexts[-1].served_span == (state.window_start, state.checked)
    assert state.checked - state.window_start >= 10


def _gate_with_looks(
    the_spec: RolloutSpec, world: World, look: StepResult, seconds: float, gate_open: bool
) -> None:
    end = world.now + seconds
    while world.now < end and world.state.canary is not None and world.state.gate_wait:
        due = analysis_due(the_spec, world.state, world.now, world.scrape, world.phase)
        checked = Checked(due.kind, look, due.end) if due is not None else None
        kind = gate_due(the_spec, world.state, world.now)
        world.gate = answer(str(kind), gate_open) if kind is not None else None
        world.step(the_spec, checked)
        world.now += 0.5


@pytest.mark.parametrize("which", ["not scraped", "hangs"])
def test_an_open_gate_does_not_move_on_over_a_canary_nobody_reads(which: str) -> None:
    # At a pre-step gate, the canary stops being scraped (min-requests 0) or
    # hangs; the approval comes a minute later. Before, the next step (twice
    # the traffic) began over it.
    if which == "not scraped":
        look = _fast_look(FakePrometheus(series=requests(STABLE_RS, "code", 600.0, 0.0)))
    else:
        look = _standing_look(_hung(), span=(990.0, 1030.0))
    the_spec, world = _at_gate("pre-step")
    step = world.state.step
    _gate_with_looks(the_spec, world, look, 60, gate_open=False)
    _gate_with_looks(the_spec, world, look, 60, gate_open=True)
    assert world.state.step == step and "StepAdvanced" not in world.reasons(), world.reasons()
    assert "no check has read the canary" in world.state.message, world.state.message
    _gate_with_looks(the_spec, world, result(Verdict.PASS), 30, gate_open=True)
    assert "StepAdvanced" in world.reasons(), world.reasons()
