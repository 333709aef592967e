"""Second reading of the evening's fixes (review g): each test failed on the
code before its fix."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

from analysis.run import StepContext, StepResult, analyze
from analysis.verdicts import Verdict
from canary.controller import Controller
from canary.model import Checked, Color
from canary.reconcile import Edges
from canary.schedule import analysis_due
from canary.spec import RolloutSpec
from tests.unit.test_analysis_bad_day import FakePrometheus
from tests.unit.test_combined_review_2 import _Asked, _Kube
from tests.unit.test_flip_on_missing_data import _gate_with_looks
from tests.unit.test_standing_still import SlowCanary
from tests.unit.world import World, result, spec

BEFORE = "web-green-5f1c2a9e0b"  # the canary twin's ReplicaSet while it served its step
RESTARTED = "web-green-8d2e4f6a1c"  # the one `kubectl rollout restart` made
STABLE = "web-blue-7c4d1e2f3a"
STABLE_RESTARTED = "web-blue-3b9a0c7d5e"
SUFFIXES = ("aaaaa", "bbbbb", "ccccc", "ddddd", "eeeee", "fffff")

# `min-requests: 0`: the looks at an open gate (and at the flip) ask whether
# the canary's pods are scraped at all (analysis.run._scraped, 962d803).
GATED = spec(
    steps="25,50",
    failure_limit="0",
    analysis="min-requests: 0\nmetrics: [{name: success-rate, min: 95}]\n"
    "gates: [{name: approve, when: pre-step, url: 'http://127.0.0.1:1/x'}]",
)


def _requests(replica_set: str, ok: float) -> list[tuple[str, dict[str, str], float]]:
    """A pod of `replica_set` in the World's namespace, `ok` requests, none failing."""
    labels = {"namespace": "ns", "pod": f"{replica_set}-abcde"}
    return [
        ("http_requests_total", {**labels, "code": "200"}, ok),
        ("http_requests_total", {**labels, "code": "500"}, 0.0),
    ]


def _serving_twin(world: World, replica_set: str, color: Color = "green") -> None:
    twin = world.twins[color]
    pods = tuple(f"{replica_set}-{suffix}" for suffix in SUFFIXES[: twin.replicas])
    world.twins[color] = replace(twin, replica_set=replica_set, serving=pods)


def _look(the_spec: RolloutSpec, world: World, prometheus: FakePrometheus) -> StepResult:
    """The fast look the controller asks for now, answered by `prometheus`."""
    controller = Controller(Edges(kube=_Kube(), prometheus=None))  # type: ignore[arg-type]
    asked = _Asked()
    controller.reconciler.checks = asked  # type: ignore[assignment]
    state = replace(world.state, fast_checked=0.0)
    controller.reconciler._start_checks(
        ("ns", "web"), the_spec, state, world.observed(), world.now + 1
    )
    assert asked.contexts, "no look was asked for"
    context: StepContext = replace(asked.contexts[-1], scrape_known=True)
    return asyncio.run(analyze(the_spec.analysis, context, prometheus, fast=True))


def test_an_open_gate_reads_a_canary_restarted_while_it_waited() -> None:
    # The canary passed its first step and waits at a pre-step gate (an
    # approval that takes hours). Meanwhile on-call restarts its twin
    # (`kubectl rollout restart deployment/web-green`: a Secret the app reads
    # only at start was rotated): the same revision, a new ReplicaSet, which
    # Prometheus scrapes as ever. The looks kept querying the ReplicaSet the
    # step had served with, whose pods are gone: no series, "not scraped",
    # and the approved gate never moved on ("no check has read the canary").
    world = World().adopted(GATED)
    world.source = replace(world.source, revision="r2")
    world.settle(GATED)
    _serving_twin(world, BEFORE)
    world.step(GATED, advance=1)
    assert world.state.canary_pods == BEFORE
    world.step(GATED, result(Verdict.PASS), advance=10)
    assert world.state.gate_wait == "pre-step"
    step = world.state.step

    _serving_twin(world, RESTARTED)  # rolled: every pod is the new ReplicaSet's
    world.step(GATED, advance=1)
    prometheus = FakePrometheus(series=_requests(RESTARTED, 300.0) + _requests(STABLE, 900.0))
    look = _look(GATED, world, prometheus)
    _gate_with_looks(GATED, world, look, 60, gate_open=False)  # approved a minute later
    _gate_with_looks(GATED, world, look, 60, gate_open=True)
    assert world.state.step == step + 1, world.state.message


