"""The rollout contract: what a team writes in its Service's annotations.

Parsing never raises anything but SpecError, and a SpecError always names the
annotation at fault and what it accepts, because it becomes a Warning Event
that a person has to act on.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from analysis.durations import parse_duration
from analysis.spec import AnalysisSpec

PREFIX = "canary.io/"
STRATEGY = PREFIX + "strategy"
STATUS = PREFIX + "status"


def managed_by_annotations(annotations: Mapping[str, Any]) -> bool:
    """A Service the controller manages: annotated with a strategy, or still
    carrying our status (the strategy removed: being handed back)."""
    return STRATEGY in annotations or STATUS in annotations


# The field manager of every write the controller makes: managedFields then
# tell its writes from anyone else's (a status applied again, a hand scale).
FIELD_MANAGER = "canary-controller"
ACTION = PREFIX + "action"
PAUSED = PREFIX + "paused"
TWIN_LABEL = PREFIX + "twin"
SERVICE_LABEL = PREFIX + "service"
REVISION_ANNOTATION = PREFIX + "revision"
REVISION_LABEL = PREFIX + "revision"  # on a twin's pods: the revision they run
SOURCE_ANNOTATION = PREFIX + "source"  # on a twin: the team's Deployment it copies
TEMPLATE_ANNOTATION = PREFIX + "template-hash"  # on a twin: the pod template we wrote
# On a twin whose template a put-back wrote (TwinRestored): that template's
# digest, restarts included. Written with the template, so the put-back
# rolling is observed even when the status that remembered it is lost.
PUT_BACK_ANNOTATION = PREFIX + "put-back"
# On a stable twin a hand-back (or its HPA copy's removal mid-step) grew to
# what both twins served: that size, written in the scale's own patch
# (act.scale_twin). The status keeps it too (State.handback_served,
# State.left_copy), but is written after the scale: lost in between, or
# cleared by a strategy put back, the grown twin was taken for its HPA's
# share and grown again. Current while the twin is still at that size.
HANDBACK_ANNOTATION = PREFIX + "handback-served"
# On the team's Deployment: the claim (see model.Claim).
MANAGED_BY = PREFIX + "managed-by"
CLAIM_REPLICAS = PREFIX + "replicas"
CLAIM_STABLE = PREFIX + "stable-revision"
# On the team's Deployment's pod template while managed: a scheduling gate.
HOLD_GATE = PREFIX + "held"


class Strategy(StrEnum):
    CANARY = "canary"
    BLUE_GREEN = "blue-green"


def _duration(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str) else value


def _steps(value: Any) -> Any:
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace("%", "").split(",") if p.strip()]
        try:
            return tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a comma-separated list of whole percentages"
            ) from None
    return value


def boolean(value: Any) -> Any:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "yes", "1", "on"):
            return True
        if lowered in ("false", "no", "0", "off", ""):
            return False
        raise ValueError(f"{value!r} is not true or false")
    return value


class _UniqueKeys(yaml.SafeLoader):
    """YAML mappings take each key once; PyYAML kept the last, so a merge
    left with both sides (`min: 99` over `min: 1`, a second `metrics:`)
    silently loosened or replaced the checks. `<<:` merges still override."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            # Compared as written (tag and text), before any construction:
            # it raises nothing of its own.
            seen: set[tuple[str, str]] = set()
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE:
                    continue
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {key_node.value!r} at line "
                        f"{key_node.start_mark.line + 1}; give each key once",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)  # type: ignore[arg-type]


_MERGE = "tag:yaml.org,2002:merge"


def _yaml(value: Any) -> Any:
    if isinstance(value, str):
        try:
            loaded = yaml.load(value, Loader=_UniqueKeys)  # a SafeLoader
        except yaml.YAMLError as exc:
            raise ValueError(f"not valid YAML: {exc}".splitlines()[0]) from None
        except (KeyError, IndexError, AttributeError, TypeError):
            # PyYAML's constructors raise these, not YAMLError, for a value
            # its explicit tag does not fit (`!!bool maybe`, `!!int ''`).
            raise ValueError(
                "not valid YAML: a value does not fit its explicit tag (!!bool, !!int, "
                "!!timestamp, ...); remove the tag or fix the value"
            ) from None
        except RecursionError:
            # PyYAML composes recursively: a few thousand nested brackets
            # (within what an annotation holds) escaped parse() and failed
            # the reconcile at every cycle, with no InvalidSpec.
            raise ValueError(
                "nested too deeply; the analysis is a flat mapping of metrics and settings"
            ) from None
        return {} if loaded is None else loaded
    return value


Seconds = Annotated[float, BeforeValidator(_duration)]


MAX_HISTORY = 100  # revisions a history may keep (canary.io/history-limit)


