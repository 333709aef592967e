"""Analyse one step: the request guard first, then every metric.

The window always starts at the step start (when the canary began taking
traffic at this weight) and is never widened backwards, so no query sees
traffic from an earlier step, from before the canary existed, or from pods
of another revision (the targets name exactly one ReplicaSet's pods).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from analysis.durations import promql_duration
from analysis.judge import judge, load_judge
from analysis.provider import MetricsProvider, QueryError
from analysis.scrape import landing_lag, searchable_after
from analysis.spec import AnalysisSpec, Judge, MetricSpec
from analysis.templates import (
    Fresh,
    Target,
    TemplateError,
    guarded,
    metric_query,
    names_regex,
    request_selector,
    requests_query,
    scrape_targets_query,
    seen_pods_query,
    unseen_pods_query,
    variables,
)
from analysis.verdicts import Measurement, Verdict, assess, combine, good_infinity, thresholds

REQUESTS_METRIC = "requests"
NEWEST_METRIC = "newest-sample-age-s"  # the canary's newest sample, seconds before the window's end
# How a statistical judge's measurement's threshold begins (judged).
JUDGED = "Mann-Whitney"


def judged(m: Measurement) -> bool:
    """The measurement is a statistical judge's: under its metric's name,
    as the metric's threshold check is, but never run by a fast look."""
    return m.threshold.startswith(JUDGED)


@dataclass(frozen=True, slots=True)
class StepContext:
    canary: Target
    stable: Target | None  # None when there is no baseline (e.g. blue-green preview)
    start: float  # epoch seconds
    now: float
    interval_s: float
    scrape_s: float = 15.0  # Prometheus's scrape interval for the request metrics
    # A fast check on a first step younger than two scrapes: builtins read the
    # counters' totals in the window (the pods served nothing before the
    # step), since rate() needs two samples there.
    totals: bool = False
    # scrape_s is Prometheus's own (set in the analysis, or learned), not the
    # default: only then is a canary sample older than two scrapes a sign
    # that its scrapes stopped (see _newest_sample).
    scrape_known: bool = False
    # The backend is VictoriaMetrics, whose rate() and increase() read one
    # sample before the window: the builtins use increase_prometheus()
    # (analysis.templates.METRICSQL_INCREASE).
    metricsql: bool = False
    # The canary's pods the EndpointSlices listed as ready when the check
    # began (names; empty: not known): each should have current samples
    # (_pods_unseen). With when each turned ready (epoch, the pod's
    # Ready condition; 0.0: not known), for a pod never scraped at all.
    pods: tuple[str, ...] = ()
    ready_since: tuple[float, ...] = ()
    # When the canary's pods first served in this rollout (0.0: not known,
    # taken as the window's start): a pod ready before then was no endpoint
    # of a Service Prometheus discovers its targets from.
    serving_since: float = 0.0
    # Of those, the pods created after the step began (at fresh_since,
    # our clock): they served nothing before it, and a series
    # of theirs first sampled in the window counts whole (templates.counted).
    # Only for a window a check of its own reads from where the last one
    # ended: a fast look's newest scrapes would count a failing scrape's
    # first sample again. Empty: none (every series by increase()).
    fresh: tuple[str, ...] = ()
    fresh_since: float = 0.0
    # A fast look that a scheduled check's failure waits on (its next
    # scrape): when it reads no request of the canary, it also asks whether
    # it reads any of the stable twin's (StepResult.stalled).
    confirming: bool = False
    # A scheduled check of the last step: its pass starts the promotion (or
    # asks its gates), and no later check asks about a pod still within
    # never_scraped_grace (StepResult.waiting).
    promotes: bool = False
    # A fast look while the rollout stands at its flip or an open gate: the
    # last step's window (start, end), where the canary served what a
    # healthy one serves now (_quiet_since).
    served_span: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True, slots=True)
class StepResult:
    verdict: Verdict
    measurements: tuple[Measurement, ...]
    reason: str
    invalid: bool = False  # a template the backend rejected: the spec needs fixing
    # The time of the newest sample of the canary's requests the check read
    # (our clock; 0.0: not measured): which scrape a failing look saw, so
    # two looks are told apart by their data, not by when their queries
    # went out (judging._newer_scrape).
    newest: float = 0.0
    # The analysis as a whole did not finish in its time (canary/checks.py)
    # though each query has its own timeout: Prometheus answering slowly, a
    # chain of queries each in time. Prometheus's trouble, never the
    # release's: judged as an answer too late (judging), never rolled back.
    slow: bool = False
    # A look that read no request of the canary, nor of the stable twin in
    # the same window: Prometheus stopped scraping (or just came back), so
    # the look could not tell for want of scrapes, not for the canary's
    # sake (judging holds a failure waiting on it for a look that reads).
    stalled: bool = False
    # The last step's window passed, but a serving canary pod still within
    # never_scraped_grace has no sample yet (_not_scraped_yet): not yet, never
    # a pass and never a count towards no-data-limit (judging checks again an
    # interval later; past the grace, canary-pods-never-scraped decides).
    waiting: bool = False

    @property
    def failing(self) -> tuple[Measurement, ...]:
        return tuple(m for m in self.measurements if m.verdict is not Verdict.PASS)


def no_sample(result: StepResult) -> bool:
    """The request guard found no sample of the canary at all in the window
    (no series: its pods are not scraped, or the store has not taken their
    newest scrape in yet), not too few requests: nothing was read."""
    return any(
        m.metric == REQUESTS_METRIC and m.verdict is Verdict.NO_DATA and m.value is None
        for m in result.measurements
    )


def read_nothing(result: StepResult) -> bool:
    """no_sample; or, with no request guard (`min-requests: 0`), none of the
    canary's metrics read a value (the stable twin's baselines aside: its
    scrapes may sit in a shard flushed earlier): nothing tells what the
    window held, and a window whose newest scrapes the backend has not made
    searchable yet reads so."""
    if no_sample(result):
        return True
    measured = [m for m in result.measurements if not m.baseline]
    return (
        bool(measured)
        and not any(m.metric == REQUESTS_METRIC for m in measured)
        and all(m.verdict is Verdict.NO_DATA and m.value is None for m in measured)
    )


