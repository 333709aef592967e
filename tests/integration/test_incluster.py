"""The controller as the manifests run it: the image built by following the
Dockerfile, run as the Deployment's pod (service-account token from the
TokenRequest API, the cluster CA verified, uid 10001, read-only root, no
home, leader election in canary-system), through every kind of rollout.
The API server's audit log then shows that it was never refused and that it
used every permission manifests/base/rbac.yaml grants."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from canary.kube import Kube, NotFound
from canary.kube.resources import (
    CONFIGMAPS,
    DEPLOYMENTS,
    HPAS,
    LEASES,
    NAMESPACES,
    SECRETS,
    SERVICES,
)
from canary.sandbox import cluster, pki
from canary.sandbox.binaries import binary_dir
from tests.integration import dockerfile, pod, rootfs
from tests.integration.helpers import (
    event_reasons,
    eventually,
    history_of,
    managed_service,
    service_status,
)
from tests.integration.test_rollouts import BAD, deploy_app, release

ROOT = Path(__file__).resolve().parents[2]
# Mount namespaces, overlay mounts and changing uid need root (CI runs as root).
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for mount namespaces"),
    # The first test also builds the image: 2.5 min here, near 10 on a loaded machine.
    pytest.mark.timeout(1800),
]
ACCOUNT = "system:serviceaccount:canary-system:canary-controller"


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> dockerfile.Stage:
    """The image, built once per session by following the Dockerfile (a
    minute or more: pip downloads every dependency, as `docker build` does).
    CANARY_IMAGE_DIR keeps it between sessions: built there when empty,
    reused as it is otherwise (so it may hold older code)."""
    keep = os.environ.get("CANARY_IMAGE_DIR")
    if keep and (built := dockerfile.load(Path(keep))) is not None:
        return built
    out = Path(keep) if keep else tmp_path_factory.mktemp("image")
    out.mkdir(parents=True, exist_ok=True)
    return dockerfile.build(ROOT / "Dockerfile", ROOT, out, out / "build.log")


async def metrics(port: int) -> dict[str, float]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        text = await response.text()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


async def metric(port: int, name: str) -> float:
    try:
        return (await metrics(port)).get(name, 0.0)
    except aiohttp.ClientError:
        return -1.0


def test_the_image_runs_as_uid_10001_with_nothing_writable(image: dockerfile.Stage) -> None:
    probe = (
        "id -u; id -g; canary --help >/dev/null && echo cli-ok; "
        "python -c 'import canary; print(canary.__file__)'; "
        'for d in / /tmp /opt/canary "$HOME"; do touch "$d/x" 2>/dev/null && echo "wrote $d"; done;'
        "true"
    )
    done = rootfs.run(
        image.layer,
        ["/bin/sh", "-c", probe],
        env={**image.env, "HOME": image.home()},
        uid=image.uid_gid()[0],
        gid=image.uid_gid()[1],
        read_only=True,
    )
    lines = done.stdout.split()
    assert lines[:3] == ["10001", "10001", "cli-ok"], done.stdout + done.stderr
    # The installed package, not a source tree: the image has no /src.
    assert lines[3] == "/opt/canary/lib/python3.11/site-packages/canary/__init__.py"
    assert "wrote" not in done.stdout, done.stdout
    assert image.entrypoint == ["canary"] and image.cmd == ["run"]
    assert not list(image.layer.path("/opt/canary").rglob("__pycache__"))


async def copies(kube: Kube, namespace: str) -> list[str]:
    """Our HPA copies (labelled for their Service), by name."""
    listing = await kube.get(HPAS.path(namespace), labelSelector="canary.io/service")
    return sorted(h["metadata"]["name"] for h in listing.get("items", []))


def audit_records(sandbox: cluster.Sandbox, offset: int) -> list[dict[str, Any]]:
    with open(sandbox.audit_log, "rb") as log:
        log.seek(offset)
        lines = log.read().decode().splitlines()
    return [r for line in lines if (r := json.loads(line))["user"]["username"] == ACCOUNT]


def granted(docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) for every rule bound to the controller."""
    rules = [
        *pod.find(docs, "ClusterRole", "canary-controller")["rules"],
        *pod.find(docs, "Role", "canary-leader-election")["rules"],
    ]
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


async def no_namespace_terminating(kube: Kube) -> None:
    """Earlier tests' namespaces are gone: the controller watches every
    namespace, and a write into one being deleted is refused with a 403."""

    async def terminating() -> list[str]:
        listing = await kube.get(NAMESPACES.path())
        return [
            n["metadata"]["name"]
            for n in listing["items"]
            if n.get("status", {}).get("phase") == "Terminating"
        ]

    await eventually(terminating, lambda names: not names, timeout_s=120)


