"""Which status a cycle writes, and when: what a written status is trusted
for (read_state), what changed enough to be written, what rides along with
a selector write, and what may be held or paced because a restart can do
without it. Pure."""

from __future__ import annotations

import json
from dataclasses import replace

from analysis.spec import GateKind
from canary import history
from canary.decide import phase
from canary.model import (
    JSON,
    Action,
    ApplyPreview,
    ClaimSource,
    Plan,
    Record,
    SetSelector,
    State,
    StateError,
)
from canary.observe import field_manager, field_managers, ours
from canary.spec import STATUS, RolloutSpec, SpecError, parse


def status_raw(service: JSON) -> str:
    """The status annotation as written: what a kept decision was made over."""
    return str((service["metadata"].get("annotations") or {}).get(STATUS) or "")


def read_spec(service: JSON) -> RolloutSpec | SpecError | None:
    meta = service["metadata"]
    try:
        return parse(meta["name"], meta.get("annotations") or {})
    except SpecError as error:
        return error


def read_state(service: JSON, vouched: str = "") -> tuple[State, str]:
    """(state, why it could not be used): a missing, garbled or inconsistent
    status is never trusted; decide() rebuilds it from what runs.
    `vouched`: a status another manager wrote that this controller rebuilt
    to the very same value (see reconcile.Reconciler._vouched)."""
    raw = (service["metadata"].get("annotations") or {}).get(STATUS)
    if not raw:
        return State(), "missing"
    path = ("f:metadata", "f:annotations", f"f:{STATUS}")
    owners = field_managers(service["metadata"], path)
    if not ours(owners) and raw != vouched:
        writer = field_manager(service["metadata"], path)
        # Valid, consistent, and old: a manifest exported with `kubectl get
        # -o yaml` and applied again (a GitOps repository, `kubectl replace`),
        # a Service restored from a backup. Trusted, it put traffic back on the
        # twin that served when it was written, scaled up again, and rolled
        # out the serving revision anew. Only the controller writes it.
        return State(), (
            f"last written by {writer}, not by the controller (an old status applied "
            "again is never trusted)"
        )
    try:
        data = json.loads(raw)
    except ValueError:
        return State(), "not valid JSON"
    try:
        state = State.from_json(data)
    except StateError as exc:
        return State(), f"not a valid status ({exc})"
    problem = _inconsistent(state)
    if problem:
        return State(), f"inconsistent ({problem})"
    return state, ""


def _inconsistent(state: State) -> str:
    if state.adopted and state.stable is None:
        return "adopted with no stable twin"
    if state.canary is not None and state.canary == state.stable:
        return "the canary and the stable twin are the same"
    if state.canary is not None and not state.canary_revision:
        return "a canary without a revision"
    if state.replicas < 0 or state.step < 0 or state.failed < 0:
        return "a negative count"
    if state.gate_wait and state.gate_wait not in set(GateKind):
        # A gate kind of a newer controller rolled back to this one (or a
        # typo by hand): every cycle raised at GateKind(), the canary kept
        # its traffic unanalysed and a failing one was never rolled back.
        return f"waiting on a gate this version does not know ({state.gate_wait!r})"
    return ""


# Paces fast checks only: losing it on a restart costs one early fast check.
# `looked` changes every scrape too; lost, an open gate waits for one look.
# `look_error` may change with every look that errors: never written for
# itself (after a restart a wait says what the last status written held,
# until the next look).
# `probed`: Prometheus is probed every interval while a rollout is halted on
# its errors (an outage): the same, and a write per probe per Service then.
# `probe_from` moves with each probe Prometheus answers too late: likewise
# (lost on a restart, the next probe reads from the window's start once).
# `gate_checked` is asked again every interval while a gate stays closed (an
# approval that takes hours): written each time, a status write per interval
# per waiting Service; lost on a restart, the gate is asked once more at once.
# `lagging_since` is set after every write of ours to the canary twin, until
# the Deployment controller observes it (milliseconds): never a write of its
# own; lost on a restart, the lag counts from the first cycle after it.
VOLATILE = (
    "fast_checked",
    "looked",
    "look_error",
    "gate_checked",
    "probed",
    "probe_from",
    "quiet_from",
    "lagging_since",
)


# Fields that only follow pods coming up (the waiting message, the effective
# weight, why they cannot be created: its PodsRefused Event goes at once): a
# change of these alone is written at most once per this many
# seconds (a step of 12 pods would otherwise write the status 12 times). Each
# cycle derives them afresh from what it observes, so one skipped is never
# lost: the next write carries the newest.
PROGRESS = ("message", "effective_weight", "refused")


PROGRESS_WRITE_EVERY_S = 5.0


# A pod lost or back mid-step moves the deadline's basis (unready_since, and
# a run's lost_from and lost_s with it):
# paced like progress, so a flapping pod does not write at every flip. One
# lost with a restart puts the basis back to the step's start, a few seconds.
PACED = (*PROGRESS, "unready_since", "lost_from", "lost_s")


# A change a restart can do without is held for up to this long, so that one
# write carries it with the write the cycle after it makes anyway: a step's
# advance (scale, check, Event, history) is followed by the cycle that sees
# its pods serve and starts the step's window. Held only while a rollout
# waits for its step's pods; never a failure, a halt, a suspicion, a traffic
# change, a user's command or an end (those are written at once). Lost on a restart, it costs
# time, never a verdict: the rollout starts again, or the step that passed is
# analysed once more. Its Event is out already; the check it carries
# (history.CARRIED) is lost with it, so the history keeps the second
# analysis of that step, not the first (a graceful stop writes both).
HOLD_S = PROGRESS_WRITE_EVERY_S


