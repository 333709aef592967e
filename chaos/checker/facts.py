"""The checker's own reading of raw API objects. Pure: dicts in, values out.

These deliberately re-derive what they need from the documented API shapes
(EndpointSlice conditions, owner references, the documented annotations)
instead of reusing the controller's helpers.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]

# The documented contract of the product (README "Annotations", "State and history").
STRATEGY = "canary.io/strategy"
STATUS = "canary.io/status"
HISTORY_SUFFIX = "-canary-history"
HISTORY_KEY = "history.json"

# What the soak's fleet stamps on every pod template it releases.
RELEASE = "chaos.canary.io/release"  # the fleet's release id, unique per release (r0 = original)
EDITED = "chaos.canary.io/edited"  # added by the fault injector's hand edit of a twin
ERROR_RATE = "sandbox.canary.io/error-rate"  # the simulator's share of 500s for the pod

# Outcomes after which an entry of the history must never change again.
TERMINAL = frozenset({"promoted", "rolled-back", "aborted", "superseded", "adopted"})
# Phases in which the status claims that the stable twin serves the Service.
SERVING_PHASES = frozenset(
    {"Healthy", "Progressing", "Promoting", "Paused", "Halted", "RolledBack"}
)
# Phases that claim, in addition, that nothing is being tried: the stable
# revision alone should be serving.
STEADY_PHASES = frozenset({"Healthy", "RolledBack"})


@dataclass(frozen=True, slots=True, order=True)
class Fingerprint:
    """What a pod actually runs, as far as the soak can tell: the release the
    fleet stamped, a hand edit, and whether it serves errors."""

    release: str
    edited: str = ""
    error_rate: float = 0.0

    def __str__(self) -> str:
        text = self.release
        if self.edited:
            text += f"+hand-edit:{self.edited}"
        if self.error_rate > 0:
            text += f" (error-rate {self.error_rate:g})"
        return text


def _annotations(meta: JSON | None) -> dict[str, str]:
    found = (meta or {}).get("annotations")
    return dict(found) if isinstance(found, dict) else {}


def fingerprint_of(annotations: Mapping[str, str]) -> Fingerprint | None:
    """None for a pod or template the fleet did not stamp (not ours to judge)."""
    release = annotations.get(RELEASE)
    if not release:
        return None
    try:
        error_rate = float(annotations.get(ERROR_RATE, "0") or 0)
    except ValueError:
        error_rate = 0.0
    return Fingerprint(str(release), str(annotations.get(EDITED, "")), error_rate)


def pod_fingerprint(pod: JSON) -> Fingerprint | None:
    return fingerprint_of(_annotations(pod.get("metadata")))


def template_fingerprint(template: JSON | None) -> Fingerprint | None:
    if not isinstance(template, dict):
        return None
    return fingerprint_of(_annotations(template.get("metadata")))


def is_managed(service: JSON) -> bool:
    return STRATEGY in _annotations(service.get("metadata"))


def status_claims(service: JSON) -> JSON | None:
    """The controller's canary.io/status, or None when absent or unreadable."""
    raw = _annotations(service.get("metadata")).get(STATUS)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def carried_start(status: JSON | None) -> frozenset[str]:
    """The rollout in flight whose start the status carries, not yet in the
    history ConfigMap (the controller writes it there with a later write):
    its revision, when the status names it as the canary's."""
    if not status:
        return frozenset()
    flight = str(status.get("canary_revision") or "")
    items = status.get("record")
    started = {
        str(item.get("revision"))
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, dict) and "start" in item
    }
    return frozenset({flight} & started) if flight else frozenset()


def uid(obj: JSON) -> str:
    return str((obj.get("metadata") or {}).get("uid", ""))


