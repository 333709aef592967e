"""The five rules of the soak, as pure functions and small state machines.

Each rule is stated precisely here (the README repeats it):

outage
    A Service of the fleet that exists and is managed has zero ready endpoints
    (its EndpointSlices, see facts.ready_pods) for longer than the grace period
    of *observable* time, while its app has a healthy revision: every app's
    first release is good and no app is ever retired, so from the first time the
    app was seen served (under any incarnation of its Service) it has one.
    Not counted: time in which the API could not be observed (an API server or
    etcd stopped by the injector, a settle margin after it, the checker's own
    heartbeat failing); time in which pods the Service selects exist, are not
    being deleted and are not ready yet (the controller has done its part and
    waits on the kubelet: the rule judges it as if the sandbox's kubelet were
    instant, which on a busy machine it is not); a Service that does not exist
    (deleted by the injector); an app that never served yet.

unverified-promotion
    A history entry reaches `promoted` although (a) some step has no passing
    check recorded, or (b) re-measured in Prometheus over the recorded window
    of a passing check, the pods the check's own query selected are not all of
    the promoted release (a pod of another release, or hand-edited, served in
    that window), or the promoted release's pods served nothing there, or their
    success rate was below the Service's threshold (minus a 5-point margin for
    the extrapolation of `increase`). Entries that name a manual promote are
    exempt, and so is the entry `canary undo --to N` records, promoted at
    once with no check, when N is the revision already serving (the newest
    promoted or adopted entry before it is of that revision: nothing rolled
    out). The steps a promotion must have passed are those of the Service's
    annotations in force from 5 s before the entry ended until it is judged,
    the fewest of them: a team's edit of `canary.io/steps` or of the strategy
    just after the controller decided is not the rule it decided under. Pods
    or windows the checker cannot resolve are reported as unverifiable, not
    as violations, as are steps before the earliest check of an entry the
    controller put back afresh after its history was deleted (its
    `EntryRestored` note says those checks are not recorded).

outcomes
    (a) An entry of a history ConfigMap (identified by the ConfigMap's uid and
    the entry's number) that reached a terminal outcome later shows another
    outcome, or its number shows another revision. One change is exempt, the
    one the README documents (Manual control): `promoted` to `aborted` once,
    with the reason the controller records for on-call's `canary abort` right
    after a promotion ("aborted by <who> after promotion"), which flips
    traffic back to the old twin on purpose; the entry is then judged as
    aborted from that moment (b), and any change after it counts. (b) An entry that ended
    `rolled-back`, `aborted` or `superseded` still has pods of its release
    among the Service's ready endpoints for longer than the grace period of
    observable time after the checker saw it end, while it is the newest entry
    of its release and its release is not the one the newest promoted or
    adopted entry serves.

write-loop
    One object (by uid) written again and again without progress: within any
    60 s, at least `min_writes` (10) writes that change its content (spec,
    data, labels, annotations; not the status others write), of which at
    least `revisit_share` (60 %) bring it back to a content it already had in
    that window other than the one just before (A B A B ...: a fight, not a
    rollout moving on). Writes of the soak itself count too; they are a few
    per object per minute at most. Calibrated on calm runs: the busiest
    legitimate object (a Service's status during back-to-back rollouts of the
    old code) took 38 writes a minute with under 20 % of them revisits.

status
    A managed Service's canary.io/status claims something observation
    contradicts, for longer than the grace period of observable time:
    (a) a serving phase (Healthy, Progressing, Promoting, Paused, Halted,
    RolledBack) while the Service has zero ready endpoints; (b) a serving phase
    while the stable twin it names is missing or has fewer ready pods than the
    size it claims; (c) a steady phase (Healthy, RolledBack) while a ready
    endpoint runs something other than the stable revision it names (known
    from the history's template, or the twin's template when the controller
    set that revision on it); (d) Degraded while none of (a), (b) holds and
    every ready endpoint runs the stable revision (a stable twin being
    replaced by a hand edit may well be called Degraded).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from chaos.checker.facts import (
    JSON,
    SERVING_PHASES,
    STEADY_PHASES,
    TERMINAL,
    Fingerprint,
    deployment_ready,
    template_fingerprint,
)

OUTAGE = "outage"
UNVERIFIED_PROMOTION = "unverified-promotion"
OUTCOMES = "outcomes"
WRITE_LOOP = "write-loop"
STATUS = "status"
RULES = (OUTAGE, UNVERIFIED_PROMOTION, OUTCOMES, WRITE_LOOP, STATUS)


@dataclass(frozen=True, slots=True)
class Finding:
    """A condition that holds now. `key` names the episode: the same key on
    consecutive ticks is the same condition going on."""

    rule: str
    subject: str  # namespace/name of what it is about
    key: str
    detail: str
    waiting: bool = False  # holds, but only because the kubelet has yet to start pods


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    subject: str
    detail: str
    since: float  # when the condition began (wall clock)
    declared: float  # when it had lasted long enough to count
    evidence: JSON = field(default_factory=dict)

    def to_json(self) -> JSON:
        return {
            "rule": self.rule,
            "subject": self.subject,
            "detail": self.detail,
            "since": self.since,
            "declared": self.declared,
            "evidence": self.evidence,
        }


# -- conditions over one snapshot ------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceView:
    """One managed Service as the checker sees it at one instant."""

    namespace: str
    name: str
    in_fleet: bool  # one of the soak's apps (not a claimer made by the injector)
    served_before: bool  # its app was seen with a ready endpoint at least once
    ready: frozenset[str]  # ready endpoint pods
    status: JSON | None  # the controller's claims, None if absent/unreadable
    stable_twin: JSON | None  # the Deployment the status names as stable twin
    stable_fingerprint: Fingerprint | None  # what the stable revision runs, when known
    starting: int = 0  # pods the selector selects that exist, are not deleted, not yet ready

    @property
    def subject(self) -> str:
        return f"{self.namespace}/{self.name}"


def outage(view: ServiceView) -> Finding | None:
    if not view.in_fleet or not view.served_before or view.ready:
        return None
    if view.starting:
        return Finding(
            OUTAGE,
            view.subject,
            "no-endpoints",
            f"zero ready endpoints ({view.starting} selected pods starting)",
            waiting=True,
        )
    return Finding(OUTAGE, view.subject, "no-endpoints", "zero ready endpoints")


def status_contradiction(
    view: ServiceView, fingerprints: Mapping[str, Fingerprint | None]
) -> Finding | None:
    status = view.status
    if status is None:
        return None
    phase = str(status.get("phase", ""))
    claimed = int(status.get("replicas") or 0)
    stable = status.get("stable")
    twin = view.stable_twin

    def finding(key: str, detail: str) -> Finding:
        return Finding(STATUS, view.subject, f"{phase}:{key}", f"phase {phase} but {detail}")

    short = ""
    if stable and twin is None:
        short = f"the stable twin ({stable}) does not exist"
    elif stable and claimed and deployment_ready(twin) < claimed:
        short = f"the stable twin ({stable}) has {deployment_ready(twin)}/{claimed} ready pods"
    if phase in SERVING_PHASES:
        if not view.ready:
            return finding("no-endpoints", "the Service has zero ready endpoints")
        if short:
            return finding("stable-short", short)
    if phase in STEADY_PHASES and view.stable_fingerprint is not None:
        others = sorted(
            f"{pod} runs {fp}"
            for pod in view.ready
            if (fp := fingerprints.get(pod)) is not None and fp != view.stable_fingerprint
        )
        if others:
            return finding(
                "not-stable",
                f"ready endpoints run other than the stable revision "
                f"{status.get('stable_revision', '?')} ({view.stable_fingerprint}): "
                + "; ".join(others[:4]),
            )
    if (
        phase == "Degraded"
        and stable
        and twin is not None
        and not short
        and view.stable_fingerprint is not None
        and view.ready
        and all(fingerprints.get(p) == view.stable_fingerprint for p in view.ready)
    ):
        return finding(
            "degraded-but-serving", "the stable revision serves in full, and nothing else does"
        )
    return None


# -- history: outcomes ----------------------------------------------------------


@dataclass
class EntryFacts:
    number: int
    revision: str
    outcome: str
    fingerprint: Fingerprint | None
    terminal_seen: float | None = None  # when the checker first saw it terminal
    first_terminal: str = ""


@dataclass
class HistoryBook:
    """Every entry of every history ConfigMap the checker has seen, by the
    ConfigMap's uid; never forgets an entry the controller trimmed."""

    entries: dict[str, dict[int, EntryFacts]] = field(default_factory=dict)
    service: dict[str, str] = field(default_factory=dict)  # cm uid -> namespace/service
    reported: set[str] = field(default_factory=set)  # finding keys already given

    def observe(
        self, cm_uid: str, subject: str, records: Iterable[JSON], now: float
    ) -> tuple[list[Finding], list[tuple[str, JSON]]]:
        """Findings of rule (a) and the entries that just became terminal
        (outcome, record), for the rollout count and promotion checks."""
        self.service[cm_uid] = subject
        book = self.entries.setdefault(cm_uid, {})
        findings: list[Finding] = []
        ended: list[tuple[str, JSON]] = []
        for record in records:
            try:
                number = int(record.get("number", 0))
            except (TypeError, ValueError):
                continue
            revision = str(record.get("revision", ""))
            outcome = str(record.get("outcome", ""))
            known = book.get(number)
            if known is None:
                known = EntryFacts(
                    number, revision, outcome, template_fingerprint(record.get("template"))
                )
                book[number] = known
            elif known.revision != revision:
                findings.append(
                    Finding(
                        OUTCOMES,
                        subject,
                        f"{cm_uid}:{number}:revision",
                        f"history entry #{number} was revision {known.revision}, now {revision}",
                    )
                )
                known.revision = revision
            if _aborted_after_promotion(known.first_terminal, outcome, record):
                known.first_terminal = outcome
                known.terminal_seen = now
            elif known.first_terminal and outcome != known.first_terminal:
                findings.append(
                    Finding(
                        OUTCOMES,
                        subject,
                        f"{cm_uid}:{number}:{outcome}",
                        f"revision {revision} (#{number}) was {known.first_terminal}, "
                        f"now {outcome or 'without outcome'}",
                    )
                )
            known.outcome = outcome
            if outcome in TERMINAL and not known.first_terminal:
                known.first_terminal = outcome
                known.terminal_seen = now
                ended.append((outcome, record))
        fresh = [f for f in findings if f.key not in self.reported]
        self.reported.update(f.key for f in fresh)
        return fresh, ended

    def latest(self, cm_uid: str) -> list[EntryFacts]:
        return sorted(self.entries.get(cm_uid, {}).values(), key=lambda e: e.number)


