"""Revision history: every revision with its images, config hashes, start
and end, outcome, reason and the decision record of each analysis. Kept
bounded in a ConfigMap owned by the Service, so it outlives Events (1 h)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict

from analysis.run import StepResult
from canary import readable
from canary.model import JSON, Emit, Plan, Record, Source, State

DATA_KEY = "history.json"
MAX_CHECKS_PER_REVISION = 60  # the oldest checks of a very long rollout drop first


def history_name(service: str) -> str:
    return f"{service[:230]}-canary-history"


def load(configmap: JSON | None) -> list[JSON]:
    """The records as on-call's readers take them (readable.entries leaves
    out a piece of another shape and names it): an entry hand-edited into
    another shape is not the whole history lost to them. The controller
    reads with load_checked, which keeps such a history aside."""
    return load_checked(configmap, shapes=False)[0]


def load_checked(configmap: JSON | None, shapes: bool = True) -> tuple[list[JSON], str]:
    """(records, why they could not be read); a corrupt history reads as
    empty and says so, so the caller can keep it aside instead of
    overwriting it. `shapes`: an entry with a field of another type than the
    controller reads makes the history corrupt too, but only that entry is
    left out: the others (the undo targets, the stable revision's template)
    read on. On-call's readers, which leave such a piece out and name it,
    ask without."""
    if configmap is None:
        return [], ""
    text = (configmap.get("data") or {}).get(DATA_KEY)
    if text is None:
        return [], ""
    try:
        records = json.loads(text)
    except ValueError as exc:
        return [], f"{DATA_KEY} is not valid JSON ({exc})"
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        return [], f"{DATA_KEY} is not a list of revision records"
    wrongs = [
        f"entry {index} (revision {record.get('revision')!r}): {wrong}"
        for index, record in enumerate(records if shapes else [], 1)
        if (wrong := readable.misshapen(record))
    ]
    if wrongs:
        # Such an entry is kept less what cannot be read (readable.entry),
        # not left out: a newer version of the controller, rolled back to
        # this one, may have written a field of every entry otherwise, and
        # leaving them out lost what a rebuild reads of them (a release
        # rolled back went out again), the serving revision's template and
        # the undo targets. One without a revision names nothing.
        kept = [r for r in map(_readable_part, records) if r is not None]
        more = f" (and {len(wrongs) - 1} more)" if len(wrongs) > 1 else ""
        return kept, (
            f"{DATA_KEY}: {wrongs[0]}{more}; the new history keeps every entry, less what "
            "cannot be read"
        )
    return records, ""


def _readable_part(record: JSON) -> JSON | None:
    """The entry, or what the controller can read of one of another shape
    (None when that names no revision)."""
    if not readable.misshapen(record):
        return record
    kept = readable.entry(record)[0]
    return kept if isinstance(kept.get("revision"), str) else None


def outcomes(records: list[JSON]) -> dict[str, str]:
    """Revision -> its latest outcome, the latest last."""
    result: dict[str, str] = {}
    for record in records:
        revision = str(record.get("revision", ""))
        result.pop(revision, None)
        result[revision] = str(record.get("outcome", ""))
    return result


# A ConfigMap holds at most 1 MiB; the oldest checks go first to stay below.
MAX_BYTES = 900_000


def dump(records: list[JSON]) -> dict[str, str]:
    # Each entry is serialised once, and again only when trimmed: the list's
    # text is theirs joined (what json.dumps of the list writes). Serialised
    # whole after each trim, a history at its limit was written 6 to 8 times
    # over at a rollout's end (50-170 ms on the event loop, in the cycle
    # that rolls back), and seconds' worth for one far over it.
    records = [dict(r) for r in records]
    texts = {id(r): _entry_text(r) for r in records}
    while _joined_size(records, texts) > MAX_BYTES:
        oldest = next((r for r in records if r.get("checks")), None)
        if oldest is None:
            records = _without_oldest(records)  # nothing left to trim but whole revisions
        else:
            oldest["checks"] = oldest["checks"][len(oldest["checks"]) // 2 + 1 :]
            texts[id(oldest)] = _entry_text(oldest)
    return {DATA_KEY: "[" + ",".join(texts[id(r)] for r in records) + "]"}


def _entry_text(record: JSON) -> str:
    return json.dumps(record, separators=(",", ":"))


def _joined_size(records: list[JSON], texts: dict[int, str]) -> int:
    """The length of the list's text: brackets, entries and commas."""
    return 2 + sum(len(texts[id(r)]) for r in records) + max(len(records) - 1, 0)


def _without_oldest(records: list[JSON]) -> list[JSON]:
    """The records less the oldest entry that is neither the serving one
    (_trim keeps it first when a run of releases that never served follows
    it: a ConfigChurn of superseded ones, with history-limit 100 and a 9 KB
    template, passed MAX_BYTES in a day, and the stable revision's
    template, which puts a deleted or hand-edited stable twin back, went
    first) nor the newest (the rollout in flight); those two go last."""
    spared = {id(records[-1]), id(_serving(records))} if records else set()
    oldest = next((r for r in records if id(r) not in spared), None)
    if oldest is None:
        return records[1:]
    return [r for r in records if r is not oldest]


def undos(records: list[JSON]) -> frozenset[str]:
    """The revisions whose latest entry was started by an `undo`."""
    latest = {str(r.get("revision", "")): r for r in records}
    return frozenset(
        revision
        for revision, r in latest.items()
        if any(a.get("reason") == "UndoRequested" for a in r.get("actions") or [])
    )


# What a person's `canary pause` tells (manual.py, also while the annotations
# are invalid), and what lifts it: a resume (carried out or not: it clears the
# pause either way) and a promote.
_PAUSED_BY_HAND = ("RolloutPaused", "paused by ")
_LIFTED = (
    ("RolloutResumed", "resumed by "),
    ("ActionIgnored", "resume by "),
    ("PromoteRequested", ""),
)


def paused_by_hand(records: list[JSON], carried: list[JSON]) -> str:
    """The Event of a `canary pause` nothing has lifted since ("" when none),
    from the history and the items the status carried (history.CARRIED): a
    Service replaced with Git's manifest (Argo CD `Replace=true`, `kubectl
    replace`, Helm `--force`) loses the status and the action together, and
    nothing else says the rollout was paused."""
    events = [a for r in records for a in r.get("actions") or [] if isinstance(a, dict)]
    events += [i["event"] for i in carried if isinstance(i.get("event"), dict)]
    paused = ""
    for event in sorted(events, key=lambda e: _number(e.get("at"))):
        told = (str(event.get("reason") or ""), str(event.get("message") or ""))
        if told[0] == _PAUSED_BY_HAND[0] and told[1].startswith(_PAUSED_BY_HAND[1]):
            paused = told[1]
        elif any(told[0] == reason and told[1].startswith(text) for reason, text in _LIFTED):
            paused = ""
    return paused


def ended(records: list[JSON]) -> dict[str, float]:
    """Revision -> when its latest entry ended (0.0: still in flight)."""
    result: dict[str, float] = {}
    for record in records:
        result[str(record.get("revision", ""))] = float(record.get("ended") or 0.0)
    return result


def endings(outcomes_of: dict[str, str], ended_at: dict[str, float]) -> dict[str, float]:
    """Outcome -> when the newest rollout that ended so ended, from each
    revision's latest entry (outcomes(), ended()): what any process reading
    the history can export, whoever recorded it."""
    newest: dict[str, float] = {}
    for revision, outcome in outcomes_of.items():
        at = ended_at.get(revision, 0.0)
        if at and outcome not in ("progressing", "adopted"):
            newest[outcome] = max(newest.get(outcome, 0.0), at)
    return newest


# The one outcome that may follow another: a person's abort right after a
# promotion (the old twin still up) undoes the promotion on purpose.
_REVISED = {("promoted", "aborted")}


def _trim(records: list[JSON], limit: int) -> list[JSON]:
    """The newest `limit` entries, and the newest serving one even when
    older: a run of rolled-back releases must not push out the template
    that puts a deleted or edited stable twin back."""
    kept = records[-limit:]
    serving = _serving(records)
    if serving is not None and not any(r is serving for r in kept):
        # In place of the oldest kept; with a limit of 1, beside the newest.
        kept = [serving, *kept[1:]] if limit > 1 else [serving, *kept]
    return kept


def _serving(records: list[JSON]) -> JSON | None:
    """The newest entry of a revision that served (promoted or adopted)."""
    return next((r for r in reversed(records) if r.get("outcome") in ("promoted", "adopted")), None)


def _find(records: list[JSON], revision: str) -> JSON | None:
    for record in reversed(records):
        if record.get("revision") == revision:
            return record
    return None


def apply_record(
    records: list[JSON],
    record: Record,
    source: Source,
    now: float,
    limit: int,
    running: JSON | None = None,
) -> list[JSON]:
    """`running`: the template a twin (not edited by hand) runs for the
    revision, for a revision neither the source nor the history holds (the
    one serving when a lost status and history were rebuilt)."""
    records = [dict(r) for r in records]
    entry = _find(records, record.revision)
    if entry is None or (record.outcome == "progressing" and entry.get("ended")):
        what: JSON
        if source.revision == record.revision:
            # The twin-ready template (config copies applied) is what `undo`
            # rolls out again later.
            what = {
                "images": list(source.images),
                "config": dict(source.config),
                "template": source.template,
            }
        elif entry is None and running is not None:
            images = [
                str(c.get("image", "")) for c in running.get("spec", {}).get("containers", [])
            ]
            what = {"images": images, "config": {}, "template": running}
        else:  # an undo: the same revision as an earlier entry
            what = {k: (entry or {}).get(k) for k in ("images", "config", "template")}
        entry = {
            "number": _next_number(records),
            "revision": record.revision,
            **what,
            "started": now,
            "checks": [],
            "actions": [],
        }
        records.append(entry)
    elif entry.get("ended") and (str(entry.get("outcome")), record.outcome) not in _REVISED:
        # An ended entry keeps its outcome: a later cycle deciding again from
        # an older status (its status write failed) must not rewrite it.
        return _trim(records, limit)
    entry["outcome"] = record.outcome
    entry["reason"] = record.reason
    if record.outcome != "progressing":
        entry["ended"] = now
    else:
        entry.pop("ended", None)
    return _trim(records, limit)


def ensure_entry(
    records: list[JSON],
    revision: str,
    source: Source,
    started: float,
    now: float,
    limit: int,
    running: JSON | None = None,
    kept: JSON | None = None,
) -> list[JSON]:
    """The entry of a rollout in flight, put back when the history lost it
    (deleted or edited by hand). `kept`: that entry as this controller last
    read or wrote it, put back whole, its checks and Events with it (a
    promotion's record then holds every step it passed; chaos seed 48).
    Without it (another replica led then, or this one restarted since), one
    started when the rollout did, saying that what came before is not
    recorded."""
    if _find(records, revision) is not None:
        return records
    if (
        kept is not None
        and kept.get("revision") == revision
        and kept.get("outcome") == "progressing"
        and not kept.get("ended")
    ):
        others = [r for r in records if r.get("number") != kept.get("number")]
        number = kept.get("number")
        if not isinstance(number, int) or number < _next_number(others):
            number = _next_number(others)  # (one edited by hand, or taken since)
        restored = {**kept, "number": number}
        return add_event(
            _trim([*others, restored], limit),
            revision,
            now,
            "EntryRestored",
            "this rollout's history entry was lost (the history deleted or edited); put back "
            f"from the copy this controller last read, with its {len(kept.get('checks') or [])} "
            "checks; the entries of other revisions are not",
        )
    records = apply_record(
        records, Record(revision, "progressing", "entry restored"), source, started, limit, running
    )
    return add_event(
        records,
        revision,
        now,
        "EntryRestored",
        "this rollout's history entry was lost (the history deleted or edited); "
        "its checks and Events before now are not recorded",
    )


def add_check(records: list[JSON], revision: str, check: JSON) -> list[JSON]:
    """`check`: as check_entry makes it. One already recorded (its cycle
    wrote the history, then failed, and the retry judged it again) is not
    added twice."""
    records = [dict(r) for r in records]
    entry = _find(records, revision)
    if entry is None:
        return records
    evaluated, kind = check.get("evaluated"), check.get("kind")
    if evaluated and any(
        c.get("evaluated") == evaluated and c.get("kind") == kind for c in entry.get("checks", [])
    ):
        return records
    entry["checks"] = [*entry.get("checks", []), check][-MAX_CHECKS_PER_REVISION:]
    return records


def check_entry(
    step: int,
    weight: int,
    effective: float,
    result: StepResult,
    decided: str,
    at: float = 0.0,
    applied: float = 0.0,
    kind: str = "scheduled",
    evaluated: float = 0.0,
) -> JSON:
    """A check as the history keeps it. `at`: when the decision was taken;
    `applied`: when its writes were done (an API outage shows as the gap
    between the two); `evaluated`: when its queries were evaluated."""
    return {
        "kind": kind,
        "at": at,
        "evaluated": evaluated,
        "applied": applied,
        "step": step + 1,
        "weight": weight,
        "effective_weight": effective,
        "verdict": str(result.verdict),
        "reason": result.reason,
        "decided": decided,
        "measurements": [
            {k: (str(v) if k == "verdict" else v) for k, v in asdict(m).items()}
            for m in result.measurements
        ],
    }


def add_event(
    records: list[JSON],
    revision: str,
    at: float,
    reason: str,
    message: str,
    applied: float = 0.0,
) -> list[JSON]:
    """Keep what the controller decided and who asked, next to the revision."""
    records = [dict(r) for r in records]
    entry = _find(records, revision)
    if entry is not None and not any(
        (a.get("at"), a.get("reason"), a.get("message")) == (at, reason, message)
        for a in entry.get("actions", [])
    ):
        # Not twice: a cycle whose history write landed and then failed
        # hands the same Events to its retry.
        entry["actions"] = _capped(
            [
                *entry.get("actions", []),
                {"at": at, "applied": applied or at, "reason": reason, "message": message},
            ]
        )
    return records


MAX_ACTIONS_PER_REVISION = 100


def _capped(actions: list[JSON]) -> list[JSON]:
    """The newest MAX_ACTIONS_PER_REVISION Events, the oldest going first,
    except those a later decision reads back (_read_back): a rollout paused
    or held for a day gathers a hundred Events (a SourceScaled every 10
    minutes while a GitOps tool re-applies `replicas`), and the pause, or
    the undo it started with, went with them."""
    excess = len(actions) - MAX_ACTIONS_PER_REVISION
    kept: list[JSON] = []
    for action in actions:
        if excess > 0 and not _read_back(action):
            excess -= 1
            continue
        kept.append(action)
    return kept[-MAX_ACTIONS_PER_REVISION:]


def _read_back(action: JSON) -> bool:
    """An Event a decision reads back from the history: an undo's start
    (undos) and a person's pause and what lifts it (paused_by_hand)."""
    told = (str(action.get("reason") or ""), str(action.get("message") or ""))
    return told[0] == "UndoRequested" or any(
        told[0] == reason and told[1].startswith(text)
        for reason, text in (_PAUSED_BY_HAND, *_LIFTED)
    )


def revisions_kept(records: list[JSON]) -> set[str]:
    return {str(r.get("revision")) for r in records}


def undoable(records: list[JSON]) -> dict[int, str]:
    """History number -> revision, for the entries `undo` can roll out again."""
    return {
        int(r["number"]): str(r["revision"]) for r in records if r.get("template") and "number" in r
    }


def template_of(records: list[JSON], revision: str) -> JSON | None:
    entry = _find(records, revision)
    template = entry.get("template") if entry else None
    return template if isinstance(template, dict) else None


def events_by_revision(before: State, plan: Plan) -> list[tuple[str, Emit]]:
    """Each Event with the revision whose entry it belongs in: that of the
    record that follows it in the decision (the rollout it ends or starts;
    an undo mid-rollout ends one and starts another), else the canary's."""
    last = plan.state.canary_revision or before.canary_revision
    result: list[tuple[str, Emit]] = []
    waiting: list[Emit] = []
    for action in plan.actions:
        if isinstance(action, Emit):
            waiting.append(action)
        elif isinstance(action, Record):
            result.extend((action.revision, e) for e in waiting)
            waiting = []
    result.extend((last, e) for e in waiting)
    return [(revision, e) for revision, e in result if revision]


# The rollout in flight's checks and Events not yet in the ConfigMap, carried
# by the status annotation under this key: the status is written at every
# step anyway, where the history (up to MAX_BYTES, rewritten whole) was
# written a second time per step for its check (issue #12). A new release's
# start rides along too. The ConfigMap takes them with the next outcome (a
# rollout's end; an undo, a retry, or a start that ends another rollout),
# on a hand-back or a graceful stop, or when they outgrow the status
# (reconcile.CARRIED_MAX_BYTES). Readers see both (with_carried).
CARRIED = "record"


def check_item(revision: str, check: JSON) -> JSON:
    return {"revision": revision, "check": check}


def start_item(
    revision: str, at: float, reason: str, source: Source, template: JSON | None = None
) -> JSON:
    """A release's start (what apply_record makes of its `progressing`
    record). `template`: kept in memory only (slim() leaves it out of the
    status): taken at the history's write from the source, or the twin
    running the revision, when it is not there."""
    start: JSON = {
        "at": at,
        "reason": reason,
        "images": list(source.images),
        "config": dict(source.config),
    }
    if template is not None:
        start["template"] = template
    return {"revision": revision, "start": start}


def slim(items: list[JSON]) -> list[JSON]:
    """The items as the status carries them: without a start's template."""
    return [
        {**i, "start": {k: v for k, v in i["start"].items() if k != "template"}}
        if isinstance(i.get("start"), dict)
        else i
        for i in items
    ]


def _start_entry(
    records: list[JSON], revision: str, start: JSON, template: JSON | None
) -> list[JSON]:
    """The entry of a carried start, as apply_record makes a release's: a
    new one, or the reason on one of the same revision never ended (a
    rollout of it started again). One already made for this very start
    (the history took it and the status still carries it) is kept as it is."""
    at = _number(start.get("at"))
    if any(r.get("revision") == revision and r.get("started") == at for r in records):
        return records
    records = [dict(r) for r in records]
    reason = str(start.get("reason") or "")
    entry = _find(records, revision)
    if entry is not None and not entry.get("ended"):
        entry.update(outcome="progressing", reason=reason)
        return records
    images, config = start.get("images"), start.get("config")
    records.append(
        {
            "number": _next_number(records),
            "revision": revision,
            "images": images if isinstance(images, list) else [],
            "config": config if isinstance(config, dict) else {},
            "template": start.get("template") or template,
            "started": at,
            "checks": [],
            "actions": [],
            "outcome": "progressing",
            "reason": reason,
        }
    )
    return records


def event_item(revision: str, at: float, applied: float, reason: str, message: str) -> JSON:
    return {
        "revision": revision,
        "event": {"at": at, "applied": applied, "reason": reason, "message": message},
    }


def apply_items(
    records: list[JSON],
    items: list[JSON],
    templates: Callable[[str], JSON | None] = lambda revision: None,
) -> list[JSON]:
    """Carried starts, checks and Events into their revisions' entries; one
    already there (the ConfigMap took it, and the status still carries it)
    is not added twice. `templates`: a start's template, when the item has
    none (read back from the status)."""
    for item in items:
        revision = str(item.get("revision") or "")
        check, event, start = item.get("check"), item.get("event"), item.get("start")
        if isinstance(start, dict):
            template = None if start.get("template") else templates(revision)
            records = _start_entry(records, revision, start, template)
        elif isinstance(check, dict):
            records = add_check(records, revision, check)
        elif isinstance(event, dict):
            records = add_event(
                records,
                revision,
                _number(event.get("at")),
                str(event.get("reason") or ""),
                str(event.get("message") or ""),
                _number(event.get("applied")),
            )
    return records


def recorded(records: list[JSON], item: JSON) -> bool:
    """The history holds this carried item already (a status whose write
    after the history's failed still carries it): read back from that
    status, it is dropped, or it would be added again to a later entry of
    the same revision (a retry). An item whose entry is not there is kept."""
    revision = item.get("revision")
    entries = [r for r in records if r.get("revision") == revision]
    start, check, event = item.get("start"), item.get("check"), item.get("event")
    if isinstance(start, dict):
        return any(r.get("started") == _number(start.get("at")) for r in entries)
    if isinstance(check, dict):
        if not check.get("evaluated"):
            return False  # nothing tells it from another (add_check's dedupe too)
        judged = (check.get("evaluated"), check.get("kind"))
        return any(
            (c.get("evaluated"), c.get("kind")) == judged
            for r in entries
            for c in r.get("checks", [])
        )
    if isinstance(event, dict):
        told = (_number(event.get("at")), event.get("reason"), event.get("message"))
        return any(
            (a.get("at"), a.get("reason"), a.get("message")) == told
            for r in entries
            for a in r.get("actions", [])
        )
    return False


def _number(value: object) -> float:
    """A time as written; anything else (a hand edit) reads as 0."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _next_number(records: list[JSON]) -> int:
    """One above the highest entry number; a hand-edited one that is not a
    number is passed over (readers show such a history as it is)."""
    numbers = [r.get("number") for r in records]
    return (
        max(
            (int(n) for n in numbers if isinstance(n, int | float) and not isinstance(n, bool)),
            default=0,
        )
        + 1
    )


def carried(status: JSON, every: bool = False) -> list[JSON]:
    """The items a (parsed) status annotation carries for its rollout in
    flight; a malformed value reads as none (the status itself is validated
    elsewhere). Only the canary's: a status whose write after a rollout's
    end failed still carries what the history took then, and it must not
    reappear on a later entry of the same revision. `every`: all of them,
    whatever their revision (what the annotation holds)."""
    items = status.get(CARRIED)
    revision = status.get("canary_revision")
    if not isinstance(items, list) or not (revision or every):
        return []
    return [i for i in items if isinstance(i, dict) and (every or i.get("revision") == revision)]


def with_carried(records: list[JSON], status: JSON) -> list[JSON]:
    """read() without its sentences."""
    return read(records, status)[0]


def read(records: list[JSON], status: JSON) -> tuple[list[JSON], list[str]]:
    """The history as on-call reads it, and a sentence for each part left
    out as unreadable (a hand edit: readable.py): the ConfigMap's records
    with what the status still carries for the rollout in flight; not what
    the history holds already, as a new process reads it back (recorded): a
    status still carrying an earlier rollout's checks must not put them on
    a later entry of the same revision (a retry). Carried checks and Events
    whose entry is gone (the ConfigMap deleted or emptied by hand while the
    status carries no start) get one made from the status, so the rollout
    in flight is still shown."""
    records, notes = readable.entries(records)
    found = status.get(CARRIED)
    if found is not None and not isinstance(found, list):
        notes.append(f"the status's {CARRIED!r} is {type(found).__name__}, not a list; not shown")
    wanted = carried(status)
    indexed = [(i, x) for i, x in enumerate(found or []) if any(x is w for w in wanted)]
    items, skipped = readable.items(indexed, CARRIED)
    items = [i for i in items if not recorded(records, i)]
    revision = str(status.get("canary_revision") or "")
    starts = any(isinstance(i.get("start"), dict) for i in items)
    if items and not starts and _find(records, revision) is None:
        started = status.get("rollout_started")
        records = [
            *records,
            {
                "number": _next_number(records),
                "revision": revision,
                "started": _number(started),
                "checks": [],
                "actions": [],
                "outcome": "progressing",
                "reason": "not in the history (its ConfigMap deleted or emptied); "
                "shown from the status",
            },
        ]
    return (apply_items(records, items) if items else records), notes + skipped
