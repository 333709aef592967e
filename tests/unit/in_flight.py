"""Service `web` mid-rollout as the watch caches would hold it, for unit
tests that drive the real reconciler without a cluster: r1 stable on the
blue twin (3 pods ready), r2 in flight on green (1 pod ready) at its first
step, the team's Deployment held at 0 under the claim, and the history."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from canary import history
from canary.model import JSON, Record, Source, State
from canary.observe import source_of
from canary.spec import CLAIM_REPLICAS, CLAIM_STABLE, MANAGED_BY, SERVICE_LABEL
from canary.twins import twin_deployment
from tests.unit.test_config_bad_day import _Informer
from tests.unit.test_identity_bad_day import _deployment


def in_flight(
    started: float,
    annotations: Callable[[State, Source], dict[str, str]],
    **times: float,
) -> tuple[list[Any], JSON, State]:
    """The informers (Services, Deployments, Secrets, ConfigMaps, HPAs), the
    Service and the state its status holds. r1 was adopted 100 s before
    `started`, r2's rollout started then; `annotations`: the Service's, from
    that state and r2's source; `times`: more of the state's times
    (step_ready, checked...)."""
    v1 = _deployment("web", "web", 3)
    v2 = copy.deepcopy(v1)
    v2["spec"]["template"]["spec"]["containers"][0]["image"] = "web:v2"
    s1, _ = source_of(v1, lambda kind, name: None)
    s2, _ = source_of(v2, lambda kind, name: None)
    source = copy.deepcopy(v2)
    source["spec"]["replicas"] = 0
    source["metadata"]["annotations"] = {
        MANAGED_BY: "web",
        CLAIM_REPLICAS: "3",
        CLAIM_STABLE: s1.revision,
    }
    blue = twin_deployment(v1, "web", "blue", s1.revision, 3, s1.template)
    green = twin_deployment(v2, "web", "green", s2.revision, 1, s2.template)
    for twin, n in ((blue, 3), (green, 1)):
        twin["metadata"].update(generation=1, resourceVersion="1")
        twin["status"] = {"observedGeneration": 1, "replicas": n, "updatedReplicas": n}
        twin["status"]["readyReplicas"] = n
    state = State(
        stable="blue",
        stable_revision=s1.revision,
        replicas=3,
        adopted=True,
        canary="green",
        canary_revision=s2.revision,
        rollout_started=started,
        step_started=started,
        requested_weight=25,
        effective_weight=25.0,
        **times,  # type: ignore[arg-type]
    )
    meta = {"name": "web", "namespace": "ns", "uid": "s-1", "resourceVersion": "1"}
    service = {
        "metadata": {**meta, "annotations": annotations(state, s2)},
        "spec": {"selector": {"app": "web", SERVICE_LABEL: "web"}},
    }
    records = history.apply_record([], Record(s1.revision, "adopted", "x"), s1, started - 100, 10)
    records = history.apply_record(
        records, Record(s2.revision, "progressing", "x"), s2, started, 10
    )
    owner = {"apiVersion": "v1", "kind": "Service", "name": "web", "uid": "s-1"}
    configmap = {
        "metadata": {"name": "web-canary-history", "namespace": "ns", "ownerReferences": [owner]},
        "data": history.dump(records),
    }
    informers: list[Any] = [
        _Informer(service),
        _Informer(source, blue, green),
        _Informer(),
        _Informer(configmap),
        _Informer(),
    ]
    return informers, service, state
