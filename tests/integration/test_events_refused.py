"""Kubernetes Events refused for good, against the real sandbox: the
controller's identity may write Services, Deployments and ConfigMaps in the
namespace, but not create Events (RBAC, as a platform team caps them)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import generate_latest

from canary.kube import ApiError, Kube, connect
from canary.kube.resources import EVENTS, SERVICES, Resource
from canary.sandbox import cluster
from tests.integration.conftest import RunningController, running_controller
from tests.integration.helpers import eventually, history_of, kubeconfig_of
from tests.integration.test_rollouts import BAD, deploy_app, release, wait_phase

ROLES = Resource("rbac.authorization.k8s.io/v1", "roles")
ROLEBINDINGS = Resource("rbac.authorization.k8s.io/v1", "rolebindings")
SERVICEACCOUNTS = Resource("v1", "serviceaccounts")
QUOTAS = Resource("v1", "resourcequotas")
RBAC = Path(__file__).parents[2] / "manifests" / "base" / "rbac.yaml"


def _ended(records: list[dict[str, Any]], image: str) -> dict[str, Any] | None:
    for record in records:
        if image in str(record.get("images")) and record.get("outcome") not in (
            None,
            "progressing",
        ):
            return record
    return None


def _probe(namespace: str) -> dict[str, Any]:
    return {
        "metadata": {"generateName": "probe-", "namespace": namespace},
        "involvedObject": {"kind": "Service", "name": "nothing", "namespace": namespace},
        "reason": "Probe",
        "message": "is it refused?",
        "type": "Normal",
    }


async def _without_events(kube: Kube, sandbox: cluster.Sandbox, namespace: str, tmp: Path) -> Kube:
    """A client for ServiceAccount `canary`, bound in `namespace` to the
    shipped ClusterRole's rules minus `create` on events."""
    shipped = next(d for d in yaml.safe_load_all(RBAC.read_text()) if d["kind"] == "ClusterRole")
    rules = [r for r in shipped["rules"] if "events" not in r["resources"]]
    await kube.create(ROLES.path(namespace), {"metadata": {"name": "canary"}, "rules": rules})
    await kube.create(SERVICEACCOUNTS.path(namespace), {"metadata": {"name": "canary"}})
    binding = {
        "metadata": {"name": "canary"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "canary"},
        "subjects": [{"kind": "ServiceAccount", "name": "canary", "namespace": namespace}],
    }
    await kube.create(ROLEBINDINGS.path(namespace), binding)
    config = await asyncio.to_thread(kubeconfig_of, sandbox, namespace, "canary", tmp)
    return await connect(str(config))


async def test_a_quota_on_count_events_is_not_enforced_by_the_api_server(
    kube: Kube, namespace: str
) -> None:
    """What a platform team may try first: Kubernetes' quota ignores Events
    (its default ignored resources), so a quota of 0 on count/events still
    lets one be created. The refusals that do happen are RBAC, an admission
    policy and the EventRateLimit plugin (not enabled in the sandbox)."""
    quota = {"metadata": {"name": "events"}, "spec": {"hard": {"count/events": "0"}}}
    await kube.create(QUOTAS.path(namespace), quota)
    await eventually(
        lambda: kube.get(QUOTAS.path(namespace, "events")),
        lambda q: "hard" in (q.get("status") or {}),
        timeout_s=60,
    )
    created = await kube.create(EVENTS.path(namespace), _probe(namespace))
    assert created["reason"] == "Probe"


async def test_rollouts_promote_and_roll_back_while_every_event_is_refused(
    kube: Kube, sandbox: cluster.Sandbox, namespace: str, tmp_path: Path
) -> None:
    """Before, a refused Event cut each cycle like a refused scale, so the
    first step that passed never advanced (its StepAdvanced came before the
    scale; retried every 30 s for good). Now a good release is promoted, a
    bad one rolled back with its status saying so, no Event of ours lands,
    the status says why, and the history has every Event."""
    limited = await _without_events(kube, sandbox, namespace, tmp_path)
    try:
        with contextlib.suppress(ApiError):  # refused: what the controller meets
            await limited.create(EVENTS.path(namespace), _probe(namespace))
            raise AssertionError("the ServiceAccount may create Events")
        async with running_controller(limited, sandbox, namespace) as running:
            await _promoted_then_rolled_back(kube, namespace, running)
    finally:
        await limited.close()


async def _promoted_then_rolled_back(
    kube: Kube, namespace: str, running: RunningController
) -> None:
    await deploy_app(kube, namespace)
    await wait_phase(kube, namespace, "Healthy")
    await release(kube, namespace, "registry.example/web:v2")
    records = await eventually(
        lambda: history_of(kube, namespace), lambda r: bool(_ended(r, "web:v2")), timeout_s=120
    )
    good = _ended(records, "web:v2")
    assert good is not None and good["outcome"] == "promoted", good
    reasons = [a["reason"] for a in good["actions"]]
    assert "StepAdvanced" in reasons and "Promoted" in reasons, reasons  # the history has them

    await release(kube, namespace, "registry.example/web:v3", BAD)
    records = await eventually(
        lambda: history_of(kube, namespace), lambda r: bool(_ended(r, "web:v3")), timeout_s=120
    )
    bad = _ended(records, "web:v3")
    assert bad is not None and bad["outcome"] == "rolled-back", bad
    status = await wait_phase(kube, namespace, "RolledBack", timeout_s=30)
    assert status["stable_revision"] == good["revision"] and not status.get("canary"), status
    service = await kube.get(SERVICES.path(namespace, "web"))
    assert service["spec"]["selector"].get("canary.io/twin") == status["stable"]
    assert "forbidden" in status.get("events_refused", ""), status

    # Not one Event of ours landed. The API server's own may (its ClusterIP
    # repair loop told ClusterIPNotAllocated of the Service once, in a
    # clean-clone run), so only ours are counted.
    events = (await kube.get(EVENTS.path(namespace)))["items"]
    ours = [e["reason"] for e in events if (e.get("source") or {}).get("component") == "canary"]
    assert ours == [], ours
    assert not [e for e in events if e.get("reportingComponent") == "canary"], events
    assert running.controller is not None
    dropped = [
        float(line.rsplit(" ", 1)[1])
        for line in generate_latest(running.controller.metrics.registry).decode().splitlines()
        if line.startswith("canary_events_dropped_total{")
    ]
    assert sum(dropped) >= 4, dropped  # at least started, advanced, promoted, rolled back
