"""The on-call commands: read status and history, request actions. Actions
are the same canary.io/action annotation a person can set with kubectl, so
there is one mechanism; the CLI only names itself as the field manager, so
the record says who asked."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from canary import action_text, history, manual, readable, release_outcome, render
from canary.changes import changes
from canary.kube import Conflict, Kube, KubeError, NotFound
from canary.kube.resources import CONFIGMAPS, LEASES, SERVICES
from canary.lease import SCOPE_ANNOTATION, covers
from canary.model import State, StateError
from canary.observe import action_author
from canary.spec import ACTION, STATUS, STRATEGY, SpecError, managed_by_annotations, parse
from canary.status_writes import read_state


class UserError(Exception):
    """Something the person at the keyboard can fix; the message says how."""


def _status(service: dict[str, Any]) -> dict[str, Any]:
    """The status as written, or a phase that says it cannot be read (a
    truncated or hand-edited status must not look like a Service the
    controller never touched, nor stop the other Services being shown)."""
    raw = (service["metadata"].get("annotations") or {}).get(STATUS)
    if not raw:
        return {}
    try:
        found = json.loads(raw)
    except ValueError:
        found = None
    if not isinstance(found, dict):
        return _unreadable("is not a JSON object")
    # Read as the controller reads it: a hand edit that leaves an object of
    # the wrong types ("step": "two", a null weight) would otherwise reach
    # the table as it is and stop `canary status -A` with a traceback. The
    # keys State does not know (phase, deployment, a newer version's) stay.
    try:
        state = State.from_json(found)
    except StateError as exc:
        return _unreadable(f"is not a valid status ({exc})")
    return {**found, **state.to_json()}


def _unreadable(why: str) -> dict[str, Any]:
    return {
        "phase": "Unreadable",
        "message": f"{STATUS} {why}; a running controller rebuilds it on its next cycle",
    }


LEASE_NAME = "canary-controller"  # canary/run.py's default
# The CLI's clock against the API server's: a lease is called stale only
# well past its duration, so a laptop a little ahead never raises a false alarm.
CLOCK_SLACK_S = 30.0


def lease_warning(
    lease: dict[str, Any] | None, where: str, now: float, namespaces: Iterable[str] = ()
) -> str | None:
    """What to tell on-call when no controller holds the Lease, or the one
    that holds it does not watch `namespaces` (those of the Services asked
    about), so a status nobody drives is not read as live; None when one
    holds it and watches them (or there is no Lease to read: a controller
    run without leader election)."""
    if lease is None:
        return None
    spec = lease.get("spec") or {}
    holder = str(spec.get("holderIdentity") or "")
    duration = float(spec.get("leaseDurationSeconds") or 15)
    at = _renewed_at(lease)
    if holder and at is not None and now - at <= duration + CLOCK_SLACK_S:
        scope = str(
            ((lease.get("metadata") or {}).get("annotations") or {}).get(SCOPE_ANNOTATION) or ""
        )
        outside = sorted({n for n in namespaces if not covers(scope, n)})
        if not outside:
            return None
        # `canary run --namespace` shrunk across a restart: a rollout in
        # flight there keeps its traffic, unanalysed, and a request written
        # there is never taken, while the Lease reads live.
        return (
            f"the controller holding lease {where} ({holder}) watches only namespace(s) "
            f"{scope.replace(',', ', ')}, not {', '.join(outside)}: statuses there show what "
            "a controller last wrote, and nothing acts on them or on a requested action "
            "until one watches them"
        )
    ago = f"{render.seconds(max(now - at, 0.0))} ago" if at is not None else "at an unknown time"
    last = f"last renewed {ago}" + (f" by {holder}" if holder else "; released")
    return (
        f"no controller holds lease {where} ({last}): statuses show what it last wrote, "
        "and nothing acts on them or on a requested action until a controller runs"
    )


def _renewed_at(lease: dict[str, Any]) -> float | None:
    """When the Lease was last renewed, in the API server's clock: the time
    it stamped on the write of renewTime (managedFields). renewTime itself
    is the holder's clock (lease.py writes time.time(), as client-go does):
    a live controller on a host whose clock is minutes behind read as gone,
    and a dead one on a host ahead as live. renewTime only when no such
    stamp is there."""
    stamped = [
        _epoch(entry.get("time"))
        for entry in (lease.get("metadata") or {}).get("managedFields") or []
        if "f:renewTime" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
    ]
    found = [at for at in stamped if at is not None]
    if found:
        return max(found)
    return _epoch((lease.get("spec") or {}).get("renewTime"))


def _epoch(text: object) -> float | None:
    try:
        return dt.datetime.fromisoformat(str(text)).timestamp() if text else None
    except ValueError:
        return None


async def controller_warning(
    kube: Kube, namespace: str, now: float, watched: Iterable[str] = ()
) -> tuple[str | None, float]:
    """lease_warning() for the controller's Lease in `namespace`, for the
    Services of the namespaces `watched`; unreadable (not found, not
    allowed) says nothing rather than guess. And the clock to tell ages by:
    the API server's, read from its answer, since the Lease's renewal (and a
    status's write) are stamped in it; `now`, this machine's, when it gave
    none. By this machine's, a laptop 5 minutes ahead (a clock that drifted
    while it slept, a WSL VM's after a suspend) read a live controller as
    `no controller holds lease ... (last renewed 5m00s ago): nothing acts`,
    and on-call would act by hand beside it; and every status as written 5
    minutes ago."""
    try:
        lease, served = await kube.get_dated(LEASES.path(namespace, LEASE_NAME))
    except KubeError:
        return None, now
    at = now if served is None else served
    return lease_warning(lease, f"{namespace}/{LEASE_NAME}", at, watched), at


def _managed(service: dict[str, Any]) -> bool:
    """As the controller tells (reconcile.Reconciler.managed): the strategy,
    or a status left from it, which stays until the hand-back has finished."""
    return managed_by_annotations(service["metadata"].get("annotations") or {})


def _releasing(service: dict[str, Any]) -> bool:
    return STRATEGY not in (service["metadata"].get("annotations") or {})


async def _service(kube: Kube, namespace: str, name: str, acting: bool = False) -> dict[str, Any]:
    """The Service, managed (or being handed back, unless `acting`)."""
    try:
        service = await kube.get(SERVICES.path(namespace, name))
    except NotFound:
        raise UserError(f"Service {namespace}/{name} not found; check the name and -n") from None
    if not _managed(service):
        raise UserError(
            f"Service {namespace}/{name} is not managed: annotate it with {STRATEGY}=canary "
            "or blue-green"
        )
    if acting and _releasing(service):
        raise UserError(
            f"Service {namespace}/{name} is being handed back to its Deployment ({STRATEGY} "
            "was removed): no request is taken; `canary status` says what the hand-back waits "
            "for"
        )
    return service


def _handed_back(item: dict[str, Any]) -> None:
    """The phase of a Service whose strategy was removed, as decide.phase
    derives it: a status still written while it was managed (no controller
    ran since) must not read as a rollout that goes on."""
    if item.get("phase") != "Releasing":
        last = "; ".join(str(v) for v in (item.get("phase"), item.get("message")) if v)
        item["message"] = (
            f"{STRATEGY} was removed: the controller hands the app back to its Deployment "
            f"(its status was last written while it was managed: {last or 'empty'})"
        )
        item["phase"] = "Releasing"


async def status(kube: Kube, namespace: str | None, name: str | None) -> list[dict[str, Any]]:
    if name:
        service = await _service(kube, namespace or "default", name)
        services = [service]
    else:
        listing = await kube.get(SERVICES.path(namespace))
        services = [s for s in listing.get("items", []) if _managed(s)]
    items = []
    for s in services:
        item = {"namespace": s["metadata"]["namespace"], "service": s["metadata"]["name"]}
        item.update(_status(s))
        if _releasing(s):
            _handed_back(item)
        asked = _pending(s)
        if asked:
            item["pending_action"] = asked
            item["pending_action_by"] = action_author(s["metadata"])
        written = status_written(s["metadata"])
        if written is not None:
            item["status_written"], item["status_written_by"] = written
        if item.get("failed_revision"):
            item["rolled_back"] = await _why(kube, item)
        items.append(item)
    return items


def status_written(meta: dict[str, Any]) -> tuple[float, str] | None:
    """When the status annotation was last written and by which field
    manager, from managedFields: the status itself says what was true then,
    not how long ago that was (a controller that holds its Lease but fails
    on this Service every cycle leaves an in-flight status standing), nor
    whether it was the controller that wrote it. None when unknown."""
    wanted = f"f:{STATUS}"
    found: tuple[float, str] | None = None
    for entry in meta.get("managedFields") or []:
        annotations = ((entry.get("fieldsV1") or {}).get("f:metadata") or {}).get("f:annotations")
        if not isinstance(annotations, dict) or wanted not in annotations:
            continue
        try:
            at = dt.datetime.fromisoformat(str(entry.get("time") or "")).timestamp()
        except ValueError:
            continue
        if found is None or at >= found[0]:
            found = (at, str(entry.get("manager") or "unknown"))
    return found


async def _why(kube: Kube, item: dict[str, Any]) -> dict[str, Any]:
    """Why the revision held back was rolled back (or aborted): the reason
    and the failing measurements, from its history entry."""
    revision = str(item["failed_revision"])
    why: dict[str, Any] = {"revision": revision}
    where = f"ConfigMap {item['namespace']}/{history.history_name(item['service'])}"
    # Without its entry, why the reason is not shown (the status still
    # shows): "no reason recorded" read as if the controller had not said.
    try:
        configmap = await kube.get(
            CONFIGMAPS.path(item["namespace"], history.history_name(item["service"]))
        )
    except NotFound:
        why["unshown"] = f"not shown: its history, {where}, is missing"
        return why
    except KubeError as exc:
        why["unshown"] = f"not shown: its history, {where}, could not be read ({exc})"
        return why
    loaded, corrupt = history.load_checked(configmap, shapes=False)
    records, _ = readable.entries(loaded)  # `canary status` is no place for them
    record = release_outcome.newest(records, revision)
    if record is not None:
        why.update({k: record.get(k) for k in ("number", "outcome", "reason", "ended")})
        why["failing"] = list(release_outcome.failing(record))
        # An undo's own target, rolled back or aborted: the Deployment never
        # held it (render.held_back asks for no Deployment change then).
        why["undo"] = revision in history.undos([record])
    elif corrupt:
        why["unshown"] = f"not shown: its history, {where}, cannot be read ({corrupt})"
    else:
        why["unshown"] = f"not shown: {where} has no entry for it (trimmed by history-limit?)"
    return why


def status_text(items: list[dict[str, Any]], color: bool, now: float | None = None) -> str:
    at = time.time() if now is None else now
    rows = render.status_rows([(i["namespace"], i["service"], i) for i in items], at)
    return render.table(render.STATUS_HEADERS, rows, color)


async def revisions(
    kube: Kube, namespace: str, name: str, say: Callable[[str], None] = lambda _: None
) -> list[dict[str, Any]]:
    """The history, with the checks and Events of the rollout in flight
    that its status still carries (history.CARRIED): those too when the
    ConfigMap is gone (deleted by hand mid-rollout). `say`: a sentence for
    each part left out as unreadable (history.read)."""
    service = await _service(kube, namespace, name)
    where = history.history_name(name)
    try:
        configmap = await kube.get(CONFIGMAPS.path(namespace, where))
    except NotFound:
        configmap = None
    records, corrupt = history.load_checked(configmap, shapes=False)
    if corrupt:
        # Read as empty it printed "no revisions recorded yet": the same as a
        # Service that never had a rollout, while the record was damaged.
        raise UserError(
            f"the history in ConfigMap {namespace}/{where} cannot be read: {corrupt}. "
            "A running controller copies it aside (label canary.io/history-corrupt=true) "
            "and starts a new one"
        )
    records, skipped = history.read(records, _status(service))
    for note in skipped:
        say(note)
    if configmap is None and not records and _status(service).get("adopted"):
        # Printed as no revisions at all, it read as a Service that never had
        # a rollout, not as the record of every release gone.
        say(
            f"the history, ConfigMap {namespace}/{where}, was not found (deleted?); a "
            "running controller starts a new one with the serving revision"
        )
    return records


def history_text(records: list[dict[str, Any]], color: bool) -> str:
    return render.table(render.HISTORY_HEADERS, render.history_rows(records), color)


def timeline_text(records: list[dict[str, Any]], number: int | None, color: bool) -> str:
    if not records:
        return "no revisions recorded yet"
    shown = changes(records)
    if number is None:
        return render.timeline(records[-1], color, shown[-1])
    for record, change in zip(records, shown, strict=True):
        if record.get("number") == number:
            return render.timeline(record, color, change)
    raise UserError(f"no revision #{number}; `canary history` lists them")


def pin(verb: str, service: dict[str, Any], revision: str | None) -> str:
    """The revision a promote, abort or retry is for: the one asked for (a
    hash or its start), else the one it would act on now. The controller
    carries the action out only on that revision, so a release that replaced
    it in between is never promoted or aborted by mistake."""
    if verb not in manual.PINNED:
        return ""
    try:
        state = State.from_json(_status(service))
    except StateError:
        state = State()
    current = manual.aimed_at(verb, state)
    if revision is None:
        return current
    if not current or not current.startswith(revision):
        now = f"it would act on {current}" if current else f"there is nothing to {verb} now"
        raise UserError(f"{verb} was asked for revision {revision}, but {now}; nothing requested")
    return current


async def request(
    kube: Kube,
    namespace: str,
    name: str,
    verb: str,
    to: int | None,
    manager: str | None = None,
    revision: str | None = None,
    say: Callable[[str], None] = lambda _: None,
    step: int | None = None,
) -> str:
    """Set canary.io/action. The timestamp makes each request a new value, so
    asking twice acts twice; the field manager (default `canary-cli-<user>`)
    records who asked. `revision`: the revision the person means (see pin).
    `say`: a warning for on-call (see _taken_as_done). `step`: the step in
    flight a retry was confirmed for (the dashboard's), see _still_in_flight."""
    if verb == "undo" and to is None:
        raise UserError("undo needs --to N; `canary history` lists the revision numbers")
    for attempt in range(3):
        service = await _service(kube, namespace, name, acting=True)
        _not_in_conflict(service)
        if verb == "undo" and to is not None:
            await _undoable(kube, service, to)
        _taken_as_done(service, verb, say)
        _not_pending(service)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        pinned = pin(verb, service, revision)
        _still_in_flight(service, verb, pinned, step)
        _something_to_act_on(service, verb, pinned)
        _resumable(service, verb)
        value = action_value(service, verb, to, pinned, stamp)
        # Conditional on the version read: a request written in between (a
        # colleague's) is seen on the next read instead of overwritten.
        meta = {"resourceVersion": service["metadata"]["resourceVersion"]}
        try:
            await kube.patch(
                SERVICES.path(namespace, name),
                {"metadata": {**meta, "annotations": {ACTION: value}}},
                fieldManager=(manager or f"canary-cli-{getpass.getuser()}")[:128],
            )
        except Conflict:
            if attempt == 2:
                raise UserError(
                    f"Service {namespace}/{name} kept changing while writing; try again"
                ) from None
            continue
        return value
    raise AssertionError("unreachable")


def step_of(service: dict[str, Any], verb: str, pinned: str) -> int | None:
    """The step (from 1) a retry pinned to `pinned` judges again, when that
    is the canary in flight; None for a retry of the revision rolled back
    (it rolls out again from its first step) and any other verb."""
    if verb != "retry" or not pinned:
        return None
    try:
        state = State.from_json(_status(service))
    except StateError:
        return None
    return state.step + 1 if state.canary_revision == pinned else None


def action_value(
    service: dict[str, Any], verb: str, to: int | None, pinned: str, stamp: str
) -> str:
    """The canary.io/action text for this request on the status read. A
    retry of the canary in flight names its step (action_text.STEP_TOKEN):
    with the revision alone, the same text asked for a retry of that
    revision once rolled back, and a retry of a halted step taken after a
    rollback rolled the release that had just failed out again."""
    if verb == "undo":
        return f"{verb} {to} {stamp}"
    aimed = f" {action_text.REVISION_TOKEN}{pinned}" if pinned else ""
    step = step_of(service, verb, pinned)
    if step is not None:
        aimed += f" {action_text.STEP_TOKEN}{step}"
    return f"{verb}{aimed} {stamp}"


def _still_in_flight(service: dict[str, Any], verb: str, pinned: str, step: int | None) -> None:
    """A retry confirmed for a step in flight (the dashboard's page showed
    it) whose revision has been rolled back since is refused: the revision
    alone still matched, and the click that was to judge the step again
    (traffic staying where it was) rolled the release that had just failed
    out again from its first step."""
    if verb != "retry" or step is None or step_of(service, verb, pinned) is not None:
        return
    raise UserError(
        f"the retry was confirmed for step {step} of revision {pinned} in flight, but it "
        "is no longer rolling out (rolled back since?); nothing requested. Check its "
        "status, then ask again"
    )


def _something_to_act_on(service: dict[str, Any], verb: str, pinned: str) -> None:
    """A promote, abort or retry with no revision to pin is refused at once,
    as the controller would ignore it on this status: written without one,
    it acted on whatever ran when the controller took it. The status read
    can be behind what runs (a rollout's start is written once its pods
    come up), so `canary promote` typed for a release just promoted shipped
    the one CI started a second later, with no check of its own, and said
    "promote requested". A status the controller will rebuild is left to
    _taken_as_done, as before."""
    if verb not in manual.PINNED or pinned or read_state(service)[1]:
        return
    meta = service["metadata"]
    raise UserError(
        f"there is nothing to {verb} on Service {meta.get('namespace')}/{meta.get('name')} "
        "now, as its status reads (a rollout that has just started shows once its pods come "
        "up); nothing requested. Check `canary status`, then ask again"
    )


def _resumable(service: dict[str, Any], verb: str) -> None:
    """A resume that would change nothing for what the Service shows (not
    paused by `canary pause`, and held by the canary.io/paused annotation, a
    halt or a closed gate: manual._resume) is refused at once, as an undo of
    nothing is. Written anyway, it read
    "resume requested" (exit 0) and only an ActionIgnored Warning said the
    rollout did not go on. Under annotations that do not parse the
    controller carries a resume out (manual.while_invalid), and a status it
    will rebuild is left to _taken_as_done: both written, as before."""
    if verb != "resume":
        return
    state, lost = read_state(service)
    meta = service["metadata"]
    try:
        spec = parse(str(meta.get("name", "")), meta.get("annotations") or {})
    except SpecError:
        return
    if lost or state.invalid or spec is None:
        return
    holds = manual.resume_holds(state, spec.paused)
    if not holds or state.paused:
        # A `canary pause` under the hold is lifted by it (the controller
        # says what still holds): refused, the rollout stayed paused once
        # the gate opened or the halt cleared, until a second resume.
        return
    raise UserError(
        f"Service {meta.get('namespace')}/{meta.get('name')} would not go on, because "
        f"{'; '.join(holds)}; nothing requested"
    )


async def _undoable(kube: Kube, service: dict[str, Any], number: int) -> None:
    """Refuse at once an undo the controller would ignore (manual._undo): no
    entry #N it can roll out again (trimmed by history-limit since `canary
    history` was read, a new history, a typo), or the revision that serves or
    rolls out. Written anyway, it read "undo requested", and only a Warning
    Event said otherwise. A history that cannot be read leaves it to the
    controller."""
    namespace, name = service["metadata"]["namespace"], service["metadata"]["name"]
    where = history.history_name(name)
    try:
        configmap: dict[str, Any] | None = await kube.get(CONFIGMAPS.path(namespace, where))
    except NotFound:
        configmap = None
    except KubeError:
        return
    records, corrupt = history.load_checked(configmap)
    if corrupt and not records:
        return
    undoable = history.undoable(records)
    revision = undoable.get(number)
    if revision is None:
        there = ", ".join(f"#{n}" for n in sorted(undoable)) or "none"
        raise UserError(
            f"no revision #{number} to roll out again in ConfigMap {namespace}/{where} "
            f"(it has {there}): `canary history` lists them; nothing requested"
        )
    try:
        state = State.from_json(_status(service))
    except StateError:
        return
    if revision == (state.canary_revision or state.stable_revision):  # as manual._undo
        does = "rolls out" if state.canary_revision else "serves"
        raise UserError(f"revision #{number} ({revision}) already {does}; nothing requested")


def _taken_as_done(service: dict[str, Any], verb: str, say: Callable[[str], None]) -> None:
    """A status the controller will not use (missing, garbled, written by
    someone else) is rebuilt from what runs, and the request then on the
    Service is taken as done, a pause excepted (decide._action_on_rebuild):
    `canary abort` with the controller down read as requested, and once a
    controller ran, the release went out again from its first step. Said,
    not refused: a status someone else wrote may be the very one the
    controller would write (reconcile._vouched), which the CLI cannot tell."""
    meta = service["metadata"]
    _, lost = read_state(service)
    if not lost or verb == "pause":
        return
    what = (
        "is missing (no controller has taken the Service up yet, or it was removed)"
        if lost == "missing"
        else f"was {lost}"
        if lost.startswith("last written by")
        else f"is {lost}"
    )
    say(
        f"the {STATUS} annotation of Service {meta.get('namespace')}/{meta.get('name')} "
        f"{what}: a controller rebuilds it from what runs, and a request it finds on the "
        f"Service then is taken as done (StateRebuilt says so), so this {verb} is likely not "
        "to be carried out. Ask again once `canary status` shows the status a controller "
        "rebuilt"
    )


def _not_in_conflict(service: dict[str, Any]) -> None:
    """A Service in Conflict changes nothing (decide._conflict): a request
    to it (the wrong Service, at 3 a.m.) read as requested while the
    rollout went on through the other, and stayed there to be taken the day
    the Conflict ends."""
    conflict = str(_status(service).get("conflict") or "")
    if conflict:
        meta = service["metadata"]
        owner = conflict.partition(";")[0]
        raise UserError(
            f"{owner}: Service {meta.get('namespace')}/{meta.get('name')} is in phase Conflict "
            "and takes no request (ask the Service that manages it); nothing requested"
        )


def _pending(service: dict[str, Any]) -> str:
    """The request on the Service the controller has not taken ("" when
    none): with no controller running it stays there, and is carried out
    whenever one runs again, hours later maybe."""
    asked = str((service["metadata"].get("annotations") or {}).get(ACTION, "")).strip()
    status = _status(service)
    taken = status.get("taken_actions") or ()
    return "" if not asked or asked == status.get("last_action") or asked in taken else asked


def _not_pending(service: dict[str, Any]) -> None:
    """One request at a time: canary.io/action holds one, so a second written
    before the controller took the first would erase it unseen (an abort
    lost under a pause)."""
    asked = str((service["metadata"].get("annotations") or {}).get(ACTION, "")).strip()
    status = _status(service)
    # Only where the controller takes requests: not before adoption, in a
    # Conflict, or with the Deployment gone (one stuck there must be replaceable).
    taking = status.get("adopted") and not status.get("conflict")
    waiting = asked and asked != status.get("last_action", "")
    if waiting and taking and not status.get("source_missing"):
        raise UserError(
            f"an earlier request, {asked!r}, has not been taken by the controller yet "
            "(`canary status` shows its phase); ask again once it has, or set "
            f"{ACTION} with kubectl to replace it"
        )
