"""Prometheus as a MetricsProvider, through prometheus-api-client.

prometheus-api-client is synchronous (requests), so every call runs in a
small thread pool of our own: the event loop never blocks on the network,
and the pool's size bounds how many queries one controller sends at once,
however many steps fall due together. One requests session per Prometheus
keeps connections alive between steps.

Times are the controller's: each query is sent at the same instant in
Prometheus's clock, by the offset analysis.clock estimates (re-probed at
most once a minute, and only while queries are made).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests
import requests.auth
import requests.utils
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from requests.adapters import Retry
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)
from tenacity.stop import stop_base

from analysis import http_trouble
from analysis.bearer_file import TokenFile, TokenUnreadable
from analysis.clock import PROBE_TIMEOUT_S, REPROBE_S, ClockOffset, ClockProbe, worth_telling
from analysis.durations import promql_duration
from analysis.provider import QueryError
from analysis.templates import METRICSQL_INCREASE

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PrometheusConfig:
    url: str
    bearer_token: str | None = None
    # A file holding the token, read again when it changes (a projected
    # ServiceAccount token, a Secret Vault rotates): see bearer_file.TokenFile.
    bearer_token_file: str | None = None
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    insecure: bool = False
    max_concurrent_queries: int = 8
    attempts: int = 3


# The longest URL sent as a GET: nginx (an ingress, a Mimir gateway) takes a
# request line of 8 KiB (large_client_header_buffers 4 8k), Apache 8190
# bytes, less the method and the protocol around it.
LONGEST_GET = 8000


class _Transient(Exception):
    """Worth another try: connection trouble or a 5xx/429 from Prometheus.
    `retry_after`: the seconds its Retry-After asked us to wait, if any."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _asked_to_wait(state: RetryCallState) -> float | None:
    """The Retry-After of the try that just failed, if it gave one."""
    failed = state.outcome.exception() if state.outcome else None
    return failed.retry_after if isinstance(failed, _Transient) else None


