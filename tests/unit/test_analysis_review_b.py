"""Wrong verdicts found by a second adversarial review of the analysis path
(each test failed on the code before its fix)."""

from __future__ import annotations

import json

from analysis.provider import QueryError
from analysis.run import analyze
from analysis.verdicts import Verdict
from canary.model import Checked
from tests.unit.test_analysis_bad_day import (
    CANARY_RS,
    STABLE_RS,
    FakePrometheus,
    _second_step_serving,
    ctx,
    requests,
    success_rate_answered_with,
)
from tests.unit.world import result, spec

# -- 1. a query found invalid hides a failure in the same check -------------------------------


class _PerPod(FakePrometheus):
    """A custom query without sum(): one series per pod once the canary has
    grown to two, which the provider refuses as the spec's fault."""

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        if "queue_depth" in promql:
            self.queries.append(promql)
            raise QueryError(
                "query returned 2 series; wrap it in sum() or another aggregation", invalid=True
            )
        return await super().query(promql, at, timeout_s)


async def test_a_failing_metric_outranks_an_invalid_query_in_the_same_check() -> None:
    # README: "A failing metric outranks errors and missing data in the same
    # check." At the second step the canary has grown to two pods, so a
    # custom query without sum() returns two series (invalid: a spec to fix)
    # in the very check that finds the builtin error rate at 50 %. Before,
    # the result was `invalid` and the rollout halted (InvalidSpec): the
    # failure never counted, and a rollout halted on an invalid query is not
    # looked at (watched_standing), so the bad release kept serving its
    # errors at the step's weight until a person fixed the query.
    analysis = {
        "metrics": [
            {"name": "error-rate", "max": 1},
            {"name": "queue-depth", "query": 'queue_depth{pod=~"{{ pods }}"}', "max": 100},
        ]
    }
    strict = spec(steps="10,50", failure_limit="0", analysis=json.dumps(analysis))
    prom = _PerPod(requests(CANARY_RS, "code", 50, 50) + requests(STABLE_RS, "code", 100, 0))
    found = await analyze(strict.analysis, ctx(), prom)
    assert found.verdict is Verdict.FAIL, found.reason
    assert any("queue_depth" in q for q in prom.queries)  # it was asked, and refused

    world = _second_step_serving(strict)
    at = world.state.step_ready + strict.interval
    world.step(strict, Checked("scheduled", found, at), advance=strict.interval)
    assert world.state.halt_kind != "invalid", world.state.halted
    assert world.state.suspected, world.state  # the next scrape confirms it
    world.step(strict, Checked("fast", result(Verdict.FAIL), at + 1), advance=1)
    assert world.state.canary is None and "AnalysisFailed" in world.reasons(), world.reasons()


# -- 2. Thanos with no store for the query answers "success" with a warning ------------------


async def test_an_answer_no_store_matched_is_never_a_pass() -> None:
    # Thanos Querier whose store for these series is gone from its store set
    # (a sidecar unreachable, its Prometheus restarting; or a query whose
    # external-label matchers fit only that store) answers HTTP 200 with the
    # warning "No StoreAPIs matched for this query" and what the other
    # stores hold: nothing of the canary, which `or vector(0)` (the README's
    # own recipe for a share's numerator, or an error count's `max:`) turns
    # into 0 errors. The warning says the answer lacks data, as the others
    # refused already do; it said none of their words, and the step passed.
    warning = "No StoreAPIs matched for this query"
    result_ = await success_rate_answered_with({"warnings": [warning]})
    assert result_.verdict is Verdict.ERROR, result_.reason
    assert "without part of the data" in result_.reason and warning in result_.reason
