"""What the analysis needs from a metrics backend: instant and range queries,
at times in the controller's own clock, and how far the backend's clock is
from it (for the values that are the backend's timestamps)."""

from __future__ import annotations

from typing import Protocol


class QueryError(Exception):
    """A query failed. `invalid` means the backend rejected the query text
    itself (a template bug: the team must fix the spec), as opposed to the
    backend being unreachable or overloaded (worth retrying). `rejected`: the
    backend answered and refused the query (400, 422), invalid or not."""

    def __init__(self, message: str, *, invalid: bool = False, rejected: bool = False) -> None:
        super().__init__(message)
        self.invalid = invalid
        self.rejected = rejected or invalid


class MetricsProvider(Protocol):
    @property
    def clock_offset(self) -> float:
        """Seconds the backend's clock is ahead of ours (0.0 for one that
        shares it). Query times are ours: the provider shifts them. A value a
        query returns that is a backend timestamp (`timestamp()`) minus this
        is a time in our clock."""
        ...

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        """The single value of promql evaluated at epoch time `at` (None: now);
        None when the result is empty. Raises QueryError."""
        ...

    async def query_range(
        self, promql: str, start: float, end: float, step_s: float, timeout_s: float
    ) -> list[float]:
        """The values of promql's single series from start to end every
        step_s seconds; empty when there is none. Raises QueryError."""
        ...

    async def query_range_series(
        self, promql: str, start: float, end: float, step_s: float, timeout_s: float
    ) -> list[list[float]]:
        """Like query_range, for each of promql's series (any number)."""
        ...


def speaks_metricsql(provider: object) -> bool:
    """The backend is VictoriaMetrics (see analysis.templates.METRICSQL_INCREASE),
    as the Prometheus adapter finds at its start (`metricsql`). A provider
    that does not say speaks PromQL."""
    return getattr(provider, "metricsql", False) is True


def dialect_unknown(provider: object) -> bool:
    """The adapter has not found its backend's dialect yet (`metricsql`
    None: its start-up check not answered). A check then reads in neither:
    PromQL's rate() and increase() on VictoriaMetrics read one scrape
    further back, and one bad scrape counted twice."""
    return getattr(provider, "metricsql", False) is None