@pytest.fixture
def manifests(sandbox: cluster.Sandbox) -> list[dict[str, Any]]:
    """manifests/ applied to the sandbox, and what kustomize rendered."""
    kubectl = str(binary_dir() / "kubectl")
    env = {**os.environ, "KUBECONFIG": sandbox.kubeconfig}
    subprocess.run(
        [kubectl, "apply", "-k", str(ROOT / "manifests")], check=True, env=env, capture_output=True
    )
    return pod.rendered(kubectl, ROOT / "manifests")


@pytest.fixture
def controller_pod() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def healthy_at(kube: Kube, namespace: str, other_than: str) -> dict[str, Any]:
    return await eventually(
        lambda: service_status(kube, namespace),
        lambda s: s.get("phase") == "Healthy" and s.get("stable_revision") not in ("", other_than),
        timeout_s=120,
    )


async def test_the_controller_run_as_its_manifests_say_does_every_kind_of_rollout_and_is_never_refused(  # noqa: E501, PLR0915 - one story, told in order
    kube: Kube,
    sandbox: cluster.Sandbox,
    namespace: str,
    image: dockerfile.Stage,
    manifests: list[dict[str, Any]],
    tmp_path: Path,
    controller_pod: list[subprocess.Popen[bytes]],
) -> None:
    docs = manifests
    box = pod.container(docs)
    assert (box.namespace, box.service_account) == ("canary-system", "canary-controller")
    assert (box.uid, box.gid) == (10001, 10001)
    assert box.read_only_root and box.no_privilege_escalation and box.drops_all_capabilities
    assert not any(a.startswith("--no-leader-elect") for a in box.args)
    await eventually(
        lambda: kube.get(
            CONFIGMAPS.path("canary-system"), fieldSelector="metadata.name=kube-root-ca.crt"
        ),
        lambda listing: bool(listing["items"]),
    )
    files = await pod.service_account_volume(kube, box.namespace, box.service_account)
    volume = await asyncio.to_thread(pod.write_volume, files, tmp_path / "serviceaccount")
    await no_namespace_terminating(kube)
    # From a Lease that does not exist yet, as on a fresh install.
    with contextlib.suppress(NotFound):
        await kube.delete(LEASES.path("canary-system", "canary-controller"))
    offset = await asyncio.to_thread(os.path.getsize, sandbox.audit_log)
    metrics_port = cluster.free_port()
    log = tmp_path / "controller.log"
    proc = pod.start(
        image,
        box,
        volume=volume,
        apiserver_port=int(sandbox.apiserver.rsplit(":", 1)[1]),
        overrides={"--metrics-address": f"127.0.0.1:{metrics_port}"},
        env_overrides={"PROMETHEUS_URL": sandbox.prometheus_url},
        log=log,
    )
    controller_pod.append(proc)
    await eventually(lambda: metric(metrics_port, "canary_leader"), lambda v: v == 1.0, 60)

    # Config that takes part in revisions, a canary promotion.
    await kube.create(
        CONFIGMAPS.path(namespace),
        {"metadata": {"name": "web-config"}, "data": {"greeting": "hello"}},
    )
    await kube.create(
        SECRETS.path(namespace), {"metadata": {"name": "web-secret"}, "stringData": {"key": "one"}}
    )
    container = {
        "name": "app",
        "image": "registry.example/web:v1",
        "envFrom": [
            {"configMapRef": {"name": "web-config"}},
            {"secretRef": {"name": "web-secret"}},
        ],
    }
    await deploy_app(
        kube,
        namespace,
        service=managed_service(history_limit="2"),
        template={"containers": [container]},
    )
    # The team autoscales: its HPA is followed by a copy on the stable twin.
    team_hpa = {
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 3,
            "maxReplicas": 6,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
        },
    }
    await kube.create(HPAS.path(namespace), team_hpa)
    first = await healthy_at(kube, namespace, other_than="")
    await eventually(lambda: copies(kube, namespace), lambda names: names == ["web-blue"])
    await release(kube, namespace, "registry.example/web:v2")
    promoted = await healthy_at(kube, namespace, other_than=first["stable_revision"])
    # The copy moved with the promotion; an edit of the team's HPA is mirrored.
    await eventually(lambda: copies(kube, namespace), lambda names: names == ["web-green"])
    await kube.patch(HPAS.path(namespace, "web"), {"spec": {"maxReplicas": 7}})
    await eventually(
        lambda: kube.get(HPAS.path(namespace, "web-green")),
        lambda copy: copy["spec"]["maxReplicas"] == 7,
    )

    # A bad release rolled back, then the template back to the good one.
    await release(kube, namespace, "registry.example/web:v3", BAD)
    await eventually(
        lambda: service_status(kube, namespace), lambda s: s.get("phase") == "RolledBack", 120
    )
    await release(kube, namespace, "registry.example/web:v2", {"sandbox.canary.io/error-rate": "0"})
    good = await healthy_at(kube, namespace, other_than=promoted["stable_revision"])

    # A ConfigMap change, then a Secret change: each a release.
    await kube.patch(CONFIGMAPS.path(namespace, "web-config"), {"data": {"greeting": "bonjour"}})
    configured = await healthy_at(kube, namespace, other_than=good["stable_revision"])
    await kube.patch(SECRETS.path(namespace, "web-secret"), {"stringData": {"key": "two"}})
    secret = await healthy_at(kube, namespace, other_than=configured["stable_revision"])

    # Blue-green: preview Service, flip; then undo to the Secret change.
    await kube.patch(
        SERVICES.path(namespace, "web"),
        {"metadata": {"annotations": {"canary.io/strategy": "blue-green"}}},
    )
    await release(kube, namespace, "registry.example/web:v4", {"sandbox.canary.io/error-rate": "0"})
    await healthy_at(kube, namespace, other_than=secret["stable_revision"])
    await kube.get(SERVICES.path(namespace, "web-preview"))
    number = next(
        r["number"]
        for r in await history_of(kube, namespace)
        if r["revision"] == secret["stable_revision"]
    )
    await kube.patch(
        SERVICES.path(namespace, "web"),
        {"metadata": {"annotations": {"canary.io/action": f"undo {number}"}}},
    )
    # Undone: the Secret change's revision serves again.
    await eventually(
        lambda: service_status(kube, namespace),
        lambda s: s.get("stable_revision") == secret["stable_revision"] and not s.get("canary"),
        timeout_s=120,
    )
    assert "UndoRequested" in await event_reasons(kube, namespace)

    # Release: the twins and config copies go, the source serves again.
    await kube.patch(
        SERVICES.path(namespace, "web"), {"metadata": {"annotations": {"canary.io/strategy": None}}}
    )
    await eventually(
        lambda: kube.get(DEPLOYMENTS.path(namespace), labelSelector="canary.io/service=web"),
        lambda listing: not listing["items"],
        timeout_s=60,
    )
    assert await copies(kube, namespace) == []
    assert (await kube.get(HPAS.path(namespace, "web")))["spec"]["maxReplicas"] == 7
    errors = await metrics(metrics_port)

    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 60) == 0
    text = log.read_text()
    assert "acquired lease canary-system/canary-controller" in text
    assert "released lease canary-system/canary-controller" in text
    # Every status is pre-registered at 0; a 403 would count here.
    assert errors['canary_api_errors_total{status="403"}'] == 0
    # Not a bare "403": a log line's timestamp can hold it (12:36:38.403Z).
    assert "Forbidden" not in text and "403 " not in text, text[-3000:]

    records = audit_records(sandbox, offset)
    refused = [r for r in records if r.get("responseStatus", {}).get("code") == 403]
    assert not refused, refused[:3]
    used = {
        (r["objectRef"].get("apiGroup", ""), r["objectRef"]["resource"], r["verb"])
        for r in records
        if "objectRef" in r and not r["objectRef"].get("subresource")
    }
    unused = granted(docs) - used
    assert not unused, f"granted but never used: {sorted(unused)}"


