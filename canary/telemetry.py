"""The controller's own metrics and structured logs."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from analysis.provider import MetricsProvider
from analysis.run import StepResult
from analysis.verdicts import Verdict
from canary.model import Plan, Record

PHASES = (
    "Invalid",
    "Waiting",
    "Adopting",
    "Healthy",
    "Progressing",
    "Paused",
    "Halted",
    "Promoting",
    "RolledBack",
    "Releasing",
    "Degraded",
    "Conflict",
)

# Record outcomes as counted by canary_rollouts_total; "progressing" is the
# start of a rollout.
OUTCOMES = ("adopted", "started", "promoted", "rolled-back", "aborted", "superseded")
_OUTCOME_LABEL = {"progressing": "started"}

# Every Event reason the controller emits (README, "Lifecycle, phases and
# Events"), so each canary_events_total series exists at zero from the start
# and an alert on increase() sees the first one. tests/unit/test_telemetry.py
# checks the code emits no reason missing here.
EVENT_REASONS = (
    "Adopted",
    "PodsShared",
    "SplitNotByPods",
    "ConfigChurn",
    "Conflict",
    "ConflictResolved",
    "Degraded",
    "Recovered",
    "HistoryCorrupt",
    "SelectorMismatch",
    "ForeignPods",
    "NameTaken",
    "SelectorRestored",
    "SourceFound",
    "SourceRestored",
    "StateRebuilt",
    "TwinRestored",
    "TwinScaled",
    "ConfigRestored",
    "ConfigCopyMissing",
    "WriteLoop",
    "ControllerConflict",
    "RolloutStarted",
    "StepReady",
    "StepAdvanced",
    "StepPassed",
    "GateOpened",
    "GateClosed",
    "GateNotified",
    "AnalysisFailed",
    "PodRestarts",
    "Promoted",
    "PromotionStarted",
    "RolledBack",
    "NoData",
    "AnalysisError",
    "ProgressDeadlineExceeded",
    "PodsRefused",
    "RolloutHalted",
    "RolloutRestarted",
    "RolloutCancelled",
    "StepsChanged",
    "AnalysisChanged",
    "ReconcileFailed",
    "Aborted",
    "PromoteRequested",
    "RetryRequested",
    "UndoRequested",
    "RolloutPaused",
    "RolloutResumed",
    "RolloutWaiting",
    "ActionIgnored",
    "InvalidSpec",
    "SpecFixed",
    "SourceScaled",
    "SourceMissing",
    "Released",
    "ReleasedAtZero",
    "AutoscalerFollowed",
    "AutoscalerRefused",
    "AutoscalerRemoved",
    "AutoscalerReset",
    "PreviewRetired",
)

# API statuses worth an alert from the first one: forbidden (RBAC), conflicts,
# rejected writes, throttling, server errors, and 0 for a transport failure.
API_ERROR_STATUSES = ("0", "403", "404", "409", "422", "429", "500", "503")


MEASUREMENT_LABELS = ("namespace", "service", "metric", "verdict")
VALUE_LABELS = ("namespace", "service", "metric", "twin")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.phase = Gauge(
            "canary_service_phase",
            "1 for the phase each managed Service is in.",
            ["namespace", "service", "phase"],
            registry=r,
        )
        self.weight = Gauge(
            "canary_weight_percent",
            "Canary traffic weight, requested and "
            "effective (ready canary endpoints / all ready endpoints).",
            ["namespace", "service", "kind"],
            registry=r,
        )
        self.measurements = Counter(
            "canary_analysis_measurements_total",
            "Analysis measurements by metric and verdict.",
            list(MEASUREMENT_LABELS),
            registry=r,
        )
        self.value = Gauge(
            "canary_analysis_value",
            "Last measured value of each metric.",
            list(VALUE_LABELS),
            registry=r,
        )
        self.decision = Histogram(
            "canary_decision_seconds",
            "One reconcile: observe, analyse, decide, act and record.",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.reconciles = Counter("canary_reconciles_total", "Reconciles run.", registry=r)
        self.api_errors = Counter(
            "canary_api_errors_total", "Kubernetes API errors by status.", ["status"], registry=r
        )
        # The statuses a reconcile can meet start at 0, so a dashboard reads
        # "no errors" instead of "no data" (0: transport failure).
        for status in ("0", "403", "404", "409", "410", "422", "429", "500", "503"):
            self.api_errors.labels(status)
        self.events = Counter(
            "canary_events_total", "Events emitted by reason.", ["reason"], registry=r
        )
        self.events_dropped = Counter(
            "canary_events_dropped_total",
            "Events the API server refused (RBAC, an admission policy, a rate limit), "
            "dropped by reason: the rollout goes on and its history has them.",
            ["reason"],
            registry=r,
        )
        self.notifications_failed = Counter(
            "canary_notifications_failed_total",
            "Notifications (--notify-url, --slack-webhook) not delivered, by receiver kind "
            "(webhook, slack) and why (status: a 4xx or 5xx answer; redirect: not followed; "
            "error: no answer, a timeout, a URL that is not one). Nothing is retried.",
            ["kind", "why"],
            registry=r,
        )
        for kind in ("webhook", "slack"):
            for why in ("status", "redirect", "error"):
                self.notifications_failed.labels(kind, why)
        self.leader = Gauge("canary_leader", "1 while this replica holds the lease.", registry=r)
        self.ready = Gauge(
            "canary_ready",
            "1 while /readyz answers ok: every cache listed and refreshed, and Prometheus "
            "answered since the start.",
            registry=r,
        )
        self.write_loops = Counter(
            "canary_write_loops_total",
            "Write loops detected: the same write to one object again and again without "
            "progress; writes to that object then stop for a while.",
            registry=r,
        )
        self.writes_blocked = Gauge(
            "canary_writes_blocked",
            "Objects whose writes are stopped while a detected write loop cools off.",
            registry=r,
        )
        self.rollouts = Counter(
            "canary_rollouts_total",
            "Rollouts by outcome: started, promoted, rolled-back, aborted, superseded.",
            ["namespace", "service", "outcome"],
            registry=r,
        )
        # Read from the history by whichever process reconciles the Service:
        # a rollback counted by a leader that stopped before its next scrape
        # is on no canary_rollouts_total series (the next leader finds it
        # recorded and counts nothing), and CanaryRolledBack missed it.
        self.ended = Gauge(
            "canary_rollout_ended_timestamp_seconds",
            "When the Service's newest rollout with this outcome ended, as its history "
            "records it (Prometheus's clock): promoted, rolled-back, aborted, superseded.",
            ["namespace", "service", "outcome"],
            registry=r,
        )
        self.next_decision = Gauge(
            "canary_rollout_next_decision_timestamp_seconds",
            "When the controller has to act next on the rollout in flight (its next "
            "analysis or deadline); a time long past means the rollout is stuck.",
            ["namespace", "service"],
            registry=r,
        )
        # The phase shows Degraded over a halted rollout (the stable twin
        # short of a pod wins it), so canary_service_phase{phase="Halted"}
        # read 0 while the canary served unanalysed, waiting for a person,
        # and CanaryRolloutHalted resolved (or never fired): this says the
        # halt beneath any degradation, for the alert to read.
        self.halted = Gauge(
            "canary_rollout_halted",
            "1 while the rollout waits for a person (halted, or at a closed gate), also "
            "while the phase shows Degraded over it; absent otherwise.",
            ["namespace", "service"],
            registry=r,
        )
        # The process's own RSS, CPU seconds and open file descriptors
        # (process_*), and the Python version (python_info).
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        for reason in EVENT_REASONS:
            self.events.labels(reason)
            self.events_dropped.labels(reason)
        for status in API_ERROR_STATUSES:
            self.api_errors.labels(status)
        self.clock_offset = Gauge(
            "canary_prometheus_clock_offset_seconds",
            "How far Prometheus's clock is ahead of this host's (negative: behind), as "
            "last estimated; every query time is shifted by it.",
            registry=r,
        )
        # Each Service's label values of canary_analysis_value ((metric,
        # twin)) and canary_analysis_measurements_total (metric), kept as
        # they are made: found by collecting the metric instead, every
        # Service's series were read to remove one's (96 ms on the event
        # loop per Service forgotten, with 1,000 managed).
        self._valued: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._measured: dict[tuple[str, str], set[str]] = {}
        # Each moving rollout's exported next decision, as last set.
        self._due: dict[tuple[str, str], float] = {}
        # Prometheus's clock ahead of this host's (track_clock; 0 until known).
        self._offset: Callable[[], float] = lambda: 0.0
        self.api_requests = Gauge(
            "canary_api_requests",
            "Kubernetes API requests sent since start, by method (GET includes list and watch).",
            ["method"],
            registry=r,
        )

    def track_ready(self, ready: Callable[[], bool]) -> None:
        """Export what /readyz answers, read at every scrape: a replica not
        ready (a cache not refreshed, a namespace never listed, Prometheus
        not answered since the start) was seen by nothing, while its leader
        went on deciding on what its frozen caches last saw."""
        self.ready.set_function(lambda: 1.0 if ready() else 0.0)

    def track_clock(self, provider: MetricsProvider) -> None:
        """Export the provider's clock offset as last estimated, read at every
        scrape; and give the times exported for alerts in Prometheus's clock."""
        self.clock_offset.set_function(lambda: provider.clock_offset)
        self._offset = lambda: provider.clock_offset

    def track_api(self, counts: dict[str, int]) -> None:
        """Export the client's request counts, read at every scrape."""
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            self.api_requests.labels(method).set_function(_reader(counts, method))

    def service(self, namespace: str, service: str, phase: str, status: dict[str, Any]) -> None:
        for outcome in OUTCOMES:  # at zero from the first reconcile on
            self.rollouts.labels(namespace, service, outcome)
        for name in PHASES:
            self.phase.labels(namespace, service, name).set(1.0 if name == phase else 0.0)
        # The canary's weight only while one is in flight: a promotion leaves
        # 100 in the status until the next release, and a Service Healthy for
        # days showed a canary at 100% (as `canary status`, render.weight).
        in_flight = bool(status.get("canary")) or phase == "Promoting"
        requested = status.get("requested_weight", 0) if in_flight else 0
        effective = status.get("effective_weight", 0) if in_flight else 0
        self.weight.labels(namespace, service, "requested").set(requested)
        self.weight.labels(namespace, service, "effective").set(effective)
        if not in_flight:
            # Nothing measures a canary now: a release rolled back at an
            # error rate of 7.5 went on exporting 7.5 until the next rollout
            # (the panel drew the failure as ongoing; an alert on it fired).
            self._drop_values(namespace, service)

    def endings(self, namespace: str, service: str, newest: dict[str, float]) -> None:
        """Export when the newest rollout of each outcome ended (this host's
        clock in `newest`, history.endings), in Prometheus's clock, which the
        alerts' time() reads."""
        for outcome, at in newest.items():
            self.ended.labels(namespace, service, outcome).set(at + self._offset())

    def forget(self, namespace: str, service: str) -> None:
        """A Service deleted or no longer managed keeps no per-Service series."""
        for metric, values in (
            (self.phase, PHASES),
            (self.weight, ("requested", "effective")),
            (self.rollouts, OUTCOMES),
            (self.ended, OUTCOMES),
        ):
            for value in values:
                with contextlib.suppress(KeyError):
                    metric.remove(namespace, service, value)
        for gauge in (self.next_decision, self.halted):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, service)
        self._due.pop((namespace, service), None)
        # Labelled by metric and twin (or verdict) too, so found by value:
        # left behind, the last canary's error rate stayed exported for a
        # Service that no longer exists, and an alert on it never resolved.
        self._drop_values(namespace, service)
        for name in self._measured.pop((namespace, service), set()):
            for verdict in Verdict:
                with contextlib.suppress(KeyError):
                    self.measurements.remove(namespace, service, name, verdict.value)

    def _drop_values(self, namespace: str, service: str) -> None:
        # (Called at every steady cycle: nothing to do for most.)
        for metric, twin in self._valued.pop((namespace, service), set()):
            with contextlib.suppress(KeyError):
                self.value.remove(namespace, service, metric, twin)

    def executed(
        self, namespace: str, service: str, plan: Plan, phase: str, recorded: bool = True
    ) -> None:
        """Count the rollout outcomes a reconcile recorded, and export when it
        has to act next while a rollout moves (not while paused or halted).
        `recorded`: False when the decision's record (history, status) could
        not be written: the rollout is not driven until it is, so when it had
        to act stays as it was, and ages into CanaryRolloutStuck (before, a
        cycle whose actions landed and whose records were refused, again and
        again, moved it forward every time and the alert never fired)."""
        if plan.release:
            return
        self.recorded(namespace, service, [a for a in plan.actions if isinstance(a, Record)])
        # `phase` is the rollout's beneath any degradation (reconcile._report).
        # Only while halted: none for a Service that is not (nor managed).
        if phase == "Halted":
            self.halted.labels(namespace, service).set(1.0)
        else:
            with contextlib.suppress(KeyError):
                self.halted.remove(namespace, service)
        if not recorded:
            return
        if phase in ("Progressing", "Promoting") and plan.requeue_after is not None:
            # In Prometheus's clock, which CanaryRolloutStuck's time() reads: in
            # this host's, a host minutes behind (broken NTP) paged every
            # moving rollout as stuck, and one ahead paged a stuck one late.
            due = time.time() + self._offset() + plan.requeue_after
            self.next_decision.labels(namespace, service).set(due)
            self._due[(namespace, service)] = due
        else:
            with contextlib.suppress(KeyError):
                self.next_decision.remove(namespace, service)
            self._due.pop((namespace, service), None)

    def checking(self, namespace: str, service: str, until: float) -> None:
        """A check of the moving rollout is in flight until `until` (this
        host's clock) at the latest, and nothing acts on the rollout before
        it is back: its next decision is then, not the moment it was asked
        (CanaryRolloutStuck read a check Prometheus took 3 minutes over, at
        `query-timeout: 60s`, as a controller that had stopped acting)."""
        due = self._due.get((namespace, service))
        if due is None:
            return  # not moving (paused, halted): nothing exported
        until += self._offset()
        if until > due:
            self.next_decision.labels(namespace, service).set(until)
            self._due[(namespace, service)] = until

    def recorded(self, namespace: str, service: str, records: list[Record]) -> None:
        """Count rollout outcomes recorded in the history."""
        for record in records:
            outcome = _OUTCOME_LABEL.get(record.outcome, record.outcome)
            self.rollouts.labels(namespace, service, outcome).inc()

    def analysis(self, namespace: str, service: str, result: StepResult) -> None:
        for m in result.measurements:
            if m.baseline:
                continue
            for verdict in Verdict:  # every verdict of a metric exists from its first check
                self.measurements.labels(namespace, service, m.metric, verdict.value)
            self.measurements.labels(namespace, service, m.metric, m.verdict.value).inc()
            self._measured.setdefault((namespace, service), set()).add(m.metric)
            if m.value is not None:
                self.value.labels(namespace, service, m.metric, m.twin).set(m.value)
                self._valued.setdefault((namespace, service), set()).add((m.metric, m.twin))
            else:
                # Nothing read (no data, an error): the last value read stood
                # for it, a healthy number for a canary gone quiet.
                with contextlib.suppress(KeyError):
                    self.value.remove(namespace, service, m.metric, m.twin)


def _reader(counts: dict[str, int], method: str) -> Callable[[], float]:
    return lambda: float(counts.get(method, 0))


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `extra=` fields (namespace, service,
    revision, phase, ...) become keys, so logs can be filtered by Service."""

    FIELDS = ("namespace", "service", "revision", "phase", "reason")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in self.FIELDS:
            value = getattr(record, field, None)
            if value:
                entry[field] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(fmt: str) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    # CANARY_LOG_LEVEL=DEBUG shows every check's timing and verdict.
    level = os.environ.get("CANARY_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # Only ours: the HTTP libraries' debug output would drown it.
    for noisy in ("aiohttp", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLogger().level))
