"""What the controller's status and history say about one release, for
`canary wait` and `canary status`. Pure: dicts in, values out.

A release is one revision hash. The status tells what is true now (stable,
canary, failed revision); the history tells how each attempt ended and why.
Neither alone is enough: the status forgets a revision as soon as the next
one starts, and the history keeps outcomes of earlier attempts of the same
revision, which must never be taken for this one (`stale_after`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

JSON = dict[str, Any]


class Outcome(StrEnum):
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled-back"
    ABORTED = "aborted"
    HALTED = "halted"
    PAUSED = "paused"
    SUPERSEDED = "superseded"
    TIMED_OUT = "timed-out"


# 1 is any failure to wait at all (no such Service, API errors), 2 is a usage
# error (argparse); the outcomes get their own codes so a pipeline can branch.
ERROR_EXIT = 1
EXIT_CODES: dict[Outcome, int] = {
    Outcome.PROMOTED: 0,
    Outcome.ROLLED_BACK: 3,
    Outcome.ABORTED: 4,
    Outcome.HALTED: 5,
    Outcome.PAUSED: 6,
    Outcome.SUPERSEDED: 7,
    Outcome.TIMED_OUT: 8,
}


@dataclass(frozen=True, slots=True)
class Settled:
    outcome: Outcome
    message: str
    record: JSON | None = None  # the history entry of the attempt, when known
    failing: tuple[JSON, ...] = field(default=())

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]


@dataclass(frozen=True, slots=True)
class Pending:
    message: str  # what the release is waiting for, for the progress line


def newest(records: list[JSON], revision: str) -> JSON | None:
    """The latest history entry of a revision (an undo adds a second one)."""
    for record in reversed(records):
        if record.get("revision") == revision:
            return record
    return None


def matches(revision: str, wanted: str) -> bool:
    """A revision given on the command line may be shortened, like a git hash."""
    return bool(wanted) and bool(revision) and revision.startswith(wanted)


def involved(status: JSON, revision: str) -> bool:
    """Whether the status says anything about this revision now."""
    return revision in (
        status.get("canary_revision"),
        status.get("stable_revision"),
        status.get("failed_revision"),
        status.get("undo_of"),
    )


def stale_after(status: JSON, records: list[JSON], revision: str, source_revision: str) -> int:
    """History numbers up to this one belong to earlier attempts. When the
    Deployment asks for the revision but the controller has not started it
    yet, every entry already there is from before: an old `promoted` or
    `rolled-back` of the same template says nothing about this release."""
    if involved(status, revision) or source_revision != revision:
        return 0
    return max((int(r.get("number", 0)) for r in records), default=0)


# Endings the analysis did not decide: a person's abort, a crash loop, the
# progress deadline, the Deployment gone, a newer change. Their reason says
# why; a check that failed earlier within failure-limit (and passed since)
# is not it, and named as the failing metric, on-call looked at a success
# rate that had recovered.
NOT_BY_ANALYSIS = (
    "Aborted",
    "aborted by",
    "PodRestarts",
    "ProgressDeadlineExceeded",
    "RolloutCancelled",
    "UndoRequested",
    "replaced by",
)


def failing(record: JSON | None) -> tuple[JSON, ...]:
    """The measurements that decided a failed attempt: those of its last
    check that did not pass (the stable twin's comparison values left out);
    none when something else ended it (NOT_BY_ANALYSIS)."""
    if not record:
        return ()
    if record.get("outcome") == "superseded" or str(record.get("reason") or "").startswith(
        NOT_BY_ANALYSIS
    ):
        return ()
    for check in reversed(record.get("checks") or []):
        if check.get("verdict") == "pass":
            continue
        bad = tuple(
            {k: m.get(k) for k in ("metric", "twin", "value", "threshold", "verdict")}
            for m in check.get("measurements") or []
            if m.get("verdict") != "pass" and not m.get("baseline")
        )
        if bad:
            return bad
    return ()


def describe(measurement: JSON) -> str:
    value = measurement.get("value")
    shown = "no data" if value is None else f"{value:.4g}"
    return (
        f"{measurement.get('metric')} ({measurement.get('twin')}) = {shown}, "
        f"want {measurement.get('threshold')}: {measurement.get('verdict')}"
    )


_ENDED = {
    "promoted": Outcome.PROMOTED,
    "rolled-back": Outcome.ROLLED_BACK,
    "aborted": Outcome.ABORTED,
    "superseded": Outcome.SUPERSEDED,
}


def _ended(revision: str, record: JSON, status: JSON) -> Settled:
    outcome = _ENDED.get(str(record.get("outcome")), Outcome.SUPERSEDED)
    reason = str(record.get("reason") or "")
    serving = status.get("stable_revision") or "?"
    if outcome is Outcome.PROMOTED:
        # Promoted during the wait, and already replaced by a later release.
        message = f"revision {revision} was promoted; revision {serving} serves now"
    elif outcome is Outcome.SUPERSEDED:
        message = f"revision {revision} was superseded: {reason or 'a newer change replaced it'}"
    else:
        message = f"revision {revision} {outcome}: {reason}"
    bad = failing(record) if outcome is not Outcome.PROMOTED else ()
    return Settled(outcome, message, record, bad)


# The requests that move a release on from where it stands: while one of
# them waits to be taken, that standing is not the release's outcome.
_MOVES_ON = {
    Outcome.ROLLED_BACK: ("retry",),
    Outcome.HALTED: ("promote", "retry", "abort"),
    Outcome.PAUSED: ("resume", "promote", "abort"),
}


def _waiting_request(asked: str, revision: str, where: Outcome) -> Pending | None:
    """Pending when `asked` (a canary.io/action the controller has not taken
    yet) would move this release on from `where`."""
    words = asked.split()
    if not words or words[0].lower() not in _MOVES_ON[where]:
        return None
    pinned = [w[len("revision=") :] for w in words[1:] if w.startswith("revision=")]
    if pinned and not matches(revision, pinned[0]):
        return None
    return Pending(f"{where}, and {asked!r} waits for the controller to take it")


def _undo_waiting(asked: str, revision: str, records: list[JSON]) -> Pending | None:
    """Pending when `asked` is an `undo N` the controller has not taken yet
    and history entry #N is this revision: the undo rolls it out again, so
    how an earlier attempt of it ended is not this release's outcome (`canary
    undo --to 1 && canary wait --revision R` took #1's old `promoted`)."""
    words = asked.split()
    if len(words) < 2 or words[0].lower() != "undo" or not words[1].isdigit():
        return None
    number = int(words[1])
    if not any(r.get("number") == number and r.get("revision") == revision for r in records):
        return None
    return Pending(f"{asked!r} rolls revision {revision} out again; it waits for the controller")


def _abort_waiting(asked: str, revision: str, status: JSON) -> Pending | None:
    """Pending when `asked` is an abort not taken yet and the status still
    keeps the old twin up for one (manual._abort flips back to it): exit 0
    on that status shipped a release on-call took out a moment later."""
    words = asked.split()
    if not words or words[0].lower() != "abort":
        return None
    if status.get("scale_down") is None or not status.get("previous_revision"):
        return None  # no abort window: the controller ignores it
    pinned = [w[len("revision=") :] for w in words[1:] if w.startswith("revision=")]
    if pinned and pinned[0] != revision:
        return None  # aimed at another release: ignored (manual._aimed_elsewhere)
    return Pending(f"promoted, and {asked!r} waits for the controller to flip back")


def judge(
    revision: str,
    status: JSON,
    records: list[JSON],
    source_revision: str | None,
    stale: int = 0,
    asked: str = "",
) -> Settled | Pending:
    """Where the release stands. `source_revision` is what the Deployment
    asks for now (None: unknown); `stale` comes from stale_after(); `asked`:
    a request on the Service the controller has not taken yet (`canary
    retry` a moment before `canary wait`, or while the controller restarts):
    a rolled-back, halted or paused release it would move on is not settled,
    nor any that an `undo` rolls out again."""
    if not status:
        return Pending("the controller has not written a status yet")
    phase = str(status.get("phase") or "")
    message = str(status.get("message") or "")
    record = newest(records, revision)
    if status.get("canary_revision") == revision:
        verdict = _in_flight(revision, phase, status, record)
        if isinstance(verdict, Settled) and verdict.outcome in _MOVES_ON:
            return _waiting_request(asked, revision, verdict.outcome) or verdict
        return verdict
    if status.get("stable_revision") == revision:
        if not status.get("adopted"):
            return Pending(f"adopting: {message}")
        if waiting := _abort_waiting(asked, revision, status):
            return waiting
        how = (
            "promoted"
            if record is not None and record.get("outcome") == "promoted"
            else "serving (already the stable revision; nothing to roll out)"
        )
        twin = status.get("stable")
        return Settled(Outcome.PROMOTED, f"revision {revision} {how} on the {twin} twin", record)
    # Neither rolling out nor serving: an undo to it not taken yet starts a
    # new attempt (to one that is, it is ignored and changes nothing).
    if waiting := _undo_waiting(asked, revision, records):
        return waiting
    if status.get("failed_revision") == revision:
        if waiting := _waiting_request(asked, revision, Outcome.ROLLED_BACK):
            return waiting
        # Only an attempt that ended during the wait tells how: the status
        # goes on when the history write is refused (or its watch event is
        # late), and then the entry is this attempt's start, still
        # 'progressing', or an earlier attempt's (an old promotion read as
        # "promoted, then undone"): both said exit 7 for a rollback.
        if record is not None and (
            int(record.get("number", 0)) <= stale or not record.get("ended")
        ):
            record = None
        if record is None and status.get("undone"):
            # Kept out by a person's undo (manual._back_to_serving, or an undo
            # promoted), never failed: read before its history (two watch
            # streams), 'held back' said rolled back (exit 3) for it.
            return Settled(
                Outcome.SUPERSEDED,
                f"revision {revision} was undone: revision "
                f"{status.get('stable_revision')} serves now ({message})",
                None,
            )
        if record is None:
            return Settled(
                Outcome.ROLLED_BACK, f"revision {revision} is held back: {message}", None
            )
        if record.get("outcome") == "promoted":  # promoted, then undone by a person
            return Settled(
                Outcome.SUPERSEDED,
                f"revision {revision} was promoted, then undone: revision "
                f"{status.get('stable_revision')} serves now",
                record,
            )
        return _ended(revision, record, status)
    if status.get("undo_of") == revision:
        return Settled(
            Outcome.SUPERSEDED,
            f"revision {revision} was superseded: an undo rolls out revision "
            f"{status.get('canary_revision')} instead",
            record,
        )
    if phase == "Invalid" and source_revision == revision:
        return Settled(Outcome.HALTED, f"the Service's annotations are invalid: {message}")
    fresh = record is not None and int(record.get("number", 0)) > stale
    if (
        record is not None
        and fresh
        and (again := _cut_and_again(revision, record, source_revision))
    ):
        return again
    if record is not None and fresh and record.get("ended"):
        return _ended(revision, record, status)
    if source_revision is not None and source_revision != revision:
        return Settled(
            Outcome.SUPERSEDED,
            f"revision {revision} is no longer what the Deployment asks for "
            f"(it asks for {source_revision}) and nothing rolls it out",
            record if fresh else None,
        )
    return Pending(f"waiting for the controller to start revision {revision} ({message})")


def deleted_mid_rollout(deployment: str) -> str:
    """The detail the controller records (after "RolloutCancelled: ") when
    the team's Deployment is deleted mid-rollout: never marked failed, the
    same revision is rolled out again once the Deployment is back. One text
    for both, so that the wait's reading (_cut_and_again) follows decide's."""
    return f"Deployment {deployment} {DELETED_MID_ROLLOUT}"


DELETED_MID_ROLLOUT = "was deleted mid-rollout"


def _cut_and_again(revision: str, record: JSON, source_revision: str | None) -> Pending | None:
    """Pending when the attempt was superseded, yet the controller will roll
    the same revision out again: the Deployment asks for it (created again
    after `kubectl replace --force`, Argo CD's Replace=true, a Helm
    reinstall), or, cut by the Deployment's deletion, it is not back yet.
    Exit 7 on the cut attempt told CI its release was replaced while that
    very release went on, and was promoted or rolled back."""
    if record.get("outcome") != "superseded" or not record.get("ended"):
        return None
    if source_revision == revision:
        return Pending(f"revision {revision} was cut short; the Deployment asks for it again")
    reason = str(record.get("reason") or "")
    deleted = reason.startswith("RolloutCancelled: Deployment ") and reason.endswith(
        DELETED_MID_ROLLOUT
    )
    if source_revision is None and deleted:
        return Pending(
            f"revision {revision} was cut short: its Deployment was deleted; waiting for it "
            "to be created again"
        )
    return None


def _in_flight(revision: str, phase: str, status: JSON, record: JSON | None) -> Settled | Pending:
    message = str(status.get("message") or "")
    if phase == "Degraded":
        # Degraded wins the phase over the rollout's own (decide.phase): a
        # stable pod lost left a halted or paused rollout waited on until
        # the timeout. Told from the state, as decide.phase tells them.
        if status.get("halted") or status.get("gate_reason"):
            phase = "Halted"
        elif status.get("paused") or status.get("source_paused"):
            phase = "Paused"
    if phase == "Halted" and status.get("halted"):
        return Settled(
            Outcome.HALTED,
            f"revision {revision} is halted and waits for a person: {status.get('halted')}. "
            "Run `canary promote`, `abort` or `retry`",
            record,
            failing(record),
        )
    if phase == "Paused":
        return Settled(
            Outcome.PAUSED,
            f"revision {revision} is paused at step {int(status.get('step', 0)) + 1}: {message}. "
            "Run `canary resume` to continue",
            record,
        )
    if phase == "Invalid":
        return Settled(Outcome.HALTED, f"the Service's annotations are invalid: {message}", record)
    return Pending(f"{phase}: {message}")
