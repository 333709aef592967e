"""VictoriaMetrics' flush at its edges: without the request guard
(`min-requests: 0`), with the dialect not known yet when a look starts, and
in what the quiet check says. Found by a review of the flush's first fixes;
each test failed on the code before its fix."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from types import SimpleNamespace

import pytest

from analysis.run import StepContext, StepResult, analyze, read_nothing
from analysis.verdicts import Measurement, Verdict
from canary import checks as checks_module
from canary.checks import Checks
from tests.unit.test_analysis_bad_day import (
    CANARY_RS,
    STABLE_RS,
    FakePrometheus,
    analysis,
    ctx,
    requests,
)
from tests.unit.test_canary_went_quiet import SPEC
from tests.unit.test_timing_review_i import CANARY, IDENT, KEY, _shell
from tests.unit.test_victoriametrics_flush import Flushed, on_busy_backend
from tests.unit.world import spec

# -- a canary gone quiet, on VictoriaMetrics --------------------------------------------------


@dataclass
class _HungOnVictoriaMetrics(FakePrometheus):
    """The whole window's increases as given; over the newest part the quiet
    check reads (two scrapes of 15 s and the flush: 34 s), the canary served
    nothing, the stable twin 150."""

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        newest = promql.startswith("sum(increase_prometheus(") and "[34s]" in promql
        if newest and "5.." not in promql:
            return 0.0 if CANARY_RS in promql else 150.0
        return await super().query(promql, at, timeout_s)


def test_a_quiet_canary_on_victoriametrics_is_told_with_the_rate_it_read() -> None:
    """On VictoriaMetrics the quiet check reads the newest two scrapes and a
    flush (34 s at a 15 s scrape): 400 requests in 120 s promise 113 there,
    100 per two scrapes. The reason said "averaged 113 per two scrapes" and
    "its newest two scrapes (34s)": a rate a flush's worth too high (at a
    1 s scrape three times), over a span that is not two scrapes."""
    series = requests(CANARY_RS, "code", 400.0, 0.0) + requests(STABLE_RS, "code", 1200.0, 0.0)
    prometheus = _HungOnVictoriaMetrics(series=series)
    context = replace(ctx(start=1000.0, now=1120.0), scrape_known=True, metricsql=True)
    result = asyncio.run(analyze(SPEC, context, prometheus))
    assert result.verdict is Verdict.NO_DATA, result.reason
    assert "newest two scrapes and a flush (34s)" in result.reason, result.reason
    assert "averaged 113 per 34s" in result.reason, result.reason
    assert "per two scrapes" not in result.reason, result.reason


# -- the deadline of a look in flight, its dialect found while it waited to start -------------


@dataclass
class _Unscraped:
    """A VictoriaMetrics whose start-up check has not answered yet
    (`metricsql` None) and that holds no sample of the canary: each query
    takes `takes` seconds of the shell's clock."""

    clock: list[float]
    takes: float
    metricsql: bool | None = None
    clock_offset: float = 0.0

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        self.clock[0] += self.takes
        return None


