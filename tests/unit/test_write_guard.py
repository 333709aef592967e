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


def _twin_writes(exists: bool) -> int:
    """The blue twin's template written REPEATS + 3 times with no progress
    (put back after hand edits, or created again after deletes)."""
    guard, made = WriteGuard(), []
    source = {
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {}},
    }
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}
    twin = {"metadata": {"name": "web-blue"}} if exists else None

    async def apply(body: dict[str, object]) -> None:
        made.append(body)

    async def nothing() -> None:
        return None

    for i in range(REPEATS + 3):
        actor = Actor(
            None,  # type: ignore[arg-type]  # no request is made: the writes are stand-ins
            Target("shop", "web", "web", {"metadata": {"name": "web", "namespace": "shop"}}),
            lambda obj: None,
            lambda kind, name: twin,
            guard,
            progress="blue/r1/r2/1000/0",
            now=1000.0 + i,
        )
        actor._apply_twin = apply  # type: ignore[method-assign]
        actor.fix_digest = nothing  # type: ignore[method-assign]
        asyncio.run(actor.apply_twin("blue", "r1", 3, source, template, {}))
    return len(made)


def test_a_twin_edited_again_and_again_stops_being_put_back() -> None:
    assert _twin_writes(exists=True) == REPEATS


def test_a_twin_deleted_again_and_again_is_always_created_again() -> None:
    """Chaos seed 24: the stable twin, put back after an edit and a restart,
    was deleted with `--cascade=orphan`; the team's Deployment adopted its
    ReplicaSet and scaled it to 0, and the guard held the twin's creation
    back: the Service had no endpoint for 30 s and more."""
    assert _twin_writes(exists=False) == REPEATS + 3
