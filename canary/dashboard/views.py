"""What each page shows, from the raw objects: pure functions, no I/O.

A field the controller did not write (or wrote in a shape this version does
not know) is shown as unknown, never guessed; a phase this version does not
know is shown as it is, in a neutral colour.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, replace

from canary.dashboard.read import (
    JSON,
    History,
    Status,
    annotations_of,
    number,
    number_of,
    objects,
    read_status,
    strings,
    text,
)
from canary.spec import STRATEGY, RolloutSpec

UNKNOWN = "unknown"
DEFAULT_STEPS: tuple[int, ...] = RolloutSpec.model_fields["steps"].default

# Phase -> CSS class. Anything else (a phase a newer controller added) gets "neutral".
PHASE_CLASSES = {
    "Healthy": "ok",
    "Progressing": "active",
    "Promoting": "active",
    "Adopting": "active",
    "Paused": "held",
    "Halted": "warn",
    "RolledBack": "bad",
    "Invalid": "bad",
    "Waiting": "muted",
    "Releasing": "muted",
    "Pending": "muted",
}
VERDICT_CLASSES = {"pass": "ok", "fail": "bad", "no-data": "warn", "error": "bad"}
OUTCOME_CLASSES = {
    "promoted": "ok",
    "rolled-back": "bad",
    "aborted": "bad",
    "superseded": "muted",
    "progressing": "active",
}


def phase_class(phase: str) -> str:
    return PHASE_CLASSES.get(phase, "neutral")


def verdict_class(verdict: str | None) -> str:
    return VERDICT_CLASSES.get(verdict or "", "neutral")


def outcome_class(outcome: str | None) -> str:
    return OUTCOME_CLASSES.get(outcome or "", "neutral")


@dataclass(frozen=True, slots=True)
class Side:
    """One twin's role: which twin, at which revision, running which images."""

    twin: str
    revision: str
    images: tuple[str, ...]
    number: int | None


@dataclass(frozen=True, slots=True)
class Row:
    namespace: str
    name: str
    strategy: str
    phase: str
    phase_class: str
    stable: Side | None
    canary: Side | None
    step: str
    requested: float | None
    effective: float | None
    since: float | None  # when the current step began serving (epoch s)
    last_verdict: str | None
    last_checked: float | None
    message: str
    problems: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def in_flight(self) -> bool:
        return self.canary is not None


def meta(obj: JSON) -> tuple[str, str]:
    m = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(m, dict):
        return "", ""
    return str(m.get("namespace") or ""), str(m.get("name") or "")


def steps_of(service: JSON) -> tuple[int, ...] | None:
    """The canary steps from the annotation (None when they do not parse)."""
    raw = annotations_of(service).get("canary.io/steps")
    if raw is None:
        return DEFAULT_STEPS
    try:
        steps = tuple(int(p) for p in raw.replace("%", "").split(",") if p.strip())
    except ValueError:
        return None
    return steps or None


def phase_of(status: Status) -> str:
    if not status.present:
        return "Pending"  # the controller has not written a status yet
    return status.text("phase") or UNKNOWN


def _side(status: Status, role: str, history: History) -> Side | None:
    twin = status.text(role)
    revision = status.text(f"{role}_revision")
    if twin is None and revision is None:
        return None
    record = history.latest_of(revision)
    return Side(
        twin=twin or UNKNOWN,
        revision=revision or UNKNOWN,
        images=tuple(strings(record, "images")) if record else (),
        number=number_of(record) if record else None,
    )


def _step_text(status: Status, strategy: str, steps: tuple[int, ...] | None) -> str:
    if not status.has("canary"):
        return UNKNOWN if status.present else "-"
    if status.text("canary") is None:
        return "-"
    if strategy == "blue-green":
        return "flip" if status.flag("promoting") else "preview"
    step = status.number("step")
    if step is None:
        return UNKNOWN
    total = len(steps) if steps else "?"
    if status.flag("promoting"):
        return f"promote ({total}/{total})"
    return f"{int(step) + 1}/{total}"


