"""Two `canary run` replicas with leader election, kept running the way a
kubelet would (an exited replica is started again), plus the leader kill."""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from canary.sandbox.cluster import Sandbox
from canary.sandbox.runner import ControllerProcess

RESTART_DELAY_S = 1.0


@dataclass
class Exit:
    at: float
    code: int | None
    log: str
    killed_by_soak: bool


@dataclass
class Replicas:
    sandbox: Sandbox
    log_dir: Path
    lease_namespace: str
    count: int = 2
    procs: list[ControllerProcess] = field(default_factory=list)
    logs: dict[int, str] = field(default_factory=dict)  # pid -> log file
    exits: list[Exit] = field(default_factory=list)
    _started: int = 0
    _killed: set[int] = field(default_factory=set)
    # Spans of time in which no replica said it led (its canary_leader metric).
    leaderless: list[tuple[float, float]] = field(default_factory=list)
    _leaderless_since: float | None = None

    def start_all(self) -> None:
        while len(self.procs) < self.count:
            self._start()

    def _start(self) -> ControllerProcess:
        self._started += 1
        log = self.log_dir / f"controller-{self._started}.log"
        proc = ControllerProcess(
            self.sandbox, log, ["--lease-namespace", self.lease_namespace, "--log-format", "json"]
        )
        self.procs.append(proc)
        self.logs[proc.popen.pid] = str(log)
        return proc

    async def supervise(self) -> None:
        """Start again any replica that exited (a lost lease makes one exit by design)."""
        while True:
            for proc in list(self.procs):
                code = proc.popen.poll()
                if code is None:
                    continue
                pid = proc.popen.pid
                self.exits.append(Exit(time.time(), code, self.logs[pid], pid in self._killed))
                self.procs.remove(proc)
                await asyncio.sleep(RESTART_DELAY_S)
                self._start()
            await asyncio.sleep(0.5)

    async def watch_leadership(self) -> None:
        """Once a second: does any replica lead? (Context for the report: a
        fault that needs the controller to react cannot be repaired while
        nobody leads.)"""
        while True:
            now = time.time()
            leading = await self.leader() is not None
            if leading and self._leaderless_since is not None:
                self.leaderless.append((self._leaderless_since, now))
                self._leaderless_since = None
            elif not leading and self._leaderless_since is None:
                self._leaderless_since = now
            await asyncio.sleep(1.0)

    def leaderless_during(self, start: float, end: float) -> float:
        spans = list(self.leaderless)
        if self._leaderless_since is not None:
            spans.append((self._leaderless_since, time.time()))
        return sum(max(0.0, min(e, end) - max(s, start)) for s, e in spans)

    async def leader(self) -> ControllerProcess | None:
        for proc in list(self.procs):
            if proc.popen.poll() is None and await proc.value("canary_leader") == 1.0:
                return proc
        return None

    async def kill_leader(self) -> str:
        """SIGKILL the replica holding the Lease (no goodbye: the Lease must
        expire), and start a new one at once, as a standby."""
        leader = await self.leader()
        if leader is None:
            raise RuntimeError("no replica says it leads right now")
        pid = leader.popen.pid
        self._killed.add(pid)
        leader.stop(signal.SIGKILL)
        self.exits.append(Exit(time.time(), leader.popen.returncode, self.logs[pid], True))
        self.procs.remove(leader)
        self._start()
        return f"killed leader pid {pid}"

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.stop(signal.SIGTERM, timeout_s=40)
        for proc in self.procs:
            if proc.popen.returncode not in (0, None):
                self.exits.append(Exit(time.time(), proc.popen.returncode, "", False))
        self.procs.clear()

    @property
    def restarts(self) -> int:
        return sum(1 for e in self.exits if not e.killed_by_soak)
