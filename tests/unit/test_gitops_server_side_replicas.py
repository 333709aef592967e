"""A server-side apply (Argo CD `ServerSideApply=true`, Flux) of the team's
Deployment without `replicas`, as the SourceScaled Warning advises, after the
tool had been the last to write the field (its forced apply of `replicas: 3`
outlasted our scale to 0: the write guard gave that fight up as a WriteLoop,
the controller was down, or a policy refused the scale). The applier owned
`spec.replicas` alone: dropping it from its configuration removes the field,
and the API server defaults it to 1, which no field manager owns. Before,
only a client-side apply's default was told apart (its manager wrote the
last-applied annotation): the server-side one was taken as the team scaling
its app to 1, and the stable twin went from 3 pods to 1 under its load."""

from __future__ import annotations

import copy
from typing import Any

from canary.observe import replicas_defaulted
from tests.unit.test_events_refused import _Shell

# managedFields as the API server keeps them after the tool's apply without
# `replicas`: the applier owns what its configuration sets, the controller
# its claim and gate; the defaulted field is nobody's.
APPLIED: dict[str, Any] = {
    "manager": "argocd-controller",
    "operation": "Apply",
    "fieldsV1": {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {"f:selector": {}, "f:template": {"f:spec": {"f:containers": {}}}},
    },
}
OURS: dict[str, Any] = {
    "manager": "canary-controller",
    "operation": "Update",
    "fieldsV1": {
        "f:metadata": {"f:annotations": {"f:canary.io/managed-by": {}}},
        "f:spec": {"f:template": {"f:spec": {"f:schedulingGates": {}}}},
    },
}
SCALED: dict[str, Any] = {  # `kubectl scale --replicas=1`
    "manager": "kubectl",
    "operation": "Update",
    "subresource": "scale",
    "fieldsV1": {"f:spec": {"f:replicas": {}}},
}
APPLIED_ONE: dict[str, Any] = {  # the tool applying `replicas: 1`
    **APPLIED,
    "fieldsV1": {**APPLIED["fieldsV1"], "f:spec": {"f:replicas": {}, "f:selector": {}}},
}


def _deployment(replicas: int, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"managedFields": list(entries)}, "spec": {"replicas": replicas}}


def test_a_replicas_field_a_server_side_apply_dropped_is_told_from_a_scale_to_one() -> None:
    assert replicas_defaulted(_deployment(1, APPLIED, OURS))
    assert not replicas_defaulted(_deployment(1, APPLIED, OURS, SCALED))  # kubectl scale
    assert not replicas_defaulted(_deployment(1, APPLIED_ONE, OURS))  # Git says 1
    assert not replicas_defaulted(_deployment(2, APPLIED, OURS))
    # No managedFields at all (an API server that keeps none): nothing to tell by.
    assert not replicas_defaulted(_deployment(1))


def test_a_server_side_apply_without_replicas_keeps_the_app_at_its_size() -> None:
    shell = _Shell()
    shell.kube.refusing = None
    shell.cycle()
    source = copy.deepcopy(shell.informers[1].get("ns", "web"))
    source["spec"]["replicas"] = 1  # removed by the apply, defaulted by the API server
    source["metadata"]["managedFields"] = [APPLIED, OURS]
    shell.informers[1].remember(source)
    for _ in range(3):
        shell.cycle()
    assert not shell.failures, shell.failures
    assert shell.informers[1].get("ns", "web")["spec"]["replicas"] == 0
    blue = shell.informers[1].get("ns", "web-blue")
    assert blue["spec"]["replicas"] == 3, "3 pods served; a defaulted field scaled the app to 1"
    assert shell.status()["replicas"] == 3, shell.status()
