"""Wrong verdicts found by review c of the analysis path (each test failed
on the code before its fix)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

from analysis.run import NEVER_SCRAPED_METRIC, StepContext, analyze
from analysis.verdicts import Verdict
from tests.unit.test_analysis_bad_day import (
    CANARY_RS,
    STABLE_RS,
    FakePrometheus,
    analysis,
    ctx,
    requests,
)
from tests.unit.test_canary_pods_unseen import PODS, SPEC, _never
from tests.unit.test_decide import serving_canary
from tests.unit.world import result, spec

# -- a canary pod Prometheus never scraped, at steps shorter than the grace -------------


def test_a_pod_never_scraped_through_every_short_step_is_no_data_not_a_pass() -> None:
    # The default interval (30 s) at a 15 s scrape: each step's window is
    # about 31 s. The canary's 3 pods turned ready 5 minutes ago (earlier
    # steps); Prometheus has never scraped one of them (a target not
    # discovered, over its sample limit). Before, never_scraped_grace
    # (90 s) was counted within the window, which never held 90 s of any
    # pod: the per-pod check was never asked, every step passed on the two
    # pods Prometheus saw, and the release was promoted with a third of its
    # requests in no query.
    prometheus = _never(seen=2.0)
    context = replace(
        _context(start=1000.0, now=1031.0),
        pods=PODS,
        ready_since=(700.0, 700.0, 700.0),
        serving_since=760.0,
    )
    result = asyncio.run(analyze(SPEC, context, prometheus))
    assert result.verdict is Verdict.NO_DATA, result.reason
    assert result.reason.startswith(f"{NEVER_SCRAPED_METRIC}: 1 of the canary's 3"), result.reason


def test_pods_ready_before_the_canary_served_get_their_grace_from_when_it_did() -> None:
    # Ready minutes ago, but the Service took the twin in 40 s ago (the
    # canary strategy waits for all its pods; a ServiceMonitor discovers
    # them only then): not asked about yet. Nor when that time is not
    # known (a status written before it was kept): the window's start.
    for serving_since in (991.0, 0.0):
        prometheus = _never(seen=None)
        context = replace(
            _context(start=1000.0, now=1031.0),
            pods=PODS,
            ready_since=(700.0, 700.0, 700.0),
            serving_since=serving_since,
        )
        result = asyncio.run(analyze(SPEC, context, prometheus))
        assert result.verdict is Verdict.PASS, (serving_since, result.reason)


def test_pods_ready_within_the_grace_are_still_not_asked_about() -> None:
    # Ready 60 s ago: their first scrapes may not be in yet, whatever the window.
    prometheus = _never(seen=None)
    context = replace(
        _context(start=1000.0, now=1031.0), pods=PODS, ready_since=(971.0, 971.0, 971.0)
    )
    result = asyncio.run(analyze(SPEC, context, prometheus))
    assert result.verdict is Verdict.PASS, result.reason


def _context(start: float, now: float) -> StepContext:
    return replace(ctx(start=start, now=now), scrape_known=True)


# -- a relative check's baseline from the other replica of an HA pair ------------------


@dataclass
class _Pair(FakePrometheus):
    """A Prometheus HA pair behind one URL (see test_backends_bad_day): the
    stable twin's baseline is answered by the replica that restarted
    without its data (an emptyDir) and holds only the window's last scrape;
    every other query, the stable twin's request count among them, by the
    one that holds the whole window."""

    whole: FakePrometheus = field(default_factory=FakePrometheus)
    restarted: FakePrometheus = field(default_factory=FakePrometheus)

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        baseline = STABLE_RS in promql and "/" in promql
        return await (self.restarted if baseline else self.whole).query(promql, at, timeout_s)


def test_a_baseline_from_a_replica_that_lost_the_window_does_not_roll_back_a_good_canary() -> None:
    # Both twins fail 2 % of their requests over the window (200 each).
    # The restarted replica holds the stable twin's last scrape alone: 10
    # requests, none failing. Before, the baseline was its 0 %, though the
    # request count beside it (200, the other replica's) vouched for a
    # whole window: the canary's 2 % was "above stable x1.5 and +0.5", and
    # a release as good as the stable one was rolled back. The baseline now
    # carries its own guard, as the canary's metric does: the replica that
    # computes it counted the requests it judged, or it is no data.
    relative = analysis(
        {
            "min-requests": 20,
            "metrics": [{"name": "error-rate", "relative": {"max-ratio": 1.5, "max-delta": 0.5}}],
        }
    )
    whole = FakePrometheus(
        series=requests(CANARY_RS, "code", 196.0, 4.0) + requests(STABLE_RS, "code", 196.0, 4.0)
    )
    restarted = FakePrometheus(
        series=requests(CANARY_RS, "code", 10.0, 0.0) + requests(STABLE_RS, "code", 10.0, 0.0)
    )
    checked = asyncio.run(analyze(relative, ctx(), _Pair(whole=whole, restarted=restarted)))
    assert checked.verdict is not Verdict.FAIL, checked.reason
    assert checked.verdict is Verdict.NO_DATA, checked.reason
    assert "no baseline of the stable twin" in checked.reason, checked.reason
    # One replica holding the whole window: the two twins compare as before.
    assert asyncio.run(analyze(relative, ctx(), whole)).verdict is Verdict.PASS


def test_the_rollout_keeps_when_its_canary_first_served() -> None:
    # Set when the first step serves, kept through the later steps (whose
    # pods from the first served all along), cleared with the rollout.
    the_spec = spec(steps="10,50")
    world = serving_canary(the_spec)
    first = world.state.step_ready
    assert first and world.state.serving_since == first
    world.step(the_spec, result(Verdict.PASS), advance=31)
    world.settle(the_spec)
    assert world.state.step == 1 and world.state.step_ready > first, world.reasons()
    assert world.state.serving_since == first
    world.step(the_spec, result(Verdict.PASS), advance=31)
    world.settle(the_spec)
    assert world.state.canary is None and world.state.serving_since == 0.0, world.reasons()
