"""One chart per metric of a revision: its value at every check against its
threshold (and the stable twin's value for relative checks), verdicts marked.

The output is plain JSON for the page's chart library (uPlot): aligned
columns, null where a series has no point. The threshold lines are read back
from the threshold text the analysis recorded (`>= 99`, `<= 400`,
`not above stable x1.5 and +0.5`), so the chart draws exactly what the check
compared against; a text this version cannot read is named, not drawn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from canary.dashboard.read import JSON, flag, number, objects, text, value

_BOUND = re.compile(r"(>=|<=)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")
_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_RELATIVE = re.compile(rf"not (above|below) stable(?: x{_NUM})?(?: and)?(?: \+{_NUM})?(?:,|$)")


@dataclass(frozen=True, slots=True)
class Limits:
    low: float | None = None  # value must be >= low
    high: float | None = None  # value must be <= high
    relative: str | None = None  # "above" or "below": worse direction against stable
    ratio: float | None = None
    delta: float | None = None
    readable: bool = True

    def relative_limit(self, stable: float | None) -> float | None:
        """Where the relative check starts failing, for this stable value.
        With both ratio and delta it fails only past both, so the limit is
        the farther of the two."""
        if self.relative is None or stable is None:
            return None
        higher = self.relative == "above"
        candidates = []
        if self.ratio is not None and self.ratio > 0:
            candidates.append(stable * self.ratio if higher else stable / self.ratio)
        if self.delta is not None:
            candidates.append(stable + self.delta if higher else stable - self.delta)
        if not candidates:
            return None
        return max(candidates) if higher else min(candidates)


def limits(threshold: str) -> Limits:
    low = high = None
    for op, raw in _BOUND.findall(threshold):
        if op == ">=":
            low = float(raw)
        else:
            high = float(raw)
    relative = _RELATIVE.search(threshold)
    if relative:
        ratio = float(relative.group(2)) if relative.group(2) else None
        delta = float(relative.group(3)) if relative.group(3) else None
        return Limits(low, high, relative.group(1), ratio, delta)
    readable = low is not None or high is not None or not threshold.strip()
    return Limits(low, high, readable=readable)


@dataclass(frozen=True, slots=True)
class Point:
    """One check of one metric."""

    at: float
    step: int | None
    weight: float | None
    effective: float | None
    value: float | None
    stable: float | None
    threshold: str
    verdict: str
    start: float | None
    end: float | None
    query: str
    error: str
    detail: str
    duration_ms: float | None
    twin: str
    decided: str

    @property
    def window_s(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Chart:
    metric: str
    points: tuple[Point, ...]
    data: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def failing(self) -> int:
        return sum(1 for p in self.points if p.verdict == "fail")


def _finite(x: float | None) -> float | None:
    # JSON has no Infinity; a +Inf quantile is drawn at the top as "off the chart".
    return None if x is None or x in (float("inf"), float("-inf")) else x


def _points(record: JSON) -> dict[str, list[Point]]:
    by_metric: dict[str, list[Point]] = {}
    for check in objects(record, "checks"):
        step = number(check, "step")
        for m in objects(check, "measurements"):
            if flag(m, "baseline"):
                continue  # the stable twin's reading; it is in the canary's stable_value
            metric = text(m, "metric")
            at = number(m, "end")
            if metric is None or at is None:
                continue
            by_metric.setdefault(metric, []).append(
                Point(
                    at=at,
                    step=int(step) if step is not None else None,
                    weight=number(check, "weight"),
                    effective=number(check, "effective_weight"),
                    value=value(m, "value"),
                    stable=value(m, "stable_value"),
                    threshold=text(m, "threshold") or "",
                    verdict=text(m, "verdict") or "unknown",
                    start=number(m, "start"),
                    end=at,
                    query=text(m, "query") or "",
                    error=text(m, "error") or "",
                    detail=text(m, "detail") or "",
                    duration_ms=number(m, "duration_ms"),
                    twin=text(m, "twin") or "",
                    decided=text(check, "decided") or "",
                )
            )
    return by_metric


def charts(record: JSON) -> list[Chart]:
    """Every metric of the revision: the ones that failed first, then the
    others by name, then `requests` (the traffic guard)."""
    drawn = [
        _chart(metric, tuple(sorted(points, key=lambda p: p.at)))
        for metric, points in _points(record).items()
    ]
    return sorted(drawn, key=lambda c: (c.failing == 0, c.metric == "requests", c.metric))


def _chart(metric: str, points: tuple[Point, ...]) -> Chart:
    notes = []
    unreadable = sorted({p.threshold for p in points if not limits(p.threshold).readable})
    if unreadable:
        notes.append(f"threshold {', '.join(unreadable)} is not drawn: this version cannot read it")
    columns: dict[str, list[float | None]] = {
        k: [] for k in ("x", "value", "pass", "fail", "stable", "min", "max", "limit")
    }
    nodata: list[float] = []
    for p in points:
        bounds = limits(p.threshold)
        shown = _finite(p.value)
        columns["x"].append(p.at)
        columns["value"].append(shown)
        columns["pass"].append(shown if p.verdict == "pass" else None)
        columns["fail"].append(shown if p.verdict == "fail" else None)
        columns["stable"].append(_finite(p.stable))
        columns["min"].append(bounds.low)
        columns["max"].append(bounds.high)
        columns["limit"].append(_finite(bounds.relative_limit(p.stable)))
        if p.verdict in ("no-data", "error") or shown is None:
            nodata.append(p.at)
    data: dict[str, Any] = {
        k: v for k, v in columns.items() if k == "x" or any(x is not None for x in v)
    }
    data["nodata"] = nodata
    data["metric"] = metric
    return Chart(metric, points, data, tuple(notes))
