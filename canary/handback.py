"""Handing an app back to the team's own Deployment: when management is
removed (`canary.io/strategy` deleted), and when the Service is gone (or
recreated without our annotations) while its twins still run. Pure
functions over a Draft.

The order never leaves users on fewer pods, or on pods nobody analysed:
1. a canary (unanalysed) goes to 0 first, and the Service, if it still
   exists, selects only the stable twin;
2. if the source holds another revision than the one serving (a rolled-back
   or aborted release, one in flight), the stable twin's template is written
   back into it, and a Warning says so;
3. the source loses our scheduling gate, then goes to full size, no
   smaller than what served;
4. only once its pods are ready does the Service select them, and only then
   do the twins go.
"""

from __future__ import annotations

from collections.abc import Mapping

from canary.autoscaling import follow_size, grown_for_handback, handback_size, serving_size
from canary.ending import source_stands_in
from canary.model import (
    COLORS,
    ApplyTwin,
    Claim,
    Color,
    DeleteTwins,
    GateSource,
    Observed,
    Plan,
    RestoreSource,
    ScaleSource,
    ScaleTwin,
    SetSelector,
    State,
    Twin,
    Unclaim,
    other,
)
from canary.plan import Draft
from canary.rebuild import desired_replicas, foreign, other_owner, ours
from canary.spec import SERVICE_LABEL
from canary.twins import (
    OWNED_SELECTOR_KEYS,
    POD_TEMPLATE_HASH,
    base_selector,
    only,
    pods_why,
    team_selector,
)

# A Service deleted and created again within this time (`kubectl replace
# --force`, a Helm upgrade that recreates it) is not a reason to hand back.
ORPHAN_GRACE_S = 10.0


def release(state: State, observed: Observed) -> Plan:
    """Management removed from a Service that still exists."""
    draft = Draft(state, observed)
    if state == State():
        return draft.plan()
    if other_owner(observed):
        # A Service that was in Conflict: the Deployment and its twins are
        # another's. Only our status goes; handing back would delete the
        # twins that serve the other Service.
        draft.release = True
        return draft.plan()
    stable = state.stable
    twins = ours(observed)
    if not state.adopted and not any(k in observed.selector for k in OWNED_SELECTOR_KEYS):
        # Removed mid-adoption, before the Service was switched: the source's
        # own pods serve it (it goes to 0 only after the switch), so nothing
        # moves to a twin on the way out. Before, the Service was pointed at
        # the new twin first, waiting for its pods: for good when they never
        # came (a ResourceQuota refusing them, the very reason to give up),
        # the twin, the claim and the status left behind.
        _never_switched(draft, observed, twins)
        return draft.plan()
    if stable is None or stable not in twins:
        # No stable twin (deleted, and management removed before it was put
        # back): it is put back first if the source holds another revision;
        # either way the source serves before anything of ours goes.
        _without_stable(draft, state, observed, desired_replicas(observed, twins))
        return draft.plan()
    # With none of the team's keys left (the strategy and the selector
    # dropped in one commit), our Service label names this app's twin while
    # the team's pods come up: the twin label alone selected every managed
    # app's twin of that colour in the namespace (found by review).
    base = base_selector(observed.selector) or {SERVICE_LABEL: observed.service}
    # Autoscaled mid-rollout, the stable twin was sized for its share only:
    # it takes all the traffic at once (and grows to what both twins served
    # meanwhile), and the team's Deployment gets that size. Scaled to 0 by
    # hand, it is brought back first.
    # The HPA's live size first (follow_size), as every valid cycle takes it:
    # the status's is a cycle old, and the twin just grown beside a canary
    # that has not followed yet was asked for less than both served.
    # Once only (state.handback_served): grown, the twin's live size is no
    # longer its HPA's share, and what both served is counted no more.
    follow_size(draft, observed)
    if not state.handback_served and state.canary is not None and grown_for_handback(twins[stable]):
        # Grown already, as the twin's mark says: the status that kept the
        # size was lost after the scale (a Conflict, the lease lost, a
        # kill), or cleared by the strategy put back meanwhile. Taken up as
        # if it had landed; read as the HPA's share, the canary's was added
        # on top again, once per write lost or per flip of the strategy.
        draft.set(handback_served=twins[stable].replicas)
        state = draft.state
    both = state.handback_served or serving_size(draft.state, observed)
    served = max(state.replicas, twins[stable].replicas, both)
    grow = draft.replicas[stable] < served and (
        (state.canary is not None and not state.handback_served) or draft.replicas[stable] == 0
    )
    # The reinstall's hold (ending.source_stands_in): the Deployment's own
    # pods of the stable template serve while the stable twin has too few
    # ready. Handed back as it stands; moved onto the twin first, the
    # hand-back waited for pods that may never come (a quota the
    # Deployment's pods use), `releasing` for good (found by review).
    standing_in = source_stands_in(state, observed)
    if standing_in and POD_TEMPLATE_HASH in observed.selector:
        # Narrowed over a release (decide._narrow_hold): the team's keys
        # alone at once. Ungated, the release rolls over the pods that stood
        # in, and a selector kept on their ReplicaSet lost each as it went.
        draft.do(SetSelector(team_selector(observed.selector)))
    if draft.selector != only(base, stable) and not standing_in:
        if twins[stable].ready == 0:
            # Just put back (above), or scaled to 0: none of its pods serves yet.
            if grow:
                _take_the_load(draft, observed, stable, served)
            # Said why (a drain left them Pending, a quota refuses them).
            draft.say(f"releasing: waiting for the {stable} twin's pods{pods_why(twins[stable])}")
            return draft.plan()
        draft.do(SetSelector(only(base, stable)))
    if grow:
        _take_the_load(draft, observed, stable, served)
    auto = observed.autoscaler
    _handback(draft, observed, stable, handback_size(served, auto.min_replicas, auto.max_replicas))
    return draft.plan()


