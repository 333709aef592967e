"""Leader election on a coordination.k8s.io Lease, with a fence.

Why not kubernetes_asyncio's LeaderElection: its lease calls have no
request timeout (a hung renew never reaches its deadline) and only
ApiException is caught (a transport error crashes the replica). Here:

- every request is bounded, and any failure is just a failed attempt; an
  attempt may take as long as the fence has left (a renew) or the whole
  renew deadline (an acquire), as client-go bounds its requests by the renew
  deadline: an API server that answers slowly (2-3 s, a busy machine) keeps
  its leader, because a renew that lands extends the fence from when it was
  *sent*;
- a renew is one PUT of the record this replica last wrote (its
  resourceVersion proves nobody wrote in between, as client-go's fast path
  does), and a GET first only when that conflicts;
- renews are paced by when they were sent, so a slow one does not stretch
  the period;
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from canary.kube import Conflict, Kube, KubeError, NotFound
from canary.kube.resources import LEASES
from canary.spec import FIELD_MANAGER

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseTimings:
    duration_s: float = 15.0  # how long a record must stay unchanged before others take over
    renew_deadline_s: float = 10.0  # the leader writes only this long after a renew it sent
    retry_s: float = 2.0  # how often to renew, or to try to acquire

    def __post_init__(self) -> None:
        if not self.retry_s < self.renew_deadline_s < self.duration_s:
            raise ValueError("need retry < renew deadline < lease duration")


# On the Lease: the namespaces its holder watches (`canary run --namespace`,
# sorted and comma-separated; ALL for every one). A list shrunk across a
# restart leaves a Service mid-step in a namespace no longer watched: its
# canary keeps its weight, unanalysed, and a `canary abort` there is written
# and never taken. Nothing said so: the new leader logs what it took over
# and does not watch (unwatched), and the CLI warns on-call asking about a
# Service outside it (oncall.lease_warning).
SCOPE_ANNOTATION = "canary.io/namespaces"
ALL = "*"


def scope_of(namespaces: Sequence[str]) -> str:
    """The Lease's SCOPE_ANNOTATION for `canary run --namespace` (empty: all)."""
    return ",".join(sorted(set(namespaces))) or ALL


def covers(scope: str, namespace: str) -> bool:
    """Whether a holder with this scope watches `namespace` (a scope not
    written, by a version before it was, is taken to)."""
    return not scope or scope == ALL or namespace in scope.split(",")


