"""The install as a platform team uses it: `kubectl apply -k` of the example
overlay and of each optional component (with the Prometheus operator's CRDs
from its Go module), `make image`, and the alert rules: promtool parses them,
its unit tests pass, and every expression returns data from a real
controller scraped by the sandbox's Prometheus exactly where it should."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from canary.kube import Kube, NotFound
from canary.kube.resources import DEPLOYMENTS, NAMESPACES, SERVICES, Resource
from canary.sandbox import cluster, configs
from canary.sandbox.binaries import binary_dir
from canary.sandbox.runner import ControllerProcess
from tests.integration.helpers import (
    PromAPI,
    deployment,
    eventually,
    kubeconfig_of,
    kubectl,
    managed_service,
    service_status,
)
from tests.integration.test_rollouts import BAD, deploy_app, release, wait_phase

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
RULE = MANIFESTS / "components" / "prometheus-rules" / "prometheus-rule.yaml"
SYSTEM = "canary-system"
LEASES = Resource("coordination.k8s.io/v1", "leases")
ROLEBINDINGS = Resource("rbac.authorization.k8s.io/v1", "rolebindings")
SERVICEACCOUNTS = Resource("v1", "serviceaccounts")


def get(sandbox: cluster.Sandbox, kind: str, name: str) -> Any:
    return json.loads(kubectl(sandbox, "get", kind, name, "-n", SYSTEM, "-o", "json"))


@pytest.fixture(scope="module")
def operator_crds(sandbox: cluster.Sandbox) -> None:
    """ServiceMonitor and PrometheusRule CRDs, from the operator's Go module."""
    crds = Path(
        subprocess.run(
            ["bash", str(ROOT / "hack" / "operator-crds.sh")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    kubectl(
        sandbox,
        "apply",
        "--server-side",
        "-f",
        str(crds / "monitoring.coreos.com_servicemonitors.yaml"),
        "-f",
        str(crds / "monitoring.coreos.com_prometheusrules.yaml"),
    )
    # `kubectl wait` fails at once, rather than waiting, on a CRD whose
    # status has no conditions yet (`.status.conditions accessor error:
    # <nil>`): seen on a loaded machine right after the apply. Asked again
    # until the API server has set them.
    crds_named = (
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
    )
    deadline = time.monotonic() + 60
    while True:
        done = subprocess.run(
            [
                str(binary_dir() / "kubectl"),
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                *crds_named,
            ],
            env={**os.environ, "KUBECONFIG": sandbox.kubeconfig},
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0:
            break
        assert "accessor error" in done.stderr and time.monotonic() < deadline, done.stderr
        time.sleep(0.5)


COMPONENTS = {
    "service-monitor": "servicemonitors.monitoring.coreos.com",
    "prometheus-rules": "prometheusrules.monitoring.coreos.com",
    "pod-disruption-budget": "poddisruptionbudgets.policy",
    "network-policy": "networkpolicies.networking.k8s.io",
}


def test_each_optional_component_applies_on_its_own_over_the_base(
    sandbox: cluster.Sandbox, operator_crds: None, tmp_path: Path
) -> None:
    for component, kind in COMPONENTS.items():
        overlay = tmp_path / component
        overlay.mkdir()
        (overlay / "kustomization.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kustomize.config.k8s.io/v1beta1",
                    "kind": "Kustomization",
                    "namespace": SYSTEM,
                    "resources": [os.path.relpath(MANIFESTS / "base", overlay)],
                    "components": [os.path.relpath(MANIFESTS / "components" / component, overlay)],
                }
            )
        )
        kubectl(sandbox, "apply", "-k", str(overlay))
        created = get(sandbox, kind, "canary-controller")
        assert created["metadata"]["labels"]["app.kubernetes.io/name"] == "canary-controller"
    monitor = get(sandbox, COMPONENTS["service-monitor"], "canary-controller")["spec"]
    assert monitor["endpoints"][0]["honorLabels"] is True
    assert monitor["endpoints"][0]["port"] == "metrics"
    budget = get(sandbox, COMPONENTS["pod-disruption-budget"], "canary-controller")
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    # The selectors match the controller's pods, which the kwok nodes run.
    pods = json.loads(
        kubectl(
            sandbox,
            "get",
            "pods",
            "-n",
            SYSTEM,
            "-l",
            "app.kubernetes.io/name=canary-controller",
            "-o",
            "json",
        )
    )["items"]
    assert pods
    rules = get(sandbox, COMPONENTS["prometheus-rules"], "canary-controller")["spec"]["groups"]
    assert {r["alert"] for g in rules for r in g["rules"]} == {
        "CanaryRolloutHalted",
        "CanaryRolledBack",
        "CanaryRolloutStuck",
        "CanaryControllerNotLeading",
        "CanaryControllerNotReady",
        "CanaryAPIErrors",
        "CanaryNotificationsFailing",
        "CanaryReconcileFailing",
    }


def test_the_example_overlay_sets_image_and_prometheus_url_without_editing_the_base(
    sandbox: cluster.Sandbox, operator_crds: None
) -> None:
    before = (MANIFESTS / "base" / "deployment.yaml").read_text()
    kubectl(sandbox, "apply", "-k", str(MANIFESTS / "overlays" / "example"))
    deployment = get(sandbox, "deployment", "canary-controller")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/platform/canary:0.1.0-1"
    env = {e["name"]: e for e in container["env"]}
    ref = env["PROMETHEUS_URL"]["valueFrom"]["configMapKeyRef"]
    assert ref["name"].startswith("canary-controller-config-")  # hashed: a change rolls pods
    config = get(sandbox, "configmap", ref["name"])
    assert config["data"]["PROMETHEUS_URL"] == "http://prometheus-operated.monitoring.svc:9090"
    assert (MANIFESTS / "base" / "deployment.yaml").read_text() == before
    # The base alone still installs (and puts the default image back).
    kubectl(sandbox, "apply", "-k", str(MANIFESTS))
    container = get(sandbox, "deployment", "canary-controller")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["image"] == "ghcr.io/canary-io/canary:0.1.0"


def test_make_image_without_a_container_engine_says_so_and_fails(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    done = subprocess.run(
        ["/bin/bash", str(ROOT / "hack" / "image.sh")],
        env={"PATH": str(empty)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "no container engine to build with: tried docker podman buildah" in done.stderr
    assert "ghcr.io/canary-io/canary:0.1.0" in done.stderr


def rules_file(directory: Path) -> Path:
    rule = yaml.safe_load(RULE.read_text())
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def alert_exprs() -> dict[str, str]:
    rule = yaml.safe_load(RULE.read_text())
    return {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}


def test_alert_rules_parse_and_fire_as_their_promtool_unit_tests_expect(tmp_path: Path) -> None:
    promtool = str(binary_dir() / "promtool")
    rules = rules_file(tmp_path)
    checked = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0 and "SUCCESS: 8 rules found" in checked.stdout, checked
    tests = tmp_path / "canary-alerts.test.yaml"
    tests.write_text((ROOT / "tests" / "alerts" / "canary-alerts.test.yaml").read_text())
    tested = subprocess.run(
        [promtool, "test", "rules", str(tests)], capture_output=True, text=True, check=False
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


@contextlib.contextmanager
def scraped(
    sandbox: cluster.Sandbox, name: str, log: Path, args: list[str]
) -> Iterator[ControllerProcess]:
    """A real `canary run`, registered as a scrape target of the sandbox's
    Prometheus for as long as it runs."""
    proc = ControllerProcess(sandbox, log, args)
    target = configs.scrape_target(
        sandbox.dir / "prometheus-targets", name, f"127.0.0.1:{proc.port}"
    )
    try:
        yield proc
    finally:
        target.unlink(missing_ok=True)
        proc.stop()


def standby_at(proc: ControllerProcess) -> str:
    return f"127.0.0.1:{proc.port}"


async def series(prometheus: PromAPI, expr: str) -> list[dict[str, str]]:
    return [s["metric"] for s in await prometheus.query(expr)]


async def test_every_alert_expression_returns_data_from_a_real_controller_where_it_should(
    kube: Kube,
    sandbox: cluster.Sandbox,
    prometheus: PromAPI,
    namespace: str,
    tmp_path: Path,
) -> None:
    exprs = alert_exprs()
    # The ClusterRole the stuck case binds.
    await asyncio.to_thread(kubectl, sandbox, "apply", "-k", str(MANIFESTS))

    # No replica leads: the Lease is held by someone else for an hour.
    await kube.create(
        LEASES.path(namespace),
        {
            "metadata": {"name": "canary-controller"},
            "spec": {
                "holderIdentity": "someone-else",
                "leaseDurationSeconds": 3600,
                "renewTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
                "acquireTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
            },
        },
    )
    standby_args = ["-n", namespace, "--lease-namespace", namespace]
    with scraped(sandbox, "standby", tmp_path / "standby.log", standby_args) as standby:
        await eventually(
            lambda: series(prometheus, f'canary_leader{{instance="{standby_at(standby)}"}} == 0'),
            bool,
            timeout_s=60,
        )
        assert await series(prometheus, exprs["CanaryControllerNotLeading"])

    stuck_ns = f"{namespace}-s"
    await kube.create(NAMESPACES.path(), {"metadata": {"name": stuck_ns}})
    try:
        await _rollouts_halted_rolled_back_and_stuck(
            kube, sandbox, prometheus, namespace, stuck_ns, tmp_path, exprs
        )
    finally:
        with contextlib.suppress(NotFound):
            await kube.delete(NAMESPACES.path(name=stuck_ns))


async def _rollouts_halted_rolled_back_and_stuck(
    kube: Kube,
    sandbox: cluster.Sandbox,
    prometheus: PromAPI,
    namespace: str,
    stuck_ns: str,
    tmp_path: Path,
    exprs: dict[str, str],
) -> None:
    # The stuck one runs as the controller's ServiceAccount with the shipped
    # ClusterRole, bound in its namespace only; the binding goes mid-rollout.
    await kube.create(SERVICEACCOUNTS.path(stuck_ns), {"metadata": {"name": "canary"}})
    binding = {
        "metadata": {"name": "canary"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "canary-controller",
        },
        "subjects": [{"kind": "ServiceAccount", "name": "canary", "namespace": stuck_ns}],
    }
    await kube.create(ROLEBINDINGS.path(stuck_ns), binding)
    limited = await asyncio.to_thread(kubeconfig_of, sandbox, stuck_ns, "canary", tmp_path)

    with (
        scraped(sandbox, "leader", tmp_path / "a.log", ["-n", namespace, "--no-leader-elect"]),
        scraped(
            sandbox,
            "limited",
            tmp_path / "s.log",
            ["-n", stuck_ns, "--no-leader-elect", "--kubeconfig", str(limited)],
        ),
    ):
        # A rollout in flight, then the controller loses its permissions.
        await deploy_app(kube, stuck_ns, service=managed_service(steps="25,50,75", interval="3s"))
        await wait_phase(kube, stuck_ns, "Healthy", timeout_s=90)
        await release(kube, stuck_ns, "registry.example/web:v2")
        await eventually(
            lambda: service_status(kube, stuck_ns),
            lambda s: s.get("phase") == "Progressing" and s.get("step_ready", 0) > 0,
            timeout_s=60,
        )
        await kube.delete(ROLEBINDINGS.path(stuck_ns, "canary"))
        revoked = time.monotonic()

        # Meanwhile, next door: one release rolled back, one halted (no traffic).
        await deploy_app(kube, namespace)
        await kube.create(DEPLOYMENTS.path(namespace), deployment("quiet", 2, {"app": "quiet"}))
        await kube.create(SERVICES.path(namespace), managed_service("quiet", simulate=False))
        await wait_phase(kube, namespace, "Healthy", timeout_s=90)
        await eventually(
            lambda: service_status(kube, namespace, "quiet"),
            lambda s: s.get("phase") == "Healthy",
            timeout_s=90,
        )
        await release(kube, namespace, "registry.example/web:v2", BAD)
        await kube.patch(
            DEPLOYMENTS.path(namespace, "quiet"),
            {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "q:v2"}]}}}},
            patch_type="strategic",
        )
        # While it is in flight, the healthy controller says when it acts next.
        # Read back over the last minute: the bad release can be rolled back
        # within 3 s, the gauge gone with it before an instant query sees it.
        await eventually(
            lambda: series(
                prometheus,
                "last_over_time(canary_rollout_next_decision_timestamp_seconds"
                f'{{namespace="{namespace}",service="web"}}[1m])',
            ),
            bool,
            timeout_s=30,
        )
        await wait_phase(kube, namespace, "RolledBack", timeout_s=90)

        def here(ns: str, service: str) -> Any:
            return lambda found: (
                {"namespace": ns, "service": service}
                in [{"namespace": f.get("namespace"), "service": f.get("service")} for f in found]
            )

        await eventually(
            lambda: series(prometheus, exprs["CanaryRolledBack"]), here(namespace, "web"), 30
        )
        await eventually(
            lambda: series(prometheus, exprs["CanaryRolloutHalted"]), here(namespace, "quiet"), 90
        )
        assert not await series(prometheus, exprs["CanaryControllerNotLeading"])
        # The healthy controller's rollouts never look stuck; the other's does,
        # two minutes after its next decision was due.
        seen = await eventually(
            lambda: series(prometheus, exprs["CanaryRolloutStuck"]),
            here(stuck_ns, "web"),
            timeout_s=240,
        )
        assert time.monotonic() - revoked > 110
        assert all(f.get("namespace") != namespace for f in seen)
        errors = await eventually(
            lambda: series(prometheus, exprs["CanaryAPIErrors"]),
            lambda found: any(f.get("status") == "403" for f in found),
            timeout_s=60,
        )
        assert {f.get("status") for f in errors} == {"403"}
