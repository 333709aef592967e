"""Analyses and gate calls run beside the reconciles, never inside one.

A reconcile only starts a check and moves on; the finished check wakes the
Service and the next reconcile judges it. So a Prometheus that is slow or
down, or a gate that hangs, never delays a manual abort, a rollback or any
other Service: actions are applied as soon as a watch event brings them.

A finished check is handed over only to the rollout position that asked for
it (its ident): a result for a step the rollout has left is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from typing import Any

from analysis.gate_results import GateResult
from analysis.gates import Webhooks
from analysis.provider import MetricsProvider, QueryError, dialect_unknown, speaks_metricsql
from analysis.run import StepContext, StepResult, analyze, no_sample, read_nothing
from analysis.scrape import (
    ScrapeTiming,
    landing_retries,
    latest_landing,
    learn_scrape_timing,
    searchable_after,
)
from analysis.spec import AnalysisSpec, GateSpec
from analysis.templates import Target
from analysis.verdicts import Verdict
from canary.model import Checked

log = logging.getLogger(__name__)

Key = tuple[str, str]
Ident = tuple[Any, ...]

DEFAULT_SCRAPE_S = 15.0
# How many queries one analysis may have at the provider at once: half the
# Prometheus adapter's pool (PrometheusConfig.max_concurrent_queries, 8).
# A check gathers its metrics' queries; one Service checking ten metrics
# that Prometheus takes 9 s each for filled the pool, and every other
# Service's look waited about 9 s for a thread (see _Share).
QUERIES_PER_ANALYSIS = 4
SCRAPE_TTL_S = 600.0  # learn it again after this long (a Prometheus config may change)


def _when_run(kind: str, ctx: StepContext, now: float) -> StepContext:
    """The window ends when its queries go out, not when the check was
    queued at Checks._limit behind other Services: that wait (many
    rollouts, a Prometheus a little slow) is no gap in what Prometheus
    reads, yet counted in Checked.at it made a scheduled pass late
    (judging.answered_late: an error, past error-limit a halt) and a fast
    look too old for an open gate to move on (looks.unlooked). A fast
    look's window stays two scrapes wide (schedule.analysis_due), never
    reaching before the step; one reading totals keeps its window, and so
    does one asked to read further back (schedule.fast_start: the scrapes
    since a failing one, or since looks too quiet to tell). Cut to two
    scrapes, those read a single scrape's requests again, too few to tell
    at a low weight, look after look."""
    if now <= ctx.now or (kind == "fast" and ctx.totals):
        return ctx
    if kind == "fast" and ctx.start >= ctx.now - 2 * ctx.scrape_s - 1e-6:
        return replace(ctx, start=max(ctx.start, now - 2 * ctx.scrape_s), now=now)
    return replace(ctx, now=now)


class _Share:
    """The provider as one analysis sees it: at most `limit` of its queries
    at the provider at once, the rest wait here, not in the provider's
    pool. That pool is shared by every Service and serves in order: one
    heavy Service's burst of queries took all of it, and the failing look
    of any other Service queued behind them (a rollback ~9 s later per
    look). Only the heavy Service waits for its own queries now."""

    def __init__(self, provider: MetricsProvider, limit: int) -> None:
        self._provider = provider
        self._slots = asyncio.Semaphore(limit)

    @property
    def clock_offset(self) -> float:
        return self._provider.clock_offset

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        async with self._slots:
            return await self._provider.query(promql, at, timeout_s)

    async def query_range(
        self, promql: str, start: float, end: float, step_s: float, timeout_s: float
    ) -> list[float]:
        async with self._slots:
            return await self._provider.query_range(promql, start, end, step_s, timeout_s)

    async def query_range_series(
        self, promql: str, start: float, end: float, step_s: float, timeout_s: float
    ) -> list[list[float]]:
        async with self._slots:
            return await self._provider.query_range_series(promql, start, end, step_s, timeout_s)


def _time_given(spec: AnalysisSpec) -> float:
    """How long an analysis may take: 3 query-timeouts + 5 s (the request
    guard, a relative metric's two queries, the newest-scrape check), and a
    query-timeout more for each further round its queries take at
    QUERIES_PER_ANALYSIS at a time (a relative or judged metric queries both
    twins; the newest sample is read beside the metrics). Without those
    rounds, a Service checking 16 metrics Prometheus answers in 9 s each
    (63 s at its share) came back too slow at every check, and halted."""
    queries = 1 + sum(2 if m.relative or m.judge else 1 for m in spec.metrics)
    rounds = -(-queries // QUERIES_PER_ANALYSIS)
    return (2 + rounds) * spec.query_timeout + 5.0


async def _pause(seconds: float) -> None:
    await asyncio.sleep(seconds)


def _unlanded(kind: str, ctx: StepContext, result: StepResult, flush: float = 0.0) -> bool:
    """A fast look found no sample of the canary in its two scrapes: the
    newest has most likely not landed yet (the look is timed landing_lag
    after the scrape's time, and a slow /metrics, a busy Prometheus or a
    remote-write delay takes longer). Not a look reading counter totals (a
    young first step's window may hold no sample yet).

    With `flush` (VictoriaMetrics, searchable_after), a look without the
    request guard (`min-requests: 0`) whose metrics all read nothing too
    (read_nothing): there a look timed after the scrape lands mostly finds
    it not flushed yet. Taken as read, the look that was to confirm or clear
    a failing check counted it: a blip Prometheus's next look clears rolled
    a good release back with `failure-limit: 0`."""
    if kind != "fast" or ctx.totals:
        return False
    return read_nothing(result) if flush else no_sample(result)


class Checks:
    def __init__(
        self,
        provider: MetricsProvider,
        webhooks: Webhooks,
        wake: Callable[[Key], None],
        max_concurrent: int = 32,
    ) -> None:
        self.provider = provider
        self.webhooks = webhooks
        self._wake = wake
        # Bounds how many Services query at once; the provider's own pool
        # bounds the queries themselves.
        self._limit = asyncio.Semaphore(max_concurrent)
        self._max_concurrent = max_concurrent
        self._analyses: dict[Key, tuple[Ident, asyncio.Task[None]]] = {}
        self._gate_calls: dict[Key, tuple[Ident, asyncio.Task[None]]] = {}
        self._results: dict[Key, tuple[Ident, Checked]] = {}
        self._answers: dict[Key, tuple[Ident, GateResult]] = {}
        self._scrape: dict[Key, tuple[ScrapeTiming, float]] = {}  # learned timing, when
        self._learning: dict[Key, asyncio.Task[None]] = {}
        # How much later than landing_lag a scrape's samples could be read,
        # as the looks found (see start_analysis): added to the learned
        # phase, so looks wait for them instead of missing them each time.
        self._late: dict[Key, float] = {}
        # When each analysis and gate call in flight must be back (finish_by).
        self._finish_by: dict[tuple[str, Key], float] = {}

    # -- analysis -------------------------------------------------------------

    def analysing(self, key: Key) -> bool:
        return key in self._analyses or key in self._results

    def finish_by(self, key: Key) -> float | None:
        """When the analysis and the gate call in flight must be back (this
        host's clock), at the latest once they run: an analysis's deadline,
        and one more for each try a look may make again for a scrape not
        landed yet; a gate's timeout for each of its tries, and the waits
        between them. None: neither in flight."""
        ends = [
            self._finish_by[(kind, key)]
            for kind, running in (("analysis", self._analyses), ("gate", self._gate_calls))
            if key in running and (kind, key) in self._finish_by
        ]
        return max(ends, default=None)

    def _slot_free_by(self) -> float:
        """When a check asked now has a slot at the latest (this host's
        clock): now if fewer than the limit are in flight, else once enough
        of those ahead of it (the semaphore serves in order) must have given
        theirs back. Its deadline counts from then: counted from now, the
        33rd check of a release to many Services at once, queued behind 32
        that Prometheus answered slowly within their query-timeout, was
        exported as due long before it could be back, and
        CanaryRolloutStuck paged a controller working through its queue."""
        ends = sorted(
            self._finish_by[("analysis", key)]
            for key in self._analyses
            if ("analysis", key) in self._finish_by
        )
        if len(ends) < self._max_concurrent:
            return time.time()
        return max(time.time(), ends[len(ends) - self._max_concurrent])

    def take_analysis(self, key: Key, ident: Ident) -> Checked | None:
        found = self._results.pop(key, None)
        if found is None:
            return None
        if found[0] != ident:
            log.debug(
                "%s/%s: dropped a %s check: asked at %s, now at %s",
                *key,
                found[1].kind,
                found[0],
                ident,
            )
            return None
        return found[1]

    def put_back_analysis(self, key: Key, ident: Ident, checked: Checked) -> None:
        """A result whose cycle failed is kept for the retry, unless a newer one came."""
        self._results.setdefault(key, (ident, checked))

    def start_analysis(
        self,
        key: Key,
        ident: Ident,
        kind: str,
        spec: AnalysisSpec,
        ctx: StepContext,
        interval: float | None = None,
    ) -> None:
        if key in self._analyses:
            return
        timeout = _time_given(spec)
        # With the tries a look may make for its scrape, and on VictoriaMetrics
        # for its flush (attempt's retries below). The dialect not known yet,
        # the longer: its start-up check may answer before the queries go
        # out (attempt), and they wait for the flush then. Taken for PromQL,
        # the deadline exported was up to 4 tries of the analysis's time short.
        unknown = dialect_unknown(self.provider)
        flush = searchable_after(True) if unknown else self.searchable_after()
        tries = landing_retries(ctx.scrape_s, flush) if kind == "fast" and not ctx.totals else ()
        self._finish_by[("analysis", key)] = (
            self._slot_free_by() + timeout * (1 + len(tries)) + sum(tries)
        )

        async def attempt(at: float | None = None) -> tuple[StepContext, StepResult]:
            """`at`: the window's end, if not when its queries go out."""
            async with self._limit:
                # The dialect as known when the queries go out: the start-up
                # check may answer while this one waits for a slot.
                dialect = replace(ctx, metricsql=speaks_metricsql(self.provider))
                asked = _when_run(kind, dialect, time.time() if at is None else at)
                if dialect_unknown(self.provider):
                    # Its start-up check unanswered (a VictoriaMetrics busy at
                    # the start answers vector(1), not the dialect probe):
                    # read as PromQL, rate() and increase() counted one bad
                    # scrape twice there. An error, as when the backend
                    # fails, until run.until_answered finds it.
                    reason = (
                        "the metrics backend's dialect (PromQL or MetricsQL) is not known yet: "
                        "its start-up check has not been answered (asked again every 5s)"
                    )
                    return asked, StepResult(Verdict.ERROR, (), reason)
                share = _Share(self.provider, QUERIES_PER_ANALYSIS)
                try:
                    result = await asyncio.wait_for(
                        analyze(spec, asked, share, fast=kind == "fast"), timeout
                    )
                except TimeoutError:
                    result = StepResult(
                        Verdict.ERROR, (), f"analysis did not finish within {timeout:g}s", slow=True
                    )
                except Exception as exc:  # a bug: an error verdict, never a silent pass
                    log.exception("analysis of %s/%s crashed", *key)
                    result = StepResult(Verdict.ERROR, (), f"analysis crashed: {exc!r}")
            return asked, result

        async def run() -> None:
            asked, result = await attempt()
            # A look that missed the newest scrape (not landed yet) tries
            # again shortly, within an interval, and the delay that
            # found it times the next looks. Before, it read nothing, the
            # next read the scrape before it, and so on by turns: a 2 s
            # landing delay at a 10 s scrape took 39 s from a failure showing
            # to its rollback instead of 10 s. Waits outside the semaphore;
            # only this look's slot is held, as while any look is in flight.
            waited = 0.0
            first = asked, result
            # On VictoriaMetrics a landed scrape is searchable only at its
            # flush, up to 4 s later (searchable_after): the tries wait for
            # it too, over the first try's own window. Slid along with them,
            # a window of two scrapes at a 1 s scrape never held two flushed
            # samples, and a look that read nothing counted the failing check
            # it was to confirm or clear. A flush is no landing delay of the
            # pods' scrapes: what it explains does not time the next looks.
            flush = searchable_after(asked.metricsql)
            fixed = asked.now if flush else None
            unlanded = _unlanded(kind, ctx, result, flush)
            for wait in landing_retries(ctx.scrape_s, flush) if unlanded else ():
                await _pause(wait)
                waited += wait
                asked, result = await attempt(fixed)
                if not _unlanded(kind, ctx, result, flush):
                    late = self._late.get(key, 0.0) + max(0.0, waited - flush)
                    self._late[key] = min(late, latest_landing(ctx.scrape_s))
                    break
            else:
                # None found it (not scraped, or later than a look can
                # wait): the first try's, which read nothing as well, so
                # the next look is not pushed a scrape later.
                asked, result = first
            log.debug(
                "%s/%s: %s check at %.3f (window from %.3f) done at %.3f: %s",
                *key,
                kind,
                asked.now,
                asked.start,
                time.time(),
                result.reason,
            )
            self._results[key] = (ident, Checked(kind, result, asked.now, spec, interval))

        self._analyses[key] = (ident, self._spawn(key, self._analyses, run(), f"analysis {key}"))

    # -- gates ------------------------------------------------------------------

    def take_gate(self, key: Key, ident: Ident) -> GateResult | None:
        found = self._answers.pop(key, None)
        if found is None or found[0] != ident:
            return None
        return found[1]

    def put_back_gate(self, key: Key, ident: Ident, answer: GateResult) -> None:
        self._answers.setdefault(key, (ident, answer))

    def put_back(
        self,
        key: Key,
        ident: Ident,
        checked: Checked | None,
        gate_ident: Ident,
        answer: GateResult | None,
    ) -> None:
        """What a cycle that failed took: its retry judges the same again."""
        if checked is not None:
            self.put_back_analysis(key, ident, checked)
        if answer is not None:
            self.put_back_gate(key, gate_ident, answer)

    def asking(self, key: Key) -> bool:
        return key in self._gate_calls or key in self._answers

    def start_gate(
        self, key: Key, ident: Ident, gates: Sequence[GateSpec], payload: dict[str, object]
    ) -> None:
        if key in self._gate_calls:
            return
        # Asked at once, each try within its timeout, at most 2 s apart
        # (analysis.gates: wait_exponential(max=2.0)).
        self._finish_by[("gate", key)] = time.time() + max(
            (g.timeout * (g.retries + 1) + 2.0 * g.retries for g in gates), default=0.0
        )

        async def run() -> None:
            self._answers[key] = (ident, await self.webhooks.ask(gates, payload))

        self._gate_calls[key] = (ident, self._spawn(key, self._gate_calls, run(), f"gate {key}"))

    # -- the scrape interval -------------------------------------------------------

    def scrape_interval(
        self, key: Key, spec: AnalysisSpec, target: Target | None, now: float
    ) -> tuple[float, str]:
        """(seconds, where it came from). Set in the analysis: that. Else
        learned from how often Prometheus stores the request metric, in the
        background; until it is known, the conservative default."""
        if spec.scrape_interval is not None:
            return spec.scrape_interval, "analysis"
        known = self._scrape.get(key)
        if (
            target is not None
            and key not in self._learning
            and (known is None or now > known[1] + SCRAPE_TTL_S)
        ):
            self._learning[key] = asyncio.create_task(self._learn(key, spec, target))
        if known is None:
            return DEFAULT_SCRAPE_S, "default (not learned yet)"
        return known[0].interval, "learned from Prometheus"

    def scrape_known(self, key: Key, spec: AnalysisSpec) -> bool:
        """The interval scrape_interval gives is Prometheus's own (set in the
        analysis, or learned), not the default."""
        return spec.scrape_interval is not None or key in self._scrape

    def scrape_phase(self, key: Key) -> float:
        """When a scrape of the request metric landed (its samples' time),
        as last learned, plus how much later than landing_lag the looks
        found its samples readable; 0.0 when unknown or the analysis sets
        the interval."""
        known = self._scrape.get(key)
        return known[0].last + self._late.get(key, 0.0) if known is not None else 0.0

    def searchable_after(self) -> float:
        """How much later than Prometheus the backend makes a landed scrape
        searchable (VictoriaMetrics' flush), as its dialect says."""
        return searchable_after(speaks_metricsql(self.provider))

    async def _learn(self, key: Key, spec: AnalysisSpec, target: Target) -> None:
        try:
            learned = await learn_scrape_timing(spec, target, self.provider)
        except QueryError as exc:
            log.info("could not learn the scrape interval for %s/%s: %s", *key, exc)
            learned = None
        except Exception:
            log.exception("learning the scrape interval for %s/%s failed", *key)
            learned = None
        finally:
            if self._learning.get(key) is asyncio.current_task():  # not a newer one's
                del self._learning[key]
        if learned is not None:
            known = self._scrape.get(key)
            changed = known is None or known[0].interval != learned.interval
            self._scrape[key] = (learned, time.time())
            # Learned again with it: a delay that was a passing spike (a
            # Prometheus busy for a while) does not time the looks for good.
            self._late.pop(key, None)
            if changed:
                self._wake(key)

    # -- housekeeping ----------------------------------------------------------------

    def forget(self, key: Key) -> None:
        for running in (self._analyses, self._gate_calls):
            entry = running.pop(key, None)
            if entry is not None:
                entry[1].cancel()
        # Left running, a learning answered later stored the interval of a
        # Service gone for good, and woke it.
        learning = self._learning.pop(key, None)
        if learning is not None:
            learning.cancel()
        self._results.pop(key, None)
        self._answers.pop(key, None)
        self._scrape.pop(key, None)
        for kind in ("analysis", "gate"):
            self._finish_by.pop((kind, key), None)
        self._late.pop(key, None)

    async def close(self) -> None:
        tasks = [t for _, t in (*self._analyses.values(), *self._gate_calls.values())]
        tasks += list(self._learning.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(
        self,
        key: Key,
        running: dict[Key, tuple[Ident, asyncio.Task[None]]],
        coroutine: Coroutine[Any, Any, None],
        name: str,
    ) -> asyncio.Task[None]:
        """A guarded task: a crash is logged, and the Service is woken either
        way so it never waits on a check that will not come."""

        async def guarded() -> None:
            try:
                await coroutine
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s crashed", name)
            finally:
                running.pop(key, None)
            self._wake(key)

        return asyncio.create_task(guarded(), name=name)