def check_time(check: JSON) -> float | None:
    """When its queries were evaluated (their windows' end); a check with no
    measurement (the analysis timed out or crashed) has only its own times."""
    ends = [e for m in objects(check, "measurements") if (e := number(m, "end")) is not None]
    if ends:
        return max(ends)
    return number(check, "evaluated") or number(check, "at")


def row(service: JSON, history: History) -> Row:
    namespace, name = meta(service)
    status = read_status(service)
    found = annotations_of(service)
    strategy = found.get(STRATEGY, "")
    steps = steps_of(service)
    canary = _side(status, "canary", history) if status.text("canary") else None
    problems = [p for p in (status.problem, history.problem) if p]
    phase = phase_of(status)
    if status.present and not status.problem and "phase" not in status.data:
        problems.append("the status has no phase")
    record = history.latest_of(status.text("canary_revision")) if canary else None
    if record is None and history.records:
        record = history.records[-1]
    checks = objects(record, "checks") if record else []
    last = checks[-1] if checks else None
    since = status.number("step_ready") or status.number("step_started") if canary else None
    return Row(
        namespace=namespace,
        name=name,
        strategy=strategy or UNKNOWN,
        phase=phase,
        phase_class=phase_class(phase),
        stable=_side(status, "stable", history),
        canary=canary,
        step=_step_text(status, strategy, steps),
        requested=status.number("requested_weight"),
        effective=status.number("effective_weight"),
        since=since,
        last_verdict=text(last, "verdict") if last else None,
        last_checked=check_time(last) if last else None,
        message=status.text("message") or "",
        problems=tuple(problems),
    )


# -- the step strip ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cell:
    label: str
    state: str  # done, current, held, waiting, failed, cancelled
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Strip:
    title: str
    cells: tuple[Cell, ...]
    note: str = ""


def _labels(strategy: str, steps: tuple[int, ...] | None) -> list[str]:
    if strategy == "blue-green":
        return ["preview analysis", "flip"]
    if steps is None:
        return []
    return [*(f"{w}%" for w in steps), "promote"]


def _cells(labels: list[str], at: int, state: str, after: str = "waiting") -> tuple[Cell, ...]:
    at = max(0, min(at, len(labels) - 1))
    return tuple(
        Cell(label, "done" if i < at else state if i == at else after)
        for i, label in enumerate(labels)
    )


def strip(service: JSON, history: History) -> Strip:
    """The rollout in flight, else the last one, as done / current / waiting / failed."""
    status = read_status(service)
    strategy = annotations_of(service).get(STRATEGY, "")
    labels = _labels(strategy, steps_of(service))
    if not labels:
        return Strip("steps", (), "the canary.io/steps annotation does not parse")
    canary_revision = status.text("canary_revision")
    if status.text("canary"):
        step = status.number("step")
        if step is None:
            return Strip(f"revision {canary_revision or UNKNOWN}", (), "current step unknown")
        at = len(labels) - 1 if status.flag("promoting") else int(step)
        held = phase_of(status) in ("Paused", "Halted")
        note = status.text("halted") or status.text("gate_reason") or ""
        return Strip(
            f"revision {canary_revision or UNKNOWN} rolling out",
            _cells(labels, at, "held" if held else "current"),
            note,
        )
    if not history.records:
        return Strip("no rollout yet", (), "no revision recorded in the history yet")
    record = history.records[-1]
    outcome = text(record, "outcome") or UNKNOWN
    title = f"last rollout: revision {text(record, 'revision') or UNKNOWN} {outcome}"
    reason = text(record, "reason") or ""
    checks = objects(record, "checks")
    last = checks[-1] if checks else None
    reached = int(number(last, "step") or 1) - 1 if last else 0
    if outcome == "promoted":
        return Strip(title, tuple(Cell(label, "done") for label in labels), reason)
    if outcome in ("rolled-back", "aborted"):
        if last and text(last, "verdict") == "pass" and reached >= len(labels) - 2:
            reached = len(labels) - 1  # every step passed: it failed at (or after) the flip
        return Strip(title, _cells(labels, reached, "failed"), reason)
    if outcome == "superseded":
        return Strip(title, _cells(labels, reached, "cancelled", "cancelled"), reason)
    return Strip(title, _cells(labels, reached, "current"), reason)


