"""The sandbox's metrics pipeline: the controller-manager's HPA controller
scales a plain Deployment for real, on the simulated request rate served by
prometheus-adapter through the API server's aggregator."""

from __future__ import annotations

from typing import Any

import pytest

from canary.kube import Kube, NotFound
from canary.kube.resources import DEPLOYMENTS, SERVICES, Resource
from canary.sandbox import cluster, metrics
from canary.sandbox.simulator import RATE_ANNOTATION, SIMULATE_LABEL
from tests.integration.helpers import create_app, eventually

pytestmark = pytest.mark.metrics

HPAS = Resource("autoscaling/v2", "horizontalpodautoscalers")
TARGET_PER_POD = 10  # requests per second per pod the HPA aims at


@pytest.fixture(autouse=True)
def metrics_pipeline(sandbox: cluster.Sandbox) -> None:
    if not sandbox.has_metrics:
        pytest.fail(
            "the sandbox runs without --metrics; start it with `canary sandbox up --metrics`"
        )


def hpa(name: str, low: int, high: int) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": low,
            "maxReplicas": high,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": metrics.METRIC},
                        "target": {"type": "AverageValue", "averageValue": str(TARGET_PER_POD)},
                    },
                }
            ],
            # No waiting out the default five-minute scale-down window.
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0},
                "scaleDown": {"stabilizationWindowSeconds": 0},
            },
        },
    }


async def set_load(kube: Kube, namespace: str, rps: int) -> None:
    await kube.patch(
        SERVICES.path(namespace, "api"), {"metadata": {"annotations": {RATE_ANNOTATION: str(rps)}}}
    )


async def pod_rates(kube: Kube, namespace: str) -> dict[str, Any]:
    """The custom metrics API's answer; empty until the adapter has found the
    pods' series (it looks every 5 s)."""
    path = f"/apis/{metrics.GROUP}/{metrics.VERSION}/namespaces/{namespace}/pods/*/{metrics.METRIC}"
    try:
        return await kube.get(path)
    except NotFound:
        return {}


async def replicas(kube: Kube, namespace: str) -> int:
    return int((await kube.get(DEPLOYMENTS.path(namespace, "api")))["spec"]["replicas"])


async def test_an_hpa_scales_a_plain_deployment_up_when_load_rises_and_down_when_it_falls(
    kube: Kube, namespace: str
) -> None:
    await create_app(kube, namespace, "api", replicas=2, service_labels={SIMULATE_LABEL: "true"})
    await set_load(kube, namespace, 2 * TARGET_PER_POD)  # on target: no change
    await kube.create(HPAS.path(namespace), hpa("api", low=2, high=6))

    # The pipeline answers: the custom metrics API has each pod's rate, and
    # the HPA controller reads it.
    per_pod = await eventually(
        lambda: pod_rates(kube, namespace),
        lambda listing: len(listing.get("items", [])) == 2,
        timeout_s=60,
    )
    assert {item["describedObject"]["kind"] for item in per_pod["items"]} == {"Pod"}
    # The aggregator reaches the adapter on loopback only: an ExternalName
    # Service named 127.0.0.1, never a ClusterIP or an endpoint.
    api_service = await kube.get(
        f"/apis/apiregistration.k8s.io/v1/apiservices/{metrics.VERSION}.{metrics.GROUP}"
    )
    ref = api_service["spec"]["service"]
    route = await kube.get(SERVICES.path(ref["namespace"], ref["name"]))
    assert route["spec"]["type"] == "ExternalName"
    assert route["spec"]["externalName"] == "127.0.0.1"
    assert not api_service["spec"].get("insecureSkipTLSVerify")
    await eventually(
        lambda: kube.get(HPAS.path(namespace, "api")),
        lambda h: bool(h.get("status", {}).get("currentMetrics")),
        timeout_s=60,
    )
    assert await replicas(kube, namespace) == 2

    await set_load(kube, namespace, 10 * TARGET_PER_POD)  # 50 per pod: wants 10, capped at 6
    await eventually(lambda: replicas(kube, namespace), lambda n: n == 6, timeout_s=90)
    scaled = await kube.get(HPAS.path(namespace, "api"))
    assert scaled["status"]["desiredReplicas"] == 6

    await set_load(kube, namespace, TARGET_PER_POD)  # under 2 per pod: back to the minimum
    await eventually(lambda: replicas(kube, namespace), lambda n: n == 2, timeout_s=90)
