"""Build an Observed from the informers' raw objects. Pure: dicts in, values out."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace

from canary.model import COLORS, JSON, Claim, Color, Observed, Restarted, Source, Twin
from canary.revisions import (
    ConfigRef,
    clean_template,
    config_hash,
    config_refs,
    gated,
    images,
    revision_of,
    tracked,
    with_config_copies,
)
from canary.spec import (
    ACTION,
    CLAIM_REPLICAS,
    CLAIM_STABLE,
    FIELD_MANAGER,
    HANDBACK_ANNOTATION,
    MANAGED_BY,
    PUT_BACK_ANNOTATION,
    REVISION_ANNOTATION,
    REVISION_LABEL,
    SERVICE_LABEL,
    STRATEGY,
    TEMPLATE_ANNOTATION,
    TWIN_LABEL,
)
from canary.twins import (
    OWNED_POD_LABELS,
    RESTARTED_AT,
    of_deployment,
    owned_by,
    preview_ports_stale,
    source_template,
    template_digest,
    twin_name,
)

Lookup = Callable[[str, str], JSON | None]  # (kind, name) -> object in the Service's namespace


def source_of(deployment: JSON | None, lookup: Lookup) -> tuple[Source, set[ConfigRef]]:
    """The source Deployment as a Source, and the config objects it reads
    that exist (a missing one is left for the Deployment controller to report)."""
    if deployment is None or deployment["metadata"].get("deletionTimestamp"):
        # Being deleted is as good as gone: its pods are on their way out.
        return Source(deleting=deployment is not None), set()
    spec = deployment.get("spec", {})
    raw = spec.get("template", {})
    template = clean_template(raw)
    copied: dict[ConfigRef, JSON] = {}
    live: set[ConfigRef] = set()  # tracking disabled: read as it is, never copied
    for ref in sorted(set(config_refs(template))):
        obj = lookup(*ref)
        if obj is None:
            continue
        if tracked(obj):
            copied[ref] = obj
        else:
            live.add(ref)
    refs = set(copied)
    hashes = content_hashes(copied)
    # An untracked object's content is no part of the revision, but whether
    # it exists is, as a tracked one's is: a missing `optional` one is read
    # from a copy that never exists (see with_config_copies). Created later
    # (an operator making the Secret after the Deployment), it must be a
    # release for the twin to read it by its own name; without one, the
    # pods never saw it.
    untracked = {f"{kind}/{name}": "untracked" for kind, name in live}
    revision = revision_of(template, {**hashes, **untracked})
    status = deployment.get("status", {})
    generation = int(deployment["metadata"].get("generation", 0))
    # Ready pods of its current template only: mid-rollout (a template set
    # back by a hand-back, a re-apply) readyReplicas counts the old ones too.
    current = int(status.get("observedGeneration", 0)) >= generation and int(
        status.get("replicas", 0)
    ) == int(status.get("updatedReplicas", 0))
    return (
        Source(
            exists=True,
            revision=revision,
            replicas=int(spec.get("replicas", 1)),
            ready=int(status.get("readyReplicas", 0)) if current else 0,
            template=with_config_copies(template, revision, refs, live),
            images=images(template),
            config=hashes,
            claim=claim_of(deployment),
            pod_labels=dict(template.get("metadata", {}).get("labels") or {}),
            replicas_defaulted=replicas_defaulted(deployment),
            paused=bool(spec.get("paused")),
            rolled_out=current,
            paused_by=field_manager(deployment["metadata"], ("f:spec", "f:paused")),
            gated=gated(raw),
            refused=_replica_failure(status),
        ),
        refs,
    )


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def replicas_defaulted(deployment: JSON) -> bool:
    """`replicas: 1` left by an apply of a manifest without the field (what
    the SourceScaled Event advises). Client-side: kubectl sends a null, the
    API server defaults it to 1, and the manager that wrote the
    last-applied annotation owns it. Server-side (Argo CD with
    `ServerSideApply=true`, Flux), after the tool was the last to write the
    field (its forced apply outlasting our scale to 0: a WriteLoop, the
    controller down): the applier drops it, and the default is owned by no
    field manager at all. A `kubectl scale --replicas=1` (the scale
    subresource) or a patch by anyone else is the team's size."""
    meta, spec = deployment["metadata"], deployment.get("spec", {})
    if int(spec.get("replicas", 1)) != 1:
        return False
    if meta.get("managedFields") and not field_managers(meta, ("f:spec", "f:replicas")):
        return True
    try:
        applied = json.loads((meta.get("annotations") or {}).get(LAST_APPLIED) or "null")
    except ValueError:
        return False
    if not isinstance(applied, dict) or "replicas" in (applied.get("spec") or {}):
        return False
    wanted = f"f:{LAST_APPLIED}"
    for entry in meta.get("managedFields") or []:
        fields = entry.get("fieldsV1") or {}
        if "f:replicas" not in (fields.get("f:spec") or {}):
            continue
        annotations = (fields.get("f:metadata") or {}).get("f:annotations") or {}
        return not entry.get("subresource") and wanted in annotations
    return False


