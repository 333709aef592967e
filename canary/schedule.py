"""When a rollout's next analysis or gate is due: scheduled checks every
interval, fast looks on every scrape, probes while halted on errors. Pure
functions of (spec, state, now, scrape timing) that the shell calls before
decide(), and that the rollout uses to ask for its next wake-up."""

from __future__ import annotations

import math
from dataclasses import dataclass

from analysis.scrape import landing_lag, next_landing
from analysis.spec import GateKind
from canary.model import State
from canary.spec import RolloutSpec


@dataclass(frozen=True, slots=True)
class Due:
    """An analysis the shell should run now: which kind, and its window."""

    kind: str  # "scheduled", "fast" or "probe" (halted on errors: is Prometheus back?)
    start: float  # never before the step began serving
    end: float
    # Read counter totals rather than rates (a young first step; see
    # counts_young): never for the look that would confirm a failing one.
    totals: bool = False


def analysis_due(
    spec: RolloutSpec,
    state: State,
    now: float,
    scrape_s: float,
    phase: float = 0.0,
    flush: float = 0.0,
) -> Due | None:
    """The analysis due now, or None. The shell calls this before decide()
    and hands decide() the result once the queries are done.

    A step younger than two scrapes waits: its window never reaches back
    before the step began serving, so it holds too few samples to judge.
    Between scheduled checks a fast check looks, every scrape, at the latest
    scrape alone (a trailing window of two scrapes holds the last two
    samples, so rate() sees only the newest scrape's traffic), right after
    it lands when `phase` (a scrape's time) is known. Speed only ever
    applies to failing; passing needs a whole interval. `flush`: how much
    later the backend makes a landed scrape searchable (recheck_delay).

    A rollout that stands still with production traffic on the canary gets
    the fast looks alone (see watched_standing), and so does one whose
    canary serves while its step grows (see watched_growing)."""
    if state.canary is None:
        return None
    if state.step_ready == 0.0 or standing(spec, state):
        # The fast looks alone, failure-only, or nothing.
        if not (watched(state) and spec.analysis.fast_metrics):
            return None
        if now < next_fast(state, scrape_s, phase):
            return None
        return Due("fast", fast_start(state, now, scrape_s), now)
    start = state.window_start or state.step_ready
    if state.halted:
        if state.halt_kind == "errors" and now >= max(state.checked, state.probed) + spec.interval:
            # After a late answer, only what that probe did not read; and
            # never more than an interval (two scrapes at least) back. A
            # probe that failed read nothing, and kept at the window's start
            # the next asked for the whole halt again: after a night's outage
            # at a 1 s scrape, more samples than Prometheus loads for one
            # query or answers within query-timeout, so every probe failed
            # though Prometheus was back (halted for good). A pass resumes
            # on a fresh window anyway; a canary failing now fails this one.
            recent = now - max(spec.interval, 2 * scrape_s)
            return Due("probe", max(start, state.probe_from, recent), now)
        return None
    young = counts_young(spec, state)
    fast_due = bool(spec.analysis.fast_metrics) and now >= next_fast(state, scrape_s, phase, young)
    if state.unready_since:
        # The step lost pods: a scheduled check now could pass it on fewer
        # than its weight. The pods that still serve are looked at, failure-
        # only: a bad release crashing some of its pods is no reason to leave
        # the errors of the others unjudged until the progress deadline.
        # (Before, only a failure already waiting to be confirmed was.)
        if not fast_due:
            return None
        return Due("fast", fast_start(state, now, scrape_s), now)
    if not confirming(spec, state) and now >= next_scheduled(spec, state, scrape_s, phase, flush):
        return Due("scheduled", start, now)
    if fast_due:
        start = fast_start(state, now, scrape_s)
        # Totals add up everything since the pods started, the failing look's
        # traffic too: a look that would confirm it reads rates, which see only
        # what came after that look's sample (a blip in one scrape stays one).
        totals = young and not state.fast_failed and now - start < 2 * scrape_s - 1e-6
        return Due("fast", start, now, totals)
    return None


def fresh_in_step(
    due: Due,
    state: State,
    pods: tuple[str, ...],
    created: tuple[float, ...],
    reach: float = math.inf,
) -> tuple[str, ...]:
    """The canary's pods (created: when each was, 0.0 not known) a scheduled
    check may count whole where their series begin in its window (analysis
    StepContext.fresh): those created after the step began, which served
    nothing before it. Not by when they turned ready: a pod of an earlier
    step whose container restarted, or whose readiness blipped, turns ready
    again with everything it served since it started in its counters. Not
    a fast look's (it reads the newest scrapes again while one waits to be
    confirmed), nor a probe's. `reach`: see fresh_since."""
    since = fresh_since(due, state, reach)
    if not since:
        return ()
    if first_of_new_pods(state) and since == math.floor(state.step_started):
        # Pods created before the step began (for a rollout of the same
        # revision it superseded, a fraction of a second before) served
        # nothing before it either.
        return pods
    return tuple(p for p, c in zip(pods, created, strict=True) if c and c >= since)


