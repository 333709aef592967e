"""What a team asks the analysis to check, parsed from YAML.

metrics:
  - name: success-rate        # builtin: percent of non-5xx requests
    min: 99
  - name: latency-p99-ms      # builtin: any latency-p<NN>-ms percentile
    max: 400
  - name: error-ratio-vs-stable   # a share: errors a second would scale with the weight
    query: >-
      (sum(rate(errors_total{pod=~"{{ pods }}"}[{{ window }}])) or vector(0))
      / sum(rate(requests_total{pod=~"{{ pods }}"}[{{ window }}]))
    relative: {max-ratio: 1.5, max-delta: 0.01}
min-requests: 20
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from analysis.durations import parse_duration

BUILTIN_LATENCY = re.compile(r"^latency-p(\d{1,2}(?:\.\d+)?)-ms$")
BUILTINS = ("success-rate", "error-rate", "latency-p<NN>-ms")


def _not_a_switch(what: str, fix: str) -> BeforeValidator:
    """YAML 1.1 reads an unquoted off/no/false as False and on/yes/true as
    True, which a lax number takes as 0 and 1: `max-restarts: off`, meant to
    turn the check off, was its strictest setting (a node reboot rolled a
    good release back); `no-data-limit: off` halted at the first empty
    check, `max: off` failed error-rate at the first error. Refused on every
    number of the analysis, saying what it takes (`what`) and how to get what
    a switch word seems to mean (`fix`); the error's location names the field."""

    def refuse(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(
                f"{what}, not {str(value).lower()} (YAML reads off/on, no/yes as a boolean); {fix}"
            )
        return value

    return BeforeValidator(refuse)


def _duration(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str) else value


_NOT_A_DURATION = _not_a_switch("a duration such as 30s", "leave it out for its default")
Seconds = Annotated[float, _NOT_A_DURATION, BeforeValidator(_duration), Field(ge=0)]
# no-data-limit, error-limit: `off` meant "never act on it", and was "act at once".
_NOT_A_LIMIT = _not_a_switch(
    "a whole number of checks in a row", "to turn the limit off, set a large number (1000)"
)


class Direction(StrEnum):
    """Which way a metric gets worse, for relative and statistical judges."""

    HIGHER_IS_WORSE = "higher-is-worse"
    LOWER_IS_WORSE = "lower-is-worse"


class OnLimit(StrEnum):
    HALT = "halt"
    ROLLBACK = "rollback"


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        alias_generator=lambda f: f.replace("_", "-"),
    )


class Relative(_Model):
    """Canary against the stable twin over the same window."""

    max_ratio: Annotated[
        float | None, _not_a_switch("a number above 0", "for no bound on the ratio, leave it out")
    ] = Field(default=None, gt=0)
    max_delta: Annotated[
        float | None, _not_a_switch("a number", "for no bound on the difference, leave it out")
    ] = Field(default=None, ge=0)


class Judge(_Model):
    """Mann-Whitney U over per-interval samples of canary against stable."""

    confidence: Annotated[
        float, _not_a_switch("a fraction between 0.5 and 1", "leave it out for 0.98")
    ] = Field(default=0.98, gt=0.5, lt=1)
    # A worse median and mean by at most this fraction of the stable's are
    # tolerated even when significant (Kayenta's effect-size tolerance).
    effect_size: Annotated[
        float,
        _not_a_switch(
            "a fraction of the stable's median and mean", "to fail on any worse one, set 0"
        ),
    ] = Field(default=0.1, ge=0)
    sample_every: Seconds = Field(default=5.0, gt=0)


# Anything between double braces in a query is a variable: a typo
# (`{{ Pods }}`, `{{ .pods }}`) left in the query as text matches no series,
# and with the usual `or vector(0)` a failing canary read 0 errors.
VARIABLE_PATTERN = re.compile(r"{{(.*?)}}", re.DOTALL)  # a YAML block may fold one
VARIABLES = ("namespace", "service", "pods", "twin", "window", "interval")
# {{ pods }} matched as a plain string (`=`, `!=`) rather than a regex:
# it renders a regex, so `pod="{{ pods }}"` names no pod at all.
PODS_AS_STRING = re.compile(r"""(?<![=!~<>])!?=\s*["'`]\{\{\s*pods\s*\}\}""")


