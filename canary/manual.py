"""Manual actions: promote, abort, retry, pause, resume and undo, asked for
through the canary.io/action annotation (by the CLI or by kubectl). Pure
functions over a Draft, like the rest of the rollout logic."""

from __future__ import annotations

from canary.model import Observed, Record, ScaleTwin, SetSelector
from canary.plan import Draft
from canary.rollout import rollback, start
from canary.spec import RolloutSpec
from canary.twins import base_selector, only


def manual_action(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> None:
    text = observed.action
    verb = text.split()[0].lower() if text.split() else ""
    who = observed.action_by or "someone"
    draft.set(last_action=text)
    state = draft.state
    match verb:
        case "promote" if state.canary is not None:
            draft.set(
                promoting=True,
                halted="",
                paused=False,
                step_started=now,
                gate_wait="",
                gate_checked=0.0,
                gate_reason="",
            )
            draft.emit(
                "PromoteRequested",
                f"{who} asked to promote {state.canary_revision}: "
                "skipping the remaining steps; pods must still be ready",
            )
        case "abort" if state.canary is not None:
            rollback(draft, spec, observed, "Aborted", f"aborted by {who}", outcome="aborted")
        case "abort" if state.scale_down is not None and observed.twin(state.scale_down).replicas:
            _flip_back(draft, observed, who)
        case "retry" if state.canary is not None:
            draft.set(
                halted="",
                no_data=0,
                errors=0,
                checked=0.0,
                window_start=0.0,
                step_ready=0.0,
                step_started=now,
            )
            draft.emit(
                "RetryRequested",
                f"{who} asked to retry step {state.step + 1} of {state.canary_revision}",
            )
        case "retry" if state.failed_revision:
            draft.emit("RetryRequested", f"{who} asked to retry {state.failed_revision}")
            draft.set(failed_revision="")
        case "pause":
            draft.set(paused=True)
            draft.emit("RolloutPaused", f"paused by {who}")
        case "resume":
            draft.set(paused=False)
            draft.emit("RolloutResumed", f"resumed by {who}")
        case "undo":
            _undo(draft, spec, observed, text, who, now)
        case "promote" | "abort" | "retry":
            draft.emit("ActionIgnored", f"{verb} by {who}: nothing to {verb} right now")
        case _:
            draft.emit(
                "ActionIgnored",
                f"canary.io/action {text!r} by {who}: unknown action; "
                "use promote, abort, retry, pause, resume or undo N",
                warning=True,
            )


def _undo(
    draft: Draft, spec: RolloutSpec, observed: Observed, text: str, who: str, now: float
) -> None:
    """Roll revision #N of the history out again, through the same strategy."""
    words = text.split()
    number = int(words[1]) if len(words) > 1 and words[1].isdigit() else None
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
    if state.canary is not None:
        rollback(
            draft,
            spec,
            observed,
            "RolloutCancelled",
            f"undo to #{number} by {who}",
            outcome="superseded",
            mark_failed=False,
        )
    draft.emit("UndoRequested", f"{who} asked to go back to revision #{number} ({revision})")
    draft.set(undo_of=observed.source.revision)
    start(draft, spec, observed, now, revision)


def _flip_back(draft: Draft, observed: Observed, who: str) -> None:
    """Abort right after a promotion: the old twin is still up, so one
    selector patch puts traffic back on it."""
    state = draft.state
    assert state.scale_down is not None and state.stable is not None
    bad, back = state.stable, state.scale_down
    revision = state.stable_revision
    draft.do(SetSelector(only(base_selector(observed.selector), back)))
    draft.do(ScaleTwin(bad, 0))
    draft.set(
        stable=back,
        stable_revision=state.previous_revision,
        failed_revision=revision,
        scale_down=None,
        scale_down_at=0.0,
        previous_revision="",
        requested_weight=0,
        effective_weight=0.0,
    )
    draft.emit(
        "Aborted",
        f"{who} aborted {revision} after promotion: traffic flipped back to "
        f"the {back} twin ({draft.state.stable_revision})",
        warning=True,
    )
    draft.do(Record(revision, "aborted", f"aborted by {who} after promotion"))
