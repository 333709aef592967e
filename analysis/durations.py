"""Durations as people write them in annotations: "30s", "1m30s", "500ms", "2h"."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds from "1m30s"-style text; a bare number means seconds."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _PART.finditer(value):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNIT_S[match.group(2)]
            pos = match.end()
        if pos != len(value) or not value:
            raise ValueError(f"{text!r} is not a duration like 30s, 1m30s, 500ms or 2h") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"{text!r} is not a finite, non-negative duration")
    return seconds


def promql_duration(seconds: float) -> str:
    """A PromQL range such as "37s" or "1500ms" (whole milliseconds)."""
    millis = max(1, round(seconds * 1000))
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"
