"""Manual actions: promote, abort, retry, pause, resume and undo, asked for
through the canary.io/action annotation (by the CLI or by kubectl). Pure
functions over a Draft, like the rest of the rollout logic."""

from __future__ import annotations

from analysis.spec import GateKind
from canary.action_text import of_a_step, parse_action, taken
from canary.ending import rollback, stable_down
from canary.model import Color, Observed, Record, ScaleTwin, SetSelector, State, other
from canary.placement import canary_autoscaler, paused_deployment
from canary.plan import Draft
from canary.rollout import no_ready_pod_text, start, waking
from canary.spec import RolloutSpec
from canary.twins import base_selector, only

PINNED = ("promote", "abort", "retry")  # the verbs that act on one revision


def aimed_at(verb: str, state: State) -> str:
    """The revision `verb` would act on in this state ("" when none): the
    canary; for an abort right after a promotion, the revision promoted; for
    a retry with no canary, the revision rolled back."""
    if verb not in PINNED:
        return ""
    if state.canary_revision:
        return state.canary_revision
    if verb == "abort" and state.scale_down is not None and state.previous_revision:
        return state.stable_revision
    if verb == "retry":
        return state.failed_revision
    return ""


def _aimed_elsewhere(draft: Draft, verb: str, pinned: str, who: str, text: str) -> bool:
    """An action asked for one revision lands on no other: a promote meant for
    r2 must not promote r3, released a moment before it arrived."""
    if not pinned or verb not in PINNED:
        return False
    current = aimed_at(verb, draft.state)
    if pinned == current and not _step_ended(draft.state, verb, text):
        return False
    if pinned == current:
        # The same revision, another request: a retry of its step in flight
        # (traffic stays) taken as a retry of it rolled back (it goes out
        # again from the first step), right after failing.
        draft.emit(
            "ActionIgnored",
            f"retry by {who} was asked for a step of revision {pinned} in flight, but "
            f"{pinned} was rolled back since; nothing was done. `canary retry` again "
            "rolls it out again from its first step",
            warning=True,
        )
        return True
    now_there = f"it would act on {current} now" if current else f"there is nothing to {verb}"
    draft.emit(
        "ActionIgnored",
        f"{verb} by {who} was asked for revision {pinned}, but {now_there}; nothing was done. "
        "Check `canary status`, then ask again",
        warning=True,
    )
    return True


def _step_ended(state: State, verb: str, text: str) -> bool:
    """A retry asked of a step in flight (action_text.STEP_TOKEN) whose
    rollout has ended: its revision is now the one rolled back."""
    return verb == "retry" and of_a_step(text) and state.canary_revision == ""


def _take(draft: Draft, observed: Observed) -> tuple[str, str] | None:
    """(verb, who asked) of the action on the Service, now taken (never
    carried out twice); None when nothing is left to do: it was taken before,
    it was asked for another revision, or it was an abort, carried out here
    (it needs no spec)."""
    verb, pinned, _ = parse_action(observed.action)
    who = observed.action_by or "someone"
    again = observed.action in draft.state.taken_actions
    draft.set(
        last_action=observed.action, taken_actions=taken(draft.state.taken_actions, observed.action)
    )
    if again:
        # The same value is the same request (anything after the verb makes
        # a new one): a sync writing Git's old `abort 1` back after on-call's
        # `promote` would otherwise abort the release just promoted.
        draft.emit(
            "ActionIgnored",
            f"canary.io/action {observed.action!r} (written by {who}) was carried out "
            "before: an old request written back (a GitOps sync of a manifest that holds "
            "it?), not a new one; nothing was done. Keep canary.io/action out of what your "
            "tool syncs; to ask again, add a word after the verb (the CLI adds the time)",
            warning=True,
        )
        return None
    if _aimed_elsewhere(draft, verb, pinned, who, observed.action):
        return None
    if verb == "abort" and _abort(draft, observed, who):
        return None
    return verb, who


def _abort(draft: Draft, observed: Observed, who: str) -> bool:
    """Take the canary out, or right after a promotion flip back to the old
    twin; False when there is nothing to abort. Needs no spec."""
    state = draft.state
    if state.canary is not None:
        rollback(draft, observed, "Aborted", f"aborted by {who}", outcome="aborted")
        return True
    if state.scale_down is not None and state.previous_revision:
        # Within scale-down-delay, whatever the old twin is now: deleted or
        # scaled to 0 by hand, _flip_back refuses and says why. Skipped,
        # on-call read "nothing to abort right now" about the release just
        # promoted, as if it had not been.
        _flip_back(draft, observed, who)
        return True
    return False


