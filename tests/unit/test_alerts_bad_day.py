"""What pages on-call, on the days the controller's own alerts were silent
or wrong; found by an adversarial review, each test failed before its fix.
The promtool cases are in tests/alerts/; these run them against the shipped
rules when this machine has promtool (tests/integration/test_install.py
runs them all)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from analysis.gate_results import GateResult
from analysis.gates import Webhooks
from analysis.spec import GateSpec
from canary.checks import Checks
from canary.cli import build_parser
from canary.spec import STATUS, RolloutSpec, parse
from canary.telemetry import Metrics
from tests.unit.test_events_refused import KEY, _Shell
from tests.unit.test_operating_bad_day import (
    _alerts,
    _promtool,
    _promtool_case,
    assert_promtool_passes,
)

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ROOT / "manifests" / "components"


# -- 1. a controller crash-looping between scrapes: no leader, and no page ------------------------


def test_replicas_crash_looping_raise_the_not_leading_alert(tmp_path: Path) -> None:
    """Both replicas crash-loop (an OOM while listing the caches, a
    kubeconfig that no longer reaches the API server): each restart may
    serve /metrics for a scrape or two (canary_leader 0) before it dies, and
    every other scrape fails, which marks the series stale. The rule read
    `max by (namespace) (canary_leader) < 1 or absent(canary_leader)`: one
    evaluation the install's 0 ({namespace}), the next absent() ({}), two
    alerts each true for a minute at most, so neither outlasted `for: 2m`.
    With two installs, the one exporting nothing at all was not named by
    either half (the other install's leader answers absent()). Nothing
    rolled out, promoted or rolled back, and nothing paged. A target of the
    controller's job that is not scraped (up 0) counts as a replica that
    does not lead, so the install keeps one alert, named by its namespace."""
    _promtool_case(tmp_path, "crash-looping")


def test_the_service_monitor_names_the_job_the_alerts_read() -> None:
    """The rules read `up{job="canary-controller"}`; the ServiceMonitor takes
    the job from the Service's app.kubernetes.io/name, not from its name (an
    overlay's namePrefix renamed the job, and the rules read nothing)."""
    monitor = yaml.safe_load((COMPONENTS / "service-monitor" / "service-monitor.yaml").read_text())
    service = yaml.safe_load((ROOT / "manifests" / "base" / "service.yaml").read_text())
    label = monitor["spec"]["jobLabel"]
    assert service["metadata"]["labels"][label] == "canary-controller"
    assert 'up{job="canary-controller"}' in _alerts()["CanaryControllerNotLeading"]["expr"]


# -- 2. a rollback in the first cycle of the standby that takes over pages no one ---------------


def test_a_rollback_in_the_first_cycle_of_a_standby_taking_the_lease_raises_the_alert(
    tmp_path: Path,
) -> None:
    """The usual new leader is no fresh process: the standby of the two
    replicas, running for hours with warm caches, takes the Lease within
    seconds of a drain, and its first cycle of a failing canary rolls it
    back (the check the old leader had not yet judged fails). Counted on
    canary_rollouts_total, its series was born at 1 (increase() sees
    nothing), and that rollback paged no one. CanaryRolledBack now reads
    when the rollback ended (canary_rollout_ended_timestamp_seconds)."""
    _promtool_case(tmp_path, "standby that takes the Lease")


# -- 3. a replica crash-looping is never "not ready" for 5 minutes -----------------------------


def test_a_replica_crash_looping_raises_the_not_ready_alert(tmp_path: Path) -> None:
    """CanaryControllerNotReady read canary_ready alone, for 5 minutes. A
    replica crash-looping (the standby OOM-killed while listing its caches)
    is scraped once per restart at most, not ready, and every other scrape
    fails and marks the series stale: the alert was pending a few seconds
    at a time and never fired, while the install ran without a standby
    (the next drain of the leader's node leaves nothing leading) and
    CanaryControllerNotLeading saw the leader. A target of the controller's
    job Prometheus fails to scrape counts as a replica not ready."""
    _promtool_case(tmp_path, "standby crash-looping")


# -- 4. a check Prometheus is slow to answer pages on-call as a stuck controller ------------------


class _SlowPrometheus:
    """Answers nothing while the test looks (Prometheus taking its time,
    within the query-timeout the team set)."""

    clock_offset = 0.0
    metricsql = False

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        await asyncio.sleep(3600)
        return None

    async def query_range(
        self, promql: str, start: float, end: float, step_s: float, timeout_s: float
    ) -> list[float]:
        await asyncio.sleep(3600)
        return []

    async def query_range_series(
        self, promql: str, start: float, end: float, step_s: float, timeout_s: float
    ) -> list[list[float]]:
        await asyncio.sleep(3600)
        return []


def _next_decision(metrics: Metrics) -> float:
    name = 'canary_rollout_next_decision_timestamp_seconds{namespace="ns",service="web"}'
    return next(
        float(line.rsplit(" ", 1)[1])
        for line in generate_latest(metrics.registry).decode().splitlines()
        if line.startswith(name)
    )


def test_a_check_in_flight_is_not_exported_as_a_decision_overdue() -> None:
    """CanaryRolloutStuck (critical) fires 2 minutes past the exported next
    decision, "the controller has not acted on it". A step's check is due
    now, so the cycle that starts it exported now, and nothing reconciles
    the Service until the check is back (it wakes the worker). A check may
    take (2 + rounds) query-timeouts + 5 s: 185 s at `query-timeout: 60s`
    (Thanos over a week of data), 135 s at the default 10 s for 20 metrics
    compared with the stable twin. Prometheus answering slowly but in time
    paged on-call at 2 minutes to read the controller's logs and its API
    errors, neither of which had anything to say. While a check is in
    flight, the next decision is when it must be back."""
    shell = _Shell("25,50")
    annotations = shell.service()["metadata"]["annotations"]
    annotations["canary.io/analysis"] += "query-timeout: 60s\n"
    reconciler = shell.reconciler
    spec = parse("web", annotations)
    assert isinstance(spec, RolloutSpec) and spec.analysis.query_timeout == 60.0

    async def scenario() -> float:
        reconciler.checks = Checks(_SlowPrometheus(), Webhooks(), lambda key: None)
        try:
            shell._slices()
            await reconciler.reconcile(*KEY)
            await asyncio.sleep(0)  # the check's task runs, and waits on Prometheus
            assert reconciler.checks.analysing(KEY), "no check started"
            return _next_decision(reconciler.metrics) - time.time()
        finally:
            await reconciler.checks.close()

    ahead = asyncio.run(scenario())
    given = 3 * 60.0 + 5.0  # the check's own deadline (checks._time_given)
    assert ahead >= given - 5.0, f"exported as due in {ahead:.0f}s; the check may take {given:g}s"


# -- 5. a controller that fails on a Service at every cycle, after a restart -----------------------


def test_a_service_failing_at_every_cycle_of_a_new_process_raises_an_alert(
    tmp_path: Path,
) -> None:
    """A new version of the controller (an upgrade mid-rollout, or the
    standby taking over) fails on a Service at every cycle, on a bug: "it
    changes nothing more here until a cycle succeeds", so its canary keeps
    its weight, unanalysed. CanaryRolloutStuck reads the next decision this
    process exports, and it never exported one for that Service (no cycle
    of it succeeded; the old process's series went with it);
    CanaryAPIErrors counts API statuses, not bugs; the ReconcileFailed
    Warning was counted in canary_events_total and read by nothing. Nothing
    paged. CanaryReconcileFailing fires on any in 15 minutes."""
    shell = _Shell("25,50")
    reconciler = shell.reconciler
    shell.kube.refusing = None
    asyncio.run(reconciler.report_failure(*KEY, KeyError("canary_pods")))
    exported = generate_latest(reconciler.metrics.registry).decode()
    assert 'canary_events_total{reason="ReconcileFailed"} 1.0' in exported
    assert "canary_rollout_next_decision_timestamp_seconds{" not in exported
    assert shell.kube.events == ["ReconcileFailed"]
    rule = _alerts()["CanaryReconcileFailing"]
    assert 'canary_events_total{reason="ReconcileFailed"}' in rule["expr"]
    _promtool_case(tmp_path, "fails on a Service at every cycle")


# -- 6. an alert's command that does not run as written -------------------------------------------


def test_every_canary_command_an_alert_gives_runs_as_written() -> None:
    """On-call copies the command an alert gives. CanaryRolledBack said
    `canary timeline` (which needs the Service: "the following arguments
    are required: service", and without -n reads the context's namespace),
    CanaryRolloutHalted `canary promote`, CanaryNotificationsFailing
    `canary history`, all refused as written; CanaryRolloutStuck gave no
    command at all. Each `canary ...` an alert's description gives parses
    with the Service and namespace its labels fill in (`<service>` where
    the alert has no Service label)."""
    parser = build_parser()
    labels = {"service": "web", "namespace": "shop", "pod": "a", "instance": "a:8080"}
    labels |= {"kind": "slack", "why": "error", "status": "403"}
    for name, rule in _alerts().items():
        text = " ".join(rule["annotations"]["description"].split())
        text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)
        commands = [c for c in re.findall(r"`([^`]*)`", text) if c.startswith("canary ")]
        if name in ("CanaryRolledBack", "CanaryRolloutStuck", "CanaryRolloutHalted"):
            assert any(" web -n shop" in c for c in commands), (name, commands)
        for command in commands:
            argv = command.replace("<service>", "web").replace("<namespace>", "shop").split()
            try:
                parser.parse_args(argv[1:])
            except SystemExit:
                raise AssertionError(f"{name}: `{command}` does not run as written") from None


