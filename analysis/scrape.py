"""Learn how often Prometheus scrapes the request metric, and when, from the
sample timestamps themselves: `timestamp()` of each pod's freshest series,
evaluated every second over the last two minutes, steps from one scrape's
time to the next; the typical step is the scrape interval. It needs only
three samples, so a young series (pods a few seconds old) is read right,
where counting samples over a minute would not be.

Each pod is its own scrape target, and Prometheus spreads targets over the
interval, so the steps are taken per pod: over all pods at once the newest
sample would step every interval / pods.

The newest sample time says when scrapes land (Prometheus keeps a target's
offset within the interval), so fast checks can look right after one lands
instead of up to a whole interval later.

A window is judged only once it holds two scrapes, so a wrong value would
only make a step wait longer or shorter; it never makes a window reach back.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from analysis.provider import MetricsProvider
from analysis.spec import AnalysisSpec
from analysis.templates import Target, request_selector, variables

SPAN_S = 120.0


@dataclass(frozen=True, slots=True)
class ScrapeTiming:
    interval: float  # seconds between two scrapes of one pod
    last: float  # the newest sample time of any pod (epoch seconds)


def scrape_query(spec: AnalysisSpec, target: Target) -> str:
    selector = request_selector(spec, variables(target, SPAN_S, SPAN_S))
    return f"max by ({spec.labels.pod}) (timestamp({spec.request_metric}{selector}))"


async def learn_scrape_timing(
    spec: AnalysisSpec, target: Target, provider: MetricsProvider, at: float | None = None
) -> ScrapeTiming | None:
    """How often and when scrapes land (in our clock), or None when there is
    too little data yet."""
    end = at if at is not None else time.time()
    series = await provider.query_range_series(
        scrape_query(spec, target), end - SPAN_S, end, 1.0, spec.query_timeout
    )
    timing = timing_of(series)
    if timing is None:
        return None
    # The samples' times are Prometheus's: fast looks are scheduled in ours.
    return replace(timing, last=round(timing.last - provider.clock_offset, 3))


def timing_of(series: Sequence[Sequence[float]]) -> ScrapeTiming | None:
    """The median step between distinct sample times of each series (at
    least two steps in all), and the newest sample time."""
    steps: list[float] = []
    for timestamps in series:
        distinct = sorted(set(timestamps))
        steps += [b - a for a, b in itertools.pairwise(distinct) if b > a]
    if len(steps) < 2:
        return None
    return ScrapeTiming(round(statistics.median(steps), 2), max(max(s) for s in series if s))


# VictoriaMetrics makes a sample searchable only when it flushes its
# pending rows ("rawRows aren't visible for search", lib/storage/
# partition.go, v1.151), whatever its flags: a shard's rows once its
# deadline has passed, 2 s after its first pending row
# (pendingRowsFlushInterval, raw_row.go), and that deadline is looked at
# only by a 2 s ticker. Under steady ingestion a shard takes rows again
# right after each flush, misses the next tick, and is flushed every 4 s:
# a row waits up to 4 s (measured at a 1 s import: the newest searchable
# sample 1-5 s old). Taken for 2 s, a healthy canary at a 1 s scrape read
# as stopped scrapes a quarter of the time. Prometheus's samples are
# searchable once appended.
VICTORIA_METRICS_FLUSH_S = 4.0


def searchable_after(metricsql: bool) -> float:
    """How much later than Prometheus the backend may make a landed scrape
    searchable: VictoriaMetrics' flush (metricsql: it answered as it)."""
    return VICTORIA_METRICS_FLUSH_S if metricsql else 0.0


def landing_lag(interval: float) -> float:
    """How long after a scrape's timestamp (its start) its samples can be
    queried: the scrape itself and the append. A tenth of the interval,
    between 0.15 s and 0.5 s."""
    return min(max(0.1 * interval, 0.15), 0.5)


def latest_landing(interval: float) -> float:
    """How late a scrape's samples may land for a look to still find them:
    an interval less the landing lag. Later, a look's two scrapes never hold
    two samples, however long it waits."""
    return interval - landing_lag(interval)


def landing_retries(interval: float, flush: float = 0.0) -> tuple[float, ...]:
    """How long to wait before each new try of a look that found the newest
    scrape not landed yet (a slow /metrics, a busy Prometheus, remote-write
    delay: more than landing_lag): from the landing lag, doubling, all
    within an interval less the landing lag. A later landing leaves no two
    samples in a look's two scrapes however long it waits. Before, the
    retries stopped at half an interval, and a delay past it (remote-write,
    6 s behind a 10 s scrape) was never found: looks went blind and a
    scrape late by turns. Bounded, so a canary whose pods are not scraped
    at all costs a few queries a look. `flush`: how much later the backend
    makes a landed scrape searchable (searchable_after), waited for too,
    the last try at its end."""
    waits: list[float] = []
    wait, total = landing_lag(interval), 0.0
    bound = latest_landing(interval) + flush
    while total + wait <= bound + 1e-9:
        waits.append(wait)
        total += wait
        wait *= 2
    if flush and bound - total > 1e-9:
        waits.append(round(bound - total, 3))
    return tuple(waits)


def next_landing(after: float, interval: float, last: float) -> float:
    """The first moment at or after `after` at which a scrape has just
    landed, on the grid `last + k * interval` (plus the landing lag)."""
    lag = landing_lag(interval)
    k = math.ceil((after - last - lag) / interval - 1e-6)  # float noise: on the grid is at it
    return last + lag + k * interval