# The reason the controller records for `canary abort` right after a
# promotion (canary/manual.py _flip_back), the one outcome it revises.
AFTER_PROMOTION = "after promotion"


def _aborted_after_promotion(first: str, outcome: str, record: JSON) -> bool:
    reason = str(record.get("reason", ""))
    return (
        first == "promoted"
        and outcome == "aborted"
        and reason.startswith("aborted by ")
        and reason.endswith(AFTER_PROMOTION)
    )


def still_serving(
    subject: str,
    cm_uid: str,
    entries: list[EntryFacts],
    ready: Mapping[str, Fingerprint | None],
    now: float,
    in_flight: frozenset[Fingerprint] = frozenset(),
) -> list[Finding]:
    """Rule (b) of outcomes: a revision that ended without promotion whose
    pods still serve. `entries` in history order, `ready` the Service's ready
    pods and what they run."""
    serving = {fp for fp in ready.values() if fp is not None}
    if not serving:
        return []
    newest_of: dict[Fingerprint, int] = {}
    current: Fingerprint | None = None
    for entry in entries:
        if entry.fingerprint is not None:
            newest_of[entry.fingerprint] = entry.number
        if entry.outcome in ("promoted", "adopted"):
            current = entry.fingerprint
    found = []
    for entry in entries:
        fp = entry.fingerprint
        if (
            fp is None
            or entry.outcome not in ("rolled-back", "aborted", "superseded")
            or entry.terminal_seen is None
            or newest_of.get(fp) != entry.number
            or fp == current
            or fp not in serving
            # A newer rollout of the same pods, whose start the Service's
            # status still carries (the history gets it with a later write):
            # the same release out again, judged afresh, as an entry after it.
            or fp in in_flight
        ):
            continue
        pods = sorted(p for p, f in ready.items() if f == fp)
        found.append(
            Finding(
                OUTCOMES,
                subject,
                f"{cm_uid}:{entry.number}:serving",
                f"revision {entry.revision} (#{entry.number}, {fp}) ended {entry.outcome} "
                f"but still serves: {', '.join(pods[:4])}",
            )
        )
    return found


