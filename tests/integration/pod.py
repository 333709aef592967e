"""Run the controller's container the way the kubelet would run the pod of
manifests/deployment.yaml: the image's ENTRYPOINT with the container's args,
its env (fieldRefs resolved), the service account's token, CA and namespace
at /var/run/secrets/kubernetes.io/serviceaccount, KUBERNETES_SERVICE_HOST and
_PORT, the securityContext's uid and gid, a read-only root filesystem and
capabilities dropped (see rootfs.py).

Differences from a real pod, all forced by running on the host's network:
PROMETHEUS_URL is the sandbox's Prometheus (the base's is a placeholder an
overlay replaces), --metrics-address listens on a free loopback port
instead of :8080 (every address), and KUBERNETES_SERVICE_HOST is 127.0.0.1 instead of
the kubernetes Service's ClusterIP. No seccomp profile is applied.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from canary.kube import Kube
from canary.kube.resources import CONFIGMAPS
from tests.integration import rootfs
from tests.integration.dockerfile import Stage

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def rendered(kubectl: str, manifests: Path) -> list[dict[str, Any]]:
    """What `kubectl apply -k` would send: kustomize's output."""
    done = subprocess.run(
        [kubectl, "kustomize", str(manifests)], capture_output=True, text=True, check=True
    )
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


@dataclass(frozen=True)
class Container:
    namespace: str
    service_account: str
    args: list[str]
    env: dict[str, str]
    uid: int
    gid: int
    read_only_root: bool
    no_privilege_escalation: bool
    drops_all_capabilities: bool


def container(docs: list[dict[str, Any]], name: str = "canary-controller") -> Container:
    """The Deployment's container as kustomize rendered it, env resolved."""
    deployment = find(docs, "Deployment", name)
    namespace = deployment["metadata"]["namespace"]
    pod = deployment["spec"]["template"]["spec"]
    spec = pod["containers"][0]
    pod_security = pod.get("securityContext") or {}
    security = {**pod_security, **(spec.get("securityContext") or {})}
    env = {}
    for var in spec.get("env") or []:
        source = var.get("valueFrom") or {}
        if "value" in var:
            env[var["name"]] = var["value"]
        elif source.get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[var["name"]] = namespace
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            env[var["name"]] = find(docs, "ConfigMap", ref["name"])["data"][ref["key"]]
        else:
            raise ValueError(
                f"env {var['name']}: only values, the namespace and ConfigMap keys are followed"
            )
    if "command" in spec:
        raise ValueError("the container overrides the image's ENTRYPOINT; follow that too")
    return Container(
        namespace=namespace,
        service_account=pod["serviceAccountName"],
        args=list(spec.get("args") or []),
        env=env,
        uid=int(security["runAsUser"]),
        gid=int(security.get("runAsGroup", security["runAsUser"])),
        read_only_root=bool(security.get("readOnlyRootFilesystem")),
        no_privilege_escalation=security.get("allowPrivilegeEscalation") is False,
        drops_all_capabilities="ALL" in (security.get("capabilities") or {}).get("drop", []),
    )


async def service_account_volume(kube: Kube, namespace: str, account: str) -> dict[str, str]:
    """The files of the projected volume the kubelet mounts: a token from the
    TokenRequest API, the cluster CA from the kube-root-ca.crt ConfigMap (kept
    there by the controller-manager), the namespace."""
    request: dict[str, Any] = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600},
    }
    answer = await kube.create(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token", request
    )
    root_ca = await kube.get(CONFIGMAPS.path(namespace, "kube-root-ca.crt"))
    return {
        "token": answer["status"]["token"],
        "ca.crt": root_ca["data"]["ca.crt"],
        "namespace": namespace,
    }


def write_volume(files: dict[str, str], into: Path) -> Path:
    """World-readable, as the kubelet writes it for a pod without fsGroup."""
    into.mkdir(parents=True, exist_ok=True)
    into.chmod(0o755)
    for name, text in files.items():
        (into / name).write_text(text)
        (into / name).chmod(0o644)
    return into


def argv(image: Stage, box: Container, overrides: dict[str, str]) -> list[str]:
    """ENTRYPOINT + the container's args (which replace CMD), with `--flag=`
    values overridden where the host's network forces it (an overlay's job on
    a cluster)."""
    args = []
    for arg in box.args:
        flag, sep, _ = arg.partition("=")
        args.append(f"{flag}={overrides[flag]}" if sep and flag in overrides else arg)
    return [*image.entrypoint, *args]


def start(
    image: Stage,
    box: Container,
    *,
    volume: Path,
    apiserver_port: int,
    overrides: dict[str, str],
    env_overrides: dict[str, str],
    log: Path,
) -> subprocess.Popen[bytes]:
    for key in env_overrides:
        if key not in box.env:
            raise ValueError(f"the container sets no {key}; nothing to override")
    env = {
        **image.env,
        "HOME": image.home(),
        "HOSTNAME": "canary-controller-0",
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(apiserver_port),
        **box.env,
        **env_overrides,
    }
    with open(log, "ab") as out:
        out.write(json.dumps({"argv": argv(image, box, overrides), "env": env}).encode() + b"\n")
        return subprocess.Popen(
            rootfs.command(
                image.layer,
                argv(image, box, overrides),
                env=env,
                uid=box.uid,
                gid=box.gid,
                read_only=box.read_only_root,
                binds={SA_DIR: volume},
            ),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
