"""What on-call reads must be what is observed (review rev-f): every time
`canary status -o json` prints."""

from __future__ import annotations

from dataclasses import fields

from canary import jsonout
from canary.model import State


def test_status_json_prints_every_time_as_rfc3339() -> None:
    """README: `-o json` prints every time as RFC 3339 (UTC), null when
    unset. fast_failed, fast_checked, looked, woken and source_scaled_at
    came out as epoch seconds, read by a script as numbers (or 1970)."""
    at = 1764408690.25  # 2025-11-29T09:31:30.250Z
    times = [f.name for f in fields(State) if f.type == "float" and f.name != "effective_weight"]
    shown = jsonout.status({**State().to_json(), **dict.fromkeys(times, at)})
    wrong = {k: shown[k] for k in times if shown[k] != "2025-11-29T09:31:30.250Z"}
    assert not wrong, wrong
    unset = jsonout.status(State().to_json())
    assert all(unset[k] is None for k in times)
