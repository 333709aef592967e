"""When the cluster cannot be observed: while the injector holds the API
server or etcd stopped, while the checker's own heartbeat fails, and for a
settle margin after either (watches reconnect, controllers resync)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable


class Blindness:
    def __init__(self, settle_s: float = 3.0, clock: Callable[[], float] = time.time) -> None:
        self.settle_s = settle_s
        self._clock = clock
        self._open: dict[int, tuple[str, float]] = {}
        self._ids = itertools.count()
        self._last_end = float("-inf")
        self.intervals: list[tuple[str, float, float]] = []  # (why, start, end)

    def begin(self, why: str) -> int:
        token = next(self._ids)
        self._open[token] = (why, self._clock())
        return token

    def end(self, token: int) -> None:
        found = self._open.pop(token, None)
        if found is not None:
            now = self._clock()
            self._last_end = max(self._last_end, now)
            self.intervals.append((found[0], found[1], now))

    def blind(self, now: float | None = None) -> bool:
        at = self._clock() if now is None else now
        return bool(self._open) or at - self._last_end < self.settle_s

    def why(self) -> str:
        return ", ".join(sorted({why for why, _ in self._open.values()})) or "settling"

    def total_s(self) -> float:
        """Seconds blind (settle margins not included), overlaps counted once."""
        spans = sorted((s, e) for _, s, e in self.intervals)
        spans += sorted((s, self._clock()) for _, s in self._open.values())
        total, reach = 0.0, float("-inf")
        for start, end in sorted(spans):
            if end <= reach:
                continue
            total += end - max(start, reach)
            reach = end
        return total