def fresh_pods(ctx: StepContext) -> Fresh | None:
    """The canary's fresh pods as the builtins' queries take them
    (templates.counted); None: none, or the window reads counter totals
    (every series whole already). The look back for a sample before the
    window reaches to the step's start and a scrape before it, for the
    clocks: a series sampled anywhere there is one a check counted."""
    if not ctx.fresh or ctx.totals:
        return None
    seen = max(ctx.start - ctx.fresh_since, 0.0) + ctx.scrape_s
    return Fresh.of(ctx.fresh, seen)


def window_s(ctx: StepContext) -> float:
    """From the step start to now: never further back. The caller waits until
    it holds two scrapes (one sample, for counter totals); a shorter one is
    still not widened (PromQL ranges are in whole milliseconds)."""
    return max(ctx.now - ctx.start, 0.001 if ctx.totals else 1.0)


async def analyze(
    spec: AnalysisSpec, ctx: StepContext, provider: MetricsProvider, *, fast: bool = False
) -> StepResult:
    """Every metric (a scheduled check), or with `fast` only those checked
    between scheduled checks, and no statistical judge."""
    window = window_s(ctx)
    probe = _Probe(provider, ctx, window, spec.query_timeout)
    guard: Measurement | None = None
    if spec.min_requests > 0:  # 0 turns the guard off; each metric's own no-data still holds
        guard = await probe.measure(
            REQUESTS_METRIC,
            ctx.canary,
            requests_query(
                spec,
                variables(ctx.canary, window, ctx.interval_s),
                ctx.totals,
                ctx.metricsql,
                fresh_pods(ctx),
            ),
            f">= {spec.min_requests}",
            lambda v: Verdict.PASS if v is not None and v >= spec.min_requests else Verdict.NO_DATA,
        )
        if guard.verdict is not Verdict.PASS:
            reason = (
                f"{guard.value or 0:.0f} requests to the canary since the step began; "
                f"waiting for {spec.min_requests}"
                if guard.verdict is Verdict.NO_DATA
                else f"request count query failed: {guard.error}"
            )
            stalled = await _stalled(spec, probe) if fast and ctx.confirming else None
            if stalled is not None:
                return StepResult(
                    guard.verdict,
                    (guard, stalled),
                    f"{reason}; {stalled.detail}",
                    invalid=guard.invalid,
                    stalled=True,
                )
            quiet = await _quiet_since(spec, ctx, probe) if fast and guard.value == 0 else ()
            if quiet and quiet[0].verdict is Verdict.ERROR:
                return _unanswered((guard,), quiet, 0.0)
            if quiet:
                why = f"{reason}; {QUIET_METRIC}: {quiet[0].detail}"
                return StepResult(Verdict.NO_DATA, (guard, *quiet), why)
            return StepResult(guard.verdict, (guard,), reason, invalid=guard.invalid)
    try:
        metrics = spec.fast_metrics if fast else spec.metrics
        measured = asyncio.gather(*(_measure_metric(spec, m, probe, fast=fast) for m in metrics))
        newest: tuple[Measurement, ...] = ()
        if fast or guard is None or not ctx.scrape_known:
            # A fast look's window is two scrapes: a missing scrape already
            # leaves rate() nothing. Without the guard the request metric
            # may not exist at all. With the interval a guess, a slower
            # Prometheus would read as stopped scrapes.
            results = await measured
        else:
            results, fresh = await asyncio.gather(measured, _newest_sample(spec, probe))
            newest = (fresh,)
    except TemplateError as exc:
        return StepResult(Verdict.ERROR, (guard,) if guard else (), str(exc), invalid=True)
    checks = tuple(m for metric in results for m in metric) + newest
    if fast and guard is None and _all_empty(checks):
        checks += await _scraped(spec, probe)
    measurements = (guard, *checks) if guard else checks
    verdict = combine(m.verdict for m in checks if not m.baseline)
    # A failing metric outranks a query to fix as it outranks errors: an
    # invalid result halts the rollout (InvalidSpec), where nothing looks,
    # and the failure beside it never counted. The measurement keeps its
    # own `invalid` for the record.
    invalid = verdict is not Verdict.FAIL and any(m.invalid for m in measurements)
    read = _sample_time(ctx, newest[0]) if newest else 0.0
    landed = newest[0].value if newest and newest[0].value is not None else 0.0
    if verdict is Verdict.PASS and not fast:
        failing = await _newest_scrape_fails(spec, ctx, provider, landed if newest else None)
        if failing and failing[0].verdict is Verdict.FAIL:
            # Fails as a fast look does: confirmed or cleared by the next one.
            reason = _newest_reason(failing)
            return StepResult(Verdict.FAIL, (*measurements, *failing), reason, newest=read)
        if failing:
            # Rejected as invalid, it is the fast look's own query over the
            # same two scrapes: a fast look halts on it (InvalidSpec), and so
            # does this. Taken for an error, it counted towards error-limit
            # check after check, and rolled back a release whose only fault
            # was the spec's query.
            return _unanswered(measurements, failing, read, any(m.invalid for m in failing))
        quiet = await _went_quiet(spec, ctx, probe, guard)
        if quiet and quiet[0].verdict is Verdict.ERROR:
            return _unanswered(measurements, quiet, read)
        if quiet:
            reason = f"{REQUESTS_METRIC}: {quiet[0].detail}"
            return StepResult(Verdict.NO_DATA, (*measurements, *quiet), reason, newest=read)
        unseen = await _pods_unseen(spec, ctx, probe, guard, landed)
        if unseen and unseen[0].verdict is Verdict.ERROR:
            return _unanswered(measurements, unseen, read)
        if unseen:
            reason = f"{unseen[0].metric}: {unseen[0].detail}"
            waiting = unseen[0].metric == NOT_YET_METRIC
            return StepResult(
                Verdict.NO_DATA, (*measurements, *unseen), reason, newest=read, waiting=waiting
            )
    if verdict is Verdict.FAIL and fast and guard is not None:
        # Only a failing look needs it (and only one with the request metric
        # there): a healthy canary's looks cost no query more.
        read = _sample_time(ctx, await _newest_sample(spec, probe))
    reason = _reason(verdict, measurements)
    return StepResult(verdict, measurements, reason, invalid=invalid, newest=read)


