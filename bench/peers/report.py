"""The comparison tables, from the outcomes, the audit log and the process
samples of one run."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import harness
from bench.peers.apps import App
from bench.peers.controllers import Usage
from bench.peers.releases import BAD, GOOD, Outcome


@dataclass(frozen=True, slots=True)
class Write:
    at: float
    user: str
    verb: str
    resource: str
    code: int
    name: str = ""  # the object's ("" for one the API server names: an Event)


def audit_writes(path: Path, users: Iterable[str]) -> list[Write]:
    wanted = set(users)
    found = []
    with open(path) as log:
        for line in log:
            entry = json.loads(line)
            user = entry.get("user", {}).get("username", "")
            if user not in wanted or entry.get("stage") != "ResponseComplete":
                continue
            ref = entry.get("objectRef") or {}
            resource = ref.get("resource", "")
            if ref.get("subresource"):
                resource += "/" + ref["subresource"]
            found.append(
                Write(
                    at=dt.datetime.fromisoformat(entry["requestReceivedTimestamp"]).timestamp(),
                    user=user,
                    verb=entry.get("verb", ""),
                    resource=resource,
                    code=int((entry.get("responseStatus") or {}).get("code", 0)),
                    name=ref.get("name", ""),
                )
            )
    return found


def writes_per_release(
    writes: Sequence[Write], user: str, windows: Sequence[tuple[float, float]]
) -> list[int]:
    return [sum(1 for w in writes if w.user == user and lo <= w.at < hi) for lo, hi in windows]


def _stat(values: Sequence[float]) -> tuple[float, float]:
    p50, p99, _ = harness.quantiles([v for v in values if not math.isnan(v)])
    return p50, p99


def _fmt(value: float, digits: int = 2) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _ratio(ours: float, theirs: float) -> str:
    if math.isnan(ours) or math.isnan(theirs) or theirs == 0:
        return "-"
    return f"{ours / theirs:.2f}"


@dataclass
class Column:
    """One controller's numbers."""

    first_endpoint: tuple[float, float]
    detection_to_out: tuple[float, float]
    to_all_new: tuple[float, float]
    false_rollbacks: str
    false_promotions: str
    stuck: str
    failed_requests: tuple[float, float]
    rss: float
    cpu: float
    writes_all: float
    writes_promoted: float
    writes_rolled_back: float
    writes_per_step: float

    def rows(self) -> list[tuple[str, float | str, bool]]:
        """(label, value, lower is better)."""
        return [
            ("release -> first canary endpoint p50 s", self.first_endpoint[0], True),
            ("release -> first canary endpoint p99 s", self.first_endpoint[1], True),
            (
                "failure in Prometheus -> out of EndpointSlices p50 s",
                self.detection_to_out[0],
                True,
            ),
            (
                "failure in Prometheus -> out of EndpointSlices p99 s",
                self.detection_to_out[1],
                True,
            ),
            ("5xx served per bad release p50", self.failed_requests[0], True),
            ("5xx served per bad release p99", self.failed_requests[1], True),
            ("good release -> all traffic on it p50 s", self.to_all_new[0], True),
            ("good release -> all traffic on it p99 s", self.to_all_new[1], True),
            ("false rollbacks (good not promoted)", self.false_rollbacks, True),
            ("false promotions (bad or no-data promoted)", self.false_promotions, True),
            ("releases not finished in time", self.stuck, True),
            ("controller RSS MiB (median while releasing)", self.rss, True),
            ("controller CPU % of a core (while releasing)", self.cpu, True),
            ("API writes per rollout (all)", self.writes_all, True),
            ("API writes per promoted rollout", self.writes_promoted, True),
            ("API writes per rolled-back rollout", self.writes_rolled_back, True),
            ("API writes per step (promoted rollout / its steps)", self.writes_per_step, True),
        ]


