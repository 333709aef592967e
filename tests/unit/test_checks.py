"""A finished check is judged by exactly one cycle whose writes landed."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from analysis.gate_results import GateResult
from analysis.run import StepContext, StepResult
from analysis.spec import AnalysisSpec
from analysis.templates import Target
from analysis.verdicts import Verdict
from canary import checks as checks_module
from canary.checks import Checks
from canary.model import Checked


class _Unused:
    """Neither Prometheus nor a webhook is asked in these tests."""


def _checks() -> Checks:
    return Checks(_Unused(), _Unused(), lambda key: None)  # type: ignore[arg-type]


KEY = ("shop", "web")


def test_a_check_taken_by_a_cycle_that_failed_is_judged_again_by_the_retry() -> None:
    checks = _checks()
    done = Checked("scheduled", StepResult(Verdict.FAIL, (), "success-rate = 50"), 100.0)
    checks.put_back_analysis(KEY, ("r2", 0), done)
    assert checks.analysing(KEY)  # no new analysis is started while it waits
    assert checks.take_analysis(KEY, ("r2", 0)) == done
    assert checks.take_analysis(KEY, ("r2", 0)) is None


def test_a_newer_check_wins_over_one_put_back() -> None:
    checks = _checks()
    newer = Checked("fast", StepResult(Verdict.PASS, (), "ok"), 105.0)
    checks.put_back_analysis(KEY, ("r2", 0), newer)  # stands for one that finished meanwhile
    checks.put_back_analysis(KEY, ("r2", 0), Checked("fast", newer.result, 100.0))
    assert checks.take_analysis(KEY, ("r2", 0)) == newer


def test_a_check_put_back_for_a_step_the_rollout_left_is_dropped() -> None:
    checks = _checks()
    checks.put_back_analysis(KEY, ("r2", 0), Checked("fast", StepResult(Verdict.PASS, (), ""), 1))
    assert checks.take_analysis(KEY, ("r2", 1)) is None


def test_a_gate_answer_is_kept_for_the_retry() -> None:
    checks = _checks()
    answer = GateResult("confirm-promotion", ())
    checks.put_back_gate(KEY, ("r2", "confirm"), answer)
    assert checks.take_gate(KEY, ("r2", "confirm")) == answer


def test_a_check_queued_behind_others_reads_up_to_when_it_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Checks._limit bounds how many Services query at once; a check
    waiting there (many rollouts, a Prometheus a little slow) asked
    Prometheus about a window that ended when it was queued. A scheduled
    pass was then judged more than two scrapes late (judging.answered_late):
    counted as a Prometheus error and, past error-limit, halted, though its
    queries were answered at once; a fast look's Checked.at was as old, so
    an open gate found no recent look (looks.unlooked) and waited again
    and again. Our own queue is no gap in what Prometheus read: the window
    ends when its queries go out (a fast look's still two scrapes wide)."""
    clock = [100.0]
    monkeypatch.setattr(checks_module, "time", SimpleNamespace(time=lambda: clock[0]))
    release = asyncio.Event()
    asked: list[StepContext] = []

    async def slow_analyze(
        spec: AnalysisSpec, ctx: StepContext, provider: object, *, fast: bool = False
    ) -> StepResult:
        asked.append(ctx)
        await release.wait()
        return StepResult(Verdict.PASS, (), "ok")

    monkeypatch.setattr(checks_module, "analyze", slow_analyze)

    async def scenario(kind: str, context: StepContext) -> Checked:
        checks = Checks(_Unused(), _Unused(), lambda key: None, 1)  # type: ignore[arg-type]
        spec = AnalysisSpec(min_requests=0)
        checks.start_analysis(("shop", "other"), ("r2", 0), "scheduled", spec, context)
        await asyncio.sleep(0)
        checks.start_analysis(KEY, ("r2", 0), kind, spec, context)
        await asyncio.sleep(0)
        clock[0] = 160.0  # the other Service's queries took a minute
        release.set()
        for _ in range(100):
            await asyncio.sleep(0)
            if (done := checks.take_analysis(KEY, ("r2", 0))) is not None:
                return done
        raise AssertionError("the queued check never finished")

    target = Target("shop", "web", "green", "web-green-.*")
    scheduled = StepContext(target, None, 40.0, 100.0, 60.0, scrape_s=15.0)
    done = asyncio.run(scenario("scheduled", scheduled))
    assert done.at == 160.0 and (asked[-1].start, asked[-1].now) == (40.0, 160.0), asked[-1]

    clock[0], release, asked = 100.0, asyncio.Event(), []
    fast = StepContext(target, None, 70.0, 100.0, 60.0, scrape_s=15.0)
    done = asyncio.run(scenario("fast", fast))
    assert done.at == 160.0 and (asked[-1].start, asked[-1].now) == (130.0, 160.0), asked[-1]


def test_a_fast_look_asked_to_read_further_back_keeps_its_window_when_run_late() -> None:
    """A look that reads every scrape since a failing one (or since looks too
    quiet to tell: schedule.fast_start) was cut to two scrapes when it ran
    a few milliseconds after it was asked (_when_run): at a low weight that
    is one scrape's requests, too few to tell, look after look, and the
    failing canary waited for its scheduled check (bench.peers: 9 s p50
    from the first failing scrape to its rollback)."""
    target = Target("shop", "web", "green", "web-green-.*")
    wide = StepContext(target, None, 95.0, 100.0, 10.0, scrape_s=1.0)
    asked = checks_module._when_run("fast", wide, 100.01)
    assert (asked.start, asked.now) == (95.0, 100.01)
    standard = StepContext(target, None, 98.0, 100.0, 10.0, scrape_s=1.0)
    asked = checks_module._when_run("fast", standard, 100.5)
    assert (asked.start, asked.now) == (98.5, 100.5)
