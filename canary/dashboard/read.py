"""Read what the controller wrote, defensively.

The status annotation and the history ConfigMap are written by a controller
that may be older or newer than this dashboard, or edited by hand: a field may
be missing, of another type, or the whole document may not parse. Nothing
here raises; every reader returns what it could read plus a sentence saying
what it could not, so a page shows the rest and names the damage.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from canary.spec import STATUS, managed_by_annotations

JSON = dict[str, Any]
DATA_KEY = "history.json"  # as canary.history writes it


def text(data: Any, key: str) -> str | None:
    """A string field; None when missing or not a string (numbers are shown as text)."""
    value = data.get(key) if isinstance(data, dict) else None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g}"
    return None


def number(data: Any, key: str) -> float | None:
    value = data.get(key) if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def value(data: Any, key: str) -> float | None:
    """A measured value: like number() but +Inf is a value (a quantile when
    every request is slow); NaN and missing are None."""
    raw = data.get(key) if isinstance(data, dict) else None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or math.isnan(raw):
        return None
    return float(raw)


def flag(data: Any, key: str) -> bool | None:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, bool) else None


def objects(data: Any, key: str) -> list[JSON]:
    """A list field's dict items; anything else in it is skipped."""
    items = data.get(key) if isinstance(data, dict) else None
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def strings(data: Any, key: str) -> list[str]:
    items = data.get(key) if isinstance(data, dict) else None
    return [str(i) for i in items if isinstance(i, str)] if isinstance(items, list) else []


def annotations_of(obj: JSON) -> dict[str, str]:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    raw = meta.get("annotations") if isinstance(meta, dict) else None
    if not isinstance(raw, dict):
        return {}
    return {str(k): v for k, v in raw.items() if isinstance(v, str)}


def managed(service: JSON) -> bool:
    """Annotated for canary, or still carrying our status (being released)."""
    return managed_by_annotations(annotations_of(service))


@dataclass(frozen=True, slots=True)
class Status:
    """The canary.io/status annotation: `data` is {} when it could not be read."""

    data: JSON = field(default_factory=dict)
    present: bool = False
    problem: str = ""

    def text(self, key: str) -> str | None:
        return text(self.data, key)

    def number(self, key: str) -> float | None:
        return number(self.data, key)

    def flag(self, key: str) -> bool | None:
        return flag(self.data, key)

    def has(self, key: str) -> bool:
        return key in self.data


def read_status(service: JSON) -> Status:
    raw = annotations_of(service).get(STATUS)
    if raw is None:
        return Status()
    try:
        data = json.loads(raw)
    except ValueError as exc:
        return Status(present=True, problem=f"{STATUS} is not valid JSON ({exc})")
    if not isinstance(data, dict):
        return Status(
            present=True, problem=f"{STATUS} is JSON but not an object ({type(data).__name__})"
        )
    return Status(data=data, present=True)


@dataclass(frozen=True, slots=True)
class History:
    """The revision history. `records` are the readable entries, oldest first."""

    records: tuple[JSON, ...] = ()
    exists: bool = False
    problem: str = ""

    def numbered(self, number: int) -> JSON | None:
        for record in self.records:
            if number_of(record) == number:
                return record
        return None

    def latest_of(self, revision: str | None) -> JSON | None:
        if not revision:
            return None
        for record in reversed(self.records):
            if record.get("revision") == revision:
                return record
        return None


def read_history(configmap: JSON | None) -> History:
    if configmap is None:
        return History()
    data = configmap.get("data")
    raw = data.get(DATA_KEY) if isinstance(data, dict) else None
    if raw is None:
        return History(exists=True, problem=f"the history ConfigMap has no {DATA_KEY}")
    try:
        decoded = json.loads(raw)
    except (ValueError, TypeError) as exc:
        return History(exists=True, problem=f"{DATA_KEY} is not valid JSON ({exc})")
    if not isinstance(decoded, list):
        return History(
            exists=True, problem=f"{DATA_KEY} is JSON but not a list ({type(decoded).__name__})"
        )
    records = tuple(r for r in decoded if isinstance(r, dict))
    skipped = len(decoded) - len(records)
    problem = f"{skipped} of {len(decoded)} history entries are not objects; skipped" * (
        skipped > 0
    )
    return History(records=records, exists=True, problem=problem)


def number_of(record: JSON) -> int | None:
    raw = record.get("number")
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    return None
