"""Leader election on a coordination.k8s.io Lease, with a fence.

Why not kubernetes_asyncio's LeaderElection: its lease calls have no
request timeout (a hung renew never reaches its deadline) and only
ApiException is caught (a transport error crashes the replica). Here:

- every request is bounded, and any failure is just a failed attempt;
- a candidate takes the lease only after the holder's record has stayed
  unchanged for a whole lease duration, timed by its own monotonic clock
  (as client-go does: no trust in other machines' clocks);
- the leader holds a fence: it may write only until `renew deadline` after
  the moment it *sent* its last successful renew. The deadline is shorter
  than the lease duration, so a leader that can no longer renew stops
  writing before any other replica could have taken over.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from canary.kube import Conflict, Kube, KubeError, NotFound
from canary.kube.resources import LEASES

log = logging.getLogger(__name__)

FIELD_MANAGER = "canary-controller"


@dataclass(frozen=True)
class LeaseTimings:
    duration_s: float = 15.0  # how long a record must stay unchanged before others take over
    renew_deadline_s: float = 10.0  # the leader writes only this long after a renew it sent
    retry_s: float = 2.0  # how often to renew, or to try to acquire

    def __post_init__(self) -> None:
        if not self.retry_s < self.renew_deadline_s < self.duration_s:
            raise ValueError("need retry < renew deadline < lease duration")


def _micro(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Fence:
    """Whether this replica may still write, by its own monotonic clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until = 0.0

    def extend(self, until: float) -> None:
        self._until = until

    def revoke(self) -> None:
        self._until = 0.0

    @property
    def valid(self) -> bool:
        return self._clock() < self._until

    @property
    def remaining(self) -> float:
        return max(self._until - self._clock(), 0.0)


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        timings: LeaseTimings = LeaseTimings(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.path = LEASES.path(namespace, name)
        self.collection = LEASES.path(namespace)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.timings = timings
        self.clock = clock
        self.fence = Fence(clock)
        # The other holder's record as we last saw it, and since when (our clock).
        self._seen: tuple[str, str] | None = None
        self._seen_at = 0.0

    async def acquire(self) -> None:
        """Return once this replica leads (its fence is then valid)."""
        while not await self._try():  # noqa: ASYNC110 - polling the API is the protocol
            await asyncio.sleep(self.timings.retry_s)

    async def hold(self) -> None:
        """Renew until it fails for a whole renew deadline; then revoke the
        fence and return (the caller must stop acting at once)."""
        while True:
            await asyncio.sleep(self.timings.retry_s)
            if not self.fence.valid:
                break
            if await self._try():
                continue
            if not self.fence.valid:
                break
        self.fence.revoke()

    async def release(self) -> None:
        """Hand the lease back (graceful stop), so a standby need not wait."""
        self.fence.revoke()
        try:
            lease = await self.kube.request("GET", self.path, timeout=5.0)
            if lease.get("spec", {}).get("holderIdentity") != self.identity:
                return
            lease["spec"]["holderIdentity"] = None
            lease["spec"]["renewTime"] = None
            await self.kube.request(
                "PUT", self.path, body=lease, timeout=5.0, query={"fieldManager": FIELD_MANAGER}
            )
            log.info("released lease %s/%s", self.namespace, self.name)
        except KubeError as exc:
            log.warning("could not release the lease: %s", exc)

    async def _try(self) -> bool:
        """One bounded attempt to acquire or renew; True if we lead now."""
        sent = self.clock()
        # Never wait longer than the fence has left (a renew that returns after
        # the deadline proves nothing), nor longer than one retry period.
        budget = self.fence.remaining if self.fence.valid else self.timings.retry_s
        timeout = max(min(budget, self.timings.retry_s * 2), 0.5)
        try:
            return await asyncio.wait_for(self._attempt(sent), timeout)
        except (KubeError, TimeoutError, OSError) as exc:
            log.warning("lease %s/%s: attempt failed: %s", self.namespace, self.name, exc)
            return False

    async def _attempt(self, sent: float) -> bool:
        try:
            lease = await self.kube.request("GET", self.path, timeout=self.timings.retry_s)
        except NotFound:
            now = time.time()
            body = {
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, transitions=0, acquired=now),
            }
            await self.kube.request(
                "POST",
                self.collection,
                body=body,
                timeout=self.timings.retry_s,
                query={"fieldManager": FIELD_MANAGER},
            )
            return self._won(sent)
        now = time.time()  # after the read: a record never claims a time before it was seen
        spec: dict[str, Any] = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (str(holder), str(spec.get("renewTime") or ""))
        if holder and holder != self.identity:
            if record != self._seen:
                self._seen, self._seen_at = record, self.clock()
            duration = float(spec.get("leaseDurationSeconds") or self.timings.duration_s)
            if self.clock() - self._seen_at < duration:
                self.fence.revoke()
                return False  # someone else leads, and renews
        transitions = int(spec.get("leaseTransitions") or 0)
        mine = holder == self.identity
        lease["spec"] = self._spec(
            now,
            transitions=transitions if mine else transitions + 1,
            acquired=spec.get("acquireTime") if mine else now,
        )
        try:
            await self.kube.request(
                "PUT",
                self.path,
                body=lease,
                timeout=self.timings.retry_s,
                query={"fieldManager": FIELD_MANAGER},
            )
        except Conflict:
            return False  # someone wrote it first; look again next time
        return self._won(sent)

    def _won(self, sent: float) -> bool:
        self.fence.extend(sent + self.timings.renew_deadline_s)
        self._seen = None
        return True

    def _spec(self, now: float, transitions: int, acquired: Any) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.timings.duration_s),
            "acquireTime": acquired if isinstance(acquired, str) else _micro(float(acquired)),
            "renewTime": _micro(now),
            "leaseTransitions": transitions,
        }
