"""Releases driven by ConfigMap and Secret changes, on a bad day: what a
per-revision copy holds must be the content its revision was hashed from.
Each test failed on the code before its fix."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from canary.config_copies import CopyKeeper
from canary.kube import Conflict
from canary.model import JSON, Color, Observed, Twin
from canary.observe import source_of
from canary.reconcile import Caches, Edges, Reconciler
from canary.revisions import copy_name
from canary.twins import twin_deployment
from tests.unit.objects import cached_actor, source_deployment


class _Empty:
    def get(self, namespace: str, name: str) -> JSON | None:
        return None

    def items(self) -> list[JSON]:
        return []


class _Kube:
    """Records every create with its body; answers with the body."""

    def __init__(self) -> None:
        self.created: dict[str, dict[str, Any]] = {}

    async def create(self, path: str, body: dict[str, Any], **_: object) -> dict[str, Any]:
        self.created[body["metadata"]["name"]] = body
        return body

    async def replace(self, path: str, body: dict[str, Any], **_: object) -> dict[str, Any]:
        return body

    async def patch(
        self, path: str, body: dict[str, Any], *_: object, **__: object
    ) -> dict[str, Any]:
        return {"metadata": {"name": path.rsplit("/", 1)[-1], "annotations": {}}, "spec": {}}

    async def delete(self, path: str, **_: object) -> dict[str, Any]:
        return {}


def _source() -> dict[str, Any]:
    return source_deployment(env_from=[{"configMapRef": {"name": "cfg"}}], generation=2, uid="d-1")


def _configmap(value: str) -> dict[str, Any]:
    return {"metadata": {"name": "cfg", "namespace": "ns"}, "data": {"mode": value}}


def test_a_config_edited_again_before_its_copy_is_made_never_fills_it_with_other_content() -> None:
    """Two writers fight over ConfigMap `cfg` (a GitOps sync and an operator,
    or an edit reverted within a second): the cycle observes `mode: new`
    (revision R2) and decides to roll R2 out, but by the time the twin is
    written the watch has delivered the revert (`mode: old`, the stable's
    content). The copy `cfg-R2` was made from the cache as it is then: R2's
    copy held the stable's config, and since "its content is fixed by its
    name" it is never made again. When `mode: new` lands for good, R2 goes
    out reading `mode: old`, is analysed healthy and promoted; the history
    says the new config serves, and it never ran."""
    deployment = _source()
    observed_cm = _configmap("new")
    source, refs = source_of(deployment, lambda kind, name: observed_cm)
    observed = Observed("ns", "web", "web", {"app": "web"}, source, {})
    reverted = _configmap("old")  # what the cache holds when the twin is written
    cache = {("Deployment", "web"): deployment, ("ConfigMap", "cfg"): reverted}
    kube = _Kube()
    service = {"metadata": {"name": "web", "namespace": "ns", "resourceVersion": "1", "uid": "u"}}
    actor = cached_actor(kube, cache, service)
    empty: Any = _Empty()
    reconciler = Reconciler(Edges(kube=None, prometheus=None), Caches(*[empty] * 5))  # type: ignore[arg-type]
    with contextlib.suppress(Conflict):  # the cycle is retried on what is there then
        asyncio.run(reconciler._apply_twin(actor, observed, refs, [], "green", source.revision, 1))
    copy = kube.created.get(copy_name("cfg", source.revision))
    assert copy is None or copy["data"] == observed_cm["data"], copy
    if copy is None:  # nor a twin whose pods read a copy that is not there
        assert "web-green" not in kube.created, kube.created


def _restore(
    actor: Any, observed: Observed, cache: dict[tuple[str, str], JSON], records: list[JSON]
) -> None:
    """One CopyKeeper pass over `cache`, as the end of a cycle runs it."""
    asyncio.run(
        CopyKeeper().restore(actor, observed, lambda kind, name: cache.get((kind, name)), records)
    )


class _Restorer:
    """The two calls CopyKeeper.restore makes on an Actor."""

    def __init__(self) -> None:
        self.restored: list[tuple[str, str, str, JSON]] = []
        self.events: list[str] = []

    async def restore_config_copy(
        self, kind: str, original: str, revision: str, content: JSON
    ) -> bool:
        self.restored.append((kind, original, revision, content))
        return True

    async def emit(self, event: Any) -> None:
        self.events.append(event.reason)


def test_a_copy_deleted_while_down_is_never_put_back_from_config_edited_since_the_cycle_began() -> (
    None
):
    """A janitor deleted `cfg-R1` while the controller was down; the stable
    twin (R1) reads it. The cycle observes the team's `cfg` unchanged since
    R1 (the source is at R1), so the copy may be made from it; but the
    put-back runs at the end of the cycle, after its writes, and reads `cfg`
    again: edited meanwhile (the next release's config), the stable twin's
    copy got the new content, which every pod it starts from then on reads,
    unanalysed, under the name of the revision that was."""
    deployment = _source()
    source, _ = source_of(deployment, lambda kind, name: _configmap("old"))
    blue = twin_deployment(deployment, "web", "blue", source.revision, 3, source.template)
    cache: dict[tuple[str, str], JSON] = {
        ("Deployment", "web-blue"): blue,
        ("ConfigMap", "cfg"): _configmap("new"),  # edited after the cycle observed it
    }
    twins: dict[Color, Twin] = {"blue": Twin(True, source.revision, 3, 3, service="web")}
    observed = Observed("ns", "web", "web", {"app": "web"}, source, twins)
    records = [{"revision": source.revision, "config": dict(source.config)}]
    actor = _Restorer()
    _restore(actor, observed, cache, records)
    assert all(c[3]["data"] == {"mode": "old"} for c in actor.restored), actor.restored
    assert "ConfigCopyMissing" in actor.events  # told, and how to recover
    # Unchanged, it is put back from the team's object as before.
    cache[("ConfigMap", "cfg")] = _configmap("old")
    again = _Restorer()
    _restore(again, observed, cache, records)
    assert [c[3]["data"] for c in again.restored] == [{"mode": "old"}], again.restored


class _FlakyConfigMaps:
    """The ConfigMap cache: holds only what a template reads; its first GET
    of a newly read object fails (the API server throttles, times out)."""

    def __init__(self) -> None:
        self.held: dict[str, JSON] = {}
        self.fetches = 0

    def get(self, namespace: str, name: str) -> JSON | None:
        return self.held.get(name)

    def items(self) -> list[JSON]:
        return list(self.held.values())

    async def fetch(self, namespace: str, name: str) -> JSON | None:
        from canary.kube import KubeError

        self.fetches += 1
        if self.fetches == 1:
            raise KubeError(503, "ServiceUnavailable", "the server is unable to handle it")
        self.held[name] = _configmap("old")
        return self.held[name]

    def forget(self, namespace: str, name: str) -> None:
        self.held.pop(name, None)


def test_a_failed_fetch_of_a_newly_read_config_is_retried_not_taken_for_a_missing_one() -> None:
    """The team adds `envFrom: cfg` to its template. The cycle asks the API
    server for `cfg` (the watch keeps only what templates read, and delivers
    it again only when it changes) and the GET fails. The next cycle took
    `cfg` as fetched: not in the cache, so "missing", the revision hashed
    without it and the twin's template left reading the team's live `cfg`
    (only what exists is renamed to a copy). That revision rolled out and
    could be promoted: a stable twin reading the live ConfigMap, so the
    team's next edit reaches the serving pods (mounted files within a
    minute, env on any restart) before any rollout analyses it."""
    from canary.kube import KubeError

    configmaps = _FlakyConfigMaps()
    empty: Any = _Empty()
    caches = Caches(empty, empty, empty, configmaps, empty)  # type: ignore[arg-type]
    reconciler = Reconciler(Edges(kube=None, prometheus=None), caches)  # type: ignore[arg-type]
    refs = {("ConfigMap", "cfg")}
    with pytest.raises(KubeError):  # this cycle fails, and is retried
        asyncio.run(reconciler._want(("ns", "web"), refs))
    asyncio.run(reconciler._want(("ns", "web"), refs))
    assert configmaps.get("ns", "cfg") is not None, configmaps.fetches
    assert reconciler.wanted == {("ns", "ConfigMap", "cfg"): 1}


class _Informer:
    """A cache of one kind: what the watches would hold."""

    def __init__(self, *objects: JSON) -> None:
        self.held = {str(o["metadata"]["name"]): o for o in objects}

    def get(self, namespace: str, name: str) -> JSON | None:
        return self.held.get(name)

    def items(self) -> list[JSON]:
        return list(self.held.values())

    def forget(self, namespace: str, name: str) -> None:
        self.held.pop(name, None)

    def remember(self, obj: JSON) -> None:
        if obj.get("metadata", {}).get("name"):
            self.held[str(obj["metadata"]["name"])] = obj

    async def fetch(self, namespace: str, name: str) -> JSON | None:
        return self.held.get(name)


class _Writes(_Kube):
    """Every write, with its path; Events by reason."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[tuple[str, str]] = []
        self.reasons: list[str] = []

    async def create(self, path: str, body: dict[str, Any], **_: object) -> dict[str, Any]:
        self.paths.append(("create", path))
        if "reason" in body:
            self.reasons.append(str(body["reason"]))
        return {**body, "metadata": {**body.get("metadata", {}), "name": "x"}}

    async def replace(self, path: str, body: dict[str, Any], **_: object) -> dict[str, Any]:
        self.paths.append(("replace", path))
        return body

    async def patch(
        self, path: str, body: dict[str, Any], *_: object, **__: object
    ) -> dict[str, Any]:
        self.paths.append(("patch", path))
        return await super().patch(path, body)

    async def get(self, path: str, **_: object) -> dict[str, Any]:
        return {"items": []}


