"""Write-loop detection: the same write to the same object, again and again,
while the rollout makes no progress. That is a fight (another controller, a
second Service, a GitOps tool reverting us), and writing harder only feeds
it: stop writing to that object for a while and tell a person.

Pure bookkeeping over the times it is told; no clock of its own.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

WINDOW_S = 60.0
REPEATS = 4  # the same write this many times in WINDOW_S, with no progress: a loop
COOL_OFF_S = 300.0

WriteKey = tuple[str, str, str, str]  # (kind, namespace, name, what is written)


@dataclass
class _History:
    writes: deque[tuple[float, str]] = field(default_factory=deque)  # (time, digest)
    blocked_until: float = 0.0


class WriteGuard:
    def __init__(self) -> None:
        self._objects: dict[WriteKey, _History] = {}
        self.loops = 0  # loops detected since start, for the metrics

    def blocked(self, key: WriteKey, now: float) -> bool:
        entry = self._objects.get(key)
        return entry is not None and now < entry.blocked_until

    def blocked_count(self, now: float) -> int:
        return sum(1 for entry in self._objects.values() if now < entry.blocked_until)

    def wrote(self, key: WriteKey, digest: str, now: float) -> bool:
        """Note a write; True when it makes a loop (writes to `key` are then
        blocked for COOL_OFF_S). `digest` covers the content written and the
        rollout's progress, so a write repeated by a rollout that moves on
        (a new revision, a new step) never counts against it."""
        entry = self._objects.setdefault(key, _History())
        while entry.writes and entry.writes[0][0] < now - WINDOW_S:
            entry.writes.popleft()
        entry.writes.append((now, digest))
        if len(self._objects) > 10_000:
            self._forget(now)
        if sum(1 for _, d in entry.writes if d == digest) >= REPEATS:
            entry.blocked_until = now + COOL_OFF_S
            entry.writes.clear()
            self.loops += 1
            return True
        return False

    def due(self, key: WriteKey, now: float) -> bool:
        """Whether a write that changes nothing, sent only to find out what
        the cache may not know yet, is due at `key`: the first, or COOL_OFF_S
        after the last one due (noted as sent). Never a loop: nothing else
        holds such a write back."""
        entry = self._objects.setdefault(key, _History())
        if entry.writes and now < entry.writes[-1][0] + COOL_OFF_S:
            return False
        entry.writes.clear()
        entry.writes.append((now, ""))
        return True

    def _forget(self, now: float) -> None:
        for key in [
            k
            for k, e in self._objects.items()
            if now >= e.blocked_until and (not e.writes or e.writes[-1][0] < now - WINDOW_S)
        ]:
            del self._objects[key]
