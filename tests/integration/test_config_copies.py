"""Config copies (`<name>-<revision>`, what a twin's pods read) deleted by
hand: the running pods go on, but any new pod of that twin (a restart, a
drain, a scale-up) could not start. kwok starts pods without reading their
config, so these tests watch the copies themselves and the Events."""

from __future__ import annotations

import asyncio
from typing import Any

from canary.kube import Kube, NotFound
from canary.kube.resources import CONFIGMAPS, DEPLOYMENTS, SECRETS
from tests.integration.conftest import RunningController
from tests.integration.helpers import event_reasons, eventually
from tests.integration.test_rollouts import deploy_app, wait_phase

READS_CONFIG = {
    "containers": [
        {
            "name": "app",
            "image": "registry.example/web:v1",
            "envFrom": [
                {"configMapRef": {"name": "web-config"}},
                # Optional and absent: its copy never existed either, and is no loss.
                {"configMapRef": {"name": "web-extra", "optional": True}},
            ],
            "volumeMounts": [{"name": "tls", "mountPath": "/tls"}],
        }
    ],
    "volumes": [{"name": "tls", "secret": {"secretName": "web-tls"}}],
}


async def _app_reading_config(kube: Kube, namespace: str) -> str:
    """The managed app, Healthy; the revision its stable twin runs."""
    await kube.create(
        CONFIGMAPS.path(namespace),
        {"metadata": {"name": "web-config"}, "data": {"greeting": "hello"}},
    )
    await kube.create(
        SECRETS.path(namespace),
        {"metadata": {"name": "web-tls"}, "stringData": {"key": "s3cret"}},
    )
    await deploy_app(kube, namespace, template=READS_CONFIG)
    healthy = await wait_phase(kube, namespace, "Healthy")
    return str(healthy["stable_revision"])


async def _copy_deleted_while_down(
    kube: Kube, namespace: str, controller: RunningController
) -> str:
    """The app Healthy, then its ConfigMap copy deleted with the controller
    stopped (left stopped); the copy's path."""
    revision = await _app_reading_config(kube, namespace)
    config = CONFIGMAPS.path(namespace, f"web-config-{revision}")
    await controller.stop()
    await kube.delete(config)
    return config


async def _get(kube: Kube, path: str) -> dict[str, Any] | None:
    try:
        return await kube.get(path)
    except NotFound:
        return None


