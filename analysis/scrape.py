"""Learn how often Prometheus scrapes the request metric, from the sample
timestamps themselves: `timestamp()` of the freshest series, evaluated every
second over the last two minutes, steps from one scrape's time to the next;
the typical step is the scrape interval. It needs only three samples, so a
young series (pods a few seconds old) is read right, where counting samples
over a minute would not be.

A window is judged only once it holds two scrapes, so a wrong value would
only make a step wait longer or shorter; it never makes a window reach back.
"""

from __future__ import annotations

import itertools
import statistics
import time

from analysis.provider import MetricsProvider
from analysis.spec import AnalysisSpec
from analysis.templates import Target, request_selector, variables

SPAN_S = 120.0


def scrape_query(spec: AnalysisSpec, target: Target) -> str:
    selector = request_selector(spec, variables(target, SPAN_S, SPAN_S))
    return f"max(timestamp({spec.request_metric}{selector}))"


async def learn_scrape_interval(
    spec: AnalysisSpec, target: Target, provider: MetricsProvider, at: float | None = None
) -> float | None:
    """Seconds between scrapes, or None when there is too little data yet."""
    end = at if at is not None else time.time()
    values = await provider.query_range(
        scrape_query(spec, target), end - SPAN_S, end, 1.0, spec.query_timeout
    )
    return interval_of(values)


def interval_of(timestamps: list[float]) -> float | None:
    """The median step between distinct sample times (at least two steps)."""
    distinct = sorted(set(timestamps))
    steps = [b - a for a, b in itertools.pairwise(distinct) if b > a]
    if len(steps) < 2:
        return None
    return round(statistics.median(steps), 2)
