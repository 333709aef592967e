"""The copies of the app, one per controller process and namespace, and how
each controller says a release is over."""

from __future__ import annotations

import json
import string
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from canary.kube import Kube, NotFound
from canary.kube.resources import DEPLOYMENTS, SERVICES, Resource
from canary.spec import STATUS

MANIFESTS = Path(__file__).resolve().parent / "manifests"
ROLLOUTS = Resource("argoproj.io/v1alpha1", "rollouts")
ANALYSIS_RUNS = Resource("argoproj.io/v1alpha1", "analysisruns")
FLAGGER_CANARIES = Resource("flagger.app/v1beta1", "canaries")
REPLICAS = 4


@dataclass(frozen=True, slots=True)
class App:
    label: str  # the column in the tables
    namespace: str
    user: str  # the controller's API user (one per controller process)
    manifests: tuple[str, ...]
    workload: Resource  # where a release is written
    controller: str  # canary | argo | flagger
    compare_with: str = ""  # for canary's rows: the peer it is compared with
    # Checked traffic steps of a promoted rollout: 25/50/75 for the canary
    # strategies, one (the preview, then the flip) for blue-green.
    steps: int = 3

    def render(self, prometheus_url: str, interval_s: float) -> str:
        values = {
            "INTERVAL": f"{interval_s:g}",
            "PROMETHEUS_URL": prometheus_url,
            "NAMESPACE": self.namespace,
        }
        return "\n---\n".join(
            string.Template((MANIFESTS / name).read_text()).substitute(values)
            for name in self.manifests
        )


CANARY = App(
    "canary",
    "peers-canary",
    "canary",
    ("app.yaml", "canary.yaml"),
    DEPLOYMENTS,
    "canary",
    "Argo Rollouts",
)
CANARY_BLUE_GREEN = App(
    "canary blue-green",
    "peers-bluegreen",
    "canary-bluegreen",
    ("app.yaml", "canary-bluegreen.yaml"),
    DEPLOYMENTS,
    "canary",
    "Flagger",
    steps=1,
)
ARGO = App(
    "Argo Rollouts", "peers-argo", "argo-rollouts", ("argo-rollouts.yaml",), ROLLOUTS, "argo"
)
FLAGGER = App(
    "Flagger",
    "peers-flagger",
    "flagger",
    ("app.yaml", "flagger.yaml"),
    DEPLOYMENTS,
    "flagger",
    steps=1,
)
ARGO_BACKGROUND = App(
    "Argo background",
    "peers-argo-bg",
    "argo-background",
    ("argo-rollouts-background.yaml",),
    ROLLOUTS,
    "argo",
)
APPS = (CANARY, CANARY_BLUE_GREEN, ARGO, FLAGGER, ARGO_BACKGROUND)


def kubectl_apply(kubectl: str, kubeconfig: str, namespace: str, text: str) -> None:
    done = subprocess.run(
        [
            kubectl,
            f"--kubeconfig={kubeconfig}",
            "-n",
            namespace,
            "apply",
            "--server-side",
            "-f",
            "-",
        ],
        input=text.encode(),
        check=False,
        capture_output=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"kubectl apply failed: {done.stderr.decode(errors='replace')}")


async def phase(kube: Kube, app: App) -> str:
    """The controller's own word on where the rollout is."""
    try:
        if app.controller == "argo":
            rollout = await kube.get(ROLLOUTS.path(app.namespace, "web"))
            return str(rollout.get("status", {}).get("phase", ""))
        if app.controller == "flagger":
            canary = await kube.get(FLAGGER_CANARIES.path(app.namespace, "web"))
            return str(canary.get("status", {}).get("phase", ""))
        service = await kube.get(SERVICES.path(app.namespace, "web"))
    except NotFound:
        return ""
    raw = (service["metadata"].get("annotations") or {}).get(STATUS)
    status: dict[str, Any] = json.loads(raw) if raw else {}
    return str(status.get("phase", ""))


# Phases in which a controller has finished with a release (promoted, or
# rolled back / aborted / failed) and acts on the next change.
DONE = {
    "canary": {"Healthy", "RolledBack"},
    "argo": {"Healthy", "Degraded"},
    "flagger": {"Initialized", "Succeeded", "Failed"},
}


def done(app: App, current: str) -> bool:
    return current in DONE[app.controller]


def release_patch(app: App, image: str, annotations: dict[str, str | None]) -> dict[str, Any]:
    """A merge patch of the pod template: works on a Deployment and on a
    Rollout (custom resources take no strategic merge patch)."""
    return {
        "spec": {
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {"containers": [{"name": "app", "image": image}]},
            }
        }
    }
