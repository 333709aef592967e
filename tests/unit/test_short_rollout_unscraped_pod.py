"""A rollout of one or two 30 s steps at a 15 s scrape: a serving canary
pod Prometheus never scraped was never asked about, since
canary-pods-never-scraped waits out a grace of 90 s (discovery, a first
scrape) that no check of so short a rollout reaches; the release was
promoted on the other pods' requests. The last step's check now asks
about the pods still in their grace too: one with a sample costs nothing,
one without holds the promotion, uncounted, until it has one or the grace
is over (then canary-pods-never-scraped counts it as no data)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from analysis.run import NOT_YET_METRIC, StepContext, StepResult, analyze
from analysis.verdicts import Measurement, Verdict
from canary.controller import Controller
from canary.reconcile import Edges
from tests.unit.test_analysis_bad_day import ctx
from tests.unit.test_canary_pods_unseen import PODS, SPEC, _never
from tests.unit.test_combined_review_2 import _Asked, _Kube
from tests.unit.test_flip_while_prometheus_fails import ONE_STEP, _slow_canary
from tests.unit.test_oncall_bad_night import serving_canary
from tests.unit.world import result, spec

# The last step began at 1000 and its pods turned ready then (the canary
# first served 30 s earlier, at step 1): its check, at 1031, is 61 s into
# their service, within the 90 s grace.
LAST_STEP = replace(
    ctx(start=1000.0, now=1031.0),
    scrape_known=True,
    pods=PODS,
    ready_since=(1000.0, 1000.0, 1000.0),
    serving_since=970.0,
)


def _checked(context: StepContext, seen: float) -> StepResult:
    return asyncio.run(analyze(SPEC, context, _never(seen=seen)))


def test_the_last_steps_check_waits_for_a_pod_not_scraped_yet() -> None:
    # One of three serving pods has no sample at all. Before, the window's
    # pass stood on the other two and the release was promoted.
    checked = _checked(replace(LAST_STEP, promotes=True), seen=2.0)
    assert checked.verdict is Verdict.NO_DATA and checked.waiting, checked.reason
    assert checked.reason.startswith(f"{NOT_YET_METRIC}: 1 of the canary's 3"), checked.reason


def test_no_wait_when_every_pod_is_scraped_nor_before_the_last_step() -> None:
    assert _checked(replace(LAST_STEP, promotes=True), seen=3.0).verdict is Verdict.PASS
    # An earlier step: a later one asks about the pod once past its grace.
    assert _checked(LAST_STEP, seen=2.0).verdict is Verdict.PASS


def test_past_the_grace_the_pod_is_never_scraped_and_counts_as_no_data() -> None:
    late = replace(LAST_STEP, now=1091.0, start=1060.0, promotes=True)
    checked = _checked(late, seen=2.0)
    assert checked.verdict is Verdict.NO_DATA and not checked.waiting, checked.reason


def _waiting() -> StepResult:
    m = Measurement(NOT_YET_METRIC, "green", "q", 0.0, 1.0, 2.0, ">= 3", Verdict.NO_DATA, 1.0)
    return StepResult(Verdict.NO_DATA, (m,), f"{NOT_YET_METRIC}: 1 pod", waiting=True)


def test_the_wait_holds_the_promotion_without_counting_towards_no_data_limit() -> None:
    world = _slow_canary(ONE_STEP)
    for _ in range(5):  # more than no-data-limit (3): a first scrape, not the release
        world.step(ONE_STEP, _waiting(), advance=10)
    assert "PromotionStarted" not in world.reasons(), world.reasons()
    assert "RolloutHalted" not in world.reasons() and not world.state.halted
    assert world.state.no_data == 0
    assert NOT_YET_METRIC in world.state.message, world.state.message
    world.step(ONE_STEP, result(Verdict.PASS), advance=10)
    assert "PromotionStarted" in world.reasons(), world.reasons()


def test_only_the_last_steps_scheduled_check_is_asked_to_promote() -> None:
    controller = Controller(Edges(kube=_Kube(), prometheus=None))  # type: ignore[arg-type]
    for steps, promotes in (("25", True), ("25,50", False)):
        the_spec = spec(steps=steps)
        world = serving_canary()
        world.step(the_spec, advance=1)
        asked = _Asked()
        controller.reconciler.checks = asked  # type: ignore[assignment]
        state = replace(world.state, checked=0.0, fast_checked=world.now + 999)
        controller.reconciler._start_checks(
            ("ns", "web"), the_spec, state, world.observed(), world.now + 60
        )
        assert asked.contexts, "no check was asked for"
        assert asked.contexts[-1].promotes is promotes, steps