def _take_the_load(draft: Draft, observed: Observed, stable: Color, served: int) -> None:
    """The stable twin grown to what both twins served, once, as a rollback
    takes the load back (ending.take_the_load_back); the size is kept
    (handback_served) for the cycles the hand-back waits. Before, waiting
    (for the stable twin's pods after a drain, for the Deployment's), each
    cycle took the twin's live size, its own growth, for its HPA's share
    and added the canary's on top again (serving_size): 16, 32, 64, ...
    pods, with no bound when the team's HPA has no maximum or is gone
    (found by the random-operations fuzz)."""
    state = draft.state
    grown = state.canary is not None  # what both twins served, not a twin back from 0
    # Marked on the twin in the same write (HANDBACK_ANNOTATION): the status
    # below is written after it, and may be lost or cleared (the strategy
    # put back) while the twin keeps the size. Only where an HPA copy sizes
    # it: at a fixed size its size is never read as a share (serving_size),
    # and its writes stay as they were.
    mark = grown and stable in observed.autoscaler.copies
    draft.do(ScaleTwin(stable, served, handback=mark))
    draft.set(
        replicas=served,
        scaled_from=state.scaled_from or state.replicas,
        handback_served=served if grown else 0,
    )


def orphan(observed: Observed, missing_for: float) -> Plan:
    """The Service is gone, or was recreated without our annotations, while
    twins labelled for it still run. Events go to the team's Deployment."""
    draft = Draft(State(), observed)
    twins = ours(observed)
    if not twins:
        source, auto = observed.source, observed.autoscaler
        if source.exists and source.claim.service == observed.service:
            size = handback_size(source.claim.replicas, auto.min_replicas, auto.max_replicas)
            served = _served(observed)
            if served and source.revision != served and size > source.replicas:
                # It holds another (the canary's release, one rolled back):
                # the serving twin is made again from the history, as with
                # a canary's twin left, or it is let go at 0 and told why.
                if missing_for < ORPHAN_GRACE_S:
                    draft.wake_in(ORPHAN_GRACE_S - missing_for)
                else:
                    _serving_gone(draft, observed, twins, served, size)
                return draft.plan()
            if observed.source.gated:
                draft.do(GateSource(False))  # the team can scale it: its pods must be schedulable
            draft.do(Unclaim())
            if size > source.replicas:
                # Every twin deleted, then the Service (or the Service with
                # the last twin being deleted): whoever did it may have
                # meant the app to stop, so it is let go at the 0 it was
                # held at, and scaling it is the team's call
                # (tests/integration/test_outages.py). Said, with the size
                # it served at: nothing told it, and the app ran no pod.
                draft.emit(
                    "Released",
                    f"no longer managed: Service {observed.service} is gone and no twin is "
                    f"left to hand back from; Deployment {observed.deployment} is let go at "
                    f"{source.replicas} replicas (it served at {size}): scale it if the app "
                    f"should run (kubectl scale deployment/{observed.deployment} "
                    f"--replicas={size})",
                )
        draft.release = True
        return draft.plan()
    if missing_for < ORPHAN_GRACE_S:
        draft.wake_in(ORPHAN_GRACE_S - missing_for)
        return draft.plan()
    served = _served(observed)
    stable = _stable_of_orphan(observed, twins, served)
    if not observed.source.exists:
        if any(observed.twin(c).endpoints for c in twins):
            # A Service recreated without our annotations serves from the
            # twins: they are all it has until the Deployment is back.
            draft.wake_in(ORPHAN_GRACE_S)
            return draft.plan()
        draft.do(DeleteTwins())
        draft.emit(
            "Released",
            f"Service {observed.service} and Deployment {observed.deployment} are both gone: "
            "their twins are removed",
        )
        draft.release = True
        return draft.plan()
    # Within the team HPA's bounds, as release() is: above its maximum the
    # HPA sets the source back at its next sync, and a hand-back scaling it
    # up again each cycle fought it into WriteLoop and never finished.
    auto = observed.autoscaler
    size = handback_size(
        observed.source.claim.replicas or twins[stable].replicas,
        auto.min_replicas,
        auto.max_replicas,
    )
    if served and observed.twin(stable).revision != served and observed.source.revision == served:
        # The stable twin was deleted by hand (during the grace, or with the
        # controller down) and the team's Deployment holds the serving
        # revision: what twins are left are a canary or a rolled-back
        # release. Taken for the stable one, its template was written into
        # the Deployment and scaled to full size.
        _source_only(draft, observed, twins, size)
        return draft.plan()
    if served and observed.twin(stable).revision != served:
        # Neither does the Deployment: nothing left runs a revision that passed.
        _serving_gone(draft, observed, twins, served, size)
        return draft.plan()
    _handback(draft, observed, stable, size)
    return draft.plan()


