"""What makes a revision: the pod template plus the content of every
ConfigMap and Secret it reads. Pure functions over plain JSON."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

from canary.model import JSON
from canary.spec import HOLD_GATE

ConfigRef = tuple[str, str]  # ("ConfigMap" | "Secret", name)


def _digest(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def config_hash(data: Mapping[str, Any]) -> str:
    """A short hash of a ConfigMap's or Secret's data."""
    return _digest(data)[:10]


def revision_of(template: JSON, config: Mapping[str, str]) -> str:
    """The revision hash: template (less controller-owned fields) + config hashes.

    A restart (`kubectl rollout restart`) changes restartedAt and so is a new
    revision, as it is for a Deployment; we keep it in the hash on purpose."""
    return _digest({"template": template, "config": dict(sorted(config.items()))})[:10]


def config_refs(template: JSON) -> Iterator[ConfigRef]:
    """Every ConfigMap and Secret the pod template reads: env, envFrom,
    volumes and projected volumes."""
    spec = template.get("spec", {})
    containers = [*spec.get("containers", []), *spec.get("initContainers", [])]
    for container in containers:
        for env in container.get("env") or []:
            source = env.get("valueFrom") or {}
            if "configMapKeyRef" in source:
                yield ("ConfigMap", source["configMapKeyRef"]["name"])
            if "secretKeyRef" in source:
                yield ("Secret", source["secretKeyRef"]["name"])
        for env_from in container.get("envFrom") or []:
            if "configMapRef" in env_from:
                yield ("ConfigMap", env_from["configMapRef"]["name"])
            if "secretRef" in env_from:
                yield ("Secret", env_from["secretRef"]["name"])
    for volume in spec.get("volumes") or []:
        if "configMap" in volume:
            yield ("ConfigMap", volume["configMap"]["name"])
        if "secret" in volume:
            yield ("Secret", volume["secret"]["secretName"])
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "configMap" in source:
                yield ("ConfigMap", source["configMap"]["name"])
            if "secret" in source:
                yield ("Secret", source["secret"]["name"])


def copy_name(name: str, revision: str) -> str:
    """The per-revision copy a twin reads: `<name>-<revision>`."""
    return f"{name[: 253 - len(revision) - 1]}-{revision}"


# On a ConfigMap or Secret: `disabled` keeps it out of revisions. Its changes
# then reach every pod at once, without a rollout (the kubelet updates mounted
# files; env is read at start), as they would without canary: for a Secret an
# operator rotates faster than a rollout ends (short-lived credentials, which
# a frozen per-revision copy would let expire on the serving pods).
TRACKING = "canary.io/config-tracking"
TRACKING_VALUES = ("enabled", "disabled")


def tracked(obj: JSON) -> bool:
    """Whether changes to this ConfigMap or Secret are releases (the default)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return annotations.get(TRACKING) != "disabled"


def with_config_copies(
    template: JSON,
    revision: str,
    refs: set[ConfigRef],
    live: frozenset[ConfigRef] | set[ConfigRef] = frozenset(),
) -> JSON:
    """The template with every reference in `refs` renamed to its copy for
    `revision`, so each twin keeps reading the config it was released with.
    An `optional` one that does not exist is renamed too (to a copy that
    does not exist either): else, once the team creates it, the kubelet
    would hand it to the running stable pods before any rollout analysed it
    (creating it is a new revision, which goes out with its copy). Those in
    `live` (tracking disabled) keep their own name."""
    result = copy.deepcopy(template)
    spec = result.get("spec", {})

    def rename(kind: str, holder: dict[str, Any], key: str) -> None:
        if (kind, holder.get(key)) in live:
            return
        if (kind, holder.get(key)) in refs or holder.get("optional") is True:
            holder[key] = copy_name(holder[key], revision)

    for container in [*spec.get("containers", []), *spec.get("initContainers", [])]:
        for env in container.get("env") or []:
            source = env.get("valueFrom") or {}
            if "configMapKeyRef" in source:
                rename("ConfigMap", source["configMapKeyRef"], "name")
            if "secretKeyRef" in source:
                rename("Secret", source["secretKeyRef"], "name")
        for env_from in container.get("envFrom") or []:
            if "configMapRef" in env_from:
                rename("ConfigMap", env_from["configMapRef"], "name")
            if "secretRef" in env_from:
                rename("Secret", env_from["secretRef"], "name")
    for volume in spec.get("volumes") or []:
        if "configMap" in volume:
            rename("ConfigMap", volume["configMap"], "name")
        if "secret" in volume:
            rename("Secret", volume["secret"], "secretName")
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "configMap" in source:
                rename("ConfigMap", source["configMap"], "name")
            if "secret" in source:
                rename("Secret", source["secret"], "name")
    return result


def images(template: JSON) -> tuple[str, ...]:
    spec = template.get("spec", {})
    return tuple(str(c.get("image", "")) for c in spec.get("containers", []))


def clean_template(template: JSON) -> JSON:
    """The team's template without what the API server defaults or
    controllers stamp (and without our hold gate), so the hash only moves
    when the team changes it."""
    result = copy.deepcopy(template)
    meta = result.setdefault("metadata", {})
    meta.pop("creationTimestamp", None)
    labels = meta.get("labels") or {}
    labels.pop("pod-template-hash", None)
    spec = result.get("spec") or {}
    if "schedulingGates" in spec:
        gates = [g for g in spec["schedulingGates"] or [] if g.get("name") != HOLD_GATE]
        if gates:
            spec["schedulingGates"] = gates
        else:
            del spec["schedulingGates"]
    return result


def gated(template: JSON) -> bool:
    """The pod template carries our hold gate."""
    gates = (template.get("spec") or {}).get("schedulingGates") or []
    return any(g.get("name") == HOLD_GATE for g in gates)
