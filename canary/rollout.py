"""A rollout in flight, cycle by cycle: its start, gates, looks at
Prometheus while it stands or grows, pauses and halts, edits made mid-rollout
and a release replacing it. The steps' placement, the checks' verdicts, the
promotion and the rollout's end live in placement, judging, promotion and
ending. Pure functions over a Draft; see decide.py for the order."""

from __future__ import annotations

from analysis.spec import GateKind
from analysis.verdicts import Verdict
from canary.degraded_text import beneath_degraded
from canary.ending import FRESH_ROLLOUT, rollback, stable_down, take_the_load_back
from canary.judging import (
    answered_late,
    judge_fast,
    judge_scheduled,
    step_passed,
    wait_for_gate,
    wake_for_next_scrape,
)
from canary.looks import halted_by_a_look, note_look, suspicion_holds, unlooked
from canary.model import Checked, Observed, Record, SetSelector, State, Twin, other
from canary.placement import (
    autoscaled_canary_text,
    await_analysis,
    canary_autoscaler,
    follow_lag,
    follow_restarted,
    move_again,
    paused_deployment,
    pods_while_paused,
    stages,
    stand_still,
    step_in_place,
)
from canary.plan import Draft
from canary.promotion import advance_promotion
from canary.restarts import crash_looping, may_reuse_pods, restarts_before
from canary.schedule import next_fast, watched_growing, watched_standing
from canary.spec import RolloutSpec, Strategy, analysis_digest
from canary.twins import base_selector, only


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
    take_the_load_back(draft, observed)
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
        **FRESH_ROLLOUT,
    )
    draft.set(
        restarts_before=restarts_before(observed.twin(color), revision),
        # A twin with no pod of `revision` to reuse (see may_reuse_pods)
        # has nothing to read late: a crash loop while the cache is out is
        # this rollout's.
        restarts_unread=not observed.pods_known and may_reuse_pods(observed.twin(color), revision),
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
    if observed.sharing:
        _told_sharing(draft, spec, observed, revision)
    if observed.routing and spec.strategy is Strategy.CANARY:
        _told_routing(draft, observed)
    wait_for_gate(draft, spec, GateKind.PRE_ROLLOUT)


# What each field of the Service (observe.routing) does to a canary's share.
_ROUTES = {
    "clusterIP": "the Service is headless: its clients resolve the pods through DNS and "
    "choose among them themselves, keeping those they resolved until they resolve again "
    "(gRPC's pick_first keeps one), so new pods, the canary's, get only new or re-resolving "
    "clients",
    "publishNotReadyAddresses": "requests reach every pod with an IP, ready or not: a canary "
    "pod still starting, or failing its readiness probe, gets its share of them",
    "sessionAffinity": "each client stays on the pod it reached first until it has been idle "
    "for the affinity's timeout (3 h by default), so clients already on stable pods never "
    "reach the canary, and one busy new client may send it all of its requests",
    "internalTrafficPolicy": "in-cluster clients reach only the pods on their own node",
    "externalTrafficPolicy": "the load balancer gives each node with a ready pod an equal "
    "share, whatever its number of pods",
    "trafficDistribution": "clients prefer the pods in their own zone (or node)",
    "service.kubernetes.io/topology-mode": "clients reach the pods their zone is hinted to",
    "service.kubernetes.io/topology-aware-hints": "clients reach the pods their zone is hinted to",
}


def _told_routing(draft: Draft, observed: Observed) -> None:
    """The Service's own fields route its requests otherwise than evenly
    over its ready pods: a step's weight, and the effective weight the
    status gives (ready canary endpoints / all ready endpoints), are shares
    of the pods, not of the requests. A canary on a node or in a zone of
    its own takes all of that node's or zone's clients; under ClientIP
    affinity it gets only new clients. Unsaid, the status read "10 %
    effective" while the canary served a whole zone (found by review).
    Said once per rollout, as PodsShared is: the controller cannot steer
    kube-proxy, and the team may mean the field."""
    fields = ", ".join(f"`{f}`" for f in observed.routing)
    how = "; ".join(dict.fromkeys(_ROUTES.get(f.split(":")[0], f) for f in observed.routing))
    draft.emit(
        "SplitNotByPods",
        f"Service {observed.service} has {fields}: {how}. The steps set the canary's share of "
        "the ready pods (the weight the status calls effective), not of the requests, which "
        "may be far more or far less; the analysis judges what it receives (too few requests "
        "is no data). Leave the field out while rolling out by steps, or use blue-green",
        warning=True,
    )


def _told_sharing(draft: Draft, spec: RolloutSpec, observed: Observed, revision: str) -> None:
    """Other Services pick the app's pods by its labels (an internal
    Service, a headless one, a monitoring one): the steps do not hold for
    them. Said once per rollout, where on-call looks, so nobody takes the
    canary's share of *their* requests for a controller fault."""
    many = len(observed.sharing) > 1
    names = ", ".join(observed.sharing)
    reach = (
        "the canary twin's pods at their share of all the app's pods, whatever the step's weight"
        if spec.strategy is Strategy.CANARY
        else f"the preview twin's pods (about half of them) before revision {revision} is promoted"
    )
    draft.emit(
        "PodsShared",
        f"Service{'s' if many else ''} {names} (not managed by canary) also select"
        f"{'' if many else 's'} the app's pods: {'their' if many else 'its'} requests reach "
        f"{reach}. Point {'them' if many else 'it'} at the {observed.service} Service, or "
        "select a label only the pods meant for it carry",
        warning=True,
    )


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
    note_look(draft, analysis)
    follow_lag(draft, observed, now)
    if crash_looping(draft, spec, observed):
        return
    if _source_paused(draft, spec, observed, analysis, now):
        return
    state = draft.state
    if state.halted:
        _while_halted(draft, spec, observed, analysis, now)
        return
    if state.paused or spec.paused:
        draft.say(f"paused at {_step_held(spec, state)}")
        pods_while_paused(draft, spec, observed, now)
        _hold(draft, spec, observed, analysis, now)
        return
    if state.gate_wait:
        waited_for = GateKind(state.gate_wait)
        if not _past_gate(draft, spec, observed, analysis, now):
            return
        move_again(draft, now)
        if waited_for in (GateKind.PRE_STEP, GateKind.PRE_PROMOTION):
            step_passed(draft, spec, observed, now, asked=waited_for)
            return
    stood = draft.state.still_since
    move_again(draft, now)
    if stood:
        _window_after_standing(draft, spec, observed, now)
    state = draft.state
    if state.promoting:
        _keep_promoting(draft, spec, observed, analysis, now)
        return
    if not step_in_place(draft, spec, observed, now):
        _look_while_unready(draft, spec, observed, analysis, now)
        return
    if analysis is not None and analysis.kind in ("fast", "scheduled"):
        _judge_check(draft, spec, observed, analysis, now)
        return
    await_analysis(draft, spec, observed, now)


# How far back the window of a step that stood still may reach once it goes
# on, in scrapes (an interval, if longer): the samples per series a check
# asks Prometheus for, whatever the scrape interval (10 minutes at 1 s, 2.5
# hours at 15 s). A pause shorter than that keeps its window as it was.
RESUMED_WINDOW_SCRAPES = 600


def window_reach(spec: RolloutSpec, scrape_s: float) -> float:
    """How far back a step's window may reach once it goes on after standing
    still (RESUMED_WINDOW_SCRAPES, or an interval); also the furthest a
    scheduled check looks back for a fresh pod's earlier samples
    (schedule.fresh_since)."""
    return max(spec.interval, RESUMED_WINDOW_SCRAPES * scrape_s)


def _window_after_standing(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> None:
    """The step goes on where it stood still (a pause resumed): its window
    reaches back RESUMED_WINDOW_SCRAPES at most. Kept at its start from
    before a pause of days, the first check after the resume asked
    Prometheus for all of it (`rate(...[72h])`: at a 1 s scrape more
    samples than it loads for one query, or answers within query-timeout)
    and erred, each retry wider, until error-limit rolled a good release
    back or halted it. The canary served at its weight meanwhile, looked at
    every scrape: the newest part of that is as good a window as the rest."""
    state = draft.state
    start = state.window_start or state.step_ready
    reach = window_reach(spec, observed.scrape_interval)
    if state.step_ready and start < now - reach:
        draft.set(window_start=now - reach)


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
        judge_fast(draft, spec, observed, analysis, now, standing=True)
    state = draft.state
    if state.canary is not None and state.unready_since and spec.analysis.fast_metrics:
        # The pods that still serve are looked at every scrape.
        wake_for_next_scrape(draft, spec, observed, now)


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
    follow_restarted(draft, observed)
    _look_while_standing(draft, spec, observed, analysis, now)
    if draft.state.canary is not None:
        advance_promotion(draft, spec, observed, now)


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
    follow_restarted(draft, observed)
    _look_while_standing(draft, spec, observed, analysis, now)
    state = draft.state
    if state.canary is None or not state.gate_wait:
        return False
    if halted_by_a_look(draft):
        stand_still(draft, now)
        return False
    if suspicion_holds(draft, spec):
        _answer_held(draft, spec, observed, now)
        stand_still(draft, now)
        return False
    if not spec.analysis.gates_on(GateKind(state.gate_wait)):
        # Removed from the spec while waited on: nothing is left to ask, so
        # it is open, but only past the looks above, as an open gate is.
        # Skipped before them, the step's weight went up (or the canary grew
        # to full size for the flip) over a failing scrape not yet confirmed.
        draft.set(gate_wait="", gate_checked=0.0, gate_reason="")
        return True
    if unlooked(draft, spec, observed, now) or not _through_gate(draft, spec, observed, now):
        stand_still(draft, now)
        return False
    return True


def _answer_held(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> None:
    """An answer of the gate waited on came while a failing scrape waits
    to be confirmed: it moves nothing now, and the gate is asked again an
    interval later, as over a look missing (unlooked). Dropped with the
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


def _hold(
    draft: Draft, spec: RolloutSpec, observed: Observed, analysis: Checked | None, now: float
) -> None:
    """Paused or at a closed gate: the step holds, and its failures are still looked at."""
    stand_still(draft, now)
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
            judge_fast(draft, spec, observed, analysis, now, standing=True)
        else:
            judge_scheduled(draft, spec, observed, analysis.result, analysis.at)
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
        judge_fast(draft, spec, observed, analysis, now, standing=True)
    if draft.state.canary is not None and spec.analysis.fast_metrics:
        wake_for_next_scrape(draft, spec, observed, now)
    return True


def _judge_check(
    draft: Draft, spec: RolloutSpec, observed: Observed, analysis: Checked, now: float
) -> None:
    """The step serves at its weight: this check decides (and so is a record)."""
    draft.judged = True
    if analysis.kind == "fast":
        judge_fast(draft, spec, observed, analysis, now)
    else:
        judge_scheduled(draft, spec, observed, analysis.result, analysis.at, decided=now)


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
        # (Degraded, the line follows the degradation: decide._beneath.)
        said = beneath_degraded(state.message, state.degraded)
        if not said.startswith(halted):
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
        judge_scheduled(draft, spec, observed, analysis.result, analysis.at)


def _edited_mid_rollout(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> bool:
    """The annotations were edited under a rollout in flight: the step is
    judged afresh if its weight changed (not while promoting: past the last
    step), and a failure-limit lowered below the failures already counted
    rolls back, while promoting too (on-call lowering it to stop a promotion
    that waits for its pods or for a look was promoted; found by review).
    True when it ended."""
    _analysis_edited(draft, spec, now)
    # After it: a promotion it takes back goes on at its last step, which
    # the same apply may have cut (steps 25,40 -> 25 with the analysis):
    # placed as it was, the step in flight raised IndexError at every cycle.
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
    # A switch to blue-green at the first step is one even while that step
    # is not in place (its weight raised, its pods restarted): the canary
    # may serve meanwhile, and returned here, production moved onto the
    # stable twin's HPA share with nothing taking the load back.
    switched = not weights[step] and state.requested_weight > 0
    if (
        step == state.step
        and not switched
        and (not state.step_ready or state.requested_weight == weights[step])
    ):
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
    if not weights[step]:
        # Blue-green: production asks nothing of the canary any more (keep_weight
        # has taken it out and grows it to a preview). Left at the step's
        # weight while the rollout stood still, the invalid path (which knows
        # no strategy) held the preview at that share of its pods until the
        # fix: cut from the app's size to a quarter after a 25 % step.
        # Autoscaled, the stable twin takes the canary's share back first, at
        # what both served, as for a rollback: its HPA sized it for its own
        # share, and once the weight is 0 nothing remembers the canary's.
        # Before, production moved onto that share (16 pods' load on 8); and
        # with the stable twin drained, the canary served on until its pods
        # were back, so a release replacing it counted nothing for it.
        take_the_load_back(draft, observed)
        draft.set(requested_weight=0)
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


def _analysis_edited(draft: Draft, spec: RolloutSpec, now: float) -> None:
    """`canary.io/analysis` (or `interval`: spec.analysis_digest) was edited
    while a step that passed waits on its pre-step or pre-promotion gate (an
    approval may take hours), or while
    the automatic promotion waits for its pods or a look: the pass answered
    the analysis before the edit. Taken back, as a failure counted at the
    gate takes it back. At a gate the step is judged under the new analysis
    at once, over the window it has served (a check in flight under the old
    one decides nothing, decide._still_asked), and the gate is asked again
    after that pass; a promotion goes back to the last step, judged afresh
    from when it serves at that weight again. Acted on, the gate or the flip
    promoted the release (or raised its weight) on a custom metric on-call
    had just added, never asked once: fast looks check the builtins alone
    (found by review). A person's `canary promote` is theirs: not taken back."""
    state = draft.state
    waits = state.gate_wait in (GateKind.PRE_STEP, GateKind.PRE_PROMOTION)
    if not (waits or (state.promoting and not state.promote_by)):
        return
    if not state.passed_under or state.passed_under == analysis_digest(spec):
        return
    draft.set(gate_wait="", gate_checked=0.0, gate_reason="", passed_under="")
    was = f"the {state.gate_wait} gates were asked" if waits else "it was being promoted"
    if state.promoting:
        draft.set(
            promoting=False,
            promote_to=0,
            flip_waits=0.0,
            step_started=now,
            step_ready=0.0,
            checked=0.0,
            window_start=0.0,
            unready_since=0.0,
        )
    draft.emit(
        "AnalysisChanged",
        f"revision {state.canary_revision}: canary.io/analysis (or interval) was edited while "
        f"{was} on a pass of step {state.step + 1} under the one before; the step is "
        "analysed again under the new one"
        + (", and the gates asked once it passes" if waits else ", then promoted if it passes"),
        warning=True,
    )


def _step_held(spec: RolloutSpec, state: State) -> str:
    """The step a pause holds, as it serves: steps edited meanwhile apply
    once it moves (_held_where_it_serves). Read from the edited steps, the
    status said "step 3/2" (a step cut away) or named a weight not served."""
    weights = stages(spec)
    if not state.step_ready or (
        state.step < len(weights) and weights[state.step] == state.requested_weight
    ):
        return f"step {state.step + 1}/{len(weights)}"  # (no step served yet: none is held)
    edited = ",".join(map(str, weights)) if spec.strategy is Strategy.CANARY else "blue-green"
    return (
        f"step {state.step + 1} at {state.requested_weight}% as before the steps were edited "
        f"(to {edited}: they apply once it resumes)"
    )


def _held_where_it_serves(spec: RolloutSpec, state: State, observed: Observed, weight: int) -> bool:
    """Paused (by an action, the annotation or `kubectl rollout pause`) or
    halted for want of data, with the canary in production: the step keeps
    the weight it serves, and its failures are looked at, until the rollout
    moves again; the edit takes effect then (StepsChanged). Applied at once,
    it forgot the step had ever served while nothing could place it anew:
    the canary held its weight with no look at all until the pause ended.
    A switch to blue-green is not held (production goes back to stable).
    A Deployment's pause (or an HPA on the canary) as observed now, not as
    the status remembers it: in the cycle it is lifted the step is placed
    anew (_source_paused), and held, a step cut away was placed: IndexError."""
    return (
        weight > 0
        and watched_standing(state)
        and bool(
            state.paused
            or spec.paused
            or bool(paused_deployment(observed))
            or bool(canary_autoscaler(observed, state.stable))
            or (state.halted and state.halt_kind == "no-data")
        )
    )


def _replaced(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> bool:
    """The source changed under the rollout: back to the stable revision
    ends it; a new revision starts again from the first step. True when the
    rollout ended."""
    state = draft.state
    assert state.canary is not None and state.stable is not None
    revision = observed.source.revision
    # The stable twin's own template under another hash, as a hand-back
    # sets it back into the source (canary.io/strategy removed, then put
    # back before it finished): the same pods as what serves, as decide._steady
    # has it. Taken for a new release, they went out as a canary through
    # every step, recorded as replacing the rollout in flight.
    same = state.stable in observed.source.same_as - observed.source.reads_live
    if (revision == state.stable_revision or same) and revision != state.undo_of:
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
    if state.undo_of and revision == state.canary_revision:
        # The team's Deployment followed the undo (a Git revert, `kubectl
        # rollout undo`): the revision in flight is now its release, and
        # the one undone is no longer there to keep out. Taken for a new
        # release, the undo ended "replaced by" its own revision and
        # started again from the first step.
        draft.set(undo_of="")
        return False
    if _replaced_while_stable_down(draft, spec, observed, now):
        return True
    if _replaced_while_paused(draft, observed):
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
    churn = state.config_churn + 1 if _config_only(state, observed) else 0
    start(draft, spec, observed, now)
    draft.set(config_churn=churn)
    if churn and churn % CHURN_TOLD_EVERY == 0:
        _told_churn(draft, observed, revision, churn, now - state.rollout_started)
    return False


# Config-only replacements in a row before ConfigChurn says so (and again at
# each further such count): a rotation or two mid-rollout is ordinary.
CHURN_TOLD_EVERY = 3


def _config_only(state: State, observed: Observed) -> bool:
    """The release replacing the canary changes config alone: its images
    are the ones the canary twin runs."""
    canary = observed.twin(state.canary)
    return canary.exists and bool(canary.images) and canary.images == observed.source.images


def _told_churn(draft: Draft, observed: Observed, revision: str, churn: int, lasted: float) -> None:
    """Each change of a tracked ConfigMap or Secret is a release, and one
    mid-rollout starts it again: rotated faster than a rollout lasts
    (dynamic credentials, a generator refreshed every minute), none is ever
    promoted, and the stable twin keeps its revision's copy, which may
    expire. Only a Normal RolloutRestarted said so, each time."""
    tracked = ", ".join(sorted(observed.source.config)) or "its ConfigMaps and Secrets"
    draft.emit(
        "ConfigChurn",
        f"revision {revision} replaces the rollout in flight after {lasted:.0f}s: {churn} "
        f"rollouts in a row were replaced by a change of config alone ({tracked}). It changes "
        f"faster than a rollout lasts, so none is promoted and the stable twin keeps revision "
        f"{draft.state.stable_revision}'s copies. Set canary.io/config-tracking: disabled on "
        "the object that rotates (its changes then reach the pods without a rollout), or "
        "rotate it less often",
        warning=True,
    )


def _replaced_while_stable_down(
    draft: Draft, spec: RolloutSpec, observed: Observed, now: float
) -> bool:
    """A new revision replaces a canary whose pods serve alone (the stable
    twin has no ready pod): starting it would point the Service at that
    stable twin and re-template the twin that serves, leaving no endpoint.
    Or the stable twin has no ready pod and the canary none serving either
    (waking: nodes lost, a dependency both need down): started, the new
    canary's first ready pod, up before the stable twin's, took every
    request, judged with no baseline (found by the random-operations fuzz).
    The replaced rollout ends as a rollback does then (its pods keep
    serving), and the new revision waits for the stable twin (decide._steady)."""
    state = draft.state
    assert state.stable is not None
    if not (stable_down(observed, state.stable) or waking(spec, state, observed, now)):
        return False
    waits = f"waits for the {state.stable} twin (stable) to have a ready pod"
    _cancelled_to_wait(draft, observed, waits)
    return True


def _replaced_while_paused(draft: Draft, observed: Observed) -> bool:
    """A new revision while a Deployment of the app is paused (`kubectl
    rollout pause`: the team batching its changes, or on-call holding a
    twin): it waits for the resume, as a release does in the steady state
    (decide._release_waits). The rollout it replaces ends now, its canary
    out of the Service (nothing judges it any more). Started, each edit of
    a paused batch was a rollout of its own, never to run: RolloutStarted,
    RolloutRestarted and RolloutPaused again, and an entry in the history
    ("superseded") for half a change.
    Likewise an HPA on the canary twin (placement.canary_autoscaler), which
    the new revision would roll out on, a promotion's too: started, the
    release was held at once, the status naming it the canary while the twin
    still ran the replaced revision at the HPA's size (said as
    decide._release_waits says it)."""
    paused = paused_deployment(observed)
    hpa = canary_autoscaler(observed, draft.state.stable)
    if not paused and not hpa:
        return False
    why = paused or f"HPA {hpa} targets the twin it would roll out on"
    _cancelled_to_wait(draft, observed, f"waits: {why}")
    return True


def _cancelled_to_wait(draft: Draft, observed: Observed, waits: str) -> None:
    """The rollout in flight ends as a rollback does, recorded superseded:
    the Deployment's new revision `waits` (for what, said) as a release
    does in the steady state."""
    revision = observed.source.revision
    rollback(
        draft,
        observed,
        "RolloutCancelled",
        f"replaced by {revision} before it finished; {revision} {waits}",
        outcome="superseded",
        mark_failed=False,
    )


def waking(spec: RolloutSpec, state: State, observed: Observed, now: float) -> bool:
    """The stable twin has had no ready pod since State.woken (the app
    scaled up from 0; the twin deleted and made again, drained, crashing,
    scaled to 0 by hand and put back) and still has none: nothing new
    starts (a release, an undo), for a canary pod ready first would take
    every request, judged with no baseline. At most the progress deadline
    from then: a stable revision that no longer starts does not hold back a
    release that may fix it."""
    if not state.woken or state.stable is None or now - state.woken > spec.progress_deadline:
        return False
    twin = observed.twin(state.stable)
    return max(twin.ready, twin.endpoints) == 0


def has_a_ready_pod(twin: Twin) -> bool:
    """Some pod of the twin serves or could: ready by its Deployment's count
    (of either template while it rolls: a restart), or listed ready behind
    the Service (the count lags the EndpointSlices, and they lag it)."""
    return max(twin.ready, twin.ready_mixed, twin.endpoints) > 0


def no_ready_pod_text(state: State, observed: Observed) -> str:
    """The stable twin with no ready pod, as observed (not what brought it
    there: State.woken is set for several causes, and the status named a
    scale-up from 0 nobody did)."""
    assert state.stable is not None
    twin = observed.twin(state.stable)
    name = f"the {state.stable} twin (stable, revision {state.stable_revision})"
    if twin.deleting:
        name += " is being deleted (made again once gone) and"
    elif not twin.exists:
        name += " is missing (being made again) and"
    return f"{name} has no ready pod (0/{state.replicas})"
