"""The history as on-call reads it (`canary history`, `timeline`, `wait`,
`status`, the dashboard): its entries and the items the status carries
(history.CARRIED), both of which a person may have edited by hand. Each
piece of the wrong shape is left out and named, so a reader shows all the
rest and says what it skipped, instead of stopping with a traceback:

- a check, a measurement of a check, an Event: the piece is left out;
- a field of a history entry or of a carried start (images, started...):
  that field is left out, the entry is shown without it.

Missing fields are no damage (an older controller wrote fewer): readers
take them as unknown. The controller reads an entry as it always did,
except that one it cannot read at all (`misshapen`) keeps the history aside
(history.load_checked)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

JSON = dict[str, Any]
Check = Callable[[object], bool]


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number_or_null(value: object) -> bool:
    return value is None or _number(value)


def _whole(value: object) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and value.is_integer()
    )


def _text(value: object) -> bool:
    return isinstance(value, str)


def _flag(value: object) -> bool:
    return isinstance(value, bool)


def _texts(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _object(value: object) -> bool:
    return isinstance(value, dict)


_WANTED: dict[Check, str] = {
    _number: "a number",
    _number_or_null: "a number",
    _whole: "a whole number",
    _text: "text",
    _flag: "true or false",
    _texts: "a list of text",
    _object: "an object",
}

# As history.check_entry, event_item, start_item and apply_record write them.
MEASUREMENT: dict[str, Check] = {
    "metric": _text,
    "twin": _text,
    "query": _text,
    "start": _number,
    "end": _number,
    "value": _number_or_null,
    "threshold": _text,
    "verdict": _text,
    "duration_ms": _number,
    "stable_value": _number_or_null,
    "error": _text,
    "invalid": _flag,
    "baseline": _flag,
    "detail": _text,
}
CHECK: dict[str, Check] = {
    "kind": _text,
    "at": _number,
    "evaluated": _number,
    "applied": _number,
    "step": _number,
    "weight": _number,
    "effective_weight": _number,
    "verdict": _text,
    "reason": _text,
    "decided": _text,
}
EVENT: dict[str, Check] = {"at": _number, "applied": _number, "reason": _text, "message": _text}
START: dict[str, Check] = {
    "at": _number,
    "reason": _text,
    "images": _texts,
    "config": _object,
    "template": _object,
}
ENTRY: dict[str, Check] = {
    "number": _whole,
    "revision": _text,
    "images": _texts,
    "config": _object,
    "template": _object,
    "started": _number,
    "ended": _number_or_null,
    "outcome": _text,
    "reason": _text,
}


def _shown(value: object) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _wrong(obj: JSON, fields: dict[str, Check], path: str) -> list[str]:
    """What is wrong with the fields obj has; `path` names obj ("": an entry)."""
    return [
        f"{path}.{key} is {_shown(obj[key])}, not {_WANTED[check]}".removeprefix(".")
        for key, check in fields.items()
        if key in obj and not check(obj[key])
    ]


def misshapen(record: JSON) -> str:
    """What of a history entry the controller itself cannot read ("" when
    nothing): a field of another type than ENTRY's, or checks or actions
    that are not a list of objects (history.load_checked keeps such a
    history aside). What is inside a check only readers look at."""
    wrong = _wrong(_written(record), ENTRY, "")
    for key in ("checks", "actions"):
        value = record.get(key)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(item, dict) for item in value)
        ):
            wrong.append(f"{key} is {_shown(value)}, not a list of objects")
    return wrong[0] if wrong else ""


def _not_object(value: object, path: str) -> str:
    return f"{path} is {_shown(value)}, not an object"


def check(value: object, path: str, skipped: list[str]) -> JSON | None:
    """The check, with its readable measurements; None when it is not one."""
    if not isinstance(value, dict):
        skipped.append(_not_object(value, path))
        return None
    wrong = _wrong(value, CHECK, path)
    measurements = value.get("measurements", [])
    if not isinstance(measurements, list):
        wrong.append(f"{path}.measurements is {_shown(measurements)}, not a list")
    if wrong:
        skipped.extend(wrong)
        return None
    kept = []
    for i, m in enumerate(measurements):
        where = f"{path}.measurements[{i}]"
        bad = _wrong(m, MEASUREMENT, where) if isinstance(m, dict) else [_not_object(m, where)]
        skipped.extend(bad)
        if not bad:
            kept.append(m)
    return {**value, "measurements": kept} if "measurements" in value else value


def event(value: object, path: str, skipped: list[str]) -> JSON | None:
    if not isinstance(value, dict):
        skipped.append(_not_object(value, path))
        return None
    wrong = _wrong(value, EVENT, path)
    skipped.extend(wrong)
    return None if wrong else value


def _fields(value: JSON, fields: dict[str, Check], path: str, skipped: list[str]) -> JSON:
    """value without its fields of the wrong type."""
    value = _written(value)
    wrong = {key for key, ok in fields.items() if key in value and not ok(value[key])}
    skipped.extend(_wrong(value, {k: fields[k] for k in wrong}, path))
    return {k: v for k, v in value.items() if k not in wrong}


def _written(value: JSON) -> JSON:
    """An entry's or a start's fields without the nulls: a field the
    controller had nothing for (an undo of an entry without a template
    writes `"template": null`), no damage, and read as missing."""
    return {k: v for k, v in value.items() if v is not None}


def _pieces(
    value: JSON, key: str, read: Callable[[object, str, list[str]], JSON | None], skipped: list[str]
) -> list[JSON]:
    kept = []
    for i, piece in enumerate(value[key]):
        found = read(piece, f"{key}[{i}]", skipped)
        if found is not None:
            kept.append(found)
    return kept


def entry(record: JSON) -> tuple[JSON, list[str]]:
    """A history entry without what cannot be read, and what that was."""
    skipped: list[str] = []
    record = _fields(record, ENTRY, "", skipped)
    for key, read in (("checks", check), ("actions", event)):
        if key not in record:
            continue
        if not isinstance(record[key], list):
            skipped.append(f"{key} is {_shown(record[key])}, not a list")
            record[key] = []
        else:
            record[key] = _pieces(record, key, read, skipped)
    return record, skipped


def entries(records: list[JSON]) -> tuple[list[JSON], list[str]]:
    """The entries (history.load's) as readers can show them, and one
    sentence per entry that had something left out."""
    result, notes = [], []
    for i, record in enumerate(records):
        kept, skipped = entry(record)
        result.append(kept)
        if skipped:
            name = f"#{kept['number']}" if "number" in kept else f"[{i}]"
            revision = f" (revision {kept['revision']})" if "revision" in kept else ""
            notes.append(f"history entry {name}{revision}: {_left_out(skipped)}")
    return result, notes


def items(found: list[tuple[int, JSON]], key: str) -> tuple[list[JSON], list[str]]:
    """The carried items (history.carried's, each with its index in the
    status's `key`) readers can merge, and one sentence naming what was
    left out."""
    kept: list[JSON] = []
    skipped: list[str] = []
    for i, item in found:
        path = f"{key}[{i}]"
        if isinstance(item.get("start"), dict):
            start = _fields(item["start"], START, f"{path}.start", skipped)
            kept.append({**item, "start": start})
        elif "check" in item:
            if (c := check(item["check"], f"{path}.check", skipped)) is not None:
                kept.append({**item, "check": c})
        elif "event" in item:
            if (e := event(item["event"], f"{path}.event", skipped)) is not None:
                kept.append({**item, "event": e})
        else:
            skipped.append(f"{path} is no start, check or Event")
    return kept, [f"the status's {key!r}: {_left_out(skipped)}"] if skipped else []


def _left_out(skipped: list[str]) -> str:
    shown = "; ".join(skipped[:5])
    more = f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    return f"left out, as it cannot be read: {shown}{more}"