def test_a_deleted_service_hands_back_a_deployment_that_reads_config_without_restoring_it() -> None:
    """The managed Service is deleted (an app moved to another chart); its
    Deployment reads ConfigMap `cfg` and holds the very revision the stable
    twin serves. The hand-back first dropped the ConfigMaps this Service
    read from the cache, then hashed the Deployment's revision without
    `cfg`: another revision than the twin's. So it "set back" the
    Deployment's template to the twin's, with a Warning `SourceRestored`
    saying it held a revision nobody analysed (it did not), and the team's
    Deployment was left reading the controller's frozen copy `cfg-<rev>`:
    its next edit of `cfg` silently reached no pod."""
    from canary.spec import CLAIM_REPLICAS, CLAIM_STABLE, MANAGED_BY
    from canary.twins import twin_deployment

    deployment = _source()
    cfg = _configmap("old")
    source, _ = source_of(deployment, lambda kind, name: cfg)
    deployment["spec"]["replicas"] = 3
    deployment["metadata"]["annotations"] = {
        MANAGED_BY: "web",
        CLAIM_REPLICAS: "3",
        CLAIM_STABLE: source.revision,
    }
    deployment["status"] = {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3}
    deployment["status"]["readyReplicas"] = 3
    blue = twin_deployment(deployment, "web", "blue", source.revision, 3, source.template)
    blue["metadata"]["generation"] = 1
    blue["status"] = {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3}
    blue["status"]["readyReplicas"] = 3
    configmaps = _Informer(cfg)
    empty: Any = _Informer()
    caches = Caches(empty, _Informer(deployment, blue), empty, configmaps, empty)  # type: ignore[arg-type]
    kube = _Writes()
    reconciler = Reconciler(Edges(kube=kube, prometheus=None), caches)  # type: ignore[arg-type]
    # The template was read while the Service was managed.
    reconciler._wants[("ns", "web")] = {("ns", "ConfigMap", "cfg")}
    reconciler.wanted[("ns", "ConfigMap", "cfg")] = 1
    reconciler._missing[("ns", "web")] = 0.0  # gone for long past the grace
    asyncio.run(reconciler._orphans(("ns", "web"), None, 1000.0))
    assert "SourceRestored" not in kube.reasons, (kube.reasons, kube.paths)
    assert ("replace", "/apis/apps/v1/namespaces/ns/deployments/web") not in kube.paths
    assert "Released" in kube.reasons, (kube.reasons, kube.paths)  # handed back as it was
