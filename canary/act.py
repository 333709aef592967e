"""Carry out a Plan's actions against the API. Each action is idempotent,
so a cycle cut short by a crash is simply done again by the next one.

Every write names the field manager `canary-controller`, so `kubectl get
-o yaml --show-managed-fields` (and the GitOps tools reading it) can tell our
changes from the team's. Writes to the Service carry its resourceVersion: a
stale copy, or a replica that no longer leads acting on one, fails with a
Conflict instead of overwriting what someone else just wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import hashlib
import json
import logging
import math
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from canary.autoscaling import RECREATING, afresh
from canary.kube import ApiError, Conflict, Kube, KubeError, NotFound
from canary.kube.api import PatchType
from canary.kube.resources import CONFIGMAPS, DEPLOYMENTS, EVENTS, HPAS, SECRETS, SERVICES
from canary.model import COLORS, JSON, Claim, Color, Emit
from canary.observe import digest_of_ours
from canary.revisions import ConfigRef, config_refs, copy_name
from canary.spec import (
    CLAIM_REPLICAS,
    CLAIM_STABLE,
    FIELD_MANAGER,
    HANDBACK_ANNOTATION,
    HOLD_GATE,
    MANAGED_BY,
    PUT_BACK_ANNOTATION,
    REVISION_ANNOTATION,
    SERVICE_LABEL,
    STATUS,
    TEMPLATE_ANNOTATION,
    TWIN_LABEL,
)
from canary.twins import (
    RETIRED,
    preview_ports,
    preview_ports_stale,
    source_template,
    template_digest,
    twin_deployment,
    twin_name,
    untracked,
)
from canary.writeguard import WriteGuard, WriteKey

T = TypeVar("T")
log = logging.getLogger(__name__)

_INSTANCE = socket.gethostname()

# What an Event's message keeps (the events API's 1 KB note, which client-go's
# recorders cut to as well).
EVENT_MESSAGE_MAX = 1024
_CUT = " [...] "


def _event_message(message: str) -> str:
    """The message, or its start (what happened) and its end (what to do
    about it) with the middle cut out. Cut at its end, a ConfigChurn naming
    30 tracked objects lost its fix, and on-call read a list of names. The
    history keeps it whole (`canary timeline`)."""
    if len(message) <= EVENT_MESSAGE_MAX:
        return message
    head = EVENT_MESSAGE_MAX * 2 // 3
    tail = EVENT_MESSAGE_MAX - head - len(_CUT)
    return message[:head] + _CUT + message[-tail:]


class NotLeading(Exception):
    """The fence is down: another replica may lead; nothing may be written."""


# The API server's "no" to an Event itself, which the next one meets too:
# RBAC without `create` on events in the namespace (403), an admission
# policy or webhook capping Events (400, 403, 422), the EventRateLimit
# plugin (429, a Status). (A ResourceQuota on count/events refuses nothing:
# Kubernetes' quota ignores Events.)
# Events are best effort, as client-go's recorder has them (it drops them),
# and the history has ours: such an Event is dropped and the cycle goes on.
# Anything else (no answer, a 5xx, the fence down, the 429 of API priority
# and fairness: see _refused) still cuts the cycle: the API server's bad day
# is not the Event's.
EVENT_REFUSED = (400, 403, 422, 429)


def _refused(exc: ApiError) -> bool:
    """The API server said no to the Event itself (EVENT_REFUSED). A 429
    only as a Status (EventRateLimit, a webhook): API priority and fairness
    and max-in-flight answer in plain text with a Retry-After, the API
    server's load of the moment, which a retry gets through as client-go's
    does (dropped, the Event was lost for good and the status said Events
    were refused)."""
    if exc.status == 429:
        return bool(exc.reason)
    return exc.status in EVENT_REFUSED


# Told of each Event: None when created, else the refusal it was dropped for.
Told = Callable[[Emit, KubeError | None], None]

COPY_OF = "canary.io/copy-of"
SA_TOKEN = "kubernetes.io/service-account-token"


@dataclass
class Target:
    """What one Actor writes for: a Service (which may be gone) and its
    source Deployment."""

    namespace: str
    name: str  # the Service's name
    deployment: str
    service: JSON | None  # None: the Service is gone (a hand-back of its orphans)


@dataclass
class Writes:
    """What a cycle's writes ran into, for the reconcile to report."""

    loops: list[str] = field(default_factory=list)  # write loops detected now
    blocked: list[str] = field(default_factory=list)  # writes skipped: a loop cools off


def _selects(selector: JSON, labels: dict[str, str]) -> bool:
    """A Deployment selector of matchLabels only that these labels satisfy."""
    wanted = selector.get("matchLabels") or {}
    return (
        bool(wanted)
        and not selector.get("matchExpressions")
        and all(labels.get(k) == v for k, v in wanted.items())
    )