# -- time: how long a condition has lasted, in observable time -----------------------


@dataclass
class _Episode:
    finding: Finding
    since: float
    lasted: float = 0.0
    reported: bool = False


class Persistence:
    """Turns conditions seen tick by tick into violations once one has lasted
    `grace_s` of observable time. Blind ticks neither count nor end an episode:
    nothing can be observed then, so nothing is concluded either way."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self._episodes: dict[tuple[str, str, str], _Episode] = {}

    def update(
        self, findings: Iterable[Finding], now: float, dt: float, blind: bool
    ) -> list[tuple[Finding, float]]:
        """The findings that just became due, with when they began."""
        seen: set[tuple[str, str, str]] = set()
        due: list[tuple[Finding, float]] = []
        for finding in findings:
            key = (finding.rule, finding.subject, finding.key)
            seen.add(key)
            episode = self._episodes.get(key)
            if episode is None:
                self._episodes[key] = _Episode(finding, now)
                continue
            episode.finding = finding
            if not blind and not finding.waiting:
                episode.lasted += dt
            if not episode.reported and episode.lasted >= self.grace_s:
                episode.reported = True
                due.append((finding, episode.since))
        if not blind:
            for key in [k for k in self._episodes if k not in seen]:
                del self._episodes[key]
        return due

    def retract(self, finding: Finding) -> None:
        """A confirming read contradicted the watch: start this one over."""
        self._episodes.pop((finding.rule, finding.subject, finding.key), None)


# -- writes ---------------------------------------------------------------------------


@dataclass
class _Writes:
    subject: str
    times: deque[tuple[float, str]] = field(default_factory=deque)
    what: deque[str] = field(default_factory=deque)  # a line per write in the window
    last: str = ""
    looping: bool = False


class WriteLog:
    """Rule write-loop. Fed every version of every object the watches deliver."""

    def __init__(
        self, window_s: float = 60.0, min_writes: int = 10, revisit_share: float = 0.6
    ) -> None:
        self.window_s = window_s
        self.min_writes = min_writes
        self.revisit_share = revisit_share
        self._objects: dict[str, _Writes] = {}
        self.first_write = 0.0  # of the window of the last loop found
        self.peak: dict[str, int] = {}  # kind -> most content writes to one object in a window
        # kind -> (writes, revisits, subject, the writes) of the busiest window seen
        self.busiest: dict[str, tuple[int, int, str, list[str]]] = {}

    def record(
        self, kind: str, obj_uid: str, subject: str, key: str, now: float, what: str = ""
    ) -> Finding | None:
        log = self._objects.get(obj_uid)
        if log is None:
            self._objects[obj_uid] = _Writes(subject, last=key)
            return None
        if key == log.last:
            return None  # status, managedFields or nothing changed: not a write of content
        log.times.append((now, key))
        log.what.append(f"{now:.1f} {what}")
        log.last = key
        while log.times and log.times[0][0] < now - self.window_s:
            log.times.popleft()
        while len(log.what) > len(log.times):
            log.what.popleft()
        writes = len(log.times)
        self.peak[kind] = max(self.peak.get(kind, 0), writes)
        revisits = _revisits([k for _, k in log.times])
        if (writes, revisits) > self.busiest.get(kind, (0, 0, "", []))[:2]:
            self.busiest[kind] = (writes, revisits, subject, list(log.what))
        if writes >= self.min_writes and revisits >= self.revisit_share * writes:
            if log.looping:
                return None
            log.looping = True
            self.first_write = log.times[0][0]
            return Finding(
                WRITE_LOOP,
                subject,
                f"{obj_uid}:{now:.0f}",
                f"{subject}: {writes} writes in {self.window_s:g}s, {revisits} of them "
                "back to a content it already had",
            )
        log.looping = False
        return None

    def recent(self, obj_uid: str) -> list[str]:
        log = self._objects.get(obj_uid)
        return list(log.what) if log else []

    def forget(self, obj_uid: str) -> None:
        self._objects.pop(obj_uid, None)


def _revisits(keys: list[str]) -> int:
    """Writes that return to a content seen earlier in the window, other than
    the one just before (A B A counts once, A B C counts nothing)."""
    count = 0
    for i, key in enumerate(keys):
        if key in keys[: max(0, i - 1)]:
            count += 1
    return count
