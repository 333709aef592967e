"""One reconcile of one Service: observe -> decide -> act -> record, then
start the checks that are due. The imperative shell around the pure
decide(). Analyses and gate calls run beside the reconciles (checks.py), so
a reconcile never waits on Prometheus or a webhook."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from analysis.gate_results import GateResult
from analysis.gates import Webhooks
from analysis.provider import MetricsProvider
from analysis.run import StepContext
from analysis.spec import GateKind
from analysis.templates import Target as QueryTarget
from canary import autoscaling, handback, history
from canary.act import Actor, NotLeading, Target
from canary.checks import Checks, Ident
from canary.config_copies import CopyKeeper
from canary.decide import decide, phase
from canary.kube import Conflict, Informer, Kube, KubeError
from canary.kube.watch import Informers
from canary.model import (
    COLORS,
    JSON,
    Action,
    ApplyAutoscaler,
    ApplyPreview,
    ApplyTwin,
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
    RestoreSource,
    RetirePreview,
    ScaleSource,
    ScaleTwin,
    SetSelector,
    Source,
    State,
    Twin,
    Unclaim,
)
from canary.notify import Notice, Notifier, notified
from canary.observe import (
    Lookup,
    PodLookup,
    ReadySeen,
    content_hashes,
    created_at,
    field_managers,
    observe,
    old_previews,
    ready_seen,
    ready_time,
    sharing,
)
from canary.placement import stages
from canary.revisions import ConfigRef, clean_template, config_refs
from canary.rollout import window_reach
from canary.schedule import analysis_due, fresh_in_step, fresh_since, gate_due
from canary.spec import (
    FIELD_MANAGER,
    MANAGED_BY,
    MAX_HISTORY,
    SERVICE_LABEL,
    SOURCE_ANNOTATION,
    STATUS,
    TWIN_LABEL,
    RolloutSpec,
    SpecError,
    default_preview,
    managed_by_annotations,
)
from canary.spec_checks import check_against_cluster
from canary.status_writes import (
    HOLD_S,
    PROGRESS_WRITE_EVERY_S,
    VOLATILE,
    carriable,
    carried_in,
    ends_rollout,
    holdable,
    moves_traffic,
    new_check,
    progress_only,
    read_spec,
    read_state,
    refused_written,
    status_raw,
    status_text,
)
from canary.telemetry import Metrics
from canary.twins import (
    OWNED_POD_LABELS,
    SETTINGS,
    owned_by,
    pods_regex,
    twin_name,
    twin_pods_regex,
)
from canary.writeguard import WriteGuard

log = logging.getLogger(__name__)

Key = tuple[str, str]

# One change to the history records, kept until it is written.
Edit = Callable[[list[JSON]], list[JSON]]


@dataclass(frozen=True, slots=True)
class Unwritten:
    """A decision whose writes to the cluster landed but whose record did
    not (the history or status write failed). `over`: the status annotation
    it was decided over. While that annotation is unchanged, the next cycle
    goes on from this state instead of deciding the same step again from the
    older status (re-running its check, undoing its traffic change)."""

    over: str
    state: State
    edits: tuple[Edit, ...] = ()


@dataclass(frozen=True, slots=True)
class Held:
    """A status write held back (HOLD_S): since when, and the cycle's actor
    and status text, which a graceful stop writes."""

    since: float
    actor: Actor
    status: str


@dataclass
class Caches:
    services: Informer | Informers
    deployments: Informer | Informers
    slices: Informer | Informers
    configmaps: Informer | Informers
    secrets: Informer | Informers
    hpas: Informer | Informers | None = None  # HorizontalPodAutoscalers (autoscaling/v2)
    pods: Informer | Informers | None = None  # the twins' pods, slimmed to their readiness
    # (namespace, service) -> EndpointSlices, kept by the controller's handlers
    slices_by_service: dict[tuple[str, str], dict[str, JSON]] = field(default_factory=dict)
    # (namespace, service) -> names of the twins' pods labelled for it
    pods_by_service: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    # namespace -> names of its Services (observe.sharing reads a namespace's)
    services_by_namespace: dict[str, set[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a reconcile tells the controller: when to come back, and which
    objects should wake this Service when they change."""

    requeue_after: float | None
    deployment: str | None = None
    preview: str | None = None
    config: frozenset[ConfigRef] = frozenset()
    # Writes the decision could do without, refused for good, the rest landed
    # (the history, keeping the source down): told and retried as a failure.
    refused: tuple[KubeError, ...] = ()


@dataclass
class Edges:
    """Everything a reconcile talks to besides the caches, in one place."""

    kube: Kube
    prometheus: MetricsProvider
    webhooks: Webhooks = field(default_factory=Webhooks)
    notifier: Notifier = field(default_factory=Notifier)
    metrics: Metrics = field(default_factory=Metrics)
    # How long this replica may still write (leader election's fence; no
    # limit without it)
    fence: Callable[[], float] = lambda: math.inf


# A cycle failing on a bug repeats every 30 s at most: one Event in ten minutes
# keeps it in `kubectl get events` without a flood.
FAILURE_EVENT_EVERY_S = 600.0


# What the status carries of the history (history.CARRIED) is taken into the
# history ConfigMap once it is larger than this: a long rollout's checks
# must not grow the Service (every kube-proxy watches Services) without
# bound. A few steps' checks fit; the status annotation stays far below the
# 256 KiB all of an object's annotations may take.
CARRIED_MAX_BYTES = 16_000


# While the history write is refused for good (HISTORY_REFUSED), what the
# rollout in flight carries stays in the status past CARRIED_MAX_BYTES (the
# ConfigMap cannot take it: dropped, on-call saw none of the rollout's checks
# and a restart lost them), up to this many bytes, its oldest checks and
# Events dropped first: all of an object's annotations may take 256 KiB,
# and a status too large to be written would stop the rollout.
CARRIED_REFUSED_MAX_BYTES = 64_000


# A history write the API server refuses for good (RBAC without patch on
# ConfigMaps after an upgrade or a Role edited mid-rollout, the ConfigMap
# made `immutable: true`): a retry never gets through. The record is best
# effort then, as an Event is: it must not hold traffic on a canary judged
# failing (a rollback writes its record before its traffic moves).
HISTORY_REFUSED = (400, 403, 422)


def _history_refused(exc: BaseException) -> bool:
    return isinstance(exc, KubeError) and exc.status in HISTORY_REFUSED


# What keeping the team's Deployment down may be refused with for good: a
# validating policy it violates on any update (one added after it was
# created), a webhook down with failurePolicy: Fail (500).
SOURCE_REFUSED = (400, 403, 422, 500)


async def _let_pass(actor: Actor, write: Coroutine[Any, Any, None], what: str) -> bool:
    """A write the decision can go ahead without: refused for good (a
    policy, a quota, a webhook that is down), it is let pass, logged, and
    raised once the rest has landed (ReconcileFailed names it). False when
    it was refused."""
    try:
        await write
    except KubeError as exc:
        if exc.status not in SOURCE_REFUSED:
            raise
        log.warning("%s was refused: %s", what, exc)
        actor.refused.append(exc)
        return False
    return True


async def _keeping_down(actor: Actor, write: Coroutine[Any, Any, None]) -> bool:
    """Keeping the team's Deployment at 0 and gated only stops pods nothing
    serves (the Service selects a twin's): refused for good, the rest of the
    plan goes ahead and the refusal is raised once it has landed. Before, it
    cut the cycle first thing, and a canary judged failing kept its traffic
    for as long as the policy refused. Never so for a write that gives the
    source pods (a hand-back): what comes after it relies on them. False
    when it was refused."""
    return await _let_pass(actor, write, "keeping the source Deployment down")


async def _scaling_down(actor: Actor) -> None:
    """The source's scale to 0 (_keeping_down). Refused, its SourceScaled,
    which says "so it is back at 0" while the Deployment's pods run, is
    neither told nor recorded (ReconcileFailed names the refusal)."""
    if not await _keeping_down(actor, actor.scale_source(0)):
        actor.unsaid.add("SourceScaled")


async def _previewing(actor: Actor, write: Coroutine[Any, Any, None], preview: str) -> None:
    """The preview serves no production traffic: refused for good (a
    namespace quota on Services at its limit, an admission policy), the
    rest of the plan goes ahead and the refusal is raised once it has
    landed (ReconcileFailed names it). The step then waits for a preview
    that never selects the new twin and is rolled back at its progress
    deadline, saying so (placement._not_taking). Before, it cut the cycle
    after the rollout's start: no status or history was written, each retry
    started the rollout again (another RolloutStarted), no deadline ever
    counted, and the full-size new twin stayed up for good."""
    await _let_pass(actor, write, f"the preview Service {preview}")


async def _set_selector(
    actor: Actor, plan: Plan, live: dict[str, str], wanted: dict[str, str], carry: str | None
) -> dict[str, str]:
    """The Service's selector as it is once the write is done."""
    stable = plan.state.stable
    # Safe too: off the other twin alone onto both (the stable's pods taken
    # back in): it only takes traffic from the canary.
    on_stable = stable is not None and (
        wanted.get(TWIN_LABEL) == stable
        or (TWIN_LABEL not in wanted and live.get(TWIN_LABEL) not in (None, stable))
    )
    try:
        await actor.set_selector(live, wanted, safe=on_stable, status=carry)
    except KubeError as exc:
        if exc.status not in SOURCE_REFUSED or not _scaled_off_instead(plan, live, wanted):
            raise
        # Every update of the Service refused for good (a policy added after
        # it was made, that it violates: no `type: LoadBalancer`, a required
        # label): the canary's pods are what serve its share while the
        # Service selects both twins, so the canary's scale to 0 that
        # follows still takes its traffic away. Before, the refusal cut the
        # rollback first, and a canary judged failing kept its share.
        log.warning("moving the Service onto the stable twin was refused: %s", exc)
        actor.refused.append(exc)
        return live
    return wanted


def _scaled_off_instead(plan: Plan, live: dict[str, str], wanted: dict[str, str]) -> bool:
    """A move from both twins onto the stable one, in a plan that scales
    the other twin to 0: the scale alone leaves the stable's pods serving."""
    stable = plan.state.stable
    return (
        stable is not None
        and TWIN_LABEL not in live
        and wanted.get(TWIN_LABEL) == stable
        and any(
            isinstance(a, ScaleTwin) and a.color != stable and a.replicas == 0 for a in plan.actions
        )
    )


async def _restoring_copies(actor: Actor, write: Coroutine[Any, Any, None]) -> None:
    """Putting back a config copy deleted by hand runs once the decision has
    landed: refused for good (a ConfigMap or Secret count quota that is
    full, a policy), it is told as a write done without (landed), and the
    cycle keeps its own wake-up. Before, it failed the cycle after the
    fact: back at the error back-off only (up to 30 s), not at the look
    due, so a rollback came that late for as long as the quota was full."""
    await _let_pass(actor, write, "putting back a config copy")


