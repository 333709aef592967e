"""The controller: watches, a queue of Services, one serial worker per
Service (many in parallel, bounded), and timers for requeue_after.

Watches drive everything: a Deployment, EndpointSlice, ConfigMap, Secret or
HorizontalPodAutoscaler event wakes the Services that depend on it, a timer
wakes a Service whose step deadline is due, and nothing polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Coroutine, Sequence
from typing import Any

from canary.act import NotLeading
from canary.kube import KubeError, WatchEvent, namespace_terminating
from canary.kube.resources import (
    CONFIGMAPS,
    DEPLOYMENTS,
    ENDPOINTSLICES,
    HPAS,
    PODS,
    SECRETS,
    SERVICES,
)
from canary.kube.watch import Informer, Informers, informer
from canary.observe import slim_pod
from canary.reconcile import Caches, Edges, Outcome, Reconciler
from canary.spec import (
    MANAGED_BY,
    SERVICE_LABEL,
    TWIN_LABEL,
    managed_by_annotations,
)

log = logging.getLogger(__name__)
# A cache whose lists and watches have all failed this long is stale:
# /readyz says so (a few seconds of failures are a network blip).
STALE_S = 60.0
# A cache never listed whose every list has failed this long (a 403: a
# namespace of --namespace without the controller's RoleBinding, a rule the
# ClusterRole lacks) is not waited for: the namespaces listed are served.
UNLISTED_S = 60.0

Key = tuple[str, str]
# After an API or analysis failure, come back after these delays; the last repeats.
ERROR_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
CONFLICT_RETRY_S = 0.05
CONFLICT_RETRIES = 3  # then conflicts back off like any other error
REFUSED = (400, 403, 422)  # the API server's "no" to the write itself: a retry gets the same


class Controller:
    def __init__(
        self,
        edges: Edges,
        *,
        namespaces: Sequence[str] | None = None,
        max_concurrent: int = 32,
        active: bool = True,
    ) -> None:
        kube = edges.kube
        self.kube = kube
        self.edges = edges
        spaces = namespaces
        self._spaces = tuple(namespaces or ())  # --namespace (empty: all)
        self.caches = Caches(
            services=informer(kube, SERVICES, spaces, self._on_service),
            deployments=informer(kube, DEPLOYMENTS, spaces, self._on_deployment),
            slices=informer(kube, ENDPOINTSLICES, spaces, self._on_slice),
            # Only ours (copies, histories) and what a managed template reads:
            # a cluster's thousands of other ConfigMaps and Secrets (Helm
            # releases...) stream past and are dropped.
            configmaps=informer(
                kube,
                CONFIGMAPS,
                spaces,
                lambda event: self._on_config("ConfigMap", event),
                keep=lambda obj: self._wanted_config("ConfigMap", obj),
                page_size=100,
            ),
            secrets=informer(
                kube,
                SECRETS,
                spaces,
                lambda event: self._on_config("Secret", event),
                keep=lambda obj: self._wanted_config("Secret", obj),
                page_size=100,
            ),
            hpas=informer(kube, HPAS, spaces, self._on_hpa),
            # The twins' pods only, and only their readiness: the kubelet's
            # own word, which vetoes a stale EndpointSlice (observe.vetoed),
            # and why one is not ready (observe.not_ready_why).
            pods=informer(
                kube,
                PODS,
                spaces,
                self._on_pod,
                label_selector=f"{TWIN_LABEL},{SERVICE_LABEL}",
                slim=slim_pod,
            ),
        )
        self.reconciler = Reconciler(edges, self.caches, wake=self.enqueue)
        self.metrics = edges.metrics
        self.metrics.track_api(kube.requests)
        self.metrics.track_clock(edges.prometheus)
        self._limit = asyncio.Semaphore(max_concurrent)
        self._workers: dict[Key, asyncio.Task[None]] = {}
        self._dirty: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._failures: dict[Key, int] = defaultdict(int)
        # Who depends on what, learned from each reconcile.
        self._by_deployment: dict[Key, set[Key]] = defaultdict(set)
        self._by_service_name: dict[Key, set[Key]] = defaultdict(set)  # preview -> main
        self._by_config: dict[tuple[str, str, str], set[Key]] = defaultdict(set)
        self._depends: dict[Key, list[tuple[dict[Any, set[Key]], Any]]] = {}
        # (namespace, Service) -> names of the twins labelled for it, so a
        # Service that is gone (or recreated bare) still wakes its hand-back.
        self._twins: dict[Key, set[str]] = defaultdict(set)
        self.reconciles = 0
        self._stopping = False
        self.synced = asyncio.Event()  # no decision before every cache is complete
        self._said_stale: list[str] = []
        self.active = active  # only the leader reconciles; a standby keeps warm caches

    def _wanted_config(self, kind: str, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata", {})
        if SERVICE_LABEL in (meta.get("labels") or {}):
            return True
        return (str(meta.get("namespace", "")), kind, str(meta.get("name", ""))) in (
            self.reconciler.wanted
        )

    # -- running ---------------------------------------------------------------

    def _informers(self) -> list[Informer | Informers]:
        informers = [
            self.caches.services,
            self.caches.deployments,
            self.caches.slices,
            self.caches.configmaps,
            self.caches.secrets,
        ]
        if self.caches.hpas is not None:
            informers.append(self.caches.hpas)
        return informers

    def stale(self) -> list[str]:
        """The caches that have not been refreshed for STALE_S (every list and
        watch failing, e.g. a 403 after an RBAC change): decisions rest on
        what they last saw."""
        return [i.path for i in self._informers() if i.stale(STALE_S)]

    def ready(self) -> bool:
        """/readyz: every cache complete and being refreshed."""
        if not self.synced.is_set() or any(i.unlisted() for i in self._informers()):
            return False  # one never listed too: the others are served (run)
        stale = self.stale()
        if stale and stale != self._said_stale:
            log.error("caches not refreshed for %.0fs: %s", STALE_S, ", ".join(stale))
        self._said_stale = stale
        return not stale

    async def run(self) -> None:
        informers = self._informers()
        async with asyncio.TaskGroup() as group:
            for cache in informers:
                group.create_task(_guard(f"watch {cache.path}", cache.run()))
            if self.caches.pods is not None:
                # Not waited for, nor part of /readyz: the pods only veto what
                # the EndpointSlices say (observe.vetoed), and without them
                # (the image upgraded before its ClusterRole) the slices count
                # alone, as before; the informer logs each failure.
                pods = self.caches.pods
                group.create_task(_guard(f"watch {pods.path}", pods.run()))
            # In the group: cancelled with it (a gather left pending was not).
            listed = group.create_task(_listed(informers))
            # Every cache, or every one that lists: one namespace the
            # controller may not list held back every other (no decision, no
            # Lease taken) for good: no rollback anywhere.
            while not listed.done() and any(i.listing(UNLISTED_S) for i in informers):
                await asyncio.wait({listed}, timeout=min(1.0, UNLISTED_S))
            self.synced.set()
            log.info(
                "caches synced: %d services, %d deployments",
                len(self.caches.services),
                len(self.caches.deployments),
            )
            unlisted = [path for i in informers for path in i.unlisted()]
            if unlisted:
                log.error(
                    "never listed, every list failing for %.0fs: %s. Grant the controller "
                    "list and watch there (manifests/base/rbac.yaml; a RoleBinding in each "
                    "namespace of --namespace). The Services of those namespaces wait until "
                    "they are listed; the others are served",
                    UNLISTED_S,
                    ", ".join(unlisted),
                )
            self._enqueue_all()
            waiting = self._waiting()
            while waiting and not listed.done():
                # A namespace listed at last while another still waits: its
                # Services are taken in now. Its Service's own list enqueues
                # it only if its other caches listed before, and the enqueue
                # of every Service waited for every namespace: a canary
                # mid-step there served on, unanalysed, until an event of its
                # own came (found by review).
                await asyncio.wait({listed}, timeout=1.0)
                if (now := self._waiting()) != waiting:
                    log.info("namespaces listed at last: %s", ", ".join(sorted(waiting - now)))
                    self._enqueue_all(waiting - now)
                    waiting = now
            await listed
            if unlisted:
                log.info("caches listed at last: %s", ", ".join(unlisted))
                self._enqueue_all()
            await asyncio.Event().wait()  # until cancelled

    async def stop(self, grace_s: float = 30.0) -> None:
        """Graceful: no new cycles, let the ones in flight finish (a cycle cut
        in half would redo its writes and repeat its Events), then cancel
        whatever is still running after the grace period."""
        self._stopping = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        workers = list(self._workers.values())
        if workers:
            _, pending = await asyncio.wait(workers, timeout=grace_s)
            for worker in pending:
                worker.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.reconciler.close()
        await self.edges.webhooks.close()
        await self.edges.notifier.close()

    # -- event handlers: cheap, synchronous, only enqueue ------------------------

    def _on_service(self, event: WatchEvent) -> None:
        # The echo of our own writes never gets here: the informer already
        # holds that version (write-through) and drops the event.
        key = event.key
        _indexed(self.caches.services_by_namespace, key[0], key[1], event.type)
        self._enqueue_service(event.object)
        for main in self._by_service_name.get(key, ()):
            self.enqueue(main)

    def _enqueue_service(self, service: dict[str, Any]) -> None:
        meta = service["metadata"]
        annotations = meta.get("annotations") or {}
        key = (meta["namespace"], meta["name"])
        if managed_by_annotations(annotations) or key in self._twins:
            self.enqueue(key)

    def _enqueue_all(self, namespaces: frozenset[str] | None = None) -> None:
        """Every managed Service, and every Service that twins are labelled
        for or that a Deployment is claimed by: one deleted while we were
        down is found here. `namespaces`: only theirs."""
        for service in self.caches.services.items():
            if namespaces is None or service["metadata"]["namespace"] in namespaces:
                self._enqueue_service(service)
        for key in list(self._twins):
            if namespaces is None or key[0] in namespaces:
                self.enqueue(key)
        for deployment in self.caches.deployments.items():
            meta = deployment["metadata"]
            claimant = (meta.get("annotations") or {}).get(MANAGED_BY)
            if (
                claimant
                and TWIN_LABEL not in (meta.get("labels") or {})
                and (namespaces is None or meta["namespace"] in namespaces)
            ):
                self.enqueue((str(meta["namespace"]), str(claimant)))

    def _waiting(self) -> frozenset[str]:
        """The namespaces of --namespace some cache has never listed."""
        informers = self._informers()
        return frozenset(n for n in self._spaces if not all(i.listed(n) for i in informers))

    def _on_deployment(self, event: WatchEvent) -> None:
        namespace, name = event.key
        meta = event.object["metadata"]
        labels = meta.get("labels") or {}
        if TWIN_LABEL in labels and SERVICE_LABEL in labels:
            owner = (namespace, str(labels[SERVICE_LABEL]))
            if event.type == "DELETED":
                self._twins[owner].discard(name)
                if not self._twins[owner]:
                    del self._twins[owner]
            else:
                self._twins[owner].add(name)
            self.enqueue(owner)
            return
        claimant = (meta.get("annotations") or {}).get(MANAGED_BY)
        if claimant:
            self.enqueue((namespace, str(claimant)))
        for key in self._by_deployment.get((namespace, name), ()):
            self.enqueue(key)

    def _on_pod(self, event: WatchEvent) -> None:
        """A twin's pod turning ready or not wakes its Service (the
        EndpointSlice follows a hop later, and wakes it again)."""
        meta = event.object["metadata"]
        namespace, name = str(meta["namespace"]), str(meta["name"])
        pods = self.caches.pods
        # When its readiness turned, in our clock: its node's stamp may be
        # off (Reconciler.saw_pod). Before its namespace is listed: the first
        # list, which finds pods ready since some time before.
        self.reconciler.saw_pod(
            namespace,
            name,
            None if event.type == "DELETED" else event.object,
            time.time(),
            listing=pods is None or not pods.listed(namespace),
        )
        service = (meta.get("labels") or {}).get(SERVICE_LABEL)
        if service:
            key = (namespace, str(service))
            _indexed(self.caches.pods_by_service, key, name, event.type)
            self.enqueue(key)

    def _on_hpa(self, event: WatchEvent) -> None:
        """Our copies wake their Service; a team's HPA wakes the Services
        whose source Deployment it targets (by name: one aimed at another
        kind is reported, not ignored)."""
        namespace = event.key[0]
        meta, spec = event.object["metadata"], event.object.get("spec") or {}
        service = (meta.get("labels") or {}).get(SERVICE_LABEL)
        if service:
            self.enqueue((namespace, str(service)))
            return
        target = str((spec.get("scaleTargetRef") or {}).get("name", ""))
        for key in self._by_deployment.get((namespace, target), ()):
            self.enqueue(key)

    def _on_slice(self, event: WatchEvent) -> None:
        meta = event.object["metadata"]
        service = (meta.get("labels") or {}).get("kubernetes.io/service-name")
        if not service:
            return
        key = (meta["namespace"], service)
        slices = self.caches.slices_by_service.setdefault(key, {})
        if event.type == "DELETED":
            slices.pop(meta["name"], None)
            if not slices:  # every Service's slices pass here: none kept for one gone
                del self.caches.slices_by_service[key]
        else:
            slices[meta["name"]] = event.object
        if self.caches.services.get(*key) is not None:
            self._enqueue_service(self.caches.services.get(*key) or {})
        for main in self._by_service_name.get(key, ()):
            self.enqueue(main)

    def _on_config(self, kind: str, event: WatchEvent) -> None:
        namespace, name = event.key
        for key in self._by_config.get((namespace, kind, name), ()):
            self.enqueue(key)
        service = (event.object.get("metadata", {}).get("labels") or {}).get(SERVICE_LABEL)
        if event.type == "DELETED" and service and self.reconciler.managed(namespace, str(service)):
            # One of ours (a copy a twin may read): its content, to put it back.
            self.reconciler.copies.deleted(namespace, kind, event.object, str(service))
            self.enqueue((namespace, str(service)))

    # -- the queue -----------------------------------------------------------------

    def activate(self) -> None:
        """This replica now leads: reconcile every managed Service."""
        self.active = True
        if self.synced.is_set():
            self._enqueue_all()

    def enqueue(self, key: Key) -> None:
        if self._stopping or not self.synced.is_set() or not self.active:
            return  # every Service is enqueued once all caches are complete
        if not all(i.listed(key[0]) for i in self._informers()):
            return  # never decided on caches that never listed its namespace (run)
        self._dirty.add(key)
        if key not in self._workers:
            self._workers[key] = asyncio.create_task(self._work(key), name=f"reconcile {key}")

    def _schedule(self, key: Key, delay: float | None) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if delay is not None:
            loop = asyncio.get_running_loop()
            self._timers[key] = loop.call_later(delay, self._fire, key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.enqueue(key)

    async def _work(self, key: Key) -> None:
        """Serial per Service: events that arrive mid-reconcile make one more pass."""
        try:
            while key in self._dirty and not self._stopping:
                self._dirty.discard(key)
                async with self._limit:
                    delay = await self._reconcile_once(key)
                if not self._stopping:
                    self._schedule(key, delay)
        finally:
            self._workers.pop(key, None)

    async def _reconcile_once(self, key: Key) -> float | None:
        self.reconciles += 1
        self.metrics.reconciles.inc()
        try:
            with self.metrics.decision.time():
                outcome = await self.reconciler.reconcile(*key)
        except Exception as exc:  # one Service's failure must not stop its worker for good
            return await self._failed(key, exc)
        if outcome.refused:
            # The decision landed but a write it could do without was refused
            # for good (its history, keeping the source down): told and
            # retried as a failure, but back when the rollout wants to be
            # (a look due): at the back-off alone, each look, so a rollback,
            # came up to 30 s late for as long as the refusal lasted.
            self._learn(key, outcome)
            delay = await self._failed(key, outcome.refused[0], landed=True)
            wanted = outcome.requeue_after
            return delay if wanted is None else min(delay, wanted)
        self._failures.pop(key, None)
        self._learn(key, outcome)
        return outcome.requeue_after

    async def _failed(self, key: Key, exc: Exception, landed: bool = False) -> float:
        """Count, log and (when it will not pass by itself) tell a failed
        reconcile; the back-off before the next try."""
        # Not a namespace being deleted (see below): CanaryAPIErrors pages
        # on this counter, and a namespace of a few managed Services,
        # deleted on purpose, refused more than its threshold of 403s in
        # its first seconds. Logged below, as every failure is.
        if isinstance(exc, KubeError) and not namespace_terminating(exc):
            self.metrics.api_errors.labels(str(exc.status)).inc()
        failures = self._failures[key]
        self._failures[key] = failures + 1
        delay = ERROR_BACKOFF_S[min(failures, len(ERROR_BACKOFF_S) - 1)]
        if isinstance(exc, KubeError) and exc.status == 409 and failures < CONFLICT_RETRIES:
            # Our cache was a step behind someone's write (a GitOps sync
            # resetting the selector): the watch brings it within
            # milliseconds, and every moment waited is traffic on the
            # wrong pods.
            delay = CONFLICT_RETRY_S
        expected = isinstance(exc, KubeError | OSError | NotLeading | TimeoutError)
        log.warning(
            "reconcile %s/%s failed (%s); retrying in %.1fs",
            *key,
            exc,
            delay,
            exc_info=not expected,
            extra={"namespace": key[0], "service": key[1]},
        )
        # A write the API server refuses as such (invalid, forbidden) fails
        # the same way at every retry: told on the Service (from the second
        # in a row), or on-call sees a phase that never moves and nothing
        # saying why (a Secret copy refused with 422 left one Pending).
        # A write let pass (`landed`) was judged refused for good by whoever let
        # it pass, a webhook down's 500 too: told as well (it was not: only
        # the log said the source stayed up while the webhook was down).
        refused = isinstance(exc, KubeError) and (exc.status in REFUSED or landed) and failures >= 1
        # Its namespace is being deleted (the team's `kubectl delete
        # namespace`, a preview environment torn down): the cycles its own
        # deletion wakes (its ConfigMaps may go before its Service) meet the
        # refusal of every create until its objects are gone. Nothing is to
        # be fixed and nothing serves from there: logged, not told (told, it
        # paged CanaryReconcileFailing for a namespace deleted on purpose).
        refused = refused and not namespace_terminating(exc)
        if not expected or refused:
            with contextlib.suppress(Exception):  # telling must not fail the worker
                await self.reconciler.report_failure(*key, exc, landed)
        return delay

    def _learn(self, key: Key, outcome: Outcome) -> None:
        namespace = key[0]
        for index, dependency in self._depends.pop(key, []):
            index[dependency].discard(key)
            if not index[dependency]:
                del index[dependency]
        depends: list[tuple[dict[Any, set[Key]], Any]] = []
        if outcome.deployment:
            depends.append((self._by_deployment, (namespace, outcome.deployment)))
        if outcome.preview:
            depends.append((self._by_service_name, (namespace, outcome.preview)))
        for kind, name in outcome.config:
            depends.append((self._by_config, (namespace, kind, name)))
        for index, dependency in depends:
            index[dependency].add(key)
        if depends:  # a Service gone and handed back depends on nothing: not kept
            self._depends[key] = depends


async def _listed(informers: list[Informer | Informers]) -> None:
    """Once every cache has been listed."""
    await asyncio.gather(*(i.synced.wait() for i in informers))


async def _guard(what: str, coroutine: Coroutine[Any, Any, None]) -> None:
    """Long-lived tasks must not die quietly: log, then let the group fail."""
    try:
        await coroutine
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("%s crashed", what)
        raise


def _indexed(index: dict[Any, set[str]], key: Any, name: str, event: str) -> None:
    """`name` under `key` while it exists; a key left with none is dropped
    (nothing kept for a namespace or a Service whose objects are all gone)."""
    names = index.setdefault(key, set())
    if event == "DELETED":
        names.discard(name)
        if not names:
            del index[key]
    else:
        names.add(name)
