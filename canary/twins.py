"""The twin Deployments and the Service selectors that split traffic."""

from __future__ import annotations

import copy
import hashlib
import json
import re

from canary.model import JSON, Color, Twin
from canary.revisions import clean_template
from canary.spec import (
    PUT_BACK_ANNOTATION,
    REVISION_ANNOTATION,
    REVISION_LABEL,
    SERVICE_LABEL,
    SOURCE_ANNOTATION,
    TEMPLATE_ANNOTATION,
    TWIN_LABEL,
)

OWNED_SELECTOR_KEYS = (TWIN_LABEL, SERVICE_LABEL)
# The Deployment controller's label on a ReplicaSet's pods. In a Service
# selector only while the reinstall's hold narrows it to the pods of the
# stable revision over a release (decide._narrow_hold): never the team's key,
# and no twin's pod carries that value.
POD_TEMPLATE_HASH = "pod-template-hash"
# Labels we add to a twin's pods; never part of what we hand back to the team.
OWNED_POD_LABELS = (TWIN_LABEL, SERVICE_LABEL, REVISION_LABEL)
# Labels by which a GitOps tool counts an object as its application's: Argo
# CD's label tracking (`app.kubernetes.io/instance`, its default before 3.0,
# and `argocd.argoproj.io/instance`, the key its docs suggest instead). A twin
# has no ownerReference, so a twin carrying one is an object of the app that
# is not in Git: an automated sync with `prune: true` deletes it, serving
# pods and all, at every sync. Never copied from the team's Deployment.
TRACKING_LABELS = ("app.kubernetes.io/instance", "argocd.argoproj.io/instance")

# A pod is named <replicaset>-<5 random>, where the ReplicaSet is
# <twin>-<hash of up to 10 chars>, and the API server cuts the generated
# prefix at 58 characters. A twin name of at most 46 characters keeps the
# whole ReplicaSet name in every pod name, so a pod can be told apart by
# twin and by revision from its name alone (what Prometheus series carry).
MAX_TWIN_NAME = 46
_MAX_PLAIN = MAX_TWIN_NAME - len("-green")


def twin_name(deployment: str, color: Color) -> str:
    if len(deployment) <= _MAX_PLAIN:
        return f"{deployment}-{color}"
    digest = hashlib.sha256(deployment.encode()).hexdigest()[:5]
    return f"{deployment[: _MAX_PLAIN - 6].rstrip('-.')}-{digest}-{color}"


# A pod's name is its generateName (at most 58 characters: longer ones are
# cut) and 5 random characters; a Deployment's pods take theirs from the
# ReplicaSet, `<deployment>-<pod-template-hash>-`.
_GENERATED_MAX = 58
_HASH = re.compile(r"[a-z0-9]{1,10}-")


def template_hash(pod: str, deployment: str) -> str:
    """The pod-template-hash of a pod of `deployment`'s own ReplicaSets, from
    its name; "" when the name was cut into it (a long Deployment name)."""
    if not of_deployment(pod, deployment) or len(pod) >= _GENERATED_MAX + 5:
        return ""
    return pod[len(deployment) + 1 : -6]


def of_deployment(pod: str, deployment: str) -> bool:
    """The pod, by its name, belongs to a ReplicaSet of `deployment`."""
    stem = pod[:-5]
    prefix = f"{deployment}-"
    # Cut only when `<deployment>-<hash of up to 10>-` can reach the maximum:
    # else a long-named other Deployment's pods would pass for a short one's.
    if len(stem) == _GENERATED_MAX and len(prefix) + 11 > _GENERATED_MAX:
        return stem.startswith(prefix[:_GENERATED_MAX]) and len(pod) == _GENERATED_MAX + 5
    return stem.startswith(prefix) and _HASH.fullmatch(stem[len(prefix) :]) is not None


def team_selector(live: dict[str, str]) -> dict[str, str]:
    """The team's own keys of the live selector: what a hand-back leaves.
    Without a pod-template-hash the hold put there (POD_TEMPLATE_HASH): put
    back onto a twin with it, the Service selected no pod."""
    return {
        k: v for k, v in live.items() if k not in OWNED_SELECTOR_KEYS and k != POD_TEMPLATE_HASH
    }


