"""Kubernetes objects and an Actor for the unit tests that drive the shell's
code paths (the act and reconcile layers) without a cluster: one source
Deployment shape, one Actor over a dict of cached objects."""

from __future__ import annotations

from typing import Any

from canary.act import Actor, Target
from canary.model import JSON
from canary.writeguard import WriteGuard


def source_deployment(
    volumes: list[JSON] | None = None,
    env_from: list[JSON] | None = None,
    *,
    rolled_out: bool = False,
    **metadata: Any,
) -> JSON:
    """The team's Deployment `web` (3 replicas, `app: web`), reading what
    `volumes` and `env_from` name; `rolled_out`: with a status whose pods are
    all of its template and ready; `metadata`: more fields (uid, generation)."""
    container: JSON = {"name": "web", "image": "web:v1"}
    if env_from is not None:
        container["envFrom"] = env_from
    pod: JSON = {"containers": [container]}
    if volumes is not None:
        pod["volumes"] = volumes
    deployment: JSON = {
        "metadata": {"name": "web", "namespace": "ns", **metadata},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod},
        },
    }
    if rolled_out:
        generation = int(metadata.get("generation", 1))
        deployment["status"] = {
            "observedGeneration": generation,
            "replicas": 3,
            "updatedReplicas": 3,
            "readyReplicas": 3,
        }
    return deployment


def cached_actor(kube: Any, cache: dict[tuple[str, str], JSON], service: JSON) -> Actor:
    """An Actor for Service `web` in `ns` whose cache is `cache` ((kind, name) keys)."""
    return Actor(
        kube,
        Target("ns", "web", "web", service),
        lambda obj: None,
        lambda kind, name: cache.get((kind, name)),
        WriteGuard(),
        progress="",
        now=1000.0,
    )
