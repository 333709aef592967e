"""The soak's report: a table for people, a JSON document for the record."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from chaos.checker.rules import RULES, Violation

ROOT = Path(__file__).resolve().parents[1]


def commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    head = git("rev-parse", "--short=10", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "canary", "analysis")
    return f"{head}{'+dirty' if dirty else ''}"


def stamp(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%H:%M:%S")


def render(report: dict[str, Any]) -> str:
    faults: Counter[str] = Counter(report["faults"]["injected"])
    failed: Counter[str] = Counter(report["faults"]["failed"])
    lines = [
        f"chaos soak: seed {report['seed']}, commit {report['commit']}, "
        f"{report['services']} Services, {report['ran_s'] / 60:.1f} min "
        f"(faults for {report['fault_s'] / 60:.1f} min, then {report['settle_s']:.0f} s calm)",
        "",
        f"{'fault':<20} {'injected':>9} {'failed':>7}",
    ]
    for kind in sorted(set(faults) | set(failed)):
        lines.append(f"{kind:<20} {faults[kind]:>9} {failed[kind]:>7}")
    lines.append(f"{'total':<20} {sum(faults.values()):>9} {sum(failed.values()):>7}")
    lines += ["", f"releases: {report['releases']['total']} ({report['releases']['bad']} bad)"]
    rollouts = report["rollouts"]
    lines.append(
        "rollouts completed: "
        + (", ".join(f"{k} {v}" for k, v in sorted(rollouts.items())) or "none")
        + f" (total {sum(rollouts.values())})"
    )
    checker = report["checker"]
    lines.append(
        f"checker: blind {checker['blind_s']:.0f} s, promotions re-measured "
        f"{checker['promotions_verified']}, unverifiable {len(checker['unverifiable'])}, "
        f"outages retracted by a fresh read {checker['confirm_retracted']}"
    )
    lines.append(
        f"controllers: {report['controllers']['restarts']} restarts besides the leader kills, "
        f"no replica leading for {report['controllers']['leaderless_s']:.0f} s"
    )
    starts = checker["pod_start_s"]
    if starts.get("count"):
        lines.append(
            f"sandbox kubelet (kwok): pod created to ready p50 {starts['p50']:.1f} s, "
            f"p95 {starts['p95']:.1f} s, max {starts['max']:.1f} s over {starts['count']} pods"
        )
    gets = checker["api_get_s"]
    if gets.get("count"):
        lines.append(
            f"API server GET latency (the checker's heartbeat): p50 {gets['p50']:.2f} s, "
            f"p95 {gets['p95']:.2f} s, max {gets['max']:.2f} s"
        )
    load = report["load_average_1m"]
    lines.append(f"machine load (1-min average): mean {load['mean']:.1f}, max {load['max']:.1f}")
    by_rule = Counter(v["rule"] for v in report["violations"])
    lines += ["", f"{'rule':<22} {'violations':>10}"]
    for rule in RULES:
        lines.append(f"{rule:<22} {by_rule[rule]:>10}")
    lines.append(f"{'total':<22} {sum(by_rule.values()):>10}")
    for v in report["violations"]:
        when = f"{stamp(v['since'])}-{stamp(v['declared'])}"
        leaderless = (
            f" [no leader for {v['leaderless_s']:.0f} s of it]" if v["leaderless_s"] else ""
        )
        lines.append(f"  {when} {v['rule']} {v['subject']}: {v['detail']}{leaderless}")
    return "\n".join(lines)


def violation_line(violation: Violation) -> str:
    return (
        f"VIOLATION {stamp(violation.since)}-{stamp(violation.declared)} {violation.rule} "
        f"{violation.subject}: {violation.detail}"
    )
