"""Learn how often Prometheus scrapes the request metric, from the data
itself: the most samples one series holds over the last minute. A window is
judged only once it holds two scrapes, so a wrong guess would only make a
step wait longer or shorter; it never makes a window reach back.
"""

from __future__ import annotations

from analysis.provider import MetricsProvider
from analysis.spec import AnalysisSpec
from analysis.templates import Target, request_selector, variables

SPAN_S = 60.0


def scrape_query(spec: AnalysisSpec, target: Target) -> str:
    selector = request_selector(spec, variables(target, SPAN_S, SPAN_S))
    return f"max(count_over_time({spec.request_metric}{selector}[{SPAN_S:g}s]))"


async def learn_scrape_interval(
    spec: AnalysisSpec, target: Target, provider: MetricsProvider, at: float | None = None
) -> float | None:
    """Seconds between scrapes, or None when there is too little data yet."""
    samples = await provider.query(scrape_query(spec, target), at, spec.query_timeout)
    if samples is None or samples < 3:
        return None
    return round(SPAN_S / samples, 1)
