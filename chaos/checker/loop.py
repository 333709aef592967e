"""The checker's shell: its own watches, a tick every second that applies
the rules of chaos.checker.rules to what it sees, confirming reads before an
outage counts, and re-measurement of promotions in Prometheus."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from chaos.checker import promotions, rules
from chaos.checker.api import Api, Prometheus, Reflector, Unavailable
from chaos.checker.blind import Blindness
from chaos.checker.facts import (
    JSON,
    STRATEGY,
    Fingerprint,
    carried_start,
    content_key,
    describe,
    history_entries,
    is_managed,
    pod_fingerprint,
    pod_ready,
    ready_pods,
    selects,
    service_of_history,
    starting,
    status_claims,
    template_fingerprint,
    uid,
)

log = logging.getLogger("chaos.checker")

SERVICES = "/api/v1/services"
PODS = "/api/v1/pods"
CONFIGMAPS = "/api/v1/configmaps"
DEPLOYMENTS = "/apis/apps/v1/deployments"
SLICES = "/apis/discovery.k8s.io/v1/endpointslices"
REVISION = "canary.io/revision"  # on a twin: the revision the controller set on it
TWIN_LABEL = "canary.io/twin"
SERVICE_LABEL = "canary.io/service"


@dataclass(frozen=True, slots=True)
class AppRules:
    """What the fleet asked of one app: for judging its promotions."""

    min_success: float = 95.0


@dataclass
class Tally:
    rollouts: Counter[str] = field(default_factory=Counter)
    promotions_verified: int = 0
    unverifiable: list[str] = field(default_factory=list)
    confirm_retracted: int = 0
    heartbeat_failures: int = 0
    heartbeat_s: list[float] = field(default_factory=list)  # GET latency of the API server
    # Seconds from a pod's creation until the checker saw it ready: how far
    # the sandbox's kubelet (kwok) lags on this machine.
    pod_start_s: list[float] = field(default_factory=list)


class Checker:
    def __init__(
        self,
        api: Api,
        prometheus: Prometheus,
        fleet: dict[tuple[str, str], AppRules],
        blindness: Blindness,
        grace_s: float = 30.0,
        on_violation: Callable[[rules.Violation], None] = lambda _: None,
        write_log: rules.WriteLog | None = None,
    ) -> None:
        self.api = api
        self.prometheus = prometheus
        self.fleet = fleet
        self.blindness = blindness
        self.grace_s = grace_s
        self.on_violation = on_violation
        self.violations: list[rules.Violation] = []
        self.tally = Tally()
        self.writes = write_log or rules.WriteLog()
        self.history = rules.HistoryBook()
        self.persistence = rules.Persistence(grace_s)
        self.fingerprints: dict[tuple[str, str], Fingerprint | None] = {}  # (ns, pod), durable
        self.revisions: dict[tuple[str, str], Fingerprint] = {}  # (ns, revision) -> what it runs
        self._twin_revision: dict[str, str] = {}  # twin uid -> revision last set on it
        self._ready_seen: set[tuple[str, str]] = set()
        self.created: dict[tuple[str, str], float] = {}  # (ns, pod) -> creationTimestamp, durable
        self.served: set[tuple[str, str]] = set()  # apps seen with a ready endpoint
        self._verifying: set[asyncio.Task[None]] = set()
        # (ns, service) -> (when seen, steps of its annotations), newest last
        self.steps_seen: dict[tuple[str, str], list[tuple[float, int | None]]] = {}
        self.services = Reflector(api, SERVICES, self._on_service)
        self.deployments = Reflector(api, DEPLOYMENTS, self._on_deployment)
        self.slices = Reflector(api, SLICES, lambda _t, _o: None)
        self.pods = Reflector(api, PODS, self._on_pod)
        self.configmaps = Reflector(
            api,
            CONFIGMAPS,
            self._on_configmap,
            keep=lambda o: service_of_history(str(o["metadata"]["name"])) is not None,
        )
        self.reflectors = [self.services, self.deployments, self.slices, self.pods, self.configmaps]
        self._heartbeat_token: int | None = None

    # -- running ----------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for reflector in self.reflectors:
                group.create_task(reflector.run())
            await asyncio.gather(*(r.synced.wait() for r in self.reflectors))
            group.create_task(self._heartbeat())
            last = time.time()
            while True:
                await asyncio.sleep(1.0)
                now = time.time()
                await self.tick(now, now - last)
                last = now

    async def close(self) -> None:
        for task in list(self._verifying):
            task.cancel()
        await asyncio.gather(*self._verifying, return_exceptions=True)

    def blind(self, now: float) -> bool:
        return self.blindness.blind(now) or not all(r.healthy for r in self.reflectors)

    async def _heartbeat(self) -> None:
        """A read that needs etcd (a GET of one object is a quorum read)."""
        while True:
            try:
                # Generous: a slow API server (a busy machine) still answers and
                # its watches still deliver; only no answer at all is blindness.
                sent = time.monotonic()
                await self.api.get("/api/v1/namespaces/default", timeout_s=5.0)
                self.tally.heartbeat_s.append(time.monotonic() - sent)
                if self._heartbeat_token is not None:
                    self.blindness.end(self._heartbeat_token)
                    self._heartbeat_token = None
            except Unavailable:
                self.tally.heartbeat_failures += 1
                if self._heartbeat_token is None:
                    self._heartbeat_token = self.blindness.begin("checker heartbeat failing")
            await asyncio.sleep(1.0)

    # -- events -------------------------------------------------------------------

    def _on(self, kind: str) -> Callable[[str, JSON], None]:
        def handle(event: str, obj: JSON) -> None:
            self._written(kind, event, obj)

        return handle

    def _written(self, kind: str, event: str, obj: JSON) -> None:
        meta = obj.get("metadata") or {}
        if event == "DELETED":
            self.writes.forget(uid(obj))
            return
        subject = f"{kind} {meta.get('namespace')}/{meta.get('name')}"
        found = self.writes.record(
            kind, uid(obj), subject, content_key(kind, obj), time.time(), describe(kind, obj)
        )
        if found is not None:
            self._declare(
                found,
                self.writes.first_write,
                {"kind": kind, "writes": self.writes.recent(uid(obj))},
            )

    def _on_service(self, event: str, obj: JSON) -> None:
        self._written("Service", event, obj)
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if key not in self.fleet:
            return
        steps = None if event == "DELETED" else _steps(meta.get("annotations") or {})
        seen = self.steps_seen.setdefault(key, [])
        if not seen or seen[-1][1] != steps:
            seen.append((time.time(), steps))
            del seen[:-50]

    def steps_for(self, namespace: str, service: str, ended: float) -> int | None:
        """The fewest steps the Service's annotations asked for from 5 s
        before `ended` until now: what was in force when the controller
        decided, whatever a team edited just after (rules.py)."""
        seen = self.steps_seen.get((namespace, service), [])
        since = ended - 5.0
        before = [steps for at, steps in seen if at <= since][-1:]
        counts = [s for s in before + [steps for at, steps in seen if at > since] if s]
        return min(counts, default=None)

    def _on_pod(self, event: str, obj: JSON) -> None:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if event != "DELETED" and pod_ready(obj) and key not in self._ready_seen:
            self._ready_seen.add(key)
            created = _epoch(str(meta.get("creationTimestamp", "")))
            if created:
                self.tally.pod_start_s.append(time.time() - created)
        if key not in self.fingerprints or event != "DELETED":
            self.fingerprints[key] = pod_fingerprint(obj)
            self.created[key] = _epoch(str(meta.get("creationTimestamp", "")))

    def _on_deployment(self, event: str, obj: JSON) -> None:
        self._written("Deployment", event, obj)
        if event == "DELETED":
            self._twin_revision.pop(uid(obj), None)
            return
        meta = obj.get("metadata") or {}
        revision = (meta.get("annotations") or {}).get(REVISION)
        if not revision or TWIN_LABEL not in (meta.get("labels") or {}):
            return
        if self._twin_revision.get(uid(obj)) != revision:
            # The controller just set this revision on the twin: its template
            # now is that revision's (a hand edit later keeps the annotation).
            self._twin_revision[uid(obj)] = revision
            fp = template_fingerprint((obj.get("spec") or {}).get("template"))
            if fp is not None:
                self.revisions.setdefault((str(meta.get("namespace")), revision), fp)

    def _on_configmap(self, event: str, obj: JSON) -> None:
        self._written("ConfigMap", event, obj)
        if event == "DELETED":
            return
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace"))
        service = service_of_history(str(meta.get("name")))
        records = history_entries(obj)
        if service is None or records is None:
            return
        now = time.time()
        for record in records:
            fp = template_fingerprint(record.get("template"))
            if fp is not None and record.get("revision"):
                self.revisions[(namespace, str(record["revision"]))] = fp
        findings, ended = self.history.observe(uid(obj), f"{namespace}/{service}", records, now)
        for finding in findings:
            self._declare(finding, now, {"history": meta.get("name")})
        live = self.services.cache.get((namespace, service))
        for outcome, record in ended:
            self.tally.rollouts[outcome] += 1
            if outcome == "promoted":
                before = _serving_before(records, record)
                task = asyncio.create_task(self._verify(namespace, service, live, record, before))
                self._verifying.add(task)
                task.add_done_callback(self._verifying.discard)

    # -- the tick ---------------------------------------------------------------------

    def views(self) -> list[rules.ServiceView]:
        by_service: dict[tuple[str, str], list[JSON]] = {}
        for eps in self.slices.cache.values():
            meta = eps.get("metadata") or {}
            name = (meta.get("labels") or {}).get("kubernetes.io/service-name")
            if name:
                by_service.setdefault((str(meta.get("namespace")), str(name)), []).append(eps)
        views = []
        pods_in: dict[str, list[JSON]] = {}
        for (ns, _), pod in self.pods.cache.items():
            pods_in.setdefault(ns, []).append(pod)
        for (namespace, name), service in self.services.cache.items():
            if not is_managed(service):
                continue
            ready = ready_pods(by_service.get((namespace, name), []), uid(service))
            selector = (service.get("spec") or {}).get("selector")
            on_the_way = sum(
                1 for p in pods_in.get(namespace, []) if selects(selector, p) and starting(p)
            )
            if ready and (namespace, name) in self.fleet:
                self.served.add((namespace, name))
            status = status_claims(service)
            twin, stable_fp = None, None
            if status is not None:
                twin = self._stable_twin(namespace, name, status)
                revision = str(status.get("stable_revision") or "")
                stable_fp = self.revisions.get((namespace, revision)) if revision else None
            views.append(
                rules.ServiceView(
                    namespace=namespace,
                    name=name,
                    in_fleet=(namespace, name) in self.fleet,
                    served_before=(namespace, name) in self.served,
                    ready=ready,
                    starting=on_the_way,
                    status=status,
                    stable_twin=twin,
                    stable_fingerprint=stable_fp,
                )
            )
        return views

    def _stable_twin(self, namespace: str, service: str, status: JSON) -> JSON | None:
        stable, deployment = status.get("stable"), status.get("deployment") or service
        if not stable:
            return None
        named = self.deployments.cache.get((namespace, f"{deployment}-{stable}"))
        if named is not None:
            return named
        for (ns, _), obj in self.deployments.cache.items():
            labels = (obj.get("metadata") or {}).get("labels") or {}
            if (
                ns == namespace
                and labels.get(TWIN_LABEL) == stable
                and labels.get(SERVICE_LABEL) == service
            ):
                return obj
        return None

    async def tick(self, now: float, dt: float) -> None:
        blind = self.blind(now)
        findings: list[rules.Finding] = []
        views = {v.subject: v for v in self.views()}
        for view in views.values():
            fps = {p: self.fingerprints.get((view.namespace, p)) for p in view.ready}
            if (found := rules.outage(view)) is not None:
                findings.append(found)
            if (found := rules.status_contradiction(view, fps)) is not None:
                findings.append(found)
        for cm_uid, subject in list(self.history.service.items()):
            seen = views.get(subject)
            if seen is None:
                continue
            name = f"{seen.name}-canary-history"
            cm = self.configmaps.cache.get((seen.namespace, name))
            if cm is None or uid(cm) != cm_uid:
                continue
            fps = {p: self.fingerprints.get((seen.namespace, p)) for p in seen.ready}
            flight = frozenset(
                fp
                for revision in carried_start(seen.status)
                if (fp := self.revisions.get((seen.namespace, revision))) is not None
            )
            findings += rules.still_serving(
                subject, cm_uid, self.history.latest(cm_uid), fps, now, flight
            )
        for finding, since in self.persistence.update(findings, now, dt, blind):
            if await self._confirmed(finding):
                self._declare(finding, since, _evidence(views.get(finding.subject)))
            else:
                self.tally.confirm_retracted += 1
                self.persistence.retract(finding)

    async def _confirmed(self, finding: rules.Finding) -> bool:
        """Before a condition about endpoints counts, read them afresh: a
        watch that silently lags must not make a violation."""
        if not finding.key.endswith("no-endpoints"):
            return True
        namespace, name = finding.subject.split("/", 1)
        try:
            service = await self.api.get(f"/api/v1/namespaces/{namespace}/services/{name}")
            listing = await self.api.get(
                f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
                labelSelector=f"kubernetes.io/service-name={name}",
            )
        except Unavailable:
            return False
        if STRATEGY not in ((service.get("metadata") or {}).get("annotations") or {}):
            return False
        return not ready_pods(listing.get("items") or [], uid(service))

    def _declare(self, finding: rules.Finding, since: float, evidence: JSON) -> None:
        violation = rules.Violation(
            finding.rule, finding.subject, finding.detail, since, time.time(), evidence
        )
        self.violations.append(violation)
        self.on_violation(violation)

    # -- promotions ---------------------------------------------------------------------

    async def _verify(
        self,
        namespace: str,
        service: str,
        live: JSON | None,
        record: JSON,
        serving_before: str = "",
    ) -> None:
        subject = f"{namespace}/{service}"
        name = f"{subject} revision {record.get('revision')} (#{record.get('number')})"
        annotations = ((live or {}).get("metadata") or {}).get("annotations") or {}
        ended = record.get("ended")
        steps = (
            self.steps_for(namespace, service, float(ended))
            if isinstance(ended, int | float) and (namespace, service) in self.steps_seen
            else _steps(annotations)
        )
        if steps is None:
            self.tally.unverifiable.append(f"{name}: the Service's steps are unknown")
            return
        windows, verdict = promotions.plan(record, steps, serving_before)
        app = self.fleet.get((namespace, service), AppRules())
        await asyncio.sleep(3.0)  # the last scrapes of the window reach Prometheus
        for window in windows:
            served = await self._served(window)
            if served is None:
                verdict.unverifiable.append(f"step {window.step}: Prometheus did not answer")
                continue
            fps = {p: self.fingerprints.get((window.namespace, p)) for p in served}
            promotions.judge_window(window, served, fps, record, app.min_success, verdict)
        self.tally.promotions_verified += 1
        self.tally.unverifiable += [f"{name}: {u}" for u in verdict.unverifiable]
        if verdict.problems:
            finding = rules.Finding(
                rules.UNVERIFIED_PROMOTION,
                subject,
                f"{record.get('revision')}:{record.get('number')}",
                f"revision {record.get('revision')} (#{record.get('number')}) promoted: "
                + " | ".join(verdict.problems),
            )
            self._declare(
                finding,
                float(record.get("ended") or time.time()),
                {"checks": len(record.get("checks") or []), "windows": len(windows)},
            )

    async def _served(self, window: promotions.Window) -> dict[str, tuple[float, float]] | None:
        span = f"{max(1, round((window.end - window.start) * 1000))}ms"
        pods = f'namespace="{window.namespace}",pod=~"{window.pod_regex}"'
        selector = f"http_requests_total{{{pods}}}"
        before = f"count_over_time({selector}[{round(promotions.BORN_LOOKBACK_S)}s] offset {span})"
        queries = (
            f"increase({selector}[{span}])",
            f"last_over_time({selector}[{span}]) unless {before}",
        )
        for _ in range(60):  # Prometheus may be stopped by the injector: up to 5 min
            try:
                increases, born = [
                    {_labels(item): float(item["value"][1]) for item in series}
                    for series in await asyncio.gather(
                        *(self.prometheus.query(q, window.end) for q in queries)
                    )
                ]
            except Unavailable:
                await asyncio.sleep(5.0)
                continue
            created = {pod: at for (ns, pod), at in self.created.items() if ns == window.namespace}
            return promotions.served_in(window, increases, born, created)
        return None


def _serving_before(records: list[JSON], record: JSON) -> str:
    """The revision of the newest promoted or adopted entry before `record`."""
    revision = ""
    for other in records:
        if other is record or other.get("number") == record.get("number"):
            break
        if other.get("outcome") in ("promoted", "adopted"):
            revision = str(other.get("revision", ""))
    return revision


def _labels(item: JSON) -> tuple[tuple[str, str], ...]:
    metric = item.get("metric") or {}
    return tuple(sorted((str(k), str(v)) for k, v in metric.items() if k != "__name__"))


def _epoch(stamp: str) -> float:
    try:
        return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        return 0.0


def _steps(annotations: dict[str, str]) -> int | None:
    """How many steps a Service's rollout has (README "Annotations")."""
    strategy = annotations.get(STRATEGY)
    if strategy == "blue-green":
        return 1
    if strategy != "canary":
        return None
    raw = annotations.get("canary.io/steps", "10,25,50")
    return len([p for p in raw.replace("%", "").split(",") if p.strip()])


def _evidence(view: rules.ServiceView | None) -> JSON:
    if view is None:
        return {}
    status = view.status or {}
    return {
        "ready_endpoints": sorted(view.ready)[:10],
        "status": {
            k: status.get(k)
            for k in ("phase", "stable", "stable_revision", "canary", "replicas", "message")
        },
        "stable_twin_ready": None
        if view.stable_twin is None
        else (view.stable_twin.get("status") or {}).get("readyReplicas", 0),
    }


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
