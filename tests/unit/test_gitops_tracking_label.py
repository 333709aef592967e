"""Argo CD's label tracking (`app.kubernetes.io/instance: <app>`, the
default before Argo CD 3.0, or the key set in `application.instanceLabelKey`,
usually `argocd.argoproj.io/instance`) marks every object of an Application.
A live object that carries the label and is not in Git is extraneous: shown
OutOfSync and deleted by an automated sync with `prune: true`. The twins have
no ownerReference (on purpose), so Argo CD does not take them for children
of the team's Deployment: copied onto a twin, the label has the twin pruned,
the serving pods with it, at every sync."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from canary.twins import twin_deployment
from tests.unit.objects import cached_actor, source_deployment

ARGO_LABELS = {"app.kubernetes.io/instance": "web-prod", "argocd.argoproj.io/instance": "web-prod"}


def test_a_twin_carries_no_gitops_tracking_label_of_the_team_deployment() -> None:
    source = source_deployment(labels={"team": "shop", **ARGO_LABELS})
    twin = twin_deployment(source, "web", "blue", "r1", 3, source["spec"]["template"])
    labels = twin["metadata"]["labels"]
    assert not set(ARGO_LABELS) & set(labels), labels
    assert labels["team"] == "shop"  # other labels still go (policies requiring them)


class _Kube:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def replace(self, path: str, body: dict[str, Any], **_: object) -> dict[str, Any]:
        self.bodies.append(copy.deepcopy(body))
        return copy.deepcopy(body)


def test_a_twin_made_with_the_tracking_label_loses_it_at_its_next_template_write() -> None:
    """A twin made by an earlier version keeps others' labels through a
    template write; the tracking label copied then goes."""
    source = source_deployment(labels={"team": "shop", **ARGO_LABELS})
    made = twin_deployment(source, "web", "blue", "r1", 3, source["spec"]["template"])
    made["metadata"]["labels"].update(ARGO_LABELS)  # as an earlier version made it
    cache = {("Deployment", "web-blue"): made, ("Deployment", "web"): source}
    kube = _Kube()
    service = {"metadata": {"name": "web", "namespace": "ns", "resourceVersion": "1"}}
    actor = cached_actor(kube, cache, service)
    asyncio.run(actor.apply_twin("blue", "r2", 1, source, source["spec"]["template"], {}))
    labels = kube.bodies[-1]["metadata"]["labels"]
    assert not set(ARGO_LABELS) & set(labels), labels
