"""`canary.io/config-tracking` on a bad day (found by an adversarial review
of the opt-out): each test failed on the code before its fix."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from canary.model import JSON
from canary.observe import source_of
from canary.reconcile import Caches, Edges, Reconciler
from canary.revisions import TRACKING
from tests.unit.objects import source_deployment
from tests.unit.test_config_bad_day import _Informer, _Writes


def _deployment(optional: bool = False) -> dict[str, Any]:
    creds = {"name": "creds", "secret": {"secretName": "creds", "optional": optional}}
    return source_deployment([creds], rolled_out=True, generation=1, resourceVersion="1")


def _secret(tracking: str | None = "disabled") -> dict[str, Any]:
    annotations = {TRACKING: tracking} if tracking is not None else {}
    return {
        "metadata": {"name": "creds", "namespace": "ns", "annotations": annotations},
        "data": {"password": "b25l"},
    }


def _service() -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "resourceVersion": "1",
            "uid": "s-1",
            "annotations": {"canary.io/strategy": "canary", "canary.io/deployment": "web"},
        },
        "spec": {"selector": {"app": "web"}},
    }


class _Unwatched(_Informer):
    """A config cache as the controller keeps it: it holds only what some
    template is known to read, so an object read for the first time is
    there only once `_want` has fetched it."""

    def __init__(self, *objects: JSON) -> None:
        super().__init__()
        self.server = {str(o["metadata"]["name"]): o for o in objects}

    async def fetch(self, namespace: str, name: str) -> JSON | None:
        if name in self.server:
            self.held[name] = self.server[name]
        return self.held.get(name)


def test_an_untracked_secret_still_wakes_its_service_when_its_annotation_changes() -> None:
    """Secret `creds` has tracking disabled: its rotations are no releases.
    The team then removes the annotation (tracking on again: a release, as
    the README says) or sets a value nobody can read (an InvalidSpec). The
    controller only wakes a Service for the objects its last cycle named,
    and untracked ones were left out: nothing happened until some other
    change woke it, and meanwhile every edit of `creds`, now meant to be
    analysed, reached the serving pods (they still read it live)."""
    informers: list[Any] = [
        _Informer(_service()),
        _Informer(_deployment()),
        _Informer(),
        _Informer(),
        _Informer(_secret()),
    ]
    caches = Caches(*informers)
    reconciler = Reconciler(Edges(kube=_Writes(), prometheus=None), caches)  # type: ignore[arg-type]
    outcome = asyncio.run(reconciler.reconcile("ns", "web"))
    assert ("Secret", "creds") in outcome.config, outcome


def test_a_tracking_value_nobody_can_read_on_a_newly_read_secret_never_starts_a_release() -> None:
    """The team adds a volume for Secret `creds`, annotated
    `canary.io/config-tracking: "false"`. The spec was checked before the
    cycle fetched what the template newly reads: the cache did not hold
    `creds` yet, so no InvalidSpec, and the cycle went on with `creds`
    taken as tracked, copying it and writing twins as if the value said
    so (the very thing the InvalidSpec is there to prevent)."""
    kube = _Writes()
    informers: list[Any] = [
        _Informer(_service()),
        _Informer(_deployment()),
        _Informer(),
        _Unwatched(),
        _Unwatched(_secret("false")),
    ]
    caches = Caches(*informers)
    reconciler = Reconciler(Edges(kube=kube, prometheus=None), caches)  # type: ignore[arg-type]
    asyncio.run(reconciler.reconcile("ns", "web"))
    assert "InvalidSpec" in kube.reasons, (kube.reasons, kube.paths)
    written = [p for p in kube.paths if "/events" not in p[1]]
    assert not [p for p in written if "secrets" in p[1] or "deployments" in p[1]], written


def test_an_optional_untracked_secret_created_after_the_release_reaches_its_pods() -> None:
    """An `optional` Secret that does not exist is read from a copy that
    does not exist either (so its creation is a release). An External
    Secrets operator (or a rotator that deletes and creates) makes `creds`
    a moment after the Deployment, annotated `disabled`: the revision hash
    left it out whether there or not, so its creation was no release and
    the pods went on reading `creds-<revision>`, which never exists: the
    credentials never reached any pod, silently (optional)."""
    deployment = _deployment(optional=True)
    before, _ = source_of(deployment, lambda kind, name: None)
    volume = before.template["spec"]["volumes"][0]["secret"]["secretName"]
    assert volume == f"creds-{before.revision}"  # what the twin reads
    after, _ = source_of(deployment, lambda kind, name: copy.deepcopy(_secret()))
    assert after.template["spec"]["volumes"][0]["secret"]["secretName"] == "creds"
    # The twin must be templated again to read it: a release.
    assert after.revision != before.revision
    # Rotated, it is still no release.
    rotated = {**_secret(), "data": {"password": "dHdv"}}
    again, _ = source_of(deployment, lambda kind, name: rotated)
    assert again.revision == after.revision
