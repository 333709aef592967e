"""An idealised cluster for pure-logic tests of decide(): actions take
effect at once and pods are ready as soon as they are asked for (unless
they stall: World.stall), the source's only while ungated. It is a
test double of the cluster for unit tests only; integration tests run the
real control plane."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from analysis.gate_results import GateResult
from analysis.run import StepResult
from analysis.verdicts import Measurement, Verdict
from canary import history
from canary.decide import decide
from canary.model import (
    JSON,
    Action,
    ApplyAutoscaler,
    ApplyPreview,
    ApplyTwin,
    Autoscaler,
    Checked,
    Claim,
    ClaimSource,
    Color,
    DeleteAutoscaler,
    DeleteTwins,
    Disown,
    Emit,
    GateSource,
    Observed,
    Plan,
    Record,
    ResetAutoscaler,
    Restarted,
    RestoreSource,
    ScaleSource,
    ScaleTwin,
    SetSelector,
    Source,
    State,
    Twin,
    Unclaim,
)
from canary.spec import SERVICE_LABEL, TWIN_LABEL, RolloutSpec, SpecError, parse
from canary.status_writes import carriable, ends_rollout
from canary.twins import POD_TEMPLATE_HASH


def spec(**annotations: str) -> RolloutSpec:
    values = {
        "canary.io/strategy": "canary",
        "canary.io/interval": "10s",
        **{f"canary.io/{k.replace('_', '-')}": v for k, v in annotations.items()},
    }
    parsed = parse("web", values)
    assert parsed is not None
    return parsed


def result(verdict: Verdict, reason: str = "", invalid: bool = False) -> StepResult:
    m = Measurement(
        "success-rate",
        "green",
        "q",
        0.0,
        1.0,
        50.0 if verdict is Verdict.FAIL else 100.0,
        ">= 99",
        verdict,
        1.0,
    )
    return StepResult(verdict, (m,), reason or str(verdict), invalid=invalid)


def with_twin(observed: Observed, color: Color, **changes: Any) -> Observed:
    """`observed` with one twin seen otherwise (a cluster on a bad day)."""
    twin = replace(observed.twins[color], **changes)
    return replace(observed, twins={**observed.twins, color: twin})


def source(revision: str = "r1", replicas: int = 3) -> Source:
    # A template of its own, as the team's Deployment has: the history keeps
    # it, so what can be rolled out again (undo, a put-back) is what the
    # shell could write (decide.template_kept).
    return Source(
        True,
        revision,
        replicas,
        replicas,
        template={"metadata": {"annotations": {"rev": revision}}},
        pod_labels={"app": "web"},
    )


def template_hash(revision: str) -> str:
    """The pod-template-hash of the source's ReplicaSet at `revision`."""
    return hashlib.sha256(revision.encode()).hexdigest()[:10]


def source_pods(revision: str, count: int, start: int = 0) -> tuple[str, ...]:
    """Names of the source's pods of its ReplicaSet at `revision`."""
    return tuple(f"web-{template_hash(revision)}-{i:05d}" for i in range(start, start + count))


def _landed(plan: Plan, cut_after: type | None) -> tuple[list[Action], bool]:
    """The actions that land, and whether the status does (with a selector,
    status_writes.carriable)."""
    actions = list(plan.actions)
    if cut_after is None:
        return actions, True
    cut = next(i for i, a in enumerate(actions) if isinstance(a, cut_after))
    carried = carriable(actions) and any(isinstance(a, SetSelector) for a in actions[: cut + 1])
    return actions[: cut + 1], carried


