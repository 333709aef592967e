"""Small helpers shared by the integration tests: waiting on the real API and
querying the real PromAPI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import yaml

from canary import history
from canary.kube import Informer, Kube, KubeError, WatchEvent
from canary.kube.resources import (
    CONFIGMAPS,
    DEPLOYMENTS,
    ENDPOINTSLICES,
    EVENTS,
    SERVICES,
    Resource,
)
from canary.sandbox import cluster
from canary.sandbox.binaries import binary_dir

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    timeout_s: float = 60.0,
    every_s: float = 0.25,
) -> T:
    """Re-run probe until accept(result); fail with the last result on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = await probe()
        if accept(result):
            return result
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s; last: {result!r}")
        await asyncio.sleep(every_s)


async def first_ready_pod(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    """Deployment `name` once one of its pods is ready. After a refusal (a
    quota, an admission policy) is lifted, the ReplicaSet controller makes
    the pods again only after its backoff, which doubled from 5 ms while
    they were refused: tens of seconds, past 60 s in a clean-clone run
    under load."""
    return await eventually(
        lambda: kube.get(DEPLOYMENTS.path(namespace, name)),
        lambda d: (d.get("status") or {}).get("readyReplicas", 0) > 0,
        timeout_s=180,
    )


@contextlib.asynccontextmanager
async def watched(
    kube: Kube,
    resource: Resource,
    namespace: str,
    on_event: Callable[[WatchEvent], None] | None = None,
) -> AsyncIterator[list[WatchEvent]]:
    """Every change to objects of `resource` in the namespace, as the watch
    delivers it, from the block's start (objects that exist then come as
    ADDED) to its end: what an absence check looks at, so that something
    created and deleted again in between is not missed. `on_event` also sees
    each one as it comes."""
    events: list[WatchEvent] = []

    def record(event: WatchEvent) -> None:
        events.append(event)
        if on_event is not None:
            on_event(event)

    watcher = Informer(kube, resource, namespace=namespace, on_event=record)
    task = asyncio.create_task(watcher.run())
    await watcher.synced.wait()
    try:
        yield events
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def deployment(
    name: str,
    replicas: int,
    labels: dict[str, str],
    annotations: dict[str, str] | None = None,
    image: str = "registry.example/web:v1",
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": annotations or {}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": image, "ports": [{"containerPort": 8080}]}
                    ]
                },
            },
        },
    }


def service(
    name: str,
    selector: dict[str, str],
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {}},
        "spec": {"selector": selector, "ports": [{"port": 80, "targetPort": 8080}]},
    }


async def create_app(
    kube: Kube,
    namespace: str,
    name: str,
    replicas: int,
    pod_annotations: dict[str, str] | None = None,
    service_labels: dict[str, str] | None = None,
) -> None:
    labels = {"app": name}
    await kube.create(
        DEPLOYMENTS.path(namespace), deployment(name, replicas, labels, pod_annotations)
    )
    await kube.create(SERVICES.path(namespace), service(name, labels, service_labels))


async def ready_endpoints(kube: Kube, namespace: str, service_name: str) -> list[str]:
    """Names of the pods a Service's EndpointSlices list as ready."""
    listing = await kube.get(
        ENDPOINTSLICES.path(namespace), labelSelector=f"kubernetes.io/service-name={service_name}"
    )
    pods = []
    for eps in listing.get("items", []):
        for endpoint in eps.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") and endpoint.get("targetRef"):
                pods.append(endpoint["targetRef"]["name"])
    return sorted(pods)


class PromAPI:
    """The sandbox's real PromAPI over its HTTP API."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> PromAPI:
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def query(self, promql: str) -> list[dict[str, Any]]:
        assert self._session is not None
        async with self._session.get(f"{self.url}/api/v1/query", params={"query": promql}) as r:
            body = await r.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def query_range(
        self, promql: str, start: float, end: float, step_s: float
    ) -> list[dict[str, Any]]:
        """What a Grafana time-series panel draws over [start, end]."""
        assert self._session is not None
        params = {"query": promql, "start": str(start), "end": str(end), "step": str(step_s)}
        async with self._session.get(f"{self.url}/api/v1/query_range", params=params) as r:
            body = await r.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def values_by(self, promql: str, label: str) -> dict[str, float]:
        return {s["metric"].get(label, ""): float(s["value"][1]) for s in await self.query(promql)}

    async def covered(
        self, selector: str, label: str, lookback_s: int = 600
    ) -> dict[str, tuple[float, float]]:
        """For each value of `label`: the span (first, last sample timestamp)
        that every series of it holds samples over, within the last lookback_s.
        Waiting on this waits on Prometheus really holding the data a window
        needs, whatever its scrape or the machine's load delayed."""
        spans: dict[str, tuple[float, float]] = {}
        for series in await self.query(f"{selector}[{lookback_s}s]"):
            stamps = [float(stamp) for stamp, _ in series["values"]]
            key = series["metric"].get(label, "")
            first, last = spans.get(key, (min(stamps), max(stamps)))
            spans[key] = (max(first, min(stamps)), min(last, max(stamps)))
        return spans