def unwatched(before: str, now: str) -> str:
    """What the scope `before` watched that `now` does not, said ("" when nothing)."""
    if not before or now in (ALL, before):
        return ""
    if before == ALL:
        return f"every namespace but {now.replace(',', ', ')}"
    return ", ".join(sorted(set(before.split(",")) - set(now.split(","))))


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
        scope: str = ALL,
    ) -> None:
        self.kube = kube
        self.scope = scope  # SCOPE_ANNOTATION: the namespaces this replica watches
        # What the holder this replica took the Lease from watched and this
        # one does not ("" when nothing, or it took it from no one).
        self.left_unwatched = ""
        self.path = LEASES.path(namespace, name)
        self.collection = LEASES.path(namespace)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.timings = timings
        self.clock = clock
        self.fence = Fence(clock)
        # The other holder's record as we last saw it, and since when (our clock).
        self._seen: tuple[str, str] | None = None
        self._seen_at = 0.0
        self._sent = 0.0  # when the last attempt was sent (our clock)
        self._mine: dict[str, Any] | None = None  # the record as we last wrote it

    async def acquire(self) -> None:
        """Return once this replica leads (its fence is then valid)."""
        while not await self._try():  # noqa: ASYNC110 - polling the API is the protocol
            await asyncio.sleep(max(self._sent + self.timings.retry_s - self.clock(), 0.0))

    async def hold(self) -> None:
        """Renew until it fails for a whole renew deadline; then revoke the
        fence and return (the caller must stop acting at once)."""
        while True:
            await asyncio.sleep(max(self._sent + self.timings.retry_s - self.clock(), 0.0))
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
        self._mine = None
        try:
            lease = await self.kube.request("GET", self.path, timeout=5.0)
            if lease.get("spec", {}).get("holderIdentity") != self.identity:
                return
            lease["spec"]["holderIdentity"] = None
            lease["spec"]["renewTime"] = None
            # Marks a release (a standby waits 1 s, not a whole duration): a
            # holder emptied by hand keeps its duration, and is waited out.
            lease["spec"]["leaseDurationSeconds"] = 1
            await self.kube.request(
                "PUT", self.path, body=lease, timeout=5.0, query={"fieldManager": FIELD_MANAGER}
            )
            log.info("released lease %s/%s", self.namespace, self.name)
        except KubeError as exc:
            log.warning("could not release the lease: %s", exc)

    async def _try(self) -> bool:
        """One bounded attempt to acquire or renew; True if we lead now."""
        sent = self._sent = self.clock()
        # A renew may wait as long as the fence has left: landing by then, it
        # extends the fence from `sent`; later, it would prove nothing (the
        # fence has fallen and the caller stops). An acquire may wait the
        # whole renew deadline: the fence it earns also counts from `sent`.
        leading = self.fence.valid
        timeout = max(self.fence.remaining if leading else self.timings.renew_deadline_s, 0.5)
        try:
            return await asyncio.wait_for(self._attempt(sent, leading, timeout), timeout)
        except (KubeError, TimeoutError, OSError) as exc:
            self._mine = None
            log.warning("lease %s/%s: attempt failed: %s", self.namespace, self.name, exc)
            return False

    async def _attempt(self, sent: float, leading: bool, timeout: float) -> bool:
        if leading and self._mine is not None and await self._renew(self._mine, timeout):
            return self._won(sent)
        try:
            lease = await self.kube.request("GET", self.path, timeout=timeout)
        except NotFound:
            if not leading and self._wait_out(("", "<deleted>"), self.timings.duration_s):
                # Deleted by hand while someone led (we saw their record):
                # they may still write until their fence falls.
                return False
            now = time.time()
            body = {
                "metadata": {
                    "name": self.name,
                    "namespace": self.namespace,
                    "annotations": {SCOPE_ANNOTATION: self.scope},
                },
                "spec": self._spec(now, transitions=0, acquired=now),
            }
            self._mine = await self.kube.request(
                "POST",
                self.collection,
                body=body,
                timeout=timeout,
                query={"fieldManager": FIELD_MANAGER},
            )
            return self._won(sent)
        now = time.time()  # after the read: a record never claims a time before it was seen
        spec: dict[str, Any] = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (str(holder), str(spec.get("renewTime") or ""))
        duration = float(spec.get("leaseDurationSeconds") or self.timings.duration_s)
        if holder and holder != self.identity and self._wait_out(record, duration):
            self.fence.revoke()
            return False  # someone else leads, and renews
        if not holder and not leading and self._wait_out(record, duration):
            # Emptied: by a release (1 s) or by hand (who led may still write).
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        mine = holder == self.identity
        meta = lease.setdefault("metadata", {})
        annotations = meta.get("annotations") or {}
        before = str(annotations.get(SCOPE_ANNOTATION) or "")
        meta["annotations"] = {**annotations, SCOPE_ANNOTATION: self.scope}
        lease["spec"] = self._spec(
            now,
            transitions=transitions if mine else transitions + 1,
            acquired=spec.get("acquireTime") if mine else now,
        )
        try:
            self._mine = await self.kube.request(
                "PUT",
                self.path,
                body=lease,
                timeout=timeout,
                query={"fieldManager": FIELD_MANAGER},
            )
        except Conflict:
            return False  # someone wrote it first; look again next time
        if not leading:
            self.left_unwatched = unwatched(before, self.scope)
        return self._won(sent)

    def _wait_out(self, record: tuple[str, str], duration: float) -> bool:
        """Whether the Lease has read the same for less than `duration` (our
        clock): until then whoever it names, or who held it before it was
        emptied or deleted, may still be writing. A candidate that never saw
        a holder (a first start) need not wait for a record it finds empty."""
        if record != self._seen:
            if self._seen is None and not record[0]:
                return False
            self._seen, self._seen_at = record, self.clock()
        return self.clock() - self._seen_at < duration

    async def _renew(self, mine: dict[str, Any], timeout: float) -> bool:
        """The record we wrote last, renewed in one PUT: its resourceVersion
        makes it fail (Conflict) if anyone wrote the Lease since."""
        spec = mine.get("spec") or {}
        if spec.get("holderIdentity") != self.identity:
            return False
        body = {
            **mine,
            "spec": self._spec(
                time.time(),
                transitions=int(spec.get("leaseTransitions") or 0),
                acquired=spec.get("acquireTime") or time.time(),
            ),
        }
        try:
            self._mine = await self.kube.request(
                "PUT", self.path, body=body, timeout=timeout, query={"fieldManager": FIELD_MANAGER}
            )
        except Conflict:
            self._mine = None
            return False  # someone else wrote it: read it, as an acquire does
        return True

    def _won(self, sent: float) -> bool:
        self.fence.extend(sent + self.timings.renew_deadline_s)
        self._seen = None
        return self.fence.valid  # an answer that took the whole deadline leads nobody yet

    def _spec(self, now: float, transitions: int, acquired: Any) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.timings.duration_s),
            "acquireTime": acquired if isinstance(acquired, str) else _micro(float(acquired)),
            "renewTime": _micro(now),
            "leaseTransitions": transitions,
        }
