"""decide(spec, state, observed, analysis, now) -> Plan: every rollout
decision, as a pure function. No I/O, no clock: `now` is an argument.

One reconcile runs these in order, each may finish the cycle early:
a lost status rebuilt from what runs -> spec errors -> a Deployment claimed by
another Service -> missing source -> adoption -> source kept at zero ->
manual action -> stable twin in place -> steady state (which may start a
rollout) -> rollout in flight -> claim kept current -> health.
"""

from __future__ import annotations

from dataclasses import replace

from analysis.run import StepResult
from analysis.verdicts import Verdict
from canary import autoscaling, ending, handback, manual, placement, rollout
from canary.action_text import parse_action, taken
from canary.degraded_text import beneath_degraded, degraded_message
from canary.model import (
    COLORS,
    ApplyTwin,
    Checked,
    Claim,
    ClaimSource,
    Color,
    DeleteAutoscaler,
    Disown,
    GateSource,
    Observed,
    Phase,
    Plan,
    Record,
    RetirePreview,
    ScaleSource,
    ScaleTwin,
    SetSelector,
    State,
    Twin,
    other,
)
from canary.plan import Draft
from canary.rebuild import desired_replicas, foreign, other_owner, ours, rebuild
from canary.release_outcome import deleted_mid_rollout
from canary.spec import SERVICE_LABEL, TWIN_LABEL, RolloutSpec, SpecError, Strategy
from canary.twins import (
    OWNED_SELECTOR_KEYS,
    POD_TEMPLATE_HASH,
    RETIRED,
    base_selector,
    both,
    only,
    pods_why,
    team_selector,
    template_hash,
    twin_name,
)

# Repeated re-scales of the source (every GitOps sync) make one Event per period.
SOURCE_SCALED_EVERY_S = 600.0

# The state's times of what has happened: none can be later than now. Its
# other times may be (when looks resume after an error, when the old twin
# goes after a promotion).
HAPPENED = (
    "rollout_started",
    "step_started",
    "step_ready",
    "still_since",
    "deadline_from",
    "unready_since",
    "lost_from",
    "checked",
    "window_start",
    "gate_checked",
    "fast_failed",
    "failed_sample",
    "looked",
    "probed",
    "probe_from",
    "quiet_from",
    "lagging_since",
    "lag_from",
    "flip_waits",
    "source_scaled_at",
    "woken",
)
TIMES = (*HAPPENED, "fast_checked", "scale_down_at")
# Hosts NTP keeps agree within milliseconds; a time a few seconds ahead
# holds a look back by as much (within the two scrapes a failure is given),
# and moving every time is a status write.
AHEAD_TOLERATED_S = 5.0


def decide(
    spec: RolloutSpec | SpecError | None,
    state: State,
    observed: Observed,
    analysis: Checked | StepResult | None,
    now: float,
) -> Plan:
    """`analysis`: the check that finished since the last cycle, if any (a
    bare StepResult is a scheduled check evaluated `now`)."""
    if isinstance(analysis, StepResult):
        analysis = Checked("scheduled", analysis, now)
    analysis = _still_asked(analysis, spec)
    rebuilt = ""
    if observed.state_lost:
        state, rebuilt = rebuild(observed)
        if observed.action:
            state, rebuilt = _action_on_rebuild(state, rebuilt, observed.action)
    state = _as_read(spec, state, observed, now)
    if spec is None:
        return handback.release(state, observed)
    if isinstance(spec, SpecError):
        return _invalid(spec, state, observed, now, rebuilt)
    # A canary the Service cannot reach on a port the stable twin serves is
    # no capacity and takes no traffic there, whatever its slices list.
    observed = placement.reachable(observed, state)
    observed = placement.selected(observed, state)  # (why its pods may never be endpoints)
    draft = Draft(state, observed)
    if rebuilt:
        draft.emit(
            "StateRebuilt",
            f"the canary.io/status annotation was {observed.state_lost}; rebuilt from what "
            f"runs: {rebuilt}",
            warning=True,
        )
    if state.invalid:
        draft.set(invalid="")
        draft.emit("SpecFixed", "annotations are valid again; resuming")
    if _conflict(draft, observed) or _name_taken(draft, observed):
        return draft.plan()
    source = observed.source
    if not source.exists:
        _source_missing(draft, spec, observed, now)
        _health(draft, observed, waking=False)  # (no release to wait)
        return draft.plan()
    if draft.state.source_missing:
        draft.set(source_missing=False)
        draft.emit(
            "SourceFound",
            f"Deployment {observed.deployment} exists again (revision {source.revision})",
        )
    if not draft.state.adopted:
        _adopt(draft, observed)
        return draft.plan()
    _record_serving(draft, observed, rebuilt)
    _disown(draft, observed)
    _app_size(draft, observed, now, rebuilt)
    if _restore_selector(draft, observed):
        _health(draft, observed, waking=rollout.waking(spec, draft.state, observed, now))
        return draft.plan()
    _keep_source_at_zero(draft, observed, now)
    # After the team's new size is taken (just above): the canary follows it
    # in the same cycle.
    state = draft.state
    standing = bool(
        spec.paused or state.paused or state.halted or state.gate_wait or state.source_paused
    )
    placement.keep_weight(draft, observed, spec.strategy is Strategy.BLUE_GREEN, standing)
    ending.already_ended(draft, spec, observed)
    _action(draft, spec, observed, now)
    _ensure_stable(draft, observed, now)
    if draft.state.canary is None:
        _steady(draft, spec, observed, now)
    if draft.state.canary is not None:
        rollout.progress(draft, spec, observed, analysis, now)
    _beside_the_twins(draft, spec, observed)
    _keep_claim(draft, observed)
    _health(draft, observed, waking=rollout.waking(spec, draft.state, observed, now))
    return draft.plan()


def _as_read(
    spec: RolloutSpec | SpecError | None, state: State, observed: Observed, now: float
) -> State:
    """The state in this clock (_not_ahead); managed, without the size a
    hand-back grew the stable twin to (State.handback_served): cut short
    (the strategy put back), that size is that hand-back's alone, and a
    later one counts what both twins serve then afresh. Without the time
    the stable twin was seen with no ready pod (State.woken) once it has
    one, on every path: a hand-back's cycles (and those that return before
    _ensure_stable) never looked, so a drain that healed meanwhile left its
    old time, and drained again, a release found its wait long over.
    Without the copy _left_at removed (State.left_copy) once it is no
    longer seen."""
    state = _not_ahead(state, now)
    if state.woken and _stable_serves(state, observed):
        state = replace(state, woken=0.0)
    narrowed = observed.selector.get(POD_TEMPLATE_HASH, "")
    if (
        narrowed
        and not state.stood_in
        and not any(k in observed.selector for k in OWNED_SELECTOR_KEYS)
    ):
        # Only the hold's narrowing (_narrow_hold) writes a pod-template-hash
        # there: with the status lost (rebuilt), the hold over the release
        # went, and the selector onto a stable twin with no ready pod (2
        # pods of the stable revision to none). Taken back from it; if
        # those pods no longer stand in, it ends just below.
        state = replace(state, stood_in=True, stood_in_hash=narrowed)
    if state.stood_in and not ending.source_stands_in(state, observed):
        # The hold is over (on every path, as `woken`): a release applied to
        # the source later is not rolled over pods of the stable revision.
        state = replace(state, stood_in=False, stood_in_hash="")
    auto = observed.autoscaler
    if state.left_copy and (state.left_copy not in auto.copies or auto.followed):
        state = replace(state, left_copy=None)  # gone, or the team's HPA is back
    if spec is None or not state.handback_served:
        return state
    return replace(state, handback_served=0)


def _not_ahead(state: State, now: float) -> State:
    """The state in this clock. A time of what has happened later than
    `now` was read from a clock ahead of this one: the replica that led
    before, on another host (a rolling upgrade, a crash hands the Lease
    over), or this host's before it was stepped back and the controller
    restarted. Kept, no check, look or gate was due until this clock caught
    up with them, and a canary failing every request served at its weight
    for as long (5 minutes behind: 5 minutes). Every time is moved back by
    at least that much, so the newest is now: the durations between them
    (a step's window, its deadline, when looks resume, the scale-down
    delay) stay what they were."""
    ahead = max(getattr(state, name) for name in HAPPENED) - now
    if ahead <= AHEAD_TOLERATED_S:
        return state
    moved = {name: getattr(state, name) - ahead for name in TIMES if getattr(state, name)}
    return replace(state, **moved)


def _still_asked(analysis: Checked | None, spec: RolloutSpec | SpecError | None) -> Checked | None:
    """The check that finished, unless the question changed while it ran."""
    if (
        analysis is not None
        and analysis.analysis is not None
        and isinstance(spec, RolloutSpec)
        and analysis.analysis != spec.analysis
    ):
        # canary.io/analysis was edited while the check was in flight (a
        # threshold tightened on seeing errors): its pass would promote on
        # the old question. Dropped, a check under the new one follows at once.
        analysis = None
    if (
        analysis is not None
        and analysis.kind == "scheduled"
        and analysis.interval is not None
        and isinstance(spec, RolloutSpec)
        and analysis.interval < spec.interval
        and analysis.result.verdict is Verdict.PASS
    ):
        # canary.io/interval lengthened while the check ran (on-call wanting
        # each step judged longer): its pass covered the shorter one and
        # would move the step on less than now asked (found by review).
        # Dropped; the next check falls an interval after the last one. A
        # failure still counts: the window it failed on was the canary's.
        analysis = None
    return analysis


