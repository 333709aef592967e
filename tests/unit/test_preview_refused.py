"""The blue-green preview Service refused for good by the API server (a
namespace ResourceQuota on Services at its limit, an admission policy on
Services), driven through the real reconciler. Before, the refusal cut the
cycle at the preview, after the rollout's start: no status and no history
were written, so every retry started the rollout again from the same
status (another RolloutStarted Event each time), nothing counted the
progress deadline, and the full-size new twin stayed up for good."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

from canary import history
from canary.kube import ApiError
from canary.model import JSON, Record, State
from canary.observe import source_of
from canary.reconcile import Caches, Edges, Reconciler
from canary.spec import CLAIM_REPLICAS, CLAIM_STABLE, MANAGED_BY, STATUS, TWIN_LABEL
from canary.twins import twin_deployment
from tests.unit.test_config_bad_day import _Informer
from tests.unit.test_events_refused import _Checks, _Cluster, _Shell
from tests.unit.test_identity_bad_day import _deployment

QUOTA = (
    'services "web-preview" is forbidden: exceeded quota: services, requested: services=1, '
    "used: services=10, limited: services=10"
)


def _steady_blue_green() -> list[Any]:
    """Service web (blue-green) serving r1 from blue, 3 pods; the team's
    Deployment holds r2 (a release), kept at 0 under the claim; no preview."""
    v1 = _deployment("web", "web", 3)
    v2 = copy.deepcopy(v1)
    v2["spec"]["template"]["spec"]["containers"][0]["image"] = "web:v2"
    s1, _ = source_of(v1, lambda kind, name: None)
    source = copy.deepcopy(v2)
    source["spec"]["replicas"] = 0
    source["spec"]["template"]["spec"]["schedulingGates"] = [{"name": "canary.io/held"}]
    source["metadata"]["annotations"] = {
        MANAGED_BY: "web",
        CLAIM_REPLICAS: "3",
        CLAIM_STABLE: s1.revision,
    }
    blue = twin_deployment(v1, "web", "blue", s1.revision, 3, s1.template)
    blue["metadata"].update(generation=1, resourceVersion="1")
    blue["status"] = {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3}
    blue["status"]["readyReplicas"] = 3
    state = State(stable="blue", stable_revision=s1.revision, replicas=3, adopted=True)
    status = {"phase": "Healthy", "deployment": "web", **state.to_json()}
    service = {
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "uid": "s-1",
            "resourceVersion": "1",
            "annotations": {
                "canary.io/strategy": "blue-green",
                "canary.io/interval": "10s",
                "canary.io/analysis": "metrics:\n  - name: success-rate\n    min: 99\n"
                "scrape-interval: 1s\n",
                STATUS: json.dumps(status),
            },
        },
        "spec": {
            "selector": {"app": "web", TWIN_LABEL: "blue"},
            "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    }
    started = time.time() - 100
    records = history.apply_record([], Record(s1.revision, "adopted", "x"), s1, started, 10)
    owner = {"apiVersion": "v1", "kind": "Service", "name": "web", "uid": "s-1"}
    configmap = {
        "metadata": {"name": "web-canary-history", "namespace": "ns", "ownerReferences": [owner]},
        "data": history.dump(records),
    }
    return [
        _Informer(service),
        _Informer(source, blue),
        _Informer(),
        _Informer(configmap),
        _Informer(),
    ]


class _QuotaOnServices(_Cluster):
    """Creating a Service is refused (403), as by a full ResourceQuota."""

    async def create(self, path: str, body: JSON, **kwargs: object) -> JSON:
        if path.endswith("/services"):
            raise ApiError(403, "Forbidden", QUOTA)
        return await super().create(path, body, **kwargs)


class _BlueGreenShell(_Shell):
    def __init__(self) -> None:  # the real reconciler, as _Shell, from a steady blue-green
        self.informers = _steady_blue_green()
        self.kube = _QuotaOnServices(self.informers)
        self.kube.refusing = None  # Events are created (and counted)
        self.caches = Caches(*self.informers)
        self.reconciler = Reconciler(Edges(kube=self.kube, prometheus=None), self.caches)  # type: ignore[arg-type]
        self.checks = _Checks()
        self.reconciler.checks = self.checks  # type: ignore[assignment]
        self.failures: list[Exception] = []


def test_a_refused_preview_lets_the_rollout_start_and_is_told() -> None:
    shell = _BlueGreenShell()
    for _ in range(4):
        shell.cycle()
    state = shell.status()
    # The rollout's start is recorded, so its progress deadline counts (the
    # preview never selecting the new twin, it is rolled back then, saying
    # why: test_blue_green_bad_day), instead of starting again at each retry.
    assert state.get("canary") == "green" and state.get("canary_revision"), state
    assert shell.kube.events.count("RolloutStarted") == 1, shell.kube.events
    # Production never moved, and the refusal is told (ReconcileFailed).
    assert shell.service()["spec"]["selector"] == {"app": "web", TWIN_LABEL: "blue"}
    assert shell.failures and all(getattr(f, "status", 0) == 403 for f in shell.failures), (
        shell.failures
    )


def past_the_deadline(monkeypatch: Any) -> _BlueGreenShell:
    """A blue-green release whose preview is refused: four cycles, then four
    more once the default progress-deadline (10 minutes) is past."""
    shell = _BlueGreenShell()
    clock = [time.time()]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    for _ in range(4):
        shell.cycle()
        clock[0] += 5
    assert shell.status().get("canary") == "green"
    clock[0] += 600
    for _ in range(4):
        shell.cycle()
        clock[0] += 5
    return shell


def test_a_refused_preview_is_rolled_back_at_the_progress_deadline(monkeypatch: Any) -> None:
    shell = past_the_deadline(monkeypatch)
    state = shell.status()
    assert not state.get("canary") and state.get("failed_revision"), state
    green = shell.informers[1].get("ns", "web-green")
    assert green is not None and green["spec"]["replicas"] == 0
    entry = [r for r in shell.records() if r["revision"] == state["failed_revision"]][-1]
    assert entry["outcome"] == "rolled-back" and "web-preview" in entry["reason"], entry
