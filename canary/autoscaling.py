"""A team's HorizontalPodAutoscaler, followed onto the twins (pure).

The team's HPA targets its own Deployment, which the controller keeps at 0
(an HPA whose target has 0 replicas stops scaling, so it goes idle rather
than fight us). The stable twin gets an equivalent HPA instead: the same
metrics, bounds and behaviour, named after the twin and labelled and owned
like the other copies; the team keeps editing its own, and the copy follows.

Only metrics that are measured per pod of the target can be moved to a twin
(Resource, ContainerResource, Pods): an Object or External metric describes
the whole app's load, whichever twin serves it, and an HPA on something
other than the source Deployment is none of ours. Those are refused with the
reason, and the rollout goes on at a fixed size.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass

from canary.model import JSON, Color
from canary.spec import SERVICE_LABEL, TWIN_LABEL

SUPPORTED_METRICS = ("Resource", "ContainerResource", "Pods")
COPY_OF = "canary.io/copy-of"


@dataclass(frozen=True, slots=True)
class Refused:
    """A team HPA the controller cannot follow, and why (for a Warning Event)."""

    name: str
    reason: str


def _ref(hpa: JSON) -> JSON:
    return dict(hpa.get("spec", {}).get("scaleTargetRef") or {})


def is_mirror(hpa: JSON) -> bool:
    return SERVICE_LABEL in (hpa.get("metadata", {}).get("labels") or {})


def targeting(hpas: Iterable[JSON], deployment: str) -> list[JSON]:
    """The team's HPAs that name the source (by name: a kind mismatch is
    refused by check(), not silently ignored); never our own copies."""
    return sorted(
        (h for h in hpas if not is_mirror(h) and _ref(h).get("name") == deployment),
        key=lambda h: str(h["metadata"]["name"]),
    )


def check(found: list[JSON]) -> Refused | None:
    """Why the HPAs that target the source cannot be followed, if they cannot."""
    if not found:
        return None
    names = [str(h["metadata"]["name"]) for h in found]
    if len(found) > 1:
        return Refused(
            names[0], f"{len(found)} HPAs target the same Deployment: {', '.join(names)}"
        )
    hpa, name = found[0], names[0]
    ref = _ref(hpa)
    if ref.get("kind") != "Deployment" or not str(ref.get("apiVersion", "")).startswith("apps/"):
        return Refused(
            name,
            f"its scaleTargetRef is a {ref.get('apiVersion')} {ref.get('kind')}, not a Deployment",
        )
    for index, metric in enumerate(hpa.get("spec", {}).get("metrics") or []):
        kind = metric.get("type")
        if kind not in SUPPORTED_METRICS:
            return Refused(
                name,
                f"metric {index + 1} is of type {kind}: it does not depend on which twin serves; "
                f"only {', '.join(SUPPORTED_METRICS)} metrics can follow the stable twin",
            )
    return None


def mirror(hpa: JSON, twin: str, color: Color, service: JSON) -> JSON:
    """The stable twin's HPA: the team's spec, aimed at the twin."""
    meta = service["metadata"]
    spec = copy.deepcopy(hpa["spec"])
    spec["scaleTargetRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": twin}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": twin,
            "namespace": meta["namespace"],
            "labels": {SERVICE_LABEL: meta["name"], TWIN_LABEL: color},
            "annotations": {COPY_OF: hpa["metadata"]["name"]},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Service", "name": meta["name"], "uid": meta["uid"]}
            ],
        },
        "spec": spec,
    }


def differs(live: JSON | None, wanted: JSON) -> bool:
    """Whether the live copy must be written: missing, or its spec, target or
    our labels changed (someone edited the copy, or the team its HPA)."""
    if live is None:
        return True
    labels = live.get("metadata", {}).get("labels") or {}
    ours = wanted["metadata"]["labels"]
    return live.get("spec") != wanted["spec"] or any(labels.get(k) != v for k, v in ours.items())


def serving_size(recorded: int, stable_live: int | None) -> int:
    """The stable twin's size that a canary step is weighed against: its live
    replicas while an HPA drives it (so the canary follows the autoscaled
    size at the step's weight), else the recorded size."""
    return stable_live if stable_live is not None and stable_live > 0 else recorded


def handback_size(served: int, hpa: JSON | None) -> int:
    """The source's size when the Service is released: never smaller than
    what served (nor than the team HPA's minimum); the team's HPA takes over
    from there, down to its own bounds if it must."""
    low = int((hpa or {}).get("spec", {}).get("minReplicas") or 1)
    return max(served, low)
