"""A team's HorizontalPodAutoscaler, followed onto the twins (pure).

The team's HPA targets its own Deployment, which the controller keeps at 0
(an HPA whose target has 0 replicas stops scaling, so it goes idle rather
than fight us). The stable twin gets an equivalent HPA instead: the same
metrics, bounds and behaviour, named after the twin and labelled and owned
like the other copies; the team keeps editing its own, and the copy follows.

Only metrics that are measured per pod of the target can be moved to a twin
(Resource, ContainerResource, Pods): an Object or External metric describes
the whole app's load, whichever twin serves it, and an HPA on something
other than the source Deployment is none of ours. Those are refused with the
reason, and the rollout goes on at a fixed size.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace

from canary.model import (
    COLORS,
    JSON,
    ApplyAutoscaler,
    Autoscaler,
    Color,
    DeleteAutoscaler,
    Observed,
    ResetAutoscaler,
    ScaleTwin,
    State,
    Twin,
)
from canary.plan import Draft
from canary.spec import SERVICE_LABEL, TWIN_LABEL
from canary.twins import canary_replicas, twin_name

SUPPORTED_METRICS = ("Resource", "ContainerResource", "Pods")
COPY_OF = "canary.io/copy-of"
# On our copy, while the team's HPA is being created afresh: what it held
# (labels, annotations, spec), so a re-creation cut short is finished.
RECREATING = "canary.io/recreating"


@dataclass(frozen=True, slots=True)
class Refused:
    """A team HPA the controller cannot follow, and why (for a Warning Event)."""

    name: str
    reason: str


def _ref(hpa: JSON) -> JSON:
    return dict(hpa.get("spec", {}).get("scaleTargetRef") or {})


def is_mirror(hpa: JSON) -> bool:
    return SERVICE_LABEL in (hpa.get("metadata", {}).get("labels") or {})


def targeting(hpas: Iterable[JSON], deployment: str) -> list[JSON]:
    """The team's HPAs that name the source (by name: one that names another
    kind is refused by check(), not silently ignored, as it is most likely a
    mistake), but only those of kind Deployment when there are some: then a
    StatefulSet of the same name has its own, which is not this app's.
    Never our own copies."""
    named = sorted(
        (h for h in hpas if not is_mirror(h) and _ref(h).get("name") == deployment),
        key=lambda h: str(h["metadata"]["name"]),
    )
    ours = [h for h in named if _ref(h).get("kind") == "Deployment"]
    return ours or named


def scaler(hpa: JSON) -> str:
    """The KEDA ScaledObject that owns this HPA, or "": KEDA makes one HPA
    per ScaledObject and scales the target from 0 itself."""
    for ref in hpa.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == "ScaledObject" and str(ref.get("apiVersion", "")).startswith(
            "keda.sh/"
        ):
            return str(ref.get("name", ""))
    return ""


def check(found: list[JSON]) -> Refused | None:
    """Why the HPAs that target the source cannot be followed, if they cannot."""
    if not found:
        return None
    names = [str(h["metadata"]["name"]) for h in found]
    if len(found) > 1:
        return Refused(
            names[0], f"{len(found)} HPAs target the same Deployment: {', '.join(names)}"
        )
    hpa, name = found[0], names[0]
    ref = _ref(hpa)
    if ref.get("kind") != "Deployment" or not str(ref.get("apiVersion", "")).startswith("apps/"):
        return Refused(
            name,
            f"its scaleTargetRef is a {ref.get('apiVersion')} {ref.get('kind')}, not a Deployment",
        )
    for index, metric in enumerate(hpa.get("spec", {}).get("metrics") or []):
        kind = metric.get("type")
        if kind not in SUPPORTED_METRICS:
            return Refused(
                name,
                f"metric {index + 1} is of type {kind}: it does not depend on which twin serves; "
                f"only {', '.join(SUPPORTED_METRICS)} metrics can follow the stable twin",
            )
    return None


def mirror(hpa: JSON, twin: str, color: Color, service: JSON) -> JSON:
    """The stable twin's HPA: the team's spec, aimed at the twin."""
    meta = service["metadata"]
    spec = copy.deepcopy(hpa["spec"])
    spec["scaleTargetRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": twin}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": twin,
            "namespace": meta["namespace"],
            "labels": {SERVICE_LABEL: meta["name"], TWIN_LABEL: color},
            "annotations": {COPY_OF: hpa["metadata"]["name"]},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Service", "name": meta["name"], "uid": meta["uid"]}
            ],
        },
        "spec": spec,
    }


def differs(live: JSON | None, wanted: JSON) -> bool:
    """Whether the live copy must be written: missing, or its spec, target or
    our labels changed (someone edited the copy, or the team its HPA)."""
    if live is None:
        return True
    labels = live.get("metadata", {}).get("labels") or {}
    ours = wanted["metadata"]["labels"]
    source = (live.get("metadata", {}).get("annotations") or {}).get(COPY_OF)
    return (
        live.get("spec") != wanted["spec"]
        or any(labels.get(k) != v for k, v in ours.items())
        or source != wanted["metadata"]["annotations"][COPY_OF]
    )


def copies_of(hpas: Iterable[JSON], service: str, deployment: str) -> dict[Color, JSON]:
    """Our HPA copies for this Service, by the twin they are named after."""
    found: dict[Color, JSON] = {}
    for hpa in hpas:
        meta = hpa.get("metadata", {})
        labels = meta.get("labels") or {}
        for color in COLORS:
            if (
                labels.get(SERVICE_LABEL) == service
                and labels.get(TWIN_LABEL) == color
                and meta.get("name") == twin_name(deployment, color)
            ):
                found[color] = hpa
    return found


def observe(hpas: Iterable[JSON], service: JSON, deployment: str) -> Autoscaler:
    """The team's HPA on the source and our copies, as decide() needs them;
    and any HPA that targets a twin itself."""
    everything = list(hpas)
    on_twins = tuple(
        (color, str(hpa["metadata"]["name"]))
        for color in COLORS
        for hpa in sorted(everything, key=lambda h: str(h["metadata"]["name"]))
        if not is_mirror(hpa)
        and _ref(hpa).get("kind") == "Deployment"
        and _ref(hpa).get("name") == twin_name(deployment, color)
    )
    return replace(_observe(everything, service, deployment), on_twins=on_twins)


def _observe(everything: list[JSON], service: JSON, deployment: str) -> Autoscaler:
    found = targeting(everything, deployment)
    copies = copies_of(everything, service["metadata"]["name"], deployment)
    if not found:
        stash = next((s for c in copies.values() if (s := stashed(c)) is not None), None)
        if stash is not None:
            return Autoscaler(name=stash["name"], copies=frozenset(copies), restoring=True)
        return Autoscaler(copies=frozenset(copies))
    refused = check(found)
    if refused is not None:
        # Not followed, but a lone HPA on the Deployment still scales it once
        # it has pods again (a hand-back): its bounds are the hand-back's.
        # (Two on one Deployment are both refused by Kubernetes too.)
        alone = len(found) == 1 and _ref(found[0]).get("kind") == "Deployment"
        low, high = _bounds(found[0]) if alone else (1, 0)
        return Autoscaler(
            name=refused.name,
            refused=refused.reason,
            min_replicas=low,
            max_replicas=high,
            copies=frozenset(copies),
            scaler=scaler(found[0]) if alone else "",
        )
    team = found[0]
    current = frozenset(
        color
        for color, live in copies.items()
        if not differs(live, mirror(team, twin_name(deployment, color), color, service))
    )
    low, high = _bounds(team)
    return Autoscaler(
        name=str(team["metadata"]["name"]),
        min_replicas=low,
        max_replicas=high,
        copies=frozenset(copies),
        current=current,
        stale=any(ambiguous(live, team) for live in copies.values()),
        scaler=scaler(team),
    )


def _bounds(hpa: JSON) -> tuple[int, int]:
    """minReplicas and maxReplicas (0: unknown)."""
    spec = hpa.get("spec", {})
    return int(spec.get("minReplicas") or 1), int(spec.get("maxReplicas") or 0)


def ambiguous(copy: JSON, team: JSON) -> bool:
    """The HPA controller refused our copy because it counts the twin's pods
    as the team HPA's too, and did so after the team's HPA was (re)created:
    its own registration of the team HPA's selector is what is stale. (A
    refusal from before the last re-creation is old news, not a reason to
    create it again.)"""
    meta = team["metadata"]
    key = f"{meta.get('namespace')}/{meta.get('name')}"
    for condition in (copy.get("status") or {}).get("conditions") or []:
        if (
            condition.get("type") == "ScalingActive"
            and condition.get("status") == "False"
            and condition.get("reason") == "AmbiguousSelector"
            and key in _named(str(condition.get("message", "")))
            and str(condition.get("lastTransitionTime", "")) > str(meta.get("creationTimestamp"))
        ):
            return True
    return False


def _named(message: str) -> set[str]:
    """The HPAs an AmbiguousSelector message lists: "... multiple HPAs: [ns/a ns/b]"."""
    listed = message.rpartition("[")[2].partition("]")[0]
    return set(listed.split())


def stashed(copy: JSON) -> JSON | None:
    """The team's HPA as a copy kept it while it was created afresh."""
    raw = (copy.get("metadata", {}).get("annotations") or {}).get(RECREATING)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) and value.get("name") and value.get("spec") else None