def base_selector(live: dict[str, str]) -> dict[str, str]:
    """The team's own selector: the live one less the keys we add. Deriving it
    (instead of storing it) lets a team that re-applies its Service change it.
    With none of the team's keys left (a sync of a manifest with no
    `selector`, a server-side apply that dropped the team's keys and kept
    ours), our Service label stands for them, once put there
    (decide._restore_selector): the twin label alone selects every managed
    app's twin of that colour in the namespace."""
    team = team_selector(live)
    if not team and SERVICE_LABEL in live:
        return {SERVICE_LABEL: live[SERVICE_LABEL]}
    return team


def only(base: dict[str, str], color: Color) -> dict[str, str]:
    return {**base, TWIN_LABEL: color}


def both(base: dict[str, str], service: str) -> dict[str, str]:
    """Both twins and never the source Deployment's pods."""
    return {**base, SERVICE_LABEL: service}


def pods_why(twin: Twin) -> str:
    """Why a twin's missing pods do not come, to add to what waits for them
    ("" when nothing says): refused (a pods quota, a policy: no pod exists
    at all, the Deployment's ReplicaFailure) or what its pods say
    (Unschedulable, an image not pulled, crash-looping: observe.not_ready_why).
    "0/3 pods ready" alone left on-call to find the pods, or the ReplicaSet."""
    why = f"; its pods are refused: {twin.refused}" if twin.refused else ""
    return why + (f"; {twin.not_ready_why}" if twin.not_ready_why else "")


def canary_replicas(stable: int, weight: int) -> int:
    """Canary pods for `weight` percent with the stable twin kept at `stable`;
    at least one, so every step really sends the canary traffic."""
    if weight >= 100:
        return stable
    return max(1, round(stable * weight / (100 - weight)))


def effective_weight(canary_endpoints: int, stable_endpoints: int, others: int = 0) -> float:
    """The canary's share of the Service's ready endpoints; `others`: those
    listed with no pod (observe.other_endpoints), which take requests too."""
    total = canary_endpoints + stable_endpoints + others
    return 0.0 if total == 0 else round(100.0 * canary_endpoints / total, 1)


def twin_template(template: JSON, service: str, color: Color, revision: str) -> JSON:
    result = copy.deepcopy(template)
    meta = result.setdefault("metadata", {})
    meta["labels"] = {
        **(meta.get("labels") or {}),
        TWIN_LABEL: color,
        SERVICE_LABEL: service,
        REVISION_LABEL: revision,
    }
    return result


def source_template(twin: JSON) -> JSON:
    """A twin's pod template as the team's Deployment would hold it: less the
    labels we add (the config copies it reads stay: they hold that revision's
    content)."""
    template: JSON = copy.deepcopy(twin["spec"]["template"])
    labels = template.get("metadata", {}).get("labels") or {}
    for key in OWNED_POD_LABELS:
        labels.pop(key, None)
    return template


# The team's Deployment settings a twin keeps (how its pods roll and count as
# available). progressDeadlineSeconds goes with minReadySeconds: the API
# server takes a Deployment only with the deadline above it (the default is
# 600 s), so a team's `minReadySeconds: 600` (with its own deadline of 900)
# made twins it refused, and no twin was ever made. The deadline itself
# decides nothing here (the rollout keeps its own, `progress-deadline`).
SETTINGS = ("minReadySeconds", "progressDeadlineSeconds", "revisionHistoryLimit", "strategy")