# -- 7. the dashboard draws a restart as minus 20 API requests a second ---------------------------


def test_the_api_requests_panel_reads_a_restart_as_a_restart(tmp_path: Path) -> None:
    """canary_api_requests counts the requests sent since the process
    started, and the dashboard drew `deriv()` of it: a line through the
    samples of the window, so after every restart (a drain, an upgrade,
    a lost Lease, of either replica) the panel showed about -20 requests a
    second for the rate interval, on the day on-call reads it to see what
    the controller does to the API server. Drawn with `rate()`, which reads
    a drop as the count starting again."""
    promtool = _promtool()
    if promtool is None:
        pytest.skip("no promtool here")
    board = json.loads((ROOT / "manifests" / "grafana" / "canary.json").read_text())
    (expr,) = [
        t["expr"]
        for p in board["panels"]
        for t in p.get("targets", [])
        if "canary_api_requests" in t["expr"]
    ]
    test = {
        "rule_files": [],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                # One GET a second; the process restarts at 2m15s.
                "input_series": [
                    {
                        "series": 'canary_api_requests{method="GET",pod="a"}',
                        "values": "1000+15x8 0+15x8",
                    }
                ],
                "promql_expr_test": [
                    {
                        # Requests are sent all along: never read as fewer than none.
                        "expr": f"({expr.replace('$__rate_interval', '1m')}) > bool 0",
                        "eval_time": "2m45s",
                        "exp_samples": [{"labels": '{method="GET"}', "value": 1}],
                    }
                ],
            }
        ],
    }
    (tmp_path / "dashboard.test.yaml").write_text(yaml.safe_dump(test))
    assert_promtool_passes(promtool, tmp_path / "dashboard.test.yaml")