def stash(team: JSON) -> JSON:
    meta = team["metadata"]
    return {
        "name": meta["name"],
        "labels": meta.get("labels") or {},
        "annotations": meta.get("annotations") or {},
        "spec": team["spec"],
    }


def afresh(kept: JSON, namespace: str) -> JSON:
    """The team's HPA to create again: what it held, and nothing the API
    server or its controller wrote (uid, versions, status)."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": kept["name"],
            "namespace": namespace,
            "labels": kept["labels"],
            "annotations": kept["annotations"],
        },
        "spec": kept["spec"],
    }


def follow_size(draft: Draft, observed: Observed) -> bool:
    """The app's size is the stable twin's live one while our copy scales it
    (needs no spec: it runs while the annotations are invalid too). The HPA
    then decides the app's size: a canary step follows it at the step's
    weight (placement.keep_weight), a promotion sizes the new twin from it, a
    blue-green preview runs at it, and we never scale the stable twin
    against the HPA. False when no copy of ours is on the stable twin.

    The copy, not the team's HPA: a copy left behind (the team's HPA deleted
    or refused while its Deployment is missing or the annotations cannot be
    read, when it is not removed) still scales the twin, and scaling the
    twin back at each cycle was a fight with the HPA controller."""
    state = draft.state
    auto = observed.autoscaler
    if not (state.adopted and state.stable and state.stable in auto.copies):
        return False
    live = observed.twin(state.stable)
    if live.exists and live.replicas > 0 and live.replicas != state.replicas:
        # Pods the HPA just asked for are not ready yet: that is growth, not
        # a twin short of pods (Degraded); remember the size that served.
        floor = min(state.scaled_from or state.replicas, live.replicas)
        draft.set(replicas=live.replicas, scaled_from=floor if floor < live.replicas else 0)
    if draft.state.scaled_from and live.ready >= draft.state.replicas:
        draft.set(scaled_from=0)
    return True


def place(draft: Draft, observed: Observed) -> None:
    """The copy goes with the stable twin (after this cycle's decisions: a
    promotion moves it), is rewritten when the team's HPA changes, and goes
    when the team's HPA does; a twin that loses its copy keeps its size."""
    state = draft.state
    auto = observed.autoscaler
    if auto.refused != state.autoscaler_refused:
        if auto.refused:
            draft.emit(
                "AutoscalerRefused",
                f"HPA {auto.name} targets Deployment {observed.deployment} but cannot be "
                f"followed onto the twins: {auto.refused}. It stays idle while the Deployment "
                f"is at 0, and the rollout goes on at a fixed size ({state.replicas} replicas)",
                warning=True,
            )
        draft.set(autoscaler_refused=auto.refused)
    if not state.adopted or state.stable is None:
        return
    _outlived(draft, observed, state.stable)
    if auto.stale or auto.restoring:
        draft.do(ResetAutoscaler())
        draft.emit(
            "AutoscalerReset",
            f"HPA {auto.name} was created afresh, unchanged (same spec, labels and "
            "annotations; a new uid): Kubernetes' HPA controller still counted the twins' pods "
            "as its own (a selector it saw while Deployment "
            f"{observed.deployment} had pods) and so refused to scale the stable twin "
            "(AmbiguousSelector)"
            if auto.stale
            else f"HPA {auto.name} is back: its re-creation had been cut short",
        )
        return
    want = state.stable if auto.followed else None
    twins = {c: twin_name(observed.deployment, c) for c in COLORS}
    for color in COLORS:
        if color != want and color in auto.copies:
            draft.do(DeleteAutoscaler(color))
            if want is None:
                why = f"HPA {auto.name} cannot be followed" if auto.refused else "its HPA is gone"
                draft.emit(
                    "AutoscalerRemoved",
                    f"{why}: HPA {twins[color]} is removed{_left_at(draft, observed, color)}",
                )
    if want is None or want in auto.current:
        return
    grown = observed.twin(want)
    if (
        want not in auto.copies
        and grown_for_handback(grown)
        and draft.replicas[want] == grown.replicas
    ):
        # A new copy scales the twin from its live size: its share from now
        # on. Marked (_left_at, the HPA deleted, created again), the mark
        # kept naming that size, and a hand-back took it for a growth
        # already done: 16 handed back for the 16 + 16 that served. Taken
        # away by a scale to the same size (act.scale_twin), before the copy.
        draft.do(ScaleTwin(want, grown.replicas))
    draft.do(ApplyAutoscaler(want))
    if want in auto.copies:
        message = f"HPA {auto.name} changed: its copy {twins[want]} is updated"
    elif auto.copies:
        message = (
            f"HPA {auto.name} now scales the {want} twin (stable) through {twins[want]}, "
            f"from its current {state.replicas} replicas"
        )
    else:
        message = (
            f"HPA {auto.name} is followed: its copy {twins[want]} scales the {want} twin "
            f"(stable, {state.replicas} replicas); {auto.name} itself stays idle while "
            f"Deployment {observed.deployment} is at 0"
        )
    draft.emit("AutoscalerFollowed", message)


