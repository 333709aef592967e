"""The promotion: the canary grown to full size, then the Service flipped
onto it once every pod serves and a look vouches for it. Pure functions
over a Draft."""

from __future__ import annotations

from canary.autoscaling import promotion_size
from canary.ending import promoted_state
from canary.looks import (
    clock_text,
    halted_by_a_look,
    last_look,
    suspicion_holds,
    unread_for,
    unread_since,
)
from canary.model import ApplyTwin, Observed, Record, ScaleTwin, SetSelector, State
from canary.placement import await_analysis, not_ready_yet, previewed, stages, step_in_place
from canary.plan import Draft
from canary.schedule import next_fast
from canary.spec import RolloutSpec, Strategy, analysis_digest
from canary.twins import base_selector, both, effective_weight, only


def start_promotion(
    draft: Draft, spec: RolloutSpec, observed: Observed, now: float, passed: str = ""
) -> None:
    revision = draft.state.canary_revision
    # What the pass answered: an edit of the analysis before the flip takes
    # it back (rollout._analysis_edited).
    draft.set(promoting=True, step_started=now, passed_under=analysis_digest(spec))
    advance_promotion(draft, spec, observed, now)
    if draft.state.promoting:  # not flipped in this cycle: say why we wait
        lead = passed or f"revision {revision}"
        draft.emit("PromotionStarted", f"{lead}; promoting once every new pod is a ready endpoint")


def advance_promotion(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> None:
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
        # At the last step as the steps read now: cut while it promoted
        # (nothing to do then, past the last step), the one it promoted from
        # is gone, and placed it raised IndexError at every cycle.
        last = min(state.step, len(stages(spec)) - 1)
        draft.set(promoting=False, promote_to=0, flip_waits=0.0, promote_by="", step=last)
        if step_in_place(draft, spec, observed, now):
            await_analysis(draft, spec, observed, now)
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
        draft.set(
            effective_weight=effective_weight(
                canary.endpoints, stable.endpoints, observed.other_endpoints
            )
        )
        if draft.selector != both(base, observed.service):
            draft.do(SetSelector(both(base, observed.service)))
    else:
        # Also when the strategy became blue-green while promoting.
        serving = previewed(draft, observed)
    if not (canary.updated and canary.ready >= replicas and serving >= replicas):
        if state.flip_waits and not state.unready_since:
            # Every pod was ready and the flip waited for a look: the deadline
            # counts from this loss, not from the promotion's start (else a
            # pod restarting after an hour's wait for Prometheus rolled back
            # a release that had passed every step, at once).
            draft.set(unready_since=now)
        not_ready_yet(
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
    if suspicion_holds(draft, spec):
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
    # in the history (status_writes.ends_rollout): a flip cut after the Event is finished
    # by the retry, never decided again. (Taken back once: it seemed to make
    # a flip onto a pod that had just turned unready likelier; the cause was
    # a stale EndpointSlice, which the pods' own readiness now vetoes.)
    # Said as asked, not as done: the flip refused for good (a policy on
    # the Service), it is tried again at every retry and never lands, and
    # "now selects" stood for good over both twins at full size.
    kept = (
        f"the {old} twin stays up {spec.scale_down_delay:g}s after it for a fast abort"
        if spec.scale_down_delay
        else f"the {old} twin scales down once the Service has left it (scale-down-delay 0)"
    )
    draft.emit(
        "Promoted",
        f"revision {revision} promoted: the Service is being switched to the {new} twin; "
        f"{kept}{told}",
        warning=blind,
    )
    draft.do(SetSelector(only(base, new)))
    # At the size the new stable twin serves at: an HPA copy not yet in place
    # on it (or gone) must not have it cut back to the old twin's share.
    draft.set(**promoted_state(spec, state, replicas, now))
    draft.say(f"serving revision {revision} from the {new} twin")
    draft.do(Record(revision, "promoted", "all steps passed"))
    draft.wake_in(spec.scale_down_delay)


def _flip_unlooked(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> bool:
    """The automatic flip goes only over what a look has read, as an open
    gate does (unlooked): standing at full size, fast looks watch the
    canary, but while Prometheus fails each look errors and they pause an
    interval, again and again. Before, the flip went ahead over minutes no
    look had read, and a canary that turned bad meanwhile was promoted.
    It waits instead, for as long as Prometheus fails: no error counts
    while the rollout stands (as at a gate or a pause), so nothing rolls a
    release back for Prometheus's fault; the progress deadline does not
    count the wait (see advance_promotion). The first cycle that waits asks for the
    next look at once; after that the looks keep their pace (an interval
    after each error), so a failing Prometheus gets no flood. A person's
    `canary promote` does not wait: they chose to ship (_flip_told)."""
    state = draft.state
    if state.promote_by:
        return False
    if halted_by_a_look(draft):
        return True
    since = unread_for(spec, state, observed, now)
    if not since:
        return False
    scrape = observed.scrape_interval
    if not state.flip_waits:
        draft.set(flip_waits=now, fast_checked=min(state.fast_checked, now - scrape))
    draft.say(
        "promoting: every new pod is ready, but no check has read the canary "
        f"{unread_since(state)} (Prometheus failing or answering late, or the canary's pods "
        f"not scraped{last_look(state)}); the flip has waited since "
        f"{clock_text(draft.state.flip_waits)} and "
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
    since = unread_for(spec, state, observed, now)
    blind = bool(state.promote_by and since)
    if blind:
        told += (
            f"; promoted by {state.promote_by} although no check had read the canary {since} "
            "(Prometheus failing or answering late, or the canary's pods not scraped)"
        )
    return told, blind
