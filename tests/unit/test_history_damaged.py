"""A history ConfigMap edited by hand into shapes the controller never
writes: the controller must go on serving the Service (a rollback above
all), never fail every cycle on it."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from analysis.verdicts import Verdict
from canary import history, readable
from tests.unit.test_record_carried import _promoted, _release

DAMAGE: list[tuple[str, Any]] = [
    ("", None),  # undamaged: what the others must do too
    ("ended", "x"),
    ("started", "yesterday"),
    ("number", "one"),
    ("actions", "abc"),
    ("actions", [1, 2]),
    ("checks", "abc"),
    ("checks", [{"measurements": "abc"}]),  # only readers look inside a check
    ("template", "abc"),
    ("outcome", 7),
    ("revision", None),  # a missing field: as an older controller wrote
]


@pytest.mark.parametrize(("field", "value"), DAMAGE)
def test_a_hand_damaged_history_never_stops_a_rollout(field: str, value: Any) -> None:
    shell = _promoted("25,50")
    configmap = shell.informers[3].get("ns", "web-canary-history")
    records = history.load(configmap)
    whole = copy.deepcopy(records[1])
    if field:
        records[0][field] = value
    damaged = copy.deepcopy(configmap)
    damaged["data"][history.DATA_KEY] = json.dumps(records)
    shell.informers[3].remember(damaged)
    revision = _release(shell, "web:v3")
    assert revision, shell.status()
    shell.checks.verdict = Verdict.FAIL
    for _ in range(6):
        shell.ask_now()
        shell.cycle()
    assert not shell.failures, shell.failures
    status = shell.status()
    assert status.get("canary_revision") in ("", None), status
    assert status.get("failed_revision") == revision, status
    assert status.get("phase") == "RolledBack", status
    harmless = field in ("", "revision") or (field == "checks" and value != "abc")
    if not harmless:  # copied aside with the reason, never overwritten
        aside = [n for n in shell.informers[3].held if "-corrupt-" in n]
        assert len(aside) == 1, shell.informers[3].held
    # The entries that were whole stay (the undo targets, their templates).
    kept = {r["revision"]: r for r in shell.written()}
    entry = kept[whole["revision"]]
    assert (entry["number"], entry["outcome"]) == (whole["number"], "promoted"), entry
    assert entry.get("template") == whole["template"], entry


def test_an_entry_written_with_null_fields_is_no_damage() -> None:
    """An undo of an entry without a template writes `"template": null` (and
    null images and config): neither the controller nor a reader takes that
    for a hand edit (the readers said "left out, as it cannot be read")."""
    undone = {"number": 3, "revision": "r1", "template": None, "images": None, "config": None}
    records = [{**undone, "ended": None, "checks": [], "actions": []}]
    configmap = {"data": {history.DATA_KEY: json.dumps(records)}}
    assert history.load_checked(configmap) == (records, "")
    shown, notes = readable.entries(records)
    assert notes == [] and [r["revision"] for r in shown] == ["r1"], notes
