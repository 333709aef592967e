"""Rebuild the durable state from what is running, when the canary.io/status
annotation is gone or unusable (a recreated Service, `kubectl annotate ...
canary.io/status-`, a bad hand edit). Pure: an Observed in, a State out.

The one rule: never adopt at zero while a twin serves. The stable twin is
whichever the evidence names, strongest first: the claim on the team's
Deployment and the revision history when they agree (both are ours alone;
the selector comes back old with an old status), the Service selector when
the controller wrote its twin key, the claim, the history, a selector someone
else wrote, then the twin with the most ready pods. A rollout that
was in flight is not resumed halfway: its revision is analysed again from
the first step.
"""

from __future__ import annotations

from dataclasses import replace

from canary.model import COLORS, Color, Observed, State, Twin, other
from canary.spec import SERVICE_LABEL, TWIN_LABEL

FAILED_OUTCOMES = ("rolled-back", "aborted")
SERVING_OUTCOMES = ("promoted", "adopted")


def ours(observed: Observed) -> dict[Color, Twin]:
    """The twins that exist and belong to this Service (a Deployment that
    only bears a twin's name, with neither our label nor our revision, is
    someone else's: see foreign())."""
    return {
        color: twin
        for color, twin in observed.twins.items()
        if twin.exists and twin.service in ("", observed.service) and not foreign(twin)
    }


def foreign(twin: Twin) -> bool:
    """A Deployment with a twin's name that we did not make."""
    return twin.exists and not twin.service and not twin.revision


def other_owner(observed: Observed) -> str:
    """Another Service that manages this Deployment (its claim, or twins
    labelled for it), or whose twin it is; "" when none does."""
    labels = observed.source.pod_labels if observed.source.exists else {}
    owner = labels.get(SERVICE_LABEL, "")
    if TWIN_LABEL in labels and owner and owner != observed.service:
        # canary.io/deployment names another Service's twin (`web-blue`, the
        # Deployment that has the pods): unclaimed and without twins of its
        # own, it was adopted, scaled to 0 and gated under the Service that
        # serves from it, which scaled it back.
        return owner
    claim = observed.source.claim.service if observed.source.exists else ""
    if claim and claim != observed.service:
        return claim
    for twin in observed.twins.values():
        if twin.exists and twin.service and twin.service != observed.service:
            return twin.service
    return ""


def desired_replicas(observed: Observed, twins: dict[Color, Twin]) -> int:
    """The team's size: their Deployment's, else what we recorded on it when
    we scaled it to 0, else the largest twin."""
    source = observed.source
    return (
        source.replicas
        or source.claim.replicas
        or max((t.replicas for t in twins.values()), default=0)
    )


