"""The sandbox behaves like the parts of Kubernetes the controller relies on."""

from __future__ import annotations

import asyncio
from pathlib import Path

from canary.kube import Informer, Kube
from canary.kube.resources import CONFIGMAPS, DEPLOYMENTS, PODS, SERVICES
from canary.sandbox import cluster
from canary.sandbox.simulator import ERROR_RATE_ANNOTATION, RATE_ANNOTATION, SIMULATE_LABEL
from tests.integration.helpers import (
    PromAPI,
    create_app,
    deployment,
    eventually,
    ready_endpoints,
    service,
)


async def test_deployment_pods_become_ready_endpoints_and_follow_scale_and_selector(
    kube: Kube, namespace: str
) -> None:
    await create_app(kube, namespace, "web", replicas=3)
    await eventually(
        lambda: kube.get(DEPLOYMENTS.path(namespace, "web")),
        lambda d: d.get("status", {}).get("availableReplicas") == 3,
    )
    three = await eventually(
        lambda: ready_endpoints(kube, namespace, "web"), lambda pods: len(pods) == 3
    )

    await kube.patch(DEPLOYMENTS.path(namespace, "web"), {"spec": {"replicas": 1}})
    one = await eventually(
        lambda: ready_endpoints(kube, namespace, "web"), lambda pods: len(pods) == 1
    )
    assert set(one) <= set(three)
    # Scale-down really deletes pods (kwok's delete stage), not just unready them.
    await eventually(
        lambda: kube.get(PODS.path(namespace), labelSelector="app=web"),
        lambda listing: len(listing["items"]) == 1,
    )

    await create_app(kube, namespace, "other", replicas=2)
    await kube.patch(SERVICES.path(namespace, "web"), {"spec": {"selector": {"app": "other"}}})
    moved = await eventually(
        lambda: ready_endpoints(kube, namespace, "web"), lambda pods: len(pods) == 2
    )
    assert all(pod.startswith("other-") for pod in moved)


async def test_simulated_requests_reach_prometheus_for_every_ready_pod(
    kube: Kube, prometheus: PromAPI, namespace: str
) -> None:
    await create_app(kube, namespace, "web", replicas=2, service_labels={SIMULATE_LABEL: "true"})
    pods = await eventually(
        lambda: ready_endpoints(kube, namespace, "web"), lambda found: len(found) == 2
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    query = f'sum by (pod) (http_requests_total{{namespace="{namespace}",service="web"}})'
    await eventually(
        lambda: prometheus.values_by(query, "pod"),
        lambda seen: set(pods) <= set(seen) and all(seen[p] > 0 for p in pods),
        timeout_s=30,
        every_s=0.1,
    )
    print(f"requests to both pods seen in Prometheus {loop.time() - started:.1f}s after ready")


async def test_error_rate_annotation_makes_only_that_pod_fail(
    kube: Kube, prometheus: PromAPI, namespace: str
) -> None:
    # Two good pods and one bad one behind the same Service.
    good = {"app": "web", "release": "good"}
    bad = {"app": "web", "release": "bad"}
    await kube.create(DEPLOYMENTS.path(namespace), deployment("good", 2, good))
    await kube.create(
        DEPLOYMENTS.path(namespace), deployment("bad", 1, bad, {ERROR_RATE_ANNOTATION: "0.5"})
    )
    await kube.create(
        SERVICES.path(namespace),
        service(
            "web",
            {"app": "web"},
            labels={SIMULATE_LABEL: "true"},
            annotations={RATE_ANNOTATION: "90"},
        ),
    )
    pods = await eventually(
        lambda: ready_endpoints(kube, namespace, "web"), lambda found: len(found) == 3
    )
    selector = f'namespace="{namespace}",service="web"'
    # Prometheus holds 30 s of every pod's series (plus a scrape), so the
    # [30s] windows below are full whenever they are evaluated.
    await eventually(
        lambda: prometheus.covered(f"http_requests_total{{{selector}}}", "pod"),
        lambda spans: set(pods) <= set(spans) and all(b - a >= 31 for a, b in spans.values()),
        timeout_s=120,
        every_s=1,
    )
    ratio = await prometheus.values_by(
        f'sum by (pod) (increase(http_requests_total{{{selector},code="500"}}[30s]))'
        f" / sum by (pod) (increase(http_requests_total{{{selector}}}[30s]))",
        "pod",
    )
    assert set(ratio) == set(pods), ratio
    for pod, share in ratio.items():
        if pod.startswith("bad-"):
            assert 0.4 <= share <= 0.6, (pod, share)
        else:
            assert share <= 0.01, (pod, share)


def test_down_stops_every_process_it_started_and_up_twice_is_safe(
    sandbox: cluster.Sandbox, tmp_path: Path
) -> None:
    # A second sandbox beside the session's one: they must not collide.
    second = cluster.up(tmp_path / "second", nodes=1)
    try:
        assert second.apiserver != sandbox.apiserver
        again = cluster.up(tmp_path / "second", nodes=1)
        assert [p.pid for p in again.procs] == [p.pid for p in second.procs]
        assert set(second.running()) == set(cluster.COMPONENTS)
        assert all(second.running().values())
    finally:
        cluster.down(tmp_path / "second")
    survivors = [p.name for p in second.procs if p.alive()]
    assert survivors == []
    # Nor any child they might have left behind: no process mentions the dir.
    mentions = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(tmp_path / "second").encode() in cmdline.read_bytes():
                mentions.append(cmdline.parent.name)
        except OSError:
            continue
    assert mentions == []
    assert all(sandbox.running().values()), "the session's sandbox must be untouched"


def test_status_reports_every_component_alive(sandbox: cluster.Sandbox) -> None:
    report = cluster.status(sandbox.dir)
    assert report["running"] is True
    expected = {*cluster.COMPONENTS, *([cluster.ADAPTER] if sandbox.has_metrics else [])}
    assert set(report["components"]) == expected
    assert all(c["alive"] for c in report["components"].values())


async def test_a_watch_carries_objects_larger_than_a_stream_line_limit(
    kube: Kube, namespace: str
) -> None:
    big = {"metadata": {"name": "big"}, "data": {"blob": "x" * 400_000}}
    informer = Informer(kube, CONFIGMAPS, namespace=namespace)
    watching = asyncio.create_task(informer.run())
    try:
        await informer.synced.wait()
        await kube.create(CONFIGMAPS.path(namespace), big)

        async def seen() -> int:
            found = informer.get(namespace, "big")
            return len(found["data"]["blob"]) if found else 0

        assert await eventually(seen, lambda n: n == 400_000, timeout_s=10) == 400_000
    finally:
        watching.cancel()