def _with_looks(the_spec: RolloutSpec, world: World, look: StepResult, seconds: float) -> None:
    end = world.now + seconds
    while world.now < end and world.state.canary is not None:
        due = analysis_due(the_spec, world.state, world.now, world.scrape, world.phase)
        world.step(the_spec, Checked(due.kind, look, due.end) if due is not None else None)
        world.now += 0.5


def test_the_flip_reads_a_canary_restarted_while_it_grew() -> None:
    # The last step passed; the canary grows to full size for the flip, its
    # new pods slow to start. On-call restarts the canary twin meanwhile
    # (`kubectl rollout restart`, no edit: kept). Every look kept querying
    # the ReplicaSet of the step, gone once the restart rolled: "not
    # scraped", and the flip waited for good, saying no check had read the
    # canary (Prometheus failing, or its pods not scraped?), which scrapes
    # as ever.
    one_step = spec(
        steps="25",
        failure_limit="0",
        analysis="min-requests: 0\nmetrics: [{name: success-rate, min: 95}]",
    )
    world = SlowCanary()
    world.adopted(one_step)
    world.source = replace(world.source, revision="r2")
    world.settle(one_step)
    _serving_twin(world, BEFORE)
    world.step(one_step, advance=1)
    assert world.state.canary_pods == BEFORE
    world.cap = 1
    world.step(one_step, result(Verdict.PASS), advance=10)
    assert world.state.promoting

    _serving_twin(world, RESTARTED)  # rolled: every pod is the new ReplicaSet's
    world.step(one_step, advance=1)
    prometheus = FakePrometheus(series=_requests(RESTARTED, 300.0) + _requests(STABLE, 900.0))
    look = _look(one_step, world, prometheus)
    _with_looks(one_step, world, look, 20)  # the new pods starting
    world.cap = 0  # every one ready
    _with_looks(one_step, world, look, 30)
    assert world.state.stable == "green" and "Promoted" in world.reasons(), world.state.message


@dataclass
class _Hung(FakePrometheus):
    """Over the newest two scrapes (`newest`: a fast look's window and the
    quiet check's), answered by `quiet`; over longer windows as given."""

    newest: str = "[2s]"
    quiet: FakePrometheus = field(default_factory=FakePrometheus)

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        if self.newest in promql:
            self.queries.append(promql)
            return await self.quiet.query(promql, at, timeout_s)
        return await super().query(promql, at, timeout_s)


def test_the_flip_still_finds_a_hung_canary_after_the_stable_twin_restarted() -> None:
    # The last step passed; the canary grows for the flip. On-call restarts
    # the stable twin meanwhile (a Secret both twins read only at start was
    # rotated): a new ReplicaSet. Then the canary hangs under its growth's
    # load: no request answered, its scrapes and readiness still answering.
    # The looks' quiet check (0c5d54f) asks whether the stable twin still
    # serves, of the ReplicaSet the step served with, gone: "nobody's
    # requests came", the look of 0 requests counted as read, and the
    # Service flipped all production traffic onto the hung canary.
    one_step = spec(steps="25", failure_limit="0")
    world = SlowCanary()
    world.adopted(one_step)
    world.source = replace(world.source, revision="r2")
    world.settle(one_step)
    _serving_twin(world, BEFORE)
    _serving_twin(world, STABLE, "blue")
    world.step(one_step, advance=1)
    assert (world.state.canary_pods, world.state.stable_pods) == (BEFORE, STABLE)
    world.cap = 1
    world.step(one_step, result(Verdict.PASS), advance=10)
    assert world.state.promoting

    _serving_twin(world, STABLE_RESTARTED, "blue")  # rolled: every stable pod restarted
    world.step(one_step, advance=1)
    hung = _Hung(
        series=_requests(BEFORE, 200.0) + _requests(STABLE_RESTARTED, 800.0),
        quiet=FakePrometheus(series=_requests(BEFORE, 0.0) + _requests(STABLE_RESTARTED, 60.0)),
    )
    look = _look(one_step, world, hung)
    _with_looks(one_step, world, look, 20)  # the new pods starting
    world.cap = 0  # every one ready
    _with_looks(one_step, world, look, 30)
    assert "Promoted" not in world.reasons(), look.reason
    assert world.state.promoting and "it hangs" in world.state.message, world.state.message
