"""The soak's fleet: N apps, each a Deployment and a managed Service in a
namespace of its own (so a ResourceQuota fault hits one app), half canary,
half blue-green, some reading a ConfigMap (env) and/or a Secret (volume),
releasing good and bad versions continuously.

Every pod template carries the release id (`chaos.canary.io/release`) and,
for a bad release, the simulator's error rate: that is what the checker
knows a pod runs. A config-reading app changes its config with every release
and stamps the config version in the template first (Helm's checksum
pattern), so a release id always names exactly one template and config.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from dataclasses import dataclass, field
from typing import Any

from chaos.checker.facts import ERROR_RATE, RELEASE
from chaos.kubectl import Kubectl

JSON = dict[str, Any]
CONFIG_ANNOTATION = "chaos.canary.io/config"
BAD_ERROR_RATE = "0.5"
TEAM = "chaos-team"  # field manager of the team's releases (strategic merge patches)
GITOPS = "gitops"  # field manager of the original manifests (server-side apply)


@dataclass(frozen=True, slots=True)
class Release:
    number: int
    bad: bool = False

    @property
    def id(self) -> str:
        return f"r{self.number}"


@dataclass
class App:
    index: int
    strategy: str  # canary | blue-green
    replicas: int
    steps: str
    interval_s: int
    failure_limit: int
    configmap: bool  # reads <name>-config through an env var
    secret: bool  # reads <name>-secret through a volume
    rps: int = 20
    min_success: float = 95.0
    current: Release = field(default_factory=lambda: Release(0))
    released: int = 0  # releases made by the fleet (the original not counted)
    bad_released: int = 0

    @property
    def name(self) -> str:
        return f"app-{self.index:02d}"

    @property
    def namespace(self) -> str:
        return f"chaos-{self.index:02d}"

    @property
    def steps_count(self) -> int:
        return len(self.steps.split(",")) if self.strategy == "canary" else 1


def plan(count: int, seed: int) -> list[App]:
    rng = random.Random(f"{seed}:fleet")
    apps = []
    for i in range(count):
        apps.append(
            App(
                index=i,
                strategy="canary" if i % 2 == 0 else "blue-green",
                replicas=rng.choice((2, 2, 3, 3)),
                steps=rng.choice(("25,50", "20,50,80", "50")),
                interval_s=rng.choice((3, 4)),
                failure_limit=rng.choice((0, 1)),
                configmap=i % 4 in (1, 3),
                secret=i % 4 in (2, 3),
            )
        )
    return apps


def _template_annotations(app: App, release: Release) -> dict[str, str]:
    annotations = {RELEASE: release.id, ERROR_RATE: BAD_ERROR_RATE if release.bad else "0"}
    if app.configmap or app.secret:
        annotations[CONFIG_ANNOTATION] = release.id
    return annotations


def deployment(app: App, release: Release) -> JSON:
    labels = {"app": app.name}
    container: JSON = {
        "name": "app",
        "image": f"registry.example/{app.name}:{release.id}",
        "ports": [{"containerPort": 8080}],
    }
    spec: JSON = {"containers": [container]}
    if app.configmap:
        container["env"] = [
            {
                "name": "APP_VERSION",
                "valueFrom": {"configMapKeyRef": {"name": f"{app.name}-config", "key": "version"}},
            }
        ]
    if app.secret:
        container["volumeMounts"] = [{"name": "creds", "mountPath": "/etc/creds"}]
        spec["volumes"] = [{"name": "creds", "secret": {"secretName": f"{app.name}-secret"}}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app.name, "namespace": app.namespace, "labels": labels},
        "spec": {
            "replicas": app.replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": _template_annotations(app, release)},
                "spec": spec,
            },
        },
    }


def service_annotations(app: App) -> dict[str, str]:
    annotations = {
        "canary.io/strategy": app.strategy,
        "canary.io/interval": f"{app.interval_s}s",
        "canary.io/failure-limit": str(app.failure_limit),
        "canary.io/scale-down-delay": "5s",
        "canary.io/progress-deadline": "45s",
        "canary.io/analysis": (
            "scrape-interval: 1s\nmin-requests: 10\nno-data-limit: 3\nerror-limit: 3\n"
            f"metrics:\n  - {{name: success-rate, min: {app.min_success:g}}}\n"
        ),
        "sandbox.canary.io/rps": str(app.rps),
    }
    if app.strategy == "canary":
        annotations["canary.io/steps"] = app.steps
    return annotations


def service(app: App, name: str | None = None, claims: bool = False) -> JSON:
    annotations = service_annotations(app)
    if claims:
        annotations["canary.io/deployment"] = app.name
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name or app.name,
            "namespace": app.namespace,
            # A claimer is not simulated: its traffic would count against the app's pods.
            "labels": {} if claims else {"sandbox.canary.io/simulate": "true"},
            "annotations": annotations,
        },
        "spec": {"selector": {"app": app.name}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def config(app: App, release: Release) -> list[JSON]:
    objects: list[JSON] = []
    meta = {"namespace": app.namespace}
    if app.configmap:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"{app.name}-config", **meta},
                "data": {"version": release.id},
            }
        )
    if app.secret:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"{app.name}-secret", **meta},
                "data": {"version": base64.b64encode(release.id.encode()).decode()},
            }
        )
    return objects


def original(app: App) -> list[JSON]:
    """What GitOps holds for the app: the first release, at full size."""
    return [*config(app, Release(0)), deployment(app, Release(0)), service(app)]


def namespace(name: str) -> JSON:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


class Fleet:
    def __init__(self, apps: list[App], kubectl: Kubectl, seed: int, bad_share: float) -> None:
        self.apps = apps
        self.kubectl = kubectl
        self.seed = seed
        self.bad_share = bad_share
        self.failed_releases = 0

    async def create(self) -> None:
        docs = [namespace(a.namespace) for a in self.apps]
        await self.kubectl.apply(docs, manager=GITOPS)
        await self.kubectl.apply([d for a in self.apps for d in original(a)], manager=GITOPS)

    async def release_forever(self, app: App, gap_s: tuple[float, float]) -> None:
        rng = random.Random(f"{self.seed}:release:{app.index}")
        while True:
            await asyncio.sleep(rng.uniform(*gap_s))
            number = max(app.current.number, app.released) + 1
            release = Release(number, bad=rng.random() < self.bad_share)
            if await self.release(app, release):
                app.released = number
                app.bad_released += release.bad

    async def release(self, app: App, release: Release) -> bool:
        """What a team does: `kubectl patch` of the template (image, release
        annotations), then of the config it reads."""
        patch = {
            "spec": {
                "template": {
                    "metadata": {"annotations": _template_annotations(app, release)},
                    "spec": {
                        "containers": [
                            {"name": "app", "image": f"registry.example/{app.name}:{release.id}"}
                        ]
                    },
                }
            }
        }
        done = await self.kubectl.run(
            "patch",
            "deployment",
            app.name,
            "-n",
            app.namespace,
            "--type=strategic",
            f"--field-manager={TEAM}",
            "-p",
            json.dumps(patch),
        )
        for obj in config(app, release) if done.ok else []:
            data = {"data": obj["data"]}
            done = await self.kubectl.run(
                "patch",
                obj["kind"].lower(),
                obj["metadata"]["name"],
                "-n",
                app.namespace,
                "--type=merge",
                f"--field-manager={TEAM}",
                "-p",
                json.dumps(data),
            )
        if not done.ok:
            self.failed_releases += 1
            return False
        app.current = release
        return True
