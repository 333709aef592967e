"""The data that flows through a reconcile: what was observed, the durable
state, and the actions a decision asks for. Plain frozen values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from analysis.gate_results import GateResult
from analysis.run import StepResult
from analysis.spec import AnalysisSpec

JSON = dict[str, Any]
Color = Literal["blue", "green"]
COLORS: tuple[Color, Color] = ("blue", "green")


def other(color: Color) -> Color:
    return "green" if color == "blue" else "blue"


class Phase(StrEnum):
    """What on-call sees; derived from the state, never stored on its own."""

    INVALID = "Invalid"
    WAITING = "Waiting"  # no source Deployment yet
    ADOPTING = "Adopting"
    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    HALTED = "Halted"
    PROMOTING = "Promoting"
    ROLLED_BACK = "RolledBack"
    RELEASING = "Releasing"  # management removed: handing back to the source Deployment
    DEGRADED = "Degraded"  # observed: the Service or its stable twin is not serving in full
    CONFLICT = "Conflict"  # the source Deployment is managed through another Service


@dataclass(frozen=True, slots=True)
class Restarted:
    """A live pod of a twin's revision whose containers have restarted, as
    its kubelet last said (observe.restarted): what a rollback over
    max-restarts names on-call."""

    pod: str
    # Its most-restarted container's restartCount (not its classic init
    # containers'; a native sidecar counts): not summed over containers, as
    # a node reboot restarts the app and an injected sidecar once each.
    restarts: int
    container: str  # that container
    exit_reason: str = ""  # that container's last exit (lastState.terminated)
    exit_code: int | None = None
    # Each of its containers that restarted, (name, restartCount), sorted:
    # a pod reused by a rollout is judged per container against what each
    # had (State.restarts_before). Empty: `container` alone, at `restarts`.
    containers: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Twin:
    exists: bool = False
    revision: str = ""
    replicas: int = 0  # spec
    ready: int = 0  # ready pods, counted only once no pod of an older template is left
    updated: bool = True  # every pod runs the latest template, none of an older one
    # Ready pods of either template while pods of an older one are still
    # around (`ready` counts none then): a restart, a put-back rolling. Whether
    # the Service would still have pods on it, not which revision they run.
    ready_mixed: int = 0
    # Its spec not yet observed by the Deployment controller (generation
    # ahead of status.observedGeneration).
    unobserved: bool = False
    endpoints: int = 0  # ready endpoints of the twin behind the Service
    # The Service's target ports (observe.target_ports) all of those endpoints
    # are listed with: a named targetPort its pods do not declare is missing,
    # and the Service sends them nothing there. None: no endpoint to tell, or
    # a Service without ports.
    ports: frozenset[str] | None = None
    service: str = ""  # the Service it belongs to (its canary.io/service label)
    owned: bool = False  # still carries an ownerReference (made by an older version)
    replica_set: str = ""  # the ReplicaSet all its ready endpoints belong to, once clean
    edited_by: str = ""  # someone changed its pod template since we wrote it (field manager)
    scaled_by: str = ""  # who set its replicas, when not the controller (field manager)
    paused_by: str = ""  # `kubectl rollout pause`d: by whom (field manager; "" = not paused)
    labels: tuple[tuple[str, str], ...] = ()  # its pod template's labels, sorted
    # Why its pods cannot be created (a ResourceQuota, a policy refusing
    # them): the Deployment's ReplicaFailure condition, "" when none.
    refused: str = ""
    # Why its pods of its revision are not ready, as they say (unschedulable,
    # an image not pulled, crash-looping): observe.not_ready_why.
    not_ready_why: str = ""
    # Its template is the one a put-back of ours wrote (PUT_BACK_ANNOTATION,
    # not restarted or edited since) and pods of an older template, the
    # edited one, are still around: the put-back rolls.
    put_back: bool = False
    # The size a hand-back grew it to (HANDBACK_ANNOTATION; 0: no mark). Only
    # as read: whether it is still current (the twin at that size, as we
    # left it) is the decision's (autoscaling.grown_for_handback).
    handback_served: int = 0
    images: tuple[str, ...] = ()  # its pod template's containers' images
    # Not `exists`, yet there: being deleted (deletionTimestamp set; a
    # foreground cascade keeps it until its pods have stopped). Its name is
    # taken until it is gone, so it is made again only then.
    deleting: bool = False
    # The names of its pods the EndpointSlices list as ready (behind the
    # Service or the blue-green preview), sorted: the pods a check expects
    # Prometheus to have current samples of (analysis.run._pods_unseen).
    serving: tuple[str, ...] = ()
    # Its pods of its revision that have restarted, not being deleted
    # (observe.restarted); empty while the pods cache cannot be trusted.
    restarted: tuple[Restarted, ...] = ()
    # (revision, pod) of each of its live pods that restarted,
    # whatever revision it runs (observe.restarts_of): a rollout of an older
    # revision onto the twin mid-update (an undo while a release's pods
    # never got ready) reuses that revision's pods still up, which
    # `restarted` (its current revision's alone) does not show yet.
    restarts_of: tuple[tuple[str, Restarted], ...] = ()


@dataclass(frozen=True, slots=True)
class Claim:
    """What the controller keeps on the source Deployment itself (annotations),
    so that it survives the loss of the Service or of its status."""

    service: str = ""  # the Service that manages this Deployment ("" = unclaimed)
    replicas: int = 0  # the team's replica count, from before we scaled it to 0
    stable_revision: str = ""  # the revision that last passed (or was adopted)


@dataclass(frozen=True, slots=True)
class Source:
    exists: bool = False
    revision: str = ""
    replicas: int = 0
    ready: int = 0
    template: JSON = field(default_factory=dict)  # twin-ready pod template, config copies applied
    images: tuple[str, ...] = ()
    config: dict[str, str] = field(default_factory=dict)  # ConfigMap/Secret name -> hash
    claim: Claim = field(default_factory=Claim)
    pod_labels: dict[str, str] = field(default_factory=dict)  # the template's labels
    # replicas is 1 because an apply (client- or server-side) removed the field (the API
    # server defaults it), not because the team asked for 1
    replicas_defaulted: bool = False
    paused: bool = False  # `kubectl rollout pause` on the team's Deployment
    # Every pod it has is of its current template (its rollout observed and
    # done): paused mid-rollout, most may run an older one.
    rolled_out: bool = True
    paused_by: str = ""  # the field manager that paused it
    # Its pod template carries our scheduling gate: pods a re-scale makes
    # stay Pending, so a reset selector has nothing of it to select.
    gated: bool = False
    # Why its pods cannot be created (a ResourceQuota, a policy): its
    # ReplicaFailure condition, as a twin's (Twin.refused); "" when none.
    refused: str = ""
    # Twins whose pod template the source's equals (same revision, or the
    # template a hand-back wrote into it): handing back to it is safe.
    same_as: frozenset[Color] = frozenset()
    # Of those, twins whose pods read live a ConfigMap or Secret the source's
    # revision tracks (tracking turned on again since they were made): the
    # same template, so a hand-back may go to it, but not the same revision
    # while managed (observe.reading_live).
    reads_live: frozenset[Color] = frozenset()
    # Not `exists`, yet there: being deleted (deletionTimestamp set, a
    # finalizer of the garbage collector or of another controller holding it).
    deleting: bool = False


@dataclass(frozen=True, slots=True)
class Autoscaler:
    """The team's HorizontalPodAutoscaler on the source, as it can be followed
    (canary/autoscaling.py): its copy scales the stable twin."""

    name: str = ""  # the team's HPA that targets the source ("" = none)
    refused: str = ""  # why it cannot be followed ("" = it can, or there is none)
    min_replicas: int = 1
    max_replicas: int = 0  # 0: unknown
    copies: frozenset[Color] = frozenset()  # twins that have an HPA copy of ours
    current: frozenset[Color] = frozenset()  # ... whose copy matches the team's HPA
    # Kubernetes' HPA controller still counts the twins' pods as the team HPA's
    # (a selector it registered while the source had pods): the copy is
    # refused as AmbiguousSelector until the team's HPA is created afresh.
    stale: bool = False
    restoring: bool = False  # a re-creation of the team's HPA was cut short: finish it
    # The KEDA ScaledObject that made the team's HPA ("" = none): KEDA also
    # writes the source's scale itself, whenever it reads 0 there.
    scaler: str = ""
    # HPAs of someone else's that target a twin itself (`kubectl autoscale
    # deployment web-blue`), by the twin: (colour, HPA name).
    on_twins: tuple[tuple[Color, str], ...] = ()

    @property
    def followed(self) -> bool:
        return bool(self.name) and not self.refused


@dataclass(frozen=True, slots=True)
class Observed:
    namespace: str
    service: str
    deployment: str  # the source Deployment's name
    selector: dict[str, str]  # the Service's live selector
    source: Source
    twins: dict[Color, Twin]
    preview_endpoints: int = 0  # ready endpoints behind the preview Service
    preview_selector: dict[str, str] | None = None  # None: no preview Service
    action: str = ""  # the canary.io/action annotation, verbatim
    action_by: str = ""  # who last wrote it (field manager), for the record
    revisions: dict[int, str] = field(default_factory=dict)  # history number -> revision
    gate: GateResult | None = None  # what the gates awaited said this cycle
    endpoints: int = 0  # ready endpoints of the Service, whatever pods they are
    # Of those, listed by address with no pod (observe.other_endpoints): they
    # take their share of the requests beside the twins'.
    other_endpoints: int = 0
    selector_manager: str = ""  # who last wrote spec.selector, from managedFields
    # The selector's twin key was written by the controller, or who wrote it
    # is unknown (False: another manager set it, e.g. an old export applied).
    selector_ours: bool = True
    state_lost: str = ""  # why the stored status could not be used ("" = it could)
    outcomes: dict[str, str] = field(default_factory=dict)  # revision -> last outcome, in order
    ended: dict[str, float] = field(default_factory=dict)  # revision -> when its last entry ended
    # Revisions whose last entry an `undo` started (not a revert of the Deployment).
    undos: frozenset[str] = frozenset()
    # A `canary pause` the record shows and nothing lifted since (its Event),
    # read only while the status is lost (history.paused_by_hand).
    paused_by_hand: str = ""
    scrape_interval: float = 15.0  # learned from Prometheus unless the analysis sets it
    scrape_phase: float = 0.0  # when a scrape landed (its samples' time); 0.0: unknown
    # How much later than Prometheus the backend makes a landed scrape
    # searchable: VictoriaMetrics' flush (analysis.scrape.searchable_after).
    searchable_after: float = 0.0
    autoscaler: Autoscaler = field(default_factory=Autoscaler)
    # Ready pods behind the Service that are neither the source Deployment's
    # nor a twin's (another Deployment with the same labels, a StatefulSet,
    # a bare pod): pointing the Service at one twin would drop them.
    foreign_pods: tuple[str, ...] = ()
    # The source Deployment's own pods among the Service's ready endpoints,
    # by name (`<deployment>-<pod-template-hash>-<5 random>`): which
    # ReplicaSet each is of, mid rolling update (twins.template_hash).
    source_pods: tuple[str, ...] = ()
    # Other Services of the namespace, not managed here, whose selector picks
    # the app's pods (observe.sharing): they send requests to every twin,
    # the canary or the blue-green preview too, whatever the step.
    sharing: tuple[str, ...] = ()
    # The pods cache can be trusted (listed, its watch not failing): each
    # twin's `restarted` is what its pods say. Not waited for at a start,
    # nor while its watch fails (a LIST of pods throttled by the API
    # server's priority and fairness), when `restarted` is empty whatever runs.
    pods_known: bool = True
    # Previews this controller made for the Service under a name it no
    # longer has (canary.io/preview-service renamed), still selecting a twin
    # (observe.old_previews).
    old_previews: tuple[str, ...] = ()
    # The Service's own fields by which its requests do not follow its ready
    # pods (observe.routing: `sessionAffinity: ClientIP`, a Local traffic
    # policy, zone routing): a step's share of the pods is not its share of
    # the requests.
    routing: tuple[str, ...] = ()
    # The Service's target ports all of the preview's ready endpoints are
    # listed with, in the Service's terms (Twin.ports).
    preview_ports: frozenset[str] | None = None
    # The controller's own preview Service (owned by this one) has other
    # ports than the Service (twins.preview_ports): a port the team added or
    # changed since it was made.
    preview_ports_stale: bool = False

    def twin(self, color: Color | None) -> Twin:
        return self.twins.get(color, Twin()) if color else Twin()


@dataclass(frozen=True, slots=True)
class State:
    """Durable per-Service state, kept in the canary.io/status annotation."""

    stable: Color | None = None
    stable_revision: str = ""
    replicas: int = 0  # the team's desired replica count, from its Deployment
    adopted: bool = False  # the source is at 0 and the stable twin serves
    canary: Color | None = None  # set while a rollout is in flight
    canary_revision: str = ""
    rollout_started: float = 0.0
    # The canary twin had no ready pod when the rollout started: every pod
    # that serves it is new, so its counters hold only this rollout's traffic.
    fresh_pods: bool = False
    step: int = 0
    step_started: float = 0.0  # when the step's replicas were requested
    step_ready: float = 0.0  # when the canary was ready at the step's weight: window start
    # The progress deadline does not count time the rollout stood still
    # (paused, or waiting on a gate): when it began standing still (0: moving),
    # and where the deadline counts from once it moved again (if after step_started).
    still_since: float = 0.0
    deadline_from: float = 0.0
    # A step that served and then lost a pod (eviction, drain): the deadline
    # counts from then, not from the step's start (0: all ready).
    unready_since: float = 0.0
    # A run of losses in the step, each back after more than two scrapes
    # (so each started its window again) and lost again before the step
    # served a whole interval since: a pod that crash-loops while it serves.
    # When its first loss began (0: no run), and how long its losses that
    # ended lasted: while a pod of the run is lost, the deadline counts
    # that much before the loss (placement._lost_since).
    lost_from: float = 0.0
    lost_s: float = 0.0
    # The restarts each container of a pod of the canary's revision had
    # when the rollout began, ("pod/container", count): a twin reused (kept
    # up for an abort, then reverted to) brings pods that served for days,
    # and their restarts (a node reboot or two) are not this rollout's.
    # Only more since then count against max-restarts (restarts.crash_looping).
    restarts_before: tuple[tuple[str, int], ...] = ()
    # The rollout began while the pods cache could not be trusted
    # (Observed.pods_known): restarts_before is read at the first cycle
    # that can, not taken as "none" (restarts.crash_looping).
    restarts_unread: bool = False
    checked: float = 0.0  # last analysis in this step (0: none yet)
    window_start: float = 0.0  # where the next analysis window begins
    failed: int = 0  # failed checks in this rollout
    no_data: int = 0  # consecutive no-data checks
    errors: int = 0  # consecutive error checks
    recheck: bool = False  # the last check failed (tolerated): check again soon
    promoting: bool = False
    # The new twin's size chosen when the promotion began (what both twins
    # served, when autoscaled): kept to the flip, so an HPA that goes
    # mid-promotion does not shrink it first, and the app's size after it.
    promote_to: int = 0
    # A hand-back (canary.io/strategy removed) of an autoscaled rollout in
    # flight grew the stable twin to what both twins served then (0: not
    # grown): the size it hands back at, never grown again from its own
    # growth while the hand-back waits (handback.release). Cleared by any
    # cycle that is not a hand-back's (the strategy put back).
    handback_served: int = 0
    # The twin whose HPA copy autoscaling._left_at removed mid-rollout (the
    # team's HPA gone), scaling it to what both twins served: while that
    # copy is still seen (its delete not yet observed, a finalizer), it no
    # longer sizes the twin for its share (autoscaling._autoscaled). Cleared
    # once it is not seen, or the team's HPA is followed again (decide._as_read).
    left_copy: Color | None = None
    paused: bool = False
    halted: str = ""  # why the rollout stopped and waits for a person
    failed_revision: str = ""  # not rolled out again until the source changes or retry
    undo_of: str = ""  # the source revision an undo in flight is moving away from
    gate_wait: str = ""  # the kind of gate the rollout waits on before its next move
    gate_checked: float = 0.0  # when it last answered "closed"
    gate_reason: str = ""  # why it is closed
    # The canary.io/analysis (judging.analysis_digest) the pass a pre-step or
    # pre-promotion gate waits to act on answered ("": unknown, a status of
    # an older version): edited since, that pass is no answer to it.
    passed_under: str = ""
    scale_down: Color | None = None  # old twin kept up after a promotion
    scale_down_at: float = 0.0
    previous_revision: str = ""  # the old twin's revision, while it is kept up
    requested_weight: int = 0
    effective_weight: float = 0.0
    last_action: str = ""
    # Every request taken, newest last (a few): one written back later is an
    # old request, not a new one (see action_text.TAKEN_KEPT).
    taken_actions: tuple[str, ...] = ()
    invalid: str = ""  # the spec error we last reported
    message: str = ""
    halt_kind: str = ""  # why halted: errors, no-data, invalid (errors resume by themselves)
    canary_pods: str = ""  # the canary revision's ReplicaSet, learned when its pods serve
    # When the canary's pods first served in this rollout (the Service took
    # the twin in, or the preview listed them; 0: not yet). A pod ready
    # before then was no endpoint a ServiceMonitor's discovery could find:
    # canary-pods-never-scraped counts its grace from here at the latest.
    serving_since: float = 0.0
    stable_pods: str = ""  # the stable revision's ReplicaSet
    fast_failed: float = 0.0  # a fast check saw a failure at this time, not yet confirmed
    # The newest sample of the canary that failing check read (0: not known):
    # the next failing look counts only on a later scrape (judging._newer_scrape).
    failed_sample: float = 0.0
    fast_checked: float = 0.0  # the last fast check
    suspected: str = ""  # the failing scheduled check a fast one must confirm
    # The end of the newest check Prometheus answered about the canary (0:
    # none since a restart): an open gate moves on only over a short gap.
    looked: float = 0.0
    # When Prometheus was last probed while halted on query errors (0: not
    # since a restart, so the next probe goes at once): volatile, so an
    # outage's probe every interval writes no status of its own.
    probed: float = 0.0
    # Where the next probe reads from after one that Prometheus answered too
    # late (it read up to there; 0: from the window's start): volatile too,
    # so a slow Prometheus's probe every interval writes no status of its own.
    probe_from: float = 0.0
    # The end of the first of a run of fast looks too quiet to tell (too few
    # requests), since the last that could (0: none): the next look reads
    # from before it, so a canary at a low weight is judged on enough
    # requests within a few scrapes. Volatile: lost, the next look reads two
    # scrapes again.
    quiet_from: float = 0.0
    # Since when the Deployment controller has not observed the canary
    # twin's spec (its generation ahead of observedGeneration: the
    # kube-controller-manager down, or far behind), 0 while it has. That
    # time is not the release's: the deadline waits for it. Volatile: a lag
    # of milliseconds after each write of ours must cost no status write.
    lagging_since: float = 0.0
    # lagging_since, written once the lag has lasted past the Deployment
    # controller's ordinary pace (placement.LAG_S): a restart or a new leader
    # mid-outage takes it up again. One write, with the message that says
    # why the deadline waits.
    lag_from: float = 0.0
    # Why the newest check that read nothing of the canary read nothing (its
    # error: a 422, a timeout, partial data; or no sample of its pods), until
    # one reads it again: said by the waits for a look (looks.last_look).
    # Volatile, like `looked`: a fast look's error text changes no durable
    # state, so it never costs a status write of its own.
    look_error: str = ""
    # A promotion whose new pods are all ready waits for a look to read the
    # canary (Prometheus failing, see promotion._flip_unlooked): since when (0:
    # it does not wait). Only the first cycle that waits asks for a look at
    # once; the looks then keep their pace (an interval after each error).
    flip_waits: float = 0.0
    # Who asked for the promotion in flight with `canary promote` ("": it is
    # the automatic one, after the last step passed). A person's promotion
    # flips without waiting for a look, and says how long none had read.
    promote_by: str = ""
    # Rollouts in a row replaced mid-rollout by a change of config alone (the
    # same images): a Secret rotated faster than a rollout lasts (ConfigChurn).
    config_churn: int = 0
    degraded: str = ""  # observed, every cycle: why the Service is not serving in full
    # The twin whose template was put back (TwinRestored) while its put-back
    # rolls: pods of the edited template serve until then, and a twin still
    # rolling is no degradation by itself (a scale not yet observed reads so).
    put_back: str = ""
    conflict: str = ""  # another Service manages the source Deployment
    source_missing: bool = False  # adopted, and the team's Deployment is gone
    source_scaled: int = 0  # re-scales of the source since the last SourceScaled Event
    source_paused: bool = False  # the team paused their Deployment: the rollout waits
    undone: bool = False  # the stable revision came from an undo; failed_revision is the undone
    source_scaled_at: float = 0.0  # when that Event (or a TwinScaled Warning) went out
    # When the stable twin was first seen with no ready pod while the app
    # has a size (scaled up from 0; the twin deleted, drained, crashing,
    # scaled to 0 by hand): a release waits for one, at most the progress
    # deadline from then. 0: it has had one since. Kept past the deadline
    # while it still has none (rollout.waking says the wait is over).
    woken: float = 0.0
    autoscaler_refused: str = ""  # the team HPA we cannot follow, and why, as last reported
    scaled_from: int = 0  # the stable twin's size before its HPA grew it, until all are ready
    refused: str = ""  # twins whose pods cannot be created, and why, as last told (PodsRefused)
    # The reinstall's hold (ending.source_stands_in) held last cycle, on the
    # source's pods of the stable revision: a release applied to it then is
    # rolled over those pods, which still serve until the stable twin has
    # its own (ending.release_over_stand_in).
    stood_in: bool = False
    # The pod-template-hash of the source's ReplicaSet whose pods stood in
    # ("" when not read: their names cut, or of more than one): over a
    # release, the Service is narrowed to its pods (decide._narrow_hold).
    stood_in_hash: str = ""

    def to_json(self) -> JSON:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Any) -> State:
        """Validated, not trusted: a hand edit or a truncated annotation
        raises StateError (the shell then rebuilds from what it observes).
        Unknown keys are ignored, so an older controller reads a newer status."""
        if not isinstance(data, dict):
            raise StateError(f"expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        try:
            return _STATE.validate_python({k: v for k, v in data.items() if k in known})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "status"
            raise StateError(f"{where}: {first.get('msg', 'invalid')}") from None


class StateError(ValueError):
    """The stored status is not a valid State."""


@dataclass(frozen=True, slots=True)
class Checked:
    """An analysis that finished: which kind of check, its result, and when
    its queries were evaluated (the end of its window)."""

    kind: str  # "scheduled", "fast" (between scheduled ones; counts only failures), "probe"
    result: StepResult
    at: float
    # The canary.io/analysis it ran under (None: unknown, taken as the
    # current one): one edited while the check was in flight asks another
    # question, so the answer to the old one decides nothing.
    analysis: AnalysisSpec | None = None
    # The canary.io/interval it was scheduled under (None: unknown): a
    # scheduled pass over a shorter interval than now asked (lengthened while
    # it ran, to judge steps longer) passes nothing.
    interval: float | None = None


# -- actions -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApplyTwin:
    """Create or update a twin with the source's template at `revision`."""

    color: Color
    revision: str
    replicas: int
    # A hand-edited (or rolled back) stable twin put back (TwinRestored): the
    # twin is marked so (PUT_BACK_ANNOTATION) in the same write.
    put_back: bool = False


