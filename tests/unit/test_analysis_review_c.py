"""Wrong verdicts found by review c of the analysis path (each test failed
on the code before its fix)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from analysis.run import NEVER_SCRAPED_METRIC, StepContext, analyze
from analysis.verdicts import Verdict
from tests.unit.test_analysis_bad_day import ctx
from tests.unit.test_canary_pods_unseen import PODS, SPEC, _never

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
        _context(start=1000.0, now=1031.0), pods=PODS, ready_since=(700.0, 700.0, 700.0)
    )
    result = asyncio.run(analyze(SPEC, context, prometheus))
    assert result.verdict is Verdict.NO_DATA, result.reason
    assert result.reason.startswith(f"{NEVER_SCRAPED_METRIC}: 1 of the canary's 3"), result.reason


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
