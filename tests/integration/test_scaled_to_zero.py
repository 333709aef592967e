"""An app its team keeps at 0 replicas, on the sandbox: a release waits for
it to be scaled up instead of starting pods nobody asked for."""

from __future__ import annotations

import asyncio

from canary.kube import Kube, NotFound
from canary.kube.resources import DEPLOYMENTS
from tests.integration.conftest import RunningController
from tests.integration.helpers import event_reasons, eventually, managed_service, service_status
from tests.integration.test_rollouts import ALWAYS_PASSES, deploy_app, release, wait_phase


async def test_a_release_while_the_app_is_at_zero_waits_until_it_is_scaled_up(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    # An analysis that passes on nothing at all (min-requests 0): only the
    # controller's own rule keeps a release no pod served from a promotion.
    await deploy_app(kube, namespace, replicas=0, service=managed_service(analysis=ALWAYS_PASSES))
    before = (await wait_phase(kube, namespace, "Healthy"))["stable_revision"]
    await release(kube, namespace, "registry.example/web:v2")
    # Three intervals (3 s each) and more: before, a canary pod ran, served
    # alone, and the release was promoted within them.
    await asyncio.sleep(10)
    status = await service_status(kube, namespace)
    assert status["stable_revision"] == before and not status.get("canary"), status
    assert "waits: the app is scaled to 0" in status["message"], status["message"]
    for color in ("blue", "green"):
        try:
            twin = await kube.get(DEPLOYMENTS.path(namespace, f"web-{color}"))
        except NotFound:
            continue
        assert twin["spec"]["replicas"] == 0, f"web-{color}: {twin['spec']['replicas']} pods"
    reasons = await event_reasons(kube, namespace)
    assert "RolloutWaiting" in reasons and "RolloutStarted" not in reasons, reasons
    # The team scales its app up: the release goes out and is promoted.
    await kube.patch(DEPLOYMENTS.path(namespace, "web"), {"spec": {"replicas": 2}})
    promoted = await eventually(
        lambda: service_status(kube, namespace),
        lambda s: s.get("phase") == "Healthy" and s["stable_revision"] != before,
        timeout_s=90,
    )
    assert promoted["replicas"] == 2
    assert (await event_reasons(kube, namespace)).count("RolloutStarted") == 1