def _outlived(draft: Draft, observed: Observed, stable: Color) -> None:
    """A mark (grown_for_handback) is of the rollout that grew the twin: no
    rollout in flight as read (rolled back, promoted back, aborted), it is
    taken away by a scale to the twin's own size. Left, the twin kept the
    size (the load of both twins on it, its HPA keeping it there) and the
    next rollout's hand-back read it as its own growth done: 16 handed back
    for 16 + 16 served."""
    twin = observed.twin(stable)
    if (
        draft.read.canary is None
        and grown_for_handback(twin)
        and draft.replicas[stable] == twin.replicas
        and not any(isinstance(a, ScaleTwin) and a.color == stable for a in draft.actions)
    ):
        draft.do(ScaleTwin(stable, twin.replicas))


def _left_at(draft: Draft, observed: Observed, color: Color) -> str:
    """The size the app keeps once its HPA goes. Mid-rollout, the stable
    twin's copy had sized it for its share only; the app's size became that
    share, and the promotion gave the new twin half the pods the load had
    (8 for 16 at a 50 % step). As Kubernetes leaves a Deployment at the size
    its deleted HPA gave it, the app stays at what both twins served: a
    fixed size from then on (the canary on top at each step, as for any
    app without an HPA)."""
    state = draft.state
    # What served, as read: the copy's share (the twin's live size, as
    # follow_size takes it) and the canary at the weight it served at. A
    # weight this cycle changed (the steps edited, a step on) is one it has
    # not served at (8 + 8 at 50 % was counted 8 + 72 at 90 %, then 72 on
    # top at 90 %); a size this cycle raised (a replaced rollout taking the
    # load back) already holds the canary's share (16 + 8 at 50 % counted).
    read = draft.read
    live = observed.twin(color)
    share = live.replicas if live.exists and live.replicas > 0 else read.replicas
    if (
        color == state.stable == read.stable
        and state.canary is not None
        and _autoscaled(read, observed)
    ):
        size = serving_size(replace(read, replicas=share), observed)
        if size > state.replicas:
            # Asked in this cycle, after the copy's removal (a removal
            # refused cuts the cycle before it: no fight with the copy).
            # Left to the next cycle, the status said 16 of a twin at 8,
            # or, with a re-apply's size taken first, scaled it down to 3
            # under a status of 4 and up again a cycle later.
            if draft.replicas[color] < size:
                # Marked in the same write (grown_for_handback), as a
                # hand-back's growth is: the status noting left_copy is
                # written after it, and lost (a Conflict, the lease lost, a
                # kill) a cycle that still saw the copy took the 16 for its
                # share and added the canary's again (32).
                draft.do(ScaleTwin(color, size, handback=True))
            draft.set(
                replicas=size, scaled_from=state.scaled_from or state.replicas, left_copy=color
            )
            return (
                f" and the app stays at what both twins served: the {color} twin (stable) "
                f"goes from {state.replicas} to {size} replicas"
            )
    return f" and the {color} twin stays at {draft.state.replicas} replicas"


