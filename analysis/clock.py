"""How far a metrics backend's clock is from ours, estimated NTP-style.

The controller works in its own clock (step starts, windows, deadlines);
Prometheus evaluates a query at a time in its clock and stamps samples with
it. A host whose clock is off (broken NTP, a VM resumed from suspend) then
reads every window shifted: behind, the canary's last seconds are never
read (a rollback comes late, and a canary whose scrapes stopped reads as
fresh); ahead, every sample reads as old (no data, a halt). So the adapter
asks the backend for its time and shifts what it sends by the difference.

A probe is one query of the backend's `time()` between two local readings:
the backend read its clock somewhere between them, so the offset is known to
within half the round trip (and the millisecond Prometheus rounds to). The
estimate is the probe with the lowest round trip among the last few
(queueing only ever adds delay, so the fastest is the tightest bound). A
probe whose bound misses an older one's cannot be the same clock: a host
clock that stepped. The older ones are dropped then, so the step is
followed at once, not after the old probes age out.

Pure: the caller takes the readings and decides when to probe.
"""

from __future__ import annotations

from dataclasses import dataclass

KEEP = 4  # probes remembered: a few minutes at one probe a minute
REPROBE_S = 60.0  # at most one probe this often, and only while queries are made
PROBE_TIMEOUT_S = 2.0  # a slower probe bounds the offset to no better than a second
TELL_S = 1.0  # an offset this far from the last one logged is logged
RESOLUTION_S = 0.001  # Prometheus reads its clock in whole milliseconds


@dataclass(frozen=True, slots=True)
class ClockProbe:
    sent: float  # local epoch seconds just before the probe went out
    received: float  # local epoch seconds just after its answer came
    remote: float  # the backend's own time in its answer

    @property
    def round_trip(self) -> float:
        return self.received - self.sent

    @property
    def offset(self) -> float:
        """Remote minus local, taking the remote reading as mid-way."""
        return self.remote - (self.sent + self.received) / 2

    @property
    def error(self) -> float:
        """How far the true offset can be from `offset`."""
        return self.round_trip / 2 + RESOLUTION_S

    def agrees(self, other: ClockProbe) -> bool:
        """Both bounds (offset +- half the round trip) overlap: one clock."""
        return abs(self.offset - other.offset) <= self.error + other.error


@dataclass(frozen=True, slots=True)
class ClockOffset:
    """The last few probes, oldest first."""

    probes: tuple[ClockProbe, ...] = ()

    def with_probe(self, probe: ClockProbe) -> ClockOffset:
        if probe.round_trip < 0:
            return self  # the local clock stepped during the probe: it bounds nothing
        kept = tuple(p for p in self.probes if p.agrees(probe))
        return ClockOffset((*kept, probe)[-KEEP:])

    @property
    def offset(self) -> float:
        """Seconds the backend's clock is ahead of ours; 0.0 before any
        probe, and for clocks that agree within what the best probe can
        measure: those queries are sent exactly as without a probe, not
        moved a millisecond by its noise (a sample on a window's edge would
        fall in or out with it)."""
        if not self.probes:
            return 0.0
        # min() keeps the first of equals: among equally fast probes, the oldest.
        # The newest is preferred instead, as the more recent reading.
        best = min(reversed(self.probes), key=lambda p: p.round_trip)
        return best.offset if abs(best.offset) > best.error else 0.0


def worth_telling(told: float, offset: float) -> bool:
    """Whether on-call should hear of `offset`, `told` being the last one
    logged (0.0 before any): a second or more from it, either way."""
    return abs(offset - told) >= TELL_S