def manual_action(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> None:
    taken = _take(draft, observed)
    if taken is None:
        return
    verb, who = taken
    state = draft.state
    match verb:
        case "promote" if state.canary is not None:
            draft.set(
                promoting=True,
                # A person's promotion does not wait for a look to read the
                # canary (promotion._flip_unlooked): they chose to ship now,
                # as their promote overrides a closed gate.
                promote_by=who,
                # Why it halted goes with the halt: a halt_kind left behind
                # kept the rollout "standing" (schedule.standing) or unwatched.
                halted="",
                halt_kind="",
                paused=False,
                step_started=now,
                gate_wait="",
                gate_checked=0.0,
                gate_reason="",
            )
            # The action lifts its own pause, not the annotation's nor the
            # Deployment's: say the promotion waits for them (its failures
            # are still looked at meanwhile).
            held = (
                "; it waits while canary.io/paused is set"
                if spec.paused
                else f"; it waits while Deployment {observed.deployment} is paused"
                if observed.source.paused
                else ""
            )
            draft.emit(
                "PromoteRequested",
                f"{who} asked to promote {state.canary_revision}: "
                f"skipping the remaining steps; pods must still be ready{held}",
            )
        case "retry" if state.canary is not None:
            draft.set(
                # halt_kind too: "no-data" left behind kept the rollout
                # standing (fast looks only), and no scheduled check came again.
                halted="",
                halt_kind="",
                no_data=0,
                errors=0,
                step_started=now,
            )
            if not state.promoting:
                # A promotion has no step window to judge afresh, and nothing
                # would set step_ready again: cleared, no look watched the
                # canary any more and its automatic flip went over what no
                # check had read (schedule.watched_standing, promotion._flip_unlooked).
                draft.set(checked=0.0, window_start=0.0, step_ready=0.0)
            if state.gate_wait in (GateKind.PRE_STEP, GateKind.PRE_PROMOTION):
                # The gate waited to act on the pass the retry takes back:
                # opening it then moved on with no check since the retry. The
                # step is judged again, and its gate asked after that pass.
                # (A pre-rollout gate stays: nothing has passed yet.)
                draft.set(gate_wait="", gate_checked=0.0, gate_reason="")
            draft.emit(
                "RetryRequested",
                f"{who} asked to retry "
                + ("the promotion" if state.promoting else f"step {state.step + 1}")
                + f" of {state.canary_revision}",
            )
        case "retry" if state.failed_revision and _undo_target_only(state, observed):
            # The Deployment holds what serves, and the revision came from an
            # undo: clearing the mark rolls nothing out. Said so (the Event
            # read as if it went out again); the undo is what does. Cleared
            # all the same: a retry is also how on-call leaves RolledBack.
            draft.emit(
                "RetryRequested",
                f"{who} asked to retry {state.failed_revision}, the target of an undo: the "
                f"Deployment holds {observed.source.revision}, which serves, so nothing rolls "
                f"out and {state.failed_revision} is no longer kept out. `canary undo --to N` "
                f"rolls {state.failed_revision} out again",
            )
            draft.set(failed_revision="")
        case "retry" if state.failed_revision:
            draft.emit("RetryRequested", f"{who} asked to retry {state.failed_revision}")
            draft.set(failed_revision="")
        case "pause":
            draft.set(paused=True)
            draft.emit("RolloutPaused", f"paused by {who}")
        case "resume":
            lifted = state.paused
            draft.set(paused=False)
            _resume(draft, spec, observed, who, lifted)
        case "undo":
            _undo(draft, spec, observed, observed.action, who, now)
        case "promote" | "abort" | "retry":
            draft.emit("ActionIgnored", f"{verb} by {who}: nothing to {verb} right now")
        case _:
            draft.emit(
                "ActionIgnored",
                f"canary.io/action {observed.action!r} by {who}: unknown action; "
                "use promote, abort, retry, pause, resume or undo N",
                warning=True,
            )


def _undo_target_only(state: State, observed: Observed) -> bool:
    """The revision kept out is an undo's own target rolled back or aborted
    (decide._holds_serving keeps it), which the Deployment does not hold."""
    return (
        state.failed_revision in observed.undos
        and observed.source.exists
        and observed.source.revision != state.failed_revision
    )


def while_invalid(draft: Draft, observed: Observed, invalid: str) -> None:
    """The annotations cannot be read. An abort still takes the canary out
    (it needs no spec, and only ever moves traffic to what served); anything
    else waits for the fix and is said so, instead of firing by surprise
    once someone fixes the annotations."""
    taken = _take(draft, observed)
    if taken is None:
        return
    verb, who = taken
    if verb in ("pause", "resume"):  # they need no spec either
        draft.set(paused=verb == "pause")
        reason = "RolloutPaused" if verb == "pause" else "RolloutResumed"
        draft.emit(reason, f"{verb}d by {who} (the annotations are invalid: {invalid})")
        return
    draft.emit(
        "ActionIgnored",
        f"{verb or observed.action!r} by {who}: the annotations are invalid ({invalid}); "
        "nothing was done. Fix them, then ask again",
        warning=True,
    )


def while_source_missing(draft: Draft, observed: Observed) -> None:
    """The team's Deployment is gone (deleted, mid `replace --force`). An
    abort is carried out: it needs no Deployment, only the twin that served
    (as while the annotations are invalid). Not taken, an abort right after
    a promotion left the release on-call aborted with every request, with
    nothing said, for as long as the Deployment stayed away. Any other
    request waits for the Deployment, untaken, as before."""
    verb, _, _ = parse_action(observed.action)
    if verb != "abort":
        return
    taken = _take(draft, observed)
    if taken is not None:
        draft.emit("ActionIgnored", f"abort by {taken[1]}: nothing to abort right now")


def _undo(
    draft: Draft, spec: RolloutSpec, observed: Observed, text: str, who: str, now: float
) -> None:
    """Roll revision #N of the history out again, through the same strategy."""
    _, _, words = parse_action(text)
    number = int(words[0]) if words and words[0].isdigit() else None
    revision = observed.revisions.get(number) if number is not None else None
    state = draft.state
    if number is None or revision is None:
        draft.emit(
            "ActionIgnored",
            f"{text!r} by {who}: no such revision in the history; `canary history` lists them",
            warning=True,
        )
        return
    if revision == (state.canary_revision or state.stable_revision):
        draft.emit(
            "ActionIgnored",
            f"undo by {who}: revision #{number} ({revision}) is already rolling out or serving",
        )
        return
    if state.canary is not None and revision == state.stable_revision:
        _back_to_serving(draft, observed, number, revision, who)
        return
    if state.stable is not None and stable_down(observed, state.stable):
        # The undo goes out on the other twin, whose pods are all that serve
        # (a held rollback, or a canary serving alone): started now, it
        # pointed the Service at the stable twin with no ready pod (no
        # endpoint at all) and re-templated the twin that served. Nothing
        # remembers an undo to start later, so it is refused, and said so.
        draft.emit(
            "ActionIgnored",
            f"undo by {who}: the {state.stable} twin (stable) has no ready pod and the "
            f"{other(state.stable)} twin's pods serve alone; rolling revision #{number} "
            "out now would leave the Service with no endpoint. Nothing was done: ask "
            "again once the stable twin has a ready pod (`canary abort` takes a canary "
            "out meanwhile, its pods serving until then)",
            warning=True,
        )
        return
    if state.replicas == 0:
        # As a release waits while the app is at 0 (decide._wait_at_zero):
        # started, it ran a canary pod against the team's 0 that served
        # every request, at any step's weight.
        draft.emit(
            "ActionIgnored",
            f"undo by {who}: the app is scaled to 0, so no pod would serve or measure revision "
            f"#{number} ({revision}). Nothing was done: scale Deployment {observed.deployment} "
            "up, then ask again",
            warning=True,
        )
        return
    if waking(spec, state, observed, now):
        # As a release waits then (decide._wait_for_a_stable_pod). Said as
        # observed: State.woken is set for several causes (a scale-up from 0,
        # the twin deleted and made again, drained, crashing), and "the app
        # was just scaled up from 0" named a scale-up nobody did.
        draft.emit(
            "ActionIgnored",
            f"undo by {who}: {no_ready_pod_text(state, observed)}; a canary "
            f"pod of revision #{number} ({revision}) ready before it would take every "
            "request. Nothing was done: ask again once the stable twin has a ready pod",
            warning=True,
        )
        return
    if state.canary is not None:
        rollback(
            draft,
            observed,
            "RolloutCancelled",
            f"undo to #{number} by {who}",
            outcome="superseded",
            mark_failed=False,
        )
    draft.emit("UndoRequested", f"{who} asked to go back to revision #{number} ({revision})")
    # What the undo moves away from, kept out once it is promoted: not the
    # revision it rolls out. An undo to the release rolled back that the
    # Deployment still holds (shipping it anyway) kept it out while it
    # served, said "the undo to revision r2 was rolled back" once r2 was
    # promoted. Rolled back again, it stays out as any canary that fails.
    draft.set(undo_of=observed.source.revision if observed.source.revision != revision else "")
    start(draft, spec, observed, now, revision)


def _back_to_serving(
    draft: Draft, observed: Observed, number: int, revision: str, who: str
) -> None:
    """An undo to the revision that serves, while a newer one is in flight:
    the release in flight is taken out at once and kept out, nothing rolls
    out (as Argo Rollouts' undo to the stable revision, a fast-track
    rollback). Before, the serving revision went out again as a canary
    against itself: a failed check of it (noise, a flaky dependency)
    recorded what serves 100 % as rolled back, under a RolledBack phase.
    Like any undo it has its own entry, started by UndoRequested and
    promoted at once: that is what keeps the undone release out once the
    status is lost (rebuild._undone) and what a retry of a cut cycle reads
    back (ending._undo_untaken). Needs no ready stable pod: like an abort,
    rollback holds the traffic move until there is one."""
    state = draft.state
    kept = observed.source.revision if observed.source.revision != revision else ""
    recorded = (
        revision in observed.undos
        and observed.outcomes.get(revision) == "promoted"
        and observed.ended.get(revision, 0.0) >= state.rollout_started
    )
    detail = (
        f"undo to #{number} by {who}: {revision} is the stable revision, so the release "
        f"in flight is taken out at once, with no canary of {revision} against itself"
    )
    rollback(draft, observed, "RolloutCancelled", detail, outcome="superseded", mark_failed=False)
    draft.set(failed_revision=kept, undone=bool(kept))
    draft.emit(
        "UndoRequested",
        f"{who} asked to go back to revision #{number} ({revision}), the stable one: "
        "nothing rolls out"
        + (f"; {kept} stays out until the Deployment changes or `canary retry`" if kept else ""),
    )
    if not recorded:  # a retry of a cycle cut after the records writes none again
        draft.do(Record(revision, "progressing", "undo: the revision serving"))
        draft.do(Record(revision, "promoted", f"UndoRequested: {detail}"))


def _resume(
    draft: Draft, spec: RolloutSpec, observed: Observed, who: str, lifted: bool = False
) -> None:
    """Resumed is said only when nothing else still holds the rollout;
    `lifted`: a `canary pause` it lifted all the same (said, so that nobody
    resumes again once the other hold goes)."""
    paused = paused_deployment(observed)
    hpa = canary_autoscaler(observed, draft.state.stable) if draft.state.canary else ""
    holds = [
        f"{paused} (kubectl rollout resume)" if paused else "",
        f"HPA {hpa} targets the canary twin (delete it, or point it at Deployment "
        f"{observed.deployment})"
        if hpa and not draft.state.promoting
        else "",
        *resume_holds(draft.state, spec.paused),
    ]
    still = "; ".join(h for h in holds if h)
    if still:
        draft.emit(
            "ActionIgnored",
            f"resume by {who}: "
            + ("the `canary pause` is lifted, but " if lifted else "")
            + f"the rollout does not go on, because {still}",
            warning=True,
        )
    else:
        draft.emit("RolloutResumed", f"resumed by {who}")


def resume_holds(state: State, annotation_paused: bool) -> list[str]:
    """What still holds the rollout after a resume that the Service itself
    shows (its annotations and status), each with how to lift it: the CLI
    refuses a resume for these (it reads no Deployment nor HPA)."""
    holds = [
        "the annotation canary.io/paused is set (remove it)" if annotation_paused else "",
        # Halted and gate-closed rollouts show as Halted, not Paused: resume
        # moves neither, and saying Resumed told on-call it went on.
        f"it is halted ({state.halted}): `canary retry` judges the step again, "
        "or `promote` or `abort`"
        if state.halted
        else "",
        f"the {state.gate_wait} gate is closed ({state.gate_reason}): `canary promote` overrides it"
        if state.gate_reason
        else "",
    ]
    return [h for h in holds if h]


def flip_back_refused(observed: Observed, back: Color, revision: str) -> str:
    """Why traffic cannot go back to the old twin now ("" when it can): it
    must still run the revision that served and have a ready pod, or the
    flip would leave the Service empty or on something else. Fewer ready
    pods than it had do not stop it: on-call asked to leave the release."""
    twin = observed.twin(back)
    if not twin.exists or twin.revision != revision or twin.edited_by:
        return f"the {back} twin no longer runs revision {revision}"
    if twin.ready == 0:
        return f"the {back} twin ({revision}) has no ready pod"
    return ""


def _kept_out_after_abort(state: State) -> str:
    """What stays out once a promotion is aborted: the release aborted; after
    an undo's promotion, the revision the undo took out, which the
    Deployment still asks for (as ending._kept_out has it during the undo),
    unless traffic goes back to it. Marked the aborted one, a release rolled
    back before the undo went out again unasked once on-call aborted it."""
    if state.undone and state.failed_revision != state.previous_revision:
        return state.failed_revision
    return state.stable_revision


def _flip_back(draft: Draft, observed: Observed, who: str) -> None:
    """Abort right after a promotion: the old twin is still up, so one
    selector patch puts traffic back on it, once it has a ready pod (see
    flip_back_refused). The promoted twin, now idle, is scaled down only once
    the Service has left it (decide._steady), as in an adoption."""
    state = draft.state
    assert state.scale_down is not None and state.stable is not None
    back = state.scale_down
    revision = state.stable_revision
    refused = flip_back_refused(observed, back, state.previous_revision)
    if refused:
        draft.emit(
            "ActionIgnored",
            f"abort by {who}: {refused}, so traffic stays on {revision}. "
            "`canary undo --to N` rolls an earlier revision out again through the strategy",
            warning=True,
        )
        return
    twin = observed.twin(back)
    # Autoscaled, the old twin's HPA had sized it for its last share, and it
    # kept that size without an HPA for the abort window: the steady state
    # scales it to what the promoted twin serves with in this same cycle
    # (_ensure_stable). Until those pods start, the ones it has take all the
    # load: said, and the growth is not a twin short of pods (Degraded).
    short = twin.replicas < state.replicas
    # Bigger, it keeps its pods: the aborted release's HPA may have cut its
    # twin (a release failing fast uses little CPU), so its size is no
    # measure of the load. Scaled to it in the same cycle as the flip, the
    # old twin lost its ready pods right as it took all the load back; its
    # HPA copy (moved onto it, autoscaling.place) scales it down if the load
    # is that low, at the pace the team set.
    size = max(twin.replicas, state.replicas) if observed.autoscaler.followed else state.replicas
    draft.do(SetSelector(only(base_selector(observed.selector), back)))
    if short:
        # With the flip, before the Event that says it was scaled: left to
        # _ensure_stable, after it, a scale refused (a webhook on Deployments
        # that is down) cut the cycle once "scaled from 1 to 3 pods" was
        # told, and each retry, deciding the abort again, told it again
        # while the twin stayed at 1.
        draft.do(ScaleTwin(back, size))
    kept = _kept_out_after_abort(state)
    draft.set(
        stable=back,
        replicas=size,
        scaled_from=twin.replicas if short else 0,
        stable_revision=state.previous_revision,
        # The baseline and the scrape timing are the old twin's own pods
        # again (its ReplicaSet, checked above to run that revision; its
        # whole twin when not known): kept, they named the aborted release's.
        stable_pods=twin.replica_set,
        failed_revision=kept,
        # Only while the revision the undo took out stays out: flipped back
        # to it, the status went on saying "serving revision r1 (undo); the
        # Deployment still holds r3, which stays out" while r3 served.
        undone=state.undone and kept == state.failed_revision,
        scale_down=None,
        scale_down_at=0.0,
        previous_revision="",
        requested_weight=0,
        effective_weight=0.0,
    )
    draft.emit(
        "Aborted",
        f"{who} aborted {revision} after promotion: traffic flipped back to "
        f"the {back} twin ({draft.state.stable_revision})"
        + (
            f", scaled from {twin.replicas} to {state.replicas} pods: until they start, "
            f"its {twin.ready} ready pods take all the load"
            if short
            else ""
        ),
        warning=True,
    )
    draft.do(Record(revision, "aborted", f"aborted by {who} after promotion"))
