"""A finished check is judged by exactly one cycle whose writes landed."""

from __future__ import annotations

from analysis.gate_results import GateResult
from analysis.run import StepResult
from analysis.verdicts import Verdict
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
