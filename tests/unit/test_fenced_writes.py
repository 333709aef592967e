"""A write is given up when the fence falls while it is in flight, not when
the fence's time left at its start has passed: renewals extend it."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.unit.test_lease_bad_day import TIMINGS, LeaseStore, _electors, fenced_actor


class _SlowButHealthyApi:
    """A Deployment write held by a slow admission webhook (a webhook's
    default timeout is 10 s, the renew deadline is 10 s): accepted after
    `delay_s`, well within the client's 30 s request timeout."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.landed = 0

    async def patch(self, path: str, body: Any, patch_type: str = "merge", **_: Any) -> Any:
        await asyncio.sleep(self.delay_s)
        self.landed += 1
        return {"kind": "Deployment", "metadata": {"name": path.rsplit("/", 1)[-1]}}


async def test_a_slow_write_is_not_given_up_while_the_lease_is_renewed_throughout() -> None:
    store = LeaseStore()
    leader, _, _, _ = _electors(store)
    await leader.acquire()
    holding = asyncio.create_task(leader.hold())  # renews every retry_s, all succeed
    await asyncio.sleep(TIMINGS.retry_s * 1.5)
    api = _SlowButHealthyApi(delay_s=TIMINGS.renew_deadline_s * 1.25)
    actor = fenced_actor(api, leader)
    fell = False

    async def watch() -> None:
        nonlocal fell
        while True:
            fell = fell or not leader.fence.valid
            await asyncio.sleep(0.005)

    watching = asyncio.create_task(watch())
    error: BaseException | None = None
    try:
        await actor.scale_twin("green", 10)
    except BaseException as exc:
        error = exc
    finally:
        watching.cancel()
        holding.cancel()
        await asyncio.gather(watching, holding, return_exceptions=True)
    assert not fell, "precondition: the lease was renewed throughout"
    assert error is None, f"a leader that never lost its fence gave up its write: {error!r}"