# -- revisions ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Revision:
    number: int | None
    revision: str
    images: tuple[str, ...]
    outcome: str
    reason: str
    started: float | None
    ended: float | None
    checks: int
    failed_checks: int
    undoable: bool
    serving: str  # "stable", "canary" or ""

    @property
    def outcome_class(self) -> str:
        return outcome_class(self.outcome)


def revisions(service: JSON, history: History) -> list[Revision]:
    """Newest first."""
    status = read_status(service)
    stable, canary = status.text("stable_revision"), status.text("canary_revision")
    rows = []
    for record in reversed(history.records):
        revision = text(record, "revision") or UNKNOWN
        checks = objects(record, "checks")
        serving = ""
        if status.text("canary") and revision == canary:
            serving = "canary"
        elif revision == stable:
            serving = "stable"
        rows.append(
            Revision(
                number=number_of(record),
                revision=revision,
                images=tuple(strings(record, "images")),
                outcome=text(record, "outcome") or UNKNOWN,
                reason=text(record, "reason") or "",
                started=number(record, "started"),
                ended=number(record, "ended"),
                checks=len(checks),
                failed_checks=sum(1 for c in checks if c.get("verdict") == "fail"),
                undoable=isinstance(record.get("template"), dict) and number_of(record) is not None,
                serving=serving,
            )
        )
    # Only the newest entry of a revision is what it serves as.
    seen: set[str] = set()
    for i, entry in enumerate(rows):
        if entry.serving and entry.revision in seen:
            rows[i] = replace(entry, serving="")
        seen.add(entry.revision)
    return rows


# -- events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventRow:
    at: float | None
    type: str
    reason: str
    message: str
    count: int
    source: str

    @property
    def warning(self) -> bool:
        return self.type == "Warning"


def parse_time(raw: object) -> float | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return dt.datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def event_rows(events: Iterable[JSON], limit: int = 100) -> list[EventRow]:
    """Kubernetes Events about one Service, newest first."""
    rows = []
    for event in events:
        if not isinstance(event, dict):
            continue
        m = event.get("metadata") if isinstance(event.get("metadata"), dict) else {}
        at = (
            parse_time(event.get("lastTimestamp"))
            or parse_time(event.get("eventTime"))
            or parse_time(event.get("firstTimestamp"))
            or parse_time((m or {}).get("creationTimestamp"))
        )
        source = event.get("source")
        count = event.get("count")
        rows.append(
            EventRow(
                at=at,
                type=text(event, "type") or "",
                reason=text(event, "reason") or "",
                message=text(event, "message") or "",
                count=count if isinstance(count, int) and not isinstance(count, bool) else 1,
                source=text(event, "reportingComponent")
                or (text(source, "component") if isinstance(source, dict) else None)
                or "",
            )
        )
    rows.sort(key=lambda r: r.at or 0.0, reverse=True)
    return rows[:limit]


def history_events(record: JSON) -> list[EventRow]:
    """The Events the controller kept with a revision (they outlive the 1 h TTL)."""
    rows = [
        EventRow(
            at=number(action, "at"),
            type="",
            reason=text(action, "reason") or "",
            message=text(action, "message") or "",
            count=1,
            source="history",
        )
        for action in objects(record, "actions")
    ]
    rows.sort(key=lambda r: r.at or 0.0)
    return rows


# -- counts for the filter ---------------------------------------------------------------


def phase_counts(rows: Iterable[Row]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.phase] = counts.get(r.phase, 0) + 1
    return dict(sorted(counts.items()))


def matches(r: Row, namespace: str, phase: str) -> bool:
    return (not namespace or r.namespace == namespace) and (not phase or r.phase == phase)