def _autoscaled(state: State, observed: Observed) -> bool:
    """A rollout in flight whose stable twin our copy of the team's HPA scales.
    The copy, not the team's HPA being followed (as follow_size): the team's
    HPA deleted with its Deployment (`helm uninstall`, a GitOps prune), the
    copy had still sized the stable twin for its share only, and the
    rollback put the load of both twins on that share. Not a copy removed
    (State.left_copy) still seen: _left_at has scaled the twin to what both
    served, and counted as its share again, the canary's was added on top
    at each cycle the copy was still seen (16, 32, 64, ...)."""
    return (
        state.canary is not None
        and state.stable in observed.autoscaler.copies
        and state.stable != state.left_copy
        and not grown_for_handback(observed.twin(state.stable))
    )


def grown_for_handback(twin: Twin) -> bool:
    """The twin is still at the size a hand-back (or the removal of its
    HPA copy mid-step, _left_at) grew it to (what both twins served,
    HANDBACK_ANNOTATION), so not at its HPA's share: counted as one, the
    canary's share was added on top again by the next cycle whose status
    write had been lost, or after the strategy was put back and removed
    again (16, 32, 64, ...). Stale once the twin has another size
    (its HPA resized it; any scale of ours also takes the mark away): that
    size is the HPA's share again. Stale too once another than the
    controller set its replicas (scaled_by): resized and back to the same
    size, it is the HPA's share for the load then, not what both served."""
    return (
        twin.exists
        and twin.handback_served > 0
        and twin.replicas == twin.handback_served
        and not twin.scaled_by
    )