def phase(spec: RolloutSpec | SpecError | None, state: State) -> Phase:
    """The phase on-call sees, derived from spec and state alone (the state
    carries what this cycle observed about health)."""
    if isinstance(spec, SpecError):
        return Phase.INVALID
    if spec is None:
        return Phase.RELEASING
    if state.conflict:
        return Phase.CONFLICT
    if not state.adopted:
        return Phase.ADOPTING if state.stable else Phase.WAITING
    if state.degraded:
        return Phase.DEGRADED
    if state.source_missing:
        return Phase.WAITING
    if state.canary is None:
        return Phase.ROLLED_BACK if state.failed_revision and not state.undone else Phase.HEALTHY
    if state.halted or state.gate_reason:
        return Phase.HALTED
    if state.paused or spec.paused or state.source_paused:
        return Phase.PAUSED
    return Phase.PROMOTING if state.promoting else Phase.PROGRESSING


def _load_back_on_rebuild(draft: Draft, observed: Observed) -> None:
    """A status lost mid-rollout of an autoscaled app is rebuilt with the
    canary taken out (not analysed: its revision goes out again from the
    first step), and its HPA copy had sized the stable twin for its share
    only: the stable twin takes the load back at once, at what both twins
    served, as a rollback does (ending.take_the_load_back). That size is on
    the claim (decide._keep_claim), when it names this stable revision.
    Before, the load of 16 pods came back on 8."""
    state = draft.state
    assert state.stable is not None  # (autoscaling.follow_size followed its HPA)
    claim, maximum = observed.source.claim, observed.autoscaler.max_replicas
    served = observed.twin(other(state.stable)).endpoints > 0
    if TWIN_LABEL in observed.selector or not served:
        return  # no canary served beside it
    if claim.stable_revision != state.stable_revision:
        return  # the claim is of another time (or someone else's)
    size = min(claim.replicas, maximum) if maximum else claim.replicas
    if size > draft.replicas[state.stable]:
        draft.do(ScaleTwin(state.stable, size))
        draft.set(replicas=size, scaled_from=state.scaled_from or state.replicas)


def _record_serving(draft: Draft, observed: Observed, rebuilt: str) -> None:
    """The serving revision is always in the history: it holds the template
    that puts a deleted or hand-edited stable twin back. A history can lack
    it after a rebuilt status (a recreated Service starts a new history),
    or when the history was deleted, or went with the Service it belonged to
    a moment after a recreated Service read it."""
    state = draft.state
    if not state.stable_revision or state.stable_revision in observed.outcomes:
        return
    why = "the status was rebuilt" if rebuilt else "the history was found without it"
    draft.do(Record(state.stable_revision, "adopted", f"serving when {why}"))


def _invalid(
    error: SpecError, state: State, observed: Observed, now: float, rebuilt: str = ""
) -> Plan:
    draft = Draft(state, observed)
    message = str(error)
    if state.invalid != message:
        draft.emit(
            "InvalidSpec",
            f"{message}. Traffic and Deployments stay as they are until this is fixed.",
            warning=True,
        )
    if state.adopted and not other_owner(observed):
        # What needs no spec and only ever puts back what served: a selector
        # reset by a sync (else the app's every pod, a full-size preview or a
        # canary, would serve unanalysed until the fix), the source held at
        # 0, the stable twin kept; an abort; the phase told as observed.
        if _restore_selector(draft, observed):
            # The rest reads the team's keys from the selector observed, as
            # the valid path's does: it waits for the selector as written.
            _health(draft, observed, waking=False)  # (nothing rolls out until it is fixed)
            draft.set(invalid=message, message=message)
            return draft.plan()
        # Never against the HPA; and a status rebuilt mid-rollout gives the
        # stable twin what both served before the canary goes out (just
        # below), as the valid path does: before, the whole load went onto
        # its HPA share.
        if autoscaling.follow_size(draft, observed) and rebuilt:
            _load_back_on_rebuild(draft, observed)
        _unknown_canary_out(draft, observed)
        if observed.source.exists:
            _keep_source_at_zero(draft, observed, now)
        # (a blue-green preview serves no production traffic: left as it is)
        placement.keep_weight(draft, observed, blue_green=False)
        _ensure_stable(draft, observed, now)
        if observed.action and observed.action != state.last_action:
            manual.while_invalid(draft, observed, message)
        _health(draft, observed, waking=False)  # (nothing rolls out until it is fixed)
    draft.set(invalid=message, message=message)
    return draft.plan()


def _unknown_canary_out(draft: Draft, observed: Observed) -> None:
    """No rollout is known, yet the Service selects both twins: its status
    was lost mid-rollout and rebuilt (which treats the canary in flight as
    not analysed), and the annotations cannot be read, so no rollout starts
    again to analyse it. Back on the stable twin, as _steady does with
    valid annotations (unless that twin has no ready pod); before, the
    canary served its step's share unanalysed until the fix (found by the
    random-operations test)."""
    state = draft.state
    if state.canary is not None or state.stable is None or draft.selector != observed.selector:
        return  # (a selector reset by a sync is put back by _restore_selector)
    _back_on_stable(draft, observed)


def _back_on_stable(draft: Draft, observed: Observed) -> bool:
    """The Service on the stable twin alone, no rollout being known; True
    when it is held on both instead: after a rollback while the stable twin
    had no ready pod (ending.stable_down), the idle twin's pods stay behind
    the Service until it has one (its pods becoming ready wake us)."""
    state = draft.state
    assert state.stable is not None
    selector = only(base_selector(observed.selector), state.stable)
    held = draft.selector != selector and ending.stable_down(observed, state.stable)
    if not held and draft.selector != selector:
        draft.do(SetSelector(selector))
    return held


def _adopt(draft: Draft, observed: Observed) -> None:
    """Claim first, then the stable twin, then the selector, then the source
    to zero: the Service always has ready endpoints, because the EndpointSlice
    controller swaps the source's pods for the twin's in one update."""
    source = observed.source
    color = draft.state.stable or "blue"
    base = base_selector(observed.selector)
    # Until the Service selects the twin, the source's pods serve and its
    # size is the app's: its HPA (or the team) may grow it while the twin's
    # pods start. Taken once only, the switch put the load of 9 pods on the
    # twin's 3, and the source then went to 0 (the team's scale was lost).
    serving = source.replicas > 0 and draft.selector != only(base, color)
    if draft.state.replicas == 0 or draft.state.stable is None or serving:
        draft.set(replicas=desired_replicas(observed, ours(observed)))
    replicas = draft.state.replicas
    mismatch = _selector_mismatch(base, source.pod_labels)
    if mismatch:
        if draft.state.message != mismatch:
            draft.emit("SelectorMismatch", mismatch, warning=True)
        draft.say(mismatch)
        return
    if observed.foreign_pods:
        foreign = _foreign(observed)
        if not draft.state.message.startswith(_FOREIGN):
            # Once: the other workload's pods come and go (its HPA, a restart).
            draft.emit("ForeignPods", foreign, warning=True)
        draft.say(foreign)
        return
    twin = observed.twin(color)
    revision = source.revision
    if twin.exists and twin.revision and draft.selector == only(base, color):
        # The Service already selects the twin: the app is managed from the
        # switch, and the twin keeps the revision it serves. A release while
        # adoption waits for endpoints or for the source to reach 0 goes out
        # through the strategy afterwards; re-templated in place, it served
        # all traffic unanalysed and was recorded as the adopted revision.
        revision = twin.revision
    elif _paused_mid_rollout(draft, observed):
        return
    if source.claim.service != observed.service or source.claim.replicas != replicas:
        draft.do(ClaimSource(Claim(observed.service, replicas, revision)))
    draft.set(stable=color, stable_revision=revision)
    if not twin.exists or twin.revision != revision:
        draft.do(ApplyTwin(color, revision, replicas))
        draft.say(f"adopting: creating the {color} twin with {replicas} replicas")
        return
    if draft.replicas[color] != replicas:
        draft.do(ScaleTwin(color, replicas))
    _refused(draft, observed, adopting=True)
    if not twin.updated or twin.ready < replicas:
        draft.say(_adopting_pods(twin, color, replicas))
        return
    selector = only(base, color)
    if draft.selector != selector:
        draft.do(SetSelector(selector))
        draft.say(f"adopting: Service now selects the {color} twin")
        if replicas == 0:
            # The next step waits for the EndpointSlice to take the twin's
            # pods; with none on either side it never changes, and our own
            # write sends no event: adoption sat in Adopting (sandbox).
            draft.wake_in(1.0)
        return
    if twin.endpoints < replicas:
        draft.say(
            f"adopting: {min(twin.endpoints, replicas)}/{replicas} endpoints of the {color} "
            "twin ready"
        )
        return
    _source_down(draft, observed, color, replicas, revision)


