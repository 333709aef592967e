"""Prometheus stops scraping for a while (a stall: an overloaded server, a
long GC pause) just as a scheduled check fails on the part of its window
before the stall. Found by bench.rollback_latency (2026-12-03, interval 30 s,
failure-limit 0): Prometheus stored no scrape for 23 s; the scheduled check
read the step's first 15 s, where a one-scrape blip the looks had already
cleared was 1.6 % of the requests (98.39 against min 99); the look at the
next scrape, which was to confirm or clear it, read nothing (no scrape), and
"cannot tell" counted the failure: a good release rolled back. A look that
reads nothing because Prometheus stored nothing of either twin now waits,
for up to an interval, for a look that reads a scrape."""

from __future__ import annotations

from dataclasses import replace

from analysis.run import StepResult, analyze
from analysis.verdicts import Verdict
from canary.model import Checked
from tests.unit.test_analysis_bad_day import (
    STABLE_RS,
    FakePrometheus,
    analysis,
    ctx,
    requests,
)
from tests.unit.test_decide import FAST, serving_canary
from tests.unit.world import result

SPEC = analysis({"metrics": [{"name": "success-rate", "min": 99}], "min-requests": 20})


def _look(stable_scraped: bool) -> FakePrometheus:
    # The canary's newest two scrapes hold nothing (no series of it in the
    # fake); the stable twin's hold its requests, or nothing either.
    return FakePrometheus(requests(STABLE_RS, "code", ok=500, errors=0) if stable_scraped else [])


async def test_a_look_that_reads_nothing_says_whether_prometheus_stalled() -> None:
    look = replace(ctx(start=1028.0, now=1030.0, scrape=1.0), scrape_known=True, confirming=True)
    stalled = await analyze(SPEC, look, _look(stable_scraped=False), fast=True)
    assert stalled.verdict is Verdict.NO_DATA and stalled.stalled, stalled
    assert "stalled" in stalled.reason
    # The stable twin's requests are there: the canary alone is missing.
    fresh = await analyze(SPEC, look, _look(stable_scraped=True), fast=True)
    assert fresh.verdict is Verdict.NO_DATA and not fresh.stalled, fresh


async def test_only_a_look_a_failure_waits_on_asks() -> None:
    look = replace(ctx(start=1028.0, now=1030.0, scrape=1.0), scrape_known=True)
    prom = _look(stable_scraped=False)
    quiet = await analyze(SPEC, look, prom, fast=True)
    assert not quiet.stalled
    assert len(prom.queries) == 1, prom.queries  # the canary's guard, no query more


def _stalled() -> StepResult:
    return replace(result(Verdict.NO_DATA, "0 requests to the canary"), stalled=True)


def test_a_failing_check_waits_for_a_look_that_reads_a_scrape() -> None:
    world = serving_canary(FAST)
    world.step(FAST, result(Verdict.FAIL, "success-rate = 98.39 (want >= 99)"), advance=10)
    assert world.state.suspected and world.state.failed == 0
    for _ in range(3):  # Prometheus stores nothing for three scrapes
        world.step(FAST, Checked("fast", _stalled(), world.now + 1), advance=1)
        assert world.state.failed == 0 and world.state.canary == "green", world.reasons()
    # Its scrapes come back: the blip is over, the newest scrape passes.
    world.step(FAST, Checked("fast", result(Verdict.PASS), world.now + 1), advance=1)
    assert world.state.failed == 0 and not world.state.suspected and world.state.canary == "green"
    assert world.state.window_start == world.now  # a whole passing interval again


def test_a_failing_check_confirmed_once_prometheus_stores_a_scrape_counts() -> None:
    world = serving_canary(FAST)
    world.step(FAST, result(Verdict.FAIL, "success-rate = 50"), advance=10)
    world.step(FAST, Checked("fast", _stalled(), world.now + 1), advance=1)
    world.step(FAST, Checked("fast", result(Verdict.FAIL), world.now + 1), advance=1)
    assert world.state.failed == 1, world.reasons()


def test_a_stall_longer_than_an_interval_counts_the_failure() -> None:
    world = serving_canary(FAST)
    world.step(FAST, result(Verdict.FAIL, "success-rate = 50"), advance=10)
    world.step(FAST, Checked("fast", _stalled(), world.now + 1), advance=1)
    assert world.state.failed == 0
    world.step(FAST, Checked("fast", _stalled(), world.now + 10), advance=10)
    assert world.state.failed == 1, world.reasons()


def test_a_look_that_cannot_tell_for_the_canarys_sake_still_counts() -> None:
    # Too few requests of the canary while Prometheus scrapes (not stalled):
    # counted, as before.
    world = serving_canary(FAST)
    world.step(FAST, result(Verdict.FAIL, "success-rate = 50"), advance=10)
    thin = result(Verdict.NO_DATA, "3 requests")
    world.step(FAST, Checked("fast", thin, world.now + 1), advance=1)
    assert world.state.failed == 1