async def test_copies_deleted_by_hand_are_put_back_with_their_content(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    revision = await _app_reading_config(kube, namespace)
    config = CONFIGMAPS.path(namespace, f"web-config-{revision}")
    secret = SECRETS.path(namespace, f"web-tls-{revision}")
    before = (await kube.get(config))["data"], (await kube.get(secret))["data"]
    await kube.delete(config)
    await kube.delete(secret)
    back = await eventually(lambda: _get(kube, config), lambda found: found is not None)
    assert back is not None and back["data"] == before[0] == {"greeting": "hello"}
    tls = await eventually(lambda: _get(kube, secret), lambda found: found is not None)
    assert tls is not None and tls["data"] == before[1]
    reasons = await eventually(
        lambda: event_reasons(kube, namespace), lambda r: r.count("ConfigRestored") == 2
    )
    assert "ConfigCopyMissing" not in reasons


async def test_a_copy_deleted_while_the_controller_was_down_comes_back_from_the_original(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    config = await _copy_deleted_while_down(kube, namespace, controller)
    await controller.start()
    back = await eventually(lambda: _get(kube, config), lambda found: found is not None)
    assert back is not None and back["data"] == {"greeting": "hello"}
    await eventually(lambda: event_reasons(kube, namespace), lambda r: "ConfigRestored" in r)


async def test_a_copy_lost_with_its_original_changed_is_a_warning_saying_how_to_recover(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    config = await _copy_deleted_while_down(kube, namespace, controller)
    # The team changed its ConfigMap meanwhile: the content of the lost copy
    # is nowhere (and the change is a release of its own).
    await kube.patch(CONFIGMAPS.path(namespace, "web-config"), {"data": {"greeting": "bonjour"}})
    await controller.start()
    reasons = await eventually(
        lambda: event_reasons(kube, namespace), lambda r: "ConfigCopyMissing" in r
    )
    assert "ConfigRestored" not in reasons
    assert reasons.count("ConfigCopyMissing") == 1  # web-config's; web-extra's never existed
    assert await _get(kube, config) is None  # never made up from the changed original


async def test_an_app_mounting_a_service_account_token_secret_is_adopted(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """A legacy ServiceAccount token Secret mounted as a volume: its copy kept
    the type `kubernetes.io/service-account-token` without the annotation
    that type requires, the API server refused it (422) at every cycle, and
    the Service stayed Pending for good."""
    await kube.create(
        f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": "web"}}
    )
    await kube.create(
        SECRETS.path(namespace),
        {
            "metadata": {
                "name": "web-token",
                "annotations": {"kubernetes.io/service-account.name": "web"},
            },
            "type": "kubernetes.io/service-account-token",
        },
    )
    template = {
        "containers": [
            {
                "name": "app",
                "image": "registry.example/web:v1",
                "volumeMounts": [{"name": "token", "mountPath": "/var/run/legacy"}],
            }
        ],
        "volumes": [{"name": "token", "secret": {"secretName": "web-token"}}],
    }
    await deploy_app(kube, namespace, template=template)
    healthy = await wait_phase(kube, namespace, "Healthy")
    copy = await kube.get(SECRETS.path(namespace, f"web-token-{healthy['stable_revision']}"))
    original = await kube.get(SECRETS.path(namespace, "web-token"))
    # The same files in the pod; an Opaque copy, which no token controller rewrites.
    assert copy["type"] == "Opaque"
    assert copy.get("data") == original.get("data")


async def test_a_secret_with_tracking_disabled_is_read_live_and_its_rotation_is_no_release(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """A Secret an operator rotates (short-lived credentials) annotated
    `canary.io/config-tracking: disabled`: the twins read it by its own name,
    no copy is made, and a rotation goes to every pod with no rollout (a
    frozen copy let the credentials expire on the serving pods). The
    ConfigMap next to it is still tracked: its change is a release."""
    await kube.create(
        CONFIGMAPS.path(namespace),
        {"metadata": {"name": "web-config"}, "data": {"greeting": "hello"}},
    )
    await kube.create(
        SECRETS.path(namespace),
        {
            "metadata": {
                "name": "web-tls",
                "annotations": {"canary.io/config-tracking": "disabled"},
            },
            "stringData": {"key": "one"},
        },
    )
    await deploy_app(kube, namespace, template=READS_CONFIG)
    healthy = await wait_phase(kube, namespace, "Healthy")
    revision, stable = healthy["stable_revision"], healthy["stable"]
    twin = await kube.get(DEPLOYMENTS.path(namespace, f"web-{stable}"))
    volumes = twin["spec"]["template"]["spec"]["volumes"]
    assert volumes[0]["secret"]["secretName"] == "web-tls", volumes
    assert await _get(kube, SECRETS.path(namespace, f"web-tls-{revision}")) is None
    await kube.patch(SECRETS.path(namespace, "web-tls"), {"stringData": {"key": "two"}})
    await asyncio.sleep(5)  # several cycles: the Secret's watch event wakes the Service
    assert "RolloutStarted" not in await event_reasons(kube, namespace)
    await kube.patch(CONFIGMAPS.path(namespace, "web-config"), {"data": {"greeting": "hi"}})
    await eventually(
        lambda: event_reasons(kube, namespace), lambda r: "RolloutStarted" in r, timeout_s=30
    )
    # The release's twin reads the Secret live too, and its own ConfigMap copy.
    canary = "green" if stable == "blue" else "blue"
    made = await eventually(
        lambda: _get(kube, DEPLOYMENTS.path(namespace, f"web-{canary}")),
        lambda found: found is not None,
    )
    assert made is not None
    spec = made["spec"]["template"]["spec"]
    assert spec["volumes"][0]["secret"]["secretName"] == "web-tls"
    env = spec["containers"][0]["envFrom"][0]["configMapRef"]["name"]
    assert env.startswith("web-config-") and env != f"web-config-{revision}"