def test_a_look_started_before_the_dialect_was_known_exports_its_flush_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A look is started while VictoriaMetrics' start-up check has not
    answered (a VictoriaMetrics busy at the controller's start), and the
    check answers before the look's queries go out: they go out in
    MetricsQL, and the look waits for the flush (6 more tries at a 1 s
    scrape, each given the analysis's time). Its deadline, exported as the
    rollout's next decision, was computed from the dialect as guessed when
    it started (PromQL: 2 more tries): a look whose every try took most
    of its time came back 109 s after that deadline, and CanaryRolloutStuck
    (2 minutes past it) was all but paging on a controller at work."""
    clock = [5000.0]
    monkeypatch.setattr(checks_module, "time", SimpleNamespace(time=lambda: clock[0]))

    async def pause(seconds: float) -> None:
        clock[0] += seconds

    monkeypatch.setattr(checks_module, "_pause", pause)
    the_spec = analysis({"min-requests": 5, "metrics": [{"name": "success-rate", "min": 99}]})
    given = checks_module._time_given(the_spec)
    backend = _Unscraped(clock, takes=given - 5.0)
    context = StepContext(CANARY, None, 4998.0, 5000.0, 30.0, scrape_s=1.0, scrape_known=True)

    async def scenario() -> tuple[float, float]:
        checks = Checks(backend, None, lambda key: None)  # type: ignore[arg-type]
        checks.start_analysis(KEY, IDENT, "fast", the_spec, context)
        deadline = checks.finish_by(KEY)
        assert deadline is not None
        backend.metricsql = True  # its start-up check answers: VictoriaMetrics
        await checks._analyses[KEY][1]  # the look, to its end
        assert checks.take_analysis(KEY, IDENT) is not None
        return deadline, clock[0]

    deadline, done = asyncio.run(scenario())
    assert done <= deadline, f"back {done - deadline:.0f}s after its exported deadline"


# -- a look without the request guard, on VictoriaMetrics ----------------------------------------


@pytest.mark.parametrize("metricsql", [True, False])
def test_one_bad_scrape_is_not_confirmed_by_a_guardless_look_that_read_nothing(
    metricsql: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As test_victoriametrics_flush's one bad scrape before a check, with
    `min-requests: 0` (no request guard). A look waits for VictoriaMetrics'
    flush only when its request guard found no sample (no_sample), and a
    look without one has none: at a 1 s scrape the look that was to
    confirm or clear the failing check read its two scrapes before their
    flush, every metric empty, and a look that cannot tell counts the
    failure. With `failure-limit: 0` the good release was rolled back on a
    blip Prometheus's next look clears (it promoted)."""
    the_spec = spec(steps="50", interval="20s", failure_limit="0", analysis="min-requests: 0")
    world, backend = on_busy_backend(the_spec, 0.2, metricsql)
    backend.blip_from, backend.blip_to = world.now + 18.4, world.now + 19.2
    _shell(the_spec, world, backend, 60.0, monkeypatch)
    assert world.state.canary is None and "Promoted" in world.reasons(), world.reasons()


def test_a_lasting_failure_without_the_request_guard_is_still_rolled_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    the_spec = spec(steps="50", interval="20s", failure_limit="0", analysis="min-requests: 0")
    world, backend = on_busy_backend(the_spec, 0.2)
    backend.blip_from = world.now + 10.4  # and it lasts
    _shell(the_spec, world, backend, 60.0, monkeypatch)
    assert world.state.canary is None and "RolledBack" in world.reasons(), world.reasons()
    assert world.now - backend.blip_from < 7.0


# -- the newest-scrape check without the request guard, on VictoriaMetrics -----------------------


@pytest.mark.parametrize("metricsql", [True, False])
async def test_a_check_without_the_guard_whose_newest_searchable_scrape_fails_does_not_pass(
    metricsql: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As test_victoriametrics_flush's newest searchable scrape that fails,
    with `min-requests: 0`: no request guard, so the canary's newest sample
    is not measured and the newest-scrape check's two scrapes ended at the
    check's time. On VictoriaMetrics at a 1 s scrape they held no flushed
    sample (the newest searchable one 4.2 s old), the check read nothing,
    and the window's pass stood over a newest searchable scrape in which
    half the requests failed. On Prometheus (the same failing scrape, its
    newest) the check failed, before and after."""
    now = 1020.5
    monkeypatch.setattr(checks_module, "time", SimpleNamespace(time=lambda: now))
    backend = Flushed(phase=1000.3, scrape=1.0, delay=0.1, flushed=1001.2, metricsql=metricsql)
    # Half failing in the newest searchable scrape: 1016.3 on VictoriaMetrics
    # (flushed at 1017.2, the next flush at 1021.2), 1020.3 on Prometheus.
    backend.blip_from = 1016.0 if metricsql else 1020.0
    backend.blip_to = backend.blip_from + 0.3
    the_spec = analysis({"min-requests": 0, "metrics": [{"name": "success-rate", "min": 99}]})
    context = StepContext(CANARY, None, 1000.0, now, 30.0, scrape_s=1.0, scrape_known=True)
    checked = await analyze(the_spec, replace(context, metricsql=metricsql), backend)
    assert checked.verdict is Verdict.FAIL, checked.reason
    assert "newest scrape" in checked.reason, checked.reason


def test_a_guardless_look_whose_canary_read_nothing_waits_whatever_the_baseline_read() -> None:
    """The stable twin's baseline of a relative metric may have been flushed
    (another shard) while the canary's scrapes were not: the look still read
    nothing of the canary, and waits for the flush."""
    empty = Measurement("success-rate", "green", "q", 0.0, 1.0, None, ">= 99", Verdict.NO_DATA, 1.0)
    baseline = replace(empty, twin="blue", value=99.9, verdict=Verdict.PASS, baseline=True)
    looked = StepResult(Verdict.NO_DATA, (empty, baseline), "success-rate: no data")
    assert read_nothing(looked)
    assert not read_nothing(replace(looked, measurements=(replace(empty, value=98.0), baseline)))
