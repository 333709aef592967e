"""A small accumulator for one decision: actions, state changes, wake-up."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from canary.model import Action, Emit, Plan, State


class Draft:
    def __init__(self, state: State) -> None:
        self.state = state
        self.actions: list[Action] = []
        self._wake: float | None = None
        self.release = False

    def do(self, *actions: Action) -> None:
        self.actions.extend(actions)

    def emit(self, reason: str, message: str, *, warning: bool = False) -> None:
        self.actions.append(Emit(reason, message, warning))

    def set(self, **changes: Any) -> None:
        self.state = replace(self.state, **changes)

    def say(self, message: str) -> None:
        self.state = replace(self.state, message=message)

    def wake_in(self, seconds: float) -> None:
        """Ask to be reconciled again after `seconds`, even without an event."""
        seconds = max(seconds, 0.0)
        self._wake = seconds if self._wake is None else min(self._wake, seconds)

    def plan(self) -> Plan:
        return Plan(tuple(self.actions), self.state, self._wake, self.release)
