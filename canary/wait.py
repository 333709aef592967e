"""`canary wait`: block until one release is promoted, rolled back, aborted,
halted, paused or superseded, for CI pipelines. It watches the Service, its
history ConfigMap and the source Deployment (no polling) and judges every
version of them it is sent with release_outcome.judge()."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from canary import history
from canary.handback import ORPHAN_GRACE_S
from canary.kube import Gone, Kube, KubeError, NotFound
from canary.kube.resources import CONFIGMAPS, DEPLOYMENTS, SECRETS, SERVICES, Resource
from canary.observe import field_manager, field_managers, ours, source_of
from canary.release_outcome import (
    Outcome,
    Pending,
    Settled,
    involved,
    judge,
    matches,
    stale_after,
)
from canary.revisions import clean_template, config_refs, images
from canary.spec import ACTION, PAUSED, STATUS, STRATEGY, SpecError, boolean, parse

JSON = dict[str, Any]
RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 5.0)
REVISION_LENGTH = 10  # revisions.revision_of()


class WaitError(Exception):
    """Waiting is impossible (no such Service, unreadable config, ...)."""


@dataclass(frozen=True, slots=True)
class Request:
    namespace: str
    service: str
    revision: str | None = None
    image: str | None = None
    timeout_s: float | None = None  # None: no limit


@dataclass(frozen=True, slots=True)
class Result:
    settled: Settled
    revision: str
    waited_s: float
    status: JSON


Change = tuple[str, JSON | None]  # (kind, the object's new version; None: deleted)


class _Follow:
    """One object by name, listed then watched. Every version the watch
    delivers goes to `changes` as it is, in order, so the judge sees each
    state the controller wrote, even one that lasted a single write."""

    def __init__(
        self,
        kube: Kube,
        resource: Resource,
        namespace: str,
        name: str,
        changes: asyncio.Queue[Change],
    ) -> None:
        self._kube = kube
        self._path = resource.path(namespace)
        self._selector = f"metadata.name={name}"
        self._changes = changes
        self.kind = resource.plural

    async def list(self) -> tuple[JSON | None, str]:
        """The object now (None: absent) and the resourceVersion to watch from."""
        listing = await self._kube.get(self._path, fieldSelector=self._selector)
        items = listing.get("items") or []
        return (items[0] if items else None), str(
            listing.get("metadata", {}).get("resourceVersion", "")
        )

    async def run(self, resource_version: str) -> None:
        failures = 0
        while True:
            try:
                if not resource_version:
                    obj, resource_version = await self.list()
                    self._changes.put_nowait((self.kind, obj))
                async for event in self._kube.watch(
                    self._path, resource_version, 300, fieldSelector=self._selector
                ):
                    obj = event.get("object") or {}
                    resource_version = str(
                        obj.get("metadata", {}).get("resourceVersion") or resource_version
                    )
                    if event.get("type") != "BOOKMARK":
                        deleted = event.get("type") == "DELETED"
                        self._changes.put_nowait((self.kind, None if deleted else obj))
                failures = 0
            except Gone:
                resource_version = ""
            except KubeError:
                await asyncio.sleep(RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S) - 1)])
                failures += 1
                resource_version = ""


def status_of(service: JSON | None) -> JSON:
    import json

    raw = ((service or {}).get("metadata", {}).get("annotations") or {}).get(STATUS)
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


STATUS_FIELD = ("f:metadata", "f:annotations", f"f:{STATUS}")


def trusted_status(service: JSON, records: list[JSON]) -> tuple[JSON, str]:
    """The status the wait may judge, and why it was set aside ("" when it
    was not). One last written by another field manager is an old status
    applied again (a manifest exported with `kubectl get -o yaml` in Git, a
    backup restored): the controller never trusts it (status_writes.read_state)
    and rebuilds, so neither does the wait, unless our own history agrees
    that its stable revision is the one serving and no rollout is in flight
    (the controller then rebuilds that same value, and its write of it, a
    no-op, leaves the field the other manager's)."""
    status = status_of(service)
    meta = service["metadata"]
    if not status or ours(field_managers(meta, STATUS_FIELD)):
        return status, ""
    latest = history.outcomes(records)
    serving = [r for r, o in latest.items() if o in ("promoted", "adopted")]
    stable = status.get("stable_revision")
    # In flight by our history too, not only by the status: an old export
    # (S stable, T failed, no canary) applied again while `canary retry`
    # rolled T out again agreed with "S serves", and its failed_revision
    # told CI 'rolled back' (exit 3) for the T then promoted.
    in_flight = bool(latest) and list(latest.values())[-1] == "progressing"
    if (
        stable
        and not status.get("canary_revision")
        and not in_flight
        and serving
        and serving[-1] == stable
    ):
        return status, ""
    return {}, (
        f"the status was last written by {field_manager(meta, STATUS_FIELD) or 'someone'}, "
        "not by the controller (an old status applied again?): waiting for the controller's"
    )


def waiting_request(service: JSON, status: JSON) -> str:
    """The canary.io/action on the Service when the controller has not taken
    it yet ("" when none): the status names the last it took. A pause the
    status owes to canary.io/paused alone (not `canary pause`, not a paused
    Deployment) that the annotation no longer asks for is a resume not taken
    yet: `kubectl annotate ... canary.io/paused=false && canary wait` read
    the status of the cycle before and exited 6 for a rollout nothing held."""
    annotations = service["metadata"].get("annotations") or {}
    asked = str(annotations.get(ACTION) or "").strip()
    taken = status.get("taken_actions")
    if asked == status.get("last_action") or (isinstance(taken, list) and asked in taken):
        asked = ""
    # Another request not taken (a `retry` for the rollout before) does not
    # move a paused rollout on: it masked the lifted pause, exit 6.
    verb = asked.split()[0].lower() if asked else ""
    if (
        verb not in ("resume", "promote", "abort", "undo")
        and status.get("phase") == "Paused"
        and not status.get("paused")
        and not status.get("source_paused")
        and _lifted(annotations.get(PAUSED))
    ):
        return f"resume ({PAUSED} lifted)"
    return asked


def _lifted(paused: object) -> bool:
    """canary.io/paused reads false (or is gone); one that does not parse
    holds nothing either, but says nothing the controller will act on."""
    try:
        return paused is None or boolean(paused) is False
    except ValueError:
        return False


def deployment_name(service: JSON) -> str:
    meta = service["metadata"]
    try:
        spec = parse(meta["name"], meta.get("annotations") or {})
    except SpecError:
        spec = None
    if spec is not None:
        return spec.deployment
    return str(status_of(service).get("deployment") or meta["name"])


async def source_revision(
    kube: Kube, namespace: str, deployment: JSON | None, strict: bool = True
) -> str | None:
    """The revision the controller computes for the Deployment: its template
    plus the content of every ConfigMap and Secret it reads. None when there
    is no Deployment, or (not strict) a config object cannot be read: a wait
    for a named release then goes by the status and history alone."""
    if deployment is None:
        return None
    template = clean_template(deployment.get("spec", {}).get("template", {}))
    found: dict[tuple[str, str], JSON] = {}
    for kind, name in sorted(set(config_refs(template))):
        resource = CONFIGMAPS if kind == "ConfigMap" else SECRETS
        try:
            found[(kind, name)] = await kube.get(resource.path(namespace, name))
        except NotFound:
            continue  # the controller leaves a missing one out of the hash too
        except KubeError as exc:
            if not strict:
                return None
            raise WaitError(
                f"cannot read {kind} {name} ({exc.status} {exc.reason}), which the "
                "Deployment reads and so is part of its revision: grant get on it, or "
                "name the release with --revision or --image"
            ) from exc
    source, _ = source_of(deployment, lambda kind, name: found.get((kind, name)))
    # Being deleted, it asks for nothing ("" read as a revision made every
    # release not started yet 'superseded' by "")
    return source.revision or None


def _known_revisions(status: JSON, records: list[JSON], source: str | None) -> set[str]:
    names = {
        str(status.get(k) or "")
        for k in ("stable_revision", "canary_revision", "failed_revision", "previous_revision")
    }
    names |= {str(r.get("revision") or "") for r in records}
    names.add(source or "")
    return names - {""}


def resolve(
    request: Request,
    status: JSON,
    records: list[JSON],
    source: str | None,
    source_images: tuple[str, ...],
) -> str | None:
    """The revision hash this wait is about; None while an --image is not
    in the Deployment (or in the rollout in flight) yet."""
    if request.revision:
        candidates = _known_revisions(status, records, source)
        known = sorted(r for r in candidates if matches(r, request.revision))
        if len(known) > 1:
            raise WaitError(
                f"{request.revision!r} matches revisions {', '.join(known)}; give more characters"
            )
        if known:
            return known[0]
        # A whole hash may name a release the controller has not seen yet;
        # a shortened one is only resolved once a revision it starts is known.
        return request.revision if len(request.revision) >= REVISION_LENGTH else None
    if request.image:
        if source and request.image in source_images:
            return source
        return _recent_with_image(request.image, status, records)
    return source


def _recent_with_image(image: str, status: JSON, records: list[JSON]) -> str | None:
    """The release with this image when the Deployment no longer (or not yet)
    runs it: the newest history entry with it, if that is in flight, serving,
    or newer than what serves now (a release superseded or rolled back since
    the last promotion). An older entry may be a previous release of the
    same image about to be applied again, so it is not taken for this one."""
    entry = next((r for r in reversed(records) if image in (r.get("images") or [])), None)
    if entry is None:
        return None
    revision = str(entry.get("revision") or "")
    if revision in (status.get("canary_revision"), status.get("stable_revision")):
        return revision
    serving = next(
        (r for r in reversed(records) if r.get("revision") == status.get("stable_revision")),
        None,
    )
    if serving is None or int(entry.get("number", 0)) > int(serving.get("number", 0)):
        return revision
    return None


async def wait(
    kube: Kube, request: Request, progress: Callable[[str], None] = lambda _: None
) -> Result:
    started = time.monotonic()
    changes: asyncio.Queue[Change] = asyncio.Queue()
    ns = request.namespace
    history_cm = _Follow(kube, CONFIGMAPS, ns, history.history_name(request.service), changes)
    service = _Follow(kube, SERVICES, ns, request.service, changes)
    seen: dict[str, JSON | None] = {}
    versions: dict[str, str] = {}
    # The history is read before the status, so it is never the newer of the two.
    seen["configmaps"], versions["configmaps"] = await history_cm.list()
    seen["services"], versions["services"] = await service.list()
    if seen["services"] is None:
        raise WaitError(f"Service {ns}/{request.service} not found; check the name and -n")
    name = deployment_name(seen["services"])
    deployment = _Follow(kube, DEPLOYMENTS, ns, name, changes)
    seen["deployments"], versions["deployments"] = await deployment.list()
    if request.revision is None and request.image is None and seen["deployments"] is None:
        raise WaitError(
            f"Deployment {ns}/{name} not found: nothing to wait for; give --revision or "
            "--image to wait for a release by name"
        )
    tasks = [
        asyncio.create_task(f.run(versions[f.kind])) for f in (history_cm, service, deployment)
    ]
    try:
        return await _Judge(kube, request, name, progress).until_settled(seen, changes, started)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _sooner(a: float | None, b: float | None) -> float | None:
    """The shorter of two waits (None: no limit)."""
    return b if a is None else a if b is None else min(a, b)


class _Judge:
    """Judges each version of the three objects as it comes."""

    def __init__(
        self, kube: Kube, request: Request, deployment: str, progress: Callable[[str], None]
    ) -> None:
        self.kube = kube
        self.request = request
        self.deployment = deployment
        self.progress = progress
        # Strict: the release is defined by the Deployment's revision, so it
        # must be computable; by name, an unreadable Secret only costs that.
        self.strict = request.revision is None and request.image is None
        self.target: str | None = None
        self.stale = 0
        self.asked = ""  # a request on the Service not taken yet (waiting_request)
        self.told: set[str] = set()  # what of the history was left out as unreadable

    async def asked_for(self, deployment: JSON | None) -> str | None:
        return await source_revision(self.kube, self.request.namespace, deployment, self.strict)

    async def until_settled(
        self, seen: dict[str, JSON | None], changes: asyncio.Queue[Change], started: float
    ) -> Result:
        source = await self.asked_for(seen["deployments"])
        said = ""
        status: JSON = {}
        gone_at: float | None = None  # `kubectl replace --force`, Argo CD's Replace=true
        while True:
            service = seen["services"]
            grace = None
            if service is None:
                # The controller keeps the rollout across a Service deleted and
                # created again within ORPHAN_GRACE_S: so does the wait.
                gone_at = gone_at or time.monotonic()
                grace = gone_at + ORPHAN_GRACE_S - time.monotonic()
                if grace <= 0:
                    raise WaitError(
                        f"Service {self.request.namespace}/{self.request.service} was deleted "
                        f"and not created again within {ORPHAN_GRACE_S:.0f}s"
                    )
            elif STRATEGY not in (service["metadata"].get("annotations") or {}):
                raise WaitError(
                    f"Service {self.request.namespace}/{self.request.service} is not (or no "
                    f"longer) managed: it has no {STRATEGY} annotation"
                )
            else:
                gone_at = None
                stored = history.load(seen["configmaps"])
                status, foreign = trusted_status(service, stored)
                records, skipped = history.read(stored, status)
                if foreign and foreign not in self.told:  # said once
                    self.told.add(foreign)
                    self.progress(foreign)
                for note in skipped:
                    if note not in self.told:  # each version is judged: said once
                        self.told.add(note)
                        self.progress(f"warning: {note}")
                self.asked = waiting_request(service, status)
                verdict, source = await self.judge(status, records, seen["deployments"], source)
                if isinstance(verdict, Settled):
                    waited = time.monotonic() - started
                    return Result(verdict, self.target or "", waited, status)
                if verdict.message != said:
                    said = verdict.message
                    self.progress(said)
            timeout = self.request.timeout_s
            remaining = None if timeout is None else timeout - (time.monotonic() - started)
            if remaining is not None and remaining <= 0:
                waited = time.monotonic() - started
                return _timed_out(self.request, self.target, said, waited, status)
            try:
                kind, obj = await asyncio.wait_for(changes.get(), _sooner(remaining, grace))
            except TimeoutError:
                continue  # the grace or the timeout, told above
            seen[kind] = obj
            if kind == "deployments":
                source = await self.asked_for(obj)

    async def judge(
        self, status: JSON, records: list[JSON], deployment: JSON | None, source: str | None
    ) -> tuple[Settled | Pending, str | None]:
        if self.target is None:
            template = (deployment or {}).get("spec", {}).get("template", {})
            self.target = resolve(
                self.request, status, records, source, images(clean_template(template))
            )
            if self.target is None:
                waiting = (
                    f"waiting for Deployment {self.deployment} to run {self.request.image}"
                    if self.request.image
                    else f"waiting for a revision starting with {self.request.revision}"
                )
                return Pending(waiting), source
            self.stale = stale_after(status, records, self.target, source or "")
        verdict = judge(self.target, status, records, source, self.stale, self.asked)
        if isinstance(verdict, Pending) and not involved(status, self.target):
            # Only here does what the Deployment asks for now matter, and its
            # config may have changed without a Deployment event.
            source = await self.asked_for(deployment)
            verdict = judge(self.target, status, records, source, self.stale, self.asked)
        return verdict, source


def _timed_out(
    request: Request, target: str | None, last: str, waited: float, status: JSON
) -> Result:
    what = (
        f"revision {target}"
        if target
        else f"a revision with image {request.image}"
        if request.image
        else f"a revision starting with {request.revision}"
    )
    return Result(
        Settled(Outcome.TIMED_OUT, f"timed out after {waited:.0f}s waiting for {what}: {last}"),
        target or "",
        waited,
        status,
    )
