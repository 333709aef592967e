"""Fan-out of changes to open tabs.

The feeds name the Service each watch event is about; the hub hands that name
to every subscriber (one per open tab's event stream). A subscriber takes
what piled up, waits a moment so a burst of events becomes one update, and
renders from the caches. A numbered log of recent changes lets a tab that
just loaded ask for what changed since its page was rendered.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

Key = tuple[str, str]
LOG_SIZE = 4096


class Subscriber:
    def __init__(self) -> None:
        self.pending: set[Key] = set()
        self.everything = False
        self.wake = asyncio.Event()

    def take(self) -> tuple[set[Key], bool]:
        """What changed since the last take: (Service keys, whether anything else did)."""
        keys, everything = self.pending, self.everything
        self.pending, self.everything = set(), False
        self.wake.clear()
        return keys, everything


class Hub:
    def __init__(self) -> None:
        # Numbers start past any an earlier process of this dashboard gave
        # out (microseconds now): a tab that reconnects to a restarted one
        # names an older number and is sent everything, not a stale slice.
        self.generation = time.time_ns() // 1000
        self._log: deque[tuple[int, Key | None]] = deque(maxlen=LOG_SIZE)
        self._subscribers: set[Subscriber] = set()

    def changed(self, key: Key | None) -> None:
        """key None: something that concerns every page (a feed synced or was refused)."""
        self.generation += 1
        self._log.append((self.generation, key))
        for subscriber in self._subscribers:
            if key is None:
                subscriber.everything = True
            else:
                subscriber.pending.add(key)
            subscriber.wake.set()

    def subscribe(self, since: int | None) -> Subscriber:
        """A new subscriber, already holding what changed after generation `since`
        (everything, when that is older than the log remembers)."""
        subscriber = Subscriber()
        if since is not None and since > self.generation:
            subscriber.everything = True  # from a process whose clock ran ahead
            subscriber.wake.set()
        elif since is not None and since < self.generation:
            oldest = self._log[0][0] if self._log else self.generation + 1
            if since + 1 < oldest:
                subscriber.everything = True
            for generation, key in self._log:
                if generation <= since:
                    continue
                if key is None:
                    subscriber.everything = True
                else:
                    subscriber.pending.add(key)
            subscriber.wake.set()
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    def __len__(self) -> int:
        return len(self._subscribers)
