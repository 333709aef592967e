"""`canary backtest`: replay an analysis config over past Prometheus data,
interval by interval, and print the verdicts it would have given. Useful to
tune thresholds on a release that already happened, before the next one."""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import asdict, dataclass

from analysis.durations import parse_duration
from analysis.provider import MetricsProvider
from analysis.run import StepContext, StepResult, analyze, describe
from analysis.spec import AnalysisSpec
from analysis.templates import Target
from canary.jsonout import rfc3339
from canary.model import Color, other
from canary.twins import twin_name, twin_pods_regex


@dataclass(frozen=True, slots=True)
class Window:
    start: float
    end: float
    result: StepResult


def parse_time(text: str, now: float) -> float:
    """`now`, `-15m` (relative), an epoch number, or an ISO 8601 time (UTC if
    it names no zone)."""
    value = text.strip()
    if value == "now":
        return now
    if re.fullmatch(r"-\d[\dhms.]*", value):
        return now - parse_duration(value[1:])
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use now, -15m, epoch seconds or ISO 8601"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


async def replay(
    analysis: AnalysisSpec,
    provider: MetricsProvider,
    *,
    namespace: str,
    service: str,
    deployment: str,
    canary: Color,
    start: float,
    end: float,
    interval_s: float,
) -> list[Window]:
    if end <= start:
        raise ValueError("--to must be after --from")
    windows: list[Window] = []
    stable = other(canary)
    cursor = start
    while cursor + interval_s <= end + 1e-6:
        ctx = StepContext(
            canary=Target(
                namespace, service, canary, twin_pods_regex(twin_name(deployment, canary))
            ),
            stable=Target(
                namespace, service, stable, twin_pods_regex(twin_name(deployment, stable))
            ),
            start=cursor,
            now=cursor + interval_s,
            interval_s=interval_s,
        )
        windows.append(Window(cursor, ctx.now, await analyze(analysis, ctx, provider)))
        cursor += interval_s
    return windows


def as_json(windows: list[Window]) -> list[dict[str, object]]:
    return [
        {
            "start": rfc3339(w.start),
            "end": rfc3339(w.end),
            "verdict": w.result.verdict.value,
            "reason": w.result.reason,
            "measurements": [
                {**asdict(m), "start": rfc3339(m.start), "end": rfc3339(m.end)}
                for m in w.result.measurements
            ],
        }
        for w in windows
    ]


def text(windows: list[Window]) -> str:
    lines = []
    for window in windows:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(window.end))
        lines.append(f"{stamp}Z  {window.result.verdict.value:<8} {window.result.reason}")
        for m in window.result.measurements:
            if not m.baseline:
                lines.append(f"    {describe(m)}  -> {m.verdict.value}")
    return "\n".join(lines)


def _pods(deployment: str, color: Color) -> str:
    """Every pod the twin had: a backtest spans revisions on purpose."""
    return twin_pods_regex(twin_name(deployment, color))
