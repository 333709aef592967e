"""The on-call commands: read status and history, request actions. Actions
are the same canary.io/action annotation a person can set with kubectl, so
there is one mechanism; the CLI only names itself as the field manager, so
the record says who asked."""

from __future__ import annotations

import datetime as dt
import getpass
import json
from typing import Any

from canary import history, release_outcome, render
from canary.changes import changes
from canary.kube import Kube, KubeError, NotFound
from canary.kube.resources import CONFIGMAPS, SERVICES
from canary.spec import ACTION, STATUS, STRATEGY


class UserError(Exception):
    """Something the person at the keyboard can fix; the message says how."""


def _status(service: dict[str, Any]) -> dict[str, Any]:
    raw = (service["metadata"].get("annotations") or {}).get(STATUS)
    try:
        return dict(json.loads(raw)) if raw else {}
    except ValueError:
        return {}


async def _service(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    try:
        service = await kube.get(SERVICES.path(namespace, name))
    except NotFound:
        raise UserError(f"Service {namespace}/{name} not found; check the name and -n") from None
    if STRATEGY not in (service["metadata"].get("annotations") or {}):
        raise UserError(
            f"Service {namespace}/{name} is not managed: annotate it with {STRATEGY}=canary "
            "or blue-green"
        )
    return service


async def status(kube: Kube, namespace: str | None, name: str | None) -> list[dict[str, Any]]:
    if name:
        service = await _service(kube, namespace or "default", name)
        services = [service]
    else:
        listing = await kube.get(SERVICES.path(namespace))
        services = [
            s
            for s in listing.get("items", [])
            if STRATEGY in (s["metadata"].get("annotations") or {})
        ]
    items = []
    for s in services:
        item = {"namespace": s["metadata"]["namespace"], "service": s["metadata"]["name"]}
        item.update(_status(s))
        if item.get("failed_revision"):
            item["rolled_back"] = await _why(kube, item)
        items.append(item)
    return items


async def _why(kube: Kube, item: dict[str, Any]) -> dict[str, Any]:
    """Why the revision held back was rolled back (or aborted): the reason
    and the failing measurements, from its history entry."""
    revision = str(item["failed_revision"])
    why: dict[str, Any] = {"revision": revision}
    try:
        configmap = await kube.get(
            CONFIGMAPS.path(item["namespace"], history.history_name(item["service"]))
        )
    except KubeError:  # no history yet, or no permission to read it: the status still shows
        return why
    record = release_outcome.newest(history.load(configmap), revision)
    if record is not None:
        why.update({k: record.get(k) for k in ("number", "outcome", "reason", "ended")})
        why["failing"] = list(release_outcome.failing(record))
    return why


def status_text(items: list[dict[str, Any]], color: bool) -> str:
    rows = render.status_rows([(i["namespace"], i["service"], i) for i in items])
    return render.table(render.STATUS_HEADERS, rows, color)


async def revisions(kube: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    await _service(kube, namespace, name)
    try:
        configmap = await kube.get(CONFIGMAPS.path(namespace, history.history_name(name)))
    except NotFound:
        return []
    return history.load(configmap)


def history_text(records: list[dict[str, Any]], color: bool) -> str:
    return render.table(render.HISTORY_HEADERS, render.history_rows(records), color)


def timeline_text(records: list[dict[str, Any]], number: int | None, color: bool) -> str:
    if not records:
        return "no revisions recorded yet"
    shown = changes(records)
    if number is None:
        return render.timeline(records[-1], color, shown[-1])
    for record, change in zip(records, shown, strict=True):
        if record.get("number") == number:
            return render.timeline(record, color, change)
    raise UserError(f"no revision #{number}; `canary history` lists them")


async def request(
    kube: Kube,
    namespace: str,
    name: str,
    verb: str,
    to: int | None,
    manager: str | None = None,
) -> str:
    """Set canary.io/action. The timestamp makes each request a new value, so
    asking twice acts twice; the field manager (default `canary-cli-<user>`)
    records who asked."""
    await _service(kube, namespace, name)
    if verb == "undo" and to is None:
        raise UserError("undo needs --to N; `canary history` lists the revision numbers")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    value = f"{verb} {to} {stamp}" if verb == "undo" else f"{verb} {stamp}"
    await kube.patch(
        SERVICES.path(namespace, name),
        {"metadata": {"annotations": {ACTION: value}}},
        fieldManager=(manager or f"canary-cli-{getpass.getuser()}")[:128],
    )
    return value
