"""Interactions between the changes merged together (the per-pod checks,
the combined review's fixes, the operations review): found by a second
combined review. Each test failed before its fix."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from analysis.provider import QueryError
from analysis.run import StepContext
from analysis.verdicts import Verdict
from canary.checks import Checks
from canary.model import Checked
from tests.unit.test_analysis_bad_day import _prometheus as _analysis_prometheus
from tests.unit.test_analysis_bad_day import analysis, ctx

KEY = ("shop", "web")


class _NoWebhooks:
    """No gate is asked here."""


async def _checked(checks: Checks, context: StepContext) -> Checked:
    spec = analysis({"min-requests": 1, "metrics": [{"name": "success-rate", "min": 99}]})
    checks.start_analysis(KEY, ("r2", 0), "scheduled", spec, context)
    for _ in range(500):
        await asyncio.sleep(0.01)
        if (done := checks.take_analysis(KEY, ("r2", 0))) is not None:
            return done
    raise AssertionError("the check never finished")


async def test_a_check_while_the_dialect_probe_is_unanswered_is_not_judged_as_promql() -> None:
    """VictoriaMetrics busy at the controller's start: vector(1) answered,
    the dialect probe (increase_prometheus) a 503. The start-up check fails
    and is asked again (run.until_answered), but the controller runs
    meanwhile, and its checks were judged in PromQL's dialect: rate() and
    increase(), which VictoriaMetrics reads one scrape further back, so one
    bad scrape counted twice (with failure-limit 0 a good release rolled
    back). Until the dialect is known a check is an error (counted as when
    the backend fails), never a verdict in a dialect guessed."""

    def victoriametrics(url: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if "increase_prometheus(canary_dialect_probe" in params["query"]:
            return 503, {"status": "error", "errorType": "unavailable", "error": "busy"}
        value = [1030.0, "120"]
        return 200, {"status": "success", "data": {"result": [{"metric": {}, "value": value}]}}

    prom, transport = _analysis_prometheus(victoriametrics)
    try:
        with pytest.raises(QueryError):
            await prom.check()
        transport.sent.clear()
        checks = Checks(prom, _NoWebhooks(), lambda key: None)  # type: ignore[arg-type]
        done = await _checked(checks, ctx())
        queries = [p.get("query", "") for p in transport.sent]
        assert not any("increase(" in q or "rate(" in q for q in queries), queries
        assert done.result.verdict is Verdict.ERROR, done.result
        assert "dialect" in done.result.reason, done.result.reason
    finally:
        prom.close()