class _SlowGate(Webhooks):
    """A gate's webhook that takes its time (an approval service under load)."""

    async def ask(self, gates: Sequence[GateSpec], payload: dict[str, Any]) -> GateResult:
        await asyncio.sleep(3600)
        raise AssertionError("not answered while the test looks")


def test_a_gate_call_in_flight_is_not_exported_as_a_decision_overdue() -> None:
    """As a check in flight: a rollout asking its pre-step gate exported the
    cycle that asked it as its next decision, and nothing reconciles it
    until the gate's answer is back. A gate is given `timeout` for each of
    its `retries` + 1 tries (up to 60 s and 10): at `timeout: 60s` with the
    default 2 retries, a webhook slow to answer (or not at all) kept the
    rollout 3 minutes on it, and CanaryRolloutStuck paged on-call at 2 to
    read the controller's logs, before the gate's own answer (closed, a
    halt that says why) came."""
    shell = _Shell("25,50")
    annotations = shell.service()["metadata"]["annotations"]
    annotations["canary.io/analysis"] += (
        "gates:\n  - name: approve\n    when: pre-step\n    url: http://approvals.example\n"
        "    timeout: 60s\n"
    )
    status = json.loads(annotations[STATUS])
    annotations[STATUS] = json.dumps({**status, "gate_wait": "pre-step"})
    reconciler = shell.reconciler

    async def scenario() -> float:
        reconciler.checks = Checks(_SlowPrometheus(), _SlowGate(), lambda key: None)
        try:
            shell._slices()
            await reconciler.reconcile(*KEY)
            await asyncio.sleep(0)
            assert reconciler.checks.asking(KEY), "the gate was not asked"
            return _next_decision(reconciler.metrics) - time.time()
        finally:
            await reconciler.checks.close()

    ahead = asyncio.run(scenario())
    given = 3 * 60.0  # three tries of 60 s (and the waits between them)
    assert ahead >= given - 5.0, f"exported as due in {ahead:.0f}s; the gate may take {given:g}s"