@dataclass(frozen=True, slots=True)
class ScaleTwin:
    color: Color
    replicas: int
    # The stable twin grown for a hand-back (or its HPA copy removed
    # mid-step) to what both twins served: the size is marked on it
    # (HANDBACK_ANNOTATION) in the same write.
    handback: bool = False


@dataclass(frozen=True, slots=True)
class SetSelector:
    selector: dict[str, str]


@dataclass(frozen=True, slots=True)
class ScaleSource:
    replicas: int


@dataclass(frozen=True, slots=True)
class GateSource:
    """Add (`on`) or remove our scheduling gate on the source's pod template.
    While the app is managed the source's pods are never scheduled, so a
    re-apply that scales the source and resets the Service selector cannot
    put pods nobody analysed behind the Service; removed before a hand-back
    scales the source up."""

    on: bool


@dataclass(frozen=True, slots=True)
class ApplyPreview:
    selector: dict[str, str]


@dataclass(frozen=True, slots=True)
class RetirePreview:
    """Our preview under a name the spec no longer has: it selects no pod
    any more (twins.RETIRED); the controller may not delete Services.
    `told`: the PreviewRetired Event's text, said by the shell once the
    write lands (a write the guard holds back changed nothing)."""

    name: str
    told: str = ""


@dataclass(frozen=True, slots=True)
class DeleteTwins:
    """Delete both twins and their config copies, except the copies of
    `keep`: the revision a hand-back wrote into the source reads them."""

    keep: str = ""


