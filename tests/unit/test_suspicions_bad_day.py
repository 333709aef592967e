"""Suspicions left by earlier reviews, proven on the code before each fix
(each test failed there)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from analysis.provider import QueryError
from analysis.run import analyze
from analysis.verdicts import Verdict
from canary.model import ScaleTwin
from canary.spec import TWIN_LABEL
from tests.unit.test_blue_green_bad_day import BG
from tests.unit.test_handback_bad_day import promoted
from tests.unit.test_newest_scrape import CTX, SPEC, _TurnedBad
from tests.unit.test_rebuildgone_bad_day import _orphan_cycles

# -- 1. the claim lagging behind an abort, then the Service deleted ----------------------


def test_an_orphan_after_an_abort_whose_claim_lags_never_hands_back_the_aborted_release() -> None:
    """r2 promoted (the claim names it), then aborted: the flip back to blue
    (r1) and the history's 'aborted' land, the claim's write after them
    does not (the cycle cut). The Service is then deleted. The orphan
    hand-back trusted the claim: green (r2) taken for the stable twin, blue
    (r1, what served) scaled to 0 and the team's Deployment, holding r2,
    handed back at full size: the aborted release all the app ran."""
    world = promoted()
    assert world.source.claim.stable_revision == "r2", world.source.claim
    world.action = "abort"
    world.step(BG, advance=1)
    assert world.selector[TWIN_LABEL] == "blue" and world.state.stable_revision == "r1"
    # The claim is written last, after the history (reconcile._after_record):
    # the cycle cut before it, the claim still names r2.
    world.source = replace(world.source, claim=replace(world.source.claim, stable_revision="r2"))
    assert "aborted" in [r.get("outcome") for r in world.records], world.records
    done = _orphan_cycles(world, cycles=12)
    assert ScaleTwin("blue", 0) not in done, done
    assert world.released and world.source.revision == "restored-blue", (done, world.source)
    assert any(e.reason == "SourceRestored" for e in world.events)


# -- 4. a vouching query Prometheus rejects over its short window ------------------------


class _NewestRejected(_TurnedBad):
    """The whole window answers; over the newest two scrapes Prometheus
    rejects the query text itself (400 bad_data): a template that renders
    an invalid range for a short window."""

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        if self.newest_window in promql:
            raise QueryError("Prometheus rejected the query: bad_data: invalid range", invalid=True)
        return await super().query(promql, at, timeout_s)


def test_a_scheduled_check_whose_newest_scrape_query_is_rejected_halts_as_invalid() -> None:
    """The newest scrape's look is the fast look's own query over the same
    two scrapes: a fast look that Prometheus rejects halts the rollout as
    InvalidSpec (the spec needs fixing, nothing about the release is
    known). The scheduled check's look dropped the flag: an error, checked
    again an interval later and counted towards error-limit, which rolls a
    release back whose only fault is the spec's query."""
    provider = _NewestRejected(newest_success=100.0)
    fast = asyncio.run(analyze(SPEC, replace(CTX, start=1008.0), provider, fast=True))
    assert fast.invalid, fast  # the fast look over those two scrapes
    result = asyncio.run(analyze(SPEC, CTX, provider))
    assert result.verdict is Verdict.ERROR and result.invalid, result
    assert "the newest scrape" in result.reason and "bad_data" in result.reason