class MetricSpec(_Model):
    name: str = Field(min_length=1, max_length=63)
    query: str | None = None
    # Finite only: every comparison with NaN is false, so `min: nan` (a
    # templating tool's empty value) never failed and promoted anything.
    min: Annotated[float | None, _not_a_switch("a number", "for no lower bound, leave it out")] = (
        Field(default=None, allow_inf_nan=False)
    )
    max: Annotated[float | None, _not_a_switch("a number", "for no upper bound, leave it out")] = (
        Field(default=None, allow_inf_nan=False)
    )
    direction: Direction | None = None
    relative: Relative | None = None
    judge: Judge | None = None
    # Checked between scheduled checks, every scrape, for a lasting failure.
    # Default: builtins yes, custom queries no (their cost is unknown to us).
    fast: bool | None = None

    @model_validator(mode="after")
    def _complete(self) -> MetricSpec:
        if self.query is None and not self.builtin:
            raise ValueError(
                f"metric {self.name!r} has no query and is not a builtin "
                f"({', '.join(BUILTINS)}); add `query:` with PromQL"
            )
        for name in VARIABLE_PATTERN.findall(self.query or ""):
            if name.strip() not in VARIABLES:
                raise ValueError(
                    f"metric {self.name!r}: unknown variable {{{{{name}}}}} in its query; "
                    f"known: {', '.join('{{ ' + v + ' }}' for v in VARIABLES)}"
                )
        if PODS_AS_STRING.search(self.query or ""):
            # It matched no series: an error count with `or vector(0)` read 0
            # however the canary failed, and passed.
            raise ValueError(
                f"metric {self.name!r}: {{{{ pods }}}} is a regex of the twin's pods, but its "
                'query matches it as a plain string; write pod=~"{{ pods }}"'
            )
        named = {name.strip() for name in VARIABLE_PATTERN.findall(self.query or "")}
        if (
            self.query is not None
            and (self.relative is not None or self.judge is not None)
            and not named & {"pods", "twin"}
        ):
            # Rendered for each twin, a query naming neither is the same text
            # for both: the canary compared with itself passes whatever it does.
            raise ValueError(
                f"metric {self.name!r} compares the canary with the stable twin, but its query "
                "names neither {{ pods }} nor {{ twin }}, so both read the same series; "
                'select the twin\'s pods, e.g. pod=~"{{ pods }}"'
            )
        if self.min is None and self.max is None and self.relative is None and self.judge is None:
            raise ValueError(
                f"metric {self.name!r} has nothing to check; set min, max, relative or judge"
            )
        if self.name == "success-rate" and self.min is not None and 0 < self.min <= 1:
            # A fraction meant as a percentage (0.99 for 99 %, as Flagger's
            # and many dashboards' ratios are written): taken as 0.99 %, a
            # canary failing 98 % of its requests passed and was promoted.
            raise ValueError(
                f"metric 'success-rate' has min {self.min:g}, but it is a percentage "
                f"(0-100): for {self.min * 100:g} %, write min: {self.min * 100:g}"
            )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"metric {self.name!r} has min {self.min} above max {self.max}")
        return self

    @property
    def checked_fast(self) -> bool:
        has_threshold = self.min is not None or self.max is not None or self.relative is not None
        return has_threshold and (self.fast if self.fast is not None else self.builtin)

    @property
    def builtin(self) -> bool:
        return self.name in ("success-rate", "error-rate") or bool(BUILTIN_LATENCY.match(self.name))

    @property
    def worse_when(self) -> Direction:
        """Explicit direction, else the builtin's own, else inferred: a lower
        bound means lower is worse. A builtin's is known: inferred from a
        floor on a latency (`min: 1`, a canary answering too fast serves
        cached errors), the judge asked whether the canary was faster, and
        one three times slower passed (found by review)."""
        if self.direction is not None:
            return self.direction
        if self.name == "success-rate":
            return Direction.LOWER_IS_WORSE
        if self.builtin:
            return Direction.HIGHER_IS_WORSE  # error-rate, latency-pNN-ms
        if self.min is not None and self.max is None:
            return Direction.LOWER_IS_WORSE
        return Direction.HIGHER_IS_WORSE