def ready_pods(slices: Iterable[JSON], service_uid: str) -> frozenset[str]:
    """Pods the Service's EndpointSlices list as ready.

    Only slices owned by this incarnation of the Service count (a Service
    deleted and recreated under the same name leaves slices of the old one for
    the garbage collector). `ready` absent means "unknown, treat as ready"
    (discovery.k8s.io/v1 API documentation); only Pod targets count, each once
    (a pod may sit in two slices while the EndpointSlice controller moves it).
    """
    pods: set[str] = set()
    for eps in slices:
        owners = (eps.get("metadata") or {}).get("ownerReferences") or []
        if owners and service_uid and all(o.get("uid") != service_uid for o in owners):
            continue
        for endpoint in eps.get("endpoints") or []:
            ref = endpoint.get("targetRef") or {}
            if ref.get("kind") != "Pod":
                continue
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            pods.add(str(ref.get("name", "")))
    return frozenset(pods)


def history_entries(configmap: JSON) -> list[JSON] | None:
    """The revision records of a history ConfigMap; None when unreadable."""
    text = (configmap.get("data") or {}).get(HISTORY_KEY)
    if text is None:
        return []
    try:
        records = json.loads(text)
    except ValueError:
        return None
    if not isinstance(records, list):
        return None
    return [r for r in records if isinstance(r, dict)]


def service_of_history(name: str) -> str | None:
    return name[: -len(HISTORY_SUFFIX)] if name.endswith(HISTORY_SUFFIX) else None


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def content_key(kind: str, obj: JSON) -> str:
    """What a write to the object changes, less what only its own controllers
    write (Deployment and Service status, managedFields, resourceVersion):
    two writes with the same key wrote the same thing."""
    meta = obj.get("metadata") or {}
    base = {"labels": meta.get("labels"), "annotations": meta.get("annotations")}
    if kind == "ConfigMap":
        return _digest({**base, "data": obj.get("data"), "binaryData": obj.get("binaryData")})
    spec = obj.get("spec") or {}
    if kind == "Service":
        return _digest({**base, "selector": spec.get("selector"), "ports": spec.get("ports")})
    return _digest({**base, "spec": spec})


def describe(kind: str, obj: JSON) -> str:
    """One line about a write, for a write-loop's evidence: who wrote last and
    the fields that fights are usually about."""
    meta = obj.get("metadata") or {}
    entries = [e for e in meta.get("managedFields") or [] if isinstance(e, dict)]
    latest = max(entries, key=lambda e: str(e.get("time", "")), default={})
    who = f"{latest.get('manager', '?')}/{latest.get('operation', '?')}"
    spec = obj.get("spec") or {}
    annotations = meta.get("annotations") or {}
    if kind == "Deployment":
        what = (
            f"replicas={spec.get('replicas')} revision={annotations.get('canary.io/revision', '')}"
            f" template={_digest(spec.get('template'))[:6]}"
        )
    elif kind == "Service":
        claims = status_claims(obj) or {}
        what = f"selector={spec.get('selector')} phase={claims.get('phase', '')}"
    else:
        what = f"data={_digest(obj.get('data'))[:6]}"
    return f"rv {meta.get('resourceVersion')} by {who}: {what}"


_POD_MATCHER = re.compile(r'pod=~"((?:[^"\\]|\\.)*)"')
_NAMESPACE_MATCHER = re.compile(r'namespace="((?:[^"\\]|\\.)*)"')


def queried_pods(query: str) -> tuple[str, str] | None:
    """(namespace, pod regex) a decision record's query selected, as sent:
    the last pod matcher, the one every builtin reads its series with (one
    counting a step's new pods' first samples names those pods first)."""
    pods = _POD_MATCHER.findall(query)
    namespace = _NAMESPACE_MATCHER.search(query)
    if not pods or namespace is None:
        return None
    return namespace.group(1), pods[-1]


def selects(selector: Mapping[str, str] | None, pod: JSON) -> bool:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in (selector or {}).items())


def pod_ready(pod: JSON) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def starting(pod: JSON) -> bool:
    """Created, not being deleted, not ready yet: on its way."""
    return not (pod.get("metadata") or {}).get("deletionTimestamp") and not pod_ready(pod)


def deployment_ready(deployment: JSON | None) -> int:
    if deployment is None:
        return 0
    return int((deployment.get("status") or {}).get("readyReplicas") or 0)