def _unanswered(
    measurements: tuple[Measurement, ...],
    unanswered: tuple[Measurement, ...],
    read: float,
    invalid: bool = False,
) -> StepResult:
    """A window that passed, and a query that had to vouch for it (the
    newest scrape, a canary gone quiet, a serving pod unseen) not answered:
    an error, as any of the window's own queries would be (checked again an
    interval later, counted towards error-limit), never the pass. Before,
    the pass stood without a trace whenever the query that would have seen
    the canary's trouble failed (a timeout, a 414 for a long pod list)."""
    reason = "; ".join(
        f"{m.detail}: {describe(m)}" if m.detail else describe(m) for m in unanswered
    )
    return StepResult(
        Verdict.ERROR, (*measurements, *unanswered), reason, invalid=invalid, newest=read
    )


def _sample_time(ctx: StepContext, age: Measurement) -> float:
    """The newest sample's time in our clock: its age is Prometheus's
    (both ends in its clock), taken at the window's end."""
    return round(ctx.now - age.value, 3) if age.value is not None else 0.0


async def _newest_scrape_fails(
    spec: AnalysisSpec, ctx: StepContext, provider: MetricsProvider, landed: float | None = 0.0
) -> tuple[Measurement, ...]:
    """A scheduled check passes only if its newest scrape does not fail too
    (the metrics fast looks check, over the last two scrapes). A failure
    that began in that scrape is a small share of the whole window, which
    passed over it: a blue-green preview whose canary turned bad 0.4 s
    before its check was flipped into production at once, serving half its
    requests as errors (bench.peers, bad-late, 1 in 10). Too few requests
    in that scrape cannot tell: the window's pass stands. No answer is an
    error (_unanswered): the measurements that erred.

    On VictoriaMetrics the two scrapes end at the canary's newest sample
    (`landed`: its age), a landing lag after it so its time's rounding
    never leaves it out: the flush makes a scrape searchable up to 4 s
    after it landed (searchable_after), and at a 1 s or 2 s scrape the two
    scrapes to the check's time held no flushed sample. It read nothing,
    and the window's pass stood over a newest searchable scrape that
    failed. Its age not measured (`landed` None: no request guard, with
    `min-requests: 0`, or the scrape interval a guess), they end a flush
    and a landing lag before the check's time, where every scrape is
    searchable: ended at it, they read nothing as before, and a canary
    whose newest searchable scrape failed 15 % of its requests passed."""
    flush = searchable_after(ctx.metricsql)
    if flush and landed is None:
        ctx = replace(ctx, now=ctx.now - flush - landing_lag(ctx.scrape_s))
    elif flush and landed is not None and landed > landing_lag(ctx.scrape_s):
        ctx = replace(ctx, now=ctx.now - landed + landing_lag(ctx.scrape_s))
    start = ctx.now - 2 * ctx.scrape_s
    # Only a window of two scrapes is the fast look's own. One of three
    # (interval 30s, scrape 10s: every check) was skipped too, though the
    # newest scrape is only half its traffic: a failure there at up to
    # twice the threshold was averaged away and the step passed.
    if not spec.fast_metrics or ctx.totals or start <= ctx.start + 1e-6:
        return ()  # the window is no wider than what a fast look reads
    newest = await analyze(spec, replace(ctx, start=start, fresh=()), provider, fast=True)
    if newest.verdict is Verdict.ERROR:
        return tuple(
            replace(m, detail="the newest scrape")
            for m in newest.measurements
            if m.verdict is Verdict.ERROR
        )
    if newest.verdict is not Verdict.FAIL:
        return ()
    return tuple(
        replace(m, detail=f"the newest scrape{'; ' + m.detail if m.detail else ''}")
        for m in newest.measurements
        if m.verdict is Verdict.FAIL
    )


# A canary that served at least this many requests per two scrapes over its
# window, on average, and none in its newest two while the stable twin
# still served: it stopped answering (hung) or its traffic went elsewhere.
# increase() over two scrapes reads the two samples they hold, so the
# requests of the one interval between them: half of this is due there,
# and none by chance at steady load is about e^-10 (Poisson). At 10 (e^-5)
# a healthy canary at a low share was taken for quiet 1 check in 150.
QUIET_EXPECTED = 20.0
QUIET_METRIC = "requests-newest-scrapes"


async def _went_quiet(
    spec: AnalysisSpec, ctx: StepContext, probe: _Probe, guard: Measurement | None
) -> tuple[Measurement, ...]:
    """The canary's newest two scrapes hold no request while the stable
    twin's hold some and the canary's window promised plenty (QUIET_EXPECTED).
    A hung canary completes no request: its success rate and latency see
    nothing, the window's earlier traffic passes the step, and nothing
    failed either, so it was promoted (found by review). No data then, never
    a pass: no-data-limit and on-limit decide, as for a canary with too few
    requests (not a failure: a canary whose few long-lived connections moved
    to the stable pods is quiet too, and it is no bad release)."""
    stable = ctx.stable
    # And on VictoriaMetrics the flush before them (searchable_after): the
    # canary's newest two scrapes read empty there while the stable twin's,
    # scraped earlier in the interval, were flushed, and a healthy canary
    # was no data.
    newest = 2 * ctx.scrape_s + searchable_after(ctx.metricsql)
    if (
        guard is None
        or guard.value is None
        or stable is None
        or ctx.totals
        or not ctx.scrape_known
        or ctx.start >= ctx.now - newest - 1e-6
    ):
        return ()
    promised = guard.value * newest / probe.window
    if promised < QUIET_EXPECTED:
        return ()
    near = _Probe(probe.provider, ctx, newest, probe.timeout_s)
    canary, served = await asyncio.gather(
        *(
            near.measure(
                QUIET_METRIC,
                target,
                requests_query(
                    spec, variables(target, newest, ctx.interval_s), metricsql=ctx.metricsql
                ),
                "> 0",
                lambda _: Verdict.PASS,
            )
            for target in (ctx.canary, stable)
        )
    )
    if canary.verdict is not Verdict.ERROR and canary.value != 0:
        # Requests came: not quiet, whatever the stable twin's count says
        # (asked beside it). Its query failing alone made the check an
        # error, counted towards error-limit, though the canary had vouched.
        return ()
    erred = tuple(m for m in (canary, served) if m.verdict is Verdict.ERROR)
    if erred:
        return erred  # no answer: an error (_unanswered)
    if not served.value:
        return ()  # nobody's requests came (the load stopped)
    # On VictoriaMetrics the span read is two scrapes and a flush, and so is
    # the average: said per two scrapes, it was a flush's worth too high.
    flushed = " and a flush" if searchable_after(ctx.metricsql) else ""
    per = f"{newest:g}s" if flushed else "two scrapes"
    detail = (
        f"no request answered by the canary in its newest two scrapes{flushed} ({newest:g}s), "
        f"though it averaged {promised:.0f} per {per} over its window and the stable twin "
        f"answered {served.value:.0f}: it hangs, or its traffic went elsewhere"
    )
    return (replace(canary, verdict=Verdict.NO_DATA, detail=detail), served)


