"""Text for on-call: tables that read well when piped, color only on a TTY.
Pure functions from status, history and events to strings."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from canary.changes import changes, summary
from canary.release_outcome import describe

if TYPE_CHECKING:
    from canary.wait import Result

_COLORS = {
    "Healthy": "32",
    "Progressing": "33",
    "Promoting": "33",
    "Adopting": "33",
    "Paused": "36",
    "Halted": "31",
    "RolledBack": "31",
    "Invalid": "31",
    # Not serving in full, changing nothing, or unreadable: each needs a look.
    "Degraded": "31",
    "Conflict": "31",
    "Unreadable": "31",
    "Waiting": "33",
    "Releasing": "33",
    "fail": "31",
    "pass": "32",
    "no-data": "33",
    "error": "31",
}


def paint(text: str, color: bool) -> str:
    code = _COLORS.get(text)
    return f"\033[{code}m{text}\033[0m" if color and code else text


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], color: bool = False) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        cells = [paint(c, color) + " " * (w - len(c)) for c, w in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def utc(epoch: float | None) -> dt.datetime | None:
    """The time, or None when there is none or it is no real time (a
    hand-edited history can hold any number; it must not break a page)."""
    if not epoch:
        return None
    try:
        return dt.datetime.fromtimestamp(float(epoch), dt.UTC)
    except (ValueError, OverflowError, OSError, TypeError):
        return None


def when(epoch: float | None) -> str:
    at = utc(epoch)
    return at.strftime("%Y-%m-%d %H:%M:%SZ") if at else "-"


def clock(epoch: float | None) -> str:
    at = utc(epoch)
    return at.strftime("%H:%M:%S") if at else "-"


def seconds(value: float | None) -> str:
    """A duration as people read it: 45s, 12m05s, 3h20m."""
    if value is None:
        return "unknown"
    if value < 120:
        return f"{value:.0f}s"
    if value < 7200:
        return f"{value // 60:.0f}m{value % 60:02.0f}s"
    return f"{value // 3600:.0f}h{value % 3600 // 60:02.0f}m"


def weight(status: dict[str, Any]) -> str:
    if not status.get("canary") and status.get("phase") != "Promoting":
        return "-"
    return f"{status.get('requested_weight', 0)}%/{status.get('effective_weight', 0):g}%"


# The field manager the controller writes with (canary/act.py); any other
# writer of the status is named next to its age.
CONTROLLER_MANAGER = "canary-controller"


def written(status: dict[str, Any], now: float | None) -> str:
    """How long ago the status annotation was written, and by whom when it
    was not the controller; "-" when unknown."""
    at = status.get("status_written")
    if now is None or not isinstance(at, int | float) or isinstance(at, bool):
        return "-"
    age = f"{seconds(max(now - at, 0.0))} ago"
    by = status.get("status_written_by")
    return age if not by or by == CONTROLLER_MANAGER else f"{age} by {by}"


def status_rows(
    items: Sequence[tuple[str, str, dict[str, Any]]], now: float | None = None
) -> list[list[str]]:
    rows = []
    for namespace, name, status in items:
        stable = f"{status.get('stable') or '-'}@{status.get('stable_revision') or '-'}"
        canary = (
            f"{status['canary']}@{status.get('canary_revision')}" if status.get("canary") else "-"
        )
        step = str(status.get("step", 0) + 1) if status.get("canary") else "-"
        message = str(status.get("message", ""))
        if status.get("phase") == "RolledBack" and status.get("rolled_back"):
            message = held_back(status, message)
        if status.get("pending_action"):
            # Carried out whenever a controller takes it (hours later, with
            # none running): whoever looks next must see it is still coming.
            by = f" by {status['pending_action_by']}" if status.get("pending_action_by") else ""
            asked = f"canary.io/action {status['pending_action']!r}{by} not taken yet"
            message = "; ".join(m for m in (message, asked) if m)
        if status.get("events_refused"):
            # `kubectl get events` shows nothing of the rollout: this says why.
            message = "; ".join(m for m in (message, f"Events: {status['events_refused']}") if m)
        rows.append(
            [
                namespace,
                name,
                str(status.get("phase", "Pending")),
                stable,
                canary,
                step,
                weight(status),
                written(status, now),
                message,
            ]
        )
    return rows


def held_back(status: dict[str, Any], said: str = "") -> str:
    """Why a Service is RolledBack, from its history: the reason names the
    metric, its value and the threshold, not only what to do next. `said`:
    the controller's line, kept after the reason when it does not name the
    revision held back: it says what holds now (a release that waits for
    its paused Deployment, or for the app scaled up from 0). Replaced, it
    read "Change the Deployment or run `canary retry`" for a Deployment
    already changed, and nothing said that the fix waited."""
    why = status["rolled_back"]
    reason = why.get("reason") or why.get("unshown") or "no reason recorded"
    serving = status.get("stable_revision")
    ended = f"{why.get('outcome') or 'rolled-back'}: {reason}; serving {serving}"
    revision = str(why.get("revision"))
    if said and not re.search(rf"(?<![\w.-]){re.escape(revision)}(?![\w.-])", said):
        held = f"the undo to revision {revision}" if why.get("undo") else f"revision {revision}"
        return f"{held} {ended}; {said}"
    if why.get("undo"):
        # The Deployment holds what serves, and a retry rolls nothing out:
        # told to change the Deployment or retry, on-call had nothing to do.
        return (
            f"the undo to revision {why.get('revision')} {ended}. "
            "`canary undo --to N` asks for it again"
        )
    return f"revision {why.get('revision')} {ended}. Change the Deployment or run `canary retry`"


STATUS_HEADERS = (
    "NAMESPACE",
    "SERVICE",
    "PHASE",
    "STABLE",
    "CANARY",
    "STEP",
    "WEIGHT",
    "WRITTEN",
    "MESSAGE",
)


def history_rows(records: Sequence[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for record, change in zip(records, changes(records), strict=True):
        ended, started = record.get("ended"), record.get("started")
        duration = seconds(ended - started) if ended and started else "-"
        rows.append(
            [
                str(record.get("number", "")),
                str(record.get("revision", "")),
                ",".join(record.get("images", [])) or "-",
                summary(change),
                str(record.get("outcome", "")),
                when(record.get("started")),
                duration,
                str(record.get("reason", "")),
            ]
        )
    return rows


HISTORY_HEADERS = ("#", "REVISION", "IMAGES", "CHANGE", "OUTCOME", "STARTED", "DURATION", "REASON")


def _value(value: float | None) -> str:
    return "no data" if value is None else f"{value:.4g}"


def _applied(entry: dict[str, Any]) -> str:
    """When the decision's writes were done, if that was noticeably later
    than the decision (an API server that was slow or down)."""
    decided, applied = entry.get("at") or 0.0, entry.get("applied") or 0.0
    if decided and applied and applied - decided >= 1.0:
        return f"  [applied {clock(applied)}, {applied - decided:.1f}s after it was decided]"
    return ""


def timeline(record: dict[str, Any], color: bool, change: dict[str, Any] | None = None) -> str:
    """One revision's story: every check with each query's value against its
    threshold, and every Event the controller emitted for it (manual actions
    name who asked), in time order. Read from the history, so it outlives
    the Events' one-hour TTL."""
    lines = [
        f"revision {record.get('revision')} (#{record.get('number')}) "
        f"{','.join(record.get('images', [])) or ''}".rstrip(),
        f"outcome: {paint(str(record.get('outcome')), color)}  {record.get('reason', '')}".rstrip(),
        # The lines below give clock times only: this says which day.
        f"started {when(record.get('started'))}, "
        + (f"ended {when(record.get('ended'))}" if record.get("ended") else "not ended"),
    ]
    if change is not None and change.get("kind") != "first":
        lines.append(f"change: {summary(change)}")
    lines.append("")
    entries: list[tuple[float, str]] = []
    for check in record.get("checks", []):
        measurements = check.get("measurements", [])
        # When its queries were evaluated (their windows' end); a check with
        # no measurement (the analysis timed out or crashed) has only its
        # own times, and must not sort above the rollout's start as "-".
        at = max(
            (m.get("end") or 0.0 for m in measurements),
            default=check.get("evaluated") or check.get("at") or 0.0,
        )
        head = (
            f"{clock(at)}  step {check.get('step')}  weight {check.get('weight')}%"
            f" ({check.get('effective_weight', 0):g}% effective)  "
            f"verdict {paint(str(check.get('verdict')), color)}"
        )
        body = [head]
        for m in measurements:
            span = f"{m.get('end', 0) - m.get('start', 0):.0f}s"
            stable = (
                f" stable {_value(m['stable_value'])}" if m.get("stable_value") is not None else ""
            )
            error = f"  error: {m['error']}" if m.get("error") else ""
            body.append(
                f"          {m.get('metric', '-'):<16} {m.get('twin', '-'):<6}"
                f" {_value(m.get('value')):>10}  want {m.get('threshold', '-'):<14}{stable}"
                f" {paint(str(m.get('verdict')), color)}"
                f"  [{span} window, {m.get('duration_ms', 0):.0f}ms]{error}"
            )
            body.append(f"            query: {m.get('query')}")
        body.append(f"          -> {check.get('decided', '')}{_applied(check)}")
        kind = check.get("kind")
        if kind and kind != "scheduled":
            body[0] += f"  ({kind} check)"
        entries.append((at, "\n".join(body)))
    for action in record.get("actions", []):
        entries.append(
            (
                action.get("at", 0.0),
                f"{clock(action.get('at'))}  {action.get('reason')}: {action.get('message')}"
                f"{_applied(action)}",
            )
        )
    lines.extend(text for _, text in sorted(entries, key=lambda e: e[0]))
    return "\n".join(lines)


def waited(result: Result) -> str:
    """`canary wait`'s last words: the outcome, why, and each failing
    measurement with its value and threshold."""
    settled = result.settled
    lines = [f"{settled.outcome}: {settled.message}"]
    lines.extend(f"  {describe(m)}" for m in settled.failing)
    return "\n".join(lines)