@dataclass
class World:
    source: Source = field(default_factory=source)
    selector: dict[str, str] = field(default_factory=lambda: {"app": "web"})
    twins: dict[Color, Twin] = field(default_factory=dict)
    preview: dict[str, str] | None = None
    action: str = ""
    ready: bool = True  # pods become ready (False: they never do)
    state: State = field(default_factory=State)
    now: float = 1000.0
    events: list[Emit] = field(default_factory=list)
    released: bool = False
    revisions: dict[int, str] = field(default_factory=dict)
    gate: GateResult | None = None
    scrape: float = 1.0
    phase: float = 0.0  # when a scrape landed (0.0: unknown)
    flush: float = 0.0  # how much later the backend makes a scrape searchable
    lost: str = ""  # the status annotation could not be read
    restored: set[str] = field(default_factory=set)  # source templates written back from twins
    hpa: Autoscaler = field(default_factory=Autoscaler)  # the team's HPA on the source
    copies: set[Color] = field(default_factory=set)  # twins with our HPA copy
    stale: bool = False  # the team changed its HPA since the copies were written
    records: list[JSON] = field(default_factory=list)  # the revision history, as written
    foreign: tuple[str, ...] = ()  # ready pods behind the Service of another workload
    sharing: tuple[str, ...] = ()  # other Services selecting the app's pods (observe.sharing)
    routing: tuple[str, ...] = ()  # the Service's fields that route otherwise (observe.routing)
    # Twins none of whose pods are ready (evicted by a drain and Pending with
    # no node that fits, or crash-looping), whatever `ready` says.
    pending: set[Color] = field(default_factory=set)
    # The selector's twin key was written by the controller (managedFields).
    selector_ours: bool = True
    # While pods stop coming up (an image that no longer pulls, nodes full):
    # what each workload (a colour, or "source") had ready then, by revision.
    # None: pods come up as soon as they are asked for.
    stalled: dict[str, tuple[str, int]] | None = None
    # The pods cache can be trusted (False: not listed yet, its watch failing).
    pods_known: bool = True

    def stall(self, on: bool) -> None:
        """Pods stop coming up (`on`), or come up again: those ready stay
        ready, no new one is (a scale-up, a new template), however long."""
        self.stalled = None
        if on:
            seen = self.observed()
            stalled: dict[str, tuple[str, int]] = {
                "source": (seen.source.revision, seen.source.ready)
            }
            stalled.update((c, (t.revision, t.ready)) for c, t in seen.twins.items())
            self.stalled = stalled

    def _up(self, workload: str, revision: str, ready: int) -> int:
        """`ready` pods, or fewer while pods do not come up (see stall)."""
        if self.stalled is None:
            return ready
        had, count = self.stalled.get(workload, ("", 0))
        return min(ready, count) if had == revision else 0

    def _stall_goes_on(self) -> None:
        """Pods scaled away are gone for the rest of a stall: scaled up
        again, they are new pods, and come up no more than the others."""
        if self.stalled is None:
            return
        sizes: dict[str, tuple[str, int]] = {"source": (self.source.revision, self.source.replicas)}
        sizes.update((c, (t.revision, t.replicas)) for c, t in self.twins.items())
        self.stalled = {
            name: (revision, min(count, sizes[name][1]))
            for name, (revision, count) in self.stalled.items()
            if name in sizes and sizes[name][0] == revision
        }

    def observed(self) -> Observed:
        twins = {}
        for color, twin in self.twins.items():
            ready = twin.replicas if self.ready and color not in self.pending else 0
            ready = self._up(color, twin.revision, ready)
            selected = self._selects(color)
            # (Its pods' restarts are unknown while the pods cache is.)
            restarted = twin.restarted if self.pods_known else ()
            twins[color] = replace(
                twin, ready=ready, endpoints=ready if selected else 0, restarted=restarted
            )
        same = frozenset(
            c
            for c, t in self.twins.items()
            if t.revision == self.source.revision or f"{c}:{t.revision}" in self.restored
        )
        source = replace(self.source, same_as=same) if self.source.exists else self.source
        # Gated (our scheduling gate) or not able to get ready, its pods are
        # Pending: a selector reset to them finds none to serve.
        up = 0 if source.gated or not self.ready else min(source.ready, source.replicas)
        source = replace(source, ready=self._up("source", source.revision, up))
        serving = source.ready if self.selects_template(source.revision) else 0
        preview_endpoints = 0
        if self.preview is not None:
            for color, twin in twins.items():
                if self.preview.get(TWIN_LABEL) == color:
                    preview_endpoints = twin.ready
        return Observed(
            "ns",
            "web",
            "web",
            dict(self.selector),
            source,
            twins,
            preview_endpoints,
            self.preview,
            self.action,
            "tester",
            {**history.undoable(self.records), **self.revisions},
            self.gate,
            endpoints=sum(t.endpoints for t in twins.values()) + serving,
            selector_manager="gitops",
            selector_ours=self.selector_ours,
            state_lost=self.lost,
            pods_known=self.pods_known,
            outcomes=history.outcomes(self.records),
            ended=history.ended(self.records),
            undos=history.undos(self.records),
            scrape_interval=self.scrape,
            scrape_phase=self.phase,
            searchable_after=self.flush,
            autoscaler=replace(
                self.hpa,
                copies=frozenset(self.copies),
                current=frozenset() if self.stale else frozenset(self.copies),
            ),
            foreign_pods=self.foreign if self._selects_source() else (),
            source_pods=source_pods(source.revision, serving),
            sharing=self.sharing,
            routing=self.routing,
        )

    def crash(self, color: Color, times: int) -> None:
        """One pod of the twin (its revision's) restarts `times` times more."""
        twin = self.twins[color]
        name = f"web-{color}-{twin.revision}-0"
        had = next((p.restarts for p in twin.restarted if p.pod == name), 0)
        others = tuple(p for p in twin.restarted if p.pod != name)
        pod = Restarted(name, had + times, "app")
        self.twins[color] = replace(twin, restarted=(*others, pod))

    def autoscale(self, replicas: int) -> None:
        """The HPA controller sets the size of every twin that has a copy."""
        for color in self.copies:
            self.twins[color] = replace(self.twins[color], replicas=replicas)

    def _selects_source(self) -> bool:
        return self.source.exists and not any(
            k in self.selector for k in (TWIN_LABEL, SERVICE_LABEL)
        )

    def selects_template(self, revision: str) -> bool:
        """The selector takes the source's pods of its ReplicaSet at
        `revision`: with a pod-template-hash, only that ReplicaSet's."""
        wanted = self.selector.get(POD_TEMPLATE_HASH, template_hash(revision))
        return self._selects_source() and wanted == template_hash(revision)

    def _selects(self, color: Color) -> bool:
        if POD_TEMPLATE_HASH in self.selector:
            return False  # the source's ReplicaSet's: no twin's pod carries it
        if self.selector.get(TWIN_LABEL) == color:
            return True
        # A selector without the twin label selects both twins' pods: they
        # carry the app's labels (a selector reset by a sync selects them too).
        return TWIN_LABEL not in self.selector and bool(self.twins[color].exists)

    def step(
        self,
        the_spec: RolloutSpec | SpecError | None,
        analysis: StepResult | Checked | None = None,
        advance: float = 0.0,
        cut_after: type | None = None,
    ) -> Plan:
        """`cut_after`: the cycle is cut right after the first write of this
        kind (an API error, the lease lost, the process killed): nothing after
        it lands, nor the records; the status only if it rode along with a
        selector write (the shell's rule, status_writes.carriable)."""
        self.now += advance
        self._stall_goes_on()  # (a twin deleted or scaled down by hand since)
        plan = decide(the_spec, self.state, self.observed(), analysis, self.now)
        self.lost = ""
        actions, carried = _landed(plan, cut_after)
        for action in actions:
            self._land(action)
        self._stall_goes_on()
        if cut_after is not None:
            # The record of a decision that ends a rollout is written before
            # its actions (status_writes.ends_rollout); nothing else after the cut.
            if ends_rollout(plan):
                for action in plan.actions[len(actions) :]:
                    if isinstance(action, Record):
                        self.records = history.apply_record(
                            self.records, action, self.source, self.now, 20
                        )
                # With the decision's Events (reconcile._edits): an undo's
                # UndoRequested is how the history tells its start (history.undos).
                for revision, event in history.events_by_revision(self.state, plan):
                    self.records = history.add_event(
                        self.records, revision, self.now, event.reason, event.message
                    )
            if not carried:
                return plan
        # The Events in the history as the shell files them (after the records).
        for revision, event in history.events_by_revision(self.state, plan):
            self.records = history.add_event(
                self.records, revision, self.now, event.reason, event.message
            )
        self.state = plan.state
        self.released = plan.release
        return plan

    def _land(self, action: Action) -> None:
        """One action of a plan, done (at once: this is an idealised cluster)."""
        match action:
            case ApplyTwin(color, revision, replicas):
                labels = tuple(sorted(self.source.pod_labels.items()))
                was = self.twins.get(color)
                # Its template unchanged, its pods stay, their restarts with them.
                kept = was.restarted if was and was.revision == revision and was.replicas else ()
                self.twins[color] = Twin(
                    True, revision, replicas, service="web", labels=labels, restarted=kept
                )
            case ClaimSource(claim):
                self.source = replace(self.source, claim=claim)
            case Unclaim():
                self.source = replace(self.source, claim=Claim())
            case Disown(color):
                self.twins[color] = replace(self.twins[color], owned=False)
            case RestoreSource(color):
                self.restored.add(f"{color}:{self.twins[color].revision}")
                # The whole template is the twin's: our gate goes with it.
                self.source = replace(self.source, revision=f"restored-{color}", gated=False)
            case ScaleTwin(color, replicas, handback):
                if color in self.twins:
                    kept = self.twins[color].restarted if replicas else ()  # (at 0: no pod left)
                    # The mark as act.scale_twin writes it: set by a
                    # hand-back's growth, taken away by any other scale.
                    self.twins[color] = replace(
                        self.twins[color],
                        replicas=replicas,
                        restarted=kept,
                        handback_served=replicas if handback else 0,
                    )
            case ScaleSource(replicas):
                self.source = replace(self.source, replicas=replicas)
            case GateSource(on):
                self.source = replace(self.source, gated=on)
            case SetSelector(selector):
                self.selector = dict(selector)
            case ApplyPreview(selector):
                self.preview = dict(selector)
            case DeleteTwins():
                self.twins = {}
                self.copies = set()
            case ApplyAutoscaler(color):
                self.copies.add(color)
                self.stale = False
            case DeleteAutoscaler(color):
                self.copies.discard(color)
            case ResetAutoscaler():
                # Created afresh: the HPA controller forgets its old selector.
                self.hpa = replace(self.hpa, stale=False, restoring=False)
            case Emit():
                self.events.append(action)
            case Record():
                self.records = history.apply_record(self.records, action, self.source, self.now, 20)

    def settle(self, the_spec: RolloutSpec, cycles: int = 10) -> None:
        """Reconcile until nothing more happens without time passing."""
        for _ in range(cycles):
            if not self.step(the_spec).actions:
                return

    def fail(self, the_spec: RolloutSpec, advance: float = 10.0) -> Plan:
        """A scheduled check fails, and the next scrape confirms it."""
        self.step(the_spec, result(Verdict.FAIL), advance=advance)
        return self.step(the_spec, Checked("fast", result(Verdict.FAIL), self.now + 1), advance=1)

    def reasons(self) -> list[str]:
        return [e.reason for e in self.events]

    def adopted(self, the_spec: RolloutSpec) -> World:
        self.settle(the_spec)
        assert self.state.adopted, self.state
        self.events.clear()
        return self