def same_as(
    source: Source, deployment: JSON, objects: dict[Color, JSON | None], twins: dict[Color, Twin]
) -> frozenset[Color]:
    """The twins the source runs the same pods as: the same revision, or the
    very template a hand-back copied from that twin into the source."""
    raw = clean_template(deployment.get("spec", {}).get("template", {}))
    same = set()
    for color, obj in objects.items():
        if obj is None or not twins[color].exists:
            continue
        if twins[color].revision == source.revision or clean_template(source_template(obj)) == raw:
            same.add(color)
    return frozenset(same)


def reading_live(
    source: Source,
    same: frozenset[Color],
    objects: dict[Color, JSON | None],
    twins: dict[Color, Twin],
) -> frozenset[Color]:
    """The twins of `same` whose pods read, by its own name, a ConfigMap or
    Secret the source's revision freezes in a copy: made while it had
    `canary.io/config-tracking: disabled`, and tracking is on again. Their
    template is the source's, less our labels, but not its revision: its
    pods get every edit of that object live, where the source's revision
    would have them read a copy (a hand-back's template reads copies, named
    after the twin's revision, whose content is fixed)."""
    found = set()
    for color in same:
        obj, twin = objects[color], twins[color]
        if obj is None or twin.revision == source.revision:
            continue
        for kind, name in config_refs(source_template(obj)):
            if f"{kind}/{name}" in source.config and not name.endswith(f"-{twin.revision}"):
                found.add(color)
    return frozenset(found)


def claim_of(deployment: JSON) -> Claim:
    annotations = deployment["metadata"].get("annotations") or {}
    try:
        replicas = max(int(annotations.get(CLAIM_REPLICAS, 0)), 0)
    except ValueError:
        replicas = 0
    stable = str(annotations.get(CLAIM_STABLE, ""))
    owners = field_managers(
        deployment["metadata"], ("f:metadata", "f:annotations", f"f:{CLAIM_STABLE}")
    )
    if owners and FIELD_MANAGER not in owners:
        # Someone else put it there: the team's manifest exported with our
        # annotations and applied again names the revision stable back then.
        # It is no evidence of what serves (rebuild); the claim is written
        # again (decide._keep_claim).
        stable = ""
    return Claim(
        service=str(annotations.get(MANAGED_BY, "")),
        replicas=replicas,
        stable_revision=stable,
    )


def content_hashes(objects: dict[ConfigRef, JSON]) -> dict[str, str]:
    """The config hashes of these objects, keyed as a Source's `config`."""
    return {
        f"{kind}/{name}": config_hash(config_data(obj)) for (kind, name), obj in objects.items()
    }


def config_data(obj: JSON) -> dict[str, str]:
    """A ConfigMap's or Secret's content as one comparable mapping."""
    data = dict(obj.get("data") or {})
    for key, value in (obj.get("binaryData") or {}).items():
        data[f"binary:{key}"] = value
    for key, value in (obj.get("stringData") or {}).items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    return data


def twin_of(
    deployment: JSON | None,
    pods: list[str],
    previewed: Iterable[str] = (),
    ports: frozenset[str] | None = None,
) -> Twin:
    """`pods`: the twin's ready endpoints behind the Service (pod names);
    `previewed`: behind the blue-green preview (they name its ReplicaSet too,
    but do not serve the Service); `ports`: the Service's target ports all
    of `pods` are listed with (common_ports)."""
    endpoints = len(pods)
    previewed = tuple(previewed)  # read twice below
    serving = tuple(sorted({*pods, *previewed}))
    if deployment is None or deployment["metadata"].get("deletionTimestamp"):
        # Being deleted is as good as gone (as the source's, source_of).
        return Twin(
            endpoints=endpoints, ports=ports, serving=serving, deleting=deployment is not None
        )
    meta, spec, status = deployment["metadata"], deployment["spec"], deployment.get("status", {})
    replicas = int(spec.get("replicas", 1))
    observed = int(meta.get("generation", 0)) <= int(status.get("observedGeneration", 0))
    updated = int(status.get("updatedReplicas", 0))
    # Pods of an earlier template still around (the twin was re-templated):
    # until they are gone, readyReplicas may count them, so we count none.
    clean = observed and int(status.get("replicas", 0)) == updated
    # Pod names are <replicaset>-<suffix> (twin names are kept short enough
    # for that); a clean twin's endpoints all belong to its one ReplicaSet.
    sets = {pod.rsplit("-", 1)[0] for pod in [*pods, *previewed]}
    written = (meta.get("annotations") or {}).get(TEMPLATE_ANNOTATION)
    template = spec.get("template") or {}
    edited = (
        bool(written)
        and written not in (template_digest(template), template_digest(template, restarts=True))
        and not digest_of_ours(meta)
    )
    # A put-back rolling: the template is still the one it wrote (a restart
    # since changes the digest with restarts) and the Deployment controller,
    # having observed it, still counts pods of an older template, the edited
    # one. Not a scale after it (its pods are all of the one template).
    marked = (meta.get("annotations") or {}).get(PUT_BACK_ANNOTATION)
    put_back = (
        marked == template_digest(template, restarts=True)
        and observed
        and int(status.get("replicas", 0)) != updated
    )
    return Twin(
        exists=True,
        ports=ports,
        revision=(meta.get("annotations") or {}).get(REVISION_ANNOTATION, ""),
        replicas=replicas,
        ready=int(status.get("readyReplicas", 0)) if clean else 0,
        ready_mixed=0 if clean else int(status.get("readyReplicas", 0)),
        unobserved=not observed,
        updated=clean and updated >= replicas,
        endpoints=endpoints,
        service=str((meta.get("labels") or {}).get(SERVICE_LABEL, "")),
        owned=bool(meta.get("ownerReferences")),
        replica_set=sets.pop() if clean and len(sets) == 1 else "",
        edited_by=(field_manager(meta, ("f:spec", "f:template")) or "someone") if edited else "",
        scaled_by=_not_ours(field_manager(meta, ("f:spec", "f:replicas"))),
        paused_by=(field_manager(meta, ("f:spec", "f:paused")) or "someone")
        if spec.get("paused")
        else "",
        labels=tuple(
            sorted(((spec.get("template") or {}).get("metadata") or {}).get("labels", {}).items())
        ),
        refused=_replica_failure(status),
        put_back=put_back,
        handback_served=_handback_mark(meta),
        images=images(template),
        serving=serving,
    )


