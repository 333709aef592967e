"""A small accumulator for one decision: actions, state changes, wake-up."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from canary.model import (
    COLORS,
    Action,
    ApplyTwin,
    Color,
    Emit,
    Observed,
    Plan,
    ScaleTwin,
    SetSelector,
    State,
)


class Draft:
    """Also tracks the selector and twin sizes as the actions so far leave
    them, so a later step of the same decision does not ask for them again."""

    def __init__(self, state: State, observed: Observed) -> None:
        self.state = state
        self.read = state  # as the cycle read it, before any of its decisions
        self.actions: list[Action] = []
        self._wake: float | None = None
        self.release = False
        self.judged = False
        self.selector = dict(observed.selector)
        self.replicas: dict[Color, int] = {c: observed.twin(c).replicas for c in COLORS}

    def do(self, *actions: Action) -> None:
        for action in actions:
            match action:
                case SetSelector(selector):
                    self.selector = dict(selector)
                case ScaleTwin(color, replicas) | ApplyTwin(color, _, replicas):
                    self.replicas[color] = replicas
                    # A later size for the same twin in the same decision wins:
                    # scaling it to 0 and straight back up would only delete
                    # and recreate its pods (a flap the soak counted as a loop).
                    self.actions = [
                        a
                        for a in self.actions
                        if not (isinstance(a, ScaleTwin) and a.color == color)
                    ]
                case _:
                    pass
            self.actions.append(action)

    def emit(self, reason: str, message: str, *, warning: bool = False) -> None:
        self.actions.append(Emit(reason, message, warning))

    def note(self, reason: str, message: str) -> None:
        """In the history's record of the rollout, not as an Event."""
        self.actions.append(Emit(reason, message, noted=True))

    def set(self, **changes: Any) -> None:
        self.state = replace(self.state, **changes)

    def say(self, message: str) -> None:
        self.state = replace(self.state, message=message)

    def wake_in(self, seconds: float) -> None:
        """Ask to be reconciled again after `seconds`, even without an event."""
        seconds = max(seconds, 0.0)
        self._wake = seconds if self._wake is None else min(self._wake, seconds)

    def plan(self) -> Plan:
        return Plan(tuple(self.actions), self.state, self._wake, self.release, self.judged)