@dataclass(frozen=True, slots=True)
class Emit:
    """A Kubernetes Event on the Service. `noted`: recorded in the history
    only (canary timeline), with no Kubernetes Event."""

    reason: str
    message: str
    warning: bool = False
    noted: bool = False


@dataclass(frozen=True, slots=True)
class ClaimSource:
    """Record on the source Deployment that this Service manages it, its
    replica count and the stable revision (see Claim). The first claim is a
    write conditional on the Deployment being unchanged since we read it."""

    claim: Claim


@dataclass(frozen=True, slots=True)
class Unclaim:
    """Remove our annotations from the source Deployment (hand-back done)."""


@dataclass(frozen=True, slots=True)
class Disown:
    """Drop a twin's ownerReference: twins must outlive the team's objects."""

    color: Color


@dataclass(frozen=True, slots=True)
class RestoreSource:
    """Write the stable twin's template (less our labels) back into the
    source Deployment, so a hand-back never serves a revision that failed or
    was never analysed."""

    color: Color


@dataclass(frozen=True, slots=True)
class ApplyAutoscaler:
    """Create or update the HPA copy that scales this twin, from the team's HPA."""

    color: Color


@dataclass(frozen=True, slots=True)
class DeleteAutoscaler:
    """Remove our HPA copy from this twin (it is no longer the stable one, or
    the team's HPA is gone or cannot be followed); the twin keeps its size."""

    color: Color


@dataclass(frozen=True, slots=True)
class ResetAutoscaler:
    """Create the team's HPA afresh, unchanged (name, labels, annotations,
    spec), so that the HPA controller forgets the selector it registered for
    it; see Autoscaler.stale."""


@dataclass(frozen=True, slots=True)
class Record:
    """Update the revision history: `outcome` in progressing, promoted,
    rolled-back, aborted, superseded."""

    revision: str
    outcome: str
    reason: str


Action = (
    ApplyTwin
    | ScaleTwin
    | SetSelector
    | ScaleSource
    | GateSource
    | ApplyPreview
    | RetirePreview
    | DeleteTwins
    | Emit
    | Record
    | ClaimSource
    | Unclaim
    | Disown
    | RestoreSource
    | ApplyAutoscaler
    | DeleteAutoscaler
    | ResetAutoscaler
)


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...]
    state: State
    requeue_after: float | None  # seconds; None: wait for the next watch event
    release: bool = False  # management is over: remove our status annotation
    # The check handed in was judged: only such a check is a record (one
    # taken while the step lost its pods, or just before a pause, a
    # supersede or an edit, decided nothing).
    judged: bool = False


_STATE: TypeAdapter[State] = TypeAdapter(State)
