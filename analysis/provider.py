"""What the analysis needs from a metrics backend: instant and range queries."""

from __future__ import annotations

from typing import Protocol


class QueryError(Exception):
    """A query failed. `invalid` means the backend rejected the query text
    itself (a template bug: the team must fix the spec), as opposed to the
    backend being unreachable or overloaded (worth retrying)."""

    def __init__(self, message: str, *, invalid: bool = False) -> None:
        super().__init__(message)
        self.invalid = invalid


class MetricsProvider(Protocol):
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
