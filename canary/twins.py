"""The twin Deployments and the Service selectors that split traffic."""

from __future__ import annotations

import copy

from canary.model import JSON, Color
from canary.spec import REVISION_ANNOTATION, SERVICE_LABEL, TWIN_LABEL

OWNED_SELECTOR_KEYS = (TWIN_LABEL, SERVICE_LABEL)


def twin_name(deployment: str, color: Color) -> str:
    return f"{deployment}-{color}"


def base_selector(live: dict[str, str]) -> dict[str, str]:
    """The team's own selector: the live one less the keys we add. Deriving it
    (instead of storing it) lets a team that re-applies its Service change it."""
    return {k: v for k, v in live.items() if k not in OWNED_SELECTOR_KEYS}


def only(base: dict[str, str], color: Color) -> dict[str, str]:
    return {**base, TWIN_LABEL: color}


def both(base: dict[str, str], service: str) -> dict[str, str]:
    """Both twins and never the source Deployment's pods."""
    return {**base, SERVICE_LABEL: service}


def canary_replicas(stable: int, weight: int) -> int:
    """Canary pods for `weight` percent with the stable twin kept at `stable`;
    at least one, so every step really sends the canary traffic."""
    if weight >= 100:
        return stable
    return max(1, round(stable * weight / (100 - weight)))


def effective_weight(canary_endpoints: int, stable_endpoints: int) -> float:
    total = canary_endpoints + stable_endpoints
    return 0.0 if total == 0 else round(100.0 * canary_endpoints / total, 1)


def twin_template(template: JSON, service: str, color: Color) -> JSON:
    result = copy.deepcopy(template)
    meta = result.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), TWIN_LABEL: color, SERVICE_LABEL: service}
    return result


def twin_deployment(
    source: JSON, service: str, color: Color, revision: str, replicas: int, template: JSON
) -> JSON:
    """A twin from the source Deployment: same pod template (plus our two
    labels), its own selector, owned by the source so deleting the app
    deletes its twins."""
    meta = source["metadata"]
    match = dict((source["spec"].get("selector") or {}).get("matchLabels") or {})
    labels = {TWIN_LABEL: color, SERVICE_LABEL: service}
    spec = {
        key: value
        for key, value in source["spec"].items()
        if key in ("minReadySeconds", "revisionHistoryLimit", "strategy")
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": twin_name(meta["name"], color),
            "namespace": meta["namespace"],
            "labels": {**(meta.get("labels") or {}), **labels},
            "annotations": {REVISION_ANNOTATION: revision},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": meta["name"],
                    "uid": meta["uid"],
                }
            ],
        },
        "spec": {
            **spec,
            "replicas": replicas,
            "selector": {"matchLabels": {**match, **labels}},
            "template": twin_template(template, service, color),
        },
    }
