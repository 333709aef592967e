"""One reconcile of one Service: observe -> analyse if due -> decide -> act
-> record. The imperative shell around the pure decide()."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace

from analysis.gates import Webhooks
from analysis.provider import MetricsProvider
from analysis.run import StepContext, StepResult, analyze
from analysis.spec import GateKind
from analysis.templates import Target
from canary import history
from canary.act import Actor
from canary.decide import decide, phase
from canary.kube import Informer, Kube
from canary.kube.watch import Informers
from canary.model import (
    JSON,
    ApplyPreview,
    ApplyTwin,
    Color,
    DeleteTwins,
    Emit,
    Observed,
    Plan,
    Record,
    ScaleSource,
    ScaleTwin,
    SetSelector,
    State,
)
from canary.notify import Notice, Notifier
from canary.observe import observe
from canary.revisions import ConfigRef
from canary.rollout import analysis_window, gate_due
from canary.spec import STATUS, RolloutSpec, SpecError, parse
from canary.telemetry import Metrics
from canary.twins import twin_name

log = logging.getLogger(__name__)


@dataclass
class Caches:
    services: Informer | Informers
    deployments: Informer | Informers
    slices: Informer | Informers
    configmaps: Informer | Informers
    secrets: Informer | Informers
    # (namespace, service) -> EndpointSlices, kept by the controller's handlers
    slices_by_service: dict[tuple[str, str], dict[str, JSON]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a reconcile tells the controller: when to come back, and which
    objects should wake this Service when they change."""

    requeue_after: float | None
    deployment: str | None = None
    preview: str | None = None
    config: frozenset[ConfigRef] = frozenset()


def pods_regex(deployment: str, color: Color) -> str:
    """Exactly one twin's pods: <deployment>-<color>-<replicaset hash>-<suffix>."""
    return f"{twin_name(deployment, color)}-[a-z0-9]+-[a-z0-9]+"


def read_spec(service: JSON) -> RolloutSpec | SpecError | None:
    meta = service["metadata"]
    try:
        return parse(meta["name"], meta.get("annotations") or {})
    except SpecError as error:
        return error


def read_state(service: JSON) -> State:
    raw = (service["metadata"].get("annotations") or {}).get(STATUS)
    if not raw:
        return State()
    try:
        return State.from_json(json.loads(raw))
    except (ValueError, TypeError):
        return State()


@dataclass
class Edges:
    """Everything a reconcile talks to besides the caches, in one place."""

    kube: Kube
    prometheus: MetricsProvider
    webhooks: Webhooks = field(default_factory=Webhooks)
    notifier: Notifier = field(default_factory=Notifier)
    metrics: Metrics = field(default_factory=Metrics)