def digest_of_ours(meta: JSON) -> bool:
    """No one but the controller owns a field of the pod template: a digest
    that does not match it is another version's (the
    controller rolled back or forward, its twins' templates or digests
    shaped otherwise; or a default an upgraded API server adds), not a hand
    edit. Taken for one, every twin was put back (TwinRestored): every pod
    of every managed app restarted (all at once with `strategy: Recreate`),
    and a canary's step was judged afresh. act.renew_digests writes the
    digest again as this version computes it. Not when anyone else owns a
    field of the template (a hand edit, even one our later scale of the twin
    wrote after), bar a restart's stamp (template_digest's `restarts`)."""
    owners = set()
    for entry in meta.get("managedFields") or []:
        node = ((entry.get("fieldsV1") or {}).get("f:spec") or {}).get("f:template")
        if isinstance(node, dict) and _owns_any(node, skip=f"f:{RESTARTED_AT}"):
            owners.add(str(entry.get("manager", "")))
    return owners == {FIELD_MANAGER}


def _owns_any(node: JSON, skip: str) -> bool:
    """A fieldsV1 node names a field (a leaf, `{}`), other than `skip` and
    the "." that only marks a map as set."""
    return not node or any(
        k not in (".", skip) and (not isinstance(v, dict) or _owns_any(v, skip))
        for k, v in node.items()
    )


def _handback_mark(meta: JSON) -> int:
    """The size HANDBACK_ANNOTATION names; 0 when none, or not a size (a
    hand edit): no mark is the old behaviour, never a twin taken as grown."""
    value = (meta.get("annotations") or {}).get(HANDBACK_ANNOTATION, "")
    return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else 0


def _not_ours(manager: str) -> str:
    return "" if manager == FIELD_MANAGER else manager


def _replica_failure(status: JSON) -> str:
    """The Deployment controller copies its ReplicaSet's FailedCreate (the pod
    create refused: `exceeded quota`, a policy) into this condition; the pods
    themselves never exist, so nothing else the controller watches says why."""
    for condition in status.get("conditions") or []:
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            return str(condition.get("message") or condition.get("reason") or "FailedCreate")
    return ""


def _pod_endpoints(slices: Iterable[JSON]) -> Iterator[tuple[str, JSON]]:
    """(pod name, conditions) of every pod endpoint the EndpointSlices list."""
    for eps in slices:
        for endpoint in eps.get("endpoints") or []:
            ref = endpoint.get("targetRef") or {}
            if ref.get("kind") == "Pod":
                yield str(ref.get("name", "")), endpoint.get("conditions") or {}


def _once(pods: Iterable[str]) -> list[str]:
    """Each pod once, in the order first listed. A dual-stack Service has an
    EndpointSlice per address family, each listing every pod (kube-proxy
    programs each family from its own), and a pod shows in two slices of one
    family while the controller rebalances a Service of more than 100
    endpoints, or when a second EndpointSlice controller lists it too (the
    API tells its readers to de-duplicate). Counted per listing, a twin had
    twice its pods as endpoints: a promotion flipped onto 2 ready pods of 3
    ("4 endpoints"), and a stable twin short of a pod read Healthy (found by
    review)."""
    return list(dict.fromkeys(pods))


def ready_endpoints(slices: Iterable[JSON]) -> list[str]:
    """Names of the pods that EndpointSlices list as ready to serve: ready
    and not terminating. Not the `ready` condition: the EndpointSlice
    controller sets it to `publishNotReadyAddresses or (serving and not
    terminating)`, so behind a Service that publishes not-ready addresses
    every pod with an IP is `ready`, one that never got ready or is being
    deleted too; a flip or a step counted on them lands on pods that cannot
    serve. `serving` is the pod's own readiness; an API server too old to
    set it (nil: "defer to ready") has `ready` mean just that."""
    pods = []
    for name, conditions in _pod_endpoints(slices):
        serving = conditions.get("serving", conditions.get("ready", True))
        if serving and not conditions.get("terminating", False):
            pods.append(name)
    return _once(pods)


