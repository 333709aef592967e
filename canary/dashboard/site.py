"""What each page and each live update holds, read from the shared caches.
No request to the API server happens here: pages and streams only read the
feeds, so a hundred open tabs cost the cluster nothing."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from canary.dashboard import actions, charts, pages, views
from canary.dashboard.feeds import Feeds, Key
from canary.dashboard.read import (
    JSON,
    History,
    annotations_of,
    managed,
    number,
    objects,
    strings,
    text,
)
from canary.dashboard.stream import Hub
from canary.kube import Kube
from canary.observe import action_author
from canary.spec import ACTION


@dataclass
class ServicePage:
    namespace: str
    name: str
    row: views.Row
    strip: views.Strip
    revisions: list[views.Revision]
    events: list[views.EventRow]
    events_problem: str
    history_problem: str
    offers: list[actions.Offer]
    last_action: str
    last_action_by: str
    gone: bool
    now: float


@dataclass
class Decision:
    at: float | None
    step: str
    verdict: str
    decided: str


@dataclass
class RevisionPage:
    namespace: str
    name: str
    number: int
    record_revision: str
    images: list[str]
    outcome: str
    reason: str
    started: float | None
    ended: float | None
    charts: list[charts.Chart]
    decisions: list[Decision]
    record_events: list[views.EventRow]


@dataclass
class Site:
    kube: Kube
    user: str
    namespaces: tuple[str, ...] = ()
    hub: Hub = field(default_factory=Hub)
    token: actions.Token = field(default_factory=actions.Token)
    feeds: Feeds = field(init=False)
    _rows: dict[Key, tuple[tuple[str, str], views.Row]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.feeds = Feeds(self.kube, self.namespaces, self.hub.changed)

    @property
    def scope(self) -> str:
        return "namespace " + ", ".join(self.namespaces) if self.namespaces else "all namespaces"

    @property
    def manager(self) -> str:
        return actions.manager_for(self.user)

    def base(self, stream: str) -> dict[str, Any]:
        """What every page's frame shows."""
        return {
            "user": self.user,
            "scope": self.scope,
            "problems": self.feeds.problems(),
            "stream": f"{stream}&since={self.hub.generation}",
            "flash": "",
        }

    # -- rows ------------------------------------------------------------------------

    def row(self, service: JSON) -> views.Row:
        """Rebuilt only when the Service or its history changed."""
        namespace, name = views.meta(service)
        version = (
            str(service.get("metadata", {}).get("resourceVersion", "")),
            self.feeds.history_version(namespace, name),
        )
        cached = self._rows.get((namespace, name))
        if cached is not None and cached[0] == version:
            return cached[1]
        built = views.row(service, self.feeds.history(namespace, name))
        self._rows[(namespace, name)] = (version, built)
        return built

    def rows(self) -> list[views.Row]:
        found = [self.row(s) for s in self.feeds.service_list() if managed(s)]
        if len(self._rows) > len(found):  # forget Services that are gone
            keep = {(r.namespace, r.name) for r in found}
            self._rows = {k: v for k, v in self._rows.items() if k in keep}
        return sorted(found, key=lambda r: (r.namespace, r.name))

    def overview(self, namespace: str, phase: str) -> dict[str, Any]:
        every = self.rows()
        shown = [r for r in every if views.matches(r, namespace, phase)]
        return {
            "rows": shown,
            "total": len(every),
            "counts": views.phase_counts(every),
            "namespaces": sorted({r.namespace for r in every} | {namespace} - {""}),
            "phases": sorted({r.phase for r in every} | {phase} - {""}),
            "namespace": namespace,
            "phase": phase,
            "now": time.time(),
            "loading": not self.feeds.synced(),
            "readable": not any(f.denied for f in self.feeds.services.values()),
        }

    def overview_update(
        self, keys: set[Key], everything: bool, namespace: str, phase: str
    ) -> dict[str, Any]:
        now = time.time()
        context = self.overview(namespace, phase)
        parts = {
            "summary": pages.part(
                "summary",
                context["counts"],
                context["total"],
                len(context["rows"]),
                namespace,
                phase,
            ),
            "banners": pages.part("banners", self.feeds.problems()),
        }
        if everything:
            rows = "".join(pages.part("row", r, now) for r in context["rows"])
            return {"parts": parts, "tbody": rows}
        updates: list[dict[str, str | None]] = []
        for key in sorted(keys):
            service = self.feeds.service(*key)
            shown = service is not None and managed(service)
            r = self.row(service) if service is not None and shown else None
            html = pages.part("row", r, now) if r and views.matches(r, namespace, phase) else None
            updates.append({"key": f"{key[0]}/{key[1]}", "html": html})
        return {"parts": parts, "rows": updates}

    # -- one Service -----------------------------------------------------------------

    def service_page(
        self, namespace: str, name: str, last: ServicePage | None = None
    ) -> ServicePage | None:
        service = self.feeds.service(namespace, name)
        if service is None or not managed(service):
            if last is None:
                return None
            last.gone, last.offers = True, []
            return last
        return service_page(
            service,
            self.feeds.history(namespace, name),
            self.feeds.events_of(namespace, name),
            self.feeds.problem("events", namespace),
            self.row(service),
        )

    def service_parts(self, page: ServicePage) -> dict[str, str]:
        return {
            "head": pages.part("head", page),
            "strip": pages.part("strip", page.strip),
            "revisions": pages.part("revisions", page),
            "events": pages.part("events", page.events, page.events_problem),
            "banners": pages.part("banners", self.feeds.problems()),
        }

    def history(self, namespace: str, name: str) -> History:
        return self.feeds.history(namespace, name)

    def revision_page(self, namespace: str, name: str, number_: int) -> RevisionPage | None:
        return revision_page(namespace, name, number_, self.feeds.history(namespace, name))

    def revision_parts(self, page: RevisionPage) -> dict[str, str]:
        return {
            "timeline": pages.part("timeline", page),
            "record-events": pages.part(
                "events", page.record_events, "", "record-events", "Events kept with this revision"
            ),
            "banners": pages.part("banners", self.feeds.problems()),
        }


def service_page(
    service: JSON,
    history: History,
    events: list[JSON],
    events_problem: str,
    row: views.Row | None = None,
) -> ServicePage:
    namespace, name = views.meta(service)
    found = annotations_of(service)
    return ServicePage(
        namespace=namespace,
        name=name,
        row=row or views.row(service, history),
        strip=views.strip(service, history),
        revisions=views.revisions(service, history),
        events=views.event_rows(events),
        events_problem=events_problem,
        history_problem=history.problem,
        offers=actions.offers(service, history),
        last_action=found.get(ACTION, ""),
        last_action_by=action_author(service.get("metadata") or {}) if ACTION in found else "",
        gone=False,
        now=time.time(),
    )


def revision_page(namespace: str, name: str, number_: int, history: History) -> RevisionPage | None:
    record = history.numbered(number_)
    if record is None:
        return None
    decisions = [
        Decision(
            at=views.check_time(c),
            step=text(c, "step") or "?",
            verdict=text(c, "verdict") or "unknown",
            decided=text(c, "decided") or "",
        )
        for c in objects(record, "checks")
    ]
    return RevisionPage(
        namespace=namespace,
        name=name,
        number=number_,
        record_revision=text(record, "revision") or views.UNKNOWN,
        images=strings(record, "images"),
        outcome=text(record, "outcome") or views.UNKNOWN,
        reason=text(record, "reason") or "",
        started=number(record, "started"),
        ended=number(record, "ended"),
        charts=charts.charts(record),
        decisions=decisions,
        record_events=views.history_events(record),
    )
