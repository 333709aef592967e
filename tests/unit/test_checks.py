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


class _Held:
    """A Prometheus whose answers wait until released (a slow one)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.asked_at: list[float] = []

    async def query(self, query: str, at: float, timeout: float) -> float | None:
        self.asked_at.append(at)
        await self.release.wait()
        return 1.0


def test_a_scheduled_check_queued_behind_others_reads_up_to_when_it_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Checks._limit bounds how many Services query at once; a scheduled
    check waiting there (many rollouts, a Prometheus a little slow) asked
    Prometheus about a window that ended when it was queued, and was then
    judged more than two scrapes late (rollout.answered_late): counted as a
    Prometheus error and, past error-limit, halted, though the queries were
    answered at once. Our own queue is no gap in what Prometheus read: the
    window ends when its queries go out."""
    clock = [100.0]
    monkeypatch.setattr(checks_module, "time", SimpleNamespace(time=lambda: clock[0]))

    async def scenario() -> Checked:
        provider = _Held()
        checks = Checks(provider, _Unused(), lambda key: None, 1)  # type: ignore[arg-type]
        spec = AnalysisSpec(min_requests=0)
        target = Target("shop", "web", "green", "web-green-.*")
        first = StepContext(target, None, 40.0, 100.0, 60.0, scrape_s=15.0)
        checks.start_analysis(("shop", "other"), ("r2", 0), "scheduled", spec, first)
        await asyncio.sleep(0)
        checks.start_analysis(KEY, ("r2", 0), "scheduled", spec, first)
        await asyncio.sleep(0)
        clock[0] = 160.0  # the first Service's queries took a minute
        provider.release.set()
        for _ in range(100):
            await asyncio.sleep(0)
            if (done := checks.take_analysis(KEY, ("r2", 0))) is not None:
                assert provider.asked_at[-1] == 160.0, provider.asked_at
                return done
        raise AssertionError("the queued check never finished")

    done = asyncio.run(scenario())
    assert done.at == 160.0, done.at
