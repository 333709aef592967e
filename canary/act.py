"""Carry out a Plan's actions against the API. Each action is idempotent,
so a cycle cut short by a crash is simply done again by the next one."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import socket
from collections.abc import Callable
from typing import Any

from canary.kube import Conflict, Kube, NotFound
from canary.kube.resources import CONFIGMAPS, DEPLOYMENTS, EVENTS, SECRETS, SERVICES
from canary.model import COLORS, JSON, Color, Emit
from canary.revisions import ConfigRef, copy_name
from canary.spec import REVISION_ANNOTATION, SERVICE_LABEL
from canary.twins import twin_deployment, twin_name

_INSTANCE = socket.gethostname()


class Actor:
    """The write side for one Service."""

    def __init__(
        self,
        kube: Kube,
        service: JSON,
        deployment: str,
        written: Callable[[JSON], None],
        cached: Callable[[str, str], JSON | None],
    ) -> None:
        self.kube = kube
        self.written = written  # told of every Service, Deployment and history we write
        # What the watch caches hold, by (kind, name) in this namespace: read
        # from there instead of a GET. A stale copy makes a replace fail with a
        # Conflict, and the next cycle retries with the fresh one.
        self.cached = cached
        self.service = service
        self.namespace: str = service["metadata"]["namespace"]
        self.name: str = service["metadata"]["name"]
        self.deployment = deployment

    async def apply_twin(
        self,
        color: Color,
        revision: str,
        replicas: int,
        source: JSON,
        template: JSON,
        config: dict[ConfigRef, JSON],
    ) -> None:
        """The twin at `revision`, after the per-revision copies of the config
        it reads (the template already points at them)."""
        for ref, obj in sorted(config.items()):
            await self._copy_config(ref, revision, obj)
        body = twin_deployment(source, self.name, color, revision, replicas, template)
        path = DEPLOYMENTS.path(self.namespace, body["metadata"]["name"])
        found = self.cached("Deployment", body["metadata"]["name"])
        if found is None:
            self.written(await self.kube.create(DEPLOYMENTS.path(self.namespace), body))
            return
        current = copy.deepcopy(found)
        # Replace spec and our metadata; keep what others added (labels, annotations).
        current["metadata"]["labels"] = {
            **(current["metadata"].get("labels") or {}),
            **body["metadata"]["labels"],
        }
        current["metadata"]["annotations"] = {
            **(current["metadata"].get("annotations") or {}),
            **body["metadata"]["annotations"],
        }
        current["metadata"]["ownerReferences"] = body["metadata"]["ownerReferences"]
        if current["spec"].get("selector") != body["spec"]["selector"]:
            # A selector is immutable; a twin made by someone else is replaced.
            await self.kube.delete(path)
            self.written(await self.kube.create(DEPLOYMENTS.path(self.namespace), body))
            return
        current["spec"] = body["spec"]
        self.written(await self.kube.replace(path, current))

    async def _copy_config(self, ref: ConfigRef, revision: str, obj: JSON) -> None:
        kind, name = ref
        if self.cached(kind, copy_name(name, revision)) is not None:
            return  # made before: its content is fixed by its name
        resource = CONFIGMAPS if kind == "ConfigMap" else SECRETS
        copy: JSON = {
            "metadata": {
                "name": copy_name(name, revision),
                "namespace": self.namespace,
                "labels": {SERVICE_LABEL: self.name},
                "annotations": {REVISION_ANNOTATION: revision, "canary.io/copy-of": name},
                "ownerReferences": [self._owner()],
            },
        }
        for key in ("data", "binaryData", "type", "immutable"):
            if key in obj:
                copy[key] = obj[key]
        # The copy's content is fixed by its name (the revision hash covers it).
        with contextlib.suppress(Conflict):
            await self.kube.create(resource.path(self.namespace), copy)

    async def collect_config_copies(self, keep: set[str]) -> None:
        """Delete copies made for revisions that are no longer kept."""
        for resource in (CONFIGMAPS, SECRETS):
            listing = await self.kube.get(
                resource.path(self.namespace), labelSelector=f"{SERVICE_LABEL}={self.name}"
            )
            for item in listing.get("items", []):
                revision = (item["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION)
                if revision and revision not in keep:
                    with contextlib.suppress(NotFound):
                        await self.kube.delete(
                            resource.path(self.namespace, item["metadata"]["name"])
                        )

    def _owner(self) -> JSON:
        meta = self.service["metadata"]
        return {"apiVersion": "v1", "kind": "Service", "name": meta["name"], "uid": meta["uid"]}

    async def scale_twin(self, color: Color, replicas: int) -> None:
        with contextlib.suppress(NotFound):
            self.written(
                await self.kube.patch(
                    DEPLOYMENTS.path(self.namespace, twin_name(self.deployment, color)),
                    {"spec": {"replicas": replicas}},
                )
            )

    async def scale_source(self, replicas: int) -> None:
        self.written(
            await self.kube.patch(
                DEPLOYMENTS.path(self.namespace, self.deployment), {"spec": {"replicas": replicas}}
            )
        )

    async def set_selector(self, live: dict[str, str], selector: dict[str, str]) -> None:
        # A merge patch removes keys only when told to with null.
        patch: dict[str, Any] = {**dict.fromkeys(live), **selector}
        self.written(
            await self.kube.patch(
                SERVICES.path(self.namespace, self.name), {"spec": {"selector": patch}}
            )
        )

    async def apply_preview(self, name: str, selector: dict[str, str]) -> None:
        path = SERVICES.path(self.namespace, name)
        current = self.cached("Service", name)
        if current is None:
            spec = self.service["spec"]
            created = await self.kube.create(
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
                        "ports": spec.get("ports", []),
                        "type": "ClusterIP",
                    },
                },
            )
            self.written(created)
            return
        live = dict(current["spec"].get("selector") or {})
        patch: dict[str, Any] = {**dict.fromkeys(live), **selector}
        self.written(await self.kube.patch(path, {"spec": {"selector": patch}}))

    async def delete_twins(self) -> None:
        for color in COLORS:
            with contextlib.suppress(NotFound):
                await self.kube.delete(
                    DEPLOYMENTS.path(self.namespace, twin_name(self.deployment, color))
                )
        await self.collect_config_copies(keep=set())

    async def emit(self, event: Emit) -> None:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        meta = self.service["metadata"]
        await self.kube.create(
            EVENTS.path(self.namespace),
            {
                "metadata": {"generateName": f"{self.name}.", "namespace": self.namespace},
                "involvedObject": {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "name": self.name,
                    "namespace": self.namespace,
                    "uid": meta["uid"],
                },
                "reason": event.reason,
                "message": event.message[:1024],
                "type": "Warning" if event.warning else "Normal",
                "source": {"component": "canary"},
                "reportingComponent": "canary",
                "reportingInstance": _INSTANCE,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            },
        )

    async def write_history(self, name: str, data: dict[str, str], exists: bool) -> None:
        path = CONFIGMAPS.path(self.namespace, name)
        if exists:
            self.written(await self.kube.patch(path, {"data": data}))
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
            self.written(await self.kube.create(CONFIGMAPS.path(self.namespace), body))
        except Conflict:
            self.written(await self.kube.patch(path, {"data": data}))

    async def write_status(self, status: str | None) -> JSON:
        written = await self.kube.patch(
            SERVICES.path(self.namespace, self.name),
            {"metadata": {"annotations": {"canary.io/status": status}}},
        )
        self.written(written)
        return written