def _source_down(
    draft: Draft, observed: Observed, color: Color, replicas: int, revision: str
) -> None:
    """The twin serves alone: the source to 0, then gated, then Adopted."""
    source = observed.source
    if source.replicas > 0:
        draft.do(ScaleSource(0))
        draft.say("adopting: scaling the source Deployment to 0")
        return
    if not source.gated:
        # In this cycle, before the Event and the status say it is gated
        # (they were written a cycle ahead of the gate); at 0 (seen above),
        # the new template makes no pods.
        draft.do(GateSource(True))
    draft.set(adopted=True)
    draft.say(_serving(draft.state, observed))
    draft.emit(
        "Adopted",
        f"revision {revision} now served by the {color} twin ({replicas} replicas); "
        "the source Deployment is kept at 0, its pod template gated (scheduling gate "
        "canary.io/held) so a re-apply that scales it cannot serve pods nobody analysed",
    )
    draft.do(Record(revision, "adopted", "the revision running when management began"))
    _keep_claim(draft, observed)


def _paused_mid_rollout(draft: Draft, observed: Observed) -> bool:
    """Paused mid-rollout (`kubectl rollout pause` after a pod or two of a
    release: a canary by hand, or changes batched between pause and resume),
    the team's Deployment has a template most of its pods do not run. Built
    from it, the twin took the paused release to every pod and all traffic,
    unanalysed, as "the revision running when management began" (found by
    review). Adoption writes nothing until it is resumed."""
    if not observed.source.paused or observed.source.rolled_out:
        return False
    draft.say(
        f"adopting waits: Deployment {observed.deployment} is paused mid-rollout (kubectl "
        "rollout pause), so its pods do not all run its pod template; resume it (kubectl "
        f"rollout resume deployment/{observed.deployment}) or undo its change"
    )
    return True


def _adopting_pods(twin: Twin, color: Color, replicas: int) -> str:
    """Adoption waiting for the twin's pods, and why they do not come, as a
    waiting step says it: a pods quota or full nodes hold them for good
    (the team's pods serve meanwhile), and the status said only "0/3 ready"."""
    return (
        f"adopting: {min(twin.ready, replicas)}/{replicas} pods of the {color} twin ready"
        f"{pods_why(twin)}"
    )


_FOREIGN = "the Service also serves"


def _foreign(observed: Observed) -> str:
    pods = sorted(set(observed.foreign_pods))  # a dual-stack Service lists each pod twice
    named = ", ".join(pods[:3]) + (f" and {len(pods) - 3} more" if len(pods) > 3 else "")
    return (
        f"{_FOREIGN} {len(pods)} ready pods that are not the Deployment "
        f"{observed.deployment}'s ({named}); pointing it at one twin would take them out "
        "of traffic. Give them a Service of their own, or narrow the Service's selector to "
        f"{observed.deployment}'s pods (a label only they carry). Traffic stays as it is"
    )


def _selector_mismatch(base: dict[str, str], pod_labels: dict[str, str]) -> str:
    """Why the Service could not select the twins' pods, or ""."""
    if not base:
        return (
            "the Service has no selector of its own, so it cannot be pointed at one twin; "
            "give it the selector of the app's pods. Traffic stays as it is"
        )
    missing = {k: v for k, v in base.items() if pod_labels.get(k) != v}
    if missing:
        return (
            f"the Service selector {base} does not select the pods of the Deployment (their "
            f"labels are {pod_labels}; not matched: {missing}); fix the selector or the pod "
            "labels. Traffic stays as it is"
        )
    return ""


def _conflict(draft: Draft, observed: Observed) -> bool:
    """Another Service manages this Deployment (its claim, or twins labelled
    for it): say so once and write nothing, whatever else we would do."""
    owner = other_owner(observed)
    if not owner:
        if draft.state.conflict:
            draft.set(conflict="")
            draft.emit("ConflictResolved", f"Deployment {observed.deployment} is free again")
        return False
    message = (
        f"Deployment {observed.deployment} is already managed through Service {owner}; "
        "this Service changes nothing. Point canary.io/deployment at another Deployment, "
        "or remove canary.io/strategy from one of the two Services"
    )
    if draft.state.conflict != message:
        draft.emit("Conflict", message, warning=True)
    draft.set(conflict=message)
    draft.say(message)
    return True