def other_endpoints(slices: Iterable[JSON]) -> int:
    """Ready endpoints listed by address with no pod behind them: a slice
    another controller (or a team) writes for the Service, VMs still
    serving it during a migration (`endpointslice.kubernetes.io/managed-by`
    of their own). kube-proxy routes to every slice labelled for the
    Service, whoever manages it, so they take their share of the requests;
    narrowing the selector does not drop them. Per address family, the
    larger (a dual-stack VM is listed once in each)."""
    families: dict[str, set[str]] = {}
    for eps in slices:
        for endpoint in eps.get("endpoints") or []:
            if (endpoint.get("targetRef") or {}).get("kind") == "Pod":
                continue
            conditions = endpoint.get("conditions") or {}
            serving = conditions.get("serving", conditions.get("ready", True))
            if serving and not conditions.get("terminating", False):
                seen = families.setdefault(str(eps.get("addressType", "")), set())
                seen.add(",".join(sorted(map(str, endpoint.get("addresses") or []))))
    return max(map(len, families.values()), default=0)


def target_ports(service: JSON | None) -> dict[str, str]:
    """A Service's ports by name (as its EndpointSlices name them; "" for a
    lone unnamed one), each to its targetPort as text: a container port's
    name (`http`) or number (`8080`; the port itself when unset)."""
    targets = {}
    for port in ((service or {}).get("spec") or {}).get("ports") or []:
        targets[str(port.get("name") or "")] = str(port.get("targetPort", port.get("port", "")))
    return targets


def listed_ports(slices: Iterable[JSON], targets: Mapping[str, str]) -> dict[str, frozenset[str]]:
    """Each pod endpoint's target ports, as its EndpointSlices list it. A
    Service port whose targetPort names a container port the pod does not
    declare (a release that renamed `http`, or dropped its container's
    `ports:` list) is left out of the pod's slice, and kube-proxy sends the
    pod nothing on it: `ports: []` when it was the Service's only one."""
    listed: dict[str, frozenset[str]] = {}
    for eps in slices:
        names = [str(port.get("name") or "") for port in eps.get("ports") or []]
        carried = frozenset(targets[name] for name in names if name in targets)
        for endpoint in eps.get("endpoints") or []:
            ref = endpoint.get("targetRef") or {}
            if ref.get("kind") == "Pod":
                name = str(ref.get("name", ""))
                listed[name] = listed.get(name, frozenset()) | carried
    return listed


def common_ports(
    pods: Iterable[str], listed: Mapping[str, frozenset[str]]
) -> frozenset[str] | None:
    """The target ports every one of `pods` is listed with; None when there
    is no pod to tell."""
    found = [listed.get(pod, frozenset()) for pod in pods]
    return frozenset.intersection(*found) if found else None


def routed_endpoints(slices: Iterable[JSON]) -> list[str]:
    """Names of the pods the Service sends requests to (kube-proxy routes by
    `ready`, whatever their readiness): what a narrowed selector would take
    out of its traffic."""
    return _once(
        name for name, conditions in _pod_endpoints(slices) if conditions.get("ready", True)
    )


def slim_pod(pod: JSON) -> JSON:
    """What the pod cache holds of a twin's pod: its name and readiness, why
    it is not ready when its status says (not_ready_why), and how often its
    containers restarted (restarted)."""
    meta = pod.get("metadata", {})
    kept = (
        "name",
        "namespace",
        "resourceVersion",
        "labels",
        "deletionTimestamp",
        "creationTimestamp",  # never changes: wakes nothing (ready_since)
    )
    status = pod.get("status") or {}
    # Ready's lastTransitionTime: since when it serves (ready_since), which
    # changes only with its status, so it wakes nothing more.
    conditions = [
        {k: c[k] for k in ("type", "status", "reason", "message", "lastTransitionTime") if k in c}
        for c in status.get("conditions") or []
        if c.get("type") == "Ready"
        or (c.get("type") == "PodScheduled" and c.get("status") != "True")
    ]
    slim: JSON = {"metadata": {k: meta[k] for k in kept if k in meta}, "status": {}}
    slim["status"]["conditions"] = conditions
    containers = [
        _slim_container(c)
        for key in ("initContainerStatuses", "containerStatuses")
        for c in status.get(key) or []
        if not c.get("ready")
    ]
    if containers:
        slim["status"]["containerStatuses"] = containers
    # Its container that restarted most (not its classic init containers), with its
    # last exit, for max-restarts: a container back and ready again is no
    # longer among those kept above. A restart turns the pod not ready and
    # ready again, so this wakes nothing new. Not summed over containers: a
    # node reboot restarts the app and an injected sidecar once each.
    # A native sidecar (an init container with restartPolicy Always) runs
    # beside the app for the pod's life, and its crash drops requests as the
    # app's does: counted as a container. A classic init container's retries
    # at start are not (before, native sidecars were left out with them).
    sidecars = {
        c.get("name")
        for c in (pod.get("spec") or {}).get("initContainers") or []
        if c.get("restartPolicy") == "Always"
    }
    inits = [c for c in status.get("initContainerStatuses") or [] if c.get("name") in sidecars]
    ran = [c for c in [*(status.get("containerStatuses") or []), *inits] if c.get("restartCount")]
    if ran:
        most = max(ran, key=lambda c: int(c.get("restartCount") or 0))
        slim["status"]["restarts"] = int(most.get("restartCount") or 0)
        slim["status"]["mostRestarted"] = _slim_container(most)
        slim["status"]["restartCounts"] = {
            str(c.get("name", "")): int(c.get("restartCount") or 0) for c in ran
        }
    return slim


