"""Violations the chaos soak (`make chaos`) found, each made deterministic on
the sandbox. Each test fails on the code the soak found it on; the docstring
names the soak's rule, the seed and commit, and what the careful behaviour is.

Like the soak's checker, the tests judge what is observed (endpoints, the
pods behind them, what those pods run) against what the status claims."""

from __future__ import annotations

import asyncio
from typing import Any

from canary.kube import Kube
from canary.kube.resources import DEPLOYMENTS, ENDPOINTSLICES, PODS, SERVICES
from tests.integration.conftest import RunningController
from tests.integration.helpers import eventually, status_of
from tests.integration.test_rollouts import deploy_app, wait_phase

EDITED = "chaos.canary.io/edited"
STEADY = ("Healthy", "RolledBack")


async def serving(kube: Kube, namespace: str, name: str = "web") -> dict[str, dict[str, str]]:
    """The Service's ready endpoint pods and each pod's own annotations."""
    listing = await kube.get(
        ENDPOINTSLICES.path(namespace), labelSelector=f"kubernetes.io/service-name={name}"
    )
    names = {
        str(e["targetRef"]["name"])
        for s in listing.get("items", [])
        for e in s.get("endpoints") or []
        if (e.get("conditions") or {}).get("ready") is not False
        and (e.get("targetRef") or {}).get("kind") == "Pod"
    }
    pods = await kube.get(PODS.path(namespace))
    return {
        p["metadata"]["name"]: dict(p["metadata"].get("annotations") or {})
        for p in pods.get("items", [])
        if p["metadata"]["name"] in names
    }


async def claims_and_pods(kube: Kube, namespace: str) -> tuple[str, dict[str, dict[str, str]]]:
    service = await kube.get(SERVICES.path(namespace, "web"))
    return str(status_of(service).get("phase", "")), await serving(kube, namespace)


def tells_the_truth(observed: tuple[str, dict[str, dict[str, str]]]) -> bool:
    """Healthy (or RolledBack) may only be claimed while no pod nobody
    released serves, and something serves at all."""
    phase, pods = observed
    edited = [p for p, annotations in pods.items() if EDITED in annotations]
    return phase not in STEADY or (bool(pods) and not edited)


async def test_a_hand_edited_stable_twin_is_not_called_healthy(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """Soak rule `status` (c), seed 1 on 3e32b2f (main): `kubectl edit` of the
    stable twin's pod template (here: pods that fail half their requests)
    rolled the twin to pods nobody released or analysed, and the status kept
    saying `Healthy: serving revision <r> from the blue twin` for as long as
    the soak ran. The twin's revision is read from its annotation, which the
    edit leaves alone. Careful: put the twin back to its recorded template (or
    at least stop calling it Healthy and say why)."""
    await deploy_app(kube, namespace)
    await wait_phase(kube, namespace, "Healthy")
    edited = await kube.patch(
        DEPLOYMENTS.path(namespace, "web-blue"),
        {
            "spec": {
                "template": {
                    "metadata": {
                        "annotations": {EDITED: "by-hand", "sandbox.canary.io/error-rate": "0.5"}
                    }
                }
            }
        },
        patch_type="strategic",
        fieldManager="kubectl-edit",
    )

    await eventually(
        lambda: kube.get(DEPLOYMENTS.path(namespace, "web-blue")),
        lambda twin: undone(twin) or rolled_out(twin, edited["metadata"]["generation"]),
        timeout_s=60,
    )
    await eventually(lambda: claims_and_pods(kube, namespace), tells_the_truth, timeout_s=30)
    for _ in range(10):  # and it stays true
        observed = await claims_and_pods(kube, namespace)
        assert tells_the_truth(observed), observed
        await asyncio.sleep(1)


def undone(twin: dict[str, Any]) -> bool:
    return EDITED not in (twin["spec"]["template"]["metadata"].get("annotations") or {})


def rolled_out(twin: dict[str, Any], generation: int) -> bool:
    """The Deployment controller finished rolling the twin to that generation."""
    status, replicas = twin.get("status") or {}, twin["spec"]["replicas"]
    return (
        int(status.get("observedGeneration", 0)) >= generation
        and status.get("updatedReplicas") == replicas
        and status.get("readyReplicas") == replicas
        and status.get("replicas") == replicas
    )