HOLDABLE = (
    *PROGRESS,
    *VOLATILE,
    "canary",
    "canary_revision",
    "rollout_started",
    "fresh_pods",
    "restarts_before",
    "restarts_unread",
    "step",
    "step_started",
    "step_ready",
    "checked",
    "window_start",
    "requested_weight",
    "canary_pods",
    "serving_since",
    "stable_pods",
)


def holdable(before: State, after: State) -> bool:
    """The change from the written status `before` to `after` may wait for
    the step's pods (see HOLD_S)."""
    if after.canary is None or after.step_ready:
        return False
    if before.canary is not None and after.step <= before.step:
        return False  # only a start or an advance: a step judged afresh is written at once
    if before.canary_pods and not after.canary_pods:
        return False  # pods put back after a hand edit (TwinRestored): at once
    if before.canary_revision not in ("", after.canary_revision):
        return False  # a release replaced mid-rollout: written at once
    kept = {f: getattr(before, f) for f in HOLDABLE}
    return replace(after, **kept) == before


def moves_traffic(actions: tuple[Action, ...] | list[Action]) -> bool:
    """The plan changes what serves: its status is never held, even when it
    could not ride along with the selector (an Event or a write after it)."""
    return any(isinstance(a, SetSelector | ApplyPreview) for a in actions)


_FRESH_STATE = {f: getattr(State(), f) for f in VOLATILE}


def durable(state: State) -> State:
    return replace(state, **{f: _FRESH_STATE[f] for f in VOLATILE})


def status_text(
    spec: RolloutSpec | SpecError | None,
    before: State,
    plan: Plan,
    deployment: str,
    refused: tuple[str, str] = ("", ""),
    carried: tuple[list[JSON], list[JSON]] = ([], []),
) -> str | None:
    """The status annotation this decision leads to; None when nothing
    durable changed. `refused`: why Events are refused now, and what the
    status written says of it (EVENTS_REFUSED). `carried`: the checks and
    Events the status carries now, and those it carries as written
    (history.CARRIED): a check not written yet is a change; Events alone
    wait for the next write, as they waited for the history's."""
    now, written = refused
    items, items_written = carried
    if (
        durable(plan.state) == durable(before)
        and now == written
        and not new_check(items, items_written)
    ):
        return None
    status = {
        "phase": str(phase(spec, plan.state)),
        "deployment": deployment,
        **plan.state.to_json(),
        **({EVENTS_REFUSED: now} if now else {}),
        **({history.CARRIED: history.slim(items)} if items else {}),
    }
    return json.dumps(status, separators=(",", ":"))


def new_check(items: list[JSON], written: list[JSON]) -> bool:
    """A check carried now that the status as written does not carry.
    Compared as text: a value that is NaN is never equal to itself."""
    seen = {json.dumps(i, sort_keys=True) for i in written}
    return any("check" in i and json.dumps(i, sort_keys=True) not in seen for i in items)


def _parsed(raw: str) -> JSON:
    """A status annotation's text as an object ({} when it is not one: the
    status itself is validated by read_state)."""
    try:
        status = json.loads(raw or "{}")
    except ValueError:
        return {}
    return status if isinstance(status, dict) else {}


def carried_in(raw: str, every: bool = False) -> list[JSON]:
    """What a status annotation's text carries (history.CARRIED)."""
    return history.carried(_parsed(raw), every)


# The status's line for on-call when the API server refuses our Events
# (RBAC, a policy, a rate limit): `kubectl get events` shows
# nothing of the rollout, and this says why. Set at the first Event refused
# (since when, and the API server's answer: fixed, so the status is not
# written again for each Event refused) and cleared at the first created.
EVENTS_REFUSED = "events_refused"


def refused_written(service: JSON) -> str:
    """What the status annotation as written says of refused Events."""
    return str(_parsed(status_raw(service)).get(EVENTS_REFUSED) or "")


def carriable(actions: tuple[Action, ...] | list[Action]) -> bool:
    """The status may ride along with the plan's selector write when nothing
    after it can fail the decision: records, and the claim on the source
    (run after the record, and re-derived next cycle if it fails). Not with
    an Event after it: whoever sees the new status finds its Events (and
    its record: `canary wait` settles on the status and reads the history)."""
    selectors = [i for i, a in enumerate(actions) if isinstance(a, SetSelector)]
    return len(selectors) == 1 and all(
        isinstance(a, Record | ClaimSource) for a in actions[selectors[0] + 1 :]
    )


def ends_rollout(plan: Plan) -> bool:
    """The plan ends a rollout (promoted, rolled back, aborted, superseded):
    its record is written before its traffic moves. Cut anywhere after that
    (a write refused, the lease lost, a kill), the retry or the next leader
    finds the outcome in the history and only finishes it (already_ended);
    from the older status alone it took a half-moved selector for a reset to
    put back, gave a release judged failing its traffic again, and could
    promote it later."""
    return any(
        isinstance(a, Record) and a.outcome not in ("progressing", "adopted") for a in plan.actions
    )


def progress_only(before: State, after: State) -> bool:
    """Nothing but PROGRESS (and the volatile pacing) changed."""
    kept = {f: getattr(before, f) for f in (*PACED, *VOLATILE)}
    if before.unready_since and not after.unready_since:
        # A pod back restarts the step's window (placement.step_in_place): paced
        # with the clear, as a flapping pod is. Lost with a restart, the
        # status still says the pod is lost, and the cycle that sees it
        # serve starts the window again then: later, never earlier.
        kept.update(window_start=before.window_start, checked=before.checked)
    return replace(after, **kept) == before
