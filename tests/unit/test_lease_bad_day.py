"""Leader election on a bad day, against an in-memory Lease store (no
cluster): a Lease deleted or cleared by hand, a slow initial sync, writes
still in flight when the fence falls."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any

import pytest

from canary.act import Actor, NotLeading, Target
from canary.kube import Conflict, NotFound
from canary.lease import LeaderElector, LeaseTimings
from canary.run import LeadershipLost, RunOptions, _elect
from canary.writeguard import WriteGuard

# Small, so the tests run in about a second; same ratios as run.TIMINGS.
TIMINGS = LeaseTimings(duration_s=0.6, renew_deadline_s=0.4, retry_s=0.08)


class LeaseStore:
    """One namespace's Leases, as the API server keeps them."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.rv = 0

    def _bump(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        obj = copy.deepcopy(obj)
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
        return obj


class Client:
    """A replica's client of the store; `stalled` makes its requests hang."""

    def __init__(self, store: LeaseStore) -> None:
        self.store = store
        self.stalled = False
        self.requests: dict[str, int] = {}

    async def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> Any:
        self.requests[method] = self.requests.get(method, 0) + 1
        await asyncio.sleep(0)
        while self.stalled:  # noqa: ASYNC110 - a switch the test flips
            await asyncio.sleep(0.01)
        store = self.store
        name = path.rsplit("/", 1)[-1]
        if method == "GET":
            if name not in store.objects:
                raise NotFound(404, "NotFound", name)
            return copy.deepcopy(store.objects[name])
        if method == "POST":
            name = body["metadata"]["name"]
            if name in store.objects:
                raise Conflict(409, "AlreadyExists", name)
            store.objects[name] = store._bump(body)
            return copy.deepcopy(store.objects[name])
        if method == "PUT":
            current = store.objects.get(name)
            if current is None:
                raise NotFound(404, "NotFound", name)
            sent = (body.get("metadata") or {}).get("resourceVersion")
            if sent and sent != current["metadata"]["resourceVersion"]:
                raise Conflict(409, "Conflict", name)
            store.objects[name] = store._bump(body)
            return copy.deepcopy(store.objects[name])
        raise AssertionError(method)


def _electors(store: LeaseStore) -> tuple[LeaderElector, LeaderElector, Client, Client]:
    a, b = Client(store), Client(store)
    leader = LeaderElector(a, "ops", "canary-controller", "leader", TIMINGS)  # type: ignore[arg-type]
    standby = LeaderElector(b, "ops", "canary-controller", "standby", TIMINGS)  # type: ignore[arg-type]
    return leader, standby, a, b


async def _slow_for(client: Client, seconds: float) -> None:
    client.stalled = True
    asyncio.get_running_loop().call_later(seconds, setattr, client, "stalled", False)


async def _both_lead(leader: LeaderElector, standby: LeaderElector, for_s: float) -> bool:
    """Whether, at some moment within `for_s`, both fences are valid."""
    loop = asyncio.get_running_loop()
    end = loop.time() + for_s
    while loop.time() < end:
        if leader.fence.valid and standby.fence.valid:
            return True
        await asyncio.sleep(0.002)
    return False


async def _tampered(edit: Callable[[LeaseStore], None]) -> bool:
    """A leader renewing and a standby trying; someone edits the Lease by
    hand, and the leader's next renew is a little slow (well within its
    fence), so the standby's next try comes first, as it does half the
    time. Whether both fences were ever valid at once."""
    store = LeaseStore()
    leader, standby, leader_client, _ = _electors(store)
    await leader.acquire()
    holding = asyncio.create_task(leader.hold())
    standby_acquires = asyncio.create_task(standby.acquire())
    await asyncio.sleep(0.3)
    assert leader.fence.valid and not standby_acquires.done()
    edit(store)
    await _slow_for(leader_client, TIMINGS.renew_deadline_s / 2)
    try:
        return await _both_lead(leader, standby, for_s=1.0)
    finally:
        holding.cancel()
        standby_acquires.cancel()
        await asyncio.gather(holding, standby_acquires, return_exceptions=True)


async def test_a_lease_deleted_by_hand_never_makes_two_leaders() -> None:
    """On-call "resets" a stuck election with `kubectl delete lease
    canary-controller`: the standby found no Lease and created one at once,
    while the leader's fence (renew deadline) was still valid."""
    overlap = await _tampered(lambda store: store.objects.clear())
    assert not overlap, "the standby led while the old leader's fence still let it write"


def _clear_holder(store: LeaseStore) -> None:
    lease = store.objects["canary-controller"]
    lease["spec"]["holderIdentity"] = ""
    store.objects["canary-controller"] = store._bump(lease)


async def test_a_lease_cleared_by_hand_never_makes_two_leaders() -> None:
    """The same with holderIdentity emptied by hand (`kubectl edit lease`,
    or a script that "releases" it): the standby took an empty record at
    once, and the leader, whose PUT then conflicted, kept its fence."""
    overlap = await _tampered(_clear_holder)
    assert not overlap, "the standby led while the old leader's fence still let it write"


class _Metric:
    def set(self, value: float) -> None:
        pass


class _SlowSyncController:
    """What _elect needs of the Controller: caches that take a while to list."""

    def __init__(self, sync_s: float) -> None:
        self.synced = asyncio.Event()
        self.active = False
        self.edges = type("E", (), {"metrics": type("M", (), {"leader": _Metric()})()})()
        asyncio.get_running_loop().call_later(sync_s, self.synced.set)

    def activate(self) -> None:
        self.active = True


async def test_a_slow_first_sync_does_not_lose_an_uncontested_lease() -> None:
    """A big cluster: the first list of every Secret and ConfigMap takes
    longer than the renew deadline (10 s in production). _elect acquires the
    Lease, then waits for the caches *without renewing*; the fence lapses
    and hold() gives up at once: LeadershipLost, the process exits, and the
    restart does the same (crash loop, nothing reconciled), though nobody
    else wanted the Lease and the API server answered every request."""
    store = LeaseStore()
    client = Client(store)
    elector = LeaderElector(client, "ops", "canary-controller", "only", TIMINGS)  # type: ignore[arg-type]
    controller = _SlowSyncController(sync_s=TIMINGS.renew_deadline_s * 1.5)
    options = RunOptions(prometheus=None)  # type: ignore[arg-type]
    electing = asyncio.create_task(_elect(options, elector, controller))  # type: ignore[arg-type]
    await asyncio.sleep(TIMINGS.renew_deadline_s * 1.5 + TIMINGS.duration_s * 2)
    lost = electing.done() and isinstance(electing.exception(), LeadershipLost)
    electing.cancel()
    await asyncio.gather(electing, return_exceptions=True)
    assert not lost, "an uncontested leader lost its lease while its caches synced"
    assert controller.active


class _SlowWrites:
    """The API server (or the path to it) is slow: a write is accepted
    after `delay_s` (a partition that heals, an APF queue), and lands."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.landed: list[tuple[str, float]] = []

    async def patch(self, path: str, body: Any, patch_type: str = "merge", **_: Any) -> Any:
        await asyncio.sleep(self.delay_s)
        self.landed.append((path, asyncio.get_running_loop().time()))
        return {"kind": "Deployment", "metadata": {"name": path.rsplit("/", 1)[-1]}}


def fenced_actor(api: object, leader: LeaderElector) -> Actor:
    """An Actor writing to `api` under the leader's fence."""
    service = {"metadata": {"name": "web", "namespace": "shop", "resourceVersion": "1"}}
    return Actor(
        api,  # type: ignore[arg-type]
        Target("shop", "web", "web", service),
        lambda obj: None,
        lambda kind, name: None,
        WriteGuard(),
        progress="p",
        now=0.0,
        fence=lambda: leader.fence.remaining,
    )


async def test_a_write_sent_under_the_fence_never_lands_after_another_replica_leads() -> None:
    """The fence is checked before a write is sent, but the write is then
    allowed the client's whole REQUEST_TIMEOUT_S (30 s), far longer than
    the 5 s between the fence falling (renew deadline) and a standby taking
    over (lease duration). A ScaleTwin sent just before the renews stall
    lands after the standby leads; a twin scale carries no precondition."""
    store = LeaseStore()
    leader, standby, leader_client, _ = _electors(store)
    await leader.acquire()
    holding = asyncio.create_task(leader.hold())
    standby_acquires = asyncio.create_task(standby.acquire())
    await asyncio.sleep(0.2)
    # The path to the API server turns slow: renews hang, and so does the
    # write the leader sends now (its fence is valid when it checks).
    leader_client.stalled = True
    api = _SlowWrites(delay_s=TIMINGS.duration_s * 2.5)  # < 30 s scaled: 0.6*2.5 vs 0.6*50
    actor = fenced_actor(api, leader)
    assert leader.fence.valid
    writing = asyncio.create_task(actor.scale_twin("green", 10))
    await asyncio.wait_for(standby_acquires, timeout=5)
    standby_led_at = asyncio.get_running_loop().time()
    with pytest.raises(NotLeading):
        await asyncio.wait_for(writing, timeout=5)  # given up when the fence fell
    await asyncio.sleep(TIMINGS.duration_s * 2.5)
    await asyncio.gather(holding, return_exceptions=True)
    late = [at for _, at in api.landed if at >= standby_led_at]
    assert not late, f"the old leader's write landed {late[0] - standby_led_at:.2f}s after"


async def test_a_release_is_taken_at_once_and_a_first_start_does_not_wait() -> None:
    """The waits above are only for a record that may hide a live writer: a
    Lease nobody held yet is taken at once, a graceful release after its own
    1 s (in production against 15 s for a holder's record)."""
    store = LeaseStore()
    leader, standby, _, _ = _electors(store)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await leader.acquire()  # no Lease yet: created at once
    assert loop.time() - began < TIMINGS.retry_s
    acquiring = asyncio.create_task(standby.acquire())
    await asyncio.sleep(0.2)
    assert not acquiring.done()
    await leader.release()
    assert store.objects["canary-controller"]["spec"]["leaseDurationSeconds"] == 1
    released = loop.time()
    await asyncio.wait_for(acquiring, timeout=5)
    assert loop.time() - released < 1.0 + 2 * TIMINGS.retry_s