async def _quiet_since(
    spec: AnalysisSpec, ctx: StepContext, probe: _Probe
) -> tuple[Measurement, ...]:
    """A fast look at the flip or an open gate (ctx.served_span) that read
    no request of the canary: it went quiet (_went_quiet) if the stable
    twin's newest two scrapes hold some and the canary served plenty over
    the last step's window. A canary that hangs (under the load of its
    growth, a pool exhausted) completes no request, and its scrapes and
    readiness may still answer: its look, too few requests, counted as a
    read, and the Service flipped all production traffic onto it (found by
    review). Then a look that read nothing (looks.note_look): the flip and
    the gate wait, as for a canary not scraped."""
    begin, end = ctx.served_span
    newest = 2 * ctx.scrape_s + searchable_after(ctx.metricsql)
    if end - begin <= newest + 1e-6 or ctx.stable is None:
        return ()
    before = replace(ctx, start=begin, now=end, fresh=(), totals=False)
    served_probe = _Probe(probe.provider, before, end - begin, probe.timeout_s)
    served = await served_probe.measure(
        REQUESTS_METRIC,
        ctx.canary,
        requests_query(
            spec, variables(ctx.canary, end - begin, ctx.interval_s), metricsql=ctx.metricsql
        ),
        "any",
        lambda _: Verdict.PASS,
    )
    if served.verdict is Verdict.ERROR:
        return (served,)
    # Its newest two scrapes are the look's own; the average, the step's.
    return await _went_quiet(
        spec, replace(ctx, start=begin), replace(probe, window=end - begin), served
    )


def went_quiet(result: StepResult) -> bool:
    """The check found the canary quiet (_went_quiet, _quiet_since)."""
    return any(
        m.metric == QUIET_METRIC and m.verdict is Verdict.NO_DATA for m in result.measurements
    )


UNSEEN_METRIC = "canary-pods-unseen"
NEVER_SCRAPED_METRIC = "canary-pods-never-scraped"
NOT_YET_METRIC = "canary-pods-not-scraped-yet"


def never_scraped_grace(scrape_s: float) -> float:
    """How long a pod may serve before Prometheus must have a sample of it:
    its discovery (service discovery's watch, a file's refresh), its first
    scrape at an offset of its own, the sample's landing, and a clock the
    pod's Ready time is stamped in (the node's) a little off ours."""
    return 4 * scrape_s + 30.0


async def _pods_unseen(
    spec: AnalysisSpec,
    ctx: StepContext,
    probe: _Probe,
    guard: Measurement | None,
    landed: float = 0.0,
) -> tuple[Measurement, ...]:
    """Some of the canary's serving pods are not in Prometheus's data while
    the others are. A pod whose scrape fails (too busy to answer it, a hung
    metrics handler) has its series marked stale: the window's rates keep
    its samples from before, the other pods' fresh ones pass the
    newest-sample check, and whatever it served since (its errors, its
    timeouts) is in no query; one Prometheus never scraped (not discovered,
    over a sample limit, its metrics port not served) is in none at all.
    The step passed on the pods Prometheus saw (found by review: a canary
    pod never scraped was not counted). No data then, never a pass, as for
    a canary that went quiet. Only pods still serving count (a replaced
    pod's series end too). One pod's silence is the whole canary's, which
    the request guard and the newest-sample check see: a single pod needs
    no query of its own."""
    # On VictoriaMetrics, and its flush (searchable_after): each scrape goes
    # to one of its shards (one per CPU), each flushed on a deadline of its
    # own, so a pod's newest scrapes may wait in one flushed 4 s before the
    # shard that holds the canary's newest sample. Two scrapes only, a pod
    # scraped every second was unseen, and a healthy canary no data.
    newest = 2 * ctx.scrape_s + searchable_after(ctx.metricsql)
    if len(ctx.pods) < 2 or ctx.totals or not ctx.scrape_known or probe.window <= newest + 1e-6:
        return ()
    old = _long_serving(ctx, probe.window, guard)
    young = _within_grace(ctx, guard)
    stale, never, not_yet = await asyncio.gather(
        _stale(spec, ctx, probe, _settled(ctx, landed), landed),
        _never_scraped(spec, ctx, probe, old),
        _never_scraped(spec, ctx, probe, young),
    )
    found = (stale, never, not_yet)
    erred = tuple(m for m in found if m is not None and m.verdict is Verdict.ERROR)
    if erred:
        return erred  # no answer: an error (_unanswered), never the window's pass
    if stale is not None and stale.verdict is Verdict.NO_DATA and stale.value is not None:
        detail = (
            f"{stale.value:.0f} of the canary's {len(ctx.pods)} serving pods had request "
            f"samples earlier in the step but none in its newest two scrapes"
            + (" and a flush" if ctx.metricsql else "")
            + f" ({newest:g}s"
            + (f" to the canary's newest sample, {landed:g}s old" if landed > 0 else "")
            + "): "
            # Not "they just restarted": a pod back from a restart is left out
            # until its scrapes are due (_settled), and one scraped since is
            # seen (up == 1). Said, it named a cause nobody had seen.
            "their scrapes fail (a pod too busy to answer them, or hung); what they served "
            "since is unseen"
        )
        return (replace(stale, detail=detail),)
    if never is not None and never.verdict is Verdict.NO_DATA:
        seen = int(never.value or 0)
        detail = (
            f"{len(old) - seen} of the canary's {len(ctx.pods)} serving pods, each serving "
            f"for over {never_scraped_grace(ctx.scrape_s):g}s, has no request sample in the "
            "step: Prometheus does not scrape it (a target not discovered, over a sample "
            "limit, a metrics port it does not serve); what it served is unseen"
        )
        return (replace(never, detail=detail),)
    if not_yet is not None and not_yet.verdict is Verdict.NO_DATA:
        seen = int(not_yet.value or 0)
        detail = (
            f"{len(young) - seen} of the canary's {len(ctx.pods)} serving pods has no sample "
            f"yet, serving for less than {never_scraped_grace(ctx.scrape_s):g}s: the "
            "promotion waits for its first scrape (or for that time to pass)"
        )
        return (replace(not_yet, metric=NOT_YET_METRIC, detail=detail),)
    return ()  # every serving pod is seen: the window's pass stands