def _serving_gone(
    draft: Draft, observed: Observed, twins: Mapping[Color, Twin], served: str, size: int
) -> None:
    """No twin runs the revision the claim names as serving (the stable
    twin deleted, or being deleted by a foreground cascade, with the
    Service), and the team's Deployment holds another: the canary in
    flight, a rolled-back release. Taken for the stable one, the canary's
    twin was handed back: the team's Deployment, holding the same
    release, was scaled to the app's full size, unanalysed. The serving
    revision's twin is made again from the history's template, and the
    hand-back goes through it (the Deployment set back, SourceRestored);
    with no template kept, nothing is scaled up and a Warning says why."""
    free = [c for c in COLORS if c not in twins and not foreign(observed.twin(c))]
    if free and served in observed.revisions.values():
        if observed.twin(free[0]).deleting:
            draft.wake_in(ORPHAN_GRACE_S)  # its name is taken until it is gone
            return
        draft.do(ApplyTwin(free[0], served, size))
        return
    if any(observed.twin(c).endpoints for c in twins):
        # A Service recreated without our annotations serves from them.
        draft.wake_in(ORPHAN_GRACE_S)
        return
    if observed.source.gated:
        draft.do(GateSource(False))  # the team can scale it: its pods must be schedulable
    draft.do(DeleteTwins())
    draft.do(Unclaim())
    draft.emit(
        "ReleasedAtZero",
        f"no longer managed: Deployment {observed.deployment} holds revision "
        f"{observed.source.revision}, which never passed analysis, and revision {served}, "
        "the one that served, runs in no twin and its template is kept nowhere (no "
        f"history of Service {observed.service} has it); it is let go at "
        f"{observed.source.replicas} replicas, not {size}. Apply the serving version and "
        f"scale it (kubectl scale deployment/{observed.deployment} --replicas={size}), or "
        "scale it as it is to serve the unanalysed one",
        warning=True,
    )
    draft.release = True


def _source_only(draft: Draft, observed: Observed, twins: Mapping[Color, Twin], size: int) -> None:
    """Hand back to the source as it is, none of the twins left being the
    stable one: they stop first, unless a recreated Service serves from them
    (then they go only once the source's pods are ready, with the rest)."""
    for color in twins:
        if draft.replicas[color] > 0 and observed.twin(color).endpoints == 0:
            draft.do(ScaleTwin(color, 0))
    if _source_up(draft, observed, size):
        _finish(draft, observed, keep="", size=size)


