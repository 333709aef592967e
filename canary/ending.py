"""How a rollout ends: rolled back, or found already ended by its record
(a cycle cut after the record, a new leader). Pure functions over a Draft."""

from __future__ import annotations

from canary.action_text import parse_action, taken
from canary.autoscaling import promotion_size, serving_size
from canary.model import Color, Observed, Record, ScaleTwin, SetSelector, State, other
from canary.plan import Draft
from canary.spec import TWIN_LABEL, RolloutSpec
from canary.twins import OWNED_SELECTOR_KEYS, base_selector, only, template_hash

FRESH_ROLLOUT = {
    "recheck": False,
    "gate_wait": "",
    "gate_checked": 0.0,
    "gate_reason": "",
    "passed_under": "",
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
    "serving_since": 0.0,
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
    "lost_from": 0.0,
    "lost_s": 0.0,
    "restarts_before": (),
    "restarts_unread": False,
    "flip_waits": 0.0,
    "promote_by": "",
    "config_churn": 0,
}


def kept_for_abort(
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


def promoted_state(spec: RolloutSpec, state: State, replicas: int, at: float) -> dict[str, object]:
    """The state once the canary is promoted at `at`, serving `replicas`: it
    is the stable twin, the old one kept for an abort (kept_for_abort).
    After an undo the source still holds the revision undone; it must not
    roll out again until the team changes the Deployment (failed_revision)."""
    return {
        "replicas": replicas,
        "stable": state.canary,
        "stable_revision": state.canary_revision,
        "stable_pods": state.canary_pods,
        "canary": None,
        "canary_revision": "",
        **kept_for_abort(spec, state.stable, state.stable_revision, at),
        "failed_revision": state.undo_of,
        "undone": bool(state.undo_of),
        "undo_of": "",
        **FRESH_ROLLOUT,
        "requested_weight": 100,
        "effective_weight": 100.0,
    }


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
        # The size it was promoted at, as advance_promotion sets it: kept at the
        # old stable's, the next lines scaled the new twin down to that
        # share right before the Service flipped to it (16 pods to 8).
        size = max(promotion_size(state, observed), state.promote_to)
        draft.set(**promoted_state(spec, state, size, ended))
    else:
        failed = outcome in ("rolled-back", "aborted")
        # The load the canary served comes back to the stable twin: autoscaled,
        # at what both twins served (take_the_load_back), as the ended
        # decision meant to. Its scale is the write most likely not to have
        # landed (the first of a rollback, before the selector's: refused by
        # a Deployment webhook that is down, a policy); the old status's
        # size, the stable's share, put the whole load on half the pods.
        size = serving_size(state, observed)
        if size > state.replicas:
            back = only(base_selector(observed.selector), state.stable)
            if draft.selector != back and not stable_down(observed, state.stable):
                # Before the scale the size asks for (decide._ensure_stable), as
                # the steady state would after it: a refused scale would
                # hold the failing canary in the Service.
                draft.do(SetSelector(back))
            draft.set(replicas=size, scaled_from=state.scaled_from or state.replicas)
        draft.set(
            canary=None,
            canary_revision="",
            failed_revision=_kept_out(state, failed),
            undo_of="",
            **FRESH_ROLLOUT,
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
    if target is None or target not in observed.undos:
        return False
    outcome = observed.outcomes.get(target)
    # An undo to the serving revision starts nothing: its entry is promoted
    # in the same decision (manual._back_to_serving).
    return outcome == "progressing" or (
        outcome == "promoted"
        and target == state.stable_revision
        and observed.ended.get(target, 0.0) >= state.rollout_started
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


def source_stands_in(state: State, observed: Observed) -> bool:
    """The Service selects the source's own pods (our keys gone from its
    selector), some of them ready and of the stable twin's template, while
    the stable twin has fewer ready pods than they are (stand_in_needs) and
    no canary serves: moved onto the twin, the Service would lose pods, all
    of them when it has none ready, and they are pods of what was analysed.
    Also while the stable twin is gone (deleted with the reinstall): made
    again, it has no ready pod for a while either. A rollout in flight
    whose canary has no endpoint (paused before its pods came up) serves
    nothing either: refused for any canary in flight, the Service went
    from the source's 3 pods to none (found by the random-operations fuzz)."""
    stable = state.stable
    if stable is None:
        return False
    source, twin = observed.source, observed.twin(stable)
    if twin.exists:
        same = stable in source.same_as - source.reads_live
    else:
        same = bool(source.revision) and source.revision == state.stable_revision
    return (
        not any(k in observed.selector for k in OWNED_SELECTOR_KEYS)
        and _standing(state, observed) > 0
        and (same or release_over_stand_in(state, observed))
        and max(twin.ready, twin.ready_mixed) < stand_in_needs(state, observed)
        and not observed.twin(other(stable)).endpoints
    )


def release_over_stand_in(state: State, observed: Observed) -> bool:
    """A release applied to the source while its pods of the stable
    revision stood in (State.stood_in): the Deployment controller rolls it
    over them, and until it has rolled, observe counts none of its pods
    ready (Source.ready is of its current template only) while they serve.
    Ended then, the selector went onto a stable twin with no ready pod (3
    endpoints to 0). The hold gates the release at once so that none of
    its pods comes up later, and narrows the Service to the pods that stood
    in (decide._narrow_hold) when one the Deployment controller made ready
    before that serves."""
    source = observed.source
    return (
        state.stood_in
        and source.exists
        and not source.rolled_out
        and source.revision != state.stable_revision
    )


def _standing(state: State, observed: Observed) -> int:
    """The source's pods that serve: its ready ones, or mid-release over the
    hold (release_over_stand_in) those of the stable revision's ReplicaSet
    among the Service's endpoints (stood_in_pods)."""
    if not release_over_stand_in(state, observed):
        return observed.source.ready
    return len(stood_in_pods(state, observed))


def stood_in_pods(state: State, observed: Observed) -> list[str]:
    """The source's pods behind the Service of the ReplicaSet that stood in
    (State.stood_in_hash); all of its pods there when that was not read
    (the release's among them, as the Service has them)."""
    if not state.stood_in_hash:
        return list(observed.source_pods)
    return [
        pod
        for pod in observed.source_pods
        if template_hash(pod, observed.deployment) == state.stood_in_hash
    ]


def stand_in_needs(state: State, observed: Observed) -> int:
    """The stable twin's ready pods that end a reinstall's hold: as many as
    the source's that serve, within the twin's size (a pod it never asks
    for is never waited for); at least one. Ended at its first ready pod,
    the Service went from the source's 3 pods to 1 (found by review)."""
    assert state.stable is not None
    twin = observed.twin(state.stable)
    return max(1, min(_standing(state, observed), twin.replicas if twin.exists else 0))


def take_the_load_back(draft: Draft, observed: Observed) -> None:
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
    take_the_load_back(draft, observed)
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
        **FRESH_ROLLOUT,
    )
    draft.emit(reason, f"revision {revision}: {detail}", warning=mark_failed)
    draft.emit(
        "RolledBack",
        f"revision {revision} {outcome}: {where}. Reason: {detail}",
        warning=mark_failed or held,
    )
    draft.say(f"revision {revision} {outcome}: {detail}")
    draft.do(Record(revision, outcome, f"{reason}: {detail}"))
