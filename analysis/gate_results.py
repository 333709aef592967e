"""What gates answered: plain values, shared by the webhook caller and the
pure rollout decisions."""

from __future__ import annotations

from dataclasses import dataclass

from analysis.spec import GateSpec


@dataclass(frozen=True, slots=True)
class GateAnswer:
    name: str
    kind: str
    open: bool
    status: int | None  # HTTP status of the last attempt; None when none answered
    reason: str
    attempts: int
    duration_ms: float


@dataclass(frozen=True, slots=True)
class GateResult:
    """All gates of one kind, asked together: open only if every one is."""

    kind: str
    answers: tuple[GateAnswer, ...]
    # The gates asked, as configured then (empty: unknown). Edited while the
    # call was in flight (a URL replaced), the answer is to another question.
    asked: tuple[GateSpec, ...] = ()

    @property
    def open(self) -> bool:
        return all(a.open for a in self.answers)

    @property
    def reason(self) -> str:
        closed = [a for a in self.answers if not a.open]
        if not closed:
            return f"{', '.join(a.name for a in self.answers)} open"
        return "; ".join(f"{a.name}: {a.reason}" for a in closed)