def _settled(ctx: StepContext, landed: float) -> tuple[str, ...]:
    """The serving pods whose newest two scrapes should hold samples: all
    but those that turned ready since those scrapes began (they end at the
    canary's newest sample, `landed` seconds old), or in the scrape before
    (the first scrape after it turned ready, at an offset of its own). A pod
    back from a container restart (the crash, the back-off, the start: two
    scrapes at 15 s are soon gone) had samples earlier in the step and none
    since its scrapes failed while it was down; it serves again before its
    next scrape has landed, and what it served meanwhile is nothing. Asked
    about, a healthy canary whose one pod restarted once was no data at the
    check due as the pod came back (found by review). Not never_scraped_grace:
    a pod too busy to answer its scrapes, whose readiness probe blips too,
    was left out for 90 s (4 scrapes + 30 s at 15 s) after each blip."""
    if len(ctx.ready_since) != len(ctx.pods):
        return ctx.pods
    # On VictoriaMetrics its first scrapes may all wait for their flush.
    began = ctx.now - landed - 3 * ctx.scrape_s - searchable_after(ctx.metricsql)
    return tuple(
        pod
        for pod, since in zip(ctx.pods, ctx.ready_since, strict=True)
        if not since or since <= began
    )


async def _stale(
    spec: AnalysisSpec,
    ctx: StepContext,
    probe: _Probe,
    pods: tuple[str, ...],
    landed: float = 0.0,
) -> Measurement | None:
    """How many of `pods` had request samples in the window but none in the
    newest two scrapes Prometheus holds (no data when any); None when there
    is none to ask about.

    Those two scrapes end at the canary's newest sample (`landed`: its age,
    NEWEST_METRIC), not at the window's end: a remote-write backend makes a
    scrape readable seconds after its time (a batch sent on its deadline),
    and a pod's newest scrape not landed yet left only the one before in
    the two scrapes to the window's end, more than two scrapes back for a
    pod scraped early in the interval. Every check whose timing fell so was
    no data, though each pod was scraped every time (found by review: 13 s
    late at a 10 s scrape, which the newest-sample check lets pass). Where
    they reach before the step, a pod has samples there more easily: that
    only ever finds fewer pods unseen."""
    if not pods:
        return None
    values = variables(replace(ctx.canary, pods=names_regex(pods)), probe.window, ctx.interval_s)
    shift = promql_duration(landed) if landed > 0 else ""
    newest = 2 * ctx.scrape_s + searchable_after(ctx.metricsql)  # as _pods_unseen
    # A pod scraped there is not unseen, request samples or not: an app that
    # creates its request series at its first request lost them with a
    # restart, and none may have reached it since (templates.scraped_pods).
    # A pod whose scrapes fail is up == 0.
    canary = variables(ctx.canary, probe.window, ctx.interval_s)
    return await probe.measure(
        UNSEEN_METRIC,
        ctx.canary,
        unseen_pods_query(spec, values, promql_duration(newest), shift, canary),
        "== 0",
        lambda v: Verdict.NO_DATA if v else Verdict.PASS,
    )


def _long_serving(ctx: StepContext, window: float, guard: Measurement | None) -> tuple[str, ...]:
    """The serving pods Prometheus must have samples of by now: each ready
    for longer than never_scraped_grace, and was due within the window
    enough requests (QUIET_EXPECTED, its share of the canary's) that
    an app exporting a series only once it answers one has it."""
    if guard is None or guard.value is None or len(ctx.ready_since) != len(ctx.pods):
        return ()
    grace = never_scraped_grace(ctx.scrape_s)
    share = guard.value / len(ctx.pods) / window  # requests a second, each pod
    found = []
    for pod, since in zip(ctx.pods, ctx.ready_since, strict=True):
        # The grace is for discovery and a first scrape, counted from when
        # the pod could be found (ready, and behind the Service: since the
        # canary first served), not within the window: a step's window is
        # about an interval (30 s by default), shorter than the grace (90 s
        # at a 15 s scrape), and a pod never scraped through every step was
        # never asked about: the release was promoted on the pods
        # Prometheus saw (found by review). Once past it, a pod scraped
        # has a sample (or an `up`) in any window of two scrapes.
        found_from = max(since, ctx.serving_since or ctx.start)
        served = ctx.now - max(since, ctx.start)
        if since > 0 and ctx.now - found_from > grace and share * served >= QUIET_EXPECTED:
            found.append(pod)
    return tuple(found)


def _within_grace(ctx: StepContext, guard: Measurement | None) -> tuple[str, ...]:
    """At the last step (ctx.promotes), the serving pods still within
    never_scraped_grace: no later check would ask about them. At a 15 s
    scrape the grace is 90 s, and a rollout of one or two 30 s steps was
    promoted with a pod Prometheus never scraped unasked, on the others'
    requests (found by review). One with a sample (or an `up == 1`) by now
    costs nothing; one without holds the promotion (StepResult.waiting)
    until it has one or the grace is over. Not at earlier steps: a later
    step asks, and pods new at each step would slow every rollout. Only
    where the request guard runs, as for pods past the grace."""
    if not ctx.promotes or guard is None or len(ctx.ready_since) != len(ctx.pods):
        return ()
    grace = never_scraped_grace(ctx.scrape_s)
    return tuple(
        pod
        for pod, since in zip(ctx.pods, ctx.ready_since, strict=True)
        if since > 0 and ctx.now - max(since, ctx.serving_since or ctx.start) <= grace
    )


