"""A fight stops our writes to an object, except the ones that take traffic
away from pods nobody analysed."""

from __future__ import annotations

import asyncio

from canary.act import Actor, Target
from canary.writeguard import REPEATS, WriteGuard


def _actor(guard: WriteGuard, now: float) -> Actor:
    service = {"metadata": {"name": "web", "namespace": "shop", "resourceVersion": "1"}}
    return Actor(
        None,  # type: ignore[arg-type]  # no request is made: the writes are stand-ins
        Target("shop", "web", "web", service),
        lambda obj: None,
        lambda kind, name: None,
        guard,
        progress="blue/r1/r2/1000/0",
        now=now,
    )


def _writes(safe: bool) -> int:
    guard, done = WriteGuard(), []

    async def write() -> None:
        done.append(1)

    key = ("Service", "shop", "web", "selector")
    for i in range(REPEATS + 3):  # a GitOps tool resets the selector, we put it back, ...
        actor = _actor(guard, 1000.0 + i)
        asyncio.run(actor._guarded(key, {"app": "web", "canary.io/twin": "blue"}, write, safe))
    return len(done)


def test_a_fight_stops_ordinary_writes_to_the_object() -> None:
    assert _writes(safe=False) == REPEATS


def test_putting_the_selector_back_on_the_stable_twin_is_never_held_back() -> None:
    assert _writes(safe=True) == REPEATS + 3
