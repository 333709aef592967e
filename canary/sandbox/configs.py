"""The files each sandbox component reads: written fresh by every `up`."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

# Pod IPs kwok hands out. They are fake: nothing listens there and nothing in
# the sandbox may ever connect to them.
POD_CIDR = "10.244.0.0/16"
# Large enough for the 2,000-Service benchmark (twins + preview Services).
SERVICE_CIDR = "10.96.0.0/16"


def token_file(path: Path, token: str) -> None:
    path.write_text(f'{token},canary-admin,canary-admin,"system:masters"\n')
    path.chmod(0o600)


def kubeconfig(path: Path, server: str, token: str, ca: Path) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "sandbox", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [{"name": "canary-admin", "user": {"token": token}}],
        "contexts": [
            {"name": "sandbox", "context": {"cluster": "sandbox", "user": "canary-admin"}}
        ],
        "current-context": "sandbox",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


def prometheus(path: Path, targets_dir: Path, simulator: str) -> None:
    """Scrape the simulator every second, plus any target file dropped into
    targets_dir later (the demo registers the controller's /metrics there)."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": "simulator", "static_configs": [{"targets": [simulator]}]},
            {
                "job_name": "sandbox-targets",
                "file_sd_configs": [
                    {"files": [str(targets_dir / "*.json")], "refresh_interval": "1s"}
                ],
            },
        ],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def scrape_target(targets_dir: Path, name: str, address: str) -> Path:
    path = targets_dir / f"{name}.json"
    path.write_text(json.dumps([{"targets": [address], "labels": {"component": name}}]))
    return path


def kwok(path: Path) -> None:
    config = {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokConfiguration",
        # The scale benchmark creates thousands of pods; kwok's default client
        # rate limit (about 20/s) would be what it measured.
        "options": {"disableQPSLimits": True},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def nodes(count: int, pods_per_node: int) -> list[dict[str, object]]:
    capacity = {"cpu": "32", "memory": "256Gi", "pods": str(pods_per_node)}
    return [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": f"kwok-node-{i}",
                "labels": {"type": "kwok", "kubernetes.io/hostname": f"kwok-node-{i}"},
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {},
            "status": {"capacity": capacity, "allocatable": capacity},
        }
        for i in range(count)
    ]


def audit_policy(path: Path) -> None:
    """Record every request a service account makes (verb, resource, code;
    no bodies). The in-cluster test reads it to prove each RBAC rule is used.
    The sandbox's own components use the admin token and are not recorded."""
    policy = {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [
            {"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
            {"level": "None"},
        ],
    }
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