def rebuild(observed: Observed) -> tuple[State, str]:
    """(state, what was rebuilt); the description is empty when there was
    nothing of ours to find (a Service managed for the first time)."""
    twins = ours(observed)
    selector = observed.selector
    if not twins:
        if TWIN_LABEL in selector or SERVICE_LABEL in selector:
            return State(), (
                "no twin found although the Service selects one; adopting the source again"
            )
        return State(), ""
    recorded = _recorded_gone(observed, twins)
    stable, evidence = recorded or _stable(observed, twins)
    twin = observed.twin(stable)
    replicas = desired_replicas(observed, twins) or twin.replicas
    auto = observed.autoscaler
    if auto.followed and stable in auto.copies and twin.replicas > 0:
        # Its HPA copy sizes it: its live size is the app's (as follow_size
        # has it). The claim holds what both twins served mid-rollout
        # (decide._keep_claim, for a hand-back from it alone), which the
        # stable twin does not run: said as its size, it was not observed.
        replicas = twin.replicas
    # (Recorded, it is made again or put back: _ensure_stable.)
    revision = observed.source.claim.stable_revision if recorded else twin.revision
    undone = _undone(observed, revision)
    failed = ""
    if undone or _last_outcome(observed) in FAILED_OUTCOMES:
        failed = observed.source.revision  # kept out, unless it is what serves
    elif not observed.source.exists:
        failed = _newest_failed(observed)
    state = State(
        stable=stable,
        stable_revision=revision,
        replicas=replicas,
        adopted=True,
        failed_revision=failed if failed != revision else "",
        undone=undone,
    )
    idle = twins.get(other(stable))
    parts = [
        f"the {stable} twin is stable (revision {revision}, {replicas} replicas; {evidence})",
    ]
    if idle is not None and idle.replicas > 0 and idle.revision != revision:
        if stable not in twins and observed.outcomes.get(idle.revision) in SERVING_OUTCOMES:
            # The old twin of a promotion, still up, while the promoted one
            # is made again: kept for an abort (decide._kept_for_abort) as
            # with the status there. Dropped, its ready pods, the app's only
            # ones, went to 0 at once.
            state = replace(state, scale_down=other(stable), previous_revision=idle.revision)
            parts.append(
                f"the {other(stable)} twin (revision {idle.revision}, which served before the "
                f"last promotion) stays up while the {stable} twin has no pod that serves"
            )
        elif (
            observed.outcomes.get(idle.revision) in SERVING_OUTCOMES
            and observed.selector.get(TWIN_LABEL) == stable
        ):
            # The old twin of a promotion's abort window (a status lost
            # within scale-down-delay): it served until then, and on-call
            # reading "not analysed" took it for a release in flight. (A
            # revision promoted before and rolling out again as a canary is
            # selected with the stable twin: that one is not analysed.)
            parts.append(
                f"the {other(stable)} twin (revision {idle.revision}, which served before the "
                "last promotion) is idle: no abort window is kept for it"
            )
        else:
            parts.append(
                f"the {other(stable)} twin (revision {idle.revision}) is treated as not analysed"
            )
    if observed.paused_by_hand:
        # Replaced with Git's manifest, the Service lost the status and the
        # action together: unpaused, the release went on and was promoted
        # against the person holding it.
        state = replace(state, paused=True)
        parts.append(
            f"the rollout stays paused ({observed.paused_by_hand}, as the history shows; "
            "`canary resume` to go on)"
        )
    if undone:
        parts.append(
            f"revision {observed.source.revision} stays out: the history shows it undone "
            "(until the Deployment changes or `canary retry`)"
        )
    elif failed:
        parts.append(f"revision {failed} stays out: the history shows it rolled back")
    return state, "; ".join(parts)


def _recorded_gone(observed: Observed, twins: dict[Color, Twin]) -> tuple[Color, str] | None:
    """The twin of the revision the claim and the history agree on (or the
    claim alone, the history gone, see below), when no twin runs it any
    more (deleted, or being deleted: a foreground cascade) and its template
    is kept (the team's Deployment holds it, or the history), or runs
    another (undone by hand): that twin is stable at that revision, made
    again or put back by _ensure_stable. Before,
    the twin left was taken for the stable one: the previous release, idle
    at 0, was scaled up and put in the Service (a rollback nobody asked
    for) and the serving release rolled out again as a new one."""
    claimed = observed.source.claim.stable_revision
    recorded = _history_stable(observed)
    # The claim alone, with no history to agree (gone with a Service
    # recreated: `kubectl replace --force`), only while the twin left idles
    # at 0: an abort cut before its claim write leaves the claim naming the
    # release aborted, while the twin it flipped back to serves.
    alone = not recorded and not any(t.replicas for t in twins.values())
    if not claimed or (claimed != recorded and not alone):
        return None
    if any(t.revision == claimed for t in twins.values()):
        return None  # (_stable finds it)
    kept = observed.source.revision == claimed or claimed in observed.revisions.values()
    if not kept:
        return None
    where = (
        "on the source Deployment and in the history" if recorded else "on the source Deployment"
    )
    selected = observed.selector.get(TWIN_LABEL)
    # (Never a Deployment of that name someone else made: it would be written over.)
    free = [c for c in COLORS if c not in twins and not foreign(observed.twin(c))]
    if free and not (selected in twins and observed.selector_ours):
        color: Color = selected if selected in free else free[0]
        gone = "being deleted" if observed.twin(color).deleting else "missing"
        return color, f"recorded {where}; its twin is {gone}"
    # The twin runs another revision (`kubectl rollout undo` of it: an older
    # ReplicaSet's template and revision): put back in place, as with the
    # status there. Taken at its word, the older revision was recorded as
    # serving, the claim rewritten to it, and the one that passed rolled
    # out again as a new release.
    color = (
        selected if selected in twins and observed.selector_ours else _stable(observed, twins)[0]
    )
    return color, f"recorded {where}; its twin runs revision {twins[color].revision}"


