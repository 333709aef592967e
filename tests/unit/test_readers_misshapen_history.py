"""6e0bc2c made history.load() treat an entry of another shape as corrupt
(read as empty). That is right for the controller, but `canary status` and
`canary wait` read through history.load() too: one hand-edited field in any
entry (even an old, unrelated one) made them lose the whole history, and the
"left out" warning of 654e7cd was never said."""

from __future__ import annotations

from canary import oncall
from canary import wait as waiting
from canary.release_outcome import Outcome
from tests.unit.test_dashboard_bad_day import IN_FLIGHT
from tests.unit.test_oncall_unreadable import (
    REV,
    T0,
    Kube,
    _WaitKube,
    check,
    entry,
    measurement,
)

# An older entry edited by hand: `"ended": "yesterday"`.
OLD = {**entry([], []), "number": 1, "revision": "aaaaaaaaaa", "ended": "yesterday"}


async def test_wait_reads_a_history_with_one_misshapen_entry_piece_by_piece() -> None:
    halted = {**IN_FLIGHT, "phase": "Halted", "halted": "error-rate = 7.5"}
    records = [OLD, {**entry([check(1, measurements=[measurement()])], []), "number": 2}]
    kube = _WaitKube(halted, records)
    told: list[str] = []
    request = waiting.Request("shop", "web", revision=REV, timeout_s=5)
    result = await waiting.wait(kube, request, told.append)  # type: ignore[arg-type]
    assert result.settled.outcome is Outcome.HALTED, result.settled
    assert [m["metric"] for m in result.settled.failing] == ["error-rate"], result.settled
    warnings = [t for t in told if t.startswith("warning:")]
    assert len(warnings) == 1 and "ended" in warnings[0], told


async def test_status_says_why_over_a_history_with_one_misshapen_entry() -> None:
    held = {**IN_FLIGHT, "phase": "RolledBack", "failed_revision": REV, "canary": None}
    bad = {**entry([check(1)], [], outcome="rolled-back", ended=T0 + 200), "number": 2}
    kube = Kube(held, [OLD, bad])
    item = (await oncall.status(kube, "shop", "web"))[0]  # type: ignore[arg-type]
    assert [m["value"] for m in item["rolled_back"]["failing"]] == [7.5], item