class Reconciler:
    def __init__(self, edges: Edges, caches: Caches) -> None:
        self.kube = edges.kube
        self.caches = caches
        self.provider = edges.prometheus
        self.webhooks = edges.webhooks
        self.notifier = edges.notifier
        self.metrics = edges.metrics

    async def reconcile(self, namespace: str, name: str) -> Outcome:
        service = self.caches.services.get(namespace, name)
        if service is None:
            self.metrics.forget(namespace, name)
            return Outcome(None)
        spec = read_spec(service)
        state = read_state(service)
        if spec is None and state == State():
            return Outcome(None)
        deployment = (
            spec.deployment
            if isinstance(spec, RolloutSpec)
            else (state_deployment(service) or name)
        )
        preview = spec.preview_service if isinstance(spec, RolloutSpec) else f"{name}-preview"

        def lookup(kind: str, obj_name: str) -> JSON | None:
            informer = {
                "Deployment": self.caches.deployments,
                "ConfigMap": self.caches.configmaps,
                "Secret": self.caches.secrets,
                "Service": self.caches.services,
            }[kind]
            return informer.get(namespace, obj_name)

        def slices(service_name: str) -> list[JSON]:
            return list(self.caches.slices_by_service.get((namespace, service_name), {}).values())

        observed, refs = observe(service, deployment, lookup, slices, lookup, preview)
        records = history.load(lookup("ConfigMap", history.history_name(name)))
        observed = replace(observed, revisions=history.undoable(records))
        now = time.time()
        result: StepResult | None = None
        if isinstance(spec, RolloutSpec):
            window = analysis_window(spec, state, now)
            if window is not None and state.canary and state.stable:
                result = await analyze(
                    spec.analysis,
                    StepContext(
                        canary=Target(
                            namespace, name, state.canary, pods_regex(deployment, state.canary)
                        ),
                        stable=Target(
                            namespace, name, state.stable, pods_regex(deployment, state.stable)
                        ),
                        start=window[0],
                        now=now,
                        interval_s=spec.interval,
                    ),
                    self.provider,
                )
            kind = gate_due(spec, state, now)
            if kind is not None:
                observed = replace(
                    observed,
                    gate=await self.webhooks.ask(
                        spec.analysis.gates_on(kind), _gate_payload(observed, state, kind)
                    ),
                )
        plan = decide(spec, state, observed, result, now)
        actor = Actor(self.kube, service, deployment, self._remember, lookup)
        config = {ref: obj for ref in refs if (obj := lookup(*ref)) is not None}
        await self._act(
            actor, plan, observed, lookup("Deployment", deployment), config, preview, records
        )
        await self._record(actor, spec, state, plan, observed, result, now, records)
        await self._write_status(actor, spec, state, plan, deployment)
        self._report(namespace, name, spec, state, plan, result)
        if isinstance(spec, RolloutSpec):
            # After the status: a slow or failing receiver can then neither
            # hold the decision back nor make it run (and notify) twice.
            await self._notify(actor, spec, plan, observed, state, result)
        return Outcome(
            plan.requeue_after,
            deployment=deployment,
            preview=preview,
            config=frozenset(refs),
        )

    def _report(
        self,
        namespace: str,
        name: str,
        spec: RolloutSpec | SpecError | None,
        before: State,
        plan: Plan,
        result: StepResult | None,
    ) -> None:
        """Metrics and one log line per Event, tagged with the Service."""
        shown = str(phase(spec, plan.state))
        if plan.release:
            self.metrics.forget(namespace, name)
        else:
            self.metrics.service(namespace, name, shown, plan.state.to_json())
        self.metrics.executed(namespace, name, plan, shown)
        if result is not None:
            self.metrics.analysis(namespace, name, result)
        revision = (
            plan.state.canary_revision or before.canary_revision or plan.state.stable_revision
        )
        for action in plan.actions:
            if isinstance(action, Emit):
                self.metrics.events.labels(action.reason).inc()
                log.log(
                    logging.WARNING if action.warning else logging.INFO,
                    action.message,
                    extra={
                        "namespace": namespace,
                        "service": name,
                        "revision": revision,
                        "phase": shown,
                        "reason": action.reason,
                    },
                )

    async def _notify(
        self,
        actor: Actor,
        spec: RolloutSpec,
        plan: Plan,
        observed: Observed,
        before: State,
        result: StepResult | None = None,
    ) -> None:
        """Tell people (notifications) and the post-rollout and rollback gates;
        neither can block anything, so their answers are only recorded."""
        revision = plan.state.canary_revision or before.canary_revision
        for event in (a for a in plan.actions if isinstance(a, Emit)):
            await self.notifier.send(
                Notice(
                    observed.namespace,
                    observed.service,
                    revision,
                    str(phase(spec, plan.state)),
                    event,
                    result,
                )
            )
        for record in (a for a in plan.actions if isinstance(a, Record)):
            kind = {
                "promoted": GateKind.POST_ROLLOUT,
                "rolled-back": GateKind.ROLLBACK,
                "aborted": GateKind.ROLLBACK,
            }.get(record.outcome)
            gates = spec.analysis.gates_on(kind) if kind else ()
            if not gates or kind is None:
                continue
            answer = await self.webhooks.ask(gates, _gate_payload(observed, before, kind))
            await actor.emit(
                Emit(
                    "GateNotified",
                    f"revision {record.revision}: {kind} gates told: {answer.reason}",
                    warning=not answer.open,
                )
            )

    def _remember(self, obj: JSON) -> None:
        informer = {
            "Deployment": self.caches.deployments,
            "ConfigMap": self.caches.configmaps,
        }.get(str(obj.get("kind")), self.caches.services)
        informer.remember(obj)

    async def _act(
        self,
        actor: Actor,
        plan: Plan,
        observed: Observed,
        source: JSON | None,
        config: dict[ConfigRef, JSON],
        preview: str,
        records: list[JSON],
    ) -> None:
        selector = observed.selector
        for action in plan.actions:
            match action:
                case ApplyTwin(color, revision, replicas):
                    if source is None:
                        continue
                    if revision == observed.source.revision:
                        await actor.apply_twin(
                            color, revision, replicas, source, observed.source.template, config
                        )
                        continue
                    # An undo: the template recorded with that revision, which
                    # already reads that revision's config copies.
                    template = history.template_of(records, revision)
                    if template is None:
                        log.warning("no template recorded for revision %s", revision)
                        continue
                    await actor.apply_twin(color, revision, replicas, source, template, {})
                case ScaleTwin(color, replicas):
                    await actor.scale_twin(color, replicas)
                case ScaleSource(replicas):
                    await actor.scale_source(replicas)
                case SetSelector(wanted):
                    await actor.set_selector(selector, wanted)
                    selector = wanted
                case ApplyPreview(wanted):
                    await actor.apply_preview(preview, wanted)
                case DeleteTwins():
                    await actor.delete_twins()
                case Emit():
                    await actor.emit(action)
                case Record():
                    pass  # written with the history, once per cycle

    async def _record(
        self,
        actor: Actor,
        spec: RolloutSpec | SpecError | None,
        before: State,
        plan: Plan,
        observed: Observed,
        result: StepResult | None,
        now: float,
        records: list[JSON],
    ) -> None:
        records_due = [a for a in plan.actions if isinstance(a, Record)]
        if not records_due and result is None:
            return
        if not isinstance(spec, RolloutSpec):
            return
        name = history.history_name(actor.name)
        configmap = self.caches.configmaps.get(actor.namespace, name)
        if result is not None and before.canary_revision:
            decided = plan.state.message or str(phase(spec, plan.state))
            records = history.add_check(
                records,
                before.canary_revision,
                before.step,
                before.requested_weight,
                before.effective_weight,
                result,
                decided,
            )
        for record in records_due:
            records = history.apply_record(
                records, record, observed.source, now, spec.history_limit
            )
        for action in plan.actions:
            if isinstance(action, Emit) and (plan.state.canary_revision or before.canary_revision):
                records = history.add_event(
                    records,
                    plan.state.canary_revision or before.canary_revision,
                    now,
                    action.reason,
                    action.message,
                )
        await actor.write_history(name, history.dump(records), exists=configmap is not None)
        if any(r.outcome != "progressing" for r in records_due):
            keep = history.revisions_kept(records) | {
                plan.state.stable_revision,
                plan.state.canary_revision,
                plan.state.previous_revision,
            }
            await actor.collect_config_copies(keep - {""})

    async def _write_status(
        self,
        actor: Actor,
        spec: RolloutSpec | SpecError | None,
        before: State,
        plan: Plan,
        deployment: str,
    ) -> None:
        """At most one status write per cycle, and none when nothing changed."""
        if plan.release:
            await actor.write_status(None)
            return
        if plan.state == before:
            return
        status = {
            "phase": str(phase(spec, plan.state)),
            "deployment": deployment,
            **plan.state.to_json(),
        }
        await actor.write_status(json.dumps(status, separators=(",", ":")))


def _gate_payload(observed: Observed, state: State, kind: GateKind) -> dict[str, object]:
    return {
        "namespace": observed.namespace,
        "service": observed.service,
        "revision": state.canary_revision or state.stable_revision,
        "phase": kind.value,
        "step": state.step + 1,
        "weight": state.requested_weight,
    }


def state_deployment(service: JSON) -> str | None:
    """The source Deployment's name remembered in the status, for releasing a
    Service whose annotations are gone."""
    raw = (service["metadata"].get("annotations") or {}).get(STATUS)
    try:
        value = json.loads(raw).get("deployment") if raw else None
    except (ValueError, AttributeError):
        return None
    return str(value) if value else None