def _stable(observed: Observed, twins: dict[Color, Twin]) -> tuple[Color, str]:
    selected = observed.selector.get(TWIN_LABEL)
    claimed = observed.source.claim.stable_revision
    if claimed and claimed == _history_stable(observed):
        # Our two records agree: they outrank a selector that names the
        # other twin. A Service applied again from an old export brings back
        # the selector of then with the status of then; a hand edit of the
        # selector is no promotion either.
        for color in COLORS:
            if color in twins and twins[color].revision == claimed:
                if selected in twins and selected != color:
                    return color, (
                        "recorded on the source Deployment and in the history; the Service "
                        f"selector named the {selected} twin"
                    )
                if selected == color:
                    return color, (
                        "named by the Service selector, recorded on the source Deployment "
                        "and in the history"
                    )
                return color, "recorded on the source Deployment and in the history"
    if (
        selected in twins
        and observed.selector_ours
        and (twins[selected].replicas > 0 or not any(t.replicas for t in twins.values()))
    ):
        # (Never one at 0 while the other runs: we do not point the Service
        # at a twin with no pods, but an old selector applied again does.)
        return selected, "named by the Service selector"
    # A twin key someone else wrote (an old export applied again, its history
    # gone with the Service it was owned by, or restored old with it) names
    # what served then: our own records outrank it.
    for revision, why in (
        (observed.source.claim.stable_revision, "recorded on the source Deployment"),
        (_history_stable(observed), "the last revision the history shows serving"),
    ):
        if observed.outcomes.get(revision) in FAILED_OUTCOMES:
            # A claim behind the history: an abort right after a promotion
            # writes its record first, then the flip back, then the claim.
            # Cut before the claim, the claim still names the release aborted.
            continue
        for color in COLORS:
            if revision and color in twins and twins[color].revision == revision:
                return color, why
    if selected in twins:
        return selected, "named by the Service selector (written by someone else)"
    best = max(twins, key=lambda c: (twins[c].ready, twins[c].replicas, c == "blue"))
    return best, "the twin with the most ready pods"


def _history_stable(observed: Observed) -> str:
    serving = [r for r, outcome in observed.outcomes.items() if outcome in SERVING_OUTCOMES]
    return serving[-1] if serving else ""


def _undone(observed: Observed, stable_revision: str) -> bool:
    """The source's revision was promoted (or was in flight), then an `undo`
    promoted an earlier one after it, which serves while the source still holds the first: a
    lost status must not roll it out again. (A revert of the Deployment
    followed by a re-apply is not an undo: that goes out.)"""
    source = observed.source.revision
    order = list(observed.outcomes)  # the latest outcome of each, the latest last
    return (
        source != stable_revision
        and stable_revision in observed.undos
        # Superseded: the undo took it out mid-rollout (and its own entry,
        # of an earlier revision, was promoted after it).
        and observed.outcomes.get(source) in ("promoted", "superseded")
        and observed.outcomes.get(stable_revision) == "promoted"
        and order.index(stable_revision) > order.index(source)
    )


def _last_outcome(observed: Observed) -> str:
    return observed.outcomes.get(observed.source.revision, "")


def _newest_failed(observed: Observed) -> str:
    """With the team's Deployment gone (a `replace --force`, a Helm
    reinstall), the release the history ended last, when rolled back or
    aborted: the Deployment held it then, and is likely to come back with
    it. Rebuilt as nothing kept out, that release rolled out again from its
    first step once the Deployment was back (a fuzzer found it)."""
    newest = next(reversed(observed.outcomes.items()), None)
    return newest[0] if newest is not None and newest[1] in FAILED_OUTCOMES else ""
