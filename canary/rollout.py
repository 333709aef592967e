"""A rollout in flight: steps, analysis verdicts, promotion, rollback and
manual actions. Pure functions over a Draft; see decide.py for the order."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from analysis.run import StepResult, no_sample
from analysis.spec import GateKind, OnLimit
from analysis.verdicts import Verdict
from canary.action_text import parse_action, taken
from canary.autoscaling import promotion_size, serving_size
from canary.model import (
    COLORS,
    ApplyPreview,
    ApplyTwin,
    Checked,
    Color,
    Observed,
    Record,
    ScaleTwin,
    SetSelector,
    State,
    Twin,
    other,
)
from canary.plan import Draft
from canary.schedule import (
    confirming,
    counts_young,
    next_fast,
    next_scheduled,
    recheck_delay,
    watched,
    watched_growing,
    watched_standing,
)
from canary.spec import TWIN_LABEL, RolloutSpec, Strategy
from canary.twins import base_selector, both, canary_replicas, effective_weight, only, twin_name

_FRESH_ROLLOUT = {
    "recheck": False,
    "gate_wait": "",
    "gate_checked": 0.0,
    "gate_reason": "",
    "step": 0,
    "step_ready": 0.0,
    "checked": 0.0,
    "window_start": 0.0,
    "failed": 0,
    "no_data": 0,
    "errors": 0,
    "promoting": False,
    "promote_to": 0,
    "halted": "",
    "halt_kind": "",
    "requested_weight": 0,
    "effective_weight": 0.0,
    "canary_pods": "",
    "fast_failed": 0.0,
    "failed_sample": 0.0,
    "fast_checked": 0.0,
    "looked": 0.0,
    "look_error": "",
    "probed": 0.0,
    "probe_from": 0.0,
    "quiet_from": 0.0,
    "lagging_since": 0.0,
    "lag_from": 0.0,
    "suspected": "",
    "still_since": 0.0,
    "deadline_from": 0.0,
    "unready_since": 0.0,
    "flip_waits": 0.0,
    "promote_by": "",
}


def stages(spec: RolloutSpec) -> tuple[int, ...]:
    """Live traffic weights per step; blue-green has one step with the new
    twin on the preview Service only."""
    return spec.steps if spec.strategy is Strategy.CANARY else (0,)


def _newer_scrape(checked: Checked, state: State, observed: Observed) -> bool:
    """`checked` read a later scrape than the failing check of `fast_failed`
    did: their newest samples of the canary about an interval apart (several
    pods at offsets of their own step by less; it waits for the same pod's
    next). When either is not known, the times their queries went out: not
    by which landing each follows, since the timing is learned on the stable
    twin's pods and the canary's own pods may be scraped at another offset,
    where two looks closer than an interval can see the same sample. Those
    times alone took a failing look whose queries went out late (queued
    behind other Services' checks; a retry waiting for its scrape to land)
    for one closer to the next than it was, and the next scrape's look for
    the same scrape: a rollback a scrape later."""
    interval = 0.9 * observed.scrape_interval
    if checked.result.newest and state.failed_sample:
        return checked.result.newest - state.failed_sample >= interval
    return checked.at - state.fast_failed >= interval


def _wake_for_next_scrape(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> None:
    young = counts_young(spec, draft.state)
    due = next_fast(draft.state, observed.scrape_interval, observed.scrape_phase, young)
    draft.wake_in(due - now)


def _wait_for_gate(draft: Draft, spec: RolloutSpec, kind: GateKind) -> bool:
    """Stop before a transition if gates of this kind exist; True if waiting."""
    if not spec.analysis.gates_on(kind):
        return False
    draft.set(gate_wait=str(kind), gate_checked=0.0, gate_reason="")
    draft.say(f"asking the {kind} gates")
    draft.wake_in(0.0)
    return True


def _through_gate(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> bool:
    """True when the gate the rollout waits on has opened (and is now cleared)."""
    state = draft.state
    answer = observed.gate
    if (
        answer is not None
        and answer.asked
        and answer.asked != spec.analysis.gates_on(GateKind(state.gate_wait))
    ):
        # The gate was edited while it was asked (a URL or a gate replaced):
        # the old one's "open" must not pass the new one. Asked again now.
        draft.set(gate_checked=0.0)
        draft.say(f"{state.gate_wait} gates edited while asked: asking them again")
        draft.wake_in(0.0)
        return False
    if answer is None or answer.kind != state.gate_wait:
        due = state.gate_checked + spec.interval if state.gate_checked else now
        draft.wake_in(due - now)
        return False
    if answer.open:
        draft.set(gate_wait="", gate_checked=0.0, gate_reason="")
        draft.emit(
            "GateOpened",
            f"revision {state.canary_revision}: {state.gate_wait} gate open ({answer.reason})",
        )
        return True
    if state.gate_reason != answer.reason:
        draft.emit(
            "GateClosed",
            f"revision {state.canary_revision}: {state.gate_wait} gate "
            f"closed: {answer.reason}; asking again every {spec.interval:g}s",
            warning=True,
        )
    draft.set(gate_checked=now, gate_reason=answer.reason)
    draft.say(f"{state.gate_wait} gate closed: {answer.reason}")
    draft.wake_in(spec.interval)
    return False


def _fresh(twin: Twin, revision: str) -> bool:
    """No pod of `revision` serves in the twin yet: every pod of that
    revision's ReplicaSet will be new (pods of another revision are not in
    the analysis's pod regex anyway)."""
    return twin.revision != revision or (twin.ready == 0 and twin.endpoints == 0)


def start(
    draft: Draft, spec: RolloutSpec, observed: Observed, now: float, revision: str = ""
) -> None:
    """Roll out the source's revision, or an older one from the history (undo)."""
    state = draft.state
    assert state.stable is not None
    revision = revision or observed.source.revision
    color = other(state.stable)
    # A canary replaced mid-rollout (a new release, an undo) leaves the
    # Service below: the stable twin takes its share first (before, a hotfix
    # at a 50 % step put the load of 16 pods on the stable twin's 8).
    _take_the_load_back(draft, observed)
    state = draft.state
    assert state.stable is not None
    draft.set(
        canary=color,
        canary_revision=revision,
        rollout_started=now,
        step_started=now,
        fresh_pods=_fresh(observed.twin(color), revision),
        failed_revision="",
        undone=False,
        source_paused=False,
        scale_down=None,
        scale_down_at=0.0,
        previous_revision="",
        **_FRESH_ROLLOUT,
    )
    images = ", ".join(observed.source.images) if revision == observed.source.revision else "undo"
    plan = (
        f"steps {','.join(map(str, spec.steps))}%"
        if spec.strategy is Strategy.CANARY
        else f"blue-green via {spec.preview_service}"
    )
    base = base_selector(observed.selector)
    if draft.selector != only(base, state.stable):
        # A canary replaced mid-rollout (a new release, an undo) stops serving
        # now, not once the new one's step begins: that may wait on a pause
        # or a gate, and nothing analyses the old one any more.
        draft.do(SetSelector(only(base, state.stable)))
    # A `canary pause` outlives the rollout it was asked on (a rollback or an
    # abort while paused): said here, or the new release sat Paused at its
    # first step under an Event that said it was rolling out.
    held = (
        "; it waits at its first step for `canary resume` (paused before)" if state.paused else ""
    )
    draft.emit(
        "RolloutStarted",
        f"revision {revision} ({images}) rolling out to the {color} twin: {plan}, "
        f"analysis every {spec.interval:g}s{held}",
    )
    draft.do(Record(revision, "progressing", f"started: {plan}"))
    _wait_for_gate(draft, spec, GateKind.PRE_ROLLOUT)


def progress(
    draft: Draft, spec: RolloutSpec, observed: Observed, analysis: Checked | None, now: float
) -> None:
    if _replaced(draft, spec, observed, now):
        return
    state = draft.state
    if _edited_mid_rollout(draft, spec, observed, now):
        return
    if draft.state.step_ready != state.step_ready:
        analysis = None  # taken on the step before the edit: judged afresh instead
    _note_look(draft, analysis)
    _follow_lag(draft, observed, now)
    if _source_paused(draft, spec, observed, analysis, now):
        return
    state = draft.state
    if state.halted:
        _while_halted(draft, spec, observed, analysis, now)
        return
    if state.paused or spec.paused:
        draft.say(f"paused at step {state.step + 1}/{len(stages(spec))}")
        _pods_while_paused(draft, spec, observed, now)
        _hold(draft, spec, observed, analysis, now)
        return
    if state.gate_wait:
        waited_for = GateKind(state.gate_wait)
        if not _past_gate(draft, spec, observed, analysis, now):
            return
        _move_again(draft, now)
        if waited_for in (GateKind.PRE_STEP, GateKind.PRE_PROMOTION):
            _passed(draft, spec, observed, now, asked=waited_for)
            return
    _move_again(draft, now)
    state = draft.state
    if state.promoting:
        _keep_promoting(draft, spec, observed, analysis, now)
        return
    if not _step_ready(draft, spec, observed, now):
        _look_while_unready(draft, spec, observed, analysis, now)
        return
    if analysis is not None and analysis.kind in ("fast", "scheduled"):
        _judge_check(draft, spec, observed, analysis, now)
        return
    _await_analysis(draft, spec, observed, now)


def _look_while_unready(
    draft: Draft, spec: RolloutSpec, observed: Observed, analysis: Checked | None, now: float
) -> None:
    """The step is not at its weight, and canary pods may serve: the step
    served and has lost a pod since (a crash is what bad releases do), or
    a later step waits for its extra pods (see _look_while_growing)."""
    if _look_while_growing(draft, spec, observed, analysis, now):
        return
    if _failed_while_serving(draft, analysis):
        # A failure measured on the step's pods while they served counts
        # though one has gone since: dropped, nothing was analysed again
        # until the pod came back or the progress deadline rolled back,
        # minutes later, for the wrong reason. A scheduled pass taken then
        # decides nothing; a fast look only ever fails.
        assert analysis is not None
        if analysis.kind != "fast":
            _judge_check(draft, spec, observed, analysis, now)
            return
        draft.judged = True
        _judge_fast(draft, spec, observed, analysis, now, standing=True)
    state = draft.state
    if state.canary is not None and state.unready_since and spec.analysis.fast_metrics:
        # The pods that still serve are looked at every scrape.
        _wake_for_next_scrape(draft, spec, observed, now)


def _failed_while_serving(draft: Draft, analysis: Checked | None) -> bool:
    """A check on a step that served and has lost a pod since still counts
    if it can only fail: a failure (a scheduled one), or a fast look, which
    never passes a step (it confirms or clears a suspicion)."""
    state = draft.state
    return (
        analysis is not None
        and (
            analysis.kind == "fast"
            or (analysis.kind == "scheduled" and analysis.result.verdict is Verdict.FAIL)
        )
        and state.canary is not None  # not rolled back already (the deadline)
        and bool(state.step_ready)  # the step served: the check measured its pods
        and analysis.at >= state.step_ready
    )


def _keep_promoting(
    draft: Draft, spec: RolloutSpec, observed: Observed, analysis: Checked | None, now: float
) -> None:
    # Until the flip the canary serves, growing: its failures are looked at
    # first, so one confirmed now rolls back instead of being promoted.
    _look_while_standing(draft, spec, observed, analysis, now)
    if draft.state.canary is not None:
        _promote(draft, spec, observed, now)


def _past_gate(
    draft: Draft, spec: RolloutSpec, observed: Observed, analysis: Checked | None, now: float
) -> bool:
    """True when the gate the rollout waits on has opened. Failures are
    looked at first: one counted past the limit ends the rollout, one within
    it takes back the pass the gate waited on (see _look_while_standing),
    and a failing scrape waiting to be confirmed by the next one holds even
    an open gate, as no scheduled check passes a step then (before, the
    gate moved on and the next step's start forgot the suspicion; the gate
    is asked again)."""
    _look_while_standing(draft, spec, observed, analysis, now)
    state = draft.state
    if state.canary is None or not state.gate_wait:
        return False
    if _halted_by_a_look(draft):
        _stand_still(draft, now)
        return False
    if _suspicion_holds(draft, spec):
        _answer_held(draft, spec, observed, now)
        _stand_still(draft, now)
        return False
    if not spec.analysis.gates_on(GateKind(state.gate_wait)):
        # Removed from the spec while waited on: nothing is left to ask, so
        # it is open, but only past the looks above, as an open gate is.
        # Skipped before them, the step's weight went up (or the canary grew
        # to full size for the flip) over a failing scrape not yet confirmed.
        draft.set(gate_wait="", gate_checked=0.0, gate_reason="")
        return True
    if _unlooked(draft, spec, observed, now) or not _through_gate(draft, spec, observed, now):
        _stand_still(draft, now)
        return False
    return True


def _answer_held(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> None:
    """An answer of the gate waited on came while a failing scrape waits
    to be confirmed: it moves nothing now, and the gate is asked again an
    interval later, as over a look missing (_unlooked). Dropped with the
    time of asking left as it was, the gate was due again at once: each
    answer woke the Service, which asked again, a POST every few
    milliseconds for as long as the suspicion held (a scrape; for good
    while looks have too few requests to tell). A gate edited since it was
    asked is asked again at once (_through_gate)."""
    answer, state = observed.gate, draft.state
    if answer is None or answer.kind != state.gate_wait:
        return
    if answer.asked and answer.asked != spec.analysis.gates_on(GateKind(state.gate_wait)):
        draft.set(gate_checked=0.0)
        return
    draft.set(gate_checked=now)


def _note_look(draft: Draft, analysis: Checked | None) -> None:
    """Prometheus answered about the canary's traffic up to `analysis.at`
    (see _unlooked). A fast look with too few requests in the newest scrape
    counts (traffic that low is judged no better by a healthy Prometheus); a
    scheduled check's no-data may be data that stopped (_newest_sample in
    analysis/run.py). One that read nothing leaves its error for the waits
    to say (look_error): a fast look's is recorded nowhere else."""
    if analysis is None:
        return
    verdict = analysis.result.verdict
    if analysis.kind == "fast":
        # A look that found no sample of the canary at all (not scraped,
        # thrashing, not taken in yet) read nothing: counted, a promotion
        # once flipped over a canary no one could see.
        read = verdict is not Verdict.ERROR and not no_sample(analysis.result)
    else:
        read = verdict in (Verdict.PASS, Verdict.FAIL)
    if read:
        draft.set(looked=max(draft.state.looked, analysis.at), look_error="")
    elif analysis.at >= draft.state.looked:
        error = analysis.result.reason
        if verdict is not Verdict.ERROR and no_sample(analysis.result):
            error = "no sample of the canary's requests in its window"
        draft.set(look_error=error[:LOOK_ERROR_CHARS])


# The annotation holds the status on-call reads: a long error (a query's
# text, several metrics' errors) is cut there; the timeline has it whole.
LOOK_ERROR_CHARS = 300


def _last_look(state: State) -> str:
    """What the newest check that read nothing found, for a wait's message."""
    return f"; last look: {state.look_error}" if state.look_error else ""


def _unlooked(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> bool:
    """An open gate moves on only over what a look has read: standing at it,
    fast looks watch the canary, but while Prometheus fails each look errors
    and they pause an interval, again and again. Before, a gate opening then
    advanced or promoted with no look at the canary for minutes, over
    whatever it did meanwhile. Over more than two scrapes unread, the answer
    waits: the next look is asked for at once, the gate again an interval
    later (neither floods a Prometheus or a webhook in trouble)."""
    state, answer = draft.state, observed.gate
    if answer is None or not answer.open or answer.kind != state.gate_wait:
        return False
    since = _unread(spec, state, observed, now)
    if not since:
        return False
    scrape = observed.scrape_interval
    draft.set(gate_checked=now, fast_checked=min(state.fast_checked, now - scrape))
    draft.say(
        f"{state.gate_wait} gate open, but no check has read the canary {_unread_since(state)} "
        "(Prometheus failing, or the canary's pods not scraped?): looking before moving on"
        + _last_look(state)
    )
    draft.wake_in(next_fast(draft.state, scrape, observed.scrape_phase) - now)
    return True


def _halted_by_a_look(draft: Draft) -> bool:
    """A look in this very cycle found a query invalid (_judge halts): the
    backend's answer read nothing, and no look comes while halted
    (watched_standing), so _unread has nothing to wait for. Nothing moves on
    over it, neither an open gate nor the automatic flip: before, that cycle
    advanced the step, started the promotion or flipped right after its
    InvalidSpec Event. The next cycles hold it (_while_halted), and a gate
    is not asked while halted (schedule.gate_due)."""
    halted = draft.state.halted
    if not halted:
        return False
    draft.say(f"halted: {halted}. Run `canary promote`, `abort` or `retry`")
    return True


def _suspicion_holds(draft: Draft, spec: RolloutSpec) -> bool:
    """A failing scrape waits to be confirmed or cleared by the next look,
    which the rollout, standing still, will take. When no look will come (a
    blue-green preview is not looked at while it stands; no metric is
    checked fast since an edit), the suspicion is dropped instead: held, it
    held the flip or the gate for good, with nothing left to clear it."""
    state = draft.state
    if not state.fast_failed:
        return False
    if watched(state) and spec.analysis.fast_metrics:
        return True
    draft.set(fast_failed=0.0, suspected="")
    return False


def _hold(
    draft: Draft, spec: RolloutSpec, observed: Observed, analysis: Checked | None, now: float
) -> None:
    """Paused or at a closed gate: the step holds, and its failures are still looked at."""
    _stand_still(draft, now)
    _look_while_standing(draft, spec, observed, analysis, now)


def _look_while_standing(
    draft: Draft, spec: RolloutSpec, observed: Observed, analysis: Checked | None, now: float
) -> None:
    """The rollout stands still (see watched_standing): a look that can only
    fail is judged as while moving (two failing scrapes count, past the
    limit it rolls back), and the next one is asked for. A failure it counts
    within the limit takes back the pass a gate was waiting to act on: the
    step is judged again, and the gate asked after that."""
    state = draft.state
    if _look_while_growing(draft, spec, observed, analysis, now):
        return
    if state.canary is None or not watched_standing(state):
        return
    if _failed_while_serving(draft, analysis):
        assert analysis is not None
        failed = state.failed
        draft.judged = True
        if analysis.kind == "fast":
            _judge_fast(draft, spec, observed, analysis, now, standing=True)
        else:
            _judge(draft, spec, observed, analysis.result, analysis.at)
        state = draft.state
        if state.canary is None:
            return
        if state.failed > failed and state.gate_wait in (GateKind.PRE_STEP, GateKind.PRE_PROMOTION):
            draft.set(gate_wait="", gate_checked=0.0, gate_reason="")
    if spec.analysis.fast_metrics:
        due = next_fast(draft.state, observed.scrape_interval, observed.scrape_phase)
        draft.wake_in(due - now)


def _look_while_growing(
    draft: Draft, spec: RolloutSpec, observed: Observed, analysis: Checked | None, now: float
) -> bool:
    """The step waits for its extra pods while the canary serves at the
    weight before (see watched_growing), moving or standing still: a fast
    look, which can only fail, is judged as while the step serves (two
    failing scrapes count, past the limit it rolls back), and the next one
    is asked for. True when the rollout is in that wait."""
    state = draft.state
    if not watched_growing(state):
        return False
    if analysis is not None and analysis.kind == "fast":
        draft.judged = True
        _judge_fast(draft, spec, observed, analysis, now, standing=True)
    if draft.state.canary is not None and spec.analysis.fast_metrics:
        _wake_for_next_scrape(draft, spec, observed, now)
    return True


def _judge_check(
    draft: Draft, spec: RolloutSpec, observed: Observed, analysis: Checked, now: float
) -> None:
    """The step serves at its weight: this check decides (and so is a record)."""
    draft.judged = True
    if analysis.kind == "fast":
        _judge_fast(draft, spec, observed, analysis, now)
    else:
        _judge(draft, spec, observed, analysis.result, analysis.at, decided=now)


def _stand_still(draft: Draft, now: float) -> None:
    if not draft.state.still_since:
        draft.set(still_since=now)


def _move_again(draft: Draft, now: float) -> None:
    """Paused or at a gate, the step's pods may not even have been asked for
    (a pre-rollout gate, a pause right after a release): the time stood
    still does not count against the progress deadline, as a paused
    Deployment's does not."""
    state = draft.state
    if state.still_since:
        basis = _deadline_basis(state)
        draft.set(deadline_from=basis + now - max(state.still_since, basis), still_since=0.0)


# A lag of the Deployment controller shorter than this is its ordinary pace
# after each write of ours: it neither holds the deadline nor moves it.
LAG_S = 5.0


def _follow_lag(draft: Draft, observed: Observed, now: float) -> None:
    """Since when the Deployment controller has not observed the canary
    twin's spec (kube-controller-manager down or far behind): the pods the
    step asked for are not even asked of the cluster yet. Once it has, the
    time it lagged does not count against the progress deadline, as a
    pause's does not (_not_ready_yet holds the deadline meanwhile)."""
    state = draft.state
    canary = observed.twin(state.canary)
    since = state.lagging_since or state.lag_from
    if (canary.exists and canary.unobserved) or _growing(state, observed):
        if not since:
            draft.set(lagging_since=now)
        elif since != state.lagging_since:
            draft.set(lagging_since=since)  # taken up again after a restart
        if since and not state.lag_from and now - since > LAG_S:
            draft.set(lag_from=since)
        return
    if since:
        basis = _deadline_basis(state)
        lag = min(now - since, now - basis)
        draft.set(lagging_since=0.0, lag_from=0.0)
        if lag > LAG_S:
            draft.set(deadline_from=basis + lag)
        if state.unready_since >= since:
            # The canary went short with the lag (the app grew: its new pods
            # waited for the cluster as the stable twin's did): short from
            # here on is its own doing. Kept at the loss, the stable twin's
            # pods ready first ended the growth (scaled_from) before the
            # canary's, and _back_at_weight started the step's window again
            # at each growth, as if a pod had been lost all along.
            draft.set(unready_since=now)


def _growing(state: State, observed: Observed) -> bool:
    """The app was just scaled up (the team, its HPA) and the stable twin
    still lacks ready pods of its new size: both twins' new pods wait for the
    same cluster (nodes being added), so the canary's missing ones say
    nothing of the release. Rolled back at the deadline, a good release was
    kept out until someone retried it (found by review); the time it grows
    is credited as a lagging controller-manager's is (_follow_lag)."""
    if not state.scaled_from or state.stable is None or state.canary is None:
        return False
    stable = observed.twin(state.stable)
    if max(stable.ready, stable.ready_mixed) >= state.replicas:
        return False
    # Only the pods the growth added are waited for: a canary short of the
    # pods it had at the old size (crashing, refused) is the release's doing.
    weight = state.requested_weight
    stepped = 0 < weight < 100 and not state.promoting
    before = canary_replicas(state.scaled_from, weight) if stepped else state.scaled_from
    after = canary_replicas(state.replicas, weight) if stepped else state.replicas
    canary = observed.twin(state.canary)
    return before <= max(canary.ready, canary.ready_mixed) < after


def _lag_text(state: State, observed: Observed, now: float) -> str:
    """Why the deadline waits, while the Deployment controller lags or the
    app grows ("" when neither, or only for a moment)."""
    if not state.lagging_since or now - state.lagging_since <= LAG_S:
        return ""
    assert state.canary is not None and state.stable is not None
    if _growing(state, observed):
        stable = observed.twin(state.stable)
        return (
            f"; the app grows from {state.scaled_from} to {state.replicas} pods and the "
            f"{state.stable} twin (stable) has {max(stable.ready, stable.ready_mixed)} ready "
            f"since {_clock(state.lagging_since)}: the cluster has no room yet for either "
            "twin's new pods, so the progress deadline waits for it"
        )
    return (
        f"; the Deployment controller has not observed Deployment "
        f"{twin_name(observed.deployment, state.canary)} since {_clock(state.lagging_since)} "
        "(kube-controller-manager down or far behind?): the progress deadline waits for it"
    )


def _deadline_basis(state: State) -> float:
    return max(state.step_started, state.deadline_from, state.unready_since)


def paused_deployment(observed: Observed) -> str:
    """ "Deployment <name> is paused by <who>" for the first of the app's
    Deployments someone paused with `kubectl rollout pause`: the team's, or a
    twin (on-call pausing the twin whose pods misbehave means to stop the
    rollout; and a paused twin never rolls a new template out, so a step or
    a put-back on it would wait for pods that never come). "" when none."""
    named = [(observed.deployment, observed.source.paused_by, observed.source.paused)]
    for color in COLORS:
        twin = observed.twin(color)
        named.append((twin_name(observed.deployment, color), twin.paused_by, bool(twin.paused_by)))
    for name, by, paused in named:
        if paused:
            who = f" by {by}" if by and by != "someone" else ""
            return f"Deployment {name} is paused{who}"
    return ""


def canary_autoscaler(observed: Observed, stable: Color | None) -> str:
    """An HPA (not our copy) that targets the twin that is not stable: the
    canary's, or the one the next rollout makes its canary. Left there after
    a load spike (`kubectl autoscale deployment web-blue` on the twin that
    served then; idle at 0 after the promotion, it wakes when a rollout
    scales that twin up), it sizes the canary against its steps: an
    unanalysed release serving more than its weight, and a fight with every
    scale of ours. "" when none."""
    if stable is None:
        return ""
    return dict(observed.autoscaler.on_twins).get(other(stable), "")


def autoscaled_canary_text(observed: Observed, state: State, hpa: str) -> str:
    assert state.stable is not None
    return (
        f"HPA {hpa} targets the {other(state.stable)} twin itself, which is the canary's: "
        f"it would size the canary against its steps' weights, unanalysed. Delete it, or "
        f"point it at Deployment {observed.deployment} (canary copies that one onto the "
        "twin that serves)"
    )


def _source_paused(
    draft: Draft, spec: RolloutSpec, observed: Observed, analysis: Checked | None, now: float
) -> bool:
    """`kubectl rollout pause` on the team's Deployment (or a twin) holds the
    rollout where it is, as it would hold the Deployment's own rollout (its
    failures still looked at); resuming continues."""
    state = draft.state
    paused = paused_deployment(observed)
    # Not a promotion's: the twin it grows becomes the stable one, whose
    # HPA is followed (decide._stable_scaled_by_hand).
    hpa = "" if state.promoting else canary_autoscaler(observed, state.stable)
    if paused or hpa:
        if not state.source_paused and paused:
            draft.emit(
                "RolloutPaused",
                f"{paused} (kubectl rollout pause); revision {state.canary_revision} holds "
                "at its step until it is resumed",
            )
        elif not state.source_paused:
            draft.emit(
                "RolloutPaused",
                f"{autoscaled_canary_text(observed, state, hpa)}. Revision "
                f"{state.canary_revision} holds at its step until then, out of the Service "
                "(unless its pods are all the Service has: the stable twin has no ready pod)",
                warning=True,
            )
        draft.set(source_paused=True)
        draft.say(f"paused: {paused}" if paused else f"paused: HPA {hpa} targets the canary twin")
        _look_while_standing(draft, spec, observed, analysis, now)
        return True
    if state.source_paused and state.promoting:
        # A promotion has no step window to restart, and no placement that
        # would set step_ready again: cleared, its failures went unlooked-at
        # until the flip (see watched_standing).
        draft.set(source_paused=False, step_started=now)
        draft.emit(
            "RolloutResumed",
            f"nothing holds the app's Deployments any more; the promotion of revision "
            f"{state.canary_revision} goes on",
        )
    elif state.source_paused:
        draft.set(source_paused=False, checked=0.0, step_ready=0.0, step_started=now)
        if state.gate_wait in (GateKind.PRE_STEP, GateKind.PRE_PROMOTION):
            # The step is judged afresh: a gate that waited to act on the
            # pass from before the hold (an HPA's held the canary out of the
            # Service) would move on with no check since, as after a retry.
            draft.set(gate_wait="", gate_checked=0.0, gate_reason="")
        draft.emit(
            "RolloutResumed",
            f"nothing holds the app's Deployments any more; revision {state.canary_revision} "
            "goes on, its step analysed afresh",
        )
    return False


def _while_halted(
    draft: Draft, spec: RolloutSpec, observed: Observed, analysis: Checked | None, now: float
) -> None:
    if draft.state.halt_kind == "errors":
        _probe(draft, spec, observed, analysis, now)
    else:
        draft.say(f"halted: {draft.state.halted}. Run `canary promote`, `abort` or `retry`")
        _look_while_standing(draft, spec, observed, analysis, now)


def _probe(
    draft: Draft, spec: RolloutSpec, observed: Observed, analysis: Checked | None, now: float
) -> None:
    """Halted only because queries failed: that is Prometheus's fault, not the
    release's. Ask again every interval; once queries work, resume with a
    fresh window (the old one spans the outage). A probe that finds the
    canary failing is a check like any other: resumed without counting it,
    a bad release served at its weight for one more interval before the
    first check on the fresh window could fail it."""
    state = draft.state
    halted = f"halted: {state.halted}; "
    if analysis is None or analysis.kind != "probe":
        if not state.message.startswith(halted):
            # Kept otherwise: what the last probe found. Said again between
            # probes, the message flipped every cycle (a status write every
            # 5 s for as long as Prometheus was down).
            draft.say(f"{halted}checking Prometheus again every {spec.interval:g}s")
        draft.wake_in(max(max(state.checked, state.probed) + spec.interval - now, 0.0))
        return
    draft.judged = True
    if analysis.result.verdict is Verdict.ERROR:
        # When it was probed is volatile (`probed`, not `checked`): written,
        # each probe of an outage was a status write per halted Service.
        draft.set(probed=analysis.at)
        draft.say(
            f"{halted}Prometheus still fails: {analysis.result.reason}; "
            f"checking again every {spec.interval:g}s"
        )
        draft.wake_in(spec.interval)
        return
    if analysis.result.verdict is not Verdict.FAIL and answered_late(observed, analysis.at, now):
        # Prometheus answers, but too late to cover what the canary does by
        # the time it is read: resumed, the next pass would halt it again
        # (halted, resumed, halted for as long as it stays slow). It has read
        # up to `at`: the next probe starts there. Kept at the window's
        # start, each probe asked for the whole halt again, more samples
        # every interval for a Prometheus already too slow: never in time.
        # Both volatile, and a message that does not count the seconds: each
        # probe wrote the status (a write per interval per halted Service
        # for as long as Prometheus stayed slow).
        draft.set(probed=now, probe_from=analysis.at)
        draft.say(
            f"halted: {state.halted}; Prometheus answers, but more than two scrapes "
            f"({2 * observed.scrape_interval:g}s) after the data it judges"
        )
        draft.wake_in(spec.interval)
        return
    draft.set(
        halted="",
        halt_kind="",
        errors=0,
        no_data=0,
        recheck=False,
        checked=analysis.at,
        window_start=analysis.at,
        fast_failed=0.0,
        fast_checked=analysis.at,
        probe_from=0.0,
    )
    draft.emit(
        "RolloutResumed",
        f"revision {state.canary_revision}: queries succeed again; the step goes on with a "
        "fresh analysis window",
    )
    draft.wake_in(spec.interval)
    if analysis.result.verdict is Verdict.FAIL:
        _judge(draft, spec, observed, analysis.result, analysis.at)


def _await_analysis(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> None:
    """The step serves at its weight: come back when its next check is due."""
    state = draft.state
    scrape = observed.scrape_interval
    due = next_scheduled(spec, state, scrape, observed.scrape_phase)
    if spec.analysis.fast_metrics:
        young = counts_young(spec, state)
        fast = next_fast(state, scrape, observed.scrape_phase, young)
        due = fast if confirming(spec, state) else min(due, fast)
    if state.checked < state.step_ready:
        draft.say(
            f"step {state.step + 1}/{len(stages(spec))} at {state.requested_weight}% "
            f"({state.effective_weight:g}% effective): analysing"
        )
    draft.wake_in(due - now)


def _desired_canary(spec: RolloutSpec, replicas: int, step: int) -> tuple[int, int]:
    """(weight, canary replicas) for a step."""
    weight = stages(spec)[step]
    if spec.strategy is Strategy.BLUE_GREEN:
        return 0, replicas
    return weight, canary_replicas(replicas, weight)


def keep_weight(draft: Draft, observed: Observed, blue_green: bool, standing: bool = True) -> None:
    """The canary keeps its step's weight of the app's size whatever the
    rollout is doing: also while it stands still (paused, halted, at a
    gate, its Deployment paused) or its annotations are invalid, when the
    step's own placement does not run. Else a team that scales its app down
    (or its HPA at night) leaves a canary nobody analyses serving more than
    its weight, and a status that says otherwise. A blue-green preview runs
    at the app's size. Needs no spec but the strategy. `standing`: the step's
    placement will not run this cycle, so the effective weight is told here
    (else the placement tells it, from the same observation)."""
    state = draft.state
    if state.canary is None or state.stable is None or state.promoting:
        return
    canary = observed.twin(state.canary)
    if not canary.exists or canary.revision != state.canary_revision:
        return
    if canary_autoscaler(observed, state.stable):
        # Its HPA sizes it (the rollout holds, _source_paused): no fight over
        # its size, and out of the Service, so whatever size it is given no
        # unanalysed pod serves (not while the stable twin has no ready pod).
        stable_only = only(base_selector(observed.selector), state.stable)
        if draft.selector != stable_only and not stable_down(observed, state.stable):
            draft.do(SetSelector(stable_only))
            draft.set(effective_weight=0.0)
        return
    if blue_green:
        want = state.replicas
        stable_only = only(base_selector(observed.selector), state.stable)
        if draft.selector != stable_only and not stable_down(observed, state.stable):
            # The strategy became blue-green while the canary served a step
            # and the rollout stands still (paused, halted): grown to the
            # app's size under a Service that still selected both twins, it
            # took half the traffic, unanalysed, for the whole pause. A
            # blue-green canary serves the preview only: production goes
            # back to the stable twin first, as the step would put it;
            # not while it has no ready pod and the canary's serve alone
            # (the Service would have none): then once it has one.
            draft.do(SetSelector(stable_only))
            draft.set(effective_weight=0.0)
    elif 0 < state.requested_weight < 100:
        want = canary_replicas(state.replicas, state.requested_weight)
        if standing:
            _selector_kept(draft, observed)
            stable = observed.twin(state.stable)
            draft.set(effective_weight=effective_weight(canary.endpoints, stable.endpoints))
    else:
        return
    if draft.replicas[state.canary] != want:
        draft.do(ScaleTwin(state.canary, want))


def _selector_kept(draft: Draft, observed: Observed) -> None:
    """While the rollout stands still no step places the selector: one set
    to the canary twin alone (a hand `kubectl patch`, a sync of a manifest
    exported while that twin was stable) kept our keys, so nothing put it
    back, and every request went to a release analysed at its step's weight
    for as long as the pause, halt or gate lasted (found by review). It goes
    back to what the step had: both twins once the canary serves its step
    (or while the stable twin has no ready pod), else the stable twin."""
    state = draft.state
    assert state.canary is not None and state.stable is not None
    base = base_selector(observed.selector)
    if draft.selector in (both(base, observed.service), only(base, state.stable)):
        return
    down = stable_down(observed, state.stable)
    placed = both(base, observed.service) if state.step_ready or down else only(base, state.stable)
    draft.do(SetSelector(placed))
    on_stable = placed == only(base, state.stable)
    where = f"back on the {state.stable} twin" if on_stable else "back on both twins"
    draft.emit(
        "SelectorRestored",
        f"{observed.selector_manager or 'someone'} set the Service selector to "
        f"{observed.selector} while revision {state.canary_revision} stands at "
        f"{state.requested_weight}% ({_standing_why(draft)}); it is {where}, as the step "
        "had it. Keep spec.selector out of what your tool syncs (see the README, GitOps)",
        warning=True,
    )


def _standing_why(draft: Draft) -> str:
    state = draft.state
    if state.invalid:
        return "its annotations are invalid"
    if state.halted:
        return "halted"
    if state.gate_wait:
        return "waiting at a gate"
    if state.source_paused:
        return "held"
    return "paused"


def _placed(
    draft: Draft, spec: RolloutSpec, observed: Observed, want: int, current: bool
) -> tuple[dict[str, str], int]:
    """The Service selector a step wants, and the canary pods that serve
    what the step analyses (the Service's, or the preview's)."""
    state = draft.state
    assert state.canary is not None and state.stable is not None
    canary = observed.twin(state.canary)
    base = base_selector(observed.selector)
    if spec.strategy is Strategy.CANARY:
        # The Service takes in the canary twin only once every one of its pods
        # runs the new revision: a twin reused from an earlier release must
        # not serve its old pods as if they were the canary. A later step
        # keeps it in while it grows, unless its template was put back after
        # a hand edit (its ReplicaSet forgotten, above): the edited pods go
        # on running until the put-back has rolled, and would serve at the
        # step's weight, analysed by nothing.
        clean = current and canary.updated and canary.ready >= want
        keep = state.step > 0 and bool(state.canary_pods)
        # Out of the Service and bigger than its step (an HPA's size, held
        # out meanwhile): scaled first, taken in once the scale has landed;
        # in the same cycle, its surplus pods served beside the stable twin
        # until the ReplicaSet deleted them.
        oversized = canary.replicas > want and draft.selector == only(base, state.stable)
        live = (
            both(base, observed.service)
            if (clean or keep) and not oversized
            else only(base, state.stable)
        )
        serving = canary.endpoints
    else:
        live = only(base, state.stable)
        if stable_down(observed, state.stable):
            # Production stays where it is (a switch from canary while the
            # canary's pods serve alone): on the stable twin alone it would
            # have no endpoint. It goes there once that twin has a ready pod.
            live = draft.selector
        serving = _previewed(draft, observed)
    return live, serving


def _previewed(draft: Draft, observed: Observed) -> int:
    """The canary's ready endpoints behind the preview, put on the canary
    twin alone if it is not. The preview's endpoints are the canary's only
    while it selects that twin alone: reset by a sync to the app's selector
    (a team's own preview Service, which the README allows) or edited by
    hand, it lists the stable twin's pods. Counted as the canary's, they let
    the flip go on the Deployment's readyReplicas alone, in the very cycle
    that put the preview back (found by review)."""
    state = draft.state
    assert state.canary is not None
    wanted = only(base_selector(observed.selector), state.canary)
    if observed.preview_selector != wanted:
        draft.do(ApplyPreview(wanted))
        return 0
    return observed.preview_endpoints


def _back_at_weight(draft: Draft, observed: Observed, now: float) -> None:
    """The step's pods all serve again after some were lost. Short of pods,
    the step served below its weight (on a first step, not at all: out of
    the Service): its window starts again now, a whole interval at its
    weight. Kept, the check due as the pods came back passed the step on
    the window from its start (found by review: promoted 1 s after a pod
    lost for 8.5 s of a 10 s interval). Failures seen meanwhile still
    count. Not for a blip of up to two scrapes (a readiness probe timing
    out once): Prometheus barely saw it, and a canary whose pods blip more
    often than its interval would never pass a step."""
    lost = draft.state.unready_since
    draft.set(unready_since=0.0)
    if draft.state.scaled_from:
        # Not pods lost but pods added: the app grew (its HPA, the team) and
        # the canary's old pods served on at their share meanwhile. Started
        # again at every growth slower than two scrapes, a step under a
        # ramping load would wait for the ramp to end (found by review).
        return
    if now - lost > 2 * observed.scrape_interval:
        draft.set(window_start=now, checked=now)


def _pods_while_paused(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> None:
    """Paused, the step's placement (_step_ready) does not run, and it is
    what notes a pod lost and back: a canary pod lost for most of an
    interval and back while paused left no trace, and the scheduled check
    due at the resume passed the step at once on the window from its start
    (found by review). The same is noted here from what is observed, and
    nothing is placed: lost, the deadline counts from the loss once resumed
    (_move_again); back, the window starts again (_back_at_weight)."""
    state = draft.state
    if state.canary is None or not state.step_ready or state.promoting:
        return  # a promotion waits for its pods with unready_since of its own (_promote)
    _, want = _desired_canary(spec, state.replicas, state.step)
    canary = observed.twin(state.canary)
    # A canary serves through the Service; a preview's endpoints are not the
    # twin's, and its pods' readiness says as much.
    serving = canary.endpoints if spec.strategy is Strategy.CANARY else canary.ready
    ready = (
        canary.exists
        and canary.revision == state.canary_revision
        and canary.updated
        and min(canary.ready, serving) >= want
    )
    if ready and state.unready_since:
        _back_at_weight(draft, observed, now)
    elif not ready and not state.unready_since:
        draft.set(unready_since=now)


def _step_ready(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> bool:
    """Put the step's replicas and selectors in place; True once the canary
    serves at this step's weight. Past the progress deadline: roll back."""
    state = draft.state
    assert state.canary is not None and state.stable is not None
    weight, want = _desired_canary(spec, state.replicas, state.step)
    canary, stable = observed.twin(state.canary), observed.twin(state.stable)
    base = base_selector(observed.selector)
    if canary.exists and canary.revision == state.canary_revision and canary.edited_by:
        # Pods that are not this revision served under its name: put the
        # template back and judge the step afresh, on its own pods only.
        draft.emit(
            "TwinRestored",
            f"{canary.edited_by} changed the pod template of the {state.canary} twin "
            f"(canary), so its pods were no longer revision {state.canary_revision}; put back, "
            "and the step is analysed again",
            warning=True,
        )
        draft.set(step_ready=0.0, checked=0.0, window_start=0.0, canary_pods="", step_started=now)
        state = draft.state
        canary = replace(canary, exists=False)
    assert state.canary is not None and state.stable is not None
    if not canary.exists or canary.revision != state.canary_revision:
        draft.do(ApplyTwin(state.canary, state.canary_revision, want))
    elif draft.replicas[state.canary] != want:
        draft.do(ScaleTwin(state.canary, want))
    if draft.replicas[state.stable] != state.replicas:
        draft.do(ScaleTwin(state.stable, state.replicas))
    current = canary.exists and canary.revision == state.canary_revision
    live, serving = _placed(draft, spec, observed, want, current)
    if draft.selector != live:
        draft.do(SetSelector(live))
    effective = (
        effective_weight(canary.endpoints, stable.endpoints)
        if weight or live != only(base, state.stable)
        else 0.0
    )
    draft.set(requested_weight=weight, effective_weight=effective)
    # The pods analysis may look at: this revision's ReplicaSet, learned once
    # every endpoint of the twin belongs to it.
    if current and canary.replica_set:
        if state.canary_pods not in ("", canary.replica_set) and state.step_ready:
            # Pods of a new ReplicaSet of the same revision (`kubectl rollout
            # restart` of the twin): the step is judged afresh from when they
            # serve, as at its start, so their warm-up is judged as any
            # step's is, not against a window their predecessors began.
            draft.set(step_ready=0.0, checked=0.0, window_start=0.0, fast_failed=0.0)
            draft.set(suspected="", quiet_from=0.0)
            draft.say(
                f"step {state.step + 1}/{len(stages(spec))}: the {state.canary} twin's pods "
                "were restarted; analysing afresh once they serve"
            )
        draft.set(canary_pods=canary.replica_set)
        state = draft.state
    if stable.exists and stable.revision == state.stable_revision and stable.replica_set:
        draft.set(stable_pods=stable.replica_set)
    ready = current and canary.updated and canary.ready >= want and serving >= want
    if ready:
        if state.unready_since:
            _back_at_weight(draft, observed, now)
        if state.step_ready == 0.0:
            draft.set(
                step_ready=now, window_start=now, fast_failed=0.0, fast_checked=0.0, suspected=""
            )
            if state.step > 0:
                # Later steps are told by the Event that passes them (with the
                # weight they achieved): one Event per step, not two.
                return True
            told = (
                f"revision {state.canary_revision} step {state.step + 1}/{len(stages(spec))}: "
                + (
                    f"weight {weight}% requested, {effective:g}% effective ({want} canary pods)"
                    if weight
                    else f"{want} pods on {spec.preview_service}"
                )
                + f"; analysing for {spec.interval:g}s"
            )
            if spec.strategy is Strategy.CANARY:
                # So is the first: its StepAdvanced names the weight served,
                # and the history (canary timeline) keeps when it began (one
                # write fewer per rollout, #12). A preview is told: people
                # try it by hand before it is promoted.
                draft.note("StepReady", told)
            else:
                draft.emit("StepReady", told)
        return True
    if state.step_ready and not state.unready_since:
        draft.set(unready_since=now)  # it served: the deadline counts from this loss
    pods_ready = current and canary.updated and canary.ready >= want
    if _endpoints_follow_this_write(draft, spec, observed, pods_ready):
        return False
    _not_ready_yet(
        draft,
        spec,
        observed,
        now,
        f"step {state.step + 1}/{len(stages(spec))}: waiting for the canary, "
        f"{min(canary.ready, want)}/{want} pods ready, {min(serving, want)}/{want} endpoints",
    )
    return False


def _endpoints_follow_this_write(
    draft: Draft, spec: RolloutSpec, observed: Observed, pods_ready: bool
) -> bool:
    """The pods are ready and this very decision points the Service (or the
    preview) at them: their endpoints cannot be there yet, whatever the clock
    says, so the deadline is not judged now. (Pods not ready: it is, even in
    a fight over the selector.)"""
    writes = draft.selector != observed.selector or any(
        isinstance(a, ApplyPreview) for a in draft.actions
    )
    if not (pods_ready and writes):
        return False
    state = draft.state
    draft.say(f"step {state.step + 1}/{len(stages(spec))}: waiting for the canary's endpoints")
    draft.wake_in(1.0)
    return True


def _not_ready_yet(
    draft: Draft, spec: RolloutSpec, observed: Observed, now: float, waiting: str
) -> None:
    """Pods are not ready yet: past the progress deadline roll back, else come
    back when the deadline falls (a watch event may wake us sooner)."""
    canary = observed.twin(draft.state.canary)
    if canary.refused:
        # Said where on-call looks (status, the rollback's Event): a pods
        # quota otherwise read as a release whose pods never got ready.
        waiting += f"; its pods are refused: {canary.refused}"
    waited = now - _deadline_basis(draft.state)
    lag = _lag_text(draft.state, observed, now)
    if lag or (canary.unobserved and waited > spec.progress_deadline):
        # Not the release's doing: rolled back now, a good release was kept
        # out until someone retried it. Its time is taken off once it is
        # back (_follow_lag); a watch event on the twin wakes us then.
        draft.say(waiting + lag)
        draft.wake_in(max(spec.progress_deadline - waited, LAG_S) + 0.001)
        return
    if waited > spec.progress_deadline:
        rollback(
            draft,
            observed,
            "ProgressDeadlineExceeded",
            f"{waiting} after {waited:.0f}s (deadline {spec.progress_deadline:g}s)",
        )
        return
    draft.say(waiting)
    draft.wake_in(spec.progress_deadline - waited + 0.001)


def answered_late(observed: Observed, at: float, now: float) -> bool:
    """A check whose data ends at `at`, decided `now`, leaves more than two
    scrapes of the canary's traffic unseen (the shell runs one check at a
    time, so no fast look ran while a slow one was in flight): a failure
    that began just after `at` could have shown in two scrapes, and
    counted, had Prometheus answered in time."""
    return now - at > 2 * observed.scrape_interval


def _judge(
    draft: Draft,
    spec: RolloutSpec,
    observed: Observed,
    result: StepResult,
    now: float,
    decided: float | None = None,
) -> None:
    """`now`: the end of the check's data; `decided`: when it is judged,
    if that can be later (a check that moves the rollout on)."""
    state = draft.state
    step = f"step {state.step + 1}/{len(stages(spec))}"
    analysis = spec.analysis
    if result.invalid:
        draft.set(halted=f"a query is invalid: {result.reason}", halt_kind="invalid", checked=now)
        draft.emit(
            "InvalidSpec",
            f"canary.io/analysis: {result.reason}; fix the query, then `canary retry`",
            warning=True,
        )
        return
    if state.suspected and state.fast_failed and result.verdict is Verdict.PASS:
        # The failure did not last (as a fast check would find): the step
        # still needs a whole interval of passing data from now.
        draft.set(fast_failed=0.0, suspected="", no_data=0, errors=0, checked=now)
        draft.set(window_start=now)
        draft.say(f"{step}: the failure did not last; checking a full interval again")
        draft.wake_in(spec.interval)
        return
    if state.suspected and state.fast_failed:
        # A failing check waits for the next scrape to confirm it. This check
        # is that next look, and it fails too or cannot tell (too few
        # requests, no answer): the failure counts, as without fast checks.
        draft.set(fast_failed=0.0, suspected="")
        failed = state.suspected if result.verdict is not Verdict.FAIL else result.reason
        _failed_check(draft, spec, observed, failed, now, step)
        return
    match result.verdict:
        case Verdict.PASS if state.recheck:
            # The failure did not last. The step still needs one whole
            # interval of passing data before it may advance.
            draft.set(recheck=False, no_data=0, errors=0, checked=now, window_start=now)
            draft.say(f"{step}: re-check passed; checking the full interval again")
            draft.wake_in(spec.interval)
        case Verdict.PASS if decided is not None and answered_late(observed, now, decided):
            _answered_late(draft, spec, observed, now, decided, step)
        case Verdict.PASS:
            draft.set(no_data=0, errors=0, checked=now)
            passed = f"revision {state.canary_revision} passed {step} ({result.reason})"
            last = state.step + 1 >= len(stages(spec))
            kind = GateKind.PRE_PROMOTION if last else GateKind.PRE_STEP
            if _wait_for_gate(draft, spec, kind):
                draft.emit("StepPassed", f"{passed}; asking the {kind} gates")
            else:
                _passed(draft, spec, observed, now, passed=passed)
        case Verdict.FAIL if _confirmable(spec, result):
            # Judged over the whole window, so a blip that is already over
            # may fail it: count it only if the next scrape fails too.
            draft.set(
                fast_failed=state.fast_failed or now,
                failed_sample=state.failed_sample if state.fast_failed else result.newest,
                fast_checked=min(state.fast_checked or now, now),
                checked=now,
                suspected=result.reason,
            )
            draft.say(f"{step}: check failed ({result.reason}); confirming on the next scrape")
            _wake_for_next_scrape(draft, spec, observed, now)
        case Verdict.FAIL:
            _failed_check(draft, spec, observed, result.reason, now, step)
        case Verdict.NO_DATA:
            # The window keeps its start, so requests keep adding up.
            _inconclusive(
                draft,
                spec,
                observed,
                now,
                "no_data",
                analysis.no_data_limit,
                "NoData",
                step,
                "no data yet",
                result.reason,
            )
        case Verdict.ERROR:
            _inconclusive(
                draft,
                spec,
                observed,
                now,
                "errors",
                analysis.error_limit,
                "AnalysisError",
                step,
                "analysis error",
                result.reason,
            )


def _answered_late(
    draft: Draft, spec: RolloutSpec, observed: Observed, at: float, now: float, step: str
) -> None:
    """A pass that came back too late to move the rollout on (answered_late).
    Before, it advanced the step or promoted over whatever the canary did
    since. The window keeps its start, so the next check, an interval from
    now (a slow Prometheus gets no flood), covers that gap too. Prometheus's
    trouble, not the release's: counted with the query errors, and past
    error-limit the rollout halts (whatever on-limit says: a good release is
    never rolled back for it) and resumes by itself once answers come in
    time (_probe)."""
    detail = (
        f"Prometheus answered {now - at:.0f}s after the data it judged, more than two "
        f"scrapes ({2 * observed.scrape_interval:g}s) late: what the canary did since is unseen"
    )
    count = draft.state.errors + 1
    draft.set(errors=count, no_data=0, checked=now, recheck=False)
    draft.wake_in(spec.interval)
    if count <= spec.analysis.error_limit:
        draft.say(f"{step}: passed, but {detail}; checking again")
        return
    draft.set(halted=f"{step}: {detail}", halt_kind="errors")
    draft.say(f"halted: {step}: {detail}; checking Prometheus again every {spec.interval:g}s")
    draft.emit(
        "RolloutHalted",
        f"revision {draft.state.canary_revision} halted, traffic unchanged: {step}: {detail}. "
        "It resumes by itself once Prometheus answers in time; or run `canary promote`, "
        "`abort` or `retry`",
        warning=True,
    )


def _confirmable(spec: RolloutSpec, result: StepResult) -> bool:
    """Whether fast checks can confirm this failure: every failing metric is
    one they look at."""
    fast = {m.name for m in spec.analysis.fast_metrics}
    failing = {
        m.metric for m in result.measurements if m.verdict is Verdict.FAIL and not m.baseline
    }
    return bool(failing) and failing <= fast


def _failed_check(
    draft: Draft, spec: RolloutSpec, observed: Observed, reason: str, at: float, step: str
) -> None:
    """One failed check, scheduled or a confirmed fast one: past the limit
    roll back; within it check again as soon as fresh data can show it."""
    state = draft.state
    failed = state.failed + 1
    draft.set(failed=failed, checked=at, window_start=at, no_data=0, errors=0)
    if failed > spec.failure_limit:
        rollback(draft, observed, "AnalysisFailed", f"{step}: {reason}")
        return
    draft.emit(
        "AnalysisFailed",
        f"revision {state.canary_revision} {step}: "
        f"{reason} (failure {failed} of {spec.failure_limit} tolerated)",
        warning=True,
    )
    delay = recheck_delay(spec, observed.scrape_interval)
    draft.set(recheck=True)
    draft.say(
        f"{step}: check failed ({failed}/{spec.failure_limit} tolerated); re-checking in {delay:g}s"
    )
    draft.wake_in(delay)


def _judge_fast(
    draft: Draft,
    spec: RolloutSpec,
    observed: Observed,
    checked: Checked,
    now: float,
    standing: bool = False,
) -> None:
    """A fast check: the newest scrape only. A failure must show in two
    scrapes in a row to count (one bad scrape is not a rollback): the first
    makes the rollout suspect, each later failing scrape then counts as a
    failed check, with the same record as a scheduled one. A scrape that
    passes clears the suspicion, and if a scheduled check raised it, the
    step starts a whole passing interval again. Nothing else earns anything:
    passing needs the full interval, and no-data or errors are the scheduled
    check's business. After an error, fast checks pause until the next
    scheduled check, so a struggling Prometheus gets no flood."""
    state, result, at = draft.state, checked.result, checked.at
    step = f"step {state.step + 1}/{len(stages(spec))}"
    if result.invalid:
        _judge(draft, spec, observed, result, at)
        return
    if result.verdict is not Verdict.NO_DATA:
        draft.set(quiet_from=0.0)
    elif not state.quiet_from or at >= state.quiet_from + spec.interval:
        draft.set(quiet_from=at)  # (a run longer than an interval starts again)
    if result.verdict is Verdict.FAIL:
        if state.fast_failed and _newer_scrape(checked, state, observed):
            # Counted now; this scrape may begin the next failure, but no
            # scheduled check is waiting on it any more.
            draft.set(fast_failed=at, failed_sample=result.newest, fast_checked=at, suspected="")
            _failed_check(
                draft, spec, observed, result.reason, at, f"{step} (two scrapes in a row)"
            )
            if draft.state.canary is not None:
                _wake_for_next_scrape(draft, spec, observed, now)
            return
        if not state.fast_failed:
            draft.set(fast_failed=at, failed_sample=result.newest)
        draft.set(fast_checked=at)
        draft.say(f"{step}: the latest scrape fails; confirming on the next one")
        _wake_for_next_scrape(draft, spec, observed, now)
        return
    # A scheduled check's failure waiting for this scrape (not one a fast
    # check already counted: `checked` is set then too).
    scheduled = bool(state.fast_failed and state.suspected)
    if scheduled and result.verdict in (Verdict.NO_DATA, Verdict.ERROR):
        # The newest scrape cannot tell (too few requests in it, or no
        # answer): the failing scheduled check counts, as it would without
        # fast checks. Only a clean scrape clears it.
        draft.set(fast_failed=0.0, fast_checked=at, suspected="")
        _failed_check(draft, spec, observed, state.suspected or result.reason, at, step)
        return
    if result.verdict is Verdict.ERROR:
        # Fast looks pause until the next scheduled check, which counts the
        # errors (a failure waiting to be confirmed goes: kept, it would hold
        # the scheduled check back while Prometheus fails, and nothing would
        # count towards error-limit).
        resume = (state.checked or state.step_ready) + spec.interval
        if standing:
            # No scheduled check comes while it stands, and `checked` may be
            # as old as the pause: an interval from this look instead (else
            # the next look was due at once, back to back while it failed).
            resume = at + spec.interval
        draft.set(fast_failed=0.0, fast_checked=resume)
    elif state.fast_failed and result.verdict is Verdict.NO_DATA and standing:
        # Too few requests to confirm or clear it, and no scheduled check
        # comes while it stands: the suspicion stays for a look that can
        # tell (the scrape between told nothing). Dropped, an open gate or a
        # promotion's flip went over a failing scrape nothing had judged.
        draft.set(fast_checked=at)
    elif (
        state.fast_failed
        and result.verdict is Verdict.NO_DATA
        and at < state.fast_failed + spec.interval
    ):
        # Too few requests since the failing scrape to confirm or clear it:
        # the next look reads them with its own (schedule.fast_start), until
        # there are enough to tell.
        draft.set(fast_checked=at)
    elif state.fast_failed and result.verdict is Verdict.NO_DATA:
        # An interval since the failing scrape and still too few requests to
        # tell: the suspicion goes, and the scheduled check (held back while
        # it waited) judges the whole window, as it would without fast checks.
        draft.set(fast_failed=0.0, fast_checked=at)
    elif state.fast_failed and result.verdict is Verdict.PASS:
        draft.set(fast_failed=0.0, fast_checked=at, suspected="")
        if scheduled:
            # A scheduled check failed on a blip that is over: the step still
            # needs one whole interval of passing data from now.
            draft.set(checked=at, window_start=at)
            draft.say(f"{step}: the failure did not last; checking a full interval again")
    else:
        draft.set(fast_checked=at)
    if not standing:  # standing still, no scheduled check comes (the caller wakes)
        _await_analysis(draft, spec, observed, now)


def _inconclusive(
    draft: Draft,
    spec: RolloutSpec,
    observed: Observed,
    now: float,
    counter: str,
    limit: int,
    reason: str,
    step: str,
    label: str,
    detail: str,
) -> None:
    """No-data and errors: counted in a row; past their limit the on-limit
    policy applies, before it the step simply checks again an interval later."""
    count = int(getattr(draft.state, counter)) + 1
    draft.set(**{counter: count}, checked=now, recheck=False)
    if count > limit:
        _limit(draft, spec, observed, reason, f"{step}: {detail}")
        return
    draft.say(f"{step}: {label} ({detail})")
    draft.wake_in(spec.interval)


def _edited_mid_rollout(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> bool:
    """The annotations were edited under a rollout in flight: the step is
    judged afresh if its weight changed (not while promoting: past the last
    step), and a failure-limit lowered below the failures already counted
    rolls back, while promoting too (on-call lowering it to stop a promotion
    that waits for its pods or for a look was promoted; found by review).
    True when it ended."""
    if not draft.state.promoting:
        _steps_edited(draft, spec, observed, now)
    failed = draft.state.failed
    if failed <= spec.failure_limit:
        return False
    rollback(
        draft,
        observed,
        "AnalysisFailed",
        f"failure-limit is now {spec.failure_limit} and {failed} checks of this rollout "
        "have failed",
    )
    return True


def _steps_edited(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> None:
    """`canary.io/steps` (or the strategy) was edited mid-rollout so that the
    step in flight no longer exists, or serves at another weight than the one
    it was analysed at: go on at that step (or the last there is), judged
    afresh from when it serves at its new weight. No weight is promoted on
    analysis of another, and no step left is skipped."""
    state = draft.state
    weights = stages(spec)
    step = min(state.step, len(weights) - 1)
    if step == state.step and (not state.step_ready or state.requested_weight == weights[step]):
        return
    if _held_where_it_serves(spec, state, observed, weights[step]):
        return
    if state.halt_kind == "errors":
        # Halted only because Prometheus failed: the step at its new weight is
        # judged afresh, and halts again if queries still fail.
        draft.set(halted="", halt_kind="", errors=0)
    draft.set(
        step=step,
        step_started=now,
        step_ready=0.0,
        checked=0.0,
        window_start=0.0,
        recheck=False,
        fast_failed=0.0,
        fast_checked=0.0,
        suspected="",
        gate_wait="",
        gate_checked=0.0,
        gate_reason="",
    )
    was = f"step {state.step + 1}" + (
        f" at {state.requested_weight}%" if state.requested_weight else " (blue-green)"
    )
    goes = f"{weights[step]}%" if weights[step] else f"{spec.preview_service} only, blue-green"
    draft.emit(
        "StepsChanged",
        f"revision {state.canary_revision}: the steps were edited mid-rollout; it was at {was} "
        f"and goes on at step {step + 1}/{len(weights)} ({goes}), analysed afresh",
        warning=True,
    )


def _held_where_it_serves(spec: RolloutSpec, state: State, observed: Observed, weight: int) -> bool:
    """Paused (by an action, the annotation or `kubectl rollout pause`) or
    halted for want of data, with the canary in production: the step keeps
    the weight it serves, and its failures are looked at, until the rollout
    moves again; the edit takes effect then (StepsChanged). Applied at once,
    it forgot the step had ever served while nothing could place it anew:
    the canary held its weight with no look at all until the pause ended.
    A switch to blue-green is not held (production goes back to stable)."""
    return (
        weight > 0
        and watched_standing(state)
        and bool(
            state.paused
            or spec.paused
            or state.source_paused
            or bool(paused_deployment(observed))
            or (state.halted and state.halt_kind == "no-data")
        )
    )


def _passed(
    draft: Draft,
    spec: RolloutSpec,
    observed: Observed,
    now: float,
    passed: str = "",
    asked: GateKind | None = None,
) -> None:
    """A step passed (and the gates `asked` opened): on to the next step, or
    promotion after the last. The steps may have been edited while a gate was
    asked: the gates of what comes now are asked first."""
    last = draft.state.step + 1 >= len(stages(spec))
    kind = GateKind.PRE_PROMOTION if last else GateKind.PRE_STEP
    if asked is not None and asked != kind and _wait_for_gate(draft, spec, kind):
        return
    if last:
        _start_promotion(draft, spec, observed, now, passed)
    else:
        _advance(draft, spec, observed, now, passed)


def _advance(
    draft: Draft, spec: RolloutSpec, observed: Observed, now: float, passed: str = ""
) -> None:
    """On to the next step: one Event says what passed and where it goes."""
    state = draft.state
    draft.set(
        step=state.step + 1,
        step_started=now,
        step_ready=0.0,
        checked=0.0,
        window_start=0.0,
        recheck=False,
    )
    served = (
        f" at {state.requested_weight}% ({state.effective_weight:g}% effective)"
        if state.requested_weight
        else ""
    )
    moving = f"served{served}; moving to step {state.step + 2}/{len(stages(spec))}"
    draft.emit(
        "StepAdvanced",
        f"{passed}; {moving}" if passed else f"revision {state.canary_revision} {moving}",
    )
    if _step_ready(draft, spec, observed, now):
        _await_analysis(draft, spec, observed, now)


def _start_promotion(
    draft: Draft, spec: RolloutSpec, observed: Observed, now: float, passed: str = ""
) -> None:
    revision = draft.state.canary_revision
    draft.set(promoting=True, step_started=now)
    _promote(draft, spec, observed, now)
    if draft.state.promoting:  # not flipped in this cycle: say why we wait
        lead = passed or f"revision {revision}"
        draft.emit("PromotionStarted", f"{lead}; promoting once every new pod is a ready endpoint")


def _limit(draft: Draft, spec: RolloutSpec, observed: Observed, reason: str, detail: str) -> None:
    if spec.analysis.on_limit is OnLimit.ROLLBACK:
        rollback(draft, observed, reason, detail)
        return
    kind = "errors" if reason == "AnalysisError" else "no-data"
    draft.set(halted=detail, halt_kind=kind)
    if kind == "errors":
        # Come back to ask Prometheus again: nothing else would wake us.
        draft.say(f"halted: {detail}; checking Prometheus again every {spec.interval:g}s")
        draft.wake_in(spec.interval)
    then = (
        "It resumes by itself once queries succeed again; or run `canary promote`, `abort` "
        "or `retry`"
        if kind == "errors"
        else "Run `canary promote`, `abort` or `retry`"
    )
    draft.emit(
        "RolloutHalted",
        f"revision {draft.state.canary_revision} halted, traffic unchanged: {detail}. {then}",
        warning=True,
    )


def _promote(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> None:
    """Full size first; flip the selector only when every new pod is a ready
    endpoint, so the flip never lands on pods that cannot serve yet."""
    state = draft.state
    assert state.canary is not None and state.stable is not None
    # N, or what both twins serve when autoscaled; then never less than
    # chosen when the promotion began (the HPA may have gone since). At a
    # fixed size N is the team's, and a scale meanwhile is theirs to make.
    replicas = max(promotion_size(state, observed), state.promote_to)
    draft.set(promote_to=replicas if replicas > state.replicas else 0)
    canary = observed.twin(state.canary)
    if canary.exists and canary.revision == state.canary_revision and canary.edited_by:
        # Edited by hand while it grew: its pods are not (all) the revision
        # that passed. Back to the last step, out of traffic until the
        # template is put back, judged afresh on its own pods; flipped once
        # its pods were ready, the edited ones served meanwhile and the pods
        # that came back were never analysed.
        draft.set(promoting=False, promote_to=0, flip_waits=0.0, promote_by="")
        if _step_ready(draft, spec, observed, now):
            _await_analysis(draft, spec, observed, now)
        return
    if not canary.exists or canary.revision != state.canary_revision:
        draft.do(ApplyTwin(state.canary, state.canary_revision, replicas))
        return
    if draft.replicas[state.canary] != replicas:
        draft.do(ScaleTwin(state.canary, replicas))
    base = base_selector(observed.selector)
    if spec.strategy is Strategy.CANARY:
        serving = canary.endpoints
        # Growing to full size under a Service that selects both twins, the
        # canary serves more than its last step's weight until the flip:
        # the status says what it serves (keep_weight skips a promotion).
        stable = observed.twin(state.stable)
        draft.set(effective_weight=effective_weight(canary.endpoints, stable.endpoints))
        if draft.selector != both(base, observed.service):
            draft.do(SetSelector(both(base, observed.service)))
    else:
        # Also when the strategy became blue-green while promoting.
        serving = _previewed(draft, observed)
    if not (canary.updated and canary.ready >= replicas and serving >= replicas):
        if state.flip_waits and not state.unready_since:
            # Every pod was ready and the flip waited for a look: the deadline
            # counts from this loss, not from the promotion's start (else a
            # pod restarting after an hour's wait for Prometheus rolled back
            # a release that had passed every step, at once).
            draft.set(unready_since=now)
        _not_ready_yet(
            draft,
            spec,
            observed,
            now,
            f"promoting: {min(canary.ready, replicas)}/{replicas} pods ready, "
            f"{min(serving, replicas)}/{replicas} endpoints",
        )
        return
    if state.unready_since:
        draft.set(unready_since=0.0)
    if _suspicion_holds(draft, spec):
        # A failing scrape waits for the next one to confirm or clear it:
        # flipped now, all traffic would go to a canary under suspicion.
        draft.say("promoting: a failing scrape waits to be confirmed by the next one")
        return
    if _flip_unlooked(draft, spec, observed, now):
        return
    revision, old, new = state.canary_revision, state.stable, state.canary
    told, blind = _flip_told(state, spec, observed, now)
    # The Event before the flip, so the status rides along with the selector
    # (one Service write fewer per rollout, issue #12). Its record is already
    # in the history (_ends_rollout): a flip cut after the Event is finished
    # by the retry, never decided again. (Taken back once: it seemed to make
    # a flip onto a pod that had just turned unready likelier; the cause was
    # a stale EndpointSlice, which the pods' own readiness now vetoes.)
    kept = (
        f"the {old} twin stays up {spec.scale_down_delay:g}s for a fast abort"
        if spec.scale_down_delay
        else f"the {old} twin scales down once the Service has left it (scale-down-delay 0)"
    )
    draft.emit(
        "Promoted",
        f"revision {revision} promoted: the Service now selects the {new} twin; {kept}{told}",
        warning=blind,
    )
    draft.do(SetSelector(only(base, new)))
    draft.set(
        # The size the new stable twin serves at: an HPA copy not yet in place
        # on it (or gone) must not have it cut back to the old twin's share.
        replicas=replicas,
        stable=state.canary,
        stable_revision=revision,
        stable_pods=state.canary_pods,
        canary=None,
        canary_revision="",
        **_kept_for_abort(spec, old, state.stable_revision, now),
        # After an undo the source still holds the revision undone; it must
        # not roll out again until the team changes the Deployment.
        failed_revision=state.undo_of,
        undone=bool(state.undo_of),
        undo_of="",
        **_FRESH_ROLLOUT,
    )
    draft.set(requested_weight=100, effective_weight=100.0)
    draft.say(f"serving revision {revision} from the {new} twin")
    draft.do(Record(revision, "promoted", "all steps passed"))
    draft.wake_in(spec.scale_down_delay)


def _kept_for_abort(
    spec: RolloutSpec, old: Color | None, revision: str, promoted: float
) -> dict[str, object]:
    """The old twin kept up after a promotion, for `canary abort` to flip
    back to, until scale-down-delay has passed. With no delay there is no
    such window: nothing is kept, and the steady state scales the idle twin
    down once the Service has left it (decide._scale_down_idle), with no
    status write of its own to end a window (one write fewer per rollout,
    issue #12)."""
    if not spec.scale_down_delay:
        return {"scale_down": None, "scale_down_at": 0.0, "previous_revision": ""}
    return {
        "scale_down": old,
        "scale_down_at": promoted + spec.scale_down_delay,
        "previous_revision": revision,
    }


def _unread(spec: RolloutSpec, state: State, observed: Observed, now: float) -> str:
    """How long no check has read the canary, when that is more than two
    scrapes while looks watch it standing ("" otherwise): "for 95s", or
    "since the controller started" (`looked` is volatile). A canary that
    no look watches while it stands (a blue-green preview, no metric checked
    fast) has nothing to wait for, as at a gate (_unlooked)."""
    if not (watched(state) and spec.analysis.fast_metrics):
        return ""
    unread = now - state.looked
    if unread <= 2 * observed.scrape_interval:
        return ""
    return f"for {unread:.0f}s" if state.looked else "since the controller started"


def _unread_since(state: State) -> str:
    """_unread for a status that waits: since when, not for how long. A
    count of seconds changed the message every cycle, a status write every
    5 s (the progress pace) for as long as Prometheus failed, per waiting
    Service."""
    return f"since {_clock(state.looked)}" if state.looked else "since the controller started"


def _clock(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%H:%M:%SZ")


def _flip_unlooked(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> bool:
    """The automatic flip goes only over what a look has read, as an open
    gate does (_unlooked): standing at full size, fast looks watch the
    canary, but while Prometheus fails each look errors and they pause an
    interval, again and again. Before, the flip went ahead over minutes no
    look had read, and a canary that turned bad meanwhile was promoted.
    It waits instead, for as long as Prometheus fails: no error counts
    while the rollout stands (as at a gate or a pause), so nothing rolls a
    release back for Prometheus's fault; the progress deadline does not
    count the wait (see _promote). The first cycle that waits asks for the
    next look at once; after that the looks keep their pace (an interval
    after each error), so a failing Prometheus gets no flood. A person's
    `canary promote` does not wait: they chose to ship (_flip_told)."""
    state = draft.state
    if state.promote_by:
        return False
    if _halted_by_a_look(draft):
        return True
    since = _unread(spec, state, observed, now)
    if not since:
        return False
    scrape = observed.scrape_interval
    if not state.flip_waits:
        draft.set(flip_waits=now, fast_checked=min(state.fast_checked, now - scrape))
    draft.say(
        "promoting: every new pod is ready, but no check has read the canary "
        f"{_unread_since(state)} (Prometheus failing or answering late, or the canary's pods "
        f"not scraped{_last_look(state)}); the flip has waited since "
        f"{_clock(draft.state.flip_waits)} and "
        "goes once a check reads it. `canary promote` flips now, `canary abort` rolls back"
    )
    draft.wake_in(next_fast(draft.state, scrape, observed.scrape_phase) - now)
    return True


def _flip_told(state: State, spec: RolloutSpec, observed: Observed, now: float) -> tuple[str, bool]:
    """What the Promoted Event adds about the looks (how long the automatic
    flip waited for one), and whether it is a Warning: a person's flip over
    a canary no check had read for more than two scrapes, said with how long."""
    told = ""
    if state.flip_waits:
        told = f"; the flip waited {now - state.flip_waits:.0f}s for a check to read the canary"
    since = _unread(spec, state, observed, now)
    blind = bool(state.promote_by and since)
    if blind:
        told += (
            f"; promoted by {state.promote_by} although no check had read the canary {since} "
            "(Prometheus failing or answering late, or the canary's pods not scraped)"
        )
    return told, blind


def already_ended(draft: Draft, spec: RolloutSpec, observed: Observed) -> None:
    """The history records this rollout as ended, but the status still has it
    in flight: the cycle that ended it made its traffic changes and wrote the
    history, then could not write the status (an API server stopping, the
    lease lost), and this cycle read the older status. The history is the
    fact: take its outcome as it is, decide nothing again, record nothing
    again (the steady state keeps traffic where the outcome put it)."""
    state = draft.state
    revision = state.canary_revision
    if state.canary is None or state.stable is None:
        return
    outcome = observed.outcomes.get(revision, "")
    ended = observed.ended.get(revision, 0.0)
    if outcome in ("", "progressing") or not ended or ended < state.rollout_started:
        return
    if outcome == "superseded" and _undo_untaken(draft, observed):
        return  # decided again as it was (manual._undo): its records are in already
    if outcome == "promoted":
        draft.set(
            # The size it was promoted at, as _promote sets it: kept at the
            # old stable's, the next lines scaled the new twin down to that
            # share right before the Service flipped to it (16 pods to 8).
            replicas=max(promotion_size(state, observed), state.promote_to),
            stable=state.canary,
            stable_revision=revision,
            stable_pods=state.canary_pods,
            canary=None,
            canary_revision="",
            **_kept_for_abort(spec, state.stable, state.stable_revision, ended),
            failed_revision=state.undo_of,
            undone=bool(state.undo_of),
            undo_of="",
            **_FRESH_ROLLOUT,
        )
        draft.set(requested_weight=100, effective_weight=100.0)
    else:
        failed = outcome in ("rolled-back", "aborted")
        draft.set(
            canary=None,
            canary_revision="",
            failed_revision=_kept_out(state, failed),
            undo_of="",
            **_FRESH_ROLLOUT,
        )
    taken = _taken_by_the_end(draft, observed, revision, outcome)
    draft.emit(
        "StateRebuilt",
        f"the canary.io/status annotation still had revision {revision} rolling out, but the "
        f"history records it {outcome} (a write after that decision's record did not land: "
        f"a scale, an Event or the status); taken from the history, nothing decided again"
        + (f"; the request {taken!r} was carried out by it" if taken else ""),
        warning=True,
    )


def _undo_untaken(draft: Draft, observed: Observed) -> bool:
    """The end recorded is that of an `undo` still on the Service and not
    taken: its decision recorded this rollout superseded and the undo's
    start (UndoRequested, the target `progressing`) before its traffic
    moved, and was cut before its status. Taken from the history, the undo
    was then judged again with no rollout in flight: one to the serving
    revision was 'already serving' (ActionIgnored), nothing kept the undone
    revision out, and it went out again. Decided again, the undo does what
    it did, recording nothing new (an outcome is never rewritten)."""
    action = observed.action
    state = draft.state
    if not action or action == state.last_action or action in state.taken_actions:
        return False
    verb, _, words = parse_action(action)
    if verb != "undo" or not words or not words[0].isdigit():
        return False
    target = observed.revisions.get(int(words[0]))
    return (
        target is not None
        and target in observed.undos
        and observed.outcomes.get(target) == "progressing"
    )


def _taken_by_the_end(draft: Draft, observed: Observed, revision: str, outcome: str) -> str:
    """The request on the Service that the ended decision carried out, now
    taken (its status, which would say so, is the write that was lost): an
    abort of this revision when the history says aborted, a promote when
    promoted. Judged again it was an ActionIgnored Warning, "nothing was
    done", about the very abort that was done. "" when there is none."""
    action = observed.action
    if not action or action == draft.state.last_action or action in draft.state.taken_actions:
        return ""
    verb, pinned, _ = parse_action(action)
    if {"abort": "aborted", "promote": "promoted"}.get(verb) != outcome:
        return ""
    if pinned and pinned != revision:
        return ""
    draft.set(last_action=action, taken_actions=taken(draft.state.taken_actions, action))
    return action


def _kept_out(state: State, failed: bool) -> str:
    """What stays out once a rollout ends unpromoted: during an undo, the
    revision the source still holds (unless that is what serves: an undo
    away from the stable revision that fails keeps nothing out but itself);
    else the canary, if it failed."""
    if state.undo_of and state.undo_of != state.stable_revision:
        return state.undo_of
    return state.canary_revision if failed else ""


def _replaced(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> bool:
    """The source changed under the rollout: back to the stable revision
    ends it; a new revision starts again from the first step. True when the
    rollout ended."""
    state = draft.state
    assert state.canary is not None and state.stable is not None
    revision = observed.source.revision
    if revision == state.stable_revision and revision != state.undo_of:
        # Also during an undo away from a rolled-back revision the source
        # still held: a revert to what serves wins like any change, and there
        # is nothing to roll out (else the serving revision went out against
        # itself, and a failed check of it recorded it rolled back).
        rollback(
            draft,
            observed,
            "RolloutCancelled",
            "the source Deployment went back to the stable revision",
            outcome="superseded",
            mark_failed=False,
        )
        return True
    if revision == (state.undo_of or state.canary_revision):
        return False
    if _replaced_while_stable_down(draft, observed):
        return True
    if state.undo_of:
        # The team changed its Deployment during an undo: the new change wins.
        draft.do(Record(state.canary_revision, "superseded", f"replaced by {revision}"))
        draft.emit(
            "RolloutRestarted",
            f"revision {revision} replaces the undo to "
            f"{state.canary_revision}; starting again from the first step",
        )
        draft.set(undo_of="")
    else:
        old = state.canary_revision
        draft.do(Record(old, "superseded", f"replaced by {revision} before it finished"))
        draft.emit(
            "RolloutRestarted",
            f"revision {revision} replaces {old} mid-rollout; starting again from the first step",
        )
    start(draft, spec, observed, now)
    return False


def _replaced_while_stable_down(draft: Draft, observed: Observed) -> bool:
    """A new revision replaces a canary whose pods serve alone (the stable
    twin has no ready pod): starting it would point the Service at that
    stable twin and re-template the twin that serves, leaving no endpoint.
    The replaced rollout ends as a rollback does then (its pods keep
    serving), and the new revision waits for the stable twin (_steady)."""
    state = draft.state
    assert state.stable is not None
    if not stable_down(observed, state.stable):
        return False
    revision = observed.source.revision
    rollback(
        draft,
        observed,
        "RolloutCancelled",
        f"replaced by {revision} before it finished; {revision} waits for the "
        f"{state.stable} twin (stable) to have a ready pod",
        outcome="superseded",
        mark_failed=False,
    )
    return True


def waking(spec: RolloutSpec, state: State, observed: Observed, now: float) -> bool:
    """The app was just scaled up from 0 (State.woken) and its stable twin
    has no ready pod yet: nothing new starts (a release, an undo), for a
    canary pod ready first would take every request, judged with no
    baseline. At most the progress deadline: a stable revision that no
    longer starts does not hold back a release that may fix it."""
    if not state.woken or state.stable is None or now - state.woken > spec.progress_deadline:
        return False
    twin = observed.twin(state.stable)
    return max(twin.ready, twin.endpoints) == 0


def stable_down(observed: Observed, stable: Color) -> bool:
    """The stable twin has no ready pod (a drain evicted them and no node
    fits, they crash) while the other twin's pods serve behind the Service:
    pointing the Service at the stable twin alone would leave it empty. A
    PodDisruptionBudget on the app's label counts both twins' pods, so a
    drain can take every stable pod while the canary's keep it satisfied."""
    back, serving = observed.twin(stable), observed.twin(other(stable))
    # Either count at 0 says so: the Deployment's readyReplicas lags the
    # EndpointSlices after its pods are deleted (seen on the sandbox: the
    # Service was pointed at a twin still counted "2/3 ready", with no
    # endpoint), and the slices lag pods that are gone or not ready yet.
    # A twin mid-restart (`kubectl rollout restart`) counts no `ready` pod
    # until it has rolled, while its old pods serve: counted as down, a
    # failing canary's rollback was held for as long as the restart took.
    ready = max(back.ready, back.ready_mixed)
    # Its endpoints tell only while the Service selects it: a blue-green
    # promotion whose flip was cut (already_ended made the new twin stable
    # with production still on the old one) found 0 endpoints of a twin the
    # Service never selected, and held production on the old twin for good.
    # The preview's endpoints tell for a twin only the preview selects.
    if observed.selector.get(TWIN_LABEL) in (None, stable):
        endpoints = back.endpoints
    elif (observed.preview_selector or {}).get(TWIN_LABEL) == stable:
        endpoints = observed.preview_endpoints
    else:
        endpoints = ready  # nothing selects it: its ready count is all there is
    return (ready == 0 or endpoints == 0) and serving.endpoints > 0


def _take_the_load_back(draft: Draft, observed: Observed) -> None:
    """The canary in flight stops serving (a rollback, an abort, a new
    release in its place): autoscaled, the stable twin takes all the traffic
    back at once, at what both twins served; its HPA had sized it for its
    share only, and scales it down again if that is more than it needs."""
    state = draft.state
    assert state.stable is not None
    size = serving_size(state, observed)
    if size > state.replicas:
        draft.do(ScaleTwin(state.stable, size))
        draft.set(replicas=size, scaled_from=state.scaled_from or state.replicas)


def rollback(
    draft: Draft,
    observed: Observed,
    reason: str,
    detail: str,
    *,
    outcome: str = "rolled-back",
    mark_failed: bool = True,
) -> None:
    """Traffic back to the stable twin in one selector patch; canary to zero."""
    state = draft.state
    assert state.canary is not None and state.stable is not None
    revision = state.canary_revision
    _take_the_load_back(draft, observed)
    held = stable_down(observed, state.stable)
    if held:
        # The canary's pods are all the Service has: moved onto a twin with
        # no ready pod, it would serve nothing at all. The traffic move (and
        # the canary's scale-down after it) waits in the steady state.
        where = (
            f"the {state.stable} twin ({state.stable_revision}) has no ready pod, so the "
            f"{state.canary} twin's pods keep serving until it has one; then traffic goes "
            "back to it and they stop"
        )
    else:
        draft.do(SetSelector(only(base_selector(observed.selector), state.stable)))
        draft.do(ScaleTwin(state.canary, 0))
        where = f"traffic is back on the {state.stable} twin ({state.stable_revision})"
    draft.set(
        canary=None,
        canary_revision="",
        failed_revision=_kept_out(state, mark_failed),
        undo_of="",
        **_FRESH_ROLLOUT,
    )
    draft.emit(reason, f"revision {revision}: {detail}", warning=mark_failed)
    draft.emit(
        "RolledBack",
        f"revision {revision} {outcome}: {where}. Reason: {detail}",
        warning=mark_failed or held,
    )
    draft.say(f"revision {revision} {outcome}: {detail}")
    draft.do(Record(revision, outcome, f"{reason}: {detail}"))