def moved_on(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The passed checks that moved the rollout on. A pass Prometheus
    answered more than two scrapes after its data (judging.answered_late:
    a loaded machine) is recorded as a pass that moved nothing, and the
    same step is checked again: counted, a step seemed to pass twice."""
    return [
        c
        for c in checks
        if c["verdict"] == "pass" and "after the data it judged" not in c.get("decided", "")
    ]


def status_of(service: dict[str, Any]) -> dict[str, Any]:
    """The status as written; one that does not parse (a test wrote it, and the
    controller has not rebuilt it yet) has no phase, so waits keep waiting."""
    raw = (service["metadata"].get("annotations") or {}).get("canary.io/status")
    try:
        return dict(json.loads(raw)) if raw else {}
    except ValueError:
        return {"unparsed": raw}


async def service_status(kube: Kube, namespace: str, name: str = "web") -> dict[str, Any]:
    return status_of(await kube.get(SERVICES.path(namespace, name)))


async def event_reasons(kube: Kube, namespace: str, name: str = "web") -> list[str]:
    listing = await kube.get(
        EVENTS.path(namespace),
        fieldSelector=f"involvedObject.name={name},involvedObject.kind=Service",
    )
    items = sorted(listing.get("items", []), key=lambda e: e["metadata"]["creationTimestamp"])
    return [e["reason"] for e in items]


async def told(kube: Kube, namespace: str, reason: str, name: str = "web") -> list[str]:
    """The messages of the Service's Events with this reason."""
    listing = await kube.get(
        EVENTS.path(namespace), fieldSelector=f"involvedObject.name={name},reason={reason}"
    )
    return [e["message"] for e in listing.get("items", [])]


async def history_of(kube: Kube, namespace: str, name: str = "web") -> list[dict[str, Any]]:
    """The history as on-call reads it (`canary history`): the ConfigMap,
    with what the Service's status still carries of the rollout in flight."""
    records = await written_history(kube, namespace, name)
    return history.with_carried(records, await service_status(kube, namespace, name))


async def written_history(kube: Kube, namespace: str, name: str = "web") -> list[dict[str, Any]]:
    """The history ConfigMap alone, as the controller wrote it."""
    configmap = await kube.get(CONFIGMAPS.path(namespace, f"{name}-canary-history"))
    records: list[dict[str, Any]] = json.loads(configmap["data"]["history.json"])
    return records


async def pods_quota(kube: Kube, namespace: str, hard: int, used: int) -> str:
    """A ResourceQuota of `hard` pods, once it counts `used` (the source's
    pods, scaled to 0 at adoption, count while they terminate: a clean-clone
    run saw "used: pods=6" refuse a step's pod for good). Its path."""
    quotas = f"/api/v1/namespaces/{namespace}/resourcequotas"
    await kube.create(quotas, {"metadata": {"name": "pods"}, "spec": {"hard": {"pods": str(hard)}}})
    await eventually(
        lambda: kube.get(f"{quotas}/pods"),
        lambda q: (q.get("status") or {}).get("used", {}).get("pods") == str(used),
        timeout_s=30,
    )
    return f"{quotas}/pods"


def managed_service(
    name: str = "web",
    strategy: str = "canary",
    simulate: bool = True,
    **annotations: str,
) -> dict[str, Any]:
    """A Service annotated for canary with fast sandbox timings."""
    values = {
        "canary.io/strategy": strategy,
        "canary.io/steps": "25,50",
        "canary.io/interval": "3s",
        "canary.io/scale-down-delay": "20s",
        "canary.io/progress-deadline": "60s",
        "canary.io/analysis": (
            "scrape-interval: 1s\nmin-requests: 10\nno-data-limit: 2\n"
            "metrics:\n  - {name: success-rate, min: 95}\n"
        ),
        **{f"canary.io/{k.replace('_', '-')}": v for k, v in annotations.items()},
    }
    labels = {"sandbox.canary.io/simulate": "true"} if simulate else {}
    return service(name, {"app": name}, labels=labels, annotations=values)


def kubectl(sandbox: cluster.Sandbox, *args: str, stdin: str | None = None) -> str:
    """The cached kubectl against the sandbox; fails the test on an error."""
    done = subprocess.run(
        [str(binary_dir() / "kubectl"), *args],
        env={**os.environ, "KUBECONFIG": sandbox.kubeconfig},
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def kubeconfig_of(sandbox: cluster.Sandbox, namespace: str, account: str, directory: Path) -> Path:
    """A kubeconfig file that authenticates as a ServiceAccount (a bound token)."""
    token = kubectl(sandbox, "create", "token", account, "-n", namespace, "--duration=1h")
    config = yaml.safe_load(Path(sandbox.kubeconfig).read_text())
    config["users"][0]["user"] = {"token": token.strip()}
    path = directory / f"{account}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.asynccontextmanager
async def admission_refusal(
    kube: Kube,
    namespace: str,
    name: str,
    rule: tuple[str, str],
    expression: str,
    message: str,
    probe: Callable[[], Awaitable[Any]],
) -> AsyncIterator[None]:
    """A ValidatingAdmissionPolicy (the API server's own CEL admission),
    bound to the namespace, that refuses an `rule` = (operation, core
    resource) unless `expression` holds. In force once `probe()` (a dry
    run the policy must refuse) is refused; deleted on the way out."""

    async def refused() -> bool:
        try:
            await probe()
        except KubeError:
            return True
        return False

    operation, resource = rule
    policies = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
    bindings = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"
    rules = [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": [operation],
            "resources": [resource],
        }
    ]
    spec = {
        "failurePolicy": "Fail",
        "matchConstraints": {"resourceRules": rules},
        "validations": [{"expression": expression, "message": message}],
    }
    await kube.create(policies, {"metadata": {"name": name}, "spec": spec})
    selector = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    binding = {
        "policyName": name,
        "validationActions": ["Deny"],
        "matchResources": {"namespaceSelector": selector},
    }
    await kube.create(bindings, {"metadata": {"name": name}, "spec": binding})
    try:
        await eventually(refused, bool, timeout_s=30)
        yield
    finally:
        for path in (bindings, policies):
            with contextlib.suppress(KubeError):
                await kube.delete(f"{path}/{name}")
