"""/metrics: process metrics, rollout outcomes per Service, and every counter
present at zero before its first increment (so increase() sees the first
rollback, and an alert can fire on it)."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

from prometheus_client import generate_latest

from canary.model import Emit, Plan, Record, State
from canary.telemetry import EVENT_REASONS, OUTCOMES, Metrics

ROOT = Path(__file__).resolve().parents[2]


def exposed(metrics: Metrics) -> dict[str, float]:
    values = {}
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def rollouts(outcome: str) -> str:
    return f'canary_rollouts_total{{namespace="shop",outcome="{outcome}",service="web"}}'


def test_process_rss_cpu_and_open_fds_are_exported() -> None:
    values = exposed(Metrics())
    assert values["process_resident_memory_bytes"] > 0
    assert "process_cpu_seconds_total" in values
    assert values["process_open_fds"] > 0
    assert any(name.startswith("python_info") for name in values)


def test_every_counter_exists_at_zero_before_anything_happened() -> None:
    values = exposed(Metrics())
    assert values["canary_reconciles_total"] == 0
    assert values['canary_events_total{reason="RolledBack"}'] == 0
    assert values['canary_api_errors_total{status="403"}'] == 0


def test_a_services_rollout_outcomes_start_at_zero_and_count_each_record() -> None:
    metrics = Metrics()
    metrics.service("shop", "web", "Healthy", {})
    values = exposed(metrics)
    for outcome in OUTCOMES:
        assert values[rollouts(outcome)] == 0
    plan = Plan(
        (Emit("RolledBack", "..."), Record("r2", "rolled-back", "AnalysisFailed: ...")),
        State(),
        None,
    )
    metrics.executed("shop", "web", plan, "RolledBack")
    started = Plan((Record("r3", "progressing", "started"),), State(), 3.0)
    metrics.executed("shop", "web", started, "Progressing")
    values = exposed(metrics)
    assert values[rollouts("rolled-back")] == 1
    assert values[rollouts("started")] == 1
    due = values['canary_rollout_next_decision_timestamp_seconds{namespace="shop",service="web"}']
    assert due > 0
    metrics.executed("shop", "web", Plan((), State(), None), "Halted")  # held: no schedule
    assert not any(
        n.startswith("canary_rollout_next_decision_timestamp_seconds{") for n in exposed(metrics)
    )
    metrics.forget("shop", "web")
    assert not any('service="web"' in n for n in exposed(metrics))


def test_every_event_reason_the_controller_emits_is_pre_initialised() -> None:
    """A guard for whoever adds an Event: add its reason to EVENT_REASONS."""
    sources = "\n".join(
        (ROOT / "canary" / f"{name}.py").read_text()
        for name in (
            "decide",
            "rollout",
            "placement",
            "judging",
            "promotion",
            "ending",
            "looks",
            "manual",
            "reconcile",
            "act",
            "handback",
            "autoscaling",
        )
    )
    emitted = set(re.findall(r'"([A-Z][a-z]+(?:[A-Z][a-z]+)+)"', sources))
    emitted |= set(re.findall(r'(?:emit|Emit)\(\s*"([A-Z]\w+)"', sources))
    emitted |= set(re.findall(r'observed,\s*"([A-Z]\w+)"', sources))
    # kinds, types and conditions of other objects, not our reasons
    emitted -= {
        "ConfigMap",
        "HorizontalPodAutoscaler",
        "ContainerResource",
        "DeleteOptions",
        "ScalingActive",
        "AmbiguousSelector",
        "ScaledObject",
    }
    assert {"Adopted", "Promoted", "Aborted", "Released", "RolledBack"} <= emitted
    missing = emitted - set(EVENT_REASONS)
    assert not missing, f"add to canary.telemetry.EVENT_REASONS: {sorted(missing)}"


def test_a_decision_whose_record_is_refused_leaves_when_it_had_to_act_to_age() -> None:
    # Before: a cycle whose actions landed but whose history and status were
    # refused (its permissions revoked) moved the next decision forward at
    # every retry, so CanaryRolloutStuck never fired for a rollout nobody
    # could drive (sandbox: test_every_alert_expression_..., after the late
    # pass of a retried cycle made it a decision with nothing but a record).
    metrics = Metrics()
    metrics.service("shop", "web", "Progressing", {})
    name = 'canary_rollout_next_decision_timestamp_seconds{namespace="shop",service="web"}'
    metrics.executed("shop", "web", Plan((), State(), 3.0), "Progressing")
    due = exposed(metrics)[name]
    metrics.executed("shop", "web", Plan((), State(), 3.0), "Progressing", recorded=False)
    assert exposed(metrics)[name] == due
    metrics.executed("shop", "web", Plan((), State(), 60.0), "Progressing")
    assert exposed(metrics)[name] > due


def test_the_prometheus_clock_offset_is_exported_from_the_start_and_as_last_estimated() -> None:
    metrics = Metrics()
    assert exposed(metrics)["canary_prometheus_clock_offset_seconds"] == 0
    provider = SimpleNamespace(clock_offset=-61.25)
    metrics.track_clock(provider)
    assert exposed(metrics)["canary_prometheus_clock_offset_seconds"] == -61.25
    provider.clock_offset = 0.5  # re-probed: read at every scrape
    assert exposed(metrics)["canary_prometheus_clock_offset_seconds"] == 0.5
