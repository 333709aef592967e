"""List-then-watch caches of raw objects (an "informer").

One informer per kind keeps the newest copy of every object and tells a
callback what changed. It re-lists on 410 Gone and after transport errors, and
asks for bookmarks so an idle watch keeps a fresh resourceVersion and resumes
without a re-list.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from canary.kube.api import JSON, Kube
from canary.kube.errors import Gone, KubeError, NotFound
from canary.kube.resources import Resource

log = logging.getLogger(__name__)

EventType = Literal["ADDED", "MODIFIED", "DELETED"]
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped kinds

# Delays between attempts after an API failure; the last one repeats.
RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 5.0)
# Deletions remembered (Informer._deleted).
TOMBSTONES = 4096


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: EventType
    key: Key
    object: JSON


def key_of(obj: JSON) -> Key:
    meta = obj.get("metadata", {})
    return (str(meta.get("namespace", "")), str(meta["name"]))


class Informer:
    def __init__(
        self,
        kube: Kube,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        on_event: Callable[[WatchEvent], Any] | None = None,
        watch_timeout_s: int = 300,
        keep: Callable[[JSON], bool] | None = None,
        page_size: int = 500,
        slim: Callable[[JSON], JSON] | None = None,
    ) -> None:
        self._kube = kube
        self._resource = resource
        # Which objects to hold: the rest are read off the stream and
        # dropped, so memory follows what we need, not the cluster.
        self._keep = keep
        # What of each object to hold (its metadata's resourceVersion at
        # least): a pod is kilobytes, its readiness a few bytes.
        self._slim = slim
        self._page_size = page_size
        self.path = resource.path(namespace)
        self._query: dict[str, str | int | bool] = {}
        if label_selector:
            self._query["labelSelector"] = label_selector
        if field_selector:
            self._query["fieldSelector"] = field_selector
        self._on_event = on_event
        self._watch_timeout_s = watch_timeout_s
        self._cache: dict[Key, JSON] = {}
        # The resourceVersion each recently deleted object was deleted at:
        # our write's answer can come back after the watch told the
        # deletion (the API server paused between them), and taken in then
        # it stayed until the next re-list (see remember). Bounded: a
        # write is not answered thousands of deletions late.
        self._deleted: OrderedDict[Key, str] = OrderedDict()
        self.synced = asyncio.Event()
        # Since when every list and watch has failed (monotonic; None while
        # they work): a cache that cannot be refreshed (a 403 after an RBAC
        # change) keeps answering with what it last saw.
        self.failing_since: float | None = None

    def stale(self, after_s: float, now: float | None = None) -> bool:
        """Whether it has failed to refresh for longer than `after_s`."""
        since = self.failing_since
        return since is not None and (now or time.monotonic()) - since > after_s

    def listed(self, namespace: str) -> bool:
        """Whether it holds `namespace` in full: listed at least once."""
        return self.synced.is_set()

    def refreshed(self, namespace: str) -> bool:
        """Whether it holds `namespace` as it is now: listed, and its watch
        not failing."""
        return self.synced.is_set() and self.failing_since is None

    def listing(self, after_s: float) -> bool:
        """Whether its first list may still come: not listed yet, and not
        failing for longer than `after_s` (a 403 waits for a person)."""
        return not self.synced.is_set() and not self.stale(after_s)

    def unlisted(self) -> list[str]:
        """Its path, while it has never been listed."""
        return [] if self.synced.is_set() else [self.path]

    def get(self, namespace: str, name: str) -> JSON | None:
        return self._cache.get((namespace, name))

    def items(self) -> Iterator[JSON]:
        return iter(list(self._cache.values()))

    def remember(self, obj: JSON) -> None:
        """Write-through: put an object we just wrote into the cache, so the
        next reconcile does not act on the copy from before our own write.
        The watch event for it arrives later and changes nothing."""
        key = key_of(obj)
        gone = self._deleted.get(key)
        if gone is not None and not _newer(obj, {"metadata": {"resourceVersion": gone}}):
            return  # a version from before its deletion: the object is gone
        if _newer(obj, self._cache.get(key)):
            self._cache[key] = self._slimmed(obj)

    def __len__(self) -> int:
        return len(self._cache)

    def wants(self, obj: JSON) -> bool:
        return self._keep is None or self._keep(obj)

    def forget(self, namespace: str, name: str) -> None:
        """Stop holding an object we no longer need."""
        self._cache.pop((namespace, name), None)

    async def fetch(self, namespace: str, name: str) -> JSON | None:
        """GET one object into the cache (an object that just became
        wanted); None if it does not exist."""
        try:
            obj = await self._kube.get(self._resource.path(namespace, name))
        except NotFound:
            return None
        self.remember(obj)
        return obj

    async def run(self) -> None:
        """List and watch until cancelled."""
        failures = 0
        gone = 0  # 410s since a watch last ended as the server ends them
        resource_version = ""
        while True:
            try:
                if not resource_version:
                    resource_version = await self._relist()
                resource_version = await self._watch(resource_version)
                failures = gone = 0
            except Gone:
                # Expected now and then (compaction): re-list at once. Again
                # right after that re-list (a watch cache behind the list, a
                # continue token expiring before the last page), each one a
                # full list: backed off as a failure, not thousands a second.
                if gone:
                    await asyncio.sleep(RETRY_DELAYS_S[min(gone - 1, len(RETRY_DELAYS_S) - 1)])
                gone += 1
                resource_version = ""
            except (KubeError, ValueError) as exc:  # ValueError: a garbled watch line
                delay = RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S) - 1)]
                failures += 1
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                log.warning("watch %s failed (%s); retrying in %.1fs", self.path, exc, delay)
                resource_version = ""
                await asyncio.sleep(delay)

    async def _relist(self) -> str:
        """A paginated list: a page at a time, so memory never holds a whole
        namespace of big objects we are about to drop."""
        fresh: dict[Key, JSON] = {}
        token = ""
        while True:
            query = {**self._query, "limit": self._page_size}
            if token:
                query["continue"] = token
            listing = await self._kube.get(self.path, **query)
            for item in listing.get("items", []):
                if self.wants(item):
                    fresh[key_of(item)] = self._slimmed(item)
            meta = listing.get("metadata", {})
            token = str(meta.get("continue") or "")
            if not token:
                break
        listed_at = str(listing.get("metadata", {}).get("resourceVersion", ""))
        old, self._cache = self._cache, fresh
        _give_back_memory()
        for key, obj in fresh.items():
            before = old.get(key)
            if before is None:
                self._emit("ADDED", key, obj)
            elif _rv(before) != _rv(obj):
                self._emit("MODIFIED", key, obj)
        for key, obj in old.items():
            if key not in fresh:
                self._tombstone(key, {"metadata": {"resourceVersion": listed_at}})
                self._emit("DELETED", key, obj)
        self.synced.set()
        self.failing_since = None
        return listed_at

    async def _watch(self, resource_version: str) -> str:
        async for event in self._kube.watch(
            self.path, resource_version, self._watch_timeout_s, **self._query
        ):
            obj = event.get("object", {})
            kind = event.get("type")
            resource_version = _rv(obj) or resource_version
            if kind == "BOOKMARK":
                continue
            key = key_of(obj)
            if kind == "DELETED":
                self._cache.pop(key, None)
                self._tombstone(key, obj)
                self._emit("DELETED", key, obj)
            elif kind in ("ADDED", "MODIFIED") and not self.wants(obj):
                if self._cache.pop(key, None) is not None:
                    self._emit("DELETED", key, obj)
            elif kind in ("ADDED", "MODIFIED"):
                if not _newer(obj, self._cache.get(key)):
                    continue  # we already hold this version (or a newer one) from our own write
                before, obj = self._cache.get(key), self._slimmed(obj)
                self._cache[key] = obj
                if self._slim is not None and _same_content(before, obj):
                    continue  # a change to what we dropped (a pod's IP, a ready container's)
                self._emit(kind, key, obj)
        return resource_version

    def _tombstone(self, key: Key, obj: JSON) -> None:
        self._deleted[key] = _rv(obj)
        self._deleted.move_to_end(key)
        while len(self._deleted) > TOMBSTONES:
            self._deleted.popitem(last=False)

    def _slimmed(self, obj: JSON) -> JSON:
        return obj if self._slim is None else self._slim(obj)

    def _emit(self, kind: EventType, key: Key, obj: JSON) -> None:
        if self._on_event is not None:
            self._on_event(WatchEvent(kind, key, obj))


def _give_back_memory() -> None:
    """After a list, hand freed pages back to the system: the pages of
    objects we read and dropped (a cluster's other ConfigMaps and Secrets)
    would otherwise stay in the process's RSS (glibc keeps them)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _newer(obj: JSON, cached: JSON | None) -> bool:
    """Whether obj is a later version than cached. resourceVersions are
    opaque by contract but etcd revisions in practice; if either does not
    parse as a number we trust the newcomer."""
    if cached is None:
        return True
    try:
        return int(_rv(obj)) > int(_rv(cached))
    except ValueError:
        return _rv(obj) != _rv(cached)


def _same_content(before: JSON | None, obj: JSON) -> bool:
    """Whether two versions of an object hold the same, resourceVersion aside."""
    return before is not None and _unversioned(before) == _unversioned(obj)


def _unversioned(obj: JSON) -> JSON:
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k != "resourceVersion"}
    return {**obj, "metadata": meta}


