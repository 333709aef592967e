"""Annotations that parse but name something this Service must not take
over: checked against what the cluster holds, before anything is decided.
A refused spec is an InvalidSpec like any other (a Warning naming the
annotation and the fix; traffic left as it is). Pure."""

from __future__ import annotations

from typing import Any

from canary.revisions import TRACKING, TRACKING_VALUES
from canary.spec import (
    PREFIX,
    STRATEGY,
    RolloutSpec,
    SpecError,
    Strategy,
    managed_by_annotations,
)
from canary.twins import owned_by, team_selector

JSON = dict[str, Any]


def check_against_cluster(
    spec: RolloutSpec | SpecError | None,
    service: JSON,
    managed_deployment: str | None,
    preview: JSON | None,
    configs: tuple[JSON, ...] = (),
) -> RolloutSpec | SpecError | None:
    """`managed_deployment`: the Deployment the status says this Service
    manages (None before adoption); `preview`: the Service the spec names
    as its blue-green preview, as the cache holds it (None: not there);
    `configs`: the ConfigMaps and Secrets its Deployment reads."""
    if not isinstance(spec, RolloutSpec):
        return spec
    name = service["metadata"]["name"]
    for obj in configs:
        value = ((obj.get("metadata") or {}).get("annotations") or {}).get(TRACKING)
        if value is not None and value not in TRACKING_VALUES:
            # Taken as "enabled" it would copy what the team meant to be read
            # live; as "disabled", release unanalysed what it meant to track.
            meta = obj["metadata"]
            return SpecError(
                TRACKING,
                f"{obj.get('kind', 'ConfigMap')} {meta.get('name')} has {value!r}; "
                f"set {' or '.join(TRACKING_VALUES)} (disabled: its changes reach every "
                "pod at once, without a rollout), or remove it",
            )
    if managed_deployment and spec.deployment != managed_deployment:
        # Taking the new one over as if adopted would scale it to 0 under
        # whatever serves it, and leave the old one claimed and gated at 0.
        return SpecError(
            PREFIX + "deployment",
            f"this Service manages Deployment {managed_deployment}; to move it to "
            f"{spec.deployment}, remove {STRATEGY} first (that hands {managed_deployment} "
            "back at full size), then annotate again; or set it back",
        )
    if spec.strategy is not Strategy.BLUE_GREEN:
        return spec  # no preview: whatever Service bears the default name is not ours to judge
    if spec.preview_service == name:
        return SpecError(
            PREFIX + "preview-service",
            "names this Service itself; name another (default <service>-preview)",
        )
    if preview is not None:
        base = team_selector(dict(service["spec"].get("selector") or {}))
        why = _not_a_preview(preview, base, str(service["metadata"].get("uid", "")))
        if why:
            return SpecError(
                PREFIX + "preview-service",
                f"Service {spec.preview_service} {why}; its selector would be replaced. "
                "Name a Service that does not exist yet (it is created) or one for this app",
            )
    return spec


def _not_a_preview(preview: JSON, base: dict[str, str], uid: str) -> str:
    """Why this Service must not be used as the preview; "" when it may: one
    this Service created (it owns it), or one for the same app's pods."""
    meta = preview["metadata"]
    if owned_by(preview, uid):
        return ""
    annotations = meta.get("annotations") or {}
    if managed_by_annotations(annotations):
        return "is managed by canary itself"
    selector = dict(preview["spec"].get("selector") or {})
    if any(selector.get(k) != v for k, v in base.items()):
        return f"selects other pods ({_labels(selector) or 'no selector'})"
    return ""


def _labels(selector: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
