"""A step's replicas and selectors: what the twins and the Service must
be for a step, whether the canary serves it, and the progress deadline
while it does not. Pure functions over a Draft."""

from __future__ import annotations

from dataclasses import replace

from canary.ending import rollback, stable_down
from canary.looks import clock_text
from canary.model import (
    COLORS,
    ApplyPreview,
    ApplyTwin,
    Color,
    Observed,
    ScaleTwin,
    SetSelector,
    State,
    Twin,
    other,
)
from canary.plan import Draft
from canary.schedule import confirming, counts_young, next_fast, next_scheduled
from canary.spec import FIELD_MANAGER, RolloutSpec, Strategy
from canary.twins import (
    base_selector,
    both,
    canary_replicas,
    effective_weight,
    only,
    pods_why,
    team_selector,
    twin_name,
)


def stages(spec: RolloutSpec) -> tuple[int, ...]:
    """Live traffic weights per step; blue-green has one step with the new
    twin on the preview Service only."""
    return spec.steps if spec.strategy is Strategy.CANARY else (0,)


def reachable(observed: Observed, state: State) -> Observed:
    """The observation with a canary's endpoints (the preview's for blue-green)
    counted only if they are listed with every port the stable twin's are.
    A Service port whose targetPort names a container port (`targetPort:
    http`) reaches only pods that declare it: a release that renamed it, or
    dropped its container's `ports:` list, is still a ready endpoint, in a
    slice without that port, and kube-proxy sends it nothing there.
    Counted, a step said it served its weight while it served none, and a
    blue-green flip put production on pods the Service could not reach
    (found by review). Against the stable twin's, not every Service port:
    a port no pod ever declared (an old `debug` one) holds nothing back,
    and a port the release adds does not make the stable twin look down."""
    if state.canary is None or state.stable is None:
        return observed
    have = observed.twin(state.stable).ports
    if not have:
        return observed
    canary = observed.twin(state.canary)
    lacking = have - canary.ports if canary.ports is not None and canary.endpoints else frozenset()
    preview = (
        have - observed.preview_ports
        if observed.preview_ports is not None and observed.preview_endpoints
        else frozenset()
    )
    if not lacking and not preview:
        return observed
    why = (
        "its ready pods are listed without the Service's targetPort "
        f"{', '.join(sorted(lacking | preview))} (no container port of that name in their "
        "template: renamed, or the container's `ports:` dropped), so the Service sends them "
        "nothing there"
    )
    twins = dict(observed.twins)
    if lacking:
        twins[state.canary] = replace(canary, endpoints=0, not_ready_why=why)
    elif not canary.not_ready_why:
        twins[state.canary] = replace(canary, not_ready_why=why)
    return replace(
        observed, twins=twins, preview_endpoints=0 if preview else observed.preview_endpoints
    )


def selected(observed: Observed, state: State) -> Observed:
    """The observation with why the canary's ready pods are no endpoints
    when they lack a key of the team's selector: a release whose template
    dropped or changed a label the Service selects by (a chart refactor
    renaming `app.kubernetes.io/name`). Its pods are never selected, so the
    step (or the preview) waits and is rolled back at the deadline, as it
    should (promoted, the Service would select no pod), but the status and
    the rollback said only "1/1 pods ready, 0/1 endpoints" (found by
    review). A key the stable pods lack too is left out of the selector
    (decide._restore_selector)."""
    if state.canary is None:
        return observed
    canary = observed.twin(state.canary)
    if not canary.exists or canary.revision != state.canary_revision or canary.endpoints:
        return observed
    labels = dict(canary.labels)
    lacking = {k: v for k, v in team_selector(observed.selector).items() if labels.get(k) != v}
    if not labels or not lacking:
        return observed
    why = (
        f"its pods lack the Service selector's {', '.join(f'{k}={v}' for k, v in lacking.items())} "
        "(not in the release's pod template), so the Service never selects them"
    )
    told = f"{canary.not_ready_why}; {why}" if canary.not_ready_why else why
    return replace(
        observed, twins={**observed.twins, state.canary: replace(canary, not_ready_why=told)}
    )


