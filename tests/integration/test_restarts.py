"""A canary whose container restarts while every check passes (max-restarts),
against the real sandbox. kwok plays the kubelet, so the restarts are written
to the pod's status as a kubelet writes them after an OOM kill: the real API
server, the controller's pods watch and its decision, nothing mocked."""

from __future__ import annotations

from typing import Any

from canary.kube import Kube
from canary.kube.resources import DEPLOYMENTS, PODS
from canary.spec import TWIN_LABEL
from tests.integration.conftest import RunningController
from tests.integration.helpers import eventually, history_of, managed_service, service_status, told
from tests.integration.test_rollouts import (
    deploy_app,
    release,
    selector,
    wait_phase,
)


async def _restart(kube: Kube, namespace: str, pod: str, count: int) -> None:
    """As the kubelet reports a container OOM-killed and started again."""
    status = {
        "containerStatuses": [
            {
                "name": "app",
                "restartCount": count,
                "ready": True,
                "image": "registry.example/web:v2",
                "imageID": "",
                "started": True,
                "state": {"running": {"startedAt": "2026-12-02T00:00:00Z"}},
                "lastState": {
                    "terminated": {
                        "exitCode": 137,
                        "reason": "OOMKilled",
                        "startedAt": "2026-12-01T23:59:00Z",
                        "finishedAt": "2026-12-01T23:59:59Z",
                    }
                },
            }
        ]
    }
    await kube.patch(f"{PODS.path(namespace, pod)}/status", {"status": status}, "strategic")


async def _canary_pod(kube: Kube, namespace: str, twin: str) -> str:
    pods: dict[str, Any] = await kube.get(
        PODS.path(namespace), labelSelector=f"{TWIN_LABEL}={twin}"
    )
    return str(pods["items"][0]["metadata"]["name"])


async def test_a_canary_container_restarting_twice_is_rolled_back_though_its_checks_pass(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    # A check every 60 s: the checks that would pass never come in the test.
    await deploy_app(kube, namespace, service=managed_service(interval="60s"))
    await wait_phase(kube, namespace, "Healthy")
    await release(kube, namespace, "registry.example/web:v2")
    status = await eventually(
        lambda: service_status(kube, namespace),
        lambda s: s.get("phase") == "Progressing" and bool(s.get("step_ready")),
        timeout_s=60,
    )
    assert status["canary"] == "green", status
    pod = await _canary_pod(kube, namespace, "green")
    await _restart(kube, namespace, pod, 2)
    status = await wait_phase(kube, namespace, "RolledBack", timeout_s=30)
    assert await selector(kube, namespace) == {"app": "web", "canary.io/twin": "blue"}
    reason = (
        f"canary pod {pod}: container app restarted 2 times "
        "(max-restarts 1; last exit OOMKilled, code 137)"
    )
    assert any(reason in m for m in await told(kube, namespace, "PodRestarts"))
    record = (await history_of(kube, namespace))[-1]
    assert record["outcome"] == "rolled-back" and reason in record["reason"], record
    canary = await kube.get(DEPLOYMENTS.path(namespace, "web-green"))
    assert canary["spec"]["replicas"] == 0