def ready_since(pod: JSON | None) -> float:
    """When the pod last turned ready (epoch; 0.0: not ready, or not told),
    in the clock of its node's kubelet, which stamps it; never before the
    pod was created (the API server's clock). A node whose clock is minutes
    behind stamped a pod created seconds ago as ready for minutes: it was
    taken for serving past never_scraped_grace and, not scraped yet, made
    a healthy canary's check no data (found by review)."""
    for condition in ((pod or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            ready = _epoch(condition.get("lastTransitionTime"))
            created = _epoch(((pod or {}).get("metadata") or {}).get("creationTimestamp"))
            return max(ready, created) if ready else 0.0
    return 0.0


def created_at(pod: JSON | None) -> float:
    """When the pod was created (epoch, the API server's clock; 0.0: not
    told)."""
    return _epoch(((pod or {}).get("metadata") or {}).get("creationTimestamp"))


# A pod's Ready time as stamped (ready_since), and when this controller saw
# it turn so, in its own clock (0.0: not seen turning: it was so when first
# listed). See ready_seen.
ReadySeen = tuple[float, float]


def ready_seen(before: ReadySeen | None, pod: JSON, now: float, listing: bool) -> ReadySeen:
    """What to remember of a pod's readiness as an event of it arrives at
    `now` (this controller's clock). A Ready time that changed since the
    last event is a turn the watch saw just now; one the first list found
    (`listing`) happened at some time before, which only its stamp tells.
    The stamp is in its node's clock (and the check compares it with ours):
    a node a minute behind stamped a pod back from a restart a minute back,
    so it was not left out until its scrapes were due (run._settled), and a
    healthy canary was no data at the check due as it came back (found by
    review; the creationTimestamp bounds only a new pod's)."""
    stamped = ready_since(pod)
    if before is not None and before[0] == stamped:
        return before  # no turn (another field changed, a relist)
    if not stamped or (before is None and listing):
        return (stamped, 0.0)
    return (stamped, now)


def ready_time(pod: JSON | None, seen: ReadySeen | None) -> float:
    """When the pod last turned ready, as the per-pod checks take it: when
    this controller saw it turn, else its stamp (ready_since)."""
    stamped = ready_since(pod)
    if seen is not None and seen[0] == stamped and seen[1]:
        return seen[1]
    return stamped


def _epoch(stamp: object) -> float:
    """An API timestamp (RFC 3339) as epoch seconds; 0.0 when there is none."""
    try:
        return dt.datetime.fromisoformat(str(stamp or "").replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _slim_container(status: JSON) -> JSON:
    waiting = (status.get("state") or {}).get("waiting") or {}
    last = (status.get("lastState") or {}).get("terminated") or {}
    return {
        "name": status.get("name", ""),
        "restartCount": int(status.get("restartCount") or 0),
        "waiting": {k: str(waiting[k])[:WHY_CHARS] for k in ("reason", "message") if k in waiting},
        "lastExit": {k: last[k] for k in ("exitCode", "reason") if k in last},
    }


# A pod's reason is the kubelet's or the scheduler's text: long ones (an
# image pull's registry answer) are cut, the status carries it on-call.
WHY_CHARS = 200

# Waiting reasons that only say a container is on its way: not a reason to
# show while the pod comes up.
_ON_ITS_WAY = ("ContainerCreating", "PodInitializing", "")


def not_ready_why(pods: Iterable[JSON], revision: str) -> str:
    """Why a twin's pods of `revision` are not ready, as their status says:
    the scheduler's (Unschedulable: no node fits), the kubelet's (an image
    it cannot pull, a container crash-looping and its last exit code). ""
    when none says more than that it is on its way. Said where on-call
    looks while a step waits for its pods, and in the rollback at the
    progress deadline, which otherwise read "0/3 pods ready" for a typo in
    an image tag as for a full cluster."""
    told: dict[str, list[str]] = {}
    for pod in pods:
        meta = pod.get("metadata", {})
        labels = meta.get("labels") or {}
        if meta.get("deletionTimestamp") or labels.get(REVISION_LABEL) != revision:
            continue
        if pod_serves(pod):
            continue
        why = _pod_why(pod)
        if why:
            told.setdefault(why, []).append(str(meta.get("name", "")))
    parts = []
    for why, names in sorted(told.items(), key=lambda item: (-len(item[1]), item[0])):
        who = names[0] if len(names) == 1 else f"{len(names)} pods (e.g. {min(names)})"
        parts.append(f"{who}: {why}")
    return "; ".join(parts[:2]) + (f"; and {len(parts) - 2} more reasons" if len(parts) > 2 else "")


def restarted(pods: Iterable[JSON], revision: str) -> tuple[Restarted, ...]:
    """A twin's pods of `revision` whose containers restarted, as the pods
    cache keeps them (slim_pod), most restarts first. A pod being deleted is
    on its way out: its restarts say nothing of the pods that serve."""
    found = [pod for rev, pod in restarts_of(pods) if rev == revision]
    return tuple(sorted(found, key=lambda r: (-r.restarts, r.pod)))


def restarts_of(pods: Iterable[JSON]) -> tuple[tuple[str, Restarted], ...]:
    """(revision, pod) of a twin's live pods that restarted, of any revision
    (Twin.restarts_of), sorted."""
    found = []
    for pod in pods:
        meta, status = pod.get("metadata", {}), pod.get("status") or {}
        restarts = int(status.get("restarts") or 0)
        if meta.get("deletionTimestamp") or not restarts:
            continue
        most = status.get("mostRestarted") or {}
        last = most.get("lastExit") or {}
        code = last.get("exitCode")
        counts = status.get("restartCounts") or {}
        restart = Restarted(
            pod=str(meta.get("name", "")),
            restarts=restarts,
            container=str(most.get("name", "")),
            exit_reason=str(last.get("reason") or ""),
            exit_code=int(code) if code is not None else None,
            containers=tuple(sorted((str(c), int(n)) for c, n in counts.items())),
        )
        revision = str((meta.get("labels") or {}).get(REVISION_LABEL, ""))
        found.append((revision, restart))
    return tuple(sorted(found, key=lambda r: (r[0], r[1].pod)))


def _pod_why(pod: JSON) -> str:
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            reason = condition.get("reason") or "not scheduled"
            message = condition.get("message")
            return f"{reason} ({message})" if message else str(reason)
    for container in status.get("containerStatuses") or []:
        waiting = container.get("waiting") or {}
        reason = str(waiting.get("reason") or "")
        if reason in _ON_ITS_WAY:
            continue
        detail = []
        if waiting.get("message"):
            detail.append(str(waiting["message"]))
        last = container.get("lastExit") or {}
        if "exitCode" in last:
            detail.append(f"last exit code {last['exitCode']}")
        if container.get("restartCount"):
            detail.append(f"{container['restartCount']} restarts")
        named = f"container {container.get('name', '')}: {reason}"
        return f"{named} ({', '.join(detail)})" if detail else named
    for condition in status.get("conditions") or []:
        # Every container ready and the pod not: a readiness gate of the
        # pod's (an ALB's or a NEG's target health, set by its controller
        # only while a Service it serves selects the pod); the kubelet
        # names it. Unsaid, the wait read "0/1 pods ready" for the whole
        # deadline (found by review).
        if condition.get("type") == "Ready" and condition.get("reason") == GATES_NOT_READY:
            message = condition.get("message")
            return f"{GATES_NOT_READY} ({message})" if message else GATES_NOT_READY
    return ""


# The kubelet's reason on the Ready condition of a pod whose containers are
# ready and whose readiness gates are not all True.
GATES_NOT_READY = "ReadinessGatesNotReady"


def pod_serves(pod: JSON | None) -> bool:
    """Whether a pod says it can serve: Ready, and not being deleted."""
    if pod is None or pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


PodLookup = Callable[[str], JSON | None]  # a twin's pod by name, from the pods cache


def vetoed(pods: Iterable[str], deployment: str, pod_of: PodLookup | None) -> list[str]:
    """The endpoints whose pods do not say otherwise. An EndpointSlice (and
    a Deployment's readyReplicas) is written by kube-controller-manager from
    its own cache of pods, and after a freeze it was seen to list a pod as
    serving again, from that stale cache, although the kubelet had already
    marked it not ready: a promotion flipped onto it and scaled the old twin
    to 0, a Service with no pod that serves (test_publish_not_ready). The
    pod's Ready condition is the kubelet's own word, so it may veto; a
    twin's pod the cache no longer holds is gone (the cache holds every
    twin's pod), though a stale slice may list it still. `pod_of` is None
    while the pods cache cannot be trusted (not listed yet, its watch
    failing, no RBAC for pods): the slices alone count then, as before. The
    team's own and other workloads' pods are in no pods cache: not vetoed."""
    if pod_of is None:
        return list(pods)
    twins = {twin_name(deployment, c) for c in COLORS}
    return [pod for pod in pods if pod_serves(pod_of(pod)) or (pod.rsplit("-", 2)[0] not in twins)]


def foreign_pods(pods: Iterable[str], deployment: str) -> tuple[str, ...]:
    """The ready pods that belong neither to `deployment` nor to its twins."""
    ours = {twin_name(deployment, c) + "-" for c in COLORS}
    return tuple(
        sorted(
            pod
            for pod in pods
            if not of_deployment(pod, deployment) and not pod.startswith(tuple(ours))
        )
    )


def twin_pods(pods: Iterable[str], deployment: str, color: Color) -> list[str]:
    prefix = twin_name(deployment, color) + "-"
    return [pod for pod in pods if pod.startswith(prefix)]


def observe(
    service: JSON,
    deployment_name: str,
    deployments: Lookup,
    slices: Callable[[str], list[JSON]],
    config: Lookup,
    preview_name: str,
    pod_of: PodLookup | None = None,
    pods_of: Callable[[Color], list[JSON]] | None = None,
) -> tuple[Observed, set[ConfigRef]]:
    """`pod_of`: the twins' pods, each as its kubelet last said (vetoed);
    `pods_of`: a twin's pods (for why they are not ready: not_ready_why)."""
    meta = service["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    source_object = deployments("Deployment", deployment_name)
    source, refs = source_of(source_object, config)
    service_slices = slices(name)
    live = vetoed(ready_endpoints(service_slices), deployment_name, pod_of)
    others = other_endpoints(service_slices)
    preview = config("Service", preview_name)
    preview_selector = None if preview is None else dict(preview["spec"].get("selector") or {})
    preview_slices = slices(preview_name) if preview else []
    previewed = vetoed(ready_endpoints(preview_slices), deployment_name, pod_of)
    # Only the pods of the twin its selector names: the slices lag a
    # selector just changed (put back on the canary after a sync or a hand
    # edit), and the stable pods they still listed counted as the preview's
    # ready endpoints; with the canary's readyReplicas (a pod just turned
    # unready) the flip went on pods no one saw serve (found by review).
    named = (preview_selector or {}).get(TWIN_LABEL)
    previewed = [
        pod for c in COLORS if c == named for pod in twin_pods(previewed, deployment_name, c)
    ]
    objects = {c: deployments("Deployment", twin_name(deployment_name, c)) for c in COLORS}
    # Which of the Service's ports each ready endpoint is listed with: a pod
    # the Service cannot reach on a port is no capacity for it there
    # (placement.reachable). Nothing to tell for a Service without ports.
    targets = target_ports(service)
    listed = listed_ports(service_slices, targets)
    twins = {
        c: twin_of(
            objects[c],
            twin_pods(live, deployment_name, c),
            twin_pods(previewed, deployment_name, c),
            common_ports(twin_pods(live, deployment_name, c), listed) if targets else None,
        )
        for c in COLORS
    }
    preview_ports = None
    if targets and previewed:
        # In the Service's terms: a port its preview (a team's own) lacks
        # cannot be told from the preview's slices, so it is not asked for.
        own = target_ports(preview)
        lacks = frozenset(targets.values()) - frozenset(own.values())
        found = common_ports(previewed, listed_ports(preview_slices, own))
        preview_ports = None if found is None else found | lacks
    stale = preview is not None and preview_ports_stale(preview, service)
    if pods_of is not None:
        for c, twin in twins.items():
            if not twin.exists:
                continue
            pods = pods_of(c)
            why = not_ready_why(pods, twin.revision) if twin.replicas > twin.ready else ""
            twins[c] = replace(
                twin,
                restarted=restarted(pods, twin.revision),
                restarts_of=restarts_of(pods),
                not_ready_why=why,
            )
    if source.exists and source_object is not None:
        same = same_as(source, source_object, objects, twins)
        source = replace(
            source, same_as=same, reads_live=reading_live(source, same, objects, twins)
        )
    annotations = meta.get("annotations") or {}
    return (
        Observed(
            namespace=namespace,
            service=name,
            deployment=deployment_name,
            selector=dict(service.get("spec", {}).get("selector") or {}),
            source=source,
            twins=twins,
            preview_endpoints=len(previewed),
            preview_ports=preview_ports,
            preview_selector=preview_selector,
            preview_ports_stale=stale,
            action=str(annotations.get(ACTION, "")).strip(),
            action_by=action_author(meta),
            endpoints=len(live) + others,
            other_endpoints=others,
            selector_manager=field_manager(meta, ("f:spec", "f:selector")),
            selector_ours=ours(field_managers(meta, ("f:spec", "f:selector", f"f:{TWIN_LABEL}"))),
            # Another workload's pods the Service routes to, ready or not
            # (publishNotReadyAddresses): adoption narrowing the selector
            # would drop them, and those not ready yet would never be seen.
            foreign_pods=foreign_pods(routed_endpoints(service_slices), deployment_name),
            source_pods=tuple(sorted(p for p in live if of_deployment(p, deployment_name))),
            routing=routing(service),
            pods_known=pods_of is not None,
        ),
        refs,
    )


# Where the API server merges the oldest Update entries of managedFields once
# an object has more than 10 Update managers: who wrote what is lost there.
ANCIENT_CHANGES = "ancient-changes"


def ours(owners: frozenset[str]) -> bool:
    """A field with these owners is the controller's, or may be: it owns it,
    nobody is known to, or the API server merged its entry with others'
    (ANCIENT_CHANGES: a Service written by ten other managers since our
    last write, a week's pause on a busy Service)."""
    return not owners or FIELD_MANAGER in owners or ANCIENT_CHANGES in owners


def field_managers(meta: JSON, path: tuple[str, ...]) -> frozenset[str]:
    """Every field manager that owns the field at `path` (fieldsV1 keys):
    one after a plain write (it takes the field over), several when
    server-side appliers set the same value."""
    owners = set()
    for entry in meta.get("managedFields") or []:
        node = entry.get("fieldsV1") or {}
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            owners.add(str(entry.get("manager", "")))
    return frozenset(owners)


def field_manager(meta: JSON, path: tuple[str, ...]) -> str:
    """The field manager that last wrote the field at `path` (fieldsV1 keys)."""
    best = ("", "")
    for entry in meta.get("managedFields") or []:
        node = entry.get("fieldsV1") or {}
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None and str(entry.get("time", "")) >= best[1]:
            best = (str(entry.get("manager", "")), str(entry.get("time", "")))
    return best[0]


def action_author(meta: JSON) -> str:
    """Who last wrote canary.io/action, from managedFields: the field
    manager's name (`canary-cli:alice`, `kubectl-annotate`, ...)."""
    wanted = f"f:{ACTION}"
    for entry in reversed(meta.get("managedFields") or []):
        annotations = ((entry.get("fieldsV1") or {}).get("f:metadata") or {}).get("f:annotations")
        if isinstance(annotations, dict) and wanted in annotations:
            return f"{entry.get('manager', 'unknown')} at {entry.get('time', '?')}"
    return ""


# The annotations that turn on topology-aware routing (EndpointSlice zone
# hints): the current one and the one it replaced (Kubernetes 1.21-1.26).
TOPOLOGY_ANNOTATIONS = (
    "service.kubernetes.io/topology-mode",
    "service.kubernetes.io/topology-aware-hints",
)


def routing(service: JSON) -> tuple[str, ...]:
    """The Service's own fields by which its requests are not spread evenly
    over its ready pods, each as `field: value`: kube-proxy keeps a client
    on the pod it reached first (sessionAffinity), or sends it to pods on
    its own node or in its own zone only (the traffic policies, topology
    hints, trafficDistribution), or a load balancer gives each node an equal
    share whatever its pods (externalTrafficPolicy of a LoadBalancer or
    NodePort Service); a headless Service's clients pick pods themselves
    from DNS, and one that publishes not-ready addresses sends requests to
    pods that are not ready too. A canary step sets the canary's share of the ready
    pods; with any of these, not its share of the requests."""
    spec = service.get("spec") or {}
    annotations = (service.get("metadata") or {}).get("annotations") or {}
    found = []
    if spec.get("clusterIP") == "None":
        found.append("clusterIP: None")
    if spec.get("publishNotReadyAddresses"):
        found.append("publishNotReadyAddresses: true")
    if spec.get("sessionAffinity") == "ClientIP":
        found.append("sessionAffinity: ClientIP")
    if spec.get("internalTrafficPolicy") == "Local":
        found.append("internalTrafficPolicy: Local")
    if spec.get("type") in ("LoadBalancer", "NodePort") and (
        spec.get("externalTrafficPolicy") == "Local"
    ):
        found.append("externalTrafficPolicy: Local")
    if spec.get("trafficDistribution"):
        found.append(f"trafficDistribution: {spec['trafficDistribution']}")
    for key in TOPOLOGY_ANNOTATIONS:
        value = str(annotations.get(key) or "")
        if value and value.lower() not in ("disabled", "false"):
            found.append(f"{key}: {value}")
    return tuple(found)


def old_previews(services: Iterable[JSON], service: JSON, preview: str) -> tuple[str, ...]:
    """The previews the controller made for `service` (owned by it: nothing
    else of ours is a Service) under another name than `preview`, the one
    canary.io/preview-service names now, that still select a twin. Kept as
    they were, whoever still used the old name was sent to the twin it last
    previewed: a release nobody had analysed yet when that twin next rolled
    out. A Service the team made is never one (not owned by it)."""
    meta = service["metadata"]
    uid = meta.get("uid")
    found = []
    for other in services:
        name = str((other.get("metadata") or {}).get("name", ""))
        if not uid or name in (meta.get("name"), preview) or not owned_by(other, uid):
            continue
        selector = (other.get("spec") or {}).get("selector") or {}
        if selector.get(TWIN_LABEL) in COLORS:
            found.append(name)
    return tuple(sorted(found))


def sharing(
    services: Iterable[JSON], own: str, preview: str, pod_labels: Mapping[str, str]
) -> tuple[str, ...]:
    """The Services besides `own` and its preview whose selector picks pods
    with `pod_labels` (the app's, which every twin's pods carry), not
    managed here (one annotated is a Conflict, told as such) and not
    pointed at a twin on purpose (a selector naming one of our keys).
    kube-proxy sends their requests to every twin's pods: the canary's at
    its share of the pods, and a blue-green preview at full size half of
    them, before it is promoted."""
    found = []
    for service in services:
        meta = service.get("metadata") or {}
        name = str(meta.get("name", ""))
        selector = (service.get("spec") or {}).get("selector") or {}
        if name in (own, preview) or not selector:
            continue
        if STRATEGY in (meta.get("annotations") or {}) or set(selector) & set(OWNED_POD_LABELS):
            continue
        if all(pod_labels.get(k) == v for k, v in selector.items()):
            found.append(name)
    return tuple(sorted(found))
