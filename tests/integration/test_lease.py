"""Leader election with a fence, against the real API server: a leader whose
connection to the API server stalls (renews hang, they do not fail) stops
being allowed to write before another replica can take over, and nothing
crashes on the way."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from canary.kube import Kube, connect
from canary.kube.resources import LEASES
from canary.lease import LeaderElector, LeaseTimings
from canary.sandbox import cluster
from tests.integration.helpers import eventually

TIMINGS = LeaseTimings(duration_s=6.0, renew_deadline_s=4.0, retry_s=1.0)


class StallingProxy:
    """A TCP proxy to the API server that can be made to stall: bytes are no
    longer passed on, connections stay open (a hung network, not a refusal).
    close() ends every connection it holds, so nothing it opened outlives the
    test (a socket left to the garbage collector fails a later test)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.stalled = asyncio.Event()
        self.server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if self.stalled.is_set():
                    await asyncio.Event().wait()  # hang, keep the connection open
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        self._writers.add(writer)
        # Cancelled only by close(), which closes the connections itself.
        with contextlib.suppress(asyncio.CancelledError, OSError):
            if self.stalled.is_set():
                await asyncio.Event().wait()
            upstream_reader, upstream_writer = await asyncio.open_connection(self.host, self.port)
            self._writers.add(upstream_writer)
            await asyncio.gather(
                self._pipe(reader, upstream_writer),
                self._pipe(upstream_reader, writer),
                return_exceptions=True,
            )
        self._handlers.discard(handler)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for handler in list(self._handlers):
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        for writer in self._writers:
            writer.close()
        for writer in self._writers:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()
        if self.server is not None:
            await self.server.wait_closed()


def _server(kubeconfig: str) -> tuple[str, int]:
    config = yaml.safe_load(Path(kubeconfig).read_text())
    server = urlparse(config["clusters"][0]["cluster"]["server"])
    return server.hostname or "127.0.0.1", server.port or 443