def _source_missing(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> None:
    """The team's Deployment is gone (deleted, or replaced and not yet back).
    Never a reason to stop serving: the stable twin keeps the traffic, and a
    canary in flight is taken out of it."""
    state = draft.state
    # Said as observed: one being deleted (a finalizer holding it) is still
    # shown by `kubectl get`, and "not found" sent on-call looking elsewhere.
    message = (
        f"source Deployment {spec.deployment} is being deleted"
        if observed.source.deleting
        else f"source Deployment {spec.deployment} not found"
    )
    if not state.adopted:
        if state.message != message:
            draft.emit("SourceMissing", f"{message}; nothing to roll out", warning=True)
        draft.say(message)
        return
    if _restore_selector(draft, observed):
        # As with the Deployment there: the rest reads the team's keys from
        # the selector observed (left with none, the twin label alone named
        # every managed app's twin of that colour), so it waits for the
        # selector as written.
        draft.say(f"{message}; the Service selector is put back")
        return
    # Our copy of the team's HPA still scales the stable twin (it targets the
    # twin, not the Deployment): its size is the app's, as with the
    # Deployment there. Before, _ensure_stable scaled the twin back to the
    # size it had at each cycle, a fight with the HPA controller that held
    # the app at its old size under load until the Deployment was back.
    autoscaling.follow_size(draft, observed)
    state = draft.state
    if observed.action and observed.action != state.last_action:
        # First: an abort of the canary in flight keeps it out, as asked.
        manual.while_source_missing(draft, observed)
        state = draft.state
    if state.canary is not None:
        ending.rollback(
            draft,
            observed,
            "RolloutCancelled",
            deleted_mid_rollout(spec.deployment),
            outcome="superseded",
            mark_failed=False,
        )
    _ensure_stable(draft, observed, now)
    stable = draft.state.stable
    serving = f"the {stable} twin keeps serving revision {state.stable_revision}"
    if stable is not None and not observed.twin(stable).exists:
        # Gone with it (`kubectl delete deployment -l app=web`: the twins
        # carry the app's labels), or being deleted: "keeps serving" told
        # on-call users were served while its pods stopped (_health says
        # why it is Degraded).
        gone = "being deleted" if observed.twin(stable).deleting else "missing"
        serving = f"the {stable} twin (revision {state.stable_revision}) is {gone} too"
    if stable is not None and draft.selector != only(base_selector(observed.selector), stable):
        if ending.stable_down(observed, stable):
            # As a rollback then (ending.stable_down): on the stable twin
            # alone the Service would have no endpoint. _steady moves it
            # once that twin has a ready pod (the Deployment back or not).
            serving = (
                f"the {stable} twin (revision {state.stable_revision}) has no ready pod, so "
                f"the {other(stable)} twin's pods keep serving until it has one"
            )
        else:
            draft.do(SetSelector(only(base_selector(observed.selector), stable)))
    if (
        stable is not None
        and draft.state.canary is None
        and draft.state.scale_down is None
        and draft.replicas[other(stable)] > 0
        and draft.selector == only(base_selector(observed.selector), stable)
    ):
        # A held rollback's twin (its scale-down waits in _steady, which
        # does not run while the Deployment is gone): once the Service has
        # left it, as after any rollback.
        _scale_down_idle(draft, observed, other(stable))
    # The HPA copy goes with the stable twin here too (an abort after a
    # promotion flips it back), and goes when the team's HPA does. Before,
    # it stayed on the twin just scaled to 0, where an HPA idles, and the
    # serving twin was not autoscaled until the Deployment was back.
    autoscaling.place(draft, observed)
    if not state.source_missing:
        draft.emit(
            "SourceMissing",
            f"{message}; {serving} ({state.replicas} replicas). Recreate the Deployment "
            f"{'once it is gone ' if observed.source.deleting else ''}to release again",
            warning=True,
        )
    draft.set(source_missing=True)
    draft.say(f"{message}; {serving}")


def _disown(draft: Draft, observed: Observed) -> None:
    """Twins made by an older version are owned by the source Deployment and
    would be garbage-collected with it: drop that ownership."""
    for color in COLORS:
        twin = observed.twin(color)
        if twin.exists and twin.owned:
            draft.do(Disown(color))


def _restore_selector(draft: Draft, observed: Observed) -> bool:
    """Someone else (a GitOps tool applying the original manifest) removed
    our keys from the selector: it now selects every pod of the app, the
    source's and an unanalysed canary's too. Put it back first thing, and
    say who changed it. True when a key of the team's was left out, or our
    Service label stands for them all: the rest of the cycle, which reads
    the team's keys from the selector observed, waits for it as written."""
    state = draft.state
    if state.stable is None:
        return False
    base = base_selector(observed.selector)
    # A label added to the pod template and the selector in one commit: the
    # stable pods (an older template) lack it, and a selector that asks for
    # it would leave the Service with no endpoint, then hand all traffic to
    # the new revision's canary. It is left out until a revision whose pods
    # carry it is promoted (the next sync puts it in).
    labels = dict(observed.twin(state.stable).labels)
    team = team_selector(observed.selector)
    missing = {k: v for k, v in team.items() if labels and labels.get(k) != v}
    if any(k in observed.selector for k in OWNED_SELECTOR_KEYS) and not missing and base:
        # Our keys are there, and the stable pods carry the team's. (A
        # client-side `kubectl apply` merges the map: it adds the new label
        # and keeps our keys, so a missing label is looked for either way.)
        return False
    kept = {k: v for k, v in team.items() if k not in missing}
    if missing or not kept:
        # With none of the team's keys left, the twin label alone would
        # select every managed app's twin of that colour: ours are named.
        # So too when the team's keys are gone from the Service (a sync of
        # a manifest with no `selector`, a server-side apply that dropped
        # them and kept ours): put back as `canary.io/twin: blue` alone, or
        # left so, the Service sent this app's requests to every managed
        # app's blue pods in the namespace (found by review). Our Service
        # label then stands for the team's keys (base_selector).
        kept[SERVICE_LABEL] = observed.service
    # The stable twin with no ready pod while the other's serve (a held
    # rollback, a canary serving alone: ending.stable_down): put back on
    # it alone, the Service had no endpoint at all. Both twins, never the
    # source's pods, until it has one (_steady, the step, then move it).
    held = ending.stable_down(observed, state.stable)
    if not held and ending.source_stands_in(state, observed):
        # Nor onto it from the source's own pods of the stable template (a
        # reinstall: the Deployment created afresh, ungated, the selector
        # written back as in Git): put back then, and the source held at 0,
        # the Service went from the app's pods to none. Both wait, the rest
        # of the cycle with them, until the stable twin has as many ready
        # pods (ending.stand_in_needs; _held_back says so in the status).
        # Nothing else of this cycle runs (_ensure_stable): the stable twin
        # deleted, or scaled to 0 by hand (no pod Pending to wait for), is
        # made again or scaled back here, else the source's pods served
        # outside the controller for good.
        # At the source's size if the team grew it meanwhile (its HPA, a
        # scale): taken only once the hold ended (_keep_source_at_zero),
        # the selector moved onto the twin's 3 ready pods with the load of
        # 8. Not while an HPA is followed: its copy sizes the twin.
        releasing = ending.release_over_stand_in(state, observed)
        if releasing and not observed.source.gated:
            # A release applied to it meanwhile: its new pods are held
            # Pending from now on (the rest waits for the hold to end, then
            # rolls out through the strategy). Not scaled: that would take
            # the pods of the stable revision that serve.
            draft.do(GateSource(True))
        narrowed = _narrow_hold(draft, observed) if releasing else ""
        if not releasing:
            draft.set(stood_in=True, stood_in_hash=_one_template(observed, state.stood_in_hash))
        size = state.replicas
        if not observed.autoscaler.followed:
            size = max(size, observed.source.replicas)
        if not observed.twin(state.stable).exists:
            draft.do(ApplyTwin(state.stable, state.stable_revision, size))
        elif draft.replicas[state.stable] != size:
            draft.do(ScaleTwin(state.stable, size))
        # Narrowed by us (_narrow_hold): what was reset is the team's part.
        reset = team_selector(observed.selector)
        if POD_TEMPLATE_HASH not in observed.selector:
            reset = observed.selector
        draft.say(
            f"the Service selector was reset to {reset}; Deployment "
            f"{observed.deployment}'s own pods (revision {state.stable_revision}) serve until "
            f"the {state.stable} twin (stable) has {ending.stand_in_needs(state, observed)} "
            "ready, then it is put back"
            + (
                f"; revision {observed.source.revision}, applied to it meanwhile, is held until "
                f"then and rolls out after{narrowed}"
                if releasing
                else ""
            )
        )
        return True
    draft.do(SetSelector(both(kept, observed.service) if held else only(kept, state.stable)))
    where = (
        f"on both twins until the {state.stable} twin (stable, no ready pod) has one"
        if held
        else f"back on the {state.stable} twin"
    )
    hashed = observed.selector.get(POD_TEMPLATE_HASH)
    if hashed and not held:
        # Our own narrowing of the hold (_narrow_hold): the selector's
        # manager is this controller now, not whoever reset it.
        draft.emit(
            "SelectorRestored",
            f"the Service selector was reset while the {state.stable} twin (stable) had too few "
            f"ready pods; Deployment {observed.deployment}'s own pods of revision "
            f"{state.stable_revision} served meanwhile (narrowed to ReplicaSet "
            f"{observed.deployment}-{hashed}, over a release applied to it); it is back on the "
            f"{state.stable} twin. Keep spec.selector out of what your tool syncs (see the "
            "README, GitOps)",
            warning=True,
        )
        return bool(missing) or not team
    who = observed.selector_manager or "someone"
    later = (
        f"; {', '.join(f'{k}={v}' for k, v in missing.items())} left out: the {state.stable} "
        "twin's pods (the stable revision) do not carry it, so the Service would select no pod; "
        "it goes in once a revision whose pods carry it is promoted"
        if missing
        else ""
    )
    if not team:
        later += (
            f"; with none of the app's own keys left, it names this Service's twins by "
            f"{SERVICE_LABEL}={observed.service} (the twin label alone selects every managed "
            "app's twin of that colour in the namespace)"
        )
    what = (
        "which selects pods nobody analysed"
        if team or any(k in observed.selector for k in OWNED_SELECTOR_KEYS)
        else "which selects no pod"
    )
    draft.emit(
        "SelectorRestored",
        f"{who} set the Service selector to {observed.selector}, {what}; it is "
        f"{where}{later}. Keep spec.selector out of "
        "what your tool syncs (see the README, GitOps)",
        warning=True,
    )
    return bool(missing) or not team


def _one_template(observed: Observed, known: str) -> str:
    """The pod-template-hash of the source's pods behind the Service when
    they are all of one ReplicaSet and it can be read from their names;
    `known` (the last read) when none is listed: the endpoints not seen
    yet (the cache behind for a cycle) say nothing of it, and read as "",
    a release applied next was not narrowed (its ready pod served)."""
    if not observed.source_pods:
        return known
    hashes = {template_hash(pod, observed.deployment) for pod in observed.source_pods}
    return hashes.pop() if len(hashes) == 1 else ""


def _narrow_hold(draft: Draft, observed: Observed) -> str:
    """Over a release, the Service selects the source's pods of both
    ReplicaSets: a pod of the release the Deployment controller made ready
    before the gate (it creates one as soon as it sees the template) served
    unanalysed until the hold ended. The selector is narrowed to the pods
    that stood in, by pod-template-hash (the team's keys kept: put back
    onto the twin, the hash goes, twins.team_selector). While no pod of the
    release serves and the stable twin's pods do, it is left as it is: no
    selector (an AND of labels) keeps those and the ReplicaSet's without
    the release's, and narrowed it would drop the twin's for nothing. What
    the status says ("" when nothing was narrowed)."""
    state = draft.state
    known = state.stood_in_hash
    assert state.stable is not None
    if not known:
        return ""
    others = [p for p in observed.source_pods if template_hash(p, observed.deployment) != known]
    if observed.twin(state.stable).endpoints and not others:
        return ""
    narrowed = {**team_selector(observed.selector), POD_TEMPLATE_HASH: known}
    if observed.selector != narrowed:
        draft.do(SetSelector(narrowed))
    return f"; the Service selects only the pods of ReplicaSet {observed.deployment}-{known}"


def _name_taken(draft: Draft, observed: Observed) -> bool:
    """Before adoption, a Deployment that bears a twin's name but is not one
    (the team's own `web-green`): taking it would scale it, point the Service
    at pods without our labels (no endpoint), or delete it to make the twin."""
    if draft.state.adopted:
        return False
    taken = [twin_name(observed.deployment, c) for c, t in observed.twins.items() if foreign(t)]
    if not taken:
        return False
    message = (
        f"Deployment {', '.join(taken)} exists and is not a twin made by canary: the twins of "
        f"Deployment {observed.deployment} need these names. Rename it (or remove "
        "canary.io/strategy); nothing was changed"
    )
    if draft.state.message != message:
        draft.emit("NameTaken", message, warning=True)
    draft.say(message)
    return True


def _keep_source_at_zero(draft: Draft, observed: Observed, now: float) -> None:
    """The source stays at 0 and gated: a re-apply that scales it up makes
    pods the scheduler holds back, so a Service selector reset in the same
    sync (or while the controller is down) has none of them to select."""
    replicas = observed.source.replicas
    if replicas > 0:
        _source_size(draft, observed, now, replicas)
        state = draft.state
        stable = state.stable
        if (
            stable is not None
            and observed.twin(stable).exists
            and draft.replicas[stable] != state.replicas
        ):
            # The size the source carried goes onto the stable twin before
            # the source is put back at 0: after it, a scale of the twin that
            # failed (a webhook on Deployments that is down, once) cut the
            # cycle with the source at 0 and the status, which holds the new
            # size, unwritten; the retry found nothing to take, and
            # `kubectl scale deployment/web --replicas=5` was lost, unsaid
            # (SourceScaled is told after the writes). Failed first, the
            # source keeps its size (its pods gated) and the retry takes it.
            draft.do(ScaleTwin(stable, state.replicas))
        draft.do(ScaleSource(0))
    if not observed.source.gated:
        draft.do(GateSource(True))  # after the scale: the new template makes no pods


def _source_size(draft: Draft, observed: Observed, now: float, replicas: int) -> None:
    """The size a scale of the team's Deployment gives the app (or not),
    and its SourceScaled."""
    state = draft.state
    count = state.source_scaled + 1
    followed = observed.autoscaler.followed and state.stable is not None
    if observed.source.replicas_defaulted and state.replicas:
        # The field left out of an apply, client-side or server-side (as
        # SourceScaled advises): the API server's default of 1 is nobody's
        # choice of size.
        if not state.source_scaled_at or now >= state.source_scaled_at + SOURCE_SCALED_EVERY_S:
            draft.set(source_scaled=0, source_scaled_at=now)
            draft.emit(
                "SourceScaled",
                f"Deployment {observed.deployment} came back with replicas 1, the API server's "
                "default for a field an apply removed; its pods would bypass the "
                f"rollout, so it is back at 0, and the app keeps {state.replicas} replicas. "
                "Scale the app with `kubectl scale`",
            )
        return
    # While an HPA is followed it owns the size; else the new count is the
    # team's. An app kept at 0 is woken by it whatever the HPA: that HPA and
    # its copy on the twin are idle at 0, so nothing else brings it back.
    waking = state.replicas == 0 and state.stable is not None
    # KEDA reads the 0 we keep its target at as its app idle and writes its
    # minimum there at every poll (under load, as its triggers are active):
    # taken as the size, an app on 6 pods was cut to 1. From 0 it is the
    # wake-up it means.
    keda = bool(observed.autoscaler.scaler) and state.stable is not None
    kept = (followed or keda) and not waking
    draft.set(replicas=state.replicas if kept else replicas, source_scaled=count)
    if not kept and replicas > state.replicas:
        # Growth, not a twin short of pods: judged on the size that served
        # until the new pods are ready (as when an HPA grows it).
        draft.set(scaled_from=min(state.scaled_from or state.replicas, replicas))
    if waking:
        # The way back from 0 (the status says so): told as it is, at once.
        draft.set(source_scaled=0, source_scaled_at=now, woken=now)
        draft.emit(
            "SourceScaled",
            f"Deployment {observed.deployment} was scaled to {replicas}: the app was at 0, so "
            f"the {state.stable} twin now runs {replicas} replicas (the Deployment itself stays "
            "at 0: its own pods would bypass the rollout)",
        )
        return
    if state.source_scaled_at and now < state.source_scaled_at + SOURCE_SCALED_EVERY_S:
        return  # told recently; the next Event carries the count
    times = f" ({count} times since the last such Event)" if count > 1 else ""
    draft.set(source_scaled=0, source_scaled_at=now)
    if followed or keda:
        assert state.stable is not None
        message = autoscaling.source_scaled(observed, replicas, times, state.stable, state.replicas)
    else:
        message = (
            f"Deployment {observed.deployment} was scaled to {replicas}{times}, by a re-apply or "
            "an autoscaler; its pods would bypass the rollout, so it is back at 0 and the stable "
            f"twin runs {replicas} replicas. To stop this, leave `replicas` out of the manifest "
            "you apply (or ignore its differences in your GitOps tool)"
        )
    draft.emit("SourceScaled", message, warning=True)


def _app_size(draft: Draft, observed: Observed, now: float, rebuilt: str = "") -> None:
    """The size the HPA we follow gives the stable twin, or one a person gave
    it; after a rebuild mid-rollout, what both twins served."""
    if not autoscaling.follow_size(draft, observed):
        _stable_scaled_by_hand(draft, observed, now)
    elif rebuilt:
        _load_back_on_rebuild(draft, observed)


def _stable_scaled_by_hand(draft: Draft, observed: Observed, now: float) -> None:
    """Someone scaled the stable twin itself (`kubectl scale deployment
    web-blue`: on-call, under a load spike, scaling the Deployment whose
    pods they see). Up is taken as the app's size: put back, the pods they
    asked for were deleted as soon as they came, with no word why. Down is
    put back (_ensure_stable), and said why. Before the team's own scale of
    the source (later in the cycle), which wins; not while an HPA is
    followed: it owns the size (autoscaling.follow_size)."""
    state = draft.state
    if not state.adopted or state.stable is None or observed.autoscaler.followed:
        return
    twin = observed.twin(state.stable)
    if not twin.exists or not twin.scaled_by or twin.edited_by or twin.replicas == state.replicas:
        return
    hpa = dict(observed.autoscaler.on_twins).get(state.stable, "")
    if hpa and twin.replicas > 0:
        # `kubectl autoscale deployment web-blue`: that HPA decides the size,
        # down as well as up (else only growth would stick); it stops at the
        # next promotion, which moves the app to the other twin.
        floor = min(state.scaled_from or state.replicas, twin.replicas)
        draft.set(replicas=twin.replicas, scaled_from=floor if floor < twin.replicas else 0)
        if not state.source_scaled_at or now >= state.source_scaled_at + SOURCE_SCALED_EVERY_S:
            draft.set(source_scaled_at=now)
            draft.emit(
                "TwinScaled",
                f"HPA {hpa} targets the {state.stable} twin (stable) itself and scaled it to "
                f"{twin.replicas} replicas: taken as the app's size. A promotion moves the app "
                f"to the other twin, which it does not scale: point it at Deployment "
                f"{observed.deployment} instead (canary copies it onto the stable twin)",
                warning=True,
            )
        return
    if twin.replicas > state.replicas:
        floor = min(state.scaled_from or state.replicas, twin.replicas)
        draft.set(replicas=twin.replicas, scaled_from=floor)
        if state.replicas == 0:
            draft.set(woken=now)  # the way back from 0: a release waits for a stable pod
        draft.emit(
            "TwinScaled",
            f"{twin.scaled_by} scaled the {state.stable} twin (stable) to {twin.replicas} "
            f"replicas: taken as the app's size (it was {state.replicas}; the canary twin "
            f"follows at each step). Scale the app with `kubectl scale deployment/"
            f"{observed.deployment}`: the twins take its size",
        )
        return
    if state.source_scaled_at and now < state.source_scaled_at + SOURCE_SCALED_EVERY_S:
        return  # told recently (a tool that keeps scaling it gets one Event per period)
    draft.set(source_scaled_at=now)
    draft.emit(
        "TwinScaled",
        f"{twin.scaled_by} scaled the {state.stable} twin (stable) to {twin.replicas} "
        f"replicas; put back to {state.replicas}, the app's size. Scale the app with `kubectl "
        f"scale deployment/{observed.deployment}`: the twins take its size",
        warning=True,
    )


def _action(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> None:
    """A person's action not yet taken, after the stable twin's pods are
    noted (State.woken): an undo waits for its first ready pod as a
    release does, also in the cycle that first sees it with none."""
    if observed.action and observed.action != draft.state.last_action:
        _note_stable_pods(draft, observed, now)
        manual.manual_action(draft, spec, observed, now)


def _ensure_stable(draft: Draft, observed: Observed, now: float) -> None:
    """The stable twin must exist at its size: someone may have deleted or
    scaled it. Recreate it from its recorded revision."""
    state = draft.state
    if state.stable is None:
        return
    twin = observed.twin(state.stable)
    if not twin.exists:
        # Planned even when template_kept says nothing holds its template
        # (the shell then only logs it): a wrong "kept nowhere" must never
        # leave the stable twin deleted; _health says it, once.
        draft.do(ApplyTwin(state.stable, state.stable_revision, state.replicas))
    elif (twin.edited_by or (twin.revision and twin.revision != state.stable_revision)) and (
        template_kept(observed, state.stable_revision)
    ):
        # `kubectl rollout undo` on a twin brings back an older ReplicaSet's
        # template and its annotations too: the twin then names the older
        # revision consistently, and only the revision tells.
        who = twin.edited_by or "someone (kubectl rollout undo?)"
        was = f" (it now runs {twin.revision})" if twin.revision != state.stable_revision else ""
        draft.do(ApplyTwin(state.stable, state.stable_revision, state.replicas, put_back=True))
        draft.set(put_back=state.stable)
        draft.emit(
            "TwinRestored",
            f"{who} changed the pod template of the {state.stable} twin (stable), so "
            f"its pods were no longer revision {state.stable_revision}{was}; put back. Change "
            f"the Deployment {observed.deployment} instead: that goes out through a rollout",
            warning=True,
        )
    elif draft.replicas[state.stable] != state.replicas:
        draft.do(ScaleTwin(state.stable, state.replicas))
    _note_stable_pods(draft, observed, now)


def _stable_serves(state: State, observed: Observed) -> bool:
    """The stable twin is there with a pod that serves or could (what ends
    the wait State.woken times: _as_read and _note_stable_pods alike)."""
    if state.stable is None:
        return False
    twin = observed.twin(state.stable)
    return twin.exists and rollout.has_a_ready_pod(twin)


def _note_stable_pods(draft: Draft, observed: Observed, now: float) -> None:
    """State.woken: set when the stable twin is first seen with no ready
    pod while the app has a size, cleared at its first ready pod. Also
    before a person's action is read (decide): an undo seen in the cycle
    that first saw the twin with none started at once (rollout.waking
    found no time yet), its canary's first ready pod taking every request."""
    state = draft.state
    if state.stable is None:
        return
    if _stable_serves(state, observed):
        if state.woken:
            # Its first ready pod: with the Recovered, no status write of its
            # own. Here, not only while no rollout is in flight: a time left
            # from a drain mid-rollout that healed made the next one's wait
            # look long over, and a release right after it started at once.
            draft.set(woken=0.0)
    elif state.replicas > 0 and not state.woken:
        # Deleted, or being deleted (a foreground cascade keeps it until its
        # pods have stopped; a pod stuck on a lost node, for good), or there
        # at its size with no ready pod (a drain evicted them all and they
        # are Pending elsewhere, they all crash, it was scaled to 0 by hand
        # and is put back): until it has a ready pod, a release waits as
        # after a scale-up from 0 (rollout.waking; at most the progress
        # deadline, counted from now, when it is first seen so). Started,
        # its canary's pod was the only ready one behind the Service (a 10 %
        # step, 100 % effective), judged with no baseline, and a passing
        # check promoted it before the stable twin served again. Never set
        # while it has one: a twin whose pods are replaced one by one (a
        # restart, a drain under a PodDisruptionBudget) takes no write.
        draft.set(woken=now)


def template_kept(observed: Observed, revision: str) -> bool:
    """Somewhere the shell can write a twin of `revision` from (see
    reconcile._apply_twin): the team's Deployment holds it, the history keeps
    its template, or a twin not edited by hand runs it. Else a put-back
    cannot be written (a Service created again lost its history with the old
    one, the Deployment moved on, the only twin that ran it was edited): the
    edited twin then serves as it is, kept at its size, and the degradation
    says why (no TwinRestored that nothing carries out, cycle after cycle)."""
    if observed.source.exists and observed.source.revision == revision:
        return True
    if revision in observed.revisions.values():
        return True
    return any(
        t.exists and t.revision == revision and not t.edited_by for t in observed.twins.values()
    )


def _kept_nowhere(state: State, observed: Observed) -> str:
    return (
        f"the template of revision {state.stable_revision} is kept nowhere any more (the "
        f"history lost it, Deployment {observed.deployment} holds another)"
    )


def _action_on_rebuild(state: State, rebuilt: str, action: str) -> tuple[State, str]:
    """The status that said whether the action on the Service was carried
    out is gone: an old `retry` or `undo` run again would put back what
    people took out, so it is taken as done. A `pause` is safe to carry out
    again and the newest request there: lost with the status (an old export
    applied, a restore), the rollout went on under the person holding it.
    Remembered as taken either way: a GitOps manifest holding it (the very
    way it got there with the status dropped: a replace, a delete and
    create) writes it back after the next request made with the CLI, and
    as last_action alone it then read as new (an old `abort 1` aborted the
    release on-call had just promoted)."""
    state = replace(state, last_action=action, taken_actions=taken(state.taken_actions, action))
    if not rebuilt:  # a Service seen for the first time has nothing to rebuild
        return state, rebuilt
    if _pause_kept(state, action):
        state = replace(state, paused=True)
        return (
            state,
            f"{rebuilt}; canary.io/action {action!r} is kept: the rollout stays paused "
            "(canary resume)",
        )
    return state, f"{rebuilt}; canary.io/action {action!r} is taken as done (ask again)"


def _pause_kept(state: State, action: str) -> bool:
    """A rebuilt status keeps a `pause` still on the Service. Pinned to a
    revision or not: a pause holds whatever rolls out (manual actions pin
    only promote, abort, retry and undo)."""
    verb, _, _ = parse_action(action)
    return verb == "pause"


def _beside_the_twins(draft: Draft, spec: RolloutSpec, observed: Observed) -> None:
    """What goes with the twins, after this cycle's decisions: the HPA copy
    (a promotion moves it), and previews under a former name."""
    autoscaling.place(draft, observed)
    _retire_previews(draft, spec, observed)


def _retire_previews(draft: Draft, spec: RolloutSpec, observed: Observed) -> None:
    """Our previews under a name canary.io/preview-service no longer has
    select no pod any more (observe.old_previews), mid-rollout or not: the
    new name previews from now on. Said by the shell once the write lands,
    which takes it out of the observation. Not deleted: the controller may not delete Services."""
    for name in observed.old_previews:
        told = (
            f"Service {name}, the preview made under a former canary.io/preview-service, "
            f"now selects no pod ({TWIN_LABEL}: {RETIRED}); the preview is "
            f"{spec.preview_service}. Delete {name} once nothing uses it (the controller "
            "may not delete Services)"
        )
        draft.do(RetirePreview(name, told))


def _keep_claim(draft: Draft, observed: Observed) -> None:
    """The claim's size is what the app needs if handed back from it alone
    (the Service deleted, or recreated without our annotations:
    handback.orphan has no status): autoscaled mid-rollout, what both twins
    serve, not the stable twin's share (its HPA sized it for that only; the
    load of 16 pods came back on 8, until the team's HPA caught up). At a
    fixed size, the app's size: the canary's pods were on top of it."""
    state = draft.state
    if not state.adopted or not observed.source.exists:
        return
    # A copy this cycle removes (the team's HPA gone) sizes the stable twin
    # for its share no more: autoscaling._left_at has already raised the
    # app's size to what both twins served, and counted with the copy, the
    # canary's share was added to it again (16 + 16 claimed for 8 + 8).
    removed = {a.color for a in draft.actions if isinstance(a, DeleteAutoscaler)}
    if removed & observed.autoscaler.copies:
        auto = observed.autoscaler
        observed = replace(observed, autoscaler=replace(auto, copies=auto.copies - removed))
    size = autoscaling.serving_size(state, observed)
    wanted = Claim(observed.service, size, state.stable_revision)
    if observed.source.claim != wanted:
        draft.do(ClaimSource(wanted))


def _health(draft: Draft, observed: Observed, *, waking: bool) -> None:
    """Degraded is what is observed, not what was asked for: no ready
    endpoint at all, or the stable twin missing or short of pods. `waking`:
    a release waits for the stable twin's first ready pod (rollout.waking;
    State.woken alone is kept past the deadline, when it no longer does)."""
    state = draft.state
    if not state.adopted or state.stable is None:
        return
    stable = observed.twin(state.stable)
    if state.scaled_from and stable.ready >= state.replicas:
        draft.set(scaled_from=0)  # grown: every pod of the new size serves
        state = draft.state
    reasons = []
    if state.replicas > 0 and observed.endpoints == 0:
        reasons.append("the Service has no ready endpoint")
    if not stable.exists:
        reasons.append(
            # Still shown by `kubectl get` while its cascade runs (for good
            # while a pod is stuck terminating): "missing" sent on-call
            # looking elsewhere; it cannot be made again before it is gone.
            f"the {state.stable} twin (stable) is being deleted; it is made again once gone"
            if stable.deleting
            else f"the {state.stable} twin (stable) is missing"
        )
        if not template_kept(observed, state.stable_revision):
            reasons.append(
                f"it cannot be recreated: {_kept_nowhere(state, observed)}; a release "
                "through the Deployment replaces it"
            )
    elif stable.edited_by or (stable.revision and stable.revision != state.stable_revision):
        # `kubectl rollout undo` of the twin: an older ReplicaSet's template
        # and annotations, so nothing looks edited (put back, _ensure_stable).
        reasons.append(
            f"{stable.edited_by} changed the pod template of the {state.stable} twin (stable)"
            if stable.edited_by
            else f"the {state.stable} twin (stable) runs revision {stable.revision}, "
            f"not {state.stable_revision}"
        )
        if not template_kept(observed, state.stable_revision):
            reasons.append(
                f"it cannot be put back: {_kept_nowhere(state, observed)}; it serves as "
                f"edited until a release through Deployment {observed.deployment} replaces it"
            )
    elif stable.put_back or (not stable.updated and state.put_back == state.stable):
        # Put back (TwinRestored), but pods of the edited template still
        # serve until the put-back has rolled: not Healthy until then (the
        # soak's status rule; a clean-clone run caught Healthy with one left).
        # Kept in the state, not read back from this reason's text: the next
        # cycle's reason would no longer have named the edit. Observed on the
        # twin too (its put-back mark): a status lost after the twin's write
        # (a kill, a refused status write, a rebuild) forgot the flag, and
        # read Healthy while the edited pods served.
        # Pods of the edited template are left only while some of an older
        # template are (ready_mixed; none with `strategy: Recreate`, which
        # stops them all first), and a put-back short of ready pods says so
        # too: before, this reason hid the count, and said edited pods
        # served when none was left.
        left = ": pods of the edited template still serve" if stable.ready_mixed else ""
        reasons.append(
            f"the {state.stable} twin (stable) is being put back to revision "
            f"{state.stable_revision}{left}"
        )
        serving = max(stable.ready, stable.ready_mixed, stable.endpoints)
        if serving < autoscaling.expected_ready(state):
            reasons.append(
                f"{min(serving, state.replicas)}/{state.replicas} pods of the "
                f"{state.stable} twin (stable) ready"
            )
    # Mid-rollout too: the stable twin is kept at its size (an autoscaled one
    # is judged against the size that served until the pods its HPA asked for are ready).
    # Its pods the EndpointSlices list as ready serve, whatever its status
    # says: a write of ours (the promotion's scale of the twin it makes
    # stable) leaves readyReplicas unread until the Deployment controller
    # observes it, and that moment read as "0/1 ready; users may see
    # failures" (bench.scale, 200 rollouts: 101 false Degraded Warnings).
    elif (serving := max(stable.ready, stable.endpoints)) < autoscaling.expected_ready(state) or (
        # A growth (its HPA, the team) whose pods are refused (a pods quota
        # full): they are not on their way, and judged on the size that
        # served the app read Healthy for good on fewer pods than asked for.
        stable.refused and serving < state.replicas
    ):
        reasons.append(
            f"{min(serving, state.replicas)}/{state.replicas} pods of the "
            f"{state.stable} twin (stable) ready"
        )
    rolled = stable.updated and not stable.edited_by and stable.revision == state.stable_revision
    if state.put_back and (state.put_back != state.stable or rolled):
        draft.set(put_back="")  # rolled (or no longer the stable twin)
    _refused(draft, observed)
    reasons.extend(_held_back(draft, observed))
    if kept := _kept_for_abort(observed, state, told=True):
        reasons.append(kept)
    revision = observed.source.revision
    if (
        waking
        and state.canary is None
        and observed.source.exists
        and revision not in (state.stable_revision, state.failed_revision)
        and reasons
        # Said once: a held rollback's line already says the release waits.
        and f"revision {revision} waits for it to roll out" not in reasons
    ):
        reasons.append(f"revision {revision} waits for its first ready pod to roll out")
    reason = "; ".join(reasons)
    why = _stable_short_why(draft, observed) if reason else ""
    if reason and not state.degraded:
        draft.emit("Degraded", f"{reason}{why}; users may see failures", warning=True)
    elif state.degraded and not reason:
        draft.emit("Recovered", "the Service and its stable twin serve in full again")
        # The line beneath alone: one a rollout keeps rather than says again
        # (a halted probe's) still led with the degradation, on a Service
        # serving in full, until the rollout next spoke (an interval on).
        draft.say(_beneath(draft.state, state.degraded))
    draft.set(degraded=reason)
    if reason:
        draft.say(degraded_message(reason, why, _beneath(draft.state, state.degraded)))


def _beneath(state: State, before: str) -> str:
    """The cycle's own line after the degradation (`before`: the reason the
    last cycle gave): Degraded wins the phase, and with its reason alone a
    rollout halted for a person, paused or at a gate read as something that
    heals by itself (and CanaryRolloutHalted resolves then), and a check's
    line in the timeline (what it decided: a rollback) said only that."""
    return beneath_degraded(state.message, before) if before else state.message


def _stable_short_why(draft: Draft, observed: Observed) -> str:
    """Why the stable twin's missing pods do not come, as a waiting step
    says it for the canary's: refused (a pods quota; no pod exists at all)
    or what the pods say (Unschedulable after a drain with no node that
    fits, an image that no longer pulls). Before, the status said only
    "2/3 pods of the blue twin (stable) ready". In the message, not in
    `degraded`: a change of `degraded` is written at once, and a crash
    loop's restart count would write the status at each restart of any
    pod; the message is paced as progress (a write per
    PROGRESS_WRITE_EVERY_S at most)."""
    state = draft.state
    stable = observed.twin(state.stable)
    if not stable.exists or max(stable.ready, stable.endpoints) >= state.replicas:
        return ""
    return pods_why(stable)


def _held_back(draft: Draft, observed: Observed) -> list[str]:
    """What waits for a stable twin with no ready pod while the other twin's
    pods serve (see _steady), or the source's own (ending.source_stands_in): said
    with the degradation, which is what the status shows then."""
    state = draft.state
    assert state.stable is not None
    if ending.source_stands_in(state, observed):
        needs = ending.stand_in_needs(state, observed)
        return [f"Deployment {observed.deployment}'s own pods serve until it has {needs} ready"]
    idle = other(state.stable)
    if (
        state.canary is not None
        or draft.selector == only(base_selector(observed.selector), state.stable)
        or not ending.stable_down(observed, state.stable)
    ):
        return []
    held = [f"the {idle} twin's pods serve until it has one"]
    revision = observed.source.revision
    if revision not in (state.stable_revision, state.failed_revision) and observed.source.exists:
        held.append(f"revision {revision} waits for it to roll out")
    return held


def _refused(draft: Draft, observed: Observed, adopting: bool = False) -> None:
    """A twin whose pods cannot be created (a namespace ResourceQuota full, a
    policy refusing them): its ReplicaSet's FailedCreate is seen on the
    twin's own objects only, while the Service said "0/1 pods ready" for the
    whole progress deadline, then rolled back for it. Told once, when seen;
    while adopting too, which waits for the twin's pods with no deadline
    (the team's pods serve meanwhile): nothing else said why it never ended."""
    state = draft.state
    role = {state.stable: "stable", state.canary: "canary"}
    # Only twins this decision leaves asking for pods: one it scales to 0
    # (a rollback at the deadline the refusal caused) was told again, as
    # "idle", in the very cycle that stopped waiting for its pods.
    refused = "; ".join(
        f"the {color} twin ({role.get(color, 'idle')}) cannot create its pods: {twin.refused}"
        for color in COLORS
        if (twin := observed.twin(color)).exists and draft.replicas[color] > 0 and twin.refused
    )
    if refused and refused != state.refused:
        needs = (
            f"adoption runs the app's full size on the twin beside Deployment "
            f"{observed.deployment}'s pods until the Service is switched, and waits for them "
            "(those pods serve meanwhile; removing canary.io/strategy gives up)"
            if adopting
            else "a rollout waiting for these pods is rolled back at its progress deadline, "
            "and a promotion needs room for the app's full size on both twins until the flip"
        )
        draft.emit(
            "PodsRefused",
            f"{refused}. Make room (the namespace's ResourceQuota, or whatever refuses them): "
            f"{needs}",
            warning=True,
        )
    draft.set(refused=refused)


def _scale_down_idle(draft: Draft, observed: Observed, idle: Color) -> None:
    """Only once the Service has left the idle twin: after an abort that
    flipped traffic back, its pods were all the Service had, and removing them
    before the EndpointSlice holds the other twin's would leave it empty."""
    if draft.selector != observed.selector or observed.twin(idle).endpoints > 0:
        draft.wake_in(1.0)
        return
    draft.do(ScaleTwin(idle, 0))


def _kept_for_abort(observed: Observed, state: State, told: bool = False) -> str:
    """Why the old twin kept for an abort stays past scale-down-delay ("" if
    it does not): the promoted twin has no pod that serves (crashing a
    minute into real traffic, a liveness probe failing after warm-up, its
    pods evicted) while the old one has ready pods. Scaled to 0 at the end
    of the delay, they went, and with them the abort that puts production
    back on them at once (found by review). It goes once a promoted pod
    serves, or once on-call has decided (an abort, or a new release).
    Kept while either count says none (the Deployment's ready pods, the
    Service's endpoints: each lags the other); `told` (the degradation),
    only when both do, as the stable twin's own count is: a blue-green flip
    is observed before the Service lists the promoted twin (in its own
    cycle, and the next, which its selector write wakes at once), and every
    blue-green promotion read Degraded, "users may see failures", then
    Recovered."""
    old = state.scale_down
    if old is None or state.stable is None or not state.previous_revision or not state.replicas:
        return ""
    promoted, back = observed.twin(state.stable), observed.twin(old)
    ready = max(promoted.ready, promoted.ready_mixed)
    if (max if told else min)(ready, promoted.endpoints) > 0:
        return ""
    if not back.exists or back.revision != state.previous_revision or back.ready == 0:
        return ""
    # No count of its ready pods in it: `degraded` is written as soon as it
    # changes (not paced), so each pod of it turning ready or not was a write.
    return (
        f"the {old} twin (revision {state.previous_revision}) stays up "
        f"while the {state.stable} twin has no pod that serves: `canary abort` puts production "
        "back on it"
    )


def _steady(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> None:
    state = draft.state
    assert state.stable is not None
    idle = other(state.stable)
    held = _back_on_stable(draft, observed)
    if state.scale_down is not None:
        _window_as_edited(draft, spec, observed)
        state = draft.state
    kept = _kept_for_abort(observed, state)
    if held:
        pass  # nothing is scaled down: the idle twin is what serves
    elif state.scale_down is not None and now < state.scale_down_at:
        draft.wake_in(state.scale_down_at - now)
    elif kept:
        pass  # the abort stays open while the promoted twin has no pod that serves
    else:
        if state.scale_down is not None:
            draft.set(scale_down=None, scale_down_at=0.0, previous_revision="")
        if draft.replicas[idle] > 0:
            _scale_down_idle(draft, observed, idle)
    # (State.woken is cleared by _ensure_stable at the stable twin's first
    # ready pod, and kept past the deadline while it has none: cleared then,
    # it was set again the next cycle, and a release held anew for as long,
    # once per deadline, however long the twin had been down.)
    revision = observed.source.revision
    if state.source_paused and revision in (state.stable_revision, state.failed_revision):
        # The release that waited (a paused Deployment, an HPA on the idle
        # twin) is gone, reverted: the next one that waits is told again.
        draft.set(source_paused=False)
        state = draft.state
    # A hand-back copies the stable twin's template (config copies and all)
    # into the source: the same pods under another hash, nothing to roll out.
    # Not a twin that reads live what the source tracks again: its pods
    # would get every edit of that config unanalysed.
    same = observed.source.same_as - observed.source.reads_live
    if revision == state.stable_revision or state.stable in same:
        _holds_serving(draft, observed, held, set_back=revision == state.stable_revision)
        return
    if revision == state.failed_revision:
        draft.say(_kept_out_line(state, observed, held))
        return
    wait = _release_waits(observed, state, revision)
    if wait is not None:
        told, said, warning = wait
        if not state.source_paused:
            draft.emit("RolloutPaused", told, warning=warning)
        draft.set(source_paused=True)
        draft.say(f"revision {revision} waits: {said}")
        return
    if held:
        # A rollout starts by pointing the Service at the stable twin alone
        # and re-templating the other, whose pods are all that serve now:
        # the Service would have no endpoint at all until the new pods came
        # up, and then they would take every request, unanalysed. (The
        # status says so: see _held_back.) Said beneath the degradation too:
        # left unsaid, the line beneath stayed the held rollback's ("run
        # `canary retry` to try again") after the retry was taken, or after
        # the Deployment changed to a new release.
        draft.say(f"{_held_line(state, observed)}; revision {revision} rolls out once it has one")
        return
    if draft.selector != observed.selector or observed.twin(idle).endpoints > 0:
        # The Service has not left the idle twin yet: an abort flipped back
        # from it in this very decision, or its EndpointSlice still lists
        # that twin's pods, which may be all the Service has. A rollout
        # re-templates and resizes that twin: started, a hotfix right after
        # an abort replaced the pods serving every request under the
        # Service. It starts once the Service has left them, as the twin's
        # scale-down waits (_scale_down_idle).
        draft.say(f"revision {revision} rolls out once the Service has left the {idle} twin")
        draft.wake_in(1.0)
        return
    if state.replicas == 0:
        _wait_at_zero(draft, observed, revision)
        return
    if rollout.waking(spec, state, observed, now):
        _wait_for_a_stable_pod(draft, spec, observed, revision, now)
        return
    rollout.start(draft, spec, observed, now)


def _kept_out_line(state: State, observed: Observed, held: bool) -> str:
    """The steady line while the Deployment holds the revision kept out."""
    revision = state.failed_revision
    if state.undone:  # undone, not rolled back: held or not, no rollback is told
        serving = (
            _held_line(state, observed)
            if held
            else f"serving revision {state.stable_revision} (undo)"
        )
        return (
            f"{serving}; the Deployment still holds {revision}, which stays out until the "
            "Deployment changes or `canary retry`"
        )
    # As the history ended it: an abort (mid-rollout, or within the abort
    # window after a promotion) read "was rolled back" here, beside a history,
    # `canary status`, `canary wait` (exit 4) and a dashboard strip that all
    # said aborted.
    aborted = observed.outcomes.get(revision) == "aborted"
    if held:
        return (
            f"{'abort' if aborted else 'rollback'} of {revision} held: "
            f"{_held_line(state, observed)}. "
            "Change the Deployment or run `canary retry` to try again"
        )
    return (
        f"revision {revision} was {'aborted' if aborted else 'rolled back'}; serving "
        f"{state.stable_revision}. Change the Deployment or run `canary retry` to try again"
    )


def _held_line(state: State, observed: Observed) -> str:
    """What serves while the Service is held on both twins (_back_on_stable):
    the other twin's pods, not the stable revision, which has no ready pod.
    Said as "serving r1", on-call looked for a failure in r1 while the
    rolled-back release's pods took every request."""
    assert state.stable is not None
    idle = other(state.stable)
    return (
        f"the {state.stable} twin ({state.stable_revision}) has no ready pod, so the {idle} "
        f"twin's pods ({observed.twin(idle).revision}) still serve until it has one"
    )


def _holds_serving(draft: Draft, observed: Observed, held: bool, set_back: bool) -> None:
    """The Deployment holds the serving revision. If it held the revision
    kept out (a rolled-back or aborted release, or the one an undo took
    out) and was set back (`kubectl rollout undo`, a Git revert), nothing
    is left to keep out, as a rebuilt status has it (rebuild.py) and as
    Argo Rollouts and Flagger go back to Healthy. Kept, the phase read
    RolledBack for good, the status asked for a `canary retry` with nothing
    to roll out, and the release applied again (a new change) stayed out.
    An undo's own target rolled back or aborted (its history entry started
    by the undo: ending._kept_out, manual._kept_out_after_abort) was never
    the Deployment's: the Deployment did not move, and it stays out.
    Nor is our own copy of the stable twin's template into it (a hand-back
    cut short, `set_back` False) the team setting it back: taken for one,
    GitOps self-heal putting Git's template back rolled the release kept
    out out again, with nothing in Git changed."""
    failed = draft.state.failed_revision
    if failed and failed not in observed.undos and set_back:
        draft.set(failed_revision="", undone=False)
        failed = ""
    state = draft.state
    assert state.stable is not None
    if held:
        draft.say(_held_line(state, observed))
    elif failed and failed not in observed.undos:
        draft.say(
            f"serving revision {state.stable_revision} from the {state.stable} twin, whose "
            f"template a hand-back cut short copied into the Deployment; {failed} stays out "
            "until the Deployment changes or `canary retry`"
        )
    elif failed:
        # Said as what serves, not left to an earlier line: after an abort
        # of the undo's promotion that line was the promotion's ("serving
        # revision r1 (undo)") while the revision flipped back to served.
        ended = "aborted" if observed.outcomes.get(failed) == "aborted" else "rolled back"
        draft.say(
            f"the undo to revision {failed} was {ended}; serving revision "
            f"{state.stable_revision} from the {state.stable} twin"
        )
    else:
        draft.say(_serving(state, observed))


def _window_as_edited(draft: Draft, spec: RolloutSpec, observed: Observed) -> None:
    """The old twin kept for an abort goes scale-down-delay after the
    promotion, as the annotation says now: lengthened within the window (on-
    call keeping the abort open while they watch), it kept the length it had
    at the flip, and the old twin went under them. The promotion's time is
    its entry's end in the history (as in ending.already_ended); with no
    entry, the window stays as it was. Only an end that is this promotion's:
    a history deleted within the window gets the serving revision again as
    'adopted', ended then (_record_serving), and an older entry of the same
    revision ended before this rollout began; taken, either moved the
    window (the old twin kept up for as long again)."""
    state = draft.state
    promoted = observed.ended.get(state.stable_revision, 0.0)
    if observed.outcomes.get(state.stable_revision) != "promoted":
        return
    if promoted < state.rollout_started:
        return
    # The history's end is when the shell wrote the record, a moment after
    # the decision that set the window: only an edit moves it (a rewrite for
    # those milliseconds cost a status write per promotion, bench.peers).
    if promoted and abs(promoted + spec.scale_down_delay - state.scale_down_at) > 1.0:
        draft.set(scale_down_at=promoted + spec.scale_down_delay)


def _release_waits(observed: Observed, state: State, revision: str) -> tuple[str, str, bool] | None:
    """(its Event, what the status says, a Warning?) when a release must not
    start: a Deployment of the app paused, or an HPA on the twin it would
    roll out on (placement.canary_autoscaler)."""
    paused = placement.paused_deployment(observed)
    if paused:
        told = f"{paused} (kubectl rollout pause); revision {revision} waits until it is resumed"
        return told, paused, False
    hpa = placement.canary_autoscaler(observed, state.stable)
    if hpa:
        told = (
            f"{placement.autoscaled_canary_text(observed, state, hpa)}. Revision {revision} "
            "waits until then"
        )
        return told, f"HPA {hpa} targets the twin it would roll out on", True
    return None


def _wait_for_a_stable_pod(
    draft: Draft, spec: RolloutSpec, observed: Observed, revision: str, now: float
) -> None:
    """The stable twin has no ready pod (rollout.waking: scaled up from 0,
    made again, drained, crashing): a release waits for one. Started with
    it, a canary pod ready first took every request (a 25 % step, 100 %
    effective), judged on absolute thresholds alone with no baseline, and
    could be promoted before the stable twin ever served: what the wait at
    0 is for. Said as observed: it said "just scaled up from 0, or deleted
    and made again" whatever had happened."""
    state = draft.state
    waited = now - state.woken
    draft.say(
        f"revision {revision} waits for the first ready pod of the stable twin: "
        f"{rollout.no_ready_pod_text(state, observed)}, and a canary pod ready before it "
        f"would take every request; it rolls out then, or {spec.progress_deadline:g}s after "
        "the twin was first seen with none"
    )
    draft.wake_in(spec.progress_deadline - waited + 0.001)


def _serving(state: State, observed: Observed) -> str:
    """What serves in the steady state; nothing, for an app kept at 0 (else
    on-call looking for why requests fail read that all was served)."""
    if state.replicas == 0:
        return (
            f"scaled to 0: revision {state.stable_revision} on the {state.stable} twin runs no "
            f"pod; scale Deployment {observed.deployment} up to serve (kubectl scale)"
        )
    return f"serving revision {state.stable_revision} from the {state.stable} twin"


def _wait_at_zero(draft: Draft, observed: Observed, revision: str) -> None:
    """The team keeps its app at 0 (adopted at 0: a staging app stopped for
    the night). Started, a release ran a canary pod against that 0 (every
    request that came went to it, at any step's weight), or a preview of no
    pod; with no traffic it could only end as no data, rolled back under
    `on-limit: rollback` with its pod left serving for good (a rollback
    waits for a stable pod that never comes). As Flagger halts while the
    primary is at 0, it waits, and goes out through the strategy once the
    app is scaled up (the stable twin first, at its revision)."""
    state = draft.state
    message = (
        f"revision {revision} waits: the app is scaled to 0 (the {state.stable} twin, revision "
        f"{state.stable_revision}, runs no pod), so nothing would serve or measure it; it rolls "
        f"out once Deployment {observed.deployment} is scaled up (kubectl scale)"
    )
    if state.message != message:
        draft.emit("RolloutWaiting", message)
    draft.say(message)