async def _never_scraped(
    spec: AnalysisSpec, ctx: StepContext, probe: _Probe, pods: tuple[str, ...]
) -> Measurement | None:
    """How many of `pods` have a request sample in the window, or were
    scraped there (templates.seen_pods_query: an app that creates its
    request series at its first request, on a pod none reached); no data
    when fewer than all; None when there is none to ask about."""
    if not pods:
        return None
    values = variables(replace(ctx.canary, pods=names_regex(pods)), probe.window, ctx.interval_s)
    canary = variables(ctx.canary, probe.window, ctx.interval_s)
    seen = await probe.measure(
        NEVER_SCRAPED_METRIC,
        ctx.canary,
        seen_pods_query(spec, values, canary),
        f">= {len(pods)}",
        lambda v: Verdict.NO_DATA if v is None or v < len(pods) else Verdict.PASS,
    )
    if seen.verdict is not Verdict.NO_DATA:
        return seen
    # Where no canary pod has an `up` of its own (pushed metrics, a mesh's
    # labels), a pod with no series cannot be told from one no request
    # reached in an app that makes its series at the first request (a
    # gRPC client's long-lived connections pinned to other pods): taken for
    # never scraped, a healthy canary was no data (found by review). Asked
    # only when a pod is missing: the happy path costs no query more.
    targets = await probe.measure(
        NEVER_SCRAPED_METRIC,
        ctx.canary,
        scrape_targets_query(spec, canary),
        "> 0",
        lambda v: Verdict.PASS,
    )
    if targets.verdict is Verdict.ERROR:
        return targets  # not answered: an error, not "no `up` of its own"
    return seen if targets.value else None


def _newest_reason(failing: tuple[Measurement, ...]) -> str:
    return "the window passes, but its newest scrape fails: " + "; ".join(
        describe(m) for m in failing
    )


async def _stalled(spec: AnalysisSpec, probe: _Probe) -> Measurement | None:
    """The stable twin's requests over the same window, when Prometheus
    holds nothing of them there either (None otherwise, or when that cannot
    be told): no two scrapes of either twin in the look's window, so a look
    that reads nothing of the canary says nothing of it. That is a stall of
    Prometheus's scrapes, or its first scrape back (a rate needs two).
    Found by bench.rollback_latency: a 23 s stall of Prometheus's scrapes
    (the machine loaded) left a scheduled check judging the step on its
    first 15 s, where a one-scrape blip already cleared by the looks was
    1.6 % of the requests (98.39 against 99); the look that was to confirm
    it read nothing, and a good release was rolled back."""
    ctx = probe.ctx
    if ctx.stable is None:
        return None
    stable = await probe.measure(
        REQUESTS_METRIC,
        ctx.stable,
        requests_query(
            spec, variables(ctx.stable, probe.window, ctx.interval_s), metricsql=ctx.metricsql
        ),
        "any",
        lambda v: Verdict.NO_DATA if v is None else Verdict.PASS,
    )
    if stable.verdict is not Verdict.NO_DATA:
        return None  # the stable twin's requests read (or no answer): the canary's trouble
    return replace(
        stable,
        baseline=True,
        detail="nothing of the stable twin's requests either: Prometheus's scrapes stalled",
    )


def _all_empty(checks: tuple[Measurement, ...]) -> bool:
    """Every query on the canary answered nothing (no series, or NaN)."""
    measured = [m for m in checks if not m.baseline]
    return bool(measured) and all(
        m.verdict is Verdict.NO_DATA and m.value is None for m in measured
    )


# How far back the stable twin's request series show that the app exports
# the request metric at all (_scraped).
EXPORTED_LOOKBACK_S = 600.0


async def _scraped(spec: AnalysisSpec, probe: _Probe) -> tuple[Measurement, ...]:
    """Without the request guard (`min-requests: 0`), a fast look whose
    canary queries all answered nothing: the provider gives None both for no
    series (the canary's pods not scraped: a release grown to full size that
    stops answering its scrapes) and for NaN (scraped, no request: 0/0).
    Taken as read, the automatic flip and an open gate went over a canary
    nobody could see (found by review; under the guard its own empty answer
    says so: no_sample). The canary's request count over the look's window
    tells them apart as the guard's would: 0 is a quiet canary, read; empty
    is no sample (no_sample), read nothing. Empty only where the app exports
    the request metric at all (the stable twin's series in the last
    EXPORTED_LOOKBACK_S: custom queries on another exporter's metrics
    cannot tell, and the look counts as before, rather than hold the flip
    for good)."""
    ctx = probe.ctx
    canary = await probe.measure(
        REQUESTS_METRIC,
        ctx.canary,
        requests_query(
            spec,
            variables(ctx.canary, probe.window, ctx.interval_s),
            ctx.totals,
            ctx.metricsql,
            fresh_pods(ctx),
        ),
        "any",
        lambda v: Verdict.NO_DATA if v is None else Verdict.PASS,
    )
    if canary.verdict is not Verdict.NO_DATA:
        return (canary,)  # scraped (a quiet canary), or no answer: an error
    if ctx.stable is None:
        return ()
    exported = await probe.measure(
        REQUESTS_METRIC,
        ctx.stable,
        requests_query(
            spec,
            variables(ctx.stable, EXPORTED_LOOKBACK_S, ctx.interval_s),
            totals=True,
            metricsql=ctx.metricsql,
        ),
        "any",
        lambda v: Verdict.PASS,
    )
    if exported.verdict is Verdict.ERROR:
        return (exported,)  # not answered: the look could not tell, an error
    if exported.value is None:
        return ()
    detail = (
        "no series of the canary's requests in the window while the stable twin's exist: "
        "its pods not scraped"
    )
    return (replace(canary, detail=detail), replace(exported, baseline=True))