async def _claiming(actor: Actor, claim: Claim) -> None:
    """Our claim on the team's Deployment. Updated (its size, its stable
    revision: after every promotion, and autoscaled at every step), it is
    written to the Deployment a validating policy or a webhook that is down
    refuses for good as it refuses keeping it down (_keeping_down): let
    pass the same way, the decision going ahead and the refusal raised once
    it has landed. Before, it was the last write of the cycle and cut each
    one before its status, so a step that passed scaled the canary to its
    next weight and the retry judged it again from the step before. Never
    the first claim: owning the Deployment rests on it."""
    found = actor.cached("Deployment", actor.deployment) or {}
    claimed = (found.get("metadata", {}).get("annotations") or {}).get(MANAGED_BY)
    if claimed != claim.service:
        await actor.claim(claim)
        return
    await _let_pass(actor, actor.claim(claim), "updating our claim on the source Deployment")


async def _copying_autoscaler(actor: Actor, write: Coroutine[Any, Any, None]) -> None:
    """Our copy of the team's HPA only lets that HPA size the stable twin:
    refused for good (a quota on the count of HPAs in the namespace, a
    policy, a ClusterRole from before HPAs), the twins keep their size, as
    for an HPA that cannot be followed, the rest of the decision goes ahead
    and the refusal is raised once it has landed (ReconcileFailed names it).
    Its AutoscalerFollowed is not said: nothing follows. Before, it was the
    last write of every cycle and cut each one: the status was never
    written, so a step that passed scaled the canary to its next weight and
    the retry, deciding from the step before, judged it again from there."""
    if not await _let_pass(actor, write, "the copy of the team's HPA"):
        actor.unsaid.add("AutoscalerFollowed")


# Events that say what the cycle's writes did to the team's Deployment or a
# twin ("back at 0", "put back to 3", "the stable twin runs 3 replicas", a
# canary's template "put back"), decided before those writes (the size or
# the edit is taken first, written later in the plan): told once all of the
# plan's writes landed. Told before, a write refused (a webhook on
# Deployments that is down) cut the cycle after the Event, and each retry,
# deciding again from the status the cut cycle never wrote (its pacing with
# it), told it again: "put back to 3" every back-off while the twin stayed
# at 1.
TOLD_AFTER_WRITES = frozenset({"SourceScaled", "TwinScaled", "TwinRestored"})


def _told_last(actions: tuple[Action, ...]) -> list[Action]:
    """The plan's actions in the order they are carried out: its
    TOLD_AFTER_WRITES Events after all of its writes. The status still
    rides along with the selector as the plan has it (carriable): one
    Service write per cycle, the history has those Events either way."""
    sized = [a for a in actions if isinstance(a, Emit) and a.reason in TOLD_AFTER_WRITES]
    return [a for a in actions if a not in sized] + sized


def _said(plan: Plan, unsaid: set[str]) -> Plan:
    """The plan less its Events of these reasons (their write was refused)."""
    if not unsaid:
        return plan
    kept = [a for a in plan.actions if not (isinstance(a, Emit) and a.reason in unsaid)]
    return replace(plan, actions=tuple(kept))


def _plain_start(plan: Plan, records: list[Record], observed: Observed) -> bool:
    """The plan starts a release of the source's revision, new to the
    history, and records nothing else: not an undo (its UndoRequested is
    read back from the history, history.undos), not the end of another
    rollout, not a retry or another start of a revision the history has
    ended (a status lost then is rebuilt from the history: found ended, a
    retry would be held back as rolled back again)."""
    return (
        len(records) == 1
        and records[0].outcome == "progressing"
        and records[0].revision == observed.source.revision
        and records[0].revision not in observed.outcomes
        and not any(isinstance(a, Emit) and a.reason == "UndoRequested" for a in plan.actions)
    )


def _templateless(item: JSON) -> bool:
    start = item.get("start")
    return isinstance(start, dict) and not start.get("template")


def _size(items: list[JSON]) -> int:
    return len(json.dumps(items, separators=(",", ":")))


def _prior(unwritten: Unwritten | None) -> tuple[Edit, ...]:
    return unwritten.edits if unwritten else ()


def _judged(key: Key, plan: Plan, checked: Checked | None) -> Checked | None:
    """The check handed in, if the decision judged it. One taken on a step
    that then lost its pods, paused, was superseded or edited decided
    nothing: it is neither a record nor a measurement of the release."""
    if checked is not None and not plan.judged:
        log.debug("%s/%s: a %s check decided nothing: not recorded", *key, checked.kind)
        return None
    return checked


# The statuses kept per Service to tell ours from another controller's
# (other_controller), and how often that is told (a Warning Event).
SENT_KEPT = 8
OTHER_TOLD_EVERY_S = 600.0


def other_controller(service: JSON, sent: Iterable[str]) -> str:
    """What to tell when another canary controller wrote this Service's
    status after this process wrote one ("" when none did): it was written
    as the controller writes it (field manager canary-controller) and is none
    this process sent. Only the leader writes, and a replica that loses the
    Lease exits, so that is a second install watching the namespace, a Lease
    renamed or moved by an upgrade while the old replicas still lead, or one
    run with --no-leader-elect beside them. Before, nothing said so: each
    emitted its own Events, called the gates and notified twice, and two
    versions (or flags) undid each other's writes, with at most a WriteLoop
    naming neither."""
    sent = list(sent)
    raw = status_raw(service)
    if not sent or not raw or raw in sent:
        return ""
    path = ("f:metadata", "f:annotations", f"f:{STATUS}")
    if FIELD_MANAGER not in field_managers(service["metadata"], path):
        return ""  # someone else's (an old export applied): read_state's to judge
    return (
        "another canary controller wrote this Service's status after this one did: two "
        "controllers act on it (a second install watching this namespace, the controller's "
        "Lease renamed or moved by an upgrade while the old replicas still run, or one run "
        "with --no-leader-elect). Each sends its own Events, gate calls and notifications, "
        "and two versions or configurations undo each other's writes; keep one (remove the "
        "other, or give each its own --namespace list)"
    )


def _ident(state: State) -> Ident:
    """The rollout position an analysis was asked for."""
    return (
        state.canary_revision,
        state.rollout_started,
        state.step,
        state.step_ready,
        state.window_start,
        state.checked,
        state.fast_checked,
        state.recheck,
        state.halt_kind,
    )


def _gate_ident(state: State) -> Ident:
    return (state.canary_revision, state.rollout_started, state.step, state.gate_wait)


def _progress(state: State) -> str:
    """Where the rollout is: the same write at a new position is not a loop.
    `rollout_started` tells one rollout from the next: bad releases rolled
    back in a row write the same selector each time, and that is not a
    fight (taken for one, the guard blocked the selector's repair)."""
    return "/".join(
        str(v)
        for v in (
            state.stable,
            state.stable_revision,
            state.canary_revision,
            state.rollout_started,
            state.step,
            state.promoting,
            state.replicas,
            state.adopted,
        )
    )