def _annotations(obj: JSON | None) -> JSON:
    """An object's annotations as cached ({} when none, or not cached)."""
    return ((obj or {}).get("metadata") or {}).get("annotations") or {}


class Actor:
    """The write side for one Service."""

    def __init__(
        self,
        kube: Kube,
        target: Target,
        written: Callable[[JSON], None],
        cached: Callable[[str, str], JSON | None],
        guard: WriteGuard,
        progress: str,
        now: float,
        fence: Callable[[], float] = lambda: math.inf,
        told: Told = lambda event, refused: None,
        sent: Callable[[str], None] = lambda status: None,
    ) -> None:
        self.kube = kube
        self.fence = fence
        # Told of each status this controller sends, before it is sent (one
        # that lands unanswered is still ours): reconcile.other_controller.
        self.sent = sent
        self.told = told  # each Event created or dropped, for the metrics and the status
        self.written = written  # told of every object we write, for the caches
        # What the watch caches hold, by (kind, name) in this namespace: read
        # from there instead of a GET. A stale copy makes a conditional write
        # fail with a Conflict, and the next cycle retries with a fresh one.
        self.cached = cached
        self.target = target
        self.service = target.service
        self.namespace = target.namespace
        self.name = target.name
        self.deployment = target.deployment
        self.guard = guard
        self.progress = progress  # the rollout's position: same writes at new positions are fine
        self.now = now
        self.writes = Writes()
        self._pending_digest: tuple[str, dict[str, str]] | None = None
        self.status_written: str | None = None  # a status that went with the selector
        # Writes refused for good and let pass, the rest of the decision going
        # ahead (reconcile._keeping_down, a history write refused)
        self.refused: list[KubeError] = []
        # Reasons of this plan's Events whose write was refused and let pass:
        # neither told nor recorded (reconcile._copying_autoscaler)
        self.unsaid: set[str] = set()

    # -- guarded writes -------------------------------------------------------

    async def _guarded(
        self,
        key: WriteKey,
        content: Any,
        write: Callable[[], Awaitable[T]],
        safe: bool = False,
    ) -> T | None:
        """The write's result; None when a fight holds it back. `safe`: the
        write takes traffic away from pods nobody analysed (the selector back
        on the stable twin, a canary to 0). A fight stops every other write
        to the object, never that one: in a fight over the selector, the
        other side is exposing unanalysed pods."""
        if self.guard.blocked(key, self.now) and not safe:
            self.writes.blocked.append(f"{key[0]} {key[2]} ({key[3]})")
            return None
        result = await write()
        digest = hashlib.sha256(
            json.dumps([content, self.progress], sort_keys=True, default=str).encode()
        ).hexdigest()
        if self.guard.wrote(key, digest, self.now):
            self.writes.loops.append(
                f"{key[0]} {key[2]}: the same {key[3]} written again and again with no "
                "progress (another controller, a second Service or a GitOps tool reverting "
                "it?); writes to it stop for 5 minutes"
            )
        return result

    def _key(self, kind: str, name: str, what: str) -> WriteKey:
        return (kind, self.namespace, name, what)

    def _fenced(self) -> float:
        """Seconds this replica may still write (the lease's fence)."""
        left = self.fence()
        if left <= 0:
            raise NotLeading("this replica no longer holds the lease; not writing")
        return left

    async def _within_fence(self, write: Callable[[], Awaitable[JSON]]) -> JSON:
        """A write still unanswered when the fence falls is given up: a path
        to the API server that turned slow must not let it land after
        another replica began to lead (a Service write also carries its
        resourceVersion; a twin's scale or the history would not)."""
        left = self._fenced()
        if math.isinf(left):
            return await write()
        sending = asyncio.ensure_future(write())
        try:
            # Renewals landing meanwhile extend the fence: waited out in turns.
            while not sending.done():
                await asyncio.wait({sending}, timeout=max(left, 0.001))
                left = self.fence()
                if not sending.done() and left <= 0:
                    raise NotLeading("the lease's fence fell while a write was in flight")
            return sending.result()
        finally:
            if not sending.done():
                sending.cancel()

    async def _create(self, path: str, body: JSON) -> JSON:
        return await self._within_fence(
            lambda: self.kube.create(path, body, fieldManager=FIELD_MANAGER)
        )

    async def _patch(self, path: str, body: Any, patch_type: PatchType = "merge") -> JSON:
        return await self._within_fence(
            lambda: self.kube.patch(path, body, patch_type, fieldManager=FIELD_MANAGER)
        )

    async def _replace(self, path: str, body: JSON) -> JSON:
        return await self._within_fence(
            lambda: self.kube.replace(path, body, fieldManager=FIELD_MANAGER)
        )

    async def _delete(self, path: str) -> JSON:
        return await self._within_fence(lambda: self.kube.delete(path))

    # -- twins ---------------------------------------------------------------

    async def apply_twin(
        self,
        color: Color,
        revision: str,
        replicas: int,
        source: JSON,
        template: JSON,
        config: dict[ConfigRef, JSON],
        put_back: bool = False,
    ) -> None:
        """The twin at `revision`, after the per-revision copies of the config
        it reads (the template already points at them); `put_back`: marked
        as a put-back (PUT_BACK_ANNOTATION) in the same write."""
        for ref, obj in sorted(config.items()):
            await self._copy_config(ref, revision, obj)
        body = twin_deployment(source, self.name, color, revision, replicas, template, put_back)
        name = body["metadata"]["name"]
        # A twin that is gone is created again whatever the write guard
        # holds: deleted with `--cascade=orphan`, its ReplicaSet is adopted
        # by the team's Deployment (its selector matches the twin's pods) and
        # scaled to the 0 it is held at, so the pods are soon gone too. Held
        # back by the put-backs that came before (chaos seed 24: the stable
        # twin edited and restarted, then deleted), the Service had no
        # endpoint for as long as the guard cooled off.
        found = self.cached("Deployment", name)
        gone = found is None
        if found is not None and found["metadata"].get("deletionTimestamp"):
            # Being deleted (a foreground cascade waits for its pods to
            # stop): the Deployment controller only syncs its status, so a
            # write changes nothing, and its name is taken until it is gone.
            # It is written only to find out whether it is gone already,
            # behind the cache (a 404: created at once; chaos seed 34), and
            # the DELETED event wakes the cycle that creates it: so once per
            # COOL_OFF_S (WriteGuard.due). Not a fight: counted, each cycle
            # of its cascade (pods, slices, status: a cycle each) made the
            # fourth within a minute a WriteLoop blaming another controller,
            # and held the twin's template writes back for 5 minutes once it
            # was made again. Written at each cycle instead, outside the
            # guard, it was an API write per cycle, never capped, for as
            # long as the cascade lasted: for good while a pod is stuck
            # terminating on a lost node.
            if self.guard.due(self._key("Deployment", name, "deleting"), self.now):
                await self._apply_twin(body)
                await self.fix_digest()
            return
        await self._guarded(
            self._key("Deployment", name, "template"),
            [revision, replicas],
            lambda: self._apply_twin(body),
            safe=gone,
        )
        await self.fix_digest()

    async def _apply_twin(self, body: JSON) -> None:
        name = body["metadata"]["name"]
        path = DEPLOYMENTS.path(self.namespace, name)
        found = self.cached("Deployment", name)
        if found is None:
            self._check_digest(await self._create(DEPLOYMENTS.path(self.namespace), body))
            return
        current = copy.deepcopy(found)
        # Replace spec and our metadata; keep what others added (labels, annotations).
        # A tracking label an earlier version copied goes too (untracked).
        current["metadata"]["labels"] = {
            **untracked(current["metadata"].get("labels") or {}),
            **body["metadata"]["labels"],
        }
        current["metadata"]["annotations"] = {
            **(current["metadata"].get("annotations") or {}),
            **body["metadata"]["annotations"],
        }
        if PUT_BACK_ANNOTATION not in body["metadata"]["annotations"]:
            # Not a put-back (a release's template): an older mark goes.
            current["metadata"]["annotations"].pop(PUT_BACK_ANNOTATION, None)
        # A template written is a new life of the twin (a release, a
        # put-back): no hand-back grew it to the size this write gives it.
        current["metadata"]["annotations"].pop(HANDBACK_ANNOTATION, None)
        current["metadata"].pop("ownerReferences", None)
        kept = current["spec"].get("selector") or {}
        labels = (body["spec"]["template"].get("metadata") or {}).get("labels") or {}
        if kept != body["spec"]["selector"] and _selects(kept, labels):
            # The source's selector changed since this twin was made: a
            # selector is immutable, and the twin may be the one serving, so
            # it keeps its own, which the template it gets still satisfies.
            body = {**body, "spec": {**body["spec"], "selector": kept}}
        if kept != body["spec"]["selector"]:
            # A twin made by someone else (its pods could not be ours): replaced.
            with contextlib.suppress(NotFound):
                await self._delete(path)
            self._check_digest(await self._create(DEPLOYMENTS.path(self.namespace), body))
            return
        current["spec"] = body["spec"]
        try:
            self._check_digest(await self._replace(path, current))
        except NotFound:
            # Deleted behind the cache (its watch event not in yet: chaos
            # seed 34, `--cascade=orphan` with the API server stopped): the
            # 404 failed every cycle before its other writes, and a failing
            # canary the rollback had ended kept serving for 51 s.
            self._check_digest(await self._create(DEPLOYMENTS.path(self.namespace), body))

    def _check_digest(self, twin: JSON) -> None:
        """The template digest must match what the API server stored (it does,
        unless something mutates templates on the way in): else record the
        stored one, so our own write is never taken for a hand edit."""
        self.written(twin)
        template = twin["spec"].get("template") or {}
        annotations = twin["metadata"].get("annotations") or {}
        stored = {TEMPLATE_ANNOTATION: template_digest(template)}
        if PUT_BACK_ANNOTATION in annotations:
            # The put-back's mark is a digest of its template too: of what
            # was sent, it never matched what is stored, and a put-back
            # rolling went unseen once the status was lost (Healthy while
            # the edited pods served).
            stored[PUT_BACK_ANNOTATION] = template_digest(template, restarts=True)
        if any(annotations.get(key) != digest for key, digest in stored.items()):
            self._pending_digest = (twin["metadata"]["name"], stored)

    async def fix_digest(self) -> None:
        if self._pending_digest is None:
            return
        name, stored = self._pending_digest
        self._pending_digest = None
        self.written(
            await self._patch(
                DEPLOYMENTS.path(self.namespace, name), {"metadata": {"annotations": stored}}
            )
        )

    async def renew_digests(self) -> None:
        """A twin's template digest as an earlier version wrote it (restartedAt
        included), its template unchanged since, or as another version of the
        controller computes it (observe.digest_of_ours): written as it is now.
        Left, a twin made from a Deployment that carried restartedAt (any app once
        restarted with `kubectl rollout restart`) took on-call's restart of it
        for a hand edit, and put it back: every pod restarted a second time."""
        for color in COLORS:
            name = twin_name(self.deployment, color)
            twin = self.cached("Deployment", name)
            if twin is None or (twin["metadata"].get("labels") or {}).get(SERVICE_LABEL) != (
                self.name
            ):
                continue
            template = twin["spec"].get("template") or {}
            written = (twin["metadata"].get("annotations") or {}).get(TEMPLATE_ANNOTATION)
            digest = template_digest(template)
            if written in (None, digest) or not (
                written == template_digest(template, restarts=True)
                or digest_of_ours(twin["metadata"])
            ):
                continue
            try:
                self.written(
                    await self._patch(
                        DEPLOYMENTS.path(self.namespace, name),
                        {"metadata": {"annotations": {TEMPLATE_ANNOTATION: digest}}},
                    )
                )
            except KubeError as exc:  # housekeeping: tried again next cycle
                log.warning("%s: template digest of %s not renewed: %s", self.name, name, exc)

    async def scale_twin(
        self, color: Color, replicas: int, safe: bool = False, handback: bool = False
    ) -> None:
        """`handback`: grown for a hand-back, the size marked on the twin
        (HANDBACK_ANNOTATION) in this same patch. Any other scale of ours
        takes an older mark away in it: left, a later scale to the size it
        names would make it current again."""
        name = twin_name(self.deployment, color)
        body: JSON = {"spec": {"replicas": replicas}}
        if handback:
            body["metadata"] = {"annotations": {HANDBACK_ANNOTATION: str(replicas)}}
        elif HANDBACK_ANNOTATION in _annotations(self.cached("Deployment", name)):
            body["metadata"] = {"annotations": {HANDBACK_ANNOTATION: None}}

        async def write() -> None:
            with contextlib.suppress(NotFound):
                self.written(await self._patch(DEPLOYMENTS.path(self.namespace, name), body))

        await self._guarded(self._key("Deployment", name, "replicas"), replicas, write, safe)

    async def disown(self, color: Color) -> None:
        with contextlib.suppress(NotFound):
            self.written(
                await self._patch(
                    DEPLOYMENTS.path(self.namespace, twin_name(self.deployment, color)),
                    {"metadata": {"ownerReferences": None}},
                )
            )

    async def delete_twins(self, keep: str) -> None:
        for color in COLORS:
            name = twin_name(self.deployment, color)
            twin = self.cached("Deployment", name)
            if twin is None:
                continue  # none (our writes reach the cache: one we made is there)
            meta = twin.get("metadata") or {}
            labels = meta.get("labels") or {}
            if labels.get(SERVICE_LABEL, self.name) != self.name:
                log.warning("not deleting %s: it serves Service %s", name, labels[SERVICE_LABEL])
                continue  # never another Service's twins, whatever decided it
            if SERVICE_LABEL not in labels and not (meta.get("annotations") or {}).get(
                REVISION_ANNOTATION
            ):
                # Neither mark of ours (rebuild.foreign): the team's own
                # Deployment that happens to have a twin's name, made while
                # ours was gone. Taken for ours, a hand-back deleted their app.
                log.warning("not deleting %s: the controller did not make it", name)
                continue
            await self.delete_autoscaler(color)
            with contextlib.suppress(NotFound):
                await self._delete(DEPLOYMENTS.path(self.namespace, name))
        await self.collect_config_copies(keep={keep} if keep else set())

    # -- HPA copies (canary/autoscaling.py) ----------------------------------------

    async def apply_autoscaler(self, body: JSON) -> None:
        """Our copy of the team's HPA: created, or its spec and our metadata
        replaced (a PUT on the version we read: a concurrent edit conflicts
        and the next cycle writes it again)."""
        name = body["metadata"]["name"]
        found = self.cached("HorizontalPodAutoscaler", name)

        async def write() -> None:
            if found is None:
                self.written(await self._create(HPAS.path(self.namespace), body))
                return
            current = copy.deepcopy(found)
            meta, ours = current["metadata"], body["metadata"]
            meta["labels"] = {**(meta.get("labels") or {}), **ours["labels"]}
            meta["annotations"] = {**(meta.get("annotations") or {}), **ours["annotations"]}
            meta["ownerReferences"] = ours["ownerReferences"]
            current["spec"] = body["spec"]
            self.written(await self._replace(HPAS.path(self.namespace, name), current))

        await self._guarded(self._key("HorizontalPodAutoscaler", name, "spec"), body["spec"], write)

    async def reset_autoscaler(self, team: JSON | None, copy_: JSON, stash: JSON) -> None:
        """Create the team's HPA afresh (canary/autoscaling.py, ambiguous()).
        What it holds is kept on our copy first, so a re-creation cut short
        (a crash between the delete and the create) is finished next cycle.
        Writes are PUTs of the version read (a concurrent edit conflicts)."""
        path = HPAS.path(self.namespace, copy_["metadata"]["name"])
        marked = copy.deepcopy(copy_)
        annotations = marked["metadata"].setdefault("annotations", {})
        annotations[RECREATING] = json.dumps(stash, sort_keys=True)
        marked = await self._replace(path, marked)
        self.written(marked)
        if team is not None:
            meta = team["metadata"]
            with contextlib.suppress(NotFound):
                await self._within_fence(
                    lambda: self.kube.request(
                        "DELETE",
                        HPAS.path(self.namespace, meta["name"]),
                        # Only the version we read: an edit since then wins.
                        body={
                            "apiVersion": "v1",
                            "kind": "DeleteOptions",
                            "preconditions": {
                                "uid": meta["uid"],
                                "resourceVersion": meta["resourceVersion"],
                            },
                        },
                    )
                )
        with contextlib.suppress(Conflict):  # someone (the team's tool) made it already
            self.written(
                await self._create(HPAS.path(self.namespace), afresh(stash, self.namespace))
            )
        marked["metadata"]["annotations"].pop(RECREATING, None)
        self.written(await self._replace(path, marked))

    async def delete_autoscaler(self, color: Color) -> None:
        name = twin_name(self.deployment, color)
        if self.cached("HorizontalPodAutoscaler", name) is None:
            return
        with contextlib.suppress(NotFound):
            await self._delete(HPAS.path(self.namespace, name))

    # -- config copies ----------------------------------------------------------

    async def _copy_config(self, ref: ConfigRef, revision: str, obj: JSON) -> bool:
        """Made (True), or there already (False)."""
        kind, name = ref
        if self.cached(kind, copy_name(name, revision)) is not None:
            return False  # made before: its content is fixed by its name
        resource = CONFIGMAPS if kind == "ConfigMap" else SECRETS
        body: JSON = {
            "metadata": {
                "name": copy_name(name, revision),
                "namespace": self.namespace,
                "labels": {SERVICE_LABEL: self.name},
                # No ownerReference: a twin's pods read it, and they outlive the Service.
                "annotations": {REVISION_ANNOTATION: revision, COPY_OF: name},
            },
        }
        for key in ("data", "binaryData", "type"):
            if key in obj:
                body[key] = obj[key]
        # Its content is fixed by its name (the revision hash covers it), and
        # the serving pods mount it: edited in place (on-call editing the
        # name `kubectl describe pod` shows), the kubelet handed the edit to
        # every pod of that revision with no rollout, and a rollback to it
        # later ran the edit. The API server refuses such an edit.
        body["immutable"] = True
        if body.get("type") == SA_TOKEN:
            # That type needs the ServiceAccount's annotation, and the token
            # controller would fill such a Secret with a token of its own (or
            # delete it with the account): the API server refused the copy
            # (422) at every cycle and the Service never left Pending. The
            # pods read the same files from an Opaque copy.
            body["type"] = "Opaque"
        # The copy's content is fixed by its name (the revision hash covers it).
        try:
            made = await self._create(resource.path(self.namespace), body)
        except Conflict:
            return False
        self.written({"kind": kind, **made})
        return True

    async def restore_config_copy(
        self, kind: str, original: str, revision: str, content: JSON
    ) -> bool | None:
        """A copy a twin reads, deleted by hand: made again with `content`
        (its last view, or the original unchanged since `revision`); False
        when it was there after all, None when the write guard held it back."""
        # Someone deleting it again and again (a janitor) meets the write guard.
        return await self._guarded(
            self._key(kind, copy_name(original, revision), "copy"),
            revision,
            lambda: self._copy_config((kind, original), revision, content),
        )

    async def collect_config_copies(self, keep: set[str]) -> None:
        """Delete copies made for revisions no longer kept, except any the
        team's Deployment reads: a hand-back may have written a template that
        reads them into it (they then stay, ours no longer to delete)."""
        source = self.cached("Deployment", self.deployment)
        template = ((source or {}).get("spec") or {}).get("template") or {}
        read = {name for _, name in config_refs(template)}
        for resource in (CONFIGMAPS, SECRETS):
            listing = await self.kube.get(
                resource.path(self.namespace), labelSelector=f"{SERVICE_LABEL}={self.name}"
            )
            for item in listing.get("items", []):
                meta = item["metadata"]
                revision = (meta.get("annotations") or {}).get(REVISION_ANNOTATION)
                if revision and revision not in keep and meta["name"] not in read:
                    with contextlib.suppress(NotFound):
                        await self._delete(resource.path(self.namespace, meta["name"]))

    # -- the team's Deployment ---------------------------------------------------

    async def scale_source(self, replicas: int) -> None:
        path = DEPLOYMENTS.path(self.namespace, self.deployment)
        await self._guarded(
            self._key("Deployment", self.deployment, "replicas"),
            replicas,
            lambda: self._write_source(path, {"spec": {"replicas": replicas}}),
        )

    async def gate_source(self, on: bool) -> None:
        """Our scheduling gate on the source's pod template, added or removed
        by a strategic merge on the gate's name: the team's own gates, and
        everything else in the template, stay as they are."""
        path = DEPLOYMENTS.path(self.namespace, self.deployment)
        gate: JSON = {"name": HOLD_GATE} if on else {"name": HOLD_GATE, "$patch": "delete"}
        body = {"spec": {"template": {"spec": {"schedulingGates": [gate]}}}}
        # Taking the gate off is never held back by a write fight: a hand-back
        # that goes on would otherwise leave the team's Deployment gated.
        await self._guarded(
            self._key("Deployment", self.deployment, "gate"),
            on,
            lambda: self._write_source(path, body, "strategic"),
            safe=not on,
        )

    async def _write_source(self, path: str, body: JSON, patch_type: PatchType = "merge") -> None:
        self.written(await self._patch(path, body, patch_type))

    async def claim(self, claim: Claim) -> None:
        """Our annotations on the source. The first claim is conditional on
        the Deployment being as we read it, so two Services claiming at once
        cannot both win."""
        path = DEPLOYMENTS.path(self.namespace, self.deployment)
        current = self.cached("Deployment", self.deployment)
        meta: JSON = {
            "annotations": {
                MANAGED_BY: claim.service,
                CLAIM_REPLICAS: str(claim.replicas),
                CLAIM_STABLE: claim.stable_revision,
            }
        }
        annotations = ((current or {}).get("metadata") or {}).get("annotations") or {}
        if current is not None and annotations.get(MANAGED_BY) != claim.service:
            meta["resourceVersion"] = current["metadata"]["resourceVersion"]
        self.written(await self._patch(path, {"metadata": meta}))

    async def unclaim(self) -> None:
        with contextlib.suppress(NotFound):
            self.written(
                await self._patch(
                    DEPLOYMENTS.path(self.namespace, self.deployment),
                    {
                        "metadata": {
                            "annotations": dict.fromkeys((MANAGED_BY, CLAIM_REPLICAS, CLAIM_STABLE))
                        }
                    },
                )
            )

    async def restore_source(self, color: Color) -> None:
        """The stable twin's template back into the team's Deployment."""
        twin = self.cached("Deployment", twin_name(self.deployment, color))
        current = self.cached("Deployment", self.deployment)
        if twin is None or current is None:
            return
        body = copy.deepcopy(current)
        body["spec"]["template"] = source_template(twin)
        self.written(await self._replace(DEPLOYMENTS.path(self.namespace, self.deployment), body))

    # -- the Service --------------------------------------------------------------

    def _service_meta(self) -> JSON:
        """A precondition on the Service version we acted on."""
        assert self.service is not None
        return {"resourceVersion": self.service["metadata"]["resourceVersion"]}

    async def set_selector(
        self,
        live: dict[str, str],
        selector: dict[str, str],
        safe: bool = False,
        status: str | None = None,
    ) -> None:
        """`status`: the decision's status annotation, written in the same
        request (one write instead of two)."""
        if self.service is None:
            return
        # A merge patch removes keys only when told to with null.
        patch: dict[str, Any] = {**dict.fromkeys(live), **selector}
        meta = self._service_meta()
        if status is not None:
            meta = {**meta, "annotations": {STATUS: status}}
            self.sent(status)

        async def write() -> None:
            path = SERVICES.path(self.namespace, self.name)
            try:
                self.service = await self._patch(
                    path, {"metadata": meta, "spec": {"selector": patch}}
                )
            except ApiError as exc:
                if status is None or exc.status not in (400, 403, 422):
                    raise
                # An admission policy or webhook refused the request: maybe the
                # status it carried. Traffic must move regardless; the status
                # is written on its own after the plan (and may fail there).
                log.warning("%s: selector written without the status: %s", self.name, exc)
                self.service = await self._patch(
                    path, {"metadata": self._service_meta(), "spec": {"selector": patch}}
                )
                self.written(self.service)
                return
            self.written(self.service)
            self.status_written = status

        await self._guarded(self._key("Service", self.name, "selector"), selector, write, safe)

    async def write_status(self, status: str | None) -> None:
        if self.service is None:
            return
        if status is not None:
            self.sent(status)
        self.service = await self._patch(
            SERVICES.path(self.namespace, self.name),
            {"metadata": {**self._service_meta(), "annotations": {STATUS: status}}},
        )
        self.written(self.service)

    async def apply_preview(self, name: str, selector: dict[str, str]) -> None:
        if self.service is None:
            return
        path = SERVICES.path(self.namespace, name)
        current = self.cached("Service", name)
        if current is None:
            spec = self.service["spec"]
            created = await self._create(
                SERVICES.path(self.namespace),
                {
                    "metadata": {
                        "name": name,
                        "namespace": self.namespace,
                        # Same labels, so whatever selects the Service (monitoring,
                        # the sandbox's traffic simulator) selects its preview too.
                        "labels": dict(self.service["metadata"].get("labels") or {}),
                        "ownerReferences": [self._owner()],
                    },
                    "spec": {
                        "selector": selector,
                        "ports": preview_ports(spec),
                        "type": "ClusterIP",
                        # Headless as the Service is: one often has no ports,
                        # which a ClusterIP Service must have (422 at every
                        # cycle, found by review), and its clients resolve
                        # the pods through DNS, as they would the preview's.
                        **({"clusterIP": "None"} if spec.get("clusterIP") == "None" else {}),
                    },
                },
            )
            self.written(created)
            return
        live = dict(current["spec"].get("selector") or {})
        patch: dict[str, Any] = {"selector": {**dict.fromkeys(live), **selector}}
        ports = preview_ports(self.service["spec"])
        if preview_ports_stale(current, self.service):
            # Our own preview follows the Service's ports at each rollout: kept
            # as created, a port the team added since was never previewed, and
            # observe counts a port the preview lacks as reached, so a release
            # whose pods do not declare it was flipped onto pods the Service
            # sends nothing to there (found by review). A merge patch replaces
            # the list whole; a nodePort on-call's NodePort preview has for a
            # port kept is kept. A team's own preview keeps its ports.
            allocated = {
                (port.get("port"), port.get("protocol")): port["nodePort"]
                for port in current["spec"].get("ports") or []
                if port.get("nodePort")
            }
            patch["ports"] = [
                {**port, "nodePort": allocated[key]}
                if (key := (port.get("port"), port.get("protocol"))) in allocated
                else port
                for port in ports
            ]

        async def write() -> None:
            self.written(await self._patch(path, {"spec": patch}))

        await self._guarded(self._key("Service", name, "selector"), selector, write)

    async def retire_preview(self, name: str) -> bool:
        """Our preview under an old name selects no pod (twins.RETIRED); one
        gone meanwhile needs nothing. Guarded: a tool that keeps putting its
        selector back is not fought. True when the write landed."""
        selector = {TWIN_LABEL: RETIRED}

        async def write() -> bool:
            try:
                path = SERVICES.path(self.namespace, name)
                self.written(await self._patch(path, {"spec": {"selector": selector}}))
            except NotFound:
                return False
            return True

        return bool(await self._guarded(self._key("Service", name, "selector"), selector, write))

    def _owner(self) -> JSON:
        assert self.service is not None
        meta = self.service["metadata"]
        return {"apiVersion": "v1", "kind": "Service", "name": meta["name"], "uid": meta["uid"]}

    # -- the record -----------------------------------------------------------------

    async def emit(self, event: Emit) -> None:
        involved = self._involved()
        if involved is None:
            return
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            await self._create_event(involved, event, now)
        except ApiError as exc:
            if not _refused(exc):
                raise
            # With its message: the shell's own Events (WriteLoop,
            # ReconcileFailed, GateNotified) are in no history.
            log.warning(
                "Event %s not created, dropped: the API server refused it (%s): %s",
                event.reason,
                exc,
                event.message,
                extra={"namespace": self.namespace, "service": self.name, "reason": event.reason},
            )
            self.told(event, exc)
            return
        self.told(event, None)

    async def _create_event(self, involved: JSON, event: Emit, now: str) -> None:
        await self._create(
            EVENTS.path(self.namespace),
            {
                "metadata": {
                    "generateName": f"{involved['name']}.",
                    "namespace": self.namespace,
                },
                "involvedObject": involved,
                "reason": event.reason,
                "message": _event_message(event.message),
                "type": "Warning" if event.warning else "Normal",
                "source": {"component": "canary"},
                "reportingComponent": "canary",
                "reportingInstance": _INSTANCE,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            },
        )

    def _involved(self) -> JSON | None:
        """The Service; when it is gone, the team's Deployment."""
        if self.service is not None:
            obj, kind, version = self.service, "Service", "v1"
        else:
            found = self.cached("Deployment", self.deployment)
            if found is None:
                return None
            obj, kind, version = found, "Deployment", "apps/v1"
        meta = obj["metadata"]
        return {
            "apiVersion": version,
            "kind": kind,
            "name": meta["name"],
            "namespace": self.namespace,
            "uid": meta["uid"],
        }

    async def write_history(
        self, name: str, data: dict[str, str], exists: bool, version: str = ""
    ) -> None:
        """`version`: the resourceVersion the records were read at. The
        history is written whole: a cache behind another writer's last
        write (a new leader right after a rolling upgrade's handover, a
        second install) wrote the older one over it. A 409 instead: the
        retry reads the history as it is."""
        if self.service is None:
            return
        path = CONFIGMAPS.path(self.namespace, name)
        if exists:
            meta = {"resourceVersion": version} if version else {}
            self.written(await self._patch(path, {"metadata": meta, "data": data}))
            return
        body = {
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {SERVICE_LABEL: self.name, "canary.io/history": "true"},
                "ownerReferences": [self._owner()],
            },
            "data": data,
        }
        try:
            self.written(await self._create(CONFIGMAPS.path(self.namespace), body))
        except Conflict:
            self.written(await self._patch(path, {"data": data}))

    async def adopt_history(self, configmap: JSON) -> JSON | None:
        """A history left by a deleted Service of the same name (a Service
        recreated: kubectl replace --force, a Helm reinstall) is made ours
        before the garbage collector removes it with its old owner: the new
        Service goes on from the same record, instead of losing it a moment
        after reading it. None when the collector was first."""
        assert self.service is not None
        # Read live, not from the cache: a Service deleted a moment ago
        # would hand the history to a dead owner, and the collector would
        # delete it for that. A list by name, not a GET: the ClusterRole
        # grants Services list, not get (manifests/base/rbac.yaml), and the
        # GET was refused (403) in every cycle of a recreated Service before
        # any of its writes, a failing canary's rollback among them.
        listing = await self.kube.get(
            SERVICES.path(self.namespace), fieldSelector=f"metadata.name={self.name}"
        )
        found = listing.get("items") or []
        if not found:
            return None
        meta = found[0]["metadata"]
        if meta.get("uid") != self.service["metadata"]["uid"] or meta.get("deletionTimestamp"):
            return None  # going (kubectl delete --cascade=orphan waits on a finalizer)
        meta = configmap["metadata"]
        others = [
            ref
            for ref in meta.get("ownerReferences") or []
            if not (ref.get("kind") == "Service" and ref.get("name") == self.name)
        ]
        try:
            adopted = await self._patch(
                CONFIGMAPS.path(self.namespace, meta["name"]),
                {
                    "metadata": {
                        "ownerReferences": [*others, self._owner()],
                        # Taken only if nobody (the collector) changed it since.
                        "resourceVersion": meta.get("resourceVersion"),
                    }
                },
            )
        except NotFound:
            return None
        self.written(adopted)
        return adopted

    async def keep_aside(self, name: str, original: JSON, reason: str) -> str:
        """A history we could not read is copied aside, never overwritten."""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
        aside = f"{name[:230]}-corrupt-{stamp}"
        await self._create(
            CONFIGMAPS.path(self.namespace),
            {
                "metadata": {
                    "name": aside,
                    "namespace": self.namespace,
                    "labels": {"canary.io/history-corrupt": "true"},
                    "annotations": {"canary.io/reason": reason[:1000]},
                },
                "data": dict(original.get("data") or {}),
            },
        )
        return aside
