"""A team that deploys with Argo CD or Flux: the examples in
manifests/examples/gitops/ keep the controller's writes out of their diffs,
and a forced server-side apply without them is undone by the controller
with the Service never losing its ready endpoints.

Neither Argo CD nor Flux runs here. What they do to an object is: a
server-side apply dry run of the Git manifest (with force, under their own
field manager), compared with the live object minus the ignored paths; and a
real forced server-side apply when they sync. Both are done below against
the real API server with the same field-manager names."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from canary.kube import Conflict, Informer, Kube, WatchEvent
from canary.kube.resources import DEPLOYMENTS, ENDPOINTSLICES, EVENTS, SERVICES, Resource
from canary.observe import ready_endpoints
from tests.integration.conftest import RunningController
from tests.integration.helpers import (
    deployment,
    event_reasons,
    eventually,
    managed_service,
    service_status,
)
from tests.integration.test_rollouts import wait_phase

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples" / "gitops"
CONTROLLER_MANAGER = "canary-controller"


def git_manifests(namespace: str) -> list[dict[str, Any]]:
    """What the team keeps in Git: a Deployment with replicas, a managed Service."""
    source = deployment("web", 3, {"app": "web"})
    source.update(apiVersion="apps/v1", kind="Deployment")
    service = managed_service()
    service.update(apiVersion="v1", kind="Service")
    for obj in (source, service):
        obj["metadata"]["namespace"] = namespace
    return [source, service]


def where(obj: dict[str, Any]) -> Resource:
    return DEPLOYMENTS if obj["kind"] == "Deployment" else SERVICES


async def server_side_apply(
    kube: Kube, obj: dict[str, Any], manager: str, *, force: bool, dry_run: bool = False
) -> dict[str, Any]:
    query: dict[str, str | bool] = {"fieldManager": manager, "force": force}
    if dry_run:
        query["dryRun"] = "All"
    path = where(obj).path(obj["metadata"]["namespace"], obj["metadata"]["name"])
    return await kube.patch(path, obj, patch_type="apply", **query)


_VOLATILE = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp")


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj.pop("status", None)
    for key in _VOLATILE:
        obj["metadata"].pop(key, None)
    return obj


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def differences(desired: Any, live: Any, at: str = "") -> set[str]:
    """JSON pointers (RFC 6901) where two objects differ."""
    if isinstance(desired, dict) and isinstance(live, dict):
        found: set[str] = set()
        for key in desired.keys() | live.keys():
            found |= differences(desired.get(key), live.get(key), f"{at}/{_escape(key)}")
        return found
    return set() if desired == live else {at}


def owned_by(obj: dict[str, Any], manager: str) -> set[str]:
    """The JSON pointers of the fields a field manager owns (managedFields)."""

    def walk(fields: dict[str, Any], at: str) -> set[str]:
        found = set()
        for key, sub in fields.items():
            if key == ".":
                continue
            if not key.startswith("f:"):
                continue  # k: and v: entries are list items; not used here
            pointer = f"{at}/{_escape(key[2:])}"
            found |= walk(sub, pointer) if sub else {pointer}
        return found

    return {
        pointer
        for entry in obj["metadata"].get("managedFields") or []
        if entry.get("manager") == manager
        for pointer in walk(entry.get("fieldsV1") or {}, "")
    }


def ignored(pointer: str, rules: set[str]) -> bool:
    return any(pointer == rule or pointer.startswith(rule + "/") for rule in rules)


async def drift(kube: Kube, namespace: str, manager: str) -> dict[str, set[str]]:
    """What the GitOps tool's diff shows, per kind: the dry-run result of
    applying Git (forced, as a sync would) against the live object."""
    shown = {}
    for obj in git_manifests(namespace):
        live = await kube.get(where(obj).path(namespace, obj["metadata"]["name"]))
        desired = await server_side_apply(kube, obj, manager, force=True, dry_run=True)
        shown[obj["kind"]] = differences(_comparable(desired), _comparable(live))
    return shown


def argo_rules(example: str, kind: str, live: dict[str, Any]) -> set[str]:
    application = yaml.safe_load((EXAMPLES / example).read_text())
    rules: set[str] = set()
    for rule in application["spec"]["ignoreDifferences"]:
        if rule["kind"] == kind:
            rules |= set(rule.get("jsonPointers") or [])
            for manager in rule.get("managedFieldsManagers") or []:
                rules |= owned_by(live, manager)
    return rules


def flux_rules(kind: str) -> set[str]:
    kustomization = yaml.safe_load((EXAMPLES / "flux-kustomization.yaml").read_text())
    return {
        path
        for rule in kustomization["spec"]["driftIgnoreRules"]
        if rule.get("target", {}).get("kind", kind) == kind
        for path in rule["paths"]
    }


async def adopted(kube: Kube, namespace: str, manager: str) -> None:
    for obj in git_manifests(namespace):
        await server_side_apply(kube, obj, manager, force=True)
    await wait_phase(kube, namespace, "Healthy")
    # The Deployment controller has seen our last write to the source (the
    # gate): else it bumps deployment.kubernetes.io/revision between the
    # live read and the dry-run of a diff, which then shows it (the clean-
    # clone run at 1cdb57d saw that once).
    await eventually(
        lambda: kube.get(DEPLOYMENTS.path(namespace, "web")),
        lambda d: d.get("status", {}).get("observedGeneration") == d["metadata"]["generation"],
    )


async def test_the_documented_ignore_rules_leave_nothing_in_argo_cd_or_flux_diffs(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    await adopted(kube, namespace, "argocd-controller")
    shown = await drift(kube, namespace, "argocd-controller")
    # Without rules, exactly the controller's two fields show; its status
    # annotation never does (Git does not set it, so no applier owns it).
    expected = {"Service": {"/spec/selector/canary.io~1twin"}, "Deployment": {"/spec/replicas"}}
    assert shown == expected, shown
    for kind, pointers in shown.items():
        live = await kube.get(
            (SERVICES if kind == "Service" else DEPLOYMENTS).path(namespace, "web")
        )
        left = {
            p for p in pointers if not ignored(p, argo_rules("argocd-application.yaml", kind, live))
        }
        assert not left, f"Argo CD would still show {kind} {left}"
        left = {p for p in pointers if not ignored(p, flux_rules(kind))}
        assert not left, f"Flux would still correct {kind} {left}"
        assert owned_by(live, CONTROLLER_MANAGER), f"no field of the {kind} is the controller's"
        rules = argo_rules("argocd-managed-fields.yaml", kind, live)
        left = {p for p in pointers if not ignored(p, rules)}
        assert not left, f"managedFieldsManagers would still show {kind} {left}"


async def test_a_forced_sync_that_resets_the_selector_is_undone_and_never_empties_the_service(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    await adopted(kube, namespace, "kustomize-controller")
    service, source = (
        next(o for o in git_manifests(namespace) if o["kind"] == kind)
        for kind in ("Service", "Deployment")
    )
    twin_selector = {"app": "web", "canary.io/twin": "blue"}
    live = await kube.get(SERVICES.path(namespace, "web"))
    assert live["spec"]["selector"] == twin_selector
    # Without force, the apply conflicts: the controller owns the selector.
    with pytest.raises(Conflict, match=r"\.spec\.selector"):
        await server_side_apply(kube, service, "kustomize-controller", force=False)

    counts: list[int] = []
    slices: dict[str, Any] = {}

    def record(event: WatchEvent) -> None:
        if event.object["metadata"].get("labels", {}).get("kubernetes.io/service-name") != "web":
            return
        if event.type == "DELETED":
            slices.pop(event.key[1], None)
        else:
            slices[event.key[1]] = event.object
        counts.append(len(ready_endpoints(slices.values())))

    watcher = Informer(kube, ENDPOINTSLICES, namespace=namespace, on_event=record)
    watching = asyncio.create_task(watcher.run())
    await watcher.synced.wait()
    try:
        # What Flux does on every reconcile, and Argo CD on a self-heal sync.
        loop = asyncio.get_running_loop()
        began = loop.time()
        reset = await server_side_apply(kube, service, "kustomize-controller", force=True)
        assert reset["spec"]["selector"] == {"app": "web"}
        await eventually(
            lambda: kube.get(SERVICES.path(namespace, "web")),
            lambda s: s["spec"]["selector"] == twin_selector,
            timeout_s=30,
            every_s=0.05,
        )
        print(f"selector restored {loop.time() - began:.3f} s after the forced apply")
        # Git's replicas: 3 scales the source up; the controller takes it back.
        await server_side_apply(kube, source, "kustomize-controller", force=True)
        await eventually(
            lambda: kube.get(DEPLOYMENTS.path(namespace, "web")),
            lambda d: d["spec"]["replicas"] == 0,
            timeout_s=30,
        )
        await asyncio.sleep(1)  # let the slices settle before the last count
    finally:
        watching.cancel()
    assert counts and min(counts) > 0, counts
    assert "SourceScaled" in await event_reasons(kube, namespace)
    restored = await kube.get(
        EVENTS.path(namespace), fieldSelector="involvedObject.name=web,reason=SelectorRestored"
    )
    assert any("kustomize-controller" in e["message"] for e in restored["items"]), restored


async def test_a_sync_with_an_annotation_typo_mid_blue_green_never_leaves_the_preview_serving(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """A forced sync resets the selector and, in the same commit, breaks an
    annotation. Before, nothing was put back while the annotations were
    invalid: the full-size preview twin served production, unanalysed,
    until someone fixed the typo."""
    source, service = git_manifests(namespace)
    service["metadata"]["annotations"].update(
        {"canary.io/strategy": "blue-green", "canary.io/interval": "60s"}
    )
    for obj in (source, service):
        await server_side_apply(kube, obj, "argocd-controller", force=True)
    await wait_phase(kube, namespace, "Healthy")
    source["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.example/web:v2"
    await server_side_apply(kube, source, "argocd-controller", force=True)
    await eventually(  # the preview twin serves its preview, at full size
        lambda: service_status(kube, namespace),
        lambda s: s.get("canary") == "green" and bool(s.get("step_ready")),
    )
    service["metadata"]["annotations"]["canary.io/interval"] = "30x"
    reset = await server_side_apply(kube, service, "argocd-controller", force=True)
    assert reset["spec"]["selector"] == {"app": "web"}
    await eventually(
        lambda: kube.get(SERVICES.path(namespace, "web")),
        lambda s: s["spec"]["selector"] == {"app": "web", "canary.io/twin": "blue"},
        timeout_s=30,
    )
    assert {"InvalidSpec", "SelectorRestored"} <= set(await event_reasons(kube, namespace))


async def test_a_server_side_apply_that_drops_replicas_keeps_the_app_at_its_size(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """Argo CD with ServerSideApply=true, after its forced `replicas: 3` was
    the last write to the field (the controller down for the sync), applies
    the manifest without `replicas` as SourceScaled advises: the field is
    reset to the API server's default, 1, owned by no field manager. That 1
    is nobody's size: the stable twin keeps its 3 pods."""
    await adopted(kube, namespace, "argocd-controller")
    source = next(o for o in git_manifests(namespace) if o["kind"] == "Deployment")
    await controller.stop()
    await server_side_apply(kube, source, "argocd-controller", force=True)
    without = copy.deepcopy(source)
    del without["spec"]["replicas"]
    live = await server_side_apply(kube, without, "argocd-controller", force=True)
    # What the real API server does with a dropped field nobody else owns.
    assert live["spec"]["replicas"] == 1
    assert "/spec/replicas" not in set().union(
        *(owned_by(live, e["manager"]) for e in live["metadata"]["managedFields"])
    )
    await controller.start()
    await eventually(
        lambda: kube.get(DEPLOYMENTS.path(namespace, "web")),
        lambda d: d["spec"]["replicas"] == 0,
        timeout_s=30,
    )
    await asyncio.sleep(2)  # a decision taking the 1 for a size would have scaled by now
    status = await service_status(kube, namespace)
    twin = await kube.get(DEPLOYMENTS.path(namespace, f"web-{status['stable']}"))
    assert (status["replicas"], twin["spec"]["replicas"]) == (3, 3)