class RolloutSpec(BaseModel):
    """Fields are named after their annotation, less the `canary.io/` prefix."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=lambda f: f.replace("_", "-"),
        populate_by_name=True,
    )

    strategy: Strategy
    deployment: str = Field(
        min_length=1, max_length=240, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
    )
    steps: Annotated[tuple[int, ...], BeforeValidator(_steps)] = (10, 25, 50)
    interval: Seconds = Field(default=30.0, ge=1, le=86400)
    failure_limit: int = Field(default=1, ge=0, le=100)
    progress_deadline: Seconds = Field(default=600.0, ge=5, le=86400)
    scale_down_delay: Seconds = Field(default=30.0, ge=0, le=86400)
    # A Service name (DNS-1035 label): any text was taken, and the preview's
    # creation was refused (422) at every cycle, naming no annotation.
    preview_service: str = Field(
        default="", max_length=63, pattern=r"^([a-z]([-a-z0-9]*[a-z0-9])?)?$"
    )
    history_limit: int = Field(default=10, ge=1, le=MAX_HISTORY)
    paused: Annotated[bool, BeforeValidator(boolean)] = False
    analysis: Annotated[AnalysisSpec, BeforeValidator(_yaml)] = AnalysisSpec()

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        if not steps:
            raise ValueError("give at least one step, e.g. 10,25,50")
        if any(not 1 <= s <= 99 for s in steps):
            raise ValueError(f"{','.join(map(str, steps))}: each step must be 1-99 percent")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError(f"{','.join(map(str, steps))}: steps must strictly increase")
        return steps


class SpecError(ValueError):
    """An annotation we could not use: which one, and what it accepts."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# What each annotation accepts, for error messages and the README table.
ACCEPTS: dict[str, str] = {
    "strategy": "canary or blue-green",
    "deployment": "the name of a Deployment in the Service's namespace",
    "steps": "comma-separated increasing percentages from 1 to 99, e.g. 10,25,50",
    "interval": "a duration of at least 1s, e.g. 30s or 1m",
    "failure-limit": "a whole number from 0 to 100",
    "progress-deadline": "a duration of at least 5s, e.g. 10m",
    "scale-down-delay": "a duration, e.g. 30s",
    "preview-service": "a Service name: lower-case letters, digits and '-', starting with a "
    "letter (default <service>-preview)",
    "history-limit": "a whole number from 1 to 100",
    "paused": "true or false",
    "analysis": "a YAML document: metrics (name, query, min, max, relative), min-requests, ...",
}


def parse(service_name: str, annotations: Mapping[str, str]) -> RolloutSpec | None:
    """The spec from a Service's annotations; None when it is not managed.

    Raises SpecError naming the annotation at fault."""
    if STRATEGY not in annotations:
        return None
    values: dict[str, Any] = {"deployment": service_name}
    for key, value in annotations.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX) :]
        if name in ("status", "action"):
            continue
        if name not in ACCEPTS:
            known = ", ".join(PREFIX + k for k in sorted(ACCEPTS))
            raise SpecError(key, f"unknown annotation; known ones are {known}")
        values[name] = value
    try:
        spec = RolloutSpec.model_validate(values)
    except ValidationError as exc:
        raise _spec_error(exc) from None
    if not spec.preview_service:
        spec = spec.model_copy(update={"preview_service": default_preview(service_name)})
    return spec


def default_preview(service_name: str) -> str:
    """`<service>-preview`, cut to a Service name's 63 characters. Cut, a
    name of 62 ended in "-" (no Service name) and one of 63 was the Service
    itself: those keep their own name's first 55 characters instead."""
    cut = f"{service_name}-preview"[:63]
    if cut.endswith("-") or cut == service_name:
        return f"{service_name[:55]}-preview"
    return cut


def _spec_error(exc: ValidationError) -> SpecError:
    error = exc.errors()[0]
    loc = [str(part) for part in error.get("loc", ())]
    top = loc[0] if loc else "strategy"
    field = PREFIX + top
    detail = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if top == "analysis" and len(loc) > 1:
        detail = f"at {'.'.join(loc[1:])}: {detail}"
    accepts = ACCEPTS.get(top)
    if accepts and top != "analysis":
        detail = f"{detail}; accepts {accepts}"
    return SpecError(field, detail)


def analysis_digest(spec: RolloutSpec) -> str:
    """What a step's pass answers: canary.io/analysis as parsed (a comment
    or a key moved is no edit), less its gates (asked after the pass, and
    edited while asked they are asked again: rollout._through_gate; removed,
    the rollout goes on), and canary.io/interval, the least a step serves
    before it passes (lengthened, a pass over the shorter one answers less,
    as decide._still_asked has it for a check in flight; shortened, a
    check taken back at a gate is due again at once). Defaults left out: a field a later
    version adds is no edit across an upgrade. Short: kept in the status."""
    analysis = spec.analysis.model_copy(update={"gates": ()})
    text = f"{analysis.model_dump_json(exclude_defaults=True)} every {spec.interval:g}s"
    return hashlib.sha256(text.encode()).hexdigest()[:16]