def stand_still(draft: Draft, now: float) -> None:
    if not draft.state.still_since:
        draft.set(still_since=now)


def move_again(draft: Draft, now: float) -> None:
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
# A write's endpoints follow it within a second or two (the EndpointSlice
# controller); the same write still decided this long past the deadline did
# not take (_endpoints_follow_this_write).
FOLLOW_S = 10.0


def follow_lag(draft: Draft, observed: Observed, now: float) -> None:
    """Since when the Deployment controller has not observed the canary
    twin's spec (kube-controller-manager down or far behind): the pods the
    step asked for are not even asked of the cluster yet. Once it has, the
    time it lagged does not count against the progress deadline, as a
    pause's does not (not_ready_yet holds the deadline meanwhile)."""
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
    is credited as a lagging controller-manager's is (follow_lag)."""
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
            f"since {clock_text(state.lagging_since)}: the cluster has no room yet for either "
            "twin's new pods, so the progress deadline waits for it"
        )
    return (
        f"; the Deployment controller has not observed Deployment "
        f"{twin_name(observed.deployment, state.canary)} since {clock_text(state.lagging_since)} "
        "(kube-controller-manager down or far behind?): the progress deadline waits for it"
    )


def _deadline_basis(state: State) -> float:
    return max(state.step_started, state.deadline_from, _lost_since(state))


def _lost_since(state: State) -> float:
    """Since when the step is short of pods, for its deadline: the loss, or
    while a run of losses goes on (State.lost_from), as far before it as the
    run's earlier losses lasted (State.lost_s): the time lost counts, not
    the time served between. With each loss counted from itself, a canary
    pod OOM-killed a few seconds after each start and back after its
    back-off (under the deadline) started the window again at each return
    and reached the deadline at no loss: the step stood for good, neither
    promoted nor rolled back (review churn)."""
    lost = state.unready_since
    return lost - state.lost_s if lost and _run_from(state) else lost


def _run_from(state: State) -> float:
    """State.lost_from if it is this step's, as served now (0.0: none). One
    from before the step began (or its promotion, a retry, a restart of
    the canary twin's pods: each begins again) is no run of these pods'."""
    since = state.lost_from
    return since if since >= max(state.step_started, state.step_ready) > 0 else 0.0


def _lose(draft: Draft, spec: RolloutSpec, now: float) -> None:
    """A pod of the step that served is lost now. It goes on a run of
    losses (State.lost_from) unless the step served a whole interval since
    the last of them started its window again: then it is a loss of its
    own, counted from now, as a first one is."""
    state = draft.state
    draft.set(unready_since=now)
    if state.lost_from and (not _run_from(state) or now - state.window_start >= spec.interval):
        draft.set(lost_from=0.0, lost_s=0.0)


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


