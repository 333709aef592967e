"""What `-o json` and `-o yaml` print: the stored status and history with
every time as an RFC 3339 string (UTC, milliseconds) instead of the epoch
seconds they are kept in, and an unset time (0) as null. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from canary.changes import changes
from canary.history import CARRIED
from canary.render import utc

if TYPE_CHECKING:
    from canary.wait import Result

JSON = dict[str, Any]

# Times in the canary.io/status annotation (see model.State).
STATUS_TIMES = (
    "rollout_started",
    "step_started",
    "step_ready",
    "serving_since",
    "still_since",
    "deadline_from",
    "unready_since",
    "lost_from",
    "flip_waits",
    "checked",
    "window_start",
    "gate_checked",
    "probed",
    "probe_from",
    "quiet_from",
    "lagging_since",
    "lag_from",
    "scale_down_at",
    # Times too, though on-call rarely looks at them: printed as epoch
    # seconds they contradicted "every time as RFC 3339" to a script.
    "fast_failed",
    "failed_sample",
    "fast_checked",
    "looked",
    "woken",
    "source_scaled_at",
    "status_written",  # not in the annotation: when it was written (oncall.status_written)
)


def rfc3339(epoch: object) -> str | None:
    if not isinstance(epoch, int | float) or isinstance(epoch, bool) or epoch <= 0:
        return None
    moment = utc(epoch)
    if moment is None:
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _times(data: JSON, keys: Sequence[str]) -> JSON:
    return {k: (rfc3339(v) if k in keys else v) for k, v in data.items()}


def status(item: JSON) -> JSON:
    # The checks and Events it carries for the history are shown there
    # (`canary history -o json`, with_carried), not as status.
    result = _times({k: v for k, v in item.items() if k != CARRIED}, STATUS_TIMES)
    if isinstance(item.get("rolled_back"), dict):
        result["rolled_back"] = _times(item["rolled_back"], ("ended",))
    return result


def record(entry: JSON) -> JSON:
    """One history entry: its start and end, each check's window and each
    action's time."""
    result = _times(entry, ("started", "ended"))
    if "checks" in entry:
        result["checks"] = [
            {
                **check,
                "measurements": [
                    _times(m, ("start", "end")) for m in check.get("measurements") or []
                ],
            }
            for check in entry.get("checks") or []
        ]
    if "actions" in entry:
        result["actions"] = [_times(a, ("at",)) for a in entry.get("actions") or []]
    return result


def history(records: Sequence[JSON]) -> list[JSON]:
    """Every entry, plus what changed from the entry before it."""
    return [
        {**record(entry), "change": change}
        for entry, change in zip(records, changes(records), strict=True)
    ]


def waited(namespace: str, service: str, result: Result) -> JSON:
    """`canary wait -o json`: one object a pipeline can read."""
    settled = result.settled
    entry: JSON = settled.record or {}
    return {
        "namespace": namespace,
        "service": service,
        "revision": result.revision,
        "outcome": str(settled.outcome),
        "exit_code": settled.exit_code,
        "message": settled.message,
        "failing": list(settled.failing),
        "phase": result.status.get("phase"),
        "history_number": entry.get("number"),
        "images": entry.get("images"),
        "reason": entry.get("reason"),
        "started": rfc3339(entry.get("started")),
        "ended": rfc3339(entry.get("ended")),
        "waited_seconds": round(result.waited_s, 3),
    }