def serving_size(state: State, observed: Observed) -> int:
    """What one twin needs to serve all the traffic (a promotion, a rollback,
    an abort, a hand-back). At a fixed size: N (the canary's pods were added
    on top of it). Autoscaled, the stable twin's HPA sized it for its share
    only (the canary serves the rest at the same load per pod), so what both
    serve: the stable's live size plus the canary's at the last weight,
    within the HPA's maximum (above it, the HPA would cut it at once).
    Mid-promotion, never less than the promotion chose (promote_to): with the
    canary grown to that size beside it, the stable twin's HPA sees less load
    per pod and scales it down, so its live size plus its last step's share
    is less than the load (at a 50 % step of 8 + 8, the stable cut to 4: an
    abort, a deadline or a hand-back gave it 8 pods for the load 16 served)."""
    chosen = state.promote_to if state.promoting else 0
    if not _autoscaled(state, observed):
        return max(state.replicas, chosen)
    weight = state.requested_weight
    extra = canary_replicas(state.replicas, weight) if 0 < weight < 100 else 0
    # The promotion's choice within the maximum too: lowered since (the
    # team's HPA edited mid-promotion), a size above it was cut by the HPA at
    # once, and a hand-back asking for it again at each cycle fought it.
    both = max(state.replicas + extra, chosen)
    maximum = observed.autoscaler.max_replicas
    return max(min(both, maximum) if maximum else both, state.replicas)