def fresh_since(due: Due, state: State, reach: float = math.inf) -> float:
    """Since when a pod is fresh for this check (fresh_in_step; analysis
    StepContext.fresh_since), 0.0 for none: the step's start, in whole
    seconds as a creationTimestamp is (the API server drops the fraction).
    Against the start itself, the step's own pods, created a fraction of a
    second after it began, read as created before it whenever no second
    began in between (most of them), and were judged on increase() alone.
    A pod created up to a second before the step began is taken too: none
    serves that soon after it is created.

    No further back than `reach` before the window (as far as a window may
    reach after the step stood still: rollout.window_reach): a fresh pod's
    series is looked for from here to the window's start, and after a pause
    of days, from the step's start, that was `count_over_time(...[72h])`,
    more samples than Prometheus loads for one query at a 1 s scrape. A pod
    older than that has had its first samples counted (or its step stood
    still), by increase() now as before."""
    if due.kind != "scheduled" or not state.step_started:
        return 0.0
    return float(math.floor(max(state.step_started, due.start - reach)))


def fast_start(state: State, now: float, scrape_s: float) -> float:
    """Where a fast look's window starts: two scrapes back (rate() then sees
    the newest scrape's traffic alone). While a failing scrape waits to be
    confirmed, from that scrape on instead: every scrape since, never the
    failing one's own traffic (its sample is the window's first). One scrape
    after it that is the same window; after a look too quiet to tell (too
    few requests in one scrape: a canary at a low weight), the next reads
    that scrape's traffic with its own. Before, the quiet look dropped the
    suspicion, and a canary failing every request it got at 10 requests a
    scrape (min-requests 20) was counted only at the scheduled check: 9 s
    from its first failing scrape to its rollback, p50 (bench.peers)."""
    start = now - 2 * scrape_s
    if state.fast_failed:
        start = min(start, state.fast_failed - scrape_s)
    elif state.quiet_from:
        # The same before any failure: looks too quiet to tell (a canary at
        # a low weight) add up until they hold enough requests.
        start = min(start, state.quiet_from - 2 * scrape_s)
    return max(state.step_ready, start)


def standing(spec: RolloutSpec, state: State) -> bool:
    """The rollout holds its step: paused (by an action, the annotation or
    `kubectl rollout pause`), at a gate, halted for want of data, or
    promoting while the new pods come up. No scheduled check runs: nothing
    may advance on it. (Halted on query errors or an invalid query is
    another matter: Prometheus is probed, or a person fixes the query.)"""
    return bool(
        state.promoting
        or state.paused
        or spec.paused
        or state.source_paused
        or state.gate_wait
        # Read with the halt itself: a status written by a version whose
        # retry cleared `halted` alone still says "no-data" (stuck for good).
        or (bool(state.halted) and state.halt_kind == "no-data")
    )


def watched_standing(state: State) -> bool:
    """Standing still with the canary in production at its weight: fast
    looks go on, failure-only. Holding a step holds its weight; it is no
    reason to let a canary that turns bad serve errors, unjudged, until a
    person comes back (before, nothing looked while it stood: a pause over
    lunch, a closed approval gate or a promotion waiting on pods left the
    release's failures unseen). A blue-green preview serves no production
    traffic, and a canary not serving yet has nothing to look at."""
    return (
        state.canary is not None
        and bool(state.step_ready)
        and 0 < state.requested_weight < 100
        and not (state.halted and state.halt_kind in ("errors", "invalid"))
    )


def watched_growing(state: State) -> bool:
    """A later step waits for its extra pods while the canary's pods serve
    at the weight of the step before. That wait is as long as the pods take
    to pull and start (minutes for a big image; without end while the
    kube-controller-manager is down, which holds the progress deadline), and
    a canary that turns bad then must not serve its errors unjudged until
    the step is ready: fast looks go on, failure-only, on the same pods
    (the revision's ReplicaSet). Not at the first step, whose pods have not
    served yet, nor halted (a probe's business, or a person's)."""
    return (
        state.canary is not None
        and state.step > 0
        and not state.step_ready
        and bool(state.canary_pods)
        and 0 < state.requested_weight < 100
        and not state.halted
    )


