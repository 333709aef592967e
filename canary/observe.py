"""Build an Observed from the informers' raw objects. Pure: dicts in, values out."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable

from canary.model import COLORS, JSON, Color, Observed, Source, Twin
from canary.revisions import (
    ConfigRef,
    clean_template,
    config_hash,
    config_refs,
    images,
    revision_of,
    with_config_copies,
)
from canary.spec import ACTION, REVISION_ANNOTATION
from canary.twins import twin_name

Lookup = Callable[[str, str], JSON | None]  # (kind, name) -> object in the Service's namespace


def source_of(deployment: JSON | None, lookup: Lookup) -> tuple[Source, set[ConfigRef]]:
    """The source Deployment as a Source, and the config objects it reads
    that exist (a missing one is left for the Deployment controller to report)."""
    if deployment is None:
        return Source(), set()
    spec = deployment.get("spec", {})
    template = clean_template(spec.get("template", {}))
    refs: set[ConfigRef] = set()
    hashes: dict[str, str] = {}
    for kind, name in sorted(set(config_refs(template))):
        obj = lookup(kind, name)
        if obj is None:
            continue
        refs.add((kind, name))
        hashes[f"{kind}/{name}"] = config_hash(config_data(obj))
    revision = revision_of(template, hashes)
    status = deployment.get("status", {})
    return (
        Source(
            exists=True,
            revision=revision,
            replicas=int(spec.get("replicas", 1)),
            ready=int(status.get("readyReplicas", 0)),
            template=with_config_copies(template, revision, refs),
            images=images(template),
            config=hashes,
        ),
        refs,
    )


def config_data(obj: JSON) -> dict[str, str]:
    """A ConfigMap's or Secret's content as one comparable mapping."""
    data = dict(obj.get("data") or {})
    for key, value in (obj.get("binaryData") or {}).items():
        data[f"binary:{key}"] = value
    for key, value in (obj.get("stringData") or {}).items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    return data


def twin_of(deployment: JSON | None, endpoints: int) -> Twin:
    if deployment is None:
        return Twin(endpoints=endpoints)
    meta, spec, status = deployment["metadata"], deployment["spec"], deployment.get("status", {})
    replicas = int(spec.get("replicas", 1))
    observed = int(meta.get("generation", 0)) <= int(status.get("observedGeneration", 0))
    updated = int(status.get("updatedReplicas", 0))
    # Pods of an earlier template still around (the twin was re-templated):
    # until they are gone, readyReplicas may count them, so we count none.
    clean = observed and int(status.get("replicas", 0)) == updated
    return Twin(
        exists=True,
        revision=(meta.get("annotations") or {}).get(REVISION_ANNOTATION, ""),
        replicas=replicas,
        ready=int(status.get("readyReplicas", 0)) if clean else 0,
        updated=clean and updated >= replicas,
        endpoints=endpoints,
    )


def ready_endpoints(slices: Iterable[JSON]) -> list[str]:
    """Names of the pods that EndpointSlices list as ready."""
    pods = []
    for eps in slices:
        for endpoint in eps.get("endpoints") or []:
            ref = endpoint.get("targetRef") or {}
            if ref.get("kind") == "Pod" and (endpoint.get("conditions") or {}).get("ready", True):
                pods.append(str(ref.get("name", "")))
    return pods


def count_twin(pods: Iterable[str], deployment: str, color: Color) -> int:
    prefix = twin_name(deployment, color) + "-"
    return sum(1 for pod in pods if pod.startswith(prefix))


def observe(
    service: JSON,
    deployment_name: str,
    deployments: Lookup,
    slices: Callable[[str], list[JSON]],
    config: Lookup,
    preview_name: str,
) -> tuple[Observed, set[ConfigRef]]:
    meta = service["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    source, refs = source_of(deployments("Deployment", deployment_name), config)
    live = ready_endpoints(slices(name))
    twins = {
        color: twin_of(
            deployments("Deployment", twin_name(deployment_name, color)),
            count_twin(live, deployment_name, color),
        )
        for color in COLORS
    }
    preview = config("Service", preview_name)
    preview_selector = None if preview is None else dict(preview["spec"].get("selector") or {})
    annotations = meta.get("annotations") or {}
    return (
        Observed(
            namespace=namespace,
            service=name,
            deployment=deployment_name,
            selector=dict(service.get("spec", {}).get("selector") or {}),
            source=source,
            twins=twins,
            preview_endpoints=len(ready_endpoints(slices(preview_name))) if preview else 0,
            preview_selector=preview_selector,
            action=str(annotations.get(ACTION, "")).strip(),
            action_by=action_author(meta),
        ),
        refs,
    )


def action_author(meta: JSON) -> str:
    """Who last wrote canary.io/action, from managedFields: the field
    manager's name (`canary-cli:alice`, `kubectl-annotate`, ...)."""
    wanted = f"f:{ACTION}"
    for entry in reversed(meta.get("managedFields") or []):
        annotations = ((entry.get("fieldsV1") or {}).get("f:metadata") or {}).get("f:annotations")
        if isinstance(annotations, dict) and wanted in annotations:
            return f"{entry.get('manager', 'unknown')} at {entry.get('time', '?')}"
    return ""