async def _newest_sample(spec: AnalysisSpec, probe: _Probe) -> Measurement:
    """How old the canary's newest request sample is at the window's end.
    rate() and increase() read the samples a window holds, wherever they
    are: when the canary's pods stopped answering scrapes (`up == 0`: a
    release thrashing under load, a broken metrics handler) or an overloaded
    Prometheus skips or lags them, a scheduled check passed the step on the
    part of its window before that, and promoted a canary whose last
    seconds nobody saw. More than two scrapes old (the time a failure needs
    to count), and on VictoriaMetrics its flush (searchable_after), is no
    data; a failing metric still outranks it."""
    ctx = probe.ctx
    limit = 2 * ctx.scrape_s + searchable_after(ctx.metricsql)
    selector = request_selector(spec, variables(ctx.canary, probe.window, ctx.interval_s))
    # The age, not the sample's time: both ends are Prometheus's clock (the
    # query is evaluated at the window's end shifted into it), so a host
    # clock off from Prometheus's neither reads stopped scrapes as fresh
    # (behind) nor every sample as old (ahead).
    query = f"time() - max(timestamp({spec.request_metric}{selector}))"
    measured = await probe.measure(
        NEWEST_METRIC,
        ctx.canary,
        query,
        f"<= {limit:g}",
        lambda v: Verdict.PASS if v is not None and v <= limit else Verdict.NO_DATA,
    )
    if measured.value is None:
        detail = (
            ""
            if measured.verdict is Verdict.ERROR
            else (
                "no current sample of the canary's requests: its pods' scrapes fail, "
                "or Prometheus has not stored them"
            )
        )
        return replace(measured, detail=detail)
    age = measured.value
    detail = (
        f"{age:.0f}s old: the canary's pods' scrapes fail, or Prometheus lags; "
        "what it did since is unseen"
        if measured.verdict is Verdict.NO_DATA
        else ""
    )
    return replace(measured, value=round(age, 3), detail=detail)


async def _measure_metric(
    spec: AnalysisSpec, metric: MetricSpec, probe: _Probe, *, fast: bool = False
) -> tuple[Measurement, ...]:
    """The metric's checks on the canary (each carries a verdict), plus the
    stable twin's baseline when the metric compares against it."""
    measurements: list[Measurement] = []
    if metric.min is not None or metric.max is not None or metric.relative is not None:
        measurements.extend(await _threshold_check(spec, metric, probe))
    if metric.judge is not None and not fast:
        measurements.append(await _judge_check(spec, metric, metric.judge, probe))
    return tuple(measurements)


async def _threshold_check(
    spec: AnalysisSpec, metric: MetricSpec, probe: _Probe
) -> list[Measurement]:
    ctx = probe.ctx
    canary_vars = variables(ctx.canary, probe.window, ctx.interval_s)
    fresh = fresh_pods(ctx)
    canary_query = metric_query(spec, metric, canary_vars, ctx.totals, ctx.metricsql, fresh)
    guard = metric.query is None and spec.min_requests > 0
    if guard:
        # The guard in the metric's own query, so that whichever Prometheus
        # answers it counted the requests it judged (templates.guarded). Not
        # around a custom query, which may be a scalar (`and` takes vectors).
        canary_query = guarded(
            canary_query,
            requests_query(spec, canary_vars, ctx.totals, ctx.metricsql, fresh),
            spec.min_requests,
        )
    if metric.relative is None or ctx.stable is None:
        canary = await probe.measure(
            metric.name, ctx.canary, canary_query, thresholds(metric), lambda v: assess(metric, v)
        )
        return [
            _unguarded(spec, metric, _unlabelled(spec, metric, _infinite(metric, canary)), guard)
        ]
    stable_vars = variables(ctx.stable, probe.window, ctx.interval_s)
    stable_query = metric_query(spec, metric, stable_vars, metricsql=ctx.metricsql)
    if guard:
        # The baseline's own guard too: the stable twin's request count
        # below is a query of its own, and a baseline computed by another
        # Prometheus behind the URL (an HA pair's replica restarted without
        # its data) was its last scrape's, vouched for by the whole window's
        # count: 10 requests with no error, and a canary failing 2 % as the
        # stable twin did over the window was rolled back (found by review).
        stable_query = guarded(
            stable_query,
            requests_query(spec, stable_vars, metricsql=ctx.metricsql),
            spec.min_requests,
        )
    baseline = await probe.measure(
        metric.name, ctx.stable, stable_query, "baseline", lambda v: Verdict.PASS
    )
    baseline = replace(baseline, baseline=True)
    measured = [baseline]
    usable = True
    if spec.min_requests > 0:
        # A baseline from a handful of requests (a low-traffic stable twin at
        # a high step) is noise: 1 error in 3 requests would let a canary
        # with 40 % errors pass a ratio of 1.5. It needs the canary's minimum.
        served = await probe.measure(
            REQUESTS_METRIC,
            ctx.stable,
            requests_query(spec, stable_vars, metricsql=ctx.metricsql),
            f">= {spec.min_requests}",
            lambda v: Verdict.PASS if v is not None and v >= spec.min_requests else Verdict.NO_DATA,
        )
        measured.append(replace(served, baseline=True))
        usable = served.verdict is Verdict.PASS
        if served.verdict is Verdict.ERROR:
            baseline = replace(baseline, verdict=Verdict.ERROR, error=served.error)
    canary = await probe.measure(
        metric.name,
        ctx.canary,
        canary_query,
        thresholds(metric),
        # Without a usable baseline only the absolute thresholds can fail it.
        lambda v: assess(metric, v, baseline.value if usable else None),
        stable_value=baseline.value,
    )
    if baseline.verdict is Verdict.ERROR and canary.verdict is not Verdict.FAIL:
        # An absolute threshold the canary fails needs no baseline: a
        # failing metric outranks errors.
        canary = replace(canary, verdict=Verdict.ERROR, error=f"baseline: {baseline.error}")
    elif not usable and canary.verdict is Verdict.NO_DATA:
        canary = replace(
            canary,
            detail=f"the stable twin served {measured[-1].value or 0:.0f} requests in the "
            f"window, fewer than the {spec.min_requests} a baseline needs",
        )
    elif canary.verdict is Verdict.NO_DATA and canary.value is not None and baseline.value is None:
        # Not the canary's series (_unlabelled): the stable twin's baseline
        # is what came back empty.
        elsewhere = (
            f", or the Prometheus that computed it counted fewer than {spec.min_requests} of "
            "its requests (another one behind the URL, lacking part of the window)"
            if guard
            else ""
        )
        detail = f"no baseline of the stable twin: its series are missing{elsewhere}"
        canary = replace(canary, detail=detail)
    canary = _unguarded(spec, metric, _unlabelled(spec, metric, _infinite(metric, canary)), guard)
    return [canary, *measured]


