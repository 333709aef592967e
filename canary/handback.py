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

from canary.autoscaling import handback_size, serving_size
from canary.model import (
    COLORS,
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
from canary.rebuild import desired_replicas, other_owner, ours
from canary.twins import base_selector, only

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
    if stable is None or stable not in twins:
        # Nothing of ours serves: the team's selector and source take over.
        _finish(draft, observed, keep="", size=desired_replicas(observed, twins))
        return draft.plan()
    base = base_selector(observed.selector)
    if draft.selector != only(base, stable):
        draft.do(SetSelector(only(base, stable)))
    # Autoscaled mid-rollout, the stable twin was sized for its share only:
    # it takes all the traffic at once (and grows to what both twins served
    # meanwhile), and the team's Deployment gets that size.
    served = max(state.replicas, twins[stable].replicas, serving_size(state, observed))
    if state.canary is not None and draft.replicas[stable] < served:
        draft.do(ScaleTwin(stable, served))
    _handback(draft, observed, stable, handback_size(served, observed.autoscaler.min_replicas))
    return draft.plan()


def orphan(observed: Observed, missing_for: float) -> Plan:
    """The Service is gone, or was recreated without our annotations, while
    twins labelled for it still run. Events go to the team's Deployment."""
    draft = Draft(State(), observed)
    twins = ours(observed)
    if not twins:
        if observed.source.exists and observed.source.claim.service == observed.service:
            if observed.source.gated:
                draft.do(GateSource(False))
            draft.do(Unclaim())
        draft.release = True
        return draft.plan()
    if missing_for < ORPHAN_GRACE_S:
        draft.wake_in(ORPHAN_GRACE_S - missing_for)
        return draft.plan()
    stable = _stable_of_orphan(observed, twins)
    if not observed.source.exists:
        draft.do(DeleteTwins())
        draft.emit(
            "Released",
            f"Service {observed.service} and Deployment {observed.deployment} are both gone: "
            "their twins are removed",
        )
        draft.release = True
        return draft.plan()
    size = observed.source.claim.replicas or twins[stable].replicas
    _handback(draft, observed, stable, size)
    return draft.plan()


def _stable_of_orphan(observed: Observed, twins: Mapping[Color, Twin]) -> Color:
    claim = observed.source.claim
    for color in COLORS:
        twin = observed.twins[color]
        if color in twins and claim.stable_revision and twin.revision == claim.stable_revision:
            return color
    return max(twins, key=lambda c: (observed.twins[c].ready, observed.twins[c].replicas))


def _handback(draft: Draft, observed: Observed, stable: Color, size: int) -> None:
    source = observed.source
    idle = other(stable)
    canary = observed.twin(idle)
    if canary.exists and draft.replicas[idle] > 0:
        draft.do(ScaleTwin(idle, 0))  # pods nobody analysed (or old ones) stop first
    if not source.exists:
        draft.say(
            f"releasing: Deployment {observed.deployment} does not exist, so there is nothing to "
            f"hand back to; the {stable} twin keeps serving. Recreate the Deployment"
        )
        return
    if stable not in source.same_as:
        draft.do(RestoreSource(stable))
        draft.emit(
            "SourceRestored",
            f"Deployment {observed.deployment} held revision {source.revision}, which is not the "
            f"one serving ({observed.twin(stable).revision}); handing it back would put all "
            f"traffic on pods nobody analysed, so its template was set back to the {stable} "
            "twin's. Re-apply the newer version deliberately if you want it",
            warning=True,
        )
        draft.say(f"releasing: the source is set back to revision {observed.twin(stable).revision}")
        return
    if source.gated:
        draft.do(GateSource(False))  # before the scale: its pods must be schedulable
    if source.replicas < size:
        draft.do(ScaleSource(size))
        draft.say(f"releasing: scaling {observed.deployment} back to {size}")
        return
    if source.ready < size:
        draft.say(
            f"releasing: {min(source.ready, size)}/{size} pods of {observed.deployment} ready"
        )
        return
    keep = (
        "" if observed.twin(stable).revision == source.revision else observed.twin(stable).revision
    )
    _finish(draft, observed, keep, size)


def _finish(draft: Draft, observed: Observed, keep: str, size: int) -> None:
    base = base_selector(observed.selector)
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