def await_analysis(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> None:
    """The step serves at its weight: come back when its next check is due."""
    state = draft.state
    scrape = observed.scrape_interval
    due = next_scheduled(spec, state, scrape, observed.scrape_phase, observed.searchable_after)
    if spec.analysis.fast_metrics:
        young = counts_young(spec, state)
        fast = next_fast(state, scrape, observed.scrape_phase, young)
        due = fast if confirming(spec, state) else min(due, fast)
    if state.checked < state.step_ready:
        draft.say(
            f"step {state.step + 1}/{len(stages(spec))} at {state.requested_weight}% "
            f"({effective_text(state.effective_weight, observed, spec)}): analysing"
        )
    draft.wake_in(due - now)


def effective_text(weight: float, observed: Observed, spec: RolloutSpec) -> str:
    """The effective weight as said in the status and the step's Events: a
    share of the ready pods, which is a share of the requests only while the
    Service spreads them over its pods; routing by client, node or zone
    (observe.routing), it is not (rollout._told_routing). Said "effective",
    it claimed a share of requests the canary did not get (found by review)."""
    if observed.routing and spec.strategy is Strategy.CANARY:
        return f"{weight:g}% of the ready pods; requests follow {', '.join(observed.routing)}"
    return f"{weight:g}% effective"


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
        # Its HPA sizes it (the rollout holds, rollout._source_paused): no fight over
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
            draft.set(
                effective_weight=effective_weight(
                    canary.endpoints, stable.endpoints, observed.other_endpoints
                )
            )
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
    down = stable_down(observed, state.stable)
    # In the Service as the step keeps it (_placed): once its pods have
    # served (their ReplicaSet learned), also at a later step still waiting
    # for its new pods. Both twins before that (a manifest exported
    # mid-step, `canary.io/service` in its selector, synced while the
    # rollout stands before its canary served) is no step's: the canary's
    # pods, never judged, served their share for the whole pause, and its
    # window began only at the resume (found by review).
    served = bool(state.step_ready or state.canary_pods) or down
    placed = both(base, observed.service) if served else only(base, state.stable)
    ours = observed.selector_manager == FIELD_MANAGER
    if ours and draft.selector == both(base, observed.service):
        # Both twins as the controller itself last wrote them: the step put
        # the canary in as its pods got ready (_placed), before they are
        # listed (an instant later; never, when they lack a key of the
        # selector: selected). No sync to undo: taken for one, a pause then
        # moved the Service off the canary with a Warning naming our own
        # write as someone else's, and the resume moved it back (found by
        # review).
        return
    if draft.selector in (placed, only(base, state.stable)):
        return
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
        # not serve its old pods as if they were the canary. Once its own
        # pods have served (their ReplicaSet learned), it stays in while it
        # grows or a lost pod comes back, at the first step too, unless its
        # template was put back after a hand edit (its ReplicaSet forgotten,
        # above): the edited pods go on running until the put-back has
        # rolled, and would serve at the step's weight, analysed by nothing.
        # A first step taken out while short of a pod held its replacement
        # for good behind a load balancer's readiness gate (the AWS Load
        # Balancer controller's, a GKE NEG's: injected into a pod created
        # while the Service selects it, set only while it does), and the
        # release was rolled back at its deadline (found by review).
        clean = current and canary.updated and canary.ready >= want
        keep = bool(state.canary_pods)
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
        serving = previewed(draft, observed)
    return live, serving


def previewed(draft: Draft, observed: Observed) -> int:
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
    if observed.preview_selector != wanted or observed.preview_ports_stale:
        # Our own preview lacking a port the team added to the Service since
        # (or changed) cannot tell that the canary's pods lack it: observe
        # counts a port the preview lacks as reached. It takes the Service's
        # ports (Actor.apply_preview) before its endpoints count.
        draft.do(ApplyPreview(wanted))
        return 0
    return observed.preview_endpoints


def _back_at_weight(draft: Draft, observed: Observed, now: float) -> None:
    """The step's pods all serve again after some were lost. Short of pods,
    the step served below its weight (at the first step too: kept in the
    Service once its pods have served, _placed): its window starts again
    now, a whole interval at its weight. Kept, the check due as the pods
    came back passed the step on the window from its start (found by
    review: promoted 1 s after a pod lost for 8.5 s of a 10 s interval).
    Failures seen meanwhile still count. Not for a blip of up to two
    scrapes (a readiness probe timing out once): Prometheus barely saw it,
    and a canary whose pods blip more often than its interval would never
    pass a step."""
    lost = draft.state.unready_since
    draft.set(unready_since=0.0)
    # Pods added, not lost (the app grew: its HPA, the team), need nothing
    # here: follow_lag moves the loss to the end of the growth's wait, so a
    # step under a ramping load is not started again at each growth (found
    # by review). Skipped whenever the app grew, a pod the canary had lost
    # meanwhile (the release's doing, see _growing) went unnoticed, and the
    # step passed on a window it had served short of that pod.
    if now - lost > 2 * observed.scrape_interval:
        draft.set(window_start=now, checked=now)
        # The run of losses this one goes on (_lose ended an old one) or
        # starts. The time lost is what it counts: counted from the run's
        # first loss with the time served between, nodes drained one after
        # another (canary pods evicted minutes apart, each back a minute
        # later, at a 10-minute interval) rolled a good release back at the
        # third eviction, 180 s lost of a 600-s deadline. A blip is no loss
        # of the run: it adds nothing.
        since = _run_from(draft.state)
        if 0 < since < lost:
            draft.set(lost_s=draft.state.lost_s + now - lost)
        else:
            draft.set(lost_from=lost, lost_s=now - lost)


def pods_while_paused(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> None:
    """Paused, the step's placement (step_in_place) does not run, and it is
    what notes a pod lost and back: a canary pod lost for most of an
    interval and back while paused left no trace, and the scheduled check
    due at the resume passed the step at once on the window from its start
    (found by review). The same is noted here from what is observed, and
    nothing is placed: lost, the deadline counts from the loss once resumed
    (move_again); back, the window starts again (_back_at_weight)."""
    state = draft.state
    if state.canary is None or not state.step_ready or state.promoting:
        return  # a promotion waits for its pods with unready_since of its own (advance_promotion)
    # The weight it serves, as keep_weight holds it: not the step's as the
    # annotation says now. Steps edited while paused apply once it moves
    # (rollout._held_where_it_serves); read from the spec, a step cut away
    # raised IndexError at every cycle, and a weight raised read as pods lost.
    weight = state.requested_weight if spec.strategy is Strategy.CANARY else 0
    want = canary_replicas(state.replicas, weight) if weight else state.replicas
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
        _lose(draft, spec, now)


def step_in_place(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> bool:
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
        draft.set(
            step_ready=0.0,
            checked=0.0,
            window_start=0.0,
            canary_pods="",
            step_started=now,
            serving_since=0.0,  # out of the Service until its pods are put back
        )
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
    # (Of this revision's pods only: a twin not re-templated yet serves the
    # release before, whose share read as this one's: _counted.)
    effective = (
        effective_weight(
            canary.endpoints if current else 0, stable.endpoints, observed.other_endpoints
        )
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
                step_ready=now,
                window_start=now,
                fast_failed=0.0,
                fast_checked=0.0,
                suspected="",
                # The first step's, kept through the later ones.
                serving_since=state.serving_since or now,
            )
            if state.step > 0:
                # Later steps are told by the Event that passes them (with the
                # weight they achieved): one Event per step, not two.
                return True
            told = (
                f"revision {state.canary_revision} step {state.step + 1}/{len(stages(spec))}: "
                + (
                    f"weight {weight}% requested, {effective_text(effective, observed, spec)} "
                    f"({want} canary pods)"
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
        _lose(draft, spec, now)  # it served: the deadline counts from this loss (or its run's)
    pods_ready = current and canary.updated and canary.ready >= want
    if _endpoints_follow_this_write(draft, spec, observed, pods_ready, now):
        return False
    not_ready_yet(
        draft,
        spec,
        observed,
        now,
        f"step {state.step + 1}/{len(stages(spec))}: waiting for the canary, "
        + _counted(canary, serving, want, current)
        + _not_taking(draft, spec, pods_ready),
    )
    return False


def follow_restarted(draft: Draft, observed: Observed) -> None:
    """Standing at a gate or promoting, a twin's pods restarted (`kubectl
    rollout restart`: the same revision, a new ReplicaSet, no edit, kept):
    the looks follow them. Only step_in_place learned the ReplicaSets, and
    it does not run while the rollout stands: the looks queried the ones
    the step served with, gone once the restart rolled. The canary's read
    "no sample" (not scraped), and an open gate or the flip waited for good
    over a canary Prometheus scrapes as ever; the stable twin's read no
    request, so a canary that hung was not found quiet (_went_quiet asks
    whether the stable twin still serves) and the flip went onto it (found
    by review). The canary's step has passed on the same revision; the
    next step, or the flip's looks, judge its restarted pods. Not while
    paused: the resume judges the step afresh on them (step_in_place)."""
    state = draft.state
    if state.canary is None or state.stable is None:
        return
    stable = observed.twin(state.stable)
    if stable.exists and stable.revision == state.stable_revision and stable.replica_set:
        draft.set(stable_pods=stable.replica_set)  # as step_in_place, every cycle
    canary = observed.twin(state.canary)
    if (
        canary.exists
        and canary.revision == state.canary_revision
        and not canary.edited_by  # a hand edit is put back (TwinRestored), never followed
        and canary.replica_set
        and state.canary_pods not in ("", canary.replica_set)
    ):
        draft.set(canary_pods=canary.replica_set)


def _counted(canary: Twin, serving: int, want: int, current: bool) -> str:
    """The step's pods ready and serving, of its revision only: a twin not
    re-templated yet (this very decision writes it, or the write never
    took) runs the release before, whose ready pods read as this one's
    ("3/3 pods ready" of a release with none, in the rollback's Event at
    the deadline too)."""
    if not current:
        return f"0/{want} pods ready, 0/{want} endpoints"
    return f"{min(canary.ready, want)}/{want} pods ready, {min(serving, want)}/{want} endpoints"


def _endpoints_follow_this_write(
    draft: Draft, spec: RolloutSpec, observed: Observed, pods_ready: bool, now: float
) -> bool:
    """The pods are ready and this very decision points the Service (or the
    preview) at them: their endpoints cannot be there yet, whatever the clock
    says, so the deadline is not judged now. (Pods not ready: it is, even in
    a fight over the selector.) Not once the deadline is past by more than
    FOLLOW_S: the same write decided at every cycle since has not taken (the
    preview's creation refused by a quota on Services or a policy, its
    selector put back by another writer each time, our writes to it held by
    the write guard). Deferred, the deadline never came: found by review, a
    blue-green rollout waited "for the canary's endpoints" for good, its
    full-size twin up, previewed by nobody."""
    writes = draft.selector != observed.selector or any(
        isinstance(a, ApplyPreview) for a in draft.actions
    )
    if not (pods_ready and writes):
        return False
    state = draft.state
    if now - _deadline_basis(state) > spec.progress_deadline + FOLLOW_S:
        return False
    behind = (
        f" behind {spec.preview_service}"
        if any(isinstance(a, ApplyPreview) for a in draft.actions)
        else ""
    )
    draft.say(
        f"step {state.step + 1}/{len(stages(spec))}: waiting for the canary's endpoints{behind}"
    )
    draft.wake_in(1.0)
    return True


def _not_taking(draft: Draft, spec: RolloutSpec, pods_ready: bool) -> str:
    """Why ready pods have no endpoint, said where on-call looks (the status,
    the rollback's Event), when the preview is what this decision writes
    again: a write that did not take. "" otherwise."""
    if not (pods_ready and any(isinstance(a, ApplyPreview) for a in draft.actions)):
        return ""
    return (
        f"; the preview Service {spec.preview_service} does not select the "
        f"{draft.state.canary} twin alone, and writing it does not take (its creation or "
        "update refused: a quota on Services, an admission policy; or another writer puts "
        "its selector back)"
    )


def not_ready_yet(
    draft: Draft, spec: RolloutSpec, observed: Observed, now: float, waiting: str
) -> None:
    """Pods are not ready yet: past the progress deadline roll back, else come
    back when the deadline falls (a watch event may wake us sooner)."""
    canary = observed.twin(draft.state.canary)
    # Said where on-call looks (status, the rollback's Event): a pods quota
    # otherwise read as a release whose pods never got ready.
    waiting += pods_why(canary)
    waited = now - _deadline_basis(draft.state)
    lag = _lag_text(draft.state, observed, now)
    if lag or (canary.unobserved and waited > spec.progress_deadline):
        # Not the release's doing: rolled back now, a good release was kept
        # out until someone retried it. Its time is taken off once it is
        # back (follow_lag); a watch event on the twin wakes us then.
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
