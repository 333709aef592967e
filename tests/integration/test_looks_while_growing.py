"""A canary that turns bad while its next step's extra pods cannot come up
(here a ResourceQuota; in life an image pull of minutes, or the
kube-controller-manager down) is rolled back on its analysis, not left
serving its errors until the progress deadline. Real API server, scheduler,
controller-manager, kwok and Prometheus; the simulator's traffic follows
the real EndpointSlices and the pods' own annotations."""

from __future__ import annotations

from canary.kube import Kube
from canary.kube.resources import EVENTS, PODS
from canary.sandbox.simulator import ERROR_RATE_ANNOTATION
from tests.integration.conftest import RunningController
from tests.integration.helpers import eventually, managed_service, pods_quota, service_status
from tests.integration.test_rollouts import deploy_app, release, wait_phase


async def test_a_canary_that_turns_bad_while_its_step_grows_is_rolled_back_on_its_analysis(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    # A deadline far longer than the test: only the analysis can roll back.
    service = managed_service(steps="25,50", progress_deadline="600s")
    await deploy_app(kube, namespace, service=service)  # 3 replicas: step 1 has 1 canary pod
    await wait_phase(kube, namespace, "Healthy")
    await pods_quota(kube, namespace, hard=4, used=3)  # room for step 1's one canary pod
    await release(kube, namespace, "registry.example/web:v2")
    # Step 1 (1 canary pod) passes; step 2 wants more canary pods than the
    # quota has room for, while the one it has keeps serving.
    growing = await eventually(
        lambda: service_status(kube, namespace),
        lambda s: s.get("step") == 1 and "waiting for the canary" in s.get("message", ""),
        timeout_s=60,
    )
    assert growing["canary"] == "green" and not growing["step_ready"], growing
    pods = await kube.get(PODS.path(namespace), labelSelector="canary.io/twin=green")
    serving = [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]
    assert len(serving) == 1, [p["metadata"]["name"] for p in serving]
    # The canary turns bad: half its requests fail from now on.
    name = serving[0]["metadata"]["name"]
    await kube.patch(
        PODS.path(namespace, name), {"metadata": {"annotations": {ERROR_RATE_ANNOTATION: "0.5"}}}
    )
    status = await eventually(
        lambda: service_status(kube, namespace),
        lambda s: s.get("canary") is None,
        timeout_s=90,  # before: held for the whole 600 s deadline, serving errors
    )
    assert status["stable"] == "blue" and status["failed_revision"], status
    events = await kube.get(EVENTS.path(namespace), fieldSelector="involvedObject.name=web")
    rolled = [e for e in events["items"] if e["reason"] == "RolledBack"]
    assert rolled, sorted(e["reason"] for e in events["items"])
    message = rolled[-1]["message"]
    assert "success-rate" in message and "deadline" not in message, message