def _served(observed: Observed) -> str:
    """The revision that served, as the claim names it, unless the history
    (kept with the Service, read while it is there) ended it since as
    aborted or rolled back: an abort right after a promotion flips traffic
    back and writes its record before the claim (reconcile._after_record).
    Cut between the two, and the Service deleted, the claim still named the
    aborted release: its twin was taken for the stable one, the old twin
    that served scaled to 0 and the team's Deployment, holding the aborted
    release, handed back at full size. Then the newest revision the history
    says served is the one; none: nothing is known to have passed ("")."""
    claimed = observed.source.claim.stable_revision
    if observed.outcomes.get(claimed) not in ("aborted", "rolled-back"):
        return claimed
    passed = [r for r, outcome in observed.outcomes.items() if outcome in ("promoted", "adopted")]
    return passed[-1] if passed else ""


def _stable_of_orphan(observed: Observed, twins: Mapping[Color, Twin], served: str) -> Color:
    for color in COLORS:
        twin = observed.twins[color]
        if color in twins and served and twin.revision == served:
            return color
    return max(twins, key=lambda c: (observed.twins[c].ready, observed.twins[c].replicas))


def _handback(draft: Draft, observed: Observed, stable: Color, size: int) -> None:
    source = observed.source
    idle = other(stable)
    canary = observed.twin(idle)
    if canary.exists and draft.replicas[idle] > 0:
        if canary.endpoints > 0 and observed.twin(stable).endpoints == 0:
            # Right after a flip (a promotion, an abort back) the Service's
            # endpoints are still all the idle twin's: wait for the
            # EndpointSlice, as a managed scale-down does.
            # (A recreated Service that selects both twins moves nothing: the
            # EndpointSlice's watch event wakes us when something changes.)
            draft.say(f"releasing: waiting for the Service's endpoints to leave the {idle} twin")
            draft.wake_in(5.0)
            return
        draft.do(ScaleTwin(idle, 0))  # pods nobody analysed (or old ones) stop first
    if not source.exists:
        draft.say(
            f"releasing: Deployment {observed.deployment} {_absent(observed)}, so there is "
            f"nothing to hand back to; the {stable} twin keeps serving. {_recreate(observed)}"
        )
        return
    if stable not in source.same_as:
        twin = observed.twin(stable)
        if twin.edited_by and twin.revision in observed.revisions.values():
            # Edited by hand (with the controller down, or in the cycle
            # that let go): its template is the edit, not its revision's,
            # and was copied into the team's Deployment as "the one
            # serving". Put back first from the history, as a managed
            # stable twin is (TwinRestored); the copy follows.
            draft.do(ApplyTwin(stable, twin.revision, draft.replicas[stable], put_back=True))
            draft.say(
                f"releasing: the {stable} twin, edited by {twin.edited_by}, is put back to "
                f"revision {twin.revision} before Deployment {observed.deployment} is set back"
            )
            return
        edit = (
            f" (as {twin.edited_by} edited it: revision {twin.revision}'s template is kept "
            "nowhere any more)"
            if twin.edited_by
            else ""
        )
        draft.do(RestoreSource(stable))
        draft.emit(
            "SourceRestored",
            f"Deployment {observed.deployment} held revision {source.revision}, which is not the "
            f"one serving ({twin.revision}); handing it back would put all "
            f"traffic on pods nobody analysed, so its template was set back to the {stable} "
            f"twin's{edit}. Re-apply the newer version deliberately if you want it",
            warning=True,
        )
        draft.say(f"releasing: the source is set back to revision {observed.twin(stable).revision}")
        return
    if not _source_up(draft, observed, size):
        return
    keep = (
        "" if observed.twin(stable).revision == source.revision else observed.twin(stable).revision
    )
    _finish(draft, observed, keep, size)


def _without_stable(draft: Draft, state: State, observed: Observed, size: int) -> None:
    """Hand back with no stable twin: put back from the history when the
    source holds another revision; else the source is brought to full size
    and ready before the selector takes it and the twins go (before, it was
    left at the 0 it was kept at: an app with no pod, told "3 replicas")."""
    source = observed.source
    stable, served = state.stable, state.stable_revision
    if stable is not None and served and source.exists and source.revision != served:
        # The source holds another revision (one rolled back, one in flight):
        # the stable twin is put back first, from the template the history
        # keeps for the serving revision, and the hand-back goes through it
        # (the source's template set back from it, as always).
        draft.do(ApplyTwin(stable, served, size))
        draft.say(
            f"releasing: the {stable} twin (revision {served}) is put back first; "
            f"Deployment {observed.deployment} holds revision {source.revision}"
        )
        return
    if not source.exists:
        if any(observed.twin(c).endpoints for c in ours(observed)):
            draft.say(
                f"releasing: Deployment {observed.deployment} {_absent(observed)} and no stable "
                f"twin {'exists' if observed.source.deleting else 'does either'}; the twin that "
                "serves keeps serving. " + _recreate(observed)
            )
            return
        _finish(draft, observed, keep="", size=size)
        return
    if _source_up(draft, observed, size):
        _finish(draft, observed, keep="", size=size)


