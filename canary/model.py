"""The data that flows through a reconcile: what was observed, the durable
state, and the actions a decision asks for. Plain frozen values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, Literal

from analysis.gate_results import GateResult

JSON = dict[str, Any]
Color = Literal["blue", "green"]
COLORS: tuple[Color, Color] = ("blue", "green")


def other(color: Color) -> Color:
    return "green" if color == "blue" else "blue"


class Phase(StrEnum):
    """What on-call sees; derived from the state, never stored on its own."""

    INVALID = "Invalid"
    WAITING = "Waiting"  # no source Deployment yet
    ADOPTING = "Adopting"
    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    HALTED = "Halted"
    PROMOTING = "Promoting"
    ROLLED_BACK = "RolledBack"
    RELEASING = "Releasing"  # management removed: handing back to the source Deployment


@dataclass(frozen=True, slots=True)
class Twin:
    exists: bool = False
    revision: str = ""
    replicas: int = 0  # spec
    ready: int = 0  # ready pods, counted only once no pod of an older template is left
    updated: bool = True  # every pod runs the latest template, none of an older one
    endpoints: int = 0  # ready endpoints of the twin behind the Service


@dataclass(frozen=True, slots=True)
class Source:
    exists: bool = False
    revision: str = ""
    replicas: int = 0
    ready: int = 0
    template: JSON = field(default_factory=dict)  # twin-ready pod template, config copies applied
    images: tuple[str, ...] = ()
    config: dict[str, str] = field(default_factory=dict)  # ConfigMap/Secret name -> hash


@dataclass(frozen=True, slots=True)
class Observed:
    namespace: str
    service: str
    deployment: str  # the source Deployment's name
    selector: dict[str, str]  # the Service's live selector
    source: Source
    twins: dict[Color, Twin]
    preview_endpoints: int = 0  # ready endpoints behind the preview Service
    preview_selector: dict[str, str] | None = None  # None: no preview Service
    action: str = ""  # the canary.io/action annotation, verbatim
    action_by: str = ""  # who last wrote it (field manager), for the record
    revisions: dict[int, str] = field(default_factory=dict)  # history number -> revision
    gate: GateResult | None = None  # what the gates awaited said this cycle

    def twin(self, color: Color | None) -> Twin:
        return self.twins.get(color, Twin()) if color else Twin()


@dataclass(frozen=True, slots=True)
class State:
    """Durable per-Service state, kept in the canary.io/status annotation."""

    stable: Color | None = None
    stable_revision: str = ""
    replicas: int = 0  # the team's desired replica count, from its Deployment
    adopted: bool = False  # the source is at 0 and the stable twin serves
    canary: Color | None = None  # set while a rollout is in flight
    canary_revision: str = ""
    rollout_started: float = 0.0
    step: int = 0
    step_started: float = 0.0  # when the step's replicas were requested
    step_ready: float = 0.0  # when the canary was ready at the step's weight: window start
    checked: float = 0.0  # last analysis in this step (0: none yet)
    window_start: float = 0.0  # where the next analysis window begins
    failed: int = 0  # failed checks in this rollout
    no_data: int = 0  # consecutive no-data checks
    errors: int = 0  # consecutive error checks
    recheck: bool = False  # the last check failed (tolerated): check again soon
    promoting: bool = False
    paused: bool = False
    halted: str = ""  # why the rollout stopped and waits for a person
    failed_revision: str = ""  # not rolled out again until the source changes or retry
    undo_of: str = ""  # the source revision an undo in flight is moving away from
    gate_wait: str = ""  # the kind of gate the rollout waits on before its next move
    gate_checked: float = 0.0  # when it last answered "closed"
    gate_reason: str = ""  # why it is closed
    scale_down: Color | None = None  # old twin kept up after a promotion
    scale_down_at: float = 0.0
    previous_revision: str = ""  # the old twin's revision, while it is kept up
    requested_weight: int = 0
    effective_weight: float = 0.0
    last_action: str = ""
    invalid: str = ""  # the spec error we last reported
    message: str = ""

    def to_json(self) -> JSON:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Any) -> State:
        if not isinstance(data, dict):
            return cls()
        known = {f.name: f.type for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# -- actions -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApplyTwin:
    """Create or update a twin with the source's template at `revision`."""

    color: Color
    revision: str
    replicas: int


@dataclass(frozen=True, slots=True)
class ScaleTwin:
    color: Color
    replicas: int


@dataclass(frozen=True, slots=True)
class SetSelector:
    selector: dict[str, str]


@dataclass(frozen=True, slots=True)
class ScaleSource:
    replicas: int


@dataclass(frozen=True, slots=True)
class ApplyPreview:
    selector: dict[str, str]


@dataclass(frozen=True, slots=True)
class DeleteTwins:
    pass


@dataclass(frozen=True, slots=True)
class Emit:
    """A Kubernetes Event on the Service."""

    reason: str
    message: str
    warning: bool = False


@dataclass(frozen=True, slots=True)
class Record:
    """Update the revision history: `outcome` in progressing, promoted,
    rolled-back, aborted, superseded."""

    revision: str
    outcome: str
    reason: str


Action = (
    ApplyTwin | ScaleTwin | SetSelector | ScaleSource | ApplyPreview | DeleteTwins | Emit | Record
)


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...]
    state: State
    requeue_after: float | None  # seconds; None: wait for the next watch event
    release: bool = False  # management is over: remove our status annotation