async def test_in_cluster_config_verifies_the_api_servers_certificate(
    kube: Kube,
    sandbox: cluster.Sandbox,
    image: dockerfile.Stage,
    manifests: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    """The pod's ca.crt is what makes TLS work: with another CA's the same
    command is refused by certificate verification, never let through."""
    box = pod.container(manifests)
    await eventually(
        lambda: kube.get(
            CONFIGMAPS.path("canary-system"), fieldSelector="metadata.name=kube-root-ca.crt"
        ),
        lambda listing: bool(listing["items"]),
    )
    files = await pod.service_account_volume(kube, box.namespace, box.service_account)
    other = await asyncio.to_thread(pki.make, tmp_path / "other-ca")
    wrong = {**files, "ca.crt": await asyncio.to_thread(other.ca_cert.read_text)}
    env = {
        **image.env,
        "HOME": image.home(),
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": sandbox.apiserver.rsplit(":", 1)[1],
    }
    results = []
    for name, volume in (("right", files), ("wrong", wrong)):
        directory = await asyncio.to_thread(pod.write_volume, volume, tmp_path / name)
        results.append(
            await asyncio.to_thread(
                rootfs.run,
                image.layer,
                ["canary", "status", "-A", "-o", "json"],
                env=env,
                uid=box.uid,
                gid=box.gid,
                read_only=True,
                binds={pod.SA_DIR: directory},
            )
        )
    right, refused = results
    assert right.returncode == 0, right.stderr
    assert isinstance(json.loads(right.stdout), list)
    assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr, (
        refused.stderr[-2000:]
    )