class GateKind(StrEnum):
    PRE_ROLLOUT = "pre-rollout"  # before the canary gets any traffic
    PRE_STEP = "pre-step"  # before each traffic increase
    PRE_PROMOTION = "pre-promotion"  # before the Service flips to the new twin
    POST_ROLLOUT = "post-rollout"  # after a promotion: told, cannot block
    ROLLBACK = "rollback"  # after a rollback: told, cannot block


class GateSpec(_Model):
    """A webhook asked before (or told after) a transition. 2xx opens it;
    anything else, or no answer in time after the retries, keeps it closed."""

    name: str = Field(min_length=1, max_length=63)
    # Not "on": YAML 1.1 reads an unquoted on as the boolean true.
    when: GateKind
    url: str = Field(pattern=r"^https?://")
    timeout: Seconds = Field(default=5.0, gt=0, le=60)
    retries: Annotated[int, _not_a_switch("a whole number of retries", "for none, set 0")] = Field(
        default=2, ge=0, le=10
    )


class RequestLabels(_Model):
    """Label names of the request metrics, so builtins fit common exporters."""

    namespace: str = "namespace"
    pod: str = "pod"
    code: str = "code"


class AnalysisSpec(_Model):
    # At least one: an analysis that checks nothing would pass without data.
    metrics: tuple[MetricSpec, ...] = Field(
        default=(MetricSpec(name="success-rate", min=99.0),), min_length=1
    )
    request_metric: str = "http_requests_total"
    latency_metric: str = "http_request_duration_seconds"
    labels: RequestLabels = RequestLabels()
    # Below this many canary requests in the window, no metric counts: the
    # step waits instead of judging noise.
    min_requests: Annotated[
        int, _not_a_switch("a whole number of requests", "to judge whatever the traffic, set 0")
    ] = Field(default=20, ge=0)
    # Container restarts tolerated per container of each pod of the new
    # version during a rollout; one more rolls it back at once. Per
    # container: a node reboot restarts every container on it once, a crash
    # loop one container again and again.
    # A restart is a fact, not a noisy measurement: no failure-limit.
    max_restarts: Annotated[
        int,
        _not_a_switch(
            "a whole number of restarts", "to turn the check off, set a large number (1000)"
        ),
    ] = Field(default=1, ge=0)
    # How often Prometheus scrapes the request metrics: a step is judged only
    # once its window holds two scrapes. None: learned from Prometheus.
    # At least 1s: the fast looks are timed by it (0 divided by zero; a few
    # ms was a look due at once, again and again) and the learner samples
    # every second. At most a day, as `interval`: a step waits two of them.
    scrape_interval: Seconds | None = Field(default=None, ge=1, le=86400)
    no_data_limit: Annotated[int, _NOT_A_LIMIT] = Field(default=3, ge=0)
    error_limit: Annotated[int, _NOT_A_LIMIT] = Field(default=3, ge=0)
    on_limit: OnLimit = OnLimit.HALT
    # Above 0: the HTTP client refuses a timeout of 0 with a ValueError, so
    # every check was an error (a healthy release halted or rolled back).
    # At most 5 minutes: beyond Prometheus's own limit (2m by default), and
    # a huge one went out as `timeout=1e+308s`, rejected at every query.
    query_timeout: Seconds = Field(default=10.0, gt=0, le=300)
    gates: tuple[GateSpec, ...] = ()

    @property
    def fast_metrics(self) -> tuple[MetricSpec, ...]:
        return tuple(m for m in self.metrics if m.checked_fast)

    def gates_on(self, kind: GateKind) -> tuple[GateSpec, ...]:
        return tuple(g for g in self.gates if g.when is kind)

    @model_validator(mode="after")
    def _unique_names(self) -> AnalysisSpec:
        names = [m.name for m in self.metrics]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"metric names must be unique; repeated: {', '.join(duplicates)}")
        return self
