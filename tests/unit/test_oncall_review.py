"""What on-call reads on a bad day (CLI, timeline, /metrics), found by an
adversarial review; each test failed before its fix."""

from __future__ import annotations

from canary import oncall
from tests.unit.test_dashboard_bad_day import IN_FLIGHT, FakeKube, svc

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


# -- 1. a status that is a JSON object of the wrong types -----------------------------------


async def test_cli_status_survives_a_status_object_with_fields_of_the_wrong_type() -> None:
    """`kubectl edit` leaves `"step": "1"` or `"effective_weight": null`: still
    a JSON object, so oncall._status passed it through and status_rows did
    `"1" + 1` (TypeError): `canary status -A` died with a traceback and
    showed no Service at all. The controller reads such a status through
    State.from_json (a numeric string is taken as the number; anything else
    is rebuilt), and the CLI must read it the same way."""
    coerced = svc({**IN_FLIGHT, "step": "1", "effective_weight": "25"})
    item = (await oncall.status(FakeKube(coerced), "shop", None))[0]  # type: ignore[arg-type]
    text = oncall.status_text([item], color=False)
    assert "Progressing" in text and "25%/25%" in text, text
    broken = svc({**IN_FLIGHT, "effective_weight": None, "step": "two"})
    item = (await oncall.status(FakeKube(broken), "shop", None))[0]  # type: ignore[arg-type]
    text = oncall.status_text([item], color=False)
    assert "Unreadable" in text and "step" in text, text