def twin_deployment(
    source: JSON,
    service: str,
    color: Color,
    revision: str,
    replicas: int,
    template: JSON,
    put_back: bool = False,
) -> JSON:
    """A twin from the source Deployment: same pod template (plus our labels)
    and its own selector. No ownerReference, on purpose: serving pods must
    outlive any object a team deletes or recreates (their Deployment, their
    Service); the controller hands a lost twin back itself."""
    meta = source["metadata"]
    match = dict((source["spec"].get("selector") or {}).get("matchLabels") or {})
    labels = {TWIN_LABEL: color, SERVICE_LABEL: service}
    spec = {key: value for key, value in source["spec"].items() if key in SETTINGS}
    pods = twin_template(template, service, color, revision)
    marks = {PUT_BACK_ANNOTATION: template_digest(pods, restarts=True)} if put_back else {}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": twin_name(meta["name"], color),
            "namespace": meta["namespace"],
            "labels": {**untracked(meta.get("labels") or {}), **labels},
            "annotations": {
                REVISION_ANNOTATION: revision,
                SOURCE_ANNOTATION: meta["name"],
                TEMPLATE_ANNOTATION: template_digest(pods),
                **marks,
            },
        },
        "spec": {
            **spec,
            "replicas": replicas,
            "selector": {"matchLabels": {**match, **labels}},
            "template": pods,
        },
    }


def untracked(labels: dict[str, str]) -> dict[str, str]:
    """`labels` less the GitOps tools' tracking labels (TRACKING_LABELS)."""
    return {k: v for k, v in labels.items() if k not in TRACKING_LABELS}


# What `kubectl rollout restart` stamps on a pod template: it restarts the
# pods and changes nothing they run.
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def template_digest(template: JSON, restarts: bool = False) -> str:
    """What a twin's pod template should stay: the template comes from an
    object the API server already defaulted, so what it stores is what we
    sent, and a hand edit shows as a different digest.

    A restart is not an edit: on-call runs `kubectl rollout restart` on a
    twin to get fresh pods of the same revision (a leak, a Secret read only
    at start). Taken for an edit, the template was put back, which restarted
    every pod a second time (and with `strategy: Recreate`, took the stable
    twin down twice). `restarts`: the digest as written before restarts were
    left out, so a twin made by an earlier version is not taken for edited."""
    cleaned = clean_template(template)
    annotations = (cleaned.get("metadata") or {}).get("annotations")
    if not restarts and annotations and RESTARTED_AT in annotations:
        del annotations[RESTARTED_AT]
        if not annotations:
            del cleaned["metadata"]["annotations"]
    text = json.dumps(cleaned, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _literal(name: str) -> str:
    """A Kubernetes name as a regex: only '.' needs escaping ([a-z0-9.-])."""
    return re.sub(r"[^a-z0-9-]", lambda m: "\\" + m.group(0), name)


def pods_regex(replica_set: str) -> str:
    """Exactly the pods of one ReplicaSet, i.e. of one twin at one revision
    (a twin reused for a later release gets a new ReplicaSet)."""
    return f"{_literal(replica_set)}-[a-z0-9]+"


def twin_pods_regex(twin: str) -> str:
    """Every pod a twin ever had; only when its ReplicaSet is not known yet."""
    return f"{_literal(twin)}-[a-z0-9]+-[a-z0-9]+"


def preview_ports(spec: JSON) -> list[JSON]:
    """The Service's ports as its ClusterIP preview may have them: without
    the `nodePort` a LoadBalancer or NodePort Service gives each, which the
    API server refuses on a ClusterIP Service (422). Copied as they were,
    the preview of such a Service (the usual way in from outside) was never
    created, and every blue-green release was rolled back at its progress
    deadline, its preview having had no endpoint (found by review)."""
    return [
        {key: value for key, value in port.items() if key != "nodePort"}
        for port in spec.get("ports") or []
    ]


# The twin label's value a preview retired under an old name selects: no
# twin's pod carries it, so the Service selects no pod and keeps our key
# (observe.sharing leaves it out).
RETIRED = "retired"


def owned_by(obj: JSON, uid: object) -> bool:
    """Whether `obj` names the object with this uid among its owners."""
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def preview_ports_stale(preview: JSON, service: JSON) -> bool:
    """Our own preview (owned by the Service) with other ports than the
    Service's (preview_ports): a port the team added or changed since it was
    made. A team's own preview keeps its ports."""
    return owned_by(preview, service["metadata"].get("uid")) and preview_ports(
        preview["spec"]
    ) != preview_ports(service.get("spec") or {})
