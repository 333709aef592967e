"""Rule unverified-promotion, the pure part: what a promoted entry's decision
record must show, and what Prometheus must confirm about its passing checks.
The shell (checker.loop) fetches the numbers; this module judges them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from chaos.checker.facts import JSON, Fingerprint, queried_pods, template_fingerprint

# The re-measured success rate may sit this many points under the threshold
# before it counts: `increase()` extrapolates to the window's edges, and a
# scrape that landed after the controller's query shifts it slightly.
SUCCESS_MARGIN = 5.0
MANUAL_PROMOTE = "PromoteRequested"


@dataclass(frozen=True, slots=True)
class Window:
    """A passing check to re-measure: the pods its query selected, over its window."""

    step: int
    namespace: str
    pod_regex: str
    start: float
    end: float


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    unverifiable: list[str] = field(default_factory=list)


def plan(entry: JSON, steps: int, serving_before: str = "") -> tuple[list[Window], Verdict]:
    """The windows to re-measure, and what the record alone already shows.
    `serving_before`: the revision of the newest promoted or adopted entry
    before this one in its history."""
    verdict = Verdict()
    if any(a.get("reason") == MANUAL_PROMOTE for a in entry.get("actions") or []):
        verdict.unverifiable.append("promoted by hand (PromoteRequested): exempt")
        return [], verdict
    checks = [c for c in entry.get("checks") or [] if isinstance(c, dict)]
    if not checks and _undo_to_serving(entry, serving_before):
        # `canary undo --to N` to the revision that serves, while a newer one
        # is in flight: that one is taken out and nothing rolls out; the
        # undo's own entry is recorded promoted at once (README, Manual
        # control). Nothing new reached traffic, so there is nothing to check.
        verdict.unverifiable.append("an undo to the revision already serving: exempt")
        return [], verdict
    passing = [c for c in checks if c.get("verdict") == "pass"]
    steps_passed = {int(c.get("step", 0)) for c in passing}
    missing = [s for s in range(1, steps + 1) if s not in steps_passed]
    if missing:
        earliest = min((int(c.get("step", 0)) for c in checks), default=0)
        if len(checks) >= 60 and all(s < earliest for s in missing):
            # The history keeps the newest 60 checks of a revision; older
            # ones may have been trimmed.
            verdict.unverifiable.append(f"checks of steps {missing} may have been trimmed")
        elif _restored_afresh(entry) and all(s < earliest for s in missing):
            verdict.unverifiable.append(
                f"checks of steps {missing} went with a deleted history (EntryRestored)"
            )
        else:
            verdict.problems.append(
                f"no passing check recorded for step(s) {', '.join(map(str, missing))} of {steps}"
            )
    windows = []
    for check in passing:
        window = _window(check)
        if window is None:
            verdict.unverifiable.append(
                f"step {check.get('step')}: no pod selector in the recorded queries"
            )
        else:
            windows.append(window)
    return windows, verdict


UNDO = "UndoRequested"


def _undo_to_serving(entry: JSON, serving_before: str) -> bool:
    asked = str(entry.get("reason", "")).startswith(f"{UNDO}:") or any(
        a.get("reason") == UNDO for a in entry.get("actions") or [] if isinstance(a, dict)
    )
    return asked and bool(serving_before) and entry.get("revision") == serving_before


# What the controller's note says when it put an entry back with nothing of
# what came before (history.ensure_entry without a copy of it).
NOT_RECORDED = "before now are not recorded"


def _restored_afresh(entry: JSON) -> bool:
    """The history was deleted mid-rollout by a controller process that had
    never read this entry: the checks before that are gone, and it says so."""
    return any(
        a.get("reason") == "EntryRestored" and NOT_RECORDED in str(a.get("message", ""))
        for a in entry.get("actions") or []
    )


def _window(check: JSON) -> Window | None:
    for measurement in check.get("measurements") or []:
        if measurement.get("baseline"):
            continue
        selected = queried_pods(str(measurement.get("query", "")))
        start, end = measurement.get("start"), measurement.get("end")
        if selected and isinstance(start, int | float) and isinstance(end, int | float):
            return Window(int(check.get("step", 0)), *selected, float(start), float(end))
    return None


Served = Mapping[str, tuple[float, float]]  # pod -> (requests, 5xx) in a window

# How far before a window the checker looks for a series' earlier sample.
BORN_LOOKBACK_S = 600.0

Series = Mapping[tuple[tuple[str, str], ...], float]  # labels (no __name__) -> value


def served_in(
    window: Window, increases: Series, born: Series, created: Mapping[str, float]
) -> dict[str, tuple[float, float]]:
    """What each pod served in the window: a series' increase, or, where it
    was first sampled in the window (`born`: its newest value there, for the
    series with no sample in BORN_LOOKBACK_S before it), its whole value if
    its pod was created within that look back: its first sample holds what
    the pod served before Prometheus first saw it, which increase() leaves
    out (a pod first scraped seconds into a short step read as having
    served nothing, though the controller judged its first samples)."""
    values = dict(increases)
    for labels, value in born.items():
        pod = dict(labels).get("pod", "")
        if created.get(pod, 0.0) >= window.start - BORN_LOOKBACK_S:
            values[labels] = value
    served: dict[str, tuple[float, float]] = {}
    for labels, value in values.items():
        named = dict(labels)
        pod = named.get("pod", "")
        requests, errors = served.get(pod, (0.0, 0.0))
        bad = named.get("code", "").startswith("5")
        served[pod] = (requests + value, errors + (value if bad else 0.0))
    return served


def judge_window(
    window: Window,
    served: Served,
    fingerprints: Mapping[str, Fingerprint | None],
    entry: JSON,
    min_success: float,
    verdict: Verdict,
) -> None:
    """Whether the pods the check selected were the promoted release's own,
    served, and passed."""
    want = template_fingerprint(entry.get("template"))
    where = f"step {window.step} window {window.end - window.start:.1f}s"
    if want is None:
        verdict.unverifiable.append(f"{where}: the entry records no template to compare")
        return
    own_requests = own_errors = 0.0
    strangers: list[str] = []
    unknown = False
    for pod, (requests, errors) in sorted(served.items()):
        if requests <= 0:
            continue
        fp = fingerprints.get(pod)
        if fp is None:
            verdict.unverifiable.append(f"{where}: pod {pod} was never seen by the checker")
            unknown = True
            continue
        if fp != want:
            strangers.append(f"{pod} ({fp}, {requests:.0f} requests)")
            continue
        own_requests += requests
        own_errors += errors
    if strangers:
        verdict.problems.append(
            f"{where}: the check of {want} counted pods of another release: "
            + "; ".join(strangers[:4])
        )
    if own_requests < 1:
        if unknown:
            return
        verdict.problems.append(f"{where}: pods of {want} served no request in the window")
        return
    success = 100.0 * (1 - own_errors / own_requests)
    if math.isfinite(success) and success < min_success - SUCCESS_MARGIN:
        verdict.problems.append(
            f"{where}: pods of {want} had {success:.1f}% success over {own_requests:.0f} "
            f"requests (threshold {min_success:g})"
        )
