"""decide(spec, state, observed, analysis, now) -> Plan: every rollout
decision, as a pure function. No I/O, no clock: `now` is an argument.

One reconcile runs these in order, each may finish the cycle early:
spec errors -> missing source -> adoption -> source kept at zero -> manual
action -> steady state (which may start a rollout) -> rollout in flight.
"""

from __future__ import annotations

from analysis.run import StepResult
from canary import manual, rollout
from canary.model import (
    ApplyTwin,
    DeleteTwins,
    Observed,
    Phase,
    Plan,
    ScaleSource,
    ScaleTwin,
    SetSelector,
    State,
    other,
)
from canary.plan import Draft
from canary.spec import RolloutSpec, SpecError
from canary.twins import base_selector, only


def decide(
    spec: RolloutSpec | SpecError | None,
    state: State,
    observed: Observed,
    analysis: StepResult | None,
    now: float,
) -> Plan:
    if spec is None:
        return _release(state, observed)
    if isinstance(spec, SpecError):
        return _invalid(spec, state, observed)
    draft = Draft(state, observed)
    if state.invalid:
        draft.set(invalid="")
        draft.emit("SpecFixed", "annotations are valid again; resuming")
    source = observed.source
    if not source.exists:
        message = f"source Deployment {spec.deployment} not found"
        if state.message != message:
            draft.emit("SourceMissing", f"{message}; nothing to roll out", warning=True)
        draft.say(message)
        return draft.plan()
    if not draft.state.adopted:
        _adopt(draft, observed)
        return draft.plan()
    _keep_source_at_zero(draft, observed)
    if observed.action and observed.action != draft.state.last_action:
        manual.manual_action(draft, spec, observed, now)
    if draft.state.canary is None:
        _steady(draft, spec, observed, now)
    if draft.state.canary is not None:
        rollout.progress(draft, spec, observed, analysis, now)
    return draft.plan()


def phase(spec: RolloutSpec | SpecError | None, state: State) -> Phase:
    """The phase on-call sees, derived from spec and state alone."""
    if isinstance(spec, SpecError):
        return Phase.INVALID
    if spec is None:
        return Phase.RELEASING
    if not state.adopted:
        return Phase.ADOPTING if state.stable else Phase.WAITING
    if state.canary is None:
        return Phase.ROLLED_BACK if state.failed_revision else Phase.HEALTHY
    if state.halted or state.gate_reason:
        return Phase.HALTED
    if state.paused or spec.paused:
        return Phase.PAUSED
    return Phase.PROMOTING if state.promoting else Phase.PROGRESSING


def _invalid(error: SpecError, state: State, observed: Observed) -> Plan:
    draft = Draft(state, observed)
    message = str(error)
    if state.invalid != message:
        draft.emit(
            "InvalidSpec",
            f"{message}. Traffic and Deployments stay as they are until this is fixed.",
            warning=True,
        )
    draft.set(invalid=message, message=message)
    return draft.plan()


def _adopt(draft: Draft, observed: Observed) -> None:
    """Stable twin first, then the selector, then the source to zero: the
    Service always has ready endpoints, because the EndpointSlice controller
    swaps the source's pods for the twin's in one update."""
    source = observed.source
    if draft.state.replicas == 0 or draft.state.stable is None:
        draft.set(replicas=source.replicas)
    replicas = draft.state.replicas
    color = draft.state.stable or "blue"
    twin = observed.twin(color)
    draft.set(stable=color, stable_revision=source.revision)
    if not twin.exists or twin.revision != source.revision:
        draft.do(ApplyTwin(color, source.revision, replicas))
        draft.say(f"adopting: creating the {color} twin with {replicas} replicas")
        return
    if draft.replicas[color] != replicas:
        draft.do(ScaleTwin(color, replicas))
    if not twin.updated or twin.ready < replicas:
        draft.say(f"adopting: {twin.ready}/{replicas} pods of the {color} twin ready")
        return
    selector = only(base_selector(observed.selector), color)
    if draft.selector != selector:
        draft.do(SetSelector(selector))
        draft.say(f"adopting: Service now selects the {color} twin")
        return
    if twin.endpoints < replicas:
        draft.say(f"adopting: {twin.endpoints}/{replicas} endpoints of the {color} twin ready")
        return
    if source.replicas > 0:
        draft.do(ScaleSource(0))
        draft.say("adopting: scaling the source Deployment to 0")
        return
    draft.set(adopted=True)
    draft.say(f"serving revision {source.revision} from the {color} twin")
    draft.emit(
        "Adopted",
        f"revision {source.revision} now served by the {color} twin ({replicas} replicas); "
        "the source Deployment is kept at 0",
    )


def _keep_source_at_zero(draft: Draft, observed: Observed) -> None:
    replicas = observed.source.replicas
    if replicas <= 0:
        return
    draft.do(ScaleSource(0))
    draft.set(replicas=replicas)
    draft.emit(
        "SourceScaled",
        f"Deployment {observed.deployment} was scaled to {replicas} (a re-apply or an "
        "autoscaler?); its pods would bypass the rollout, so it is back at 0 and each twin "
        f"now runs {replicas} replicas",
        warning=True,
    )


def _steady(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> None:
    state = draft.state
    assert state.stable is not None
    if draft.replicas[state.stable] != state.replicas:
        draft.do(ScaleTwin(state.stable, state.replicas))
    selector = only(base_selector(observed.selector), state.stable)
    if draft.selector != selector:
        draft.do(SetSelector(selector))
    idle = other(state.stable)
    if state.scale_down is not None and now < state.scale_down_at:
        draft.wake_in(state.scale_down_at - now)
    else:
        if state.scale_down is not None:
            draft.set(scale_down=None, scale_down_at=0.0, previous_revision="")
        if draft.replicas[idle] > 0:
            draft.do(ScaleTwin(idle, 0))
    revision = observed.source.revision
    if revision == state.stable_revision:
        if not state.failed_revision:
            draft.say(f"serving revision {revision} from the {state.stable} twin")
        return
    if revision == state.failed_revision:
        draft.say(
            f"revision {revision} was rolled back; serving {state.stable_revision}. "
            "Change the Deployment or run `canary retry` to try again"
        )
        return
    rollout.start(draft, spec, observed, now)


def _release(state: State, observed: Observed) -> Plan:
    """Management removed: give traffic back to the team's Deployment at its
    full size before the twins go."""
    draft = Draft(state, observed)
    if state == State():
        return draft.plan()
    source = observed.source
    replicas = state.replicas
    if source.exists:
        if source.replicas < replicas:
            draft.do(ScaleSource(replicas))
            draft.say(f"releasing: scaling {observed.deployment} back to {replicas}")
            return draft.plan()
        if source.ready < replicas:
            draft.say(f"releasing: {source.ready}/{replicas} pods of the source ready")
            return draft.plan()
    base = base_selector(observed.selector)
    if draft.selector != base:
        draft.do(SetSelector(base))
    draft.do(DeleteTwins())
    draft.emit("Released", "no longer managed: traffic is back on the source Deployment")
    draft.release = True
    return draft.plan()