class _AskedPast(stop_base):
    """Stop when asked to wait past the query's timeout: an error now (the
    next check asks again), no wait that cannot end in time."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s

    def __call__(self, state: RetryCallState) -> bool:
        after = _asked_to_wait(state)
        return after is not None and (state.seconds_since_start or 0.0) + after > self.timeout_s


class _Partial(Exception):
    """An answer computed without part of the data (a store or replica down)."""


# Warnings that say the answer lacks data (Thanos, Cortex/Mimir, remote read):
# the missing part could hold the canary's errors, so such an answer is no
# pass. (Not `partial_response=false`: Thanos would then fail every query
# while one replica of an HA pair restarts, and may answer it with a 4xx that
# reads as a query to fix.) A store down behind Thanos makes checks errors,
# as Prometheus down does: past error-limit the rollout halts, and resumes
# by itself. Worded as the stores word them: Prometheus's own remote read
# fails as "remote_read: ..." (underscore), a Thanos store that is slow or
# whose stream breaks as "failed to receive any data in 5s from <store>" or
# "receive series from <store>: rpc error: code = DeadlineExceeded ..." (no
# "unavailable" in either): before, those answers passed steps. A Thanos
# querier with no store left for the query (a sidecar gone from its store
# set) answers with what the others hold, none of the canary's, saying "No
# StoreAPIs matched for this query": `or vector(0)` read that as 0 errors.
_PARTIAL = (
    "partial response",
    "partial data",
    "unavailable",
    "remote read",
    "remote_read",
    "receive series from",
    "failed to receive any data",
    "fetch series for",
    "no storeapis matched",
)


def _refuse_partial(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """A requests response hook: prometheus-api-client returns only
    data.result and drops the answer's warnings, and VictoriaMetrics'
    `isPartial` (a vmstorage node down: its series are left out, with no
    warning at all)."""
    content = response.content
    if response.status_code != 200 or (b"warnings" not in content and b"isPartial" not in content):
        return
    try:
        body = response.json()
        warnings = body.get("warnings") or []
    except (ValueError, AttributeError):
        return
    partial = [str(w) for w in warnings if any(p in str(w).lower() for p in _PARTIAL)]
    if body.get("isPartial") is True:
        partial.append("isPartial: true (a storage node did not answer)")
    if partial:
        raise _Partial("; ".join(partial)[:500])


# Sent with every query. VictoriaMetrics answers an instant query whose time
# is within -search.latencyOffset (30 s by default) of its now as of that
# long ago, and moves the result's timestamp forward again, so nothing shows
# it (range queries get their last points replaced likewise). Every check
# read the canary as it was 30 s before: one whose scrapes had stopped 20 s
# ago read fresh, errors of its last 20 s were not there, and time() read
# 30 s behind, which the clock probe took for a slow clock ("fix NTP") and
# shifted every query back by (checked against a real VictoriaMetrics:
# tests/integration/test_victoriametrics.py). 1 ms is the least it takes.
# A scrape not yet searchable is the newest-sample checks' to see, as on
# remote write. Prometheus, Thanos, Cortex and Mimir ignore the parameter.
EVERY_QUERY = {"latency_offset": "1ms"}


class Prometheus:
    def __init__(self, config: PrometheusConfig) -> None:
        self.config = config
        session = requests.Session()
        if config.ca_file:
            session.verify = config.ca_file
        if config.insecure:
            session.verify = False
        if config.bearer_token_file:
            session.auth = TokenFile(config.bearer_token_file)
        elif config.username:
            session.auth = (config.username, config.password or "")
        session.hooks["response"].append(_refuse_partial)
        self._session = session
        # A long query's POST was refused (403, 405) and its GET not: long
        # queries go as GETs first (_ask).
        self._post_refused = False
        # Trimmed as Prometheus trims its bearer_token_file: a Secret made
        # --from-file of a file ending in a newline, given as PROMETHEUS_TOKEN,
        # was a header requests refuses, and every query failed.
        token = (config.bearer_token or "").strip()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = PrometheusConnect(
            url=config.url.rstrip("/"),
            headers=headers,
            session=session,
            # Retries are ours (tenacity, async, bounded by the query timeout);
            # the library's own would sleep inside a pool thread.
            retry=Retry(total=0),
        )
        self._pool = ThreadPoolExecutor(
            max_workers=config.max_concurrent_queries, thread_name_prefix="prometheus"
        )
        # The proxy the environment sends our queries through (requests
        # honours HTTP(S)_PROXY and NO_PROXY, as Go clients do: OpenShift's
        # cluster-wide proxy puts them in an operator's pods). Said with
        # each error: a proxy's own 403 or 503 page read as Prometheus's,
        # and on-call was told to grant access or wait for an outage.
        proxy = http_trouble.environ_proxy(config.url)
        self._via = (
            f" (sent through the proxy {proxy} from the environment's HTTP(S)_PROXY; "
            "add Prometheus's host to NO_PROXY to reach it directly)"
            if proxy
            else ""
        )
        if proxy:
            log.info("queries to Prometheus at %s go through the proxy %s", config.url, proxy)
        self._clock = ClockOffset()
        self._told = 0.0  # the offset last logged
        self._probe_due = 0.0  # time.monotonic() of the next probe
        # The probe in flight, or the last one. No asyncio.Lock: one made
        # here is bound to the first event loop that waits on it, and the
        # adapter outlives loops (CLI commands, tests).
        self._probing: asyncio.Future[None] | None = None
        self._probed = False  # a first probe has finished (or failed)
        # VictoriaMetrics (MetricsQL) rather than PromQL: found by check();
        # None while a check has not answered (provider.dialect_unknown).
        self.metricsql: bool | None = False

    @property
    def clock_offset(self) -> float:
        return self._clock.offset

    def close(self) -> None:
        probing = self._probing
        if probing is not None and not probing.done() and not probing.get_loop().is_closed():
            probing.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    async def check(self, timeout_s: float = 5.0) -> None:
        """Raise QueryError with a clear reason when Prometheus cannot answer.
        Its clock is probed too, so an offset is shown (and logged) from the
        start, not from the first rollout's first query. Until it answers,
        the dialect is not known: the controller runs meanwhile (not ready),
        and its checks are errors (checks.Checks), not judged in PromQL's
        dialect on a VictoriaMetrics that was only busy (found by review)."""
        self.metricsql = None
        await self.query("vector(1)", at=None, timeout_s=timeout_s)
        await self._offset(timeout_s)
        self.metricsql = await self._speaks_metricsql(timeout_s)

    async def _speaks_metricsql(self, timeout_s: float) -> bool:
        """Whether the backend is VictoriaMetrics: it knows MetricsQL's
        increase_prometheus(), which Prometheus, Thanos, Cortex and Mimir
        reject as an unknown function (see analysis.templates). A selector
        that matches nothing: the answer costs nothing to compute. Only a
        rejection (400, 422) says PromQL: any other failure (a 503, a
        timeout) fails the check, to be asked again. Taken for a rejection,
        a VictoriaMetrics busy at the controller's start was read as
        Prometheus for the process's life, and its builtins counted one bad
        scrape twice."""
        try:
            await self.query(f"{METRICSQL_INCREASE}(canary_dialect_probe[1m])", None, timeout_s)
        except QueryError as exc:
            if exc.rejected:
                return False
            raise
        log.info("%s speaks MetricsQL (VictoriaMetrics)", self.config.url)
        return True

    async def query(self, promql: str, at: float | None, timeout_s: float) -> float | None:
        # Without a time Prometheus evaluates at its own now: nothing to shift.
        params = instant_params(at, await self._offset(timeout_s)) if at is not None else {}
        return _single_value(await self._call(self._send, promql, params, timeout_s))

    async def query_range(
        self, promql: str, start: float, end: float, step_s: float, timeout_s: float
    ) -> list[float]:
        series = await self.query_range_series(promql, start, end, step_s, timeout_s)
        if len(series) > 1:
            raise QueryError(
                f"query returned {len(series)} series; wrap it in sum() or another aggregation",
                invalid=True,
            )
        return series[0] if series else []

    async def query_range_series(
        self, promql: str, start: float, end: float, step_s: float, timeout_s: float
    ) -> list[list[float]]:
        params = range_params(start, end, step_s, await self._offset(timeout_s))
        result = await self._call(self._send_range, promql, params, timeout_s)
        if any(isinstance(s, dict) and "histograms" in s for s in result or []):
            raise QueryError(_NATIVE_HISTOGRAM, invalid=True)
        try:
            return [[float(value) for _, value in series["values"]] for series in result or []]
        except (KeyError, TypeError, ValueError) as exc:
            raise QueryError(f"unexpected result shape: {str(result)[:200]}") from exc

    async def _offset(self, timeout_s: float) -> float:
        """The clock offset, re-probed when a minute has passed since the
        last probe. Only the first probe is waited for (queries that fall
        due together wait for that one, not one each), so that no query is
        sent unshifted once it is known; later ones run beside the queries,
        which use the estimate they have: waited for, a slow Prometheus's
        probe (up to 2 s) delayed every check due meanwhile, each counted
        late against judging.answered_late's two scrapes. A probe that
        fails or is slow keeps the last estimate: no query fails for it."""
        loop = asyncio.get_running_loop()
        if time.monotonic() >= self._probe_due:
            self._probe_due = time.monotonic() + REPROBE_S
            self._probing = loop.create_task(
                self._probe(min(timeout_s, PROBE_TIMEOUT_S)), name="prometheus-clock-probe"
            )
        probing = self._probing
        if not self._probed and probing is not None and probing.get_loop() is loop:
            # shield: a query cancelled (its check timed out) leaves the
            # probe to the others waiting on it.
            await asyncio.shield(probing)
        return self._clock.offset

    async def _probe(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            probe = await asyncio.wait_for(
                loop.run_in_executor(self._pool, self._send_probe, timeout_s), timeout_s
            )
        except (TimeoutError, QueryError, _Transient) as exc:
            log.debug("clock probe of %s failed: %s", self.config.url, exc)
            return
        except Exception:  # a bug here must not fail the query that waits on it
            log.exception("clock probe of %s crashed", self.config.url)
            return
        finally:
            self._probed = True
        before, self._clock = self._clock.offset, self._clock.with_probe(probe)
        offset = self._clock.offset
        if worth_telling(self._told, offset):
            self._told = offset
            log.warning(
                "Prometheus at %s reads %+.3fs from this host's clock (was %+.3fs; "
                "round trip %.3fs): queries are shifted to its clock; fix NTP on the host "
                "that is off",
                self.config.url,
                offset,
                before,
                probe.round_trip,
            )

    def _send_probe(self, timeout_s: float) -> ClockProbe:
        """Prometheus's time() at its own now (no time parameter), between
        two readings of ours: taken here, in the pool thread, so the wait
        for a free thread is no part of the round trip."""
        sent = time.time()
        result = self._translate(
            lambda: self._client.custom_query(
                "time()",
                params={**EVERY_QUERY, "timeout": f"{timeout_s:g}s"},
                timeout=math.ceil(timeout_s),
            )
        )
        received = time.time()
        remote = _single_value(result)
        if remote is None:
            raise QueryError(f"time() returned nothing: {str(result)[:200]}")
        return ClockProbe(sent, received, remote)

    async def _call(
        self,
        send: Callable[[str, dict[str, str], float], Any],
        promql: str,
        params: dict[str, str],
        timeout_s: float,
    ) -> Any:
        loop = asyncio.get_running_loop()
        backoff = wait_exponential(multiplier=0.1, max=1.0)

        def wait(state: RetryCallState) -> float:
            # A Retry-After (a query frontend's 429, a 503) is waited for:
            # before, the backoff's 0.1 s and 0.2 s spent every try while
            # the frontend still refused, and the check was an error with
            # seconds of its timeout left.
            return max(backoff(state), _asked_to_wait(state) or 0.0)

        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, _Transient)),
            stop=stop_after_attempt(self.config.attempts)
            | stop_after_delay(timeout_s)
            | _AskedPast(timeout_s),
            wait=wait,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await asyncio.wait_for(
                        loop.run_in_executor(self._pool, send, promql, params, timeout_s),
                        timeout_s + 1,
                    )
        except _Transient as exc:
            raise QueryError(
                f"Prometheus at {self.config.url} unavailable: {exc}{self._via}"
            ) from exc
        except TimeoutError as exc:
            raise QueryError(f"query timed out after {timeout_s:g}s{self._via}") from exc
        except QueryError as exc:
            if exc.rejected or not self._via:
                raise
            # A refusal, a login page, a 404: maybe the proxy's own answer.
            raise QueryError(f"{exc}{self._via}") from exc
        raise QueryError("no attempt was made")  # unreachable: tenacity runs at least once

    def _send(self, promql: str, params: dict[str, str], timeout_s: float) -> Any:
        return self._translate(
            lambda: self._ask(
                "query",
                {"query": promql, **params, **EVERY_QUERY, "timeout": f"{timeout_s:g}s"},
                timeout_s,
            )
        )

    def _send_range(self, promql: str, params: dict[str, str], timeout_s: float) -> Any:
        # range_params gives start and end whole seconds, as the library
        # sent them, the start rounded up (never reaching back).
        return self._translate(
            lambda: self._ask(
                "query_range",
                {"query": promql, **params, **EVERY_QUERY, "timeout": f"{timeout_s:g}s"},
                timeout_s,
            )
        )

    def _ask(self, path: str, params: dict[str, str], timeout_s: float) -> Any:
        """One query to /api/v1/<path>: a GET, as the library sends it, unless
        its URL would be longer than a proxy in front of Prometheus takes (or
        a GET was answered 414): then a POST with the parameters in a form
        body, which Prometheus, Thanos, Mimir and VictoriaMetrics all read.
        The library's method="POST" still puts them in the URL. Per-pod
        checks of a canary past some 300 pods name each pod: an nginx
        answered 414 to every one, and the window's pass stood over pods
        whose scrapes failed. Not a POST always: a kube-rbac-proxy
        authorizes it as the verb `create`, which a role granting the
        queries' `get` refuses."""
        url = f"{self._client.url}/api/v1/{path}"
        timeout = math.ceil(timeout_s)
        headers = self._client.headers
        response: requests.Response | None = None
        short = len(url) + 1 + len(urllib.parse.urlencode(params)) <= LONGEST_GET
        if short or self._post_refused:
            response = self._session.get(url, params=params, headers=headers, timeout=timeout)
        if response is None or response.status_code == 414:
            # Not redirected: requests would send a 301 or 302 on as a GET
            # without the body, and Prometheus's "no expression found"
            # would read as the spec's fault.
            response = self._session.post(
                url, data=params, headers=headers, timeout=timeout, allow_redirects=False
            )
            if response.is_redirect:
                where = response.headers.get("Location", "")
                raise QueryError(
                    f"Prometheus at {self.config.url} redirects a query sent as a form body "
                    f"(too long for a URL) to {where}: set --prometheus-url to where it "
                    "redirects"
                )
            if response.status_code in (403, 405) and not short and not self._post_refused:
                # The POST refused where a GET is not (a kube-rbac-proxy's
                # `create`, a gateway allowing GET only), and no GET tried:
                # sent as one, which a Go server in front (1 MiB of request
                # line) takes. Long queries go as GETs first from then on
                # (a 414 still sends the POST). Before, each was a 403: with
                # a vouching query unanswered an error, the per-pod checks of
                # a canary past some 300 pods halted a healthy rollout.
                self._post_refused = True
                response = self._session.get(url, params=params, headers=headers, timeout=timeout)
        if response.status_code != 200:
            # As the library words it: _translate reads its errors so.
            text = f"HTTP Status Code {response.status_code} ({response.content!r})"
            if http_trouble.lost_on_redirect(response):
                # (Not any history: a 401 sent again with the token file
                # read again (bearer_file.TokenFile) keeps the first answer there too,
                # and a refusal of the new token was told as a redirect.)
                # Followed a redirect, and refused where it led: requests
                # sends no Authorization to another host, port or scheme,
                # and a rule that drops the query string leaves a bare GET.
                # Read as they were, a 401 named credentials never sent and
                # a 400 was the spec's fault (a halt to fix a fine query).
                where = response.url.split("?")[0]
                raise QueryError(
                    f"Prometheus at {self.config.url} redirects to {where}, which answered "
                    f"{http_trouble.reason(text)}: a redirect sends no credentials to another "
                    "host, port or scheme, and may drop the query; set --prometheus-url to "
                    "where it redirects"
                )
            after = http_trouble.retry_after(response)
            if response.status_code in (429, 503) and after is not None:
                raise _Transient(f"{http_trouble.reason(text)} (Retry-After: {after:g}s)", after)
            raise PrometheusApiClientException(text)
        try:
            data = response.json()["data"]
            result = data["result"]
        except (ValueError, KeyError, TypeError) as exc:
            # A login page (an OAuth proxy without credentials), a UI, another
            # JSON API at the URL. Before: "unavailable: JSONDecodeError",
            # or a KeyError that crashed the whole analysis.
            kind = response.headers.get("Content-Type") or "no Content-Type"
            body = http_trouble.body_text(response.content)
            raise QueryError(
                f"Prometheus at {self.config.url} answered {response.status_code} with "
                f"{kind}, not a query's answer: {body or 'an empty body'}; "
                "is --prometheus-url the Prometheus API (not a login page, a UI or a proxy's)?"
            ) from exc
        if isinstance(data, dict) and data.get("resultType") == "string":
            raise QueryError(_STRING_RESULT, invalid=True)
        return result

    def _translate(self, call: Callable[[], Any]) -> Any:
        """Run a blocking library call (in a pool thread) and translate its
        errors: transport trouble and 5xx are worth a retry; a 400 means the
        query itself is wrong; a 401 or 403 is our credentials refused; a
        404, a URL with no query API."""
        try:
            return call()
        except TokenUnreadable as exc:
            raise QueryError(str(exc)) from exc
        except _Partial as exc:
            raise QueryError(f"Prometheus answered without part of the data: {exc}") from exc
        except requests.exceptions.InvalidHeader as exc:
            # Its own words quote the header's value: the token, which would
            # then be in every Event, status and log line.
            raise QueryError(
                f"the credentials for Prometheus at {self.config.url} cannot be sent as a "
                f"header: {http_trouble.credentials(self.config)} holds a newline or another "
                "character a header cannot"
            ) from exc
        except requests.RequestException as exc:
            raise _Transient(http_trouble.transport(exc)) from exc
        except PrometheusApiClientException as exc:
            text = str(exc)
            if "HTTP Status Code 400" in text or "HTTP Status Code 422" in text:
                raise QueryError(
                    f"Prometheus rejected the query: {http_trouble.reason(text)}",
                    invalid="bad_data" in text,
                    rejected=True,
                ) from exc
            if "HTTP Status Code 401" in text or "HTTP Status Code 403" in text:
                raise QueryError(http_trouble.refused(self.config, text)) from exc
            if "HTTP Status Code 404" in text:
                # No query API there (a --web.route-prefix or an ingress path
                # left out of the URL, or /api/v1 put in it): no retry finds
                # one. Reported as "unavailable" before, an outage that no
                # restart of Prometheus ends.
                raise QueryError(
                    f"Prometheus at {self.config.url} has no /api/v1/query "
                    f"({http_trouble.reason(text)}): "
                    "set --prometheus-url (PROMETHEUS_URL) to its base, with the path prefix "
                    "it is served under (e.g. --web.route-prefix=/prometheus: .../prometheus), "
                    "without /api/v1"
                ) from exc
            raise _Transient(http_trouble.reason(text)) from exc


