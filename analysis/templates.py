"""PromQL for each metric, rendered for one twin over one window.

Variables a custom query may use: {{ namespace }}, {{ service }}, {{ pods }}
(a regex matching exactly one twin's pods), {{ twin }}, {{ window }} (from
the step start to now, as a PromQL range) and {{ interval }}.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from analysis.durations import promql_duration
from analysis.spec import BUILTIN_LATENCY, VARIABLE_PATTERN, VARIABLES, AnalysisSpec, MetricSpec


class TemplateError(ValueError):
    """A query template names a variable we do not have."""


@dataclass(frozen=True, slots=True)
class Target:
    """The pods one query is about."""

    namespace: str
    service: str
    twin: str
    pods: str  # regex


def render(template: str, values: Mapping[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        if name not in values:
            raise TemplateError(f"unknown variable {{{{ {name} }}}}; known: {', '.join(VARIABLES)}")
        return values[name]

    return VARIABLE_PATTERN.sub(substitute, template)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def variables(target: Target, window_s: float, interval_s: float) -> dict[str, str]:
    return {
        "namespace": _escape(target.namespace),
        "service": _escape(target.service),
        "pods": _escape(target.pods),
        "twin": _escape(target.twin),
        "window": promql_duration(window_s),
        "interval": promql_duration(interval_s),
    }


def request_selector(spec: AnalysisSpec, values: Mapping[str, str], extra: str = "") -> str:
    labels = spec.labels
    selector = f'{labels.namespace}="{values["namespace"]}",{labels.pod}=~"{values["pods"]}"'
    return "{" + selector + (f",{extra}" if extra else "") + "}"


# VictoriaMetrics' increase() and rate() also read the last sample before
# the window (MetricsQL's documented difference from PromQL), so a window
# reads one scrape more than it says: a fast look's two scrapes read the
# scrape before the newest too, and the look that confirms a failing
# scrape reads that scrape again, so one bad scrape counted as two (with
# failure-limit 0, a blip rolled a good release back). Its
# increase_prometheus() reads the window's own samples, as Prometheus
# does; a ratio of increases is the ratio of rates.
METRICSQL_INCREASE = "increase_prometheus"


@dataclass(frozen=True, slots=True)
class Fresh:
    """The target's pods that served nothing before the step began, and how
    far before the window a sample of one of their series shows it is not
    new (PromQL ranges)."""

    pods: str  # regex, escaped for a PromQL string (variables()["pods"])
    seen: str  # from the step's start to the window's

    @classmethod
    def of(cls, names: Sequence[str], seen_s: float) -> Fresh:
        return cls(_escape(names_regex(names)), promql_duration(seen_s))


def counted(
    fn: str,
    spec: AnalysisSpec,
    metric: str,
    values: Mapping[str, str],
    extra: str = "",
    fresh: Fresh | None = None,
) -> str:
    """`fn` (increase or rate) of each series of `metric` in the window, but
    with `fresh` pods a series first sampled in the window counts whole (its
    newest value), rate or not: its first sample holds what the pod served
    before its first scrape, all of it since the step began, and increase()
    and rate() start from that sample (unless the counter reset in the
    window: then increase(), see below). A canary started with a short step
    and first scraped a second into it had served 11 requests, 5 of them
    errors, by then; the check read the 5 after, none failing, and promoted
    it (chaos seed 40). A series sampled before the window (anywhere since
    the step began: a scrape that failed just before it leaves a staleness
    marker, not a gap) is one an earlier check counted up to then."""
    window = values["window"]
    selected = metric + request_selector(spec, values, extra)
    series = f"{fn}({selected}[{window}])"
    if fresh is None:
        return series
    mine = metric + request_selector(spec, {**values, "pods": fresh.pods}, extra)
    # The fresh pods named once: the query is recorded with each check, and
    # a step of many new pods had its records 2.5 times as long (the status
    # carries fewer checks, the ConfigMap is written more often). `unless`
    # drops only the series on its left, which are the fresh pods' anyway;
    # `or` keeps every series on its left, and those on its right that are
    # not there (labels matched without the name).
    before = f"count_over_time({selected}[{fresh.seen}] offset {window})"
    # A series whose counter went back in the window (the pod's container
    # restarted: a crash, an OOM kill, back within two scrapes so the
    # window went on) holds in its newest value only what came after the
    # restart; read whole, everything it served before, its errors too, was
    # left out, and a bad release that crashed once passed on the requests
    # it served since (found by review). increase() counts across a reset,
    # and leaves out only the first sample: less than the restart took.
    reset = f"resets({selected}[{window}]) > 0"
    return f"((last_over_time({mine}[{window}]) unless ({before} or {reset})) or {series})"


def requests_query(
    spec: AnalysisSpec,
    values: Mapping[str, str],
    totals: bool = False,
    metricsql: bool = False,
    fresh: Fresh | None = None,
) -> str:
    """How many requests the target served in the window (the no-data guard).
    `totals`: the counters' newest values in the window, i.e. everything the
    pods served since they started (only for pods that served nothing before
    the window; see analysis.run.StepContext.totals). `metricsql`: the
    backend is VictoriaMetrics (METRICSQL_INCREASE). `fresh`: see counted."""
    fn = "last_over_time" if totals else METRICSQL_INCREASE if metricsql else "increase"
    return f"sum({counted(fn, spec, spec.request_metric, values, fresh=fresh)})"


def guarded(query: str, requests: str, min_requests: int) -> str:
    """`query`'s answer only where the same evaluation counts at least
    `min_requests` (`requests`: requests_query over the same window): empty
    (no data) otherwise. The request guard is a query of its own, and
    behind one URL it may be answered by another Prometheus than the metric
    (an HA pair through a headless Service or a Service over both pods,
    each new connection to either): one that restarted without its data
    (an emptyDir) holds only the window's last scrapes, and the metric was
    judged on a handful of requests the guard had not counted."""
    return f"({query}) and on () ({requests} >= {min_requests})"


def names_regex(names: Sequence[str]) -> str:
    """Exactly these pods (Kubernetes names: only '.' needs escaping). The
    prefix they share up to a '-' (a ReplicaSet's name: its pods are named
    `<replicaset>-<suffix>`) is written once. The query goes in the URL, and
    an nginx in front of Prometheus (an ingress, a Mimir gateway) answers a
    request line over 8 KiB with 414: each name written whole, the per-pod
    checks of a canary of some 100 pods found no answer at every step, and
    let the window's pass stand (found by review). Past some 300 pods even
    this is too long: the adapter then sends a form body
    (analysis.prometheus.LONGEST_GET)."""

    def escaped(text: str) -> str:
        return re.sub(r"[^a-z0-9-]", lambda m: "\\" + m.group(0), text)

    # The prefix all share is the one the first and last in order share.
    first, last = (min(names), max(names)) if len(names) > 1 else ("", "")
    shared = next(
        (first[:i] for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), first
    )
    prefix = shared[: shared.rfind("-") + 1]
    if not prefix:
        return "|".join(escaped(n) for n in names)
    return f"{escaped(prefix)}({'|'.join(escaped(n[len(prefix) :]) for n in names)})"


def unseen_pods_query(
    spec: AnalysisSpec,
    values: Mapping[str, str],
    newest: str,
    shift: str = "",
    canary: Mapping[str, str] | None = None,
) -> str:
    """How many of the pods `values["pods"]` names have a request sample in
    the window but none in its `newest` part, that part ending `shift` before
    the window's end (empty: none); with `canary` (all its pods), and no
    scrape there either (scraped_pods). A pod whose
    scrape fails (too busy to answer it, its metrics handler hung) has its
    series marked stale, so an instant query no longer sees them at all;
    over a range its samples from before still count, and the rest of the
    canary speaks for it. `count_over_time` counts the samples there are,
    whatever their values: a lazy series once created is in every scrape."""
    pod = spec.labels.pod
    metric = spec.request_metric + request_selector(spec, values)

    def seen(window: str, offset: str = "") -> str:
        shifted = f" offset {offset}" if offset else ""
        return f"count by ({pod}) (count_over_time({metric}[{window}]{shifted}))"

    current = seen(newest, shift)
    if canary is not None:
        current = f"({current} or {scraped_pods(spec, values, canary, newest, shift)})"
    return f"count({seen(values['window'])} unless {current})"


def scraped_pods(
    spec: AnalysisSpec,
    values: Mapping[str, str],
    canary: Mapping[str, str],
    window: str,
    shift: str = "",
) -> str:
    """The pods `values["pods"]` names that Prometheus scraped in `window`
    (ending `shift` before the query's time): `up == 1` there, by a job that
    scrapes the request metric of the `canary`'s pods. An app that creates
    its request series at its first request has none on a pod no request
    reached (its clients' few long-lived connections all went to other
    pods; or none came since a restart took its counters): that pod is
    scraped, and served nothing. Only by such a target: a sidecar's own one
    (a mesh proxy's, a JMX exporter's) up while the app's port is not
    scraped is no sign of the app's requests. Told apart by its job, and by
    the `container` and `endpoint` (port) labels the Prometheus Operator
    gives each target: one ServiceMonitor that scrapes two ports of the
    Service makes both targets one job. Where a setup has no such labels,
    they match as empty on both sides: by job alone. Those targets are the
    ones whose request series are current (an instant selector: one sample
    each, where a range over the step loaded all of them again, a second
    time in the query, and a long step of many pods at a short scrape
    nears Prometheus's query.max-samples)."""
    shifted = f" offset {shift}" if shift else ""
    up = f"max_over_time(up{request_selector(spec, values)}[{window}]{shifted})"
    jobs = f"{spec.request_metric}{request_selector(spec, canary)}"
    target = "job, container, endpoint"
    return (
        f"count by ({spec.labels.pod}) (({up} == 1) and on ({target}) count by ({target}) ({jobs}))"
    )


def seen_pods_query(
    spec: AnalysisSpec, values: Mapping[str, str], canary: Mapping[str, str]
) -> str:
    """How many of the pods `values["pods"]` names have a request sample in
    the window, or were scraped there (scraped_pods; `canary`: all its
    pods) (empty: none)."""
    pod = spec.labels.pod
    metric = spec.request_metric + request_selector(spec, values)
    window = values["window"]
    sampled = f"count by ({pod}) (count_over_time({metric}[{window}]))"
    return f"count({sampled} or {scraped_pods(spec, values, canary, window)})"


def scrape_targets_query(spec: AnalysisSpec, canary: Mapping[str, str]) -> str:
    """How many of the canary's pods have an `up` series of their own in
    the window (empty: none): whether this setup tells a pod's scrapes at
    all (kubernetes_sd, a ServiceMonitor: yes; metrics pushed through an
    OpenTelemetry collector, or labelled by a mesh: no)."""
    up = f"up{request_selector(spec, canary)}"
    return f"count(count by ({spec.labels.pod}) (max_over_time({up}[{canary['window']}])))"


def metric_query(
    spec: AnalysisSpec,
    metric: MetricSpec,
    values: Mapping[str, str],
    totals: bool = False,
    metricsql: bool = False,
    fresh: Fresh | None = None,
) -> str:
    """A metric's query; a builtin's with `fresh` pods counts their series
    first sampled in the window whole (counted), in increases: every builtin
    is a ratio, which a ratio of increases over one window gives as a ratio
    of rates does."""
    if metric.query is not None:
        return render(metric.query, values)
    fn = "last_over_time" if totals else METRICSQL_INCREASE if metricsql else "rate"
    if fresh is not None and not totals and not metricsql:
        fn = "increase"

    def summed(metric_name: str, extra: str = "", by: str = "") -> str:
        return f"sum{by}({counted(fn, spec, metric_name, values, extra, fresh)})"

    if metric.name in ("success-rate", "error-rate"):
        # Only series that carry the status label count: with it named
        # otherwise (`status`), every series matched `code!~"5.."` and none
        # `code=~"5.."`, and a canary failing half its requests read 100 %
        # success. With no such series the result is empty: no data.
        coded = f'{spec.labels.code}!=""'
        match = "!~" if metric.name == "success-rate" else "=~"
        # A real app creates a status code's series only when it first answers
        # with it: a healthy canary has no 5xx series, one that fails every
        # request no 2xx series. Their share is 0 then, not missing data; with
        # no requests at all the total is empty and so is the result.
        part = summed(spec.request_metric, f'{spec.labels.code}{match}"5..",{coded}')
        return f"100 * ({part} or vector(0)) / {summed(spec.request_metric, coded)}"
    latency = BUILTIN_LATENCY.match(metric.name)
    assert latency is not None, "MetricSpec validation admits only known builtins"
    quantile = float(latency.group(1)) / 100
    buckets = summed(f"{spec.latency_metric}_bucket", by=" by (le) ")
    return f"1000 * histogram_quantile({quantile:g}, {buckets})"
