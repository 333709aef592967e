"""HTML from the templates in templates/ (jinja2, autoescaped: every string
from the cluster is text, never markup)."""

from __future__ import annotations

import json
import math
from typing import Any

import jinja2

from canary.dashboard.views import outcome_class, phase_class, verdict_class
from canary.render import seconds, utc

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("canary.dashboard", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,  # a typo in a template fails the tests, not the user
    trim_blocks=True,
    lstrip_blocks=True,
)


def clock(epoch: float | None) -> str:
    at = utc(epoch)
    return at.strftime("%H:%M:%S") if at else "unknown"


def when(epoch: float | None) -> str:
    at = utc(epoch)
    return at.strftime("%Y-%m-%d %H:%M:%SZ") if at else "unknown"


def iso(epoch: float | None) -> str:
    at = utc(epoch)
    return at.isoformat() if at else ""


def fmt(value: float | None) -> str:
    if value is None:
        return "no data"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.4g}"


def pct(value: float | None) -> str:
    return "unknown" if value is None else f"{value:g}%"


def short(revision: str | None) -> str:
    return (revision or "unknown")[:10]


def bar(value: float | None) -> float:
    """A weight as a width in percent, for the SVG bars (never outside 0-100)."""
    return 0.0 if value is None else max(0.0, min(100.0, value))


def chart_json(data: dict[str, Any]) -> str:
    # Inside <script type="application/json"> the HTML parser still reads
    # "</script" as the end and "<!--" as the start of an escaped section
    # (a query or message from the cluster could swallow the rest of the
    # page): no "<" at all, as the JSON escape \u003c (the same string).
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")


_ENV.filters.update(
    clock=clock,
    when=when,
    iso=iso,
    fmt=fmt,
    pct=pct,
    seconds=seconds,
    short=short,
    bar=bar,
    chart_json=chart_json,
    phase_class=phase_class,
    verdict_class=verdict_class,
    outcome_class=outcome_class,
)


def render(template: str, **context: Any) -> str:
    return _ENV.get_template(template).render(**context)


def part(macro: str, *args: Any, **kwargs: Any) -> str:
    """One part of a page (a macro of parts.html), for the live updates."""
    return str(getattr(_ENV.get_template("parts.html").module, macro)(*args, **kwargs))
