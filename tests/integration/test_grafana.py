"""Every panel of manifests/grafana/canary.json returns data from the sandbox's
Prometheus after a real rollout, scraped from a real `canary run` process."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest

from canary.kube import Kube
from canary.sandbox import cluster, configs
from canary.sandbox.runner import ControllerProcess
from tests.integration.helpers import PromAPI, eventually, managed_service
from tests.integration.test_rollouts import BAD, deploy_app, release, wait_phase

DASHBOARD = Path(__file__).resolve().parents[2] / "manifests" / "grafana" / "canary.json"


def queries(namespace: str) -> list[tuple[str, str, bool]]:
    """(panel title, PromQL, instant) with Grafana's variables as Grafana
    would fill them; instant for a target Grafana asks once, at the end of
    the dashboard's range, rather than over it."""
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    values = {
        "$namespace": namespace,
        "$service": "web",
        "$__rate_interval": "5m",
        "$__interval": "15s",
        "$__range": "1h",
    }
    found = []
    for panel in board["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for name, value in sorted(values.items(), key=lambda kv: -len(kv[0])):
                expr = expr.replace(name, value)
            found.append((panel["title"], expr, bool(target.get("instant"))))
    return found


@pytest.fixture
def scraped_controller(
    sandbox: cluster.Sandbox, namespace: str, tmp_path: Path
) -> Iterator[ControllerProcess]:
    process = ControllerProcess(
        sandbox, tmp_path / "controller.log", ["-n", namespace, "--no-leader-elect"]
    )
    target = configs.scrape_target(
        sandbox.dir / "prometheus-targets", f"canary-{namespace}", f"127.0.0.1:{process.port}"
    )
    try:
        yield process
    finally:
        target.unlink(missing_ok=True)
        process.stop()


async def test_every_grafana_panel_returns_data_after_a_rollout(
    kube: Kube,
    namespace: str,
    prometheus: PromAPI,
    scraped_controller: ControllerProcess,
) -> None:
    began = time.time()
    await deploy_app(kube, namespace, service=managed_service(failure_limit="0"))
    await wait_phase(kube, namespace, "Healthy", timeout_s=60)
    await release(kube, namespace, "registry.example/web:v2")
    await eventually(
        # Over the last minutes, not now: a canary promoted before the next
        # scrape is no failure of the export.
        lambda: prometheus.query(
            f'max_over_time(canary_weight_percent{{namespace="{namespace}"}}[5m]) > 0'
        ),
        bool,
        timeout_s=60,
    )
    await wait_phase(kube, namespace, "Healthy", timeout_s=90)
    await release(kube, namespace, "registry.example/web:v3", BAD)
    await wait_phase(kube, namespace, "RolledBack", timeout_s=90)
    for title, expr, instant in queries(namespace):
        # As Grafana asks: a time-series panel over the dashboard's range
        # (here the test's span, at a 1 s step as for a "last 5 minutes"
        # view), an instant target once, now. Asked as instant queries
        # after the rollback, the analysis values (exported only while a
        # canary is measured) had no data whenever Prometheus had not
        # scraped between the rollback's decision and its clean-up cycle.
        def probe(expr: str = expr, instant: bool = instant) -> Awaitable[list[dict[str, Any]]]:
            if instant:
                return prometheus.query(expr)
            return prometheus.query_range(expr, began, time.time(), 1)

        try:
            await eventually(probe, bool, timeout_s=30)
        except AssertionError as empty:
            raise AssertionError(f"panel {title!r} has no data: {expr}") from empty
    # The analysis values end with the rollback: a canary nothing measures
    # any more exports no value an alert could go on firing on.
    await eventually(
        lambda: prometheus.query(f'canary_analysis_value{{namespace="{namespace}"}}'),
        lambda found: found == [],
        timeout_s=30,
    )
    # The panels show both outcomes of the two releases.
    await eventually(
        lambda: prometheus.values_by(
            f'sum by (verdict) (canary_analysis_measurements_total{{namespace="{namespace}"}})',
            "verdict",
        ),
        lambda verdicts: verdicts.get("pass", 0) > 0 and verdicts.get("fail", 0) > 0,
        timeout_s=30,
    )