def promotion_size(state: State, observed: Observed) -> int:
    """The new twin's size before the flip: serving_size(), and, autoscaled,
    never less than it already has, since the stable's HPA may scale down
    while both serve during the promotion."""
    size = serving_size(state, observed)
    if not (_autoscaled(state, observed) and state.promoting):
        return size
    assert state.canary is not None
    canary = observed.twin(state.canary)
    return max(size, canary.replicas if canary.revision == state.canary_revision else 0)


def expected_ready(state: State) -> int:
    """How many ready pods the stable twin must have to serve in full: its
    size, or while its HPA grows it, the size it had before."""
    return state.scaled_from or state.replicas


def handback_size(served: int, low: int, high: int = 0) -> int:
    """The source's size when the Service is released: never smaller than
    what served (nor than the team HPA's minimum); the team's HPA takes over
    from there, down to its own bounds if it must. Never above its maximum
    (`high`, 0: none): the HPA sets a target above it back to it at its next
    sync, whatever its metrics, so waiting for more ready pods than that
    never ends (each scale up again is undone: a WriteLoop, and the
    hand-back stuck in `releasing`). An app at 0 (its team stopped it) is
    handed back at 0: no HPA scales a target at 0, and `low` is 1 with no
    HPA at all, so a stopped app was started for the hand-back."""
    if served == 0:
        return 0
    size = max(served, low)
    return min(size, high) if high else size


def source_scaled(observed: Observed, replicas: int, times: str, stable: Color, size: int) -> str:
    """The SourceScaled message while the team's HPA owns the size: followed,
    that HPA is idle at 0, so the write came from elsewhere (a re-apply, a
    hand scale), or from KEDA, which writes its target's scale itself."""
    auto = observed.autoscaler
    if auto.scaler:
        how = (
            f"its copy {twin_name(observed.deployment, stable)} scales the {stable} twin"
            if auto.followed
            else f"canary cannot follow it ({auto.refused}), so the app runs at a fixed size "
            "and KEDA never takes it to 0"
        )
        return (
            f"Deployment {observed.deployment} was scaled to {replicas}{times} by KEDA "
            f"(ScaledObject {auto.scaler}): it reads the 0 this Deployment is kept at as its app "
            f"idle and wakes it. Its pods would bypass the rollout, so it is back at 0, and the "
            f"app keeps {size} replicas; {how}. To stop these writes, pause the ScaledObject "
            '(annotation autoscaling.keda.sh/paused: "true")'
        )
    return (
        f"Deployment {observed.deployment} was scaled to {replicas}{times}, by a re-apply or "
        f"by hand (not by its HPA {auto.name}: that is idle at 0, and its copy "
        f"{twin_name(observed.deployment, stable)} scales the {stable} twin, now at {size} "
        "replicas); its pods would bypass the rollout, so it is back at 0. To stop this, "
        "leave `replicas` out of the manifest you apply (or ignore its differences in your "
        "GitOps tool)"
    )