def instant_params(at: float, offset: float) -> dict[str, str]:
    """An instant query's time, in Prometheus's clock (milliseconds)."""
    return {"time": f"{at + offset:.3f}"}


def range_params(start: float, end: float, step_s: float, offset: float) -> dict[str, str]:
    """A range query's bounds in Prometheus's clock, in whole seconds as the
    library sends them: the start rounded up (a shifted start that was whole
    is no longer, and rounded down it would reach before the window, into
    the step before), the end to the nearest, and never before the start
    (Prometheus would reject the query as one to fix)."""
    first = math.ceil(round(start + offset, 3))
    last = max(round(end + offset), first)
    # As a PromQL duration in whole units (promql_duration: "5s", "2500ms"):
    # Prometheus refuses a fraction there ("2.5s": cannot parse), and a
    # judge sampling every 2.5 s was halted as an invalid spec (found by
    # review).
    return {"start": f"{first:d}", "end": f"{last:d}", "step": promql_duration(step_s)}


# A native histogram's samples come as "histogram" ("histograms" in a range),
# not "value": the query's fault, as a range vector is, never answered
# otherwise however long error-limit waits (read as an unexpected shape, it
# was Prometheus trouble: on-limit: rollback rolled a good release back).
_NATIVE_HISTOGRAM = (
    "query returned a native histogram; reduce it to one number "
    "(histogram_quantile(), histogram_count(), histogram_sum(), histogram_fraction())"
)