class Reconciler:
    def __init__(
        self, edges: Edges, caches: Caches, wake: Callable[[Key], None] = lambda key: None
    ) -> None:
        self.kube = edges.kube
        self.caches = caches
        self.webhooks = edges.webhooks
        self.notifier = edges.notifier
        self.metrics = edges.metrics
        self.edges = edges
        self.checks = Checks(edges.prometheus, edges.webhooks, wake)
        self.guard = WriteGuard()
        self.copies = CopyKeeper()  # config copies deleted by hand, put back
        self._missing: dict[Key, float] = {}  # Services first seen gone, for their orphans
        self._kept_aside: set[tuple[str, str, str]] = set()  # corrupt histories copied aside
        self._background: set[asyncio.Task[None]] = set()
        # ConfigMaps and Secrets the managed templates read, by Service: the
        # caches hold only these (and our own copies and histories).
        self._wants: dict[Key, set[tuple[str, str, str]]] = {}
        # The checks and Events not in the history yet (history.CARRIED), by
        # Service: the status carries them, once written; a history write
        # takes them. Read back from the status by a new process.
        self._carrying: dict[Key, list[JSON]] = {}
        # State that only paces this process (not worth a status write per
        # scrape): kept here and laid over the status read back.
        self._volatile: dict[Key, dict[str, Any]] = {}
        # A status another manager wrote (a Service recreated with it) that
        # a rebuild found to be the very value it would write, by Service.
        # Our write of it is a no-op, which leaves the field the other
        # manager's (an Update takes a field over only when it changes it):
        # distrusted again, it was rebuilt at every cycle, a StateRebuilt
        # Warning per watch event. Good while the status stays that value:
        # dropped when we write another (our state moved on: that value
        # applied again later is an old one) or when it is seen changed;
        # lost on a restart (one more rebuild, to the same value).
        self._vouched: dict[Key, str] = {}
        self._unwritten: dict[Key, Unwritten] = {}
        # The carried items the cycle's history edits took (_edits): put back
        # into what the status carries when that write is refused for good.
        self._into_history: dict[Key, list[JSON]] = {}
        # The entry of the rollout in flight as this process last read or
        # wrote it in the history: put back whole when the history loses it
        # (`kubectl delete configmap`, an edit by hand), with the checks
        # already taken into it (_saw_history).
        self._in_flight: dict[Key, JSON] = {}
        # The Services whose last history write was refused for good: what
        # is new waits in the status up to CARRIED_REFUSED_MAX_BYTES, not in
        # another write of it all (refused again, and its edits piled up in
        # Unwritten at every cycle). Cleared by a history write that lands.
        self._history_refused: set[Key] = set()
        # The statuses this process sent, by Service (the last few), and when
        # it last told of another controller writing one (other_controller).
        self._sent: dict[Key, deque[str]] = {}
        # The Services where one of those was seen on the Service since: until
        # then the status there may be this controller's from before a
        # restart (or the replica that led before), its first sends failed.
        self._ours_seen: set[Key] = set()
        self._other_told: dict[Key, float] = {}
        # Per twin's pod (namespace, name): its Ready time as stamped and when
        # this process saw it turn so (observe.ready_seen), for the per-pod
        # checks (canary-pods-unseen, canary-pods-never-scraped).
        self._ready_seen: dict[Key, ReadySeen] = {}
        # When each Service's status was last written, and when a progress
        # write held back (PROGRESS_WRITE_EVERY_S) is due.
        self._status_at: dict[Key, float] = {}
        self._progress_due: dict[Key, float] = {}
        # Status writes held back for the step's pods (HOLD_S); a held
        # write's deadline is in _progress_due too.
        self._held: dict[Key, Held] = {}
        self._failure_told: dict[Key, tuple[float, str]] = {}  # report_failure's last Event
        # Why Events are refused, by Service, while they are (EVENTS_REFUSED);
        # "" once one was created. Until this controller has seen one either
        # way (a restart, a new leader), what the status says stands.
        self._events_refused: dict[Key, str] = {}
        self.wanted: dict[tuple[str, str, str], int] = {}

    async def close(self, grace_s: float = 5.0) -> None:
        await self._write_held(grace_s)
        await self._write_pending(grace_s)
        await self.checks.close()
        if self._background:
            # The notifications still out after the grace are cancelled and
            # awaited: left running, the stop closed their sessions under
            # them and the loop's end destroyed them pending.
            _, late = await asyncio.wait(self._background, timeout=grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def report_failure(
        self, namespace: str, name: str, exc: Exception, landed: bool = False
    ) -> None:
        """A cycle failed on something other than the API or the lease: a bug
        in canary. Say so on the Service (a Warning, again only when the error
        changes or FAILURE_EVENT_EVERY_S later), so on-call sees why it does
        not move instead of a rollout that quietly stopped. `landed`: the
        decision went ahead, only a write it can do without was refused
        (Outcome.refused)."""
        key, now, text = (namespace, name), time.monotonic(), f"{type(exc).__name__}: {exc}"
        last = self._failure_told.get(key)
        service = self.caches.services.get(namespace, name)
        if service is None or (last and last[1] == text and now < last[0] + FAILURE_EVENT_EVERY_S):
            return
        self._failure_told[key] = (now, text)
        actor = self._actor_for(key, service, now)
        blame = (
            "The API server refused a write: fix what it names (an object, RBAC), or report "
            "it with the controller's log if it is canary's own"
            if isinstance(exc, KubeError)
            else "A bug in canary: please report it with the controller's log"
        )
        message = (
            f"a write the controller can do without was refused on this Service "
            f"({text[:300]}); each decision goes ahead without it, and it is tried again. {blame}"
            if landed
            else f"the controller failed on this Service ({text[:300]}); it changes nothing more "
            f"here until a cycle succeeds, and retries with backoff. {blame}"
        )
        self.metrics.events.labels("ReconcileFailed").inc()
        await actor.emit(Emit("ReconcileFailed", message, warning=True))

    def _told(self, key: Key, service: JSON | None) -> Callable[[Emit, KubeError | None], None]:
        """What follows an Event created, or refused and dropped (act.py,
        EVENT_REFUSED): counted, and remembered for the status. Nothing seen
        yet, the status as written (`service`) is what is known: a refusal
        it already tells of keeps its "since", not written again."""
        self._events_refused.setdefault(key, refused_written(service) if service else "")

        def told(event: Emit, refused: KubeError | None) -> None:
            if refused is None:
                self._events_refused[key] = ""
                return
            self.metrics.events_dropped.labels(event.reason).inc()
            if not self._events_refused.get(key):
                since = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                self._events_refused[key] = (
                    f"since {since} the API server refuses this Service's Events "
                    f"({refused.status} {refused.message[:300]}); they are dropped, "
                    "the rollout goes on, and the history has them (canary timeline)"
                )

        return told

    def _actor_for(self, key: Key, service: JSON, now: float) -> Actor:
        """An actor outside a cycle (a failure told, a stop's last writes)."""
        namespace, name = key
        target = Target(namespace, name, state_deployment(service) or name, service)
        return Actor(
            self.kube,
            target,
            self._remember,
            self._lookup(namespace),
            self.guard,
            "",
            now,
            self.edges.fence,
            self._told(key, service),
        )

    async def _write_pending(self, timeout_s: float) -> None:
        """A graceful stop writes the checks and Events still waiting for a
        history write (those of a status held or paced back, or of a cycle
        whose status rode along with its selector, are in no write yet):
        the successor decides nothing again, so they would never reach the
        history."""
        pending, self._carrying = self._carrying, {}

        async def write(key: Key, items: list[JSON]) -> None:
            service = self.caches.services.get(*key)
            if service is None or not items:
                return
            name = history.history_name(key[1])
            configmap = self.caches.configmaps.get(key[0], name)
            loaded, corrupt = history.load_checked(configmap)
            # A start read back from the status has no template: it stays
            # there for the successor, whose history write finds one.
            untold = {i["revision"] for i in items if _templateless(i)}
            records = history.apply_items(
                loaded, [i for i in items if i.get("revision") not in untold]
            )
            if corrupt or records == loaded:
                return  # never over a history kept aside; nothing of theirs to add
            try:
                actor = self._actor_for(key, service, time.monotonic())
                await actor.write_history(name, history.dump(records), configmap is not None)
            except (KubeError, OSError, NotLeading) as exc:
                log.info(
                    "Events not written to the history on stop (%s)",
                    exc,
                    extra={"namespace": key[0], "service": key[1]},
                )

        writes = [asyncio.ensure_future(write(k, e)) for k, e in pending.items() if e]
        if writes:
            _, late = await asyncio.wait(writes, timeout=timeout_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    def _forget_held(self, key: Key) -> None:
        """What was kept for a Service's next status write (it is gone, or
        handed back: there is no next one)."""
        for kept in (self._unwritten, self._held, self._progress_due):
            kept.pop(key, None)

    async def _write_held(self, timeout_s: float) -> None:
        """A graceful stop writes the statuses still held (HOLD_S), each on
        the Service version it was decided on: a restart then repeats
        nothing. Lost with the process (a crash, a kill) or the lease (the
        fenced write is refused): the successor decides it again."""
        held, self._held = self._held, {}

        async def write(key: Key, actor: Actor, status: str) -> None:
            try:
                await actor.write_status(status)
            except (KubeError, OSError, NotLeading) as exc:
                log.info(
                    "held status not written on stop (%s); the next controller decides it again",
                    exc,
                    extra={"namespace": key[0], "service": key[1]},
                )

        # All at once, bounded together: an API server that is down must not
        # hold the stop for a timeout per Service.
        writes = [asyncio.ensure_future(write(k, h.actor, h.status)) for k, h in held.items()]
        if writes:
            _, late = await asyncio.wait(writes, timeout=timeout_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    def _lookup(self, namespace: str) -> Callable[[str, str], JSON | None]:
        def lookup(kind: str, obj_name: str) -> JSON | None:
            informer = {
                "Deployment": self.caches.deployments,
                "ConfigMap": self.caches.configmaps,
                "Secret": self.caches.secrets,
                "Service": self.caches.services,
                "HorizontalPodAutoscaler": self.caches.hpas,
            }[kind]
            return None if informer is None else informer.get(namespace, obj_name)

        return lookup

    def _pods(self, namespace: str) -> PodLookup | None:
        """The twins' pods, while their cache can be trusted: listed, and its
        watch not failing (else a pod it last saw starting would veto its
        endpoint for good: observe.vetoed). In this namespace: one where
        pods are refused (a RoleBinding without the pods rule) set the veto
        aside in every namespace of --namespace."""
        pods = self.caches.pods
        if pods is None or not pods.refreshed(namespace):
            return None

        def pod_of(name: str) -> JSON | None:
            return pods.get(namespace, name)

        return pod_of

    def _services_in(self, namespace: str) -> list[JSON]:
        names = sorted(self.caches.services_by_namespace.get(namespace, ()))
        found = (self.caches.services.get(namespace, name) for name in names)
        return [service for service in found if service is not None]

    def _twin_pods(self, namespace: str, service: str) -> Callable[[Color], list[JSON]] | None:
        """A twin's pods for `service`, while their cache can be trusted."""
        pod_of = self._pods(namespace)
        if pod_of is None:
            return None
        names = sorted(self.caches.pods_by_service.get((namespace, service), ()))

        def pods_of(color: Color) -> list[JSON]:
            found = (pod_of(name) for name in names)
            return [
                p
                for p in found
                if p and (p["metadata"].get("labels") or {}).get(TWIN_LABEL) == color
            ]

        return pods_of

    def _slices(self, namespace: str) -> Callable[[str], list[JSON]]:
        def slices(service_name: str) -> list[JSON]:
            return list(self.caches.slices_by_service.get((namespace, service_name), {}).values())

        return slices

    async def _want(self, key: Key, refs: set[ConfigRef]) -> None:
        """Record what this Service's template reads; fetch what just became
        wanted (the watch keeps it fresh from then on), drop what nobody
        reads any more."""
        namespace = key[0]
        now = {(namespace, kind, name) for kind, name in refs}
        before = self._wants.get(key, set())
        if now == before:
            return
        added = now - before
        for item in added:  # first, so the watch keeps what changes meanwhile
            self.wanted[item] = self.wanted.get(item, 0) + 1
        try:
            for item in added:
                cache = self.caches.configmaps if item[1] == "ConfigMap" else self.caches.secrets
                if cache.get(namespace, item[2]) is None:
                    await cache.fetch(namespace, item[2])
        except BaseException:
            # Not fetched: the watch delivers it again only once it changes,
            # so taken as fetched the next cycle would find it missing, hash
            # the revision without it and leave the twin reading the team's
            # live object. Left unwanted, the retry fetches it again.
            self._unwant(added)
            raise
        self._wants[key] = now
        if not now:
            del self._wants[key]
        self._unwant(before - now)

    def _unwant(self, items: set[tuple[str, str, str]]) -> None:
        """One reader fewer for each; one nobody reads any more leaves the
        cache (but a copy of ours, which the copy keeper still watches)."""
        for item in items:
            self.wanted[item] -= 1
            if self.wanted[item] > 0:
                continue
            del self.wanted[item]
            namespace, kind, name = item
            cache = self.caches.configmaps if kind == "ConfigMap" else self.caches.secrets
            found = cache.get(namespace, name)
            if found is not None and SERVICE_LABEL not in (found["metadata"].get("labels") or {}):
                cache.forget(namespace, name)

    def saw_pod(
        self, namespace: str, name: str, pod: JSON | None, now: float, listing: bool
    ) -> None:
        """A twin's pod as an event of its cache brought it (None: deleted);
        `listing`: the cache's first list of its namespace."""
        key = (namespace, name)
        if pod is None:
            self._ready_seen.pop(key, None)
            return
        self._ready_seen[key] = ready_seen(self._ready_seen.get(key), pod, now, listing)

    def managed(self, namespace: str, name: str) -> bool:
        """Annotated for us and not being deleted: a Service that stays a
        while with `deletionTimestamp` set (a LoadBalancer's cleanup
        finalizer, its namespace being deleted) is as good as gone, as a
        twin being deleted is. Decided on as live, with its namespace going,
        its rollout was cancelled and told, and each cycle created its
        history again, refused (403), until the load balancer was gone."""
        service = self.caches.services.get(namespace, name)
        meta = (service or {}).get("metadata", {})
        if meta.get("deletionTimestamp"):
            return False
        return managed_by_annotations(meta.get("annotations") or {})

    async def _read_spec(
        self, key: Key, service: JSON, stored: State
    ) -> tuple[RolloutSpec | SpecError | None, set[ConfigRef]]:
        """The annotations, refused when they name a Deployment or a preview
        Service this Service must not take over, or a config object's
        tracking nobody can read (see spec_checks); and what the Deployment
        they name reads."""
        namespace = key[0]
        spec = read_spec(service)
        if not isinstance(spec, RolloutSpec):
            return spec, set()
        lookup = self._lookup(namespace)
        reads = _reads(lookup("Deployment", spec.deployment))
        # Fetched before the check: the cache holds only what a template is
        # known to read, so an object read for the first time was not seen
        # by it, and the cycle went on with it taken as tracked (copied,
        # twins written) before the next one said InvalidSpec.
        before = {(kind, obj) for _, kind, obj in self._wants.get(key, set())}
        await self._want(key, before | reads)
        preview = lookup("Service", spec.preview_service)
        # Only once adopted: a name fixed before that (a typo, phase Waiting)
        # simply takes effect. A status lost (a Service recreated by
        # `kubectl replace --force`, a Helm reinstall) does not make the
        # twins labelled for it any less adopted: unchecked, the new name was
        # adopted and they ran on, never handed back.
        managed = state_deployment(service) if stored.adopted else None
        managed = managed or self._twins_source(namespace, service["metadata"]["name"])
        configs = tuple(
            {"kind": kind, **obj}
            for kind, name in sorted(reads)
            if (obj := lookup(kind, name)) is not None
        )
        return check_against_cluster(spec, service, managed, preview, configs), reads

    async def reconcile(self, namespace: str, name: str) -> Outcome:
        key = (namespace, name)
        now = time.time()
        service = self.caches.services.get(namespace, name)
        if service is None or not self.managed(namespace, name):
            return await self._orphans(key, service, now)
        self._missing.pop(key, None)
        stored, lost = self._read_state(key, service)
        spec, named_reads = await self._read_spec(key, service, stored)
        unwritten = self._carried(key, service)
        state, lost = (stored, lost) if unwritten is None else (unwritten.state, "")
        if not lost and key in self._volatile:
            state = replace(state, **self._volatile[key])
        deployment = (
            spec.deployment
            if isinstance(spec, RolloutSpec)
            else (state_deployment(service) or self._twins_source(namespace, name) or name)
        )
        preview = spec.preview_service if isinstance(spec, RolloutSpec) else default_preview(name)
        lookup = self._lookup(namespace)
        source_object = lookup("Deployment", deployment)
        # (What the named Deployment reads stays wanted while a refused spec
        # observes another: dropped, it was fetched again at every cycle.)
        await self._want(key, (reads := _reads(source_object)) | named_reads)
        observed, refs = observe(
            service,
            deployment,
            lookup,
            self._slices(namespace),
            lookup,
            preview,
            self._pods(namespace),
            self._twin_pods(namespace, name),
        )
        configmap = lookup("ConfigMap", history.history_name(name))
        records, corrupt = self._read_history(key, configmap)
        self._read_carried(key, service, lost, records, observed)
        observed = replace(
            observed,
            revisions=history.undoable(records),
            outcomes=history.outcomes(records),
            ended=history.ended(records),
            undos=history.undos(records),
            paused_by_hand=(
                history.paused_by_hand(records, self._carrying.get(key, [])) if lost else ""
            ),
            state_lost=lost,
            source=self._live_claim(namespace, name, observed.source),
            autoscaler=autoscaling.observe(self._hpas(namespace), service, deployment),
            sharing=sharing(
                self._services_in(namespace), name, preview, observed.source.pod_labels
            ),
            old_previews=old_previews(self._services_in(namespace), service, preview),
        )
        observed, scrape_from = self._scrapes(key, spec, state, observed, now)
        checked, gate, observed = self._taken(key, state, lost, observed)
        recorded: list[JSON] | None = None  # the history, when written before the actions
        try:
            plan = decide(spec, state, observed, checked, now)
            actor = await self._cycle_actor(
                Target(namespace, name, deployment, service), lookup, plan, now
            )
            await self._adopt_history(actor, configmap)
            writable = await self._keep_corrupt_history_aside(actor, configmap, corrupt)
            if ends_rollout(plan):
                recorded = await self._record_first(
                    key,
                    actor,
                    records,
                    lambda: (
                        _prior(unwritten)
                        + self._decision_edits(
                            key, spec, state, plan, observed, checked, now, scrape_from, writable
                        )
                    ),
                )
            status = self._status_for(key, spec, stored, plan, deployment, service)
            later, plan = await self._act(actor, plan, observed, refs, preview, records, status)
            self._unwritten.pop(key, None)  # landed: its record is this cycle's to write
        except BaseException:
            self._cut_short(key, state, checked, gate, plan if recorded is not None else None)
            raise
        checked = _judged(key, plan, checked)
        edits = (
            _prior(unwritten)
            + self._decision_edits(
                key, spec, state, plan, observed, checked, now, scrape_from, writable
            )
            if recorded is None
            else ()  # written before the actions
        )
        # The status again, with this cycle's check (carried now, or taken
        # into the history) and what is known of refused Events after its
        # own; not when it went with the selector (carriable): a second
        # write this cycle, the next one writes the rest.
        if actor.status_written is None:
            status = self._status_for(key, spec, stored, plan, deployment, service)
        unrecorded = await self._write_records(
            actor,
            spec,
            service,
            stored,
            plan,
            edits,
            records,
            status,
            recorded,
            restatus=lambda: self._status_for(key, spec, stored, plan, deployment, service),
        )
        await self._landed(
            key, actor, spec, state, plan, observed, checked, now, unrecorded is None
        )
        await self._after_record(actor, later)
        if not plan.release and state.adopted:
            # (With a release carried: its config is what a copy missing is told by.)
            carried = history.apply_items(recorded or records, self._carrying.get(key, []))
            await _restoring_copies(actor, self.copies.restore(actor, observed, lookup, carried))
        requeue = self._requeue(key, plan, time.time() - now)
        if unrecorded is not None and unrecorded not in actor.refused:
            raise unrecorded  # retried with the controller's back-off
        return Outcome(
            requeue,
            refused=tuple(actor.refused),
            deployment=deployment,
            preview=preview,
            # Everything the template reads, not only what is copied: an
            # untracked object whose annotation changes (tracking on again,
            # a value nobody can read) or a missing `optional` one created
            # is a release or an InvalidSpec, and nothing else wakes us.
            config=frozenset(reads),
        )

    async def _cycle_actor(self, target: Target, lookup: Lookup, plan: Plan, now: float) -> Actor:
        """The cycle's actor, told of each status it sends; first, a Warning
        that another controller wrote the Service's status as this cycle read
        it (other_controller), at most every OTHER_TOLD_EVERY_S."""
        key = (target.namespace, target.name)
        service, sent = target.service or {"metadata": {}}, self._sent.get(key, ())
        if status_raw(service) in sent:
            self._ours_seen.add(key)
        # Judged only once a status this process sent was on the Service:
        # before, a send that failed (a 409, a policy refusing the Service's
        # updates) left the status the controller wrote before its restart,
        # taken for another controller's (found by review).
        other = other_controller(service, sent) if key in self._ours_seen else ""
        actor = Actor(
            self.kube,
            target,
            self._remember,
            lookup,
            self.guard,
            _progress(plan.state),
            now,
            self.edges.fence,
            self._told(key, target.service),
            sent=lambda raw: self._sent.setdefault(key, deque(maxlen=SENT_KEPT)).append(raw),
        )
        if other and now >= self._other_told.get(key, -math.inf) + OTHER_TOLD_EVERY_S:
            self._other_told[key] = now
            log.warning(other, extra={"namespace": key[0], "service": key[1]})
            await actor.emit(Emit("ControllerConflict", other, warning=True))
        return actor

    def _taken(
        self, key: Key, state: State, lost: str, observed: Observed
    ) -> tuple[Checked | None, GateResult | None, Observed]:
        """The analysis and the gate's answer that finished for this
        position (none over a status that could not be used)."""
        if lost:
            return None, None, observed
        checked = self.checks.take_analysis(key, _ident(state))
        gate = self.checks.take_gate(key, _gate_ident(state))
        return checked, gate, observed if gate is None else replace(observed, gate=gate)

    def _read_state(self, key: Key, service: JSON) -> tuple[State, str]:
        """read_state(), with a status vouched for while it stays as it was
        (see _vouched)."""
        raw = status_raw(service)
        if self._vouched.get(key, raw) != raw:
            del self._vouched[key]  # written since: by someone else
        return read_state(service, self._vouched.get(key, ""))

    def _read_carried(
        self, key: Key, service: JSON, lost: str, records: list[JSON], observed: Observed
    ) -> None:
        """A new process (a restart, a new leader) takes up what the status
        carries (history.CARRIED) and the history does not hold: a status
        whose write after a rollout's end failed still carries what that
        end's history write took. Nothing from a status that is not trusted
        (someone else's, an old one applied again). A start takes its
        template now, from the source or the twin that runs it (as the
        process that made it held it in memory): by the history's write it
        may be gone (a hand-back sets the source back and deletes the twins
        in the cycle that writes it)."""
        if key not in self._carrying:
            items = [] if lost else carried_in(status_raw(service))
            template = self._templates(observed)
            self._carrying[key] = [
                {**i, "start": {**i["start"], "template": found}}
                if _templateless(i) and (found := template(str(i.get("revision") or "")))
                else i
                for i in items
                if not history.recorded(records, i)
            ]

    def _status_for(
        self,
        key: Key,
        spec: RolloutSpec | SpecError | None,
        stored: State,
        plan: Plan,
        deployment: str,
        service: JSON,
    ) -> str | None:
        """The status text of this decision (status_text), with what is
        known now of refused Events."""
        if plan.release:
            return None
        written = refused_written(service)
        refused = (self._events_refused.get(key, written), written)
        carried = (list(self._carrying.get(key, [])), carried_in(status_raw(service), every=True))
        return status_text(spec, stored, plan, deployment, refused, carried)

    def _cut_short(
        self,
        key: Key,
        state: State,
        checked: Checked | None,
        gate: GateResult | None,
        ended: Plan | None,
    ) -> None:
        """A decision whose writes did not all land. `ended`: the plan, when
        it ends a rollout and its record was written first."""
        if ended is None:
            # The retry judges the same check again (and backs off), instead
            # of losing it and asking Prometheus afresh at every retry.
            self.checks.put_back(key, _ident(state), checked, _gate_ident(state), gate)
            return
        # The end of the rollout in flight is in the history, and the retry
        # only finishes it (already_ended) recording nothing: counted now, or
        # never (canary_rollouts_total is what the history records). What the
        # retry decides again (an abort after a promotion, the start of an
        # undo's rollout) is counted when it lands.
        self.metrics.recorded(
            *key,
            [
                a
                for a in ended.actions
                if isinstance(a, Record)
                and state.canary is not None
                and a.revision == state.canary_revision
                and a.outcome not in ("progressing", "adopted")
            ],
        )

    def _requeue(self, key: Key, plan: Plan, spent: float) -> float | None:
        """`spent`: seconds since the decision's `now`; a wake-up it asked
        for (a fast check just after a scrape lands) is counted from then."""
        requeue = plan.requeue_after
        if requeue is not None:
            requeue = max(requeue - spent, 0.0)
        if (
            requeue is not None
            and requeue <= 0.05
            and (self.checks.analysing(key) or self.checks.asking(key))
        ):
            requeue = None  # the check in flight wakes us when it is done
        if (held := self._progress_due.get(key)) is not None:  # the progress held back
            wait = max(held - time.monotonic(), 0.0)
            requeue = wait if requeue is None else min(requeue, wait)
        return requeue

    async def _landed(
        self,
        key: Key,
        actor: Actor,
        spec: RolloutSpec | SpecError | None,
        state: State,
        plan: Plan,
        observed: Observed,
        checked: Checked | None,
        now: float,
        recorded: bool = True,
    ) -> None:
        """What follows a decision whose writes to the cluster all landed (a
        failed one is decided again), whether or not its record could be
        written (`recorded`)."""
        self._volatile[key] = {f: getattr(plan.state, f) for f in VOLATILE}
        await self._report_writes(actor)
        self._report(*key, spec, state, plan, checked, recorded)
        if plan.release:
            self.copies.forget(*key)
            self.checks.forget(key)
            self._volatile.pop(key, None)
            self._vouched.pop(key, None)
            self._forget_carried(key)
            self._status_at.pop(key, None)
            self._sent.pop(key, None)
            self._ours_seen.discard(key)
            self._other_told.pop(key, None)
            self._events_refused.pop(key, None)
            self._forget_held(key)
        else:
            self._export_endings(key, observed, plan, now)
            if isinstance(spec, RolloutSpec):
                self._start_checks(key, spec, plan.state, observed, now)
                # Nothing acts on the rollout until its check is back (it
                # wakes the worker): exported as due now, a check Prometheus
                # answered slowly but within its query-timeout paged on-call
                # with CanaryRolloutStuck at 2 minutes.
                until = self.checks.finish_by(key)
                if recorded and until is not None:
                    self.metrics.checking(*key, until)
            # After the status: a slow or failing receiver can then neither
            # hold the decision back nor make it run (and notify) twice. With
            # invalid annotations too: an abort needs no spec and is carried
            # out, and its rollback was notified to nobody.
            self._spawn(self._notify(actor, spec, plan, observed, state, checked))

    def _export_endings(self, key: Key, observed: Observed, plan: Plan, now: float) -> None:
        """When the newest rollout of each outcome ended: as the history read
        this cycle holds it, and now for what this cycle recorded. A new
        process exports what an earlier one recorded, which its counters
        never count (CanaryRolledBack)."""
        newest = history.endings(observed.outcomes, observed.ended)
        for action in plan.actions:
            if isinstance(action, Record) and action.outcome not in ("progressing", "adopted"):
                newest[action.outcome] = now
        self.metrics.endings(*key, newest)

    def _carried(self, key: Key, service: JSON) -> Unwritten | None:
        """The decision whose record could not be written last cycle, as long
        as nobody wrote the status since (theirs would be newer)."""
        unwritten = self._unwritten.get(key)
        raw = status_raw(service)
        if unwritten is not None and unwritten.over != raw:
            self._unwritten.pop(key, None)
            return None
        # Kept until this cycle's own writes have landed: a cycle that fails
        # before (a conflict, an API error) must not fall back to the older
        # status and undo a step, or lose an abort, on its retry.
        return unwritten

    def _scrapes(
        self,
        key: Key,
        spec: RolloutSpec | SpecError | None,
        state: State,
        observed: Observed,
        now: float,
    ) -> tuple[Observed, str]:
        """Prometheus's scrape interval and timing, as learned (and from where)."""
        if not isinstance(spec, RolloutSpec):
            return observed, ""
        scrape, scrape_from = self.checks.scrape_interval(
            key, spec.analysis, self._target(observed, state, state.stable), now
        )
        timed = replace(
            observed,
            scrape_interval=scrape,
            scrape_phase=self.checks.scrape_phase(key),
            searchable_after=self.checks.searchable_after(),
        )
        return timed, scrape_from

    def _decision_edits(
        self,
        key: Key,
        spec: RolloutSpec | SpecError | None,
        state: State,
        plan: Plan,
        observed: Observed,
        checked: Checked | None,
        now: float,
        scrape_from: str,
        writable: bool,
    ) -> tuple[Edit, ...]:
        """The history edits of a decision (an abort while invalid is a record too)."""
        self._into_history.pop(key, None)  # a cycle cut short before its history write
        if not writable:
            return ()
        if spec is None:
            if not (plan.release and self._carrying.get(key)):
                return ()
            # Handed back (canary.io/strategy removed) mid-rollout: what the
            # status carried goes into the history before the status goes.
            items, self._carrying[key] = self._carrying[key], []
            return (partial(history.apply_items, items=items, templates=self._templates(observed)),)
        judged = _judged(key, plan, checked)
        return self._edits(spec, state, plan, observed, judged, now, time.time(), scrape_from)

    async def _write_records(
        self,
        actor: Actor,
        spec: RolloutSpec | SpecError | None,
        service: JSON,
        stored: State,
        plan: Plan,
        edits: tuple[Edit, ...],
        records: list[JSON],
        status: str | None,
        recorded: list[JSON] | None = None,
        restatus: Callable[[], str | None] | None = None,
    ) -> Exception | None:
        """The history, then the status; the error if either failed. Every
        action of this decision has landed by then: it is a fact, only its
        record is missing. It is kept, so the next cycle does not decide it
        again from the older status (re-running its check, undoing its
        traffic change), and the rest of this cycle (the checks it starts,
        the notifications) goes on as if it had been written. `restatus`:
        the status again, once what the refused history could not take is
        carried once more (_keep_carried)."""
        key = (actor.namespace, actor.name)
        taken = self._into_history.pop(key, [])
        refused: KubeError | None = None
        try:
            try:
                written = await self._record(actor, edits, records)
            except KubeError as exc:
                if not _history_refused(exc):
                    raise
                self._history_refused.add(key)
                kept = self._keep_carried(key, plan, taken)
                if kept and restatus is not None and actor.status_written is None:
                    status = restatus()  # (one status write per cycle)
                # Refused for good: the status is written all the same, so
                # that a new leader goes on from this decision, not from the
                # older status (which gave a canary rolled back its traffic
                # again); the edits wait for the next cycle's try.
                refused, written = exc, None
                actor.refused.append(exc)
            else:
                edits = ()  # landed: a failure from here on must not add them twice
                if written is not None:
                    self._history_refused.discard(key)
            written = written or recorded  # `recorded`: written before the actions
            if written is not None:
                await self._collect_copies(actor, plan, written)
            await self._write_status(actor, stored, plan, status)
        except (KubeError, OSError, NotLeading, TimeoutError) as exc:
            # The status as it stands now: it may have landed with the selector.
            latest = actor.service or service
            raw = status_raw(latest)
            self._unwritten[(actor.namespace, actor.name)] = Unwritten(raw, plan.state, edits)
            if isinstance(exc, KubeError) and exc.status in HISTORY_REFUSED:
                # Refused for good (a policy refusing every update of the
                # Service): the decision is kept (above), so told as a write
                # done without, and the cycle keeps its own wake-up. Failed,
                # it came back at the error back-off only (up to 30 s), and
                # each look, so a rollback, that late.
                actor.refused.append(exc)
            return exc
        if refused is not None:
            raw = status_raw(actor.service or service)
            self._unwritten[(actor.namespace, actor.name)] = Unwritten(raw, plan.state, edits)
        return refused

    def _keep_carried(self, key: Key, plan: Plan, taken: list[JSON]) -> bool:
        """What this cycle's refused history write took of the rollout in
        flight's record, back into what its status carries (the edits still
        wait in Unwritten; the history adds an item handed in twice once),
        up to CARRIED_REFUSED_MAX_BYTES. True when the status carries more."""
        revision = plan.state.canary_revision
        if plan.release or not revision:
            return False  # nobody reads a carried record of an ended rollout
        carrying = self._carrying.setdefault(key, [])
        kept = [i for i in taken if i.get("revision") == revision and i not in carrying]
        if not kept:
            return False
        items = kept + carrying
        while _size(history.slim(items)) > CARRIED_REFUSED_MAX_BYTES:
            oldest = next((i for i in items if "start" not in i), None)
            if oldest is None:
                break
            items.remove(oldest)
        carrying[:] = items
        return True

    # -- observation helpers ------------------------------------------------------

    def _hpas(self, namespace: str) -> list[JSON]:
        if self.caches.hpas is None:
            return []
        return [h for h in self.caches.hpas.items() if h["metadata"]["namespace"] == namespace]

    def _live_claim(self, namespace: str, name: str, source: Source) -> Source:
        """A claim by a Service that is gone or no longer managed is stale
        (its hand-back already ran or will): it blocks nobody."""
        claimant = source.claim.service
        if claimant and claimant != name and not self.managed(namespace, claimant):
            return replace(source, claim=replace(source.claim, service=""))
        return source

    def _target(self, observed: Observed, state: State, color: Color | None) -> QueryTarget | None:
        if color is None:
            return None
        pods = state.canary_pods if color == state.canary else state.stable_pods
        regex = pods_regex(pods) if pods else twin_pods_regex(twin_name(observed.deployment, color))
        return QueryTarget(observed.namespace, observed.service, color, regex)

    # -- checks -------------------------------------------------------------------

    def _start_checks(
        self, key: Key, spec: RolloutSpec, state: State, observed: Observed, now: float
    ) -> None:
        due = analysis_due(
            spec,
            state,
            now,
            observed.scrape_interval,
            observed.scrape_phase,
            observed.searchable_after,
        )
        if due is not None and self.checks.analysing(key):
            log.debug("%s/%s: a %s check is due but one is in flight", *key, due.kind)
        if due is not None and not self.checks.analysing(key):
            canary = self._target(observed, state, state.canary)
            assert canary is not None
            pods = _serving_pods(observed.twin(state.canary), state.canary_pods)
            pod_of = self._pods(observed.namespace)
            reach = window_reach(spec, observed.scrape_interval)
            ready = tuple(
                ready_time(pod_of(p), self._ready_seen.get((observed.namespace, p)))
                if pod_of
                else 0.0
                for p in pods
            )
            ctx = StepContext(
                canary=canary,
                stable=self._target(observed, state, state.stable),
                start=due.start,
                now=due.end,
                interval_s=spec.interval,
                scrape_s=observed.scrape_interval,
                totals=due.totals,
                scrape_known=self.checks.scrape_known(key, spec.analysis),
                pods=pods,
                ready_since=ready,
                serving_since=state.serving_since,
                fresh=fresh_in_step(
                    due,
                    state,
                    pods,
                    tuple(created_at(pod_of(p)) if pod_of else 0.0 for p in pods),
                    reach,
                ),
                fresh_since=fresh_since(due, state, reach),
                # A scheduled check's failure waits on this look (judging).
                confirming=due.kind == "fast" and bool(state.suspected and state.fast_failed),
                promotes=due.kind == "scheduled"
                and not state.promoting
                and state.step + 1 >= len(stages(spec)),
                # Standing at the flip or an open gate: a look that reads no
                # request of the canary asks whether it went quiet since.
                served_span=(state.window_start or state.step_ready, state.checked)
                if due.kind == "fast" and (state.promoting or state.gate_wait)
                else (0.0, 0.0),
            )
            self.checks.start_analysis(
                key, _ident(state), due.kind, spec.analysis, ctx, spec.interval
            )
        kind = gate_due(spec, state, now)
        if kind is not None and not self.checks.asking(key):
            self.checks.start_gate(
                key,
                _gate_ident(state),
                spec.analysis.gates_on(kind),
                _gate_payload(observed, state, kind),
            )

    # -- orphans --------------------------------------------------------------------

    async def _orphans(self, key: Key, service: JSON | None, now: float) -> Outcome:
        """The Service is gone (or exists without our annotations) while
        twins labelled for it may still run: hand them back (handback.py)."""
        namespace, name = key
        twins = [
            d
            for d in self.caches.deployments.items()
            if d["metadata"]["namespace"] == namespace
            and (d["metadata"].get("labels") or {}).get(SERVICE_LABEL) == name
            and TWIN_LABEL in (d["metadata"].get("labels") or {})
        ]
        self._forget_held(key)
        self._vouched.pop(key, None)
        claimed = None if twins else self._claimed_by(namespace, name)
        if not twins and claimed is None:
            await self._want(key, set())
            self._forget_gone(key)
            return Outcome(None)
        if claimed is not None:
            # No twin left, yet the team's Deployment still carries our claim
            # (and gate): twins deleted by hand, then the Service. Give it back.
            deployment = claimed
        else:
            meta = twins[0]["metadata"]
            annotations = meta.get("annotations") or {}
            deployment = annotations.get(SOURCE_ANNOTATION) or meta["name"].rsplit("-", 1)[0]
        since = self._missing.setdefault(key, now)
        shell = service or {
            "metadata": {"namespace": namespace, "name": name, "annotations": {}},
            "spec": {"selector": {}},
        }
        lookup = self._lookup(namespace)
        # What the Deployment reads stays cached until it is handed back: its
        # revision is hashed from that content. (Dropped first, it hashed to
        # another revision than the twin's, and was "set back" to it.)
        await self._want(key, _reads(lookup("Deployment", deployment)))
        observed, _ = observe(
            shell,
            deployment,
            lookup,
            self._slices(namespace),
            lookup,
            default_preview(name),
            self._pods(namespace),
        )
        # The history, while it is still there (orphaned with the Service,
        # or not yet collected), keeps the serving revision's template: a
        # stable twin gone with the Service is made again from it
        # (handback._serving_gone).
        configmap = lookup("ConfigMap", history.history_name(name))
        kept, _ = history.load_checked(configmap)
        # The team's HPA bounds the size handed back (handback.orphan).
        observed = replace(
            observed,
            autoscaler=autoscaling.observe(self._hpas(namespace), shell, deployment),
            revisions=history.undoable(kept),
            # What the history ended since the claim was written (handback._served).
            outcomes=history.outcomes(kept),
        )
        plan = handback.orphan(observed, now - since)
        actor = Actor(
            self.kube,
            Target(namespace, name, deployment, service),
            self._remember,
            lookup,
            self.guard,
            "orphan",
            now,
            self.edges.fence,
            self._told(key, service),
        )
        carried = self._carrying.get(key) if plan.release else None
        if service is not None and carried and configmap is not None:
            # Still there without our annotations (re-applied from a
            # manifest without them): its history stays, and takes what
            # the status carried, as a hand-back of a managed one does:
            # before the twins go (their templates), and kept until written
            # (a failed write is retried, not lost). Only into the history
            # it has: a Service recreated without our annotations (a new
            # one; the old history went with the old) gets none made for
            # a rollout it never had.
            loaded, corrupt = history.load_checked(configmap)
            records = history.apply_items(loaded, carried, self._templates(observed))
            if not corrupt and records != loaded:
                try:
                    await actor.write_history(
                        history.history_name(name), history.dump(records), exists=True
                    )
                except KubeError as exc:
                    # A retry helps a 5xx, a 409 or a 429: the cycle fails
                    # and nothing carried is lost. One that never can (RBAC
                    # refuses it, the ConfigMap made immutable, gone since
                    # the cache saw it) must not keep the twins and the
                    # team's Deployment from being handed back for good.
                    if exc.status not in (400, 403, 404, 422):
                        raise
                    log.warning(
                        "what the status carried is not written to the history (%s); "
                        "handed back without it",
                        exc,
                        extra={"namespace": namespace, "service": name},
                    )
        later, _ = await self._act(actor, plan, observed, set(), default_preview(name), kept, None)
        await self._after_record(actor, later)
        await self._report_writes(actor)
        self._report(namespace, name, None, State(), plan, None)
        if plan.release:
            await self._want(key, set())
            self._missing.pop(key, None)
            self._status_at.pop(key, None)
            self._sent.pop(key, None)
            self._ours_seen.discard(key)
            self._other_told.pop(key, None)
            self._events_refused.pop(key, None)
            self._forget_carried(key)
        return Outcome(plan.requeue_after, deployment=deployment)

    def _forget_carried(self, key: Key) -> None:
        """A released Service's carried record, and what is known of its
        history writes."""
        self._carrying.pop(key, None)
        self._into_history.pop(key, None)
        self._history_refused.discard(key)
        self._in_flight.pop(key, None)

    def _twins_source(self, namespace: str, service: str) -> str | None:
        """The Deployment the twins labelled for this Service were made from,
        if any runs (one being deleted is as good as gone)."""
        for d in self.caches.deployments.items():
            meta = d["metadata"]
            labels = meta.get("labels") or {}
            if (
                meta["namespace"] == namespace
                and labels.get(SERVICE_LABEL) == service
                and TWIN_LABEL in labels
                and not meta.get("deletionTimestamp")
            ):
                source = (meta.get("annotations") or {}).get(SOURCE_ANNOTATION)
                return str(source or meta["name"].rsplit("-", 1)[0])
        return None

    def _forget_gone(self, key: Key) -> None:
        """Nothing is kept for a Service gone with no twin or claim left:
        left, each Service ever deleted kept its pacing and volatile state
        for good. What it carried for its history went with it too (the
        history is owned by the Service): a Service of this name created
        later has a history of its own."""
        for kept in (
            self._missing,
            self._events_refused,
            self._volatile,
            self._status_at,
            self._sent,
            self._other_told,
            self._failure_told,
        ):
            kept.pop(key, None)
        # With what is known of its history writes: one refused as its
        # namespace was deleted kept it for good, and a Service of this name
        # made again carried more in its status until its first write.
        self._forget_carried(key)
        self._kept_aside = {mark for mark in self._kept_aside if mark[:2] != key}
        self._ours_seen.discard(key)
        self.copies.forget(*key)
        self.checks.forget(key)
        self.metrics.forget(*key)

    def _claimed_by(self, namespace: str, service: str) -> str | None:
        """The Deployment that this Service's claim is on, if any."""
        for d in self.caches.deployments.items():
            meta = d["metadata"]
            if meta["namespace"] != namespace or TWIN_LABEL in (meta.get("labels") or {}):
                continue
            if (meta.get("annotations") or {}).get(MANAGED_BY) == service:
                return str(meta["name"])
        return None

    # -- acting -------------------------------------------------------------------------

    def _remember(self, obj: JSON) -> None:
        informer = {
            "Deployment": self.caches.deployments,
            "ConfigMap": self.caches.configmaps,
            "Secret": self.caches.secrets,
            "HorizontalPodAutoscaler": self.caches.hpas,
        }.get(str(obj.get("kind")), self.caches.services)
        if informer is not None:
            informer.remember(obj)

    async def _act(
        self,
        actor: Actor,
        plan: Plan,
        observed: Observed,
        refs: set[ConfigRef],
        preview: str,
        records: list[JSON],
        status: str | None,
    ) -> tuple[list[Action], Plan]:
        """The plan's writes, in order, but for what runs after its record
        (returned): when the status rides along with the selector, the claim
        on the source (re-derived next cycle if it fails). And the plan as
        it landed: less the Events of a write refused and let pass, which
        the history does not record either (_copying_autoscaler)."""
        selector = observed.selector
        carry = status if carriable(plan.actions) else None
        later: list[Action] = []
        for action in _told_last(plan.actions):
            match action:
                case ApplyTwin(color, revision, replicas, put_back):
                    await self._apply_twin(
                        actor, observed, refs, records, color, revision, replicas, put_back
                    )
                case ScaleTwin(color, replicas, handback):
                    # Taking a canary's pods away is never held back by a fight.
                    await actor.scale_twin(
                        color,
                        replicas,
                        safe=replicas == 0 and color != plan.state.stable,
                        handback=handback,
                    )
                case ScaleSource(0):
                    await _scaling_down(actor)
                case ScaleSource(replicas):
                    await actor.scale_source(replicas)
                case GateSource(True):
                    await _keeping_down(actor, actor.gate_source(True))
                case GateSource(on):
                    await actor.gate_source(on)
                case SetSelector(wanted):
                    selector = await _set_selector(actor, plan, selector, wanted, carry)
                case ApplyPreview(wanted):
                    await _previewing(actor, actor.apply_preview(preview, wanted), preview)
                case RetirePreview(name, told):
                    if await actor.retire_preview(name) and told:
                        await actor.emit(Emit("PreviewRetired", told))
                case DeleteTwins(keep):
                    await actor.delete_twins(keep)
                case ClaimSource(claim) if carry is None:
                    await _claiming(actor, claim)
                case ClaimSource():
                    later.append(action)
                case Unclaim():
                    await actor.unclaim()
                case Disown(color):
                    await actor.disown(color)
                case RestoreSource(color):
                    await actor.restore_source(color)
                case ApplyAutoscaler(color):
                    await _copying_autoscaler(actor, self._apply_autoscaler(actor, observed, color))
                case DeleteAutoscaler(color):
                    await actor.delete_autoscaler(color)
                case ResetAutoscaler():
                    await self._reset_autoscaler(actor, observed)
                case Emit() if action.reason in actor.unsaid:
                    pass  # what it tells did not land (_copying_autoscaler)
                case Emit(noted=False):
                    await actor.emit(action)
                case Emit():
                    pass  # the history's only
                case Record():
                    pass  # written with the history, once per cycle
        return later, _said(plan, actor.unsaid)

    async def _after_record(self, actor: Actor, later: list[Action]) -> None:
        for action in later:
            if isinstance(action, ClaimSource):
                await _claiming(actor, action.claim)
        await actor.renew_digests()

    async def _apply_twin(
        self,
        actor: Actor,
        observed: Observed,
        refs: set[ConfigRef],
        records: list[JSON],
        color: Color,
        revision: str,
        replicas: int,
        put_back: bool = False,
    ) -> None:
        """The template for `revision`: the source's when it holds that
        revision, else the one recorded with it in the history (an undo, or
        a stable twin someone deleted), else a twin that still runs it."""
        lookup = actor.cached
        source = lookup("Deployment", observed.deployment)
        base = source or _pseudo_source(observed, lookup)
        if base is None:
            log.warning("cannot recreate twin %s: no source Deployment and no twin to copy", color)
            return
        if source is not None and revision == observed.source.revision:
            config = {ref: obj for ref in refs if (obj := lookup(*ref)) is not None}
            if content_hashes(config) != observed.source.config:
                # Edited (or deleted) again since this cycle observed it: a
                # copy made now would hold other content than the revision's
                # hash says, and a copy is never made again ("fixed by its
                # name"), so a later return of this revision would run it
                # unnoticed. The cycle fails like a write that met a newer
                # one (409): its retry, moments later, decides on what is
                # there now, and nothing after this (an Event, the record,
                # the status) claims a twin that was not written.
                raise Conflict(
                    409,
                    "Conflict",
                    f"the config of revision {revision} changed since this cycle observed it; "
                    f"twin {color} not written",
                )
            await actor.apply_twin(
                color, revision, replicas, source, observed.source.template, config, put_back
            )
            return
        template = history.template_of(records, revision) or _running_template(
            observed, lookup, revision
        )
        if template is None:
            log.warning("no template known for revision %s; twin %s not applied", revision, color)
            return
        await actor.apply_twin(color, revision, replicas, base, template, {}, put_back)

    async def _apply_autoscaler(self, actor: Actor, observed: Observed, color: Color) -> None:
        """The stable twin's copy of the team's HPA, as the cache holds it now."""
        team = autoscaling.targeting(self._hpas(observed.namespace), observed.deployment)
        if not team or actor.service is None:
            return  # gone since we observed: the next cycle removes the copy
        twin = twin_name(observed.deployment, color)
        await actor.apply_autoscaler(autoscaling.mirror(team[0], twin, color, actor.service))

    async def _reset_autoscaler(self, actor: Actor, observed: Observed) -> None:
        hpas = self._hpas(observed.namespace)
        team = autoscaling.targeting(hpas, observed.deployment)
        copies = autoscaling.copies_of(hpas, observed.service, observed.deployment)
        for live in copies.values():
            kept = autoscaling.stashed(live)
            if team or kept is not None:
                stash = autoscaling.stash(team[0]) if team else kept
                assert stash is not None
                await actor.reset_autoscaler(team[0] if team else None, live, stash)
                return

    async def _adopt_history(self, actor: Actor, configmap: JSON | None) -> None:
        if configmap is None or actor.service is None:
            return
        if owned_by(configmap, actor.service["metadata"].get("uid")):
            return
        try:
            adopted = await actor.adopt_history(configmap)
        except KubeError as exc:
            if not _history_refused(exc):
                raise
            # Best effort, as every history write (HISTORY_REFUSED): it ran
            # first in every cycle, and a canary judged failing kept its
            # traffic for as long as a policy refused it. Told (landed).
            log.warning("taking over the history was refused: %s", exc)
            actor.refused.append(exc)
            return
        if adopted is not None:
            log.info(
                "history %s left by an earlier Service of this name is kept",
                configmap["metadata"]["name"],
                extra={"namespace": actor.namespace, "service": actor.name},
            )

    async def _keep_corrupt_history_aside(
        self, actor: Actor, configmap: JSON | None, corrupt: str
    ) -> bool:
        """True when the history may be written. A history we cannot read is
        copied aside once and reported; only then does a new one start."""
        if not corrupt or configmap is None:
            return True
        mark = (actor.namespace, actor.name, str(configmap["metadata"].get("resourceVersion")))
        if mark in self._kept_aside:
            return True
        try:
            aside = await actor.keep_aside(configmap["metadata"]["name"], configmap, corrupt)
        except KubeError as exc:
            if not _history_refused(exc):
                raise
            # Best effort, as every history write (HISTORY_REFUSED): a count
            # quota on ConfigMaps that is full refused it in every cycle,
            # before any action, and a canary judged failing kept its
            # traffic. Not kept aside, it is not written over either; told
            # (landed), and tried again next cycle.
            log.warning("keeping the unreadable history aside was refused: %s", exc)
            actor.refused.append(exc)
            return False
        self._kept_aside.add(mark)
        await actor.emit(
            Emit(
                "HistoryCorrupt",
                f"the revision history {configmap['metadata']['name']} could not be read "
                f"({corrupt}); it was copied to ConfigMap {aside} and a new history starts",
                warning=True,
            )
        )
        return True

    # -- recording ---------------------------------------------------------------------

    def _edits(
        self,
        spec: RolloutSpec | SpecError,
        before: State,
        plan: Plan,
        observed: Observed,
        checked: Checked | None,
        now: float,
        applied: float,
        scrape_from: str,
    ) -> tuple[Edit, ...]:
        """This cycle's changes to the history: the outcomes recorded, with
        the check judged and the Events decided since the last history write.
        Without an outcome they are not a history write: they join what the
        status carries (history.CARRIED), until a record (a rollout's end;
        an undo, a retry, or a start that ends another rollout) or
        CARRIED_MAX_BYTES takes them into the history. A new release's start
        (_plain_start) is carried too."""
        records_due = [a for a in plan.actions if isinstance(a, Record)]
        if checked is not None and checked.kind == "fast" and checked.result.verdict != "fail":
            checked = None  # a fast check decides only failures; the rest is not a record
        key = (observed.namespace, observed.service)
        carrying = self._carrying.setdefault(key, [])
        earlier = list(carrying)
        judged: list[JSON] = []
        if checked is not None and before.canary_revision:
            decided = plan.state.message or str(phase(spec, plan.state))
            check = history.check_entry(
                step=before.step,
                weight=before.requested_weight,
                effective=before.effective_weight,
                result=checked.result,
                decided=f"{decided} (scrape interval {observed.scrape_interval:g}s, {scrape_from})",
                at=now,
                applied=applied,
                kind=checked.kind,
                evaluated=checked.at,
            )
            judged.append(history.check_item(before.canary_revision, check))
        events = [
            history.event_item(revision, now, applied, event.reason, event.message)
            for revision, event in history.events_by_revision(before, plan)
        ]
        if _plain_start(plan, records_due, observed):
            # A release's start is carried too: the history takes it with
            # the rollout's end (one write fewer per rollout, #12).
            record, source = records_due[0], observed.source
            start = history.start_item(record.revision, now, record.reason, source, source.template)
            judged, records_due = [*judged, start], []
        # While the history is refused, the status holds more (it is all
        # that holds them): taken into the history now, all of it went into
        # a write refused again, and at every cycle after.
        room = CARRIED_REFUSED_MAX_BYTES if key in self._history_refused else CARRIED_MAX_BYTES
        if not records_due and _size(history.slim(earlier + judged + events)) <= room:
            carrying.extend(judged + events)
            return ()
        limit = spec.history_limit if isinstance(spec, RolloutSpec) else MAX_HISTORY
        lookup = self._lookup(observed.namespace)
        earlier += judged
        edits: list[Edit] = [
            # Before the entry of the rollout in flight is looked for below.
            partial(
                history.apply_items,
                items=[i for i in earlier if "start" in i],
                templates=self._templates(observed),
            )
        ]
        if before.canary_revision:
            # A history deleted or edited by hand mid-rollout: the rollout in
            # flight gets its entry back, so its checks and end have a place.
            edits.append(
                partial(
                    history.ensure_entry,
                    kept=self._in_flight.get(key),
                    revision=before.canary_revision,
                    source=observed.source,
                    started=before.rollout_started,
                    now=now,
                    limit=limit,
                    running=_running_template(observed, lookup, before.canary_revision),
                )
            )
        # Before the records: an outcome's Events go on the entry it starts
        # or ends (events_by_revision), what came earlier on the one in flight.
        edits.append(partial(history.apply_items, items=[i for i in earlier if "start" not in i]))
        edits.extend(
            partial(
                history.apply_record,
                record=record,
                source=observed.source,
                now=now,
                limit=limit,
                running=_running_template(observed, lookup, record.revision),
            )
            for record in records_due
        )
        edits.append(partial(history.apply_items, items=events))
        carrying.clear()
        self._into_history[key] = earlier + events
        return tuple(edits)

    def _templates(self, observed: Observed) -> Callable[[str], JSON | None]:
        """A carried start's template, for its entry: the source's while it
        holds that revision, else that of a twin that runs it."""
        lookup = self._lookup(observed.namespace)

        def template(revision: str) -> JSON | None:
            if observed.source.revision == revision:
                return observed.source.template
            return _running_template(observed, lookup, revision)

        return template

    async def _record_first(
        self,
        key: Key,
        actor: Actor,
        records: list[JSON],
        edits: Callable[[], tuple[Edit, ...]],
    ) -> list[JSON] | None:
        """The history of a decision that ends a rollout, before its actions
        (ends_rollout). Not written: the checks and Events of earlier cycles
        still wait, and this decision is taken again."""
        waiting = list(self._carrying.get(key, []))
        try:
            written = await self._record(actor, edits(), records)
        except BaseException as exc:
            self._carrying[key] = waiting
            if not _history_refused(exc):
                raise
            # Refused for good: the actions go ahead, and the status (which
            # the Service takes) says the outcome; the record is tried
            # again after them (_write_records), and at every cycle.
            log.warning(
                "the history write is refused (%s); the decision goes ahead without it",
                exc,
                extra={"namespace": actor.namespace, "service": actor.name},
            )
            return None
        if written is not None:
            self._history_refused.discard(key)
        if (carried := self._unwritten.get(key)) is not None:
            # Its edits went into this write: a retry must not add them again.
            self._unwritten[key] = replace(carried, edits=())
        return written

    async def _record(
        self,
        actor: Actor,
        edits: tuple[Edit, ...],
        records: list[JSON],
    ) -> list[JSON] | None:
        """The history with these edits, written; None when there were none."""
        if not edits:
            return None
        name = history.history_name(actor.name)
        configmap = self.caches.configmaps.get(actor.namespace, name)
        for edit in edits:
            records = edit(records)
        version = str(configmap["metadata"].get("resourceVersion") or "") if configmap else ""
        await actor.write_history(
            name, history.dump(records), exists=configmap is not None, version=version
        )
        self._saw_history((actor.namespace, actor.name), records, present=True)
        return records

    def _read_history(self, key: Key, configmap: JSON | None) -> tuple[list[JSON], str]:
        """The history's records (and why they could not be read, if so)."""
        records, corrupt = history.load_checked(configmap)
        if not corrupt:
            self._saw_history(key, records, present=configmap is not None)
        return records, corrupt

    def _saw_history(self, key: Key, records: list[JSON], present: bool) -> None:
        """Keep the entry of the rollout in flight (its newest `progressing`
        one) as read or written. A history that is gone keeps what was kept:
        that is what it lost. One with no rollout in flight forgets it, so a
        later rollout of the same revision never gets an older one's checks."""
        if not present:
            return
        entry = next((r for r in reversed(records) if r.get("outcome") == "progressing"), None)
        if entry is None:
            self._in_flight.pop(key, None)
        else:
            self._in_flight[key] = entry

    async def _collect_copies(self, actor: Actor, plan: Plan, records: list[JSON]) -> None:
        """Once a rollout ends, the config copies no revision kept needs."""
        if any(
            r.outcome not in ("progressing", "adopted")
            for r in plan.actions
            if isinstance(r, Record)
        ):
            keep = history.revisions_kept(records) | {
                plan.state.stable_revision,
                plan.state.canary_revision,
                plan.state.previous_revision,
            }
            await actor.collect_config_copies(keep - {""})

    async def _write_status(
        self, actor: Actor, before: State, plan: Plan, status: str | None
    ) -> None:
        """At most one status write per cycle, and none when nothing changed
        or it went with the selector; a change of progress alone at most once
        per PROGRESS_WRITE_EVERY_S."""
        key = (actor.namespace, actor.name)
        if plan.release:
            await actor.write_status(None)
            return
        now = time.monotonic()
        there = status_raw(actor.service or {"metadata": {}})
        if status and actor.status_written != status and status == there:
            # What the Service holds already: a write would change nothing,
            # and leave a status another manager wrote theirs (_vouched).
            # The decision, every write of it landed, is ours all the same.
            status = None
            self._vouched[key] = there
        if self._vouched.get(key, there) != there:
            del self._vouched[key]  # replaced by the status our selector write carried
        if status is None or actor.status_written == status:
            if status is not None:
                self._status_at[key] = now
            self._progress_due.pop(key, None)
            self._held.pop(key, None)
            return
        if progress_only(before, plan.state) and not new_check(
            carried_in(status, every=True), carried_in(there, every=True)
        ):
            # (A check is the record of a decision: not paced as progress.)
            due = self._status_at.get(key, -PROGRESS_WRITE_EVERY_S) + PROGRESS_WRITE_EVERY_S
            if now < due:
                self._progress_due[key] = due
                # The next cycle goes on from this state too: unready_since is
                # a transition, not derived afresh. Decided again from the
                # status as written, a pod back then lost again within the
                # pace kept the deadline counting from the first loss.
                over = status_raw(actor.service or {"metadata": {}})
                self._unwritten[key] = Unwritten(over, plan.state)
                return
        if (
            holdable(before, plan.state)
            and not moves_traffic(plan.actions)
            # An end is written at once, also one that starts another release
            # while the start it ends is held (the status as written has no
            # canary revision then: holdable cannot tell a replacement).
            and not ends_rollout(plan)
        ):
            since = held.since if (held := self._held.get(key)) else now
            if now < since + HOLD_S:
                # The next cycle goes on from this state (as from a record
                # that could not be written), while the status is unchanged.
                over = status_raw(actor.service or {"metadata": {}})
                self._unwritten[key] = Unwritten(over, plan.state)
                self._held[key] = Held(since, actor, status)
                self._progress_due[key] = since + HOLD_S
                return
        self._progress_due.pop(key, None)
        self._vouched.pop(key, None)  # ours by this write
        await actor.write_status(status)
        # Only once written: a write that fails keeps the hold's start, so
        # its retry writes at once instead of holding for HOLD_S again.
        self._held.pop(key, None)
        self._status_at[key] = now

    async def _report_writes(self, actor: Actor) -> None:
        for message in actor.writes.loops:
            self.metrics.write_loops.inc()
            await actor.emit(Emit("WriteLoop", message, warning=True))
        if actor.writes.blocked:
            log.warning(
                "writes skipped while a write loop cools off: %s",
                ", ".join(actor.writes.blocked),
                extra={"namespace": actor.namespace, "service": actor.name},
            )
        self.metrics.writes_blocked.set(self.guard.blocked_count(actor.now))

    def _report(
        self,
        namespace: str,
        name: str,
        spec: RolloutSpec | SpecError | None,
        before: State,
        plan: Plan,
        checked: Checked | None,
        recorded: bool = True,
    ) -> None:
        """Metrics and one log line per Event, tagged with the Service."""
        shown = str(phase(spec, plan.state))
        if plan.release or (spec is None and before == State()):
            self.metrics.forget(namespace, name)
        else:
            self.metrics.service(namespace, name, shown, plan.state.to_json())
        # When it has to act next follows the rollout beneath what is observed
        # of health: removed while Degraded, a rollout moving through a drain
        # (a stable pod evicted) was out of CanaryRolloutStuck's sight.
        moving = str(phase(spec, replace(plan.state, degraded="")))
        self.metrics.executed(namespace, name, plan, moving, recorded)
        if checked is not None and (checked.kind != "fast" or checked.result.verdict == "fail"):
            self.metrics.analysis(namespace, name, checked.result)
        revision = (
            plan.state.canary_revision or before.canary_revision or plan.state.stable_revision
        )
        for action in plan.actions:
            if isinstance(action, Emit):
                if not action.noted:
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

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(_logged(coroutine))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _notify(
        self,
        actor: Actor,
        spec: RolloutSpec | SpecError | None,
        plan: Plan,
        observed: Observed,
        before: State,
        checked: Checked | None,
    ) -> None:
        """Tell people (notifications) and the post-rollout and rollback gates
        (named in the annotations: none while they cannot be read); neither
        can block anything, so their answers are only recorded."""
        result = checked.result if checked else None
        # Each Event's own revision, as the history files it: an undo mid-
        # rollout ends one revision (RolledBack) and starts another in one
        # decision, and both were notified as the one starting.
        for revision, event in notified(history.events_by_revision(before, plan)):
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
            gates = spec.analysis.gates_on(kind) if kind and isinstance(spec, RolloutSpec) else ()
            if not gates or kind is None:
                continue
            payload = _gate_payload(observed, before, kind, record.revision)
            answer = await self.webhooks.ask(gates, payload)
            await actor.emit(
                Emit(
                    "GateNotified",
                    f"revision {record.revision}: {kind} gates told: {answer.reason}",
                    warning=not answer.open,
                )
            )


async def _logged(coroutine: Coroutine[Any, Any, None]) -> None:
    try:
        await coroutine
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("a background notification failed")


def _reads(deployment: JSON | None) -> set[ConfigRef]:
    """The ConfigMaps and Secrets a Deployment's pod template reads."""
    if deployment is None:
        return set()
    return set(config_refs(clean_template(deployment.get("spec", {}).get("template", {}))))


def _pseudo_source(observed: Observed, lookup: Callable[[str, str], JSON | None]) -> JSON | None:
    """The source Deployment is gone: a stand-in from a twin that still
    exists, enough to build the other twin's metadata and selector."""
    for color in COLORS:
        twin = lookup("Deployment", twin_name(observed.deployment, color))
        if twin is None:
            continue
        meta, spec = twin["metadata"], twin["spec"]
        labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in OWNED_POD_LABELS}
        match = {
            k: v
            for k, v in ((spec.get("selector") or {}).get("matchLabels") or {}).items()
            if k not in OWNED_POD_LABELS
        }
        return {
            "metadata": {
                "name": observed.deployment,
                "namespace": observed.namespace,
                "labels": labels,
            },
            "spec": {
                **{k: v for k, v in spec.items() if k in SETTINGS},
                "selector": {"matchLabels": match},
            },
        }
    return None


def _running_template(
    observed: Observed, lookup: Callable[[str, str], JSON | None], revision: str
) -> JSON | None:
    for color in COLORS:
        twin = lookup("Deployment", twin_name(observed.deployment, color))
        seen = observed.twin(color)
        # A twin edited by hand runs something else under the revision's name:
        # copying it would "restore" the edit and take it for ours.
        if twin is not None and seen.revision == revision and not seen.edited_by:
            template: JSON = twin["spec"]["template"]
            return template
    return None


def _gate_payload(
    observed: Observed, state: State, kind: GateKind, revision: str = ""
) -> dict[str, object]:
    """`revision`: that of the record a gate is told of (else the one in
    flight, or serving). An undo to the stable revision mid-rollout records
    that one promoted while another was in flight, which the post-rollout
    gate was told as rolled out (manual._back_to_serving)."""
    return {
        "namespace": observed.namespace,
        "service": observed.service,
        "revision": revision or state.canary_revision or state.stable_revision,
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


def _twin_of(pod: JSON) -> str:
    return str((pod["metadata"].get("labels") or {}).get(TWIN_LABEL, ""))


def _serving_pods(twin: Twin, replica_set: str) -> tuple[str, ...]:
    """The canary's serving pods of the ReplicaSet its checks query (none
    while that is not known: the query names a twin's every pod then)."""
    prefix = f"{replica_set}-"
    return tuple(p for p in twin.serving if p.startswith(prefix)) if replica_set else ()
