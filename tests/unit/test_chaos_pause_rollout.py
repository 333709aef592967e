"""The soak's pause-rollout fault (chaos.faults): on-call's `canary pause`,
then `canary resume` a while later. Each test drives the fault with the
CLI's processes faked (their exit code and stderr, as the real CLI prints
them); each failed on the code before its fix."""

from __future__ import annotations

import asyncio
from random import Random
from types import SimpleNamespace
from typing import Any

import pytest

from chaos import fleet
from chaos.faults import Injector

PENDING = (
    "canary resume: an earlier request, 'pause 2026-12-02T10:00:00.000000Z', has not been "
    "taken by the controller yet (`canary status` shows its phase); ask again once it has, "
    "or set canary.io/action with kubectl to replace it"
)


class _Proc:
    def __init__(self, returncode: int, err: str) -> None:
        self.returncode = returncode
        self._err = err

    async def communicate(self) -> tuple[bytes, bytes]:
        return b"", self._err.encode()


def _injector(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[tuple[int, str]]]) -> Any:
    """An injector whose `canary <verb>` answers from `answers`, in order
    (the last one again once they run out); the verbs run, in `ran`."""
    ran: list[str] = []

    async def exec_(*argv: str, **_: Any) -> _Proc:
        verb = argv[3]
        ran.append(verb)
        queue = answers[verb]
        return _Proc(*(queue.pop(0) if len(queue) > 1 else queue[0]))

    async def no_wait(_: float) -> None:
        return None

    monkeypatch.setattr("chaos.faults.asyncio.create_subprocess_exec", exec_)
    monkeypatch.setattr("chaos.faults.asyncio.sleep", no_wait)
    injector = Injector(
        rng=Random(1),
        sandbox=None,  # type: ignore[arg-type]
        kubectl=SimpleNamespace(kubeconfig="/tmp/kubeconfig"),  # type: ignore[arg-type]
        apps=[],
        replicas=None,  # type: ignore[arg-type]
        blindness=None,  # type: ignore[arg-type]
    )
    return injector, ran


def test_a_resume_refused_while_the_pause_is_not_taken_yet_is_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pause is written while the controller cannot take it yet (its
    leader just killed, the API server stopped a while): the resume 10-40 s
    later is refused by the CLI, one request at a time (`an earlier request
    ... has not been taken by the controller yet`). It was taken for a
    refusal for good ("nothing to resume"), never asked again, and the
    controller then took the pause: the app's rollouts stood paused for the
    rest of the soak (its releases unanalysed, its verdicts about nothing),
    and the fault read as done. It is asked again until it is taken."""
    app = fleet.plan(1, 7)[0]
    injector, ran = _injector(
        monkeypatch, {"pause": [(0, "")], "resume": [(1, PENDING), (1, PENDING), (0, "")]}
    )
    done = asyncio.run(injector._pause_rollout(app))
    assert ran == ["pause", "resume", "resume", "resume"], ran
    assert done.startswith(f"canary pause {app.name}, canary resume "), done
