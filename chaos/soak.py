"""The soak, end to end: sandbox, two controller replicas, the fleet, the
releases, the injector and the checker; then a calm period, and the report."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from random import Random
from typing import Any

from canary.sandbox import cluster
from canary.sandbox.binaries import binary_dir
from chaos import fleet, report
from chaos.checker.api import Api, Prometheus
from chaos.checker.blind import Blindness
from chaos.checker.loop import AppRules, Checker
from chaos.checker.rules import Violation
from chaos.controllers import Replicas
from chaos.faults import Injector, continue_all
from chaos.kubectl import Kubectl

log = logging.getLogger("chaos")
LEASE_NAMESPACE = "chaos-system"
PROCESS_TARGETS = ("kube-apiserver", "etcd", "prometheus", "kube-controller-manager", "leader")


@dataclass(frozen=True)
class Options:
    directory: Path
    seed: int = 1
    duration_s: float = 900.0
    services: int = 20
    faults_per_minute: float = 60.0
    grace_s: float = 30.0
    settle_s: float = 60.0
    release_gap_s: tuple[float, float] = (20.0, 60.0)
    bad_share: float = 0.3
    report_path: Path = Path("chaos-report.json")
    keep_sandbox: bool = False
    reuse_sandbox: bool = False


def say(text: str) -> None:
    print(f"[{report.stamp(time.time())}] {text}", file=sys.stderr, flush=True)


async def soak(options: Options) -> dict[str, Any]:
    directory = options.directory.resolve()
    box = cluster.Sandbox.load(directory) if options.reuse_sandbox else None
    if box is None:
        say(f"starting a sandbox in {directory}")
        box = await asyncio.to_thread(cluster.up, directory, 3, 250, say)
    logs = directory / f"chaos-logs-{time.strftime('%Y%m%d-%H%M%S')}"
    logs.mkdir()
    try:
        return await _Soak(box, logs, options).run()
    finally:
        continue_all(box)
        if not options.keep_sandbox and not options.reuse_sandbox:
            await asyncio.to_thread(cluster.down, directory)


class _Soak:
    """One run: the parts, started in order and stopped in reverse."""

    def __init__(self, box: cluster.Sandbox, logs: Path, options: Options) -> None:
        self.box = box
        self.options = options
        self.started = time.time()
        self.kubectl = Kubectl(str(binary_dir() / "kubectl"), box.kubeconfig)
        self.apps = fleet.plan(options.services, options.seed)
        self.blindness = Blindness()
        self.violations_file = options.report_path.with_suffix(".violations.jsonl")
        self.violations_file.write_text("")
        self.api, self.prometheus = Api(box.apiserver, box.token), Prometheus(box.prometheus_url)
        self.checker = Checker(
            self.api,
            self.prometheus,
            {(a.namespace, a.name): AppRules(a.min_success) for a in self.apps},
            self.blindness,
            grace_s=options.grace_s,
            on_violation=self._seen,
        )
        self.replicas = Replicas(box, logs, LEASE_NAMESPACE)
        self.injector = Injector(
            Random(options.seed),
            box,
            self.kubectl,
            self.apps,
            self.replicas,
            self.blindness,
            per_minute=options.faults_per_minute,
        )
        self.team = fleet.Fleet(self.apps, self.kubectl, options.seed, options.bad_share)
        self.tasks: list[asyncio.Task[Any]] = []
        self.fault_s = 0.0
        self.load: list[float] = []  # the machine's 1-minute load average, once a minute

    def _nearby(self, violation: Violation) -> list[str]:
        """The faults that may explain a violation: on its namespace from 90 s
        before it began until it counted, and every process fault overlapping."""
        namespace = violation.subject.split()[-1].split("/")[0]
        lines = []
        for fault in self.injector.log:
            ended = fault.ended or time.time()
            near = violation.since - 90 <= fault.started <= violation.declared
            mine = fault.target.startswith(f"{namespace}/")
            overlapping = fault.started <= violation.declared and ended >= violation.since - 30
            if (mine and near) or (fault.target in PROCESS_TARGETS and overlapping):
                lines.append(f"{report.stamp(fault.started)} {fault.kind} {fault.detail}")
        return lines

    def _load(self) -> None:
        with contextlib.suppress(OSError):
            self.load.append(float(Path("/proc/loadavg").read_text().split()[0]))

    def _seen(self, violation: Violation) -> None:
        say(report.violation_line(violation))
        with self.violations_file.open("a") as out:
            out.write(json.dumps(violation.to_json()) + "\n")

    def _start(self, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(work, name=name)
        self.tasks.append(task)
        return task

    async def run(self) -> dict[str, Any]:
        try:
            await self._set_up()
            await self._faults()
            say(f"faults over; {self.options.settle_s:.0f} s of calm for the checker")
            await asyncio.sleep(self.options.settle_s)
        finally:
            await self._tear_down()
        return self._result()

    async def _set_up(self) -> None:
        await self.kubectl.apply([fleet.namespace(LEASE_NAMESPACE)], manager=fleet.GITOPS)
        self._start(self.checker.run(), "checker")
        self.replicas.start_all()
        self._start(self.replicas.supervise(), "supervisor")
        self._start(self.replicas.watch_leadership(), "leadership")
        await _until(self.replicas.leader, 60, "a controller replica to lead")
        say(f"{len(self.replicas.procs)} controller replicas up; creating {len(self.apps)} apps")
        await self.team.create()

        async def all_served() -> bool:
            return len(self.checker.served) == len(self.apps)

        await _until(all_served, 300, "every app to be served")
        say("every app serves; releases and faults begin")

    async def _faults(self) -> None:
        for app in self.apps:
            self._start(
                self.team.release_forever(app, self.options.release_gap_s), f"release {app.name}"
            )
        began = time.time()
        injecting = self._start(self.injector.run(), "injector")
        deadline = began + self.options.duration_s
        while time.time() < deadline:
            await asyncio.sleep(min(60.0, max(0.0, deadline - time.time())))
            self._load()
            _progress(self.injector, self.checker, began)
            for task in self.tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise RuntimeError(f"{task.get_name()} failed") from task.exception()
        for task in self.tasks:
            if task.get_name().startswith("release "):
                task.cancel()
        injecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await injecting
        self.fault_s = time.time() - began

    async def _tear_down(self) -> None:
        self.injector.abort()
        continue_all(self.box)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.checker.close()
        await asyncio.to_thread(self.replicas.stop_all)
        await self.api.close()
        await self.prometheus.close()

    def _result(self) -> dict[str, Any]:
        injector, checker, apps = self.injector, self.checker, self.apps
        result = {
            "seed": self.options.seed,
            "commit": report.commit(),
            "command": " ".join(sys.argv),
            "started": self.started,
            "ran_s": time.time() - self.started,
            "fault_s": self.fault_s,
            "settle_s": self.options.settle_s,
            "grace_s": self.options.grace_s,
            "services": len(apps),
            "faults": {
                "injected": dict(injector.injected),
                "failed": dict(injector.failed),
                "total": sum(injector.injected.values()),
                "log": [f.to_json() for f in injector.log],
            },
            "releases": {
                "total": sum(a.released for a in apps),
                "bad": sum(a.bad_released for a in apps),
                "failed": self.team.failed_releases,
            },
            "rollouts": dict(checker.tally.rollouts),
            "violations": [
                {
                    **v.to_json(),
                    "faults_nearby": self._nearby(v),
                    "leaderless_s": round(self.replicas.leaderless_during(v.since, v.declared), 1),
                }
                for v in checker.violations
            ],
            "load_average_1m": {
                "min": min(self.load, default=0.0),
                "mean": sum(self.load) / max(1, len(self.load)),
                "max": max(self.load, default=0.0),
            },
            "checker": {
                "blind_s": self.blindness.total_s(),
                "promotions_verified": checker.tally.promotions_verified,
                "unverifiable": checker.tally.unverifiable,
                "confirm_retracted": checker.tally.confirm_retracted,
                "heartbeat_failures": checker.tally.heartbeat_failures,
                "pod_start_s": _quantiles(checker.tally.pod_start_s),
                "api_get_s": _quantiles(checker.tally.heartbeat_s),
                "write_peaks_per_minute": checker.writes.peak,
                "busiest_writes": checker.writes.busiest,
                "watch_relists": {r.path: r.relists for r in checker.reflectors},
            },
            "controllers": {
                "leaderless_s": self.replicas.leaderless_during(self.started, time.time()),
                "restarts": self.replicas.restarts,
                "exits": [e.__dict__ for e in self.replicas.exits],
            },
        }
        self.options.report_path.write_text(json.dumps(result, indent=1, default=str))
        return result


def _quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"count": 0}
    return {
        "count": len(ordered),
        "p50": ordered[len(ordered) // 2],
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "max": ordered[-1],
    }


def _progress(injector: Injector, checker: Checker, began: float) -> None:
    say(
        f"{(time.time() - began) / 60:.1f} min: {sum(injector.injected.values())} faults "
        f"({sum(injector.failed.values())} failed), rollouts {dict(checker.tally.rollouts)}, "
        f"violations {len(checker.violations)}"
    )


async def _until(probe: Any, timeout_s: float, what: str) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if await probe():
            return
        await asyncio.sleep(1.0)
    raise TimeoutError(f"waited {timeout_s:.0f}s for {what}")