def _rv(obj: JSON) -> str:
    return str(obj.get("metadata", {}).get("resourceVersion", ""))


class Informers:
    """One informer per namespace behind the interface of a single one, for a
    controller that watches a list of namespaces instead of all of them."""

    def __init__(
        self,
        kube: Kube,
        resource: Resource,
        namespaces: Sequence[str],
        on_event: Callable[[WatchEvent], Any] | None = None,
        keep: Callable[[JSON], bool] | None = None,
        page_size: int = 500,
        label_selector: str | None = None,
        slim: Callable[[JSON], JSON] | None = None,
    ) -> None:
        self._by_namespace = {
            ns: Informer(
                kube,
                resource,
                namespace=ns,
                on_event=on_event,
                keep=keep,
                page_size=page_size,
                label_selector=label_selector,
                slim=slim,
            )
            for ns in namespaces
        }
        self.path = ",".join(i.path for i in self._by_namespace.values())
        self.synced = asyncio.Event()

    def stale(self, after_s: float, now: float | None = None) -> bool:
        return any(i.stale(after_s, now) for i in self._by_namespace.values())

    def listed(self, namespace: str) -> bool:
        informer = self._by_namespace.get(namespace)
        return informer is not None and informer.synced.is_set()

    def refreshed(self, namespace: str) -> bool:
        informer = self._by_namespace.get(namespace)
        return informer is not None and informer.refreshed(namespace)

    def listing(self, after_s: float) -> bool:
        return any(i.listing(after_s) for i in self._by_namespace.values())

    def unlisted(self) -> list[str]:
        return [path for i in self._by_namespace.values() for path in i.unlisted()]

    def get(self, namespace: str, name: str) -> JSON | None:
        informer = self._by_namespace.get(namespace)
        return informer.get(namespace, name) if informer else None

    def items(self) -> Iterator[JSON]:
        return iter([obj for i in self._by_namespace.values() for obj in i.items()])

    def remember(self, obj: JSON) -> None:
        informer = self._by_namespace.get(key_of(obj)[0])
        if informer is not None:
            informer.remember(obj)

    def __len__(self) -> int:
        return sum(len(i) for i in self._by_namespace.values())

    def forget(self, namespace: str, name: str) -> None:
        informer = self._by_namespace.get(namespace)
        if informer is not None:
            informer.forget(namespace, name)

    async def fetch(self, namespace: str, name: str) -> JSON | None:
        informer = self._by_namespace.get(namespace)
        return await informer.fetch(namespace, name) if informer else None

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for informer in self._by_namespace.values():
                group.create_task(informer.run())
            await asyncio.gather(*(i.synced.wait() for i in self._by_namespace.values()))
            self.synced.set()


def informer(
    kube: Kube,
    resource: Resource,
    namespaces: Sequence[str] | None,
    on_event: Callable[[WatchEvent], Any] | None = None,
    keep: Callable[[JSON], bool] | None = None,
    page_size: int = 500,
    label_selector: str | None = None,
    slim: Callable[[JSON], JSON] | None = None,
) -> Informer | Informers:
    """All namespaces (None), one, or several."""
    if namespaces and len(namespaces) > 1:
        return Informers(
            kube, resource, namespaces, on_event, keep, page_size, label_selector, slim
        )
    return Informer(
        kube,
        resource,
        namespace=namespaces[0] if namespaces else None,
        on_event=on_event,
        keep=keep,
        page_size=page_size,
        label_selector=label_selector,
        slim=slim,
    )