def _infinite(metric: MetricSpec, measured: Measurement) -> Measurement:
    """Why an infinite value is no data, for whoever reads the check."""
    if measured.verdict is not Verdict.NO_DATA or measured.detail:
        return measured
    if measured.value == good_infinity(metric):
        why = f"the query returned {measured.value:+}: a division by zero, not a measurement"
    elif measured.stable_value is not None and math.isinf(measured.stable_value):
        why = f"the stable twin's value is {measured.stable_value:+}: nothing to compare with"
    else:
        return measured
    return replace(measured, detail=why)


def _unlabelled(spec: AnalysisSpec, metric: MetricSpec, measured: Measurement) -> Measurement:
    """A builtin rate with no data says where to look: it counts only series
    that carry the status label, which an exporter may call otherwise."""
    if (
        metric.query is None
        and metric.name in ("success-rate", "error-rate")
        and measured.verdict is Verdict.NO_DATA
        and not measured.detail
    ):
        return replace(
            measured,
            detail=f"no {spec.request_metric} series of the canary with a "
            f"`{spec.labels.code}` label in the window (no requests, or the exporter names its "
            "status label otherwise: set `labels: {code: <its name>}`)",
        )
    return measured


def _unguarded(
    spec: AnalysisSpec, metric: MetricSpec, measured: Measurement, guarded: bool
) -> Measurement:
    """A builtin empty under its own guard (templates.guarded), though the
    request guard before it passed: maybe its series are missing, maybe the
    Prometheus that computed it counted fewer requests than the one that
    answered the guard (a second one behind the URL, lacking part of the
    window). Said, not guessed at: both."""
    if not guarded or measured.verdict is not Verdict.NO_DATA or measured.value is not None:
        return measured
    elsewhere = (
        f"fewer than {spec.min_requests} requests to the canary in the window where it was "
        "computed, though the request guard counted them (another Prometheus behind the URL "
        "answered it, one that lacks part of the window: an HA pair's replica restarted "
        "without its data)"
    )
    if measured.detail:
        return replace(measured, detail=f"{measured.detail}; or {elsewhere}")
    if metric.name in ("success-rate", "error-rate"):
        return replace(measured, detail=elsewhere)
    series = f"{spec.latency_metric}_bucket"
    return replace(
        measured, detail=f"no {series} series of the canary in the window, or {elsewhere}"
    )


async def _judge_check(
    spec: AnalysisSpec, metric: MetricSpec, settings: Judge, probe: _Probe
) -> Measurement:
    """Per-interval samples of both twins over the step, then Mann-Whitney."""
    ctx = probe.ctx
    every = max(settings.sample_every, 2 * ctx.scrape_s)
    start, end = ctx.now - probe.window + every, ctx.now
    queries = {
        twin: metric_query(
            spec, metric, variables(target, every, ctx.interval_s), metricsql=ctx.metricsql
        )
        for twin, target in (("canary", ctx.canary), ("stable", ctx.stable))
        if target is not None
    }
    threshold = f"{JUDGED} {settings.confidence:.0%} and shift <= {settings.effect_size:.0%}"
    await asyncio.to_thread(load_judge)  # scipy's first import takes seconds: not on the loop
    began = time.perf_counter()
    base = Measurement(
        metric=metric.name,
        twin=ctx.canary.twin,
        query=queries["canary"],
        start=ctx.now - probe.window,
        end=end,
        value=None,
        threshold=threshold,
        verdict=Verdict.NO_DATA,
        duration_ms=0.0,
    )
    if "stable" not in queries:
        return replace(base, detail="no stable twin to compare with")
    # Whole seconds, rounded up: the client rounds to the nearest, which
    # could reach up to 0.5 s back before the step began.
    start = float(math.ceil(start))
    if start > end:
        # A sample every `every` does not fit in the window yet (sample-every
        # longer than the interval): no data, not a query to fix.
        return replace(
            base, detail=f"the window holds no whole {every:g}s sample yet; waiting for more"
        )
    try:
        canary, stable = await asyncio.gather(
            probe.provider.query_range(queries["canary"], start, end, every, probe.timeout_s),
            probe.provider.query_range(queries["stable"], start, end, every, probe.timeout_s),
        )
    except QueryError as exc:
        return replace(
            base,
            verdict=Verdict.ERROR,
            error=str(exc),
            invalid=exc.invalid,
            duration_ms=round((time.perf_counter() - began) * 1000, 3),
        )
    verdict = judge(canary, stable, settings, metric.worse_when)
    return replace(
        base,
        value=verdict.canary_median,
        stable_value=verdict.stable_median,
        verdict=verdict.verdict,
        detail=verdict.detail,
        duration_ms=round((time.perf_counter() - began) * 1000, 3),
    )


@dataclass(frozen=True, slots=True)
class _Probe:
    provider: MetricsProvider
    ctx: StepContext
    window: float
    timeout_s: float

    async def measure(
        self,
        name: str,
        target: Target,
        query: str,
        threshold: str,
        judge: Callable[[float | None], Verdict],
        stable_value: float | None = None,
    ) -> Measurement:
        began = time.perf_counter()
        value: float | None = None
        error = ""
        invalid = False
        try:
            value = await self.provider.query(query, self.ctx.now, self.timeout_s)
            verdict = judge(value)
        except QueryError as exc:
            verdict, error, invalid = Verdict.ERROR, str(exc), exc.invalid
        return Measurement(
            metric=name,
            twin=target.twin,
            query=query,
            start=self.ctx.now - self.window,
            end=self.ctx.now,
            value=value,
            threshold=threshold,
            verdict=verdict,
            duration_ms=round((time.perf_counter() - began) * 1000, 3),
            stable_value=stable_value,
            error=error,
            invalid=invalid,
        )


def _reason(verdict: Verdict, measurements: tuple[Measurement, ...]) -> str:
    if verdict is Verdict.PASS:
        return "all metrics within thresholds"
    return "; ".join(describe(m) for m in measurements if m.verdict is verdict)


def describe(m: Measurement) -> str:
    """One line on-call can read: metric, value, what it should have been."""
    if m.verdict is Verdict.ERROR:
        return f"{m.metric}: error: {m.error}"
    if m.value is None:
        return f"{m.metric}: no data" + (f" ({m.detail})" if m.detail else "")
    baseline = f", stable {m.stable_value:.4g}" if m.stable_value is not None else ""
    detail = f"; {m.detail}" if m.detail else ""
    return f"{m.metric} = {m.value:.4g} (want {m.threshold}{baseline}{detail})"