# A string literal's answer ([time, "<text>"]) is shaped as a scalar's, and
# the library drops the resultType that tells them apart: read as one, a
# query quoted once too often in its YAML (`query: '"..."'`) passed on the
# number its text spelled ("0" under `max: 1`), and any other text was an
# "unexpected result shape", an outage to wait out (on-limit: rollback
# rolled a good release back).
_STRING_RESULT = (
    "query returned a string, not a number: is it quoted once too often in the YAML "
    "(a PromQL string literal)?"
)


def _single_value(result: Any) -> float | None:
    if not result:
        return None
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        result = [{"value": result}]  # resultType scalar: [time, "value"]
    if len(result) > 1:
        # The query's own fault, as a rejected one is: not Prometheus trouble
        # to wait out (error-limit), but a spec to fix.
        raise QueryError(
            f"query returned {len(result)} series; wrap it in sum() or another aggregation",
            invalid=True,
        )
    if isinstance(result[0], dict) and "histogram" in result[0] and "value" not in result[0]:
        raise QueryError(_NATIVE_HISTOGRAM, invalid=True)
    if isinstance(result[0], dict) and "values" in result[0] and "value" not in result[0]:
        # resultType matrix: a range or a subquery where one value is due.
        # The query's fault too, never answered otherwise however long
        # error-limit waits (on-limit: rollback rolled a good release back).
        raise QueryError(
            "query returned a range vector; end it with an instant expression "
            "(e.g. rate(...[{{ window }}]) inside sum(), not a range or a subquery)",
            invalid=True,
        )
    try:
        value = float(result[0]["value"][1])
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise QueryError(f"unexpected result shape: {str(result)[:200]}") from exc
    return value if not math.isnan(value) else None