def column(outcomes: Sequence[Outcome], usage: Usage, writes: Sequence[int], steps: int) -> Column:
    """steps: checked traffic steps of a promoted rollout; writes per step is
    counted the way bench.scale counts it (all of a promoted rollout's writes
    over its steps), so per-rollout writes are spread over the steps."""

    def mean(values: Sequence[int]) -> float:
        return sum(values) / len(values) if values else float("nan")

    good = [o for o in outcomes if o.kind in GOOD]
    bad = [o for o in outcomes if o.kind in BAD]
    not_good = [o for o in outcomes if o.kind not in GOOD]
    rolled = [
        o
        for o in bad
        if o.result == "rolled-back" and o.failure_visible and o.out_of_slices is not None
    ]
    writes_promoted = mean(
        [w for w, o in zip(writes, outcomes, strict=True) if o.result == "promoted"]
    )
    return Column(
        first_endpoint=_stat(
            [o.first_endpoint - o.released for o in outcomes if o.first_endpoint is not None]
        ),
        detection_to_out=_stat(
            [o.out_of_slices - o.failure_visible for o in rolled]  # type: ignore[operator]
        ),
        to_all_new=_stat(
            [o.all_traffic_new - o.released for o in good if o.all_traffic_new is not None]
        ),
        false_rollbacks=f"{sum(o.false_rollback for o in good)}/{len(good)}",
        false_promotions=f"{sum(o.false_promotion for o in not_good)}/{len(not_good)}",
        stuck=f"{sum(o.result == 'stuck' for o in outcomes)}/{len(outcomes)}",
        failed_requests=_stat([o.failed_requests for o in bad]),
        rss=usage.median_rss_mib,
        cpu=usage.cpu_percent,
        writes_all=mean(writes),
        writes_promoted=writes_promoted,
        writes_rolled_back=mean(
            [w for w, o in zip(writes, outcomes, strict=True) if o.result == "rolled-back"]
        ),
        writes_per_step=writes_promoted / steps,
    )


def comparison(apps: Sequence[App], columns: dict[str, Column], markdown: bool = False) -> str:
    """Rows per measure, a column per controller, then canary / peer ratios
    (as aligned text, or as a Markdown table for the README)."""
    pairs = [(a.label, a.compare_with) for a in apps if a.compare_with in columns]
    headers = ["", *(a.label for a in apps), *(f"{ours} / {peer}" for ours, peer in pairs)]
    labels = [label for label, _, _ in next(iter(columns.values())).rows()]
    rows = []
    for i, label in enumerate(labels):
        values = {a.label: columns[a.label].rows()[i][1] for a in apps}
        cells = [label]
        for a in apps:
            value = values[a.label]
            cells.append(value if isinstance(value, str) else _fmt(value))
        for ours, peer in pairs:
            a_value, b_value = values[ours], values[peer]
            cells.append(
                _ratio(a_value, b_value)
                if isinstance(a_value, float) and isinstance(b_value, float)
                else "-"
            )
        rows.append(cells)
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])
    return harness.table(headers, rows)


def outcomes_table(outcomes: Sequence[Outcome]) -> str:
    """Every release, for the record: what each controller did with it."""
    rows = []
    for o in outcomes:

        def since(t: float | None, o: Outcome = o) -> str:
            return "-" if t is None else f"{t - o.released:.2f}"

        rows.append(
            [
                o.image.rsplit(":", 1)[1],
                o.app,
                o.result,
                since(o.first_endpoint),
                since(o.turned_bad),
                since(o.failure_visible),
                since(o.out_of_slices),
                since(o.all_traffic_new),
                f"{o.failed_requests:.0f}",
                ">".join(o.phases) or "-",
            ]
        )
    return harness.table(
        [
            "release",
            "controller",
            "result",
            "1st endpoint",
            "turned bad",
            "5xx in Prom",
            "out",
            "all new",
            "5xx",
            "phases seen",
        ],
        rows,
    )


def writes_by_resource(
    writes: Sequence[Write], user: str, windows: Sequence[tuple[float, float]]
) -> str:
    """Mean writes of each verb and resource over these releases' windows
    (e.g. only the promoted ones: where a step's writes go)."""
    counts = Counter(
        f"{w.verb} {w.resource}"
        for w in writes
        if w.user == user and any(lo <= w.at < hi for lo, hi in windows)
    )
    if not windows:
        return "-"
    return ", ".join(f"{k} {v / len(windows):.1f}" for k, v in counts.most_common())
