"""The dashboard's only reads of the API server: one list+watch per kind and
namespace scope, shared by every open tab. Tabs read these caches; none of
them ever sends a request to the API server.

Before watching, each feed asks for one item with the user's credentials. A
403 is what the user may not read: it becomes a sentence on every page and the
feed asks again every RECHECK_S, instead of an informer logging the same
refusal every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from canary.dashboard.read import JSON, History, read_history, read_status
from canary.history import history_name, read
from canary.kube import Informer, Kube, KubeError, WatchEvent
from canary.kube.resources import CONFIGMAPS, EVENTS, SERVICES, Resource
from canary.spec import SERVICE_LABEL

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, Service name)
RECHECK_S = 30.0
RETRY_S = (1.0, 2.0, 5.0, 10.0)
HISTORY_SUFFIX = "-canary-history"


@dataclass(frozen=True, slots=True)
class Kind:
    resource: Resource
    what: str  # for messages: "Services", "history ConfigMaps", "Events"
    label_selector: str | None = None
    field_selector: str | None = None


SERVICE_KIND = Kind(SERVICES, "Services")
HISTORY_KIND = Kind(CONFIGMAPS, "history ConfigMaps", label_selector="canary.io/history=true")
EVENT_KIND = Kind(EVENTS, "Events", field_selector="involvedObject.kind=Service")


class Feed:
    """One kind in one scope (a namespace, or all of them)."""

    def __init__(
        self,
        kube: Kube,
        kind: Kind,
        namespace: str | None,
        on_event: Callable[[WatchEvent], None],
        on_state: Callable[[], None],
    ) -> None:
        self._kube = kube
        self.kind = kind
        self.namespace = namespace
        self.informer = Informer(
            kube,
            kind.resource,
            namespace=namespace,
            label_selector=kind.label_selector,
            field_selector=kind.field_selector,
            on_event=on_event,
        )
        self._on_state = on_state
        self.problem = ""  # why it cannot be read right now ("" when fine)
        self.denied = False
        self.settled = asyncio.Event()  # synced, or known to be unreadable

    @property
    def scope(self) -> str:
        return f"namespace {self.namespace}" if self.namespace else "all namespaces"

    def _probe_query(self) -> dict[str, str | int | bool]:
        query: dict[str, str | int | bool] = {"limit": 1}
        if self.kind.label_selector:
            query["labelSelector"] = self.kind.label_selector
        if self.kind.field_selector:
            query["fieldSelector"] = self.kind.field_selector
        return query

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self._kube.get(self.informer.path, **self._probe_query())
            except KubeError as exc:
                self.denied = exc.status in (401, 403)
                if exc.status == 401:
                    self.problem = (
                        f"the API server does not accept your credentials ({exc.message})"
                    )
                elif exc.status == 403:
                    self.problem = (
                        f"you may not list {self.kind.what} in {self.scope}: {exc.message}"
                    )
                else:
                    self.problem = f"cannot read {self.kind.what} in {self.scope}: {exc}"
                self.settled.set()
                self._on_state()
                delay = RECHECK_S if self.denied else RETRY_S[min(failures, len(RETRY_S) - 1)]
                failures += 1
                await asyncio.sleep(delay)
                continue
            break
        self.problem, self.denied = "", False
        async with asyncio.TaskGroup() as group:
            group.create_task(self._announce_sync())
            await self.informer.run()

    async def _announce_sync(self) -> None:
        await self.informer.synced.wait()
        self.settled.set()
        self._on_state()


class Feeds:
    """Services, their history ConfigMaps and their Events, in the scope the
    dashboard was started with. `on_change(key)` names the Service a change
    is about; `on_change(None)` means anything may have changed."""

    def __init__(
        self,
        kube: Kube,
        namespaces: Sequence[str] | None,
        on_change: Callable[[Key | None], None],
    ) -> None:
        self.namespaces = tuple(namespaces or ())
        scopes: list[str | None] = list(self.namespaces) or [None]
        self._on_change = on_change
        self._events: dict[Key, dict[str, JSON]] = {}
        self._histories: dict[Key, tuple[str, History]] = {}

        def state() -> None:
            on_change(None)

        self.services = {
            ns: Feed(kube, SERVICE_KIND, ns, self._service_event, state) for ns in scopes
        }
        self.histories = {
            ns: Feed(kube, HISTORY_KIND, ns, self._history_event, state) for ns in scopes
        }
        self.events = {ns: Feed(kube, EVENT_KIND, ns, self._event_event, state) for ns in scopes}

    def all_feeds(self) -> Iterator[Feed]:
        for group in (self.services, self.histories, self.events):
            yield from group.values()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for feed in self.all_feeds():
                group.create_task(_guard(feed))

    async def settled(self, timeout_s: float) -> bool:
        """Wait until every feed has synced or is known unreadable."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                for feed in self.all_feeds():
                    await feed.settled.wait()
                return True
        return False

    # -- reading the caches -------------------------------------------------------

    def _feed(self, group: dict[str | None, Feed], namespace: str) -> Feed | None:
        return group.get(None) or group.get(namespace)

    def in_scope(self, namespace: str) -> bool:
        return not self.namespaces or namespace in self.namespaces

    def service_list(self) -> list[JSON]:
        return [obj for feed in self.services.values() for obj in feed.informer.items()]

    def service(self, namespace: str, name: str) -> JSON | None:
        feed = self._feed(self.services, namespace)
        return feed.informer.get(namespace, name) if feed else None

    def history(self, namespace: str, name: str) -> History:
        """The parsed history, with the checks and Events the Service's
        status still carries (history.CARRIED), parsed once per version of
        the two. Those of the rollout in flight are shown also when the
        ConfigMap is gone or empty (deleted or edited by hand), and what
        cannot be read is left out and named (history.read)."""
        feed = self._feed(self.histories, namespace)
        configmap = feed.informer.get(namespace, history_name(name)) if feed else None
        version = self.history_version(namespace, name)
        cached = self._histories.get((namespace, name))
        if cached is not None and cached[0] == version:
            return cached[1]
        if configmap is None:
            problem = feed.problem if feed else ""
            parsed = History(problem=f"history not shown: {problem}" if problem else "")
        else:
            parsed = read_history(configmap)
        status = read_status(self.service(namespace, name) or {})
        records, skipped = read(list(parsed.records), status.data)
        problem = "; ".join(p for p in (parsed.problem, *skipped) if p)
        parsed = replace(parsed, records=tuple(records), problem=problem)
        self._histories[(namespace, name)] = (version, parsed)
        return parsed

    def history_version(self, namespace: str, name: str) -> str:
        """Changes whenever history() would read something else."""
        feed = self._feed(self.histories, namespace)
        configmap = feed.informer.get(namespace, history_name(name)) if feed else None
        version = str((configmap or {}).get("metadata", {}).get("resourceVersion", ""))
        service = self.service(namespace, name) or {}
        carried = str(service.get("metadata", {}).get("resourceVersion", ""))
        return f"{version}|{carried}|{feed.problem if feed else ''}"

    def events_of(self, namespace: str, name: str) -> list[JSON]:
        return list(self._events.get((namespace, name), {}).values())

    def problem(self, kind: str, namespace: str) -> str:
        """Why `kind` (services, histories, events) cannot be read in namespace."""
        group = {"services": self.services, "histories": self.histories, "events": self.events}
        feed = self._feed(group[kind], namespace)
        return feed.problem if feed else ""

    def problems(self) -> list[str]:
        return [feed.problem for feed in self.all_feeds() if feed.problem]

    def synced(self) -> bool:
        return all(feed.informer.synced.is_set() for feed in self.services.values())

    # -- watch callbacks: keep the indexes, name the Service that changed ----------

    def _service_event(self, event: WatchEvent) -> None:
        self._on_change(event.key)

    def _history_event(self, event: WatchEvent) -> None:
        namespace, name = event.key
        labels = event.object.get("metadata", {}).get("labels") or {}
        service = labels.get(SERVICE_LABEL) or name.removesuffix(HISTORY_SUFFIX)
        if event.type == "DELETED":
            self._histories.pop((namespace, service), None)
        self._on_change((namespace, service))

    def _event_event(self, event: WatchEvent) -> None:
        involved = event.object.get("involvedObject") or {}
        key = (str(involved.get("namespace") or event.key[0]), str(involved.get("name") or ""))
        if event.type == "DELETED":
            self._events.get(key, {}).pop(event.key[1], None)
        else:
            self._events.setdefault(key, {})[event.key[1]] = event.object
        self._on_change(key)


async def _guard(feed: Feed) -> None:
    """A feed that crashes is logged and started again; the page says so meanwhile."""
    while True:
        try:
            await feed.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            feed.problem = f"watching {feed.kind.what} in {feed.scope} failed: {exc}"
            log.exception("feed %s in %s crashed", feed.kind.what, feed.scope)
            await asyncio.sleep(RETRY_S[-1])
