"""The Lease goes to a replica whose host clock is behind the one that
wrote the status (a rolling upgrade, a crash), or the controller restarts
after its host's clock was stepped back: the status's times of what
happened are "in the future". The looks go on at once."""

from __future__ import annotations

from analysis.verdicts import Verdict
from tests.unit.test_standing_still import STRICT, _drive, _serving

MINUTE = 60.0


def test_a_leader_whose_clock_is_behind_the_last_ones_looks_at_the_canary_at_once() -> None:
    # Before, no check or look was due until this clock had caught up with
    # them: a canary failing every request served at its weight for 5 minutes.
    world = _serving(STRICT)
    world.step(STRICT, advance=2)
    world.now -= 5 * MINUTE
    started = world.now
    _drive(STRICT, world, Verdict.FAIL, 60)
    assert world.state.canary is None, "still serving after 60 s of failures"
    assert "AnalysisFailed" in world.reasons() and world.state.stable == "blue"
    assert world.now - started <= 3 * world.scrape, world.now - started
