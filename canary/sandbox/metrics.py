"""The opt-in metrics pipeline (`canary sandbox up --metrics`): a real
prometheus-adapter serving the custom metrics API from the sandbox's
Prometheus, so the controller-manager's HPA controller scales Deployments on
the simulator's request rate, as a cluster with an adapter does.

The API server's aggregator must reach the adapter on 127.0.0.1 and nowhere
else: the APIService points at a Service of type ExternalName whose name is
127.0.0.1 (the aggregator dials an ExternalName Service's name directly,
never a ClusterIP or an endpoint), and verifies the adapter's serving cert,
signed by the sandbox CA for that Service's DNS name, against its caBundle.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from canary.sandbox import pki

NAMESPACE = "kube-system"
SERVICE = "prometheus-adapter"
GROUP = "custom.metrics.k8s.io"
VERSION = "v1beta1"
# Per-pod requests per second from the simulator's counter, over a short
# window: Prometheus scrapes every second, and the HPA should follow load
# within seconds, not minutes.
RATE_WINDOW = "5s"
METRIC = "http_requests_per_second"


def adapter_config(path: Path) -> None:
    config = {
        "rules": [
            {
                "seriesQuery": 'http_requests_total{namespace!="",pod!=""}',
                "resources": {
                    "overrides": {
                        "namespace": {"resource": "namespace"},
                        "pod": {"resource": "pod"},
                    }
                },
                "name": {"matches": "^(.*)_total$", "as": "${1}_per_second"},
                "metricsQuery": (
                    f"sum(rate(<<.Series>>{{<<.LabelMatchers>>}}[{RATE_WINDOW}])) by (<<.GroupBy>>)"
                ),
            }
        ]
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def serving_cert(ca: pki.Pair, directory: Path) -> pki.Pair:
    return pki.sign(
        ca,
        directory,
        "prometheus-adapter",
        SERVICE,
        (f"DNS:{SERVICE}.{NAMESPACE}.svc", "IP:127.0.0.1"),
    )


def argv(
    binary: str, port: int, cert: pki.Pair, kubeconfig: str, prometheus_url: str, config: Path
) -> list[str]:
    return [
        binary,
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--tls-cert-file={cert.cert}",
        f"--tls-private-key-file={cert.key}",
        f"--lister-kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--prometheus-url={prometheus_url}",
        f"--config={config}",
        # New pods' series are found within seconds, not the default 10 min.
        "--metrics-relist-interval=5s",
        "--metrics-max-age=10s",
        "--v=1",
    ]


def objects(port: int, ca: Path) -> list[tuple[str, dict[str, Any]]]:
    """(collection path, body) of the Service and APIService to create."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": NAMESPACE},
        # The aggregator dials an ExternalName Service's name: loopback only.
        "spec": {"type": "ExternalName", "externalName": "127.0.0.1"},
    }
    api_service = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": f"{VERSION}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "version": VERSION,
            "service": {"name": SERVICE, "namespace": NAMESPACE, "port": port},
            "caBundle": base64.b64encode(ca.read_bytes()).decode(),
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
        },
    }
    return [
        (f"/api/v1/namespaces/{NAMESPACE}/services", service),
        ("/apis/apiregistration.k8s.io/v1/apiservices", api_service),
    ]


def available(api_service: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Available" and c.get("status") == "True"
        for c in api_service.get("status", {}).get("conditions", [])
    )