def _proxied(kubeconfig: str, port: int, path: Path) -> str:
    config = yaml.safe_load(Path(kubeconfig).read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@contextlib.asynccontextmanager
async def through_proxy(
    sandbox: cluster.Sandbox, tmp_path: Path
) -> AsyncIterator[tuple[Kube, StallingProxy]]:
    proxy = StallingProxy(*_server(sandbox.kubeconfig))
    port = await proxy.start()
    kube = await connect(_proxied(sandbox.kubeconfig, port, tmp_path / "proxied-kubeconfig"))
    try:
        yield kube, proxy
    finally:
        proxy.stalled.clear()
        await kube.close()
        await proxy.close()


async def test_a_stalled_leader_stops_writing_before_the_standby_can_lead(
    kube: Kube, sandbox: cluster.Sandbox, namespace: str, tmp_path: Path
) -> None:
    async with through_proxy(sandbox, tmp_path) as (proxied, proxy):
        leader = LeaderElector(proxied, namespace, "canary-controller", "leader", TIMINGS)
        standby = LeaderElector(kube, namespace, "canary-controller", "standby", TIMINGS)
        await leader.acquire()
        assert leader.fence.valid
        holding = asyncio.create_task(leader.hold())
        standby_acquires = asyncio.create_task(standby.acquire())
        # Two renewals go through, as the Lease itself shows, while the
        # standby tries every retry period.
        renewals: set[str] = set()

        async def renewed() -> int:
            spec = (await kube.get(LEASES.path(namespace, "canary-controller")))["spec"]
            if spec.get("holderIdentity") == "leader":
                renewals.add(spec["renewTime"])
            return len(renewals)

        await eventually(renewed, lambda seen: seen >= 3, timeout_s=30, every_s=0.1)
        assert not standby_acquires.done() and leader.fence.valid
        proxy.stalled.set()
        stalled_at = time.monotonic()
        await asyncio.wait_for(holding, timeout=30)  # hold() returns: never raises
        fence_down = time.monotonic()
        assert not leader.fence.valid
        await asyncio.wait_for(standby_acquires, timeout=30)
        standby_leads = time.monotonic()
        print(  # the measured margins, for information
            f"fence down {fence_down - stalled_at:.2f}s after the stall, "
            f"standby leads {standby_leads - stalled_at:.2f}s after it"
        )
        # The order is the guarantee: the old leader could no longer write
        # before the new one could.
        assert fence_down < standby_leads
        lease = await kube.get(LEASES.path(namespace, "canary-controller"))
        assert lease["spec"]["holderIdentity"] == "standby"
        assert lease["spec"]["leaseTransitions"] >= 1


async def test_a_graceful_release_lets_the_standby_lead_without_waiting_for_expiry(
    kube: Kube, sandbox: cluster.Sandbox, namespace: str
) -> None:
    path = LEASES.path(namespace, "canary-controller")
    first = LeaderElector(kube, namespace, "canary-controller", "first", TIMINGS)
    await first.acquire()
    held = (await kube.get(path))["spec"]
    # The standby on a client of its own, so its requests can be counted.
    async with await connect(sandbox.kubeconfig) as own:
        second = LeaderElector(own, namespace, "canary-controller", "second", TIMINGS)
        acquiring = asyncio.create_task(second.acquire())

        async def reads() -> int:
            return own.requests.get("GET", 0)

        # Its second read comes only after a first attempt found the lease held.
        await eventually(reads, lambda count: count >= 2, timeout_s=30, every_s=0.05)
        assert not acquiring.done()
        await first.release()
        lease = await kube.get(path)
        released_record = lease["spec"].get("renewTime")
        await asyncio.wait_for(acquiring, timeout=30)
    lease = await kube.get(path)
    assert lease["spec"]["holderIdentity"] == "second"
    assert released_record is None  # handed back, not left to expire
    # Taken before the first holder's record could have expired.
    expires = _epoch(held["renewTime"]) + held["leaseDurationSeconds"]
    acquired = _epoch(lease["spec"]["acquireTime"])
    assert acquired < expires, (held, lease["spec"])
    print(f"taken {expires - acquired:.1f}s before the released record would have expired")


def _epoch(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp).timestamp()


async def _both_lead(leader: LeaderElector, standby: LeaderElector, for_s: float) -> bool:
    end = time.monotonic() + for_s
    while time.monotonic() < end:
        if leader.fence.valid and standby.fence.valid:
            return True
        await asyncio.sleep(0.01)
    return False


@pytest.mark.parametrize("by_hand", ["deleted", "emptied"])
async def test_a_lease_deleted_or_emptied_by_hand_never_makes_two_leaders(
    kube: Kube, sandbox: cluster.Sandbox, namespace: str, tmp_path: Path, by_hand: str
) -> None:
    """On-call "resets" a stuck election: `kubectl delete lease`, or the
    holder emptied with `kubectl edit`, while the leader's path to the API
    server is slow (its renews hang, inside its fence). A standby that took
    the Lease at once then led while the old leader could still write; it
    waits out a lease duration instead, and only then leads."""
    path = LEASES.path(namespace, "canary-controller")
    async with (
        through_proxy(sandbox, tmp_path) as (proxied, proxy),
        # The standby on a client of its own, so its reads can be counted.
        await connect(sandbox.kubeconfig) as own,
    ):
        leader = LeaderElector(proxied, namespace, "canary-controller", "leader", TIMINGS)
        standby = LeaderElector(own, namespace, "canary-controller", "standby", TIMINGS)
        await leader.acquire()
        holding = asyncio.create_task(leader.hold())
        standby_acquires = asyncio.create_task(standby.acquire())
        try:
            # The standby has read the leader's record at least once: its
            # second read comes only after a first attempt found it held.
            # Waited for, not slept for (2.5 retry periods were assumed
            # enough): a first read still in flight at the deletion found
            # no Lease, and a standby may take a Lease nobody holds at once.
            async def reads() -> int:
                return own.requests.get("GET", 0)

            await eventually(reads, lambda count: count >= 2, timeout_s=30, every_s=0.05)
            assert leader.fence.valid and not standby_acquires.done()
            proxy.stalled.set()
            if by_hand == "deleted":
                await kube.delete(path)
            else:
                lease = await kube.get(path)
                lease["spec"]["holderIdentity"] = None
                await kube.replace(path, lease)
            overlap = await _both_lead(leader, standby, for_s=TIMINGS.duration_s + 2)
            assert not overlap, "the standby led while the old leader's fence still let it write"
            await asyncio.wait_for(standby_acquires, timeout=30)
            assert (await kube.get(path))["spec"]["holderIdentity"] == "standby"
        finally:
            holding.cancel()
            standby_acquires.cancel()
            await asyncio.gather(holding, standby_acquires, return_exceptions=True)