def _never_switched(draft: Draft, observed: Observed, twins: dict[Color, Twin]) -> None:
    """Hand back an adoption that never switched the Service: the twins go
    once the source's pods are ready at the team's size (a sync that reset
    the selector right after the switch finds it on its way to 0); with the
    source gone, not while the twins' pods are all the Service has (they
    carry the app's labels)."""
    source = observed.source
    size = desired_replicas(observed, twins)
    if not source.exists:
        if any(observed.twin(c).endpoints for c in twins):
            draft.say(
                f"releasing: Deployment {observed.deployment} {_absent(observed)}; the twin's "
                "pods keep serving. " + _recreate(observed)
            )
            return
        _finish(draft, observed, keep="", size=0)
        return
    if _source_up(draft, observed, size):
        _finish(draft, observed, keep="", size=size)


def _absent(observed: Observed) -> str:
    """How the team's Deployment is not there to hand back to, as observed:
    one being deleted (a finalizer of another controller holds it) is still
    shown by `kubectl get`, and "does not exist" sent on-call looking
    elsewhere."""
    return "is being deleted" if observed.source.deleting else "does not exist"


def _recreate(observed: Observed) -> str:
    """What brings it back: while the old one is being deleted an apply only
    edits the one on its way out (a create is refused: its name is taken)."""
    if observed.source.deleting:
        return "Recreate the Deployment once it is gone"
    return "Recreate the Deployment"


def _source_up(draft: Draft, observed: Observed, size: int) -> bool:
    """The source un-gated, at `size`, and every pod of its current template
    ready: True once it can take the traffic."""
    source = observed.source
    if source.gated:
        draft.do(GateSource(False))  # before the scale: its pods must be schedulable
    if source.replicas < size:
        draft.do(ScaleSource(size))
        draft.say(f"releasing: scaling {observed.deployment} back to {size}")
        return False
    if source.ready >= size:
        return True
    told = f"releasing: {min(source.ready, size)}/{size} pods of {observed.deployment} ready"
    if source.refused:
        _told_refused(draft, observed)
        told += (
            f"; its pods are refused: {source.refused}. The {observed.deployment} pods come up "
            "beside the twins that serve until they are ready: make room (the namespace's "
            "ResourceQuota, or whatever refuses them)"
        )
    if source.paused:
        # Paused, it rolls out no template written since (our gate's removal,
        # a template set back): its pods are of another one, never counted.
        told += (
            f"; it is paused (kubectl rollout pause), so its pods are not of its current "
            f"template: resume it (kubectl rollout resume deployment/{observed.deployment})"
        )
    draft.say(told)
    return False


def _told_refused(draft: Draft, observed: Observed) -> None:
    """The team's Deployment cannot create its pods (a pods quota with room
    for the app and not much more: the twins still hold theirs): the
    hand-back waits for them for good, and the status said only "0/3 pods
    ready", the quota on the Deployment's ReplicaSet alone. Told once, as a
    twin's refusal is (decide._refused); not for a Service that is gone,
    which keeps no status to remember it by (its line says it each cycle)."""
    refused = f"Deployment {observed.deployment} cannot create its pods: {observed.source.refused}"
    if draft.state == State() or draft.state.refused == refused:
        return
    draft.set(refused=refused)
    draft.emit(
        "PodsRefused",
        f"{refused}. Handing the app back waits for them while the twins serve: make room "
        "(the namespace's ResourceQuota, or whatever refuses them)",
        warning=True,
    )


def _finish(draft: Draft, observed: Observed, keep: str, size: int) -> None:
    # The team's keys alone: a Service left with none of its own goes back
    # with none, not with our Service label, which no pod of the team's has.
    base = team_selector(observed.selector)
    if observed.source.gated:
        draft.do(GateSource(False))
    if draft.selector != base:
        draft.do(SetSelector(base))
    draft.do(DeleteTwins(keep=keep))
    if observed.source.exists and observed.source.claim != Claim():
        draft.do(Unclaim())
    draft.emit(
        "Released",
        f"no longer managed: traffic is back on Deployment {observed.deployment} ({size} replicas)",
    )
    draft.release = True