def watched(state: State) -> bool:
    """Looked at by the fast looks alone: standing still with the canary
    serving at its step (watched_standing), or its step not ready while it
    serves at the one before (watched_growing)."""
    return watched_standing(state) if state.step_ready else watched_growing(state)


def confirming(spec: RolloutSpec, state: State) -> bool:
    """A fast look found the newest scrape failing: the next fast look
    confirms or clears it, and no scheduled check may come first, since its
    whole window could average the failure away and pass the step."""
    return bool(spec.analysis.fast_metrics and state.fast_failed and not state.suspected)


def counts_young(spec: RolloutSpec, state: State) -> bool:
    """A fast check may look one scrape after the first step began serving,
    instead of two: its pods are this revision's own ReplicaSet and served
    nothing before the step, so their counter totals (read from samples
    taken after the step began) are exactly the step's traffic. Only the
    builtins with absolute thresholds can be read that way; a custom query,
    or a comparison with the stable twin's rate, waits for two scrapes."""
    builtins = all(m.query is None and m.relative is None for m in spec.analysis.fast_metrics)
    return first_of_new_pods(state) and bool(state.canary_pods) and builtins


def first_of_new_pods(state: State) -> bool:
    """The rollout's first step, on pods none of which served before it:
    its revision's ReplicaSet, no pod of which was ready or serving when the
    rollout began (State.fresh_pods). Not after a retry or a resume (the
    step restarted on pods that served), nor when the twin still had pods
    that served before (an undo onto a twin kept for scale-down-delay)."""
    return state.step == 0 and state.step_started == state.rollout_started and state.fresh_pods


def next_scheduled(
    spec: RolloutSpec, state: State, scrape_s: float, phase: float, flush: float = 0.0
) -> float:
    """An interval after the last check; just after a scrape lands when that
    is known, on the same grid as the fast checks, so a fast check that
    confirms a scheduled one's failure is a whole scrape later."""
    start = state.window_start or state.step_ready
    due = (state.checked or state.step_ready) + _next_check_in(spec, state, scrape_s, flush)
    due = max(due, start + 2 * scrape_s)
    return next_landing(due, scrape_s, phase) if phase else due


def next_fast(state: State, scrape_s: float, phase: float, young: bool = False) -> float:
    """Every scrape, once the step has served for two (when `young`, see
    counts_young: once a scrape taken after it began has landed, or one
    interval when landings are not known). When scrapes land is known: just after each lands, so a
    failure waits on no check schedule (up to an interval more per check
    otherwise)."""
    if young and phase:
        # The first sample taken after the step began serving is enough.
        first = state.step_ready + landing_lag(scrape_s) + 0.001
    else:
        first = state.step_ready + (1 if young else 2) * scrape_s
    if not phase:
        return max(state.fast_checked + scrape_s, first)
    # Half an interval after the last check: never the same scrape twice,
    # and a late wake-up does not skip the next one.
    return next_landing(max(state.fast_checked + scrape_s / 2, first), scrape_s, phase)


def recheck_delay(spec: RolloutSpec, scrape_s: float, flush: float = 0.0) -> float:
    """How soon a tolerated failure is checked again: as soon as a window of
    fresh data can hold two scrapes, not a whole interval later. A failure
    that persists is then rolled back within about one interval of starting;
    a blip that is over passes the re-check and costs the step nothing.
    `flush`: and once they are searchable (VictoriaMetrics' flush,
    analysis.scrape.searchable_after). Two scrapes only, at a 1 s scrape
    the re-check's window held no flushed sample there: no data ("0
    requests to the canary"), with `no-data-limit: 0` and `on-limit:
    rollback` a rollback, where Prometheus's re-check passed."""
    return min(spec.interval, max(2 * scrape_s + flush, 1.0))


def _next_check_in(spec: RolloutSpec, state: State, scrape_s: float, flush: float) -> float:
    return recheck_delay(spec, scrape_s, flush) if state.recheck else spec.interval


def gate_due(spec: RolloutSpec, state: State, now: float) -> GateKind | None:
    """The kind of gate to ask now, or None. A closed gate is asked again
    every interval; the shell calls this before decide() like analysis_due."""
    if not state.gate_wait or state.canary is None or state.halted or state.paused or spec.paused:
        return None
    if state.source_paused:
        return None
    if state.gate_checked and now < state.gate_checked + spec.interval:
        return None
    return GateKind(state.gate_wait)
