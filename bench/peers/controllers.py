"""The three controllers as real processes, each under its own API user.

canary runs as `canary run` (one process per app, like the peers: one
controller per app, so RSS and CPU compare one to one). Argo Rollouts and
Flagger run in a loopback-only network namespace (see jail.py) because they
listen on every interface.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from canary.sandbox.cluster import Sandbox
from canary.sandbox.runner import ControllerProcess

ROOT = Path(__file__).resolve().parents[2]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Usage:
    """RSS and CPU of one process, sampled while the releases run."""

    pid: int
    peak_rss_mib: float = 0.0
    rss_samples: list[float] = field(default_factory=list)
    cpu_start_s: float = 0.0
    wall_start: float = 0.0
    cpu_s: float = 0.0
    wall_s: float = 0.0

    def start(self) -> None:
        self.cpu_start_s = cpu_seconds(self.pid)
        self.wall_start = time.monotonic()
        self.rss_samples.clear()
        self.peak_rss_mib = 0.0

    def sample(self) -> None:
        rss = rss_mib(self.pid)
        if rss > 0:
            self.rss_samples.append(rss)
            self.peak_rss_mib = max(self.peak_rss_mib, rss)

    def stop(self) -> None:
        self.cpu_s = cpu_seconds(self.pid) - self.cpu_start_s
        self.wall_s = time.monotonic() - self.wall_start

    @property
    def cpu_percent(self) -> float:
        return 100 * self.cpu_s / self.wall_s if self.wall_s else float("nan")

    @property
    def median_rss_mib(self) -> float:
        ordered = sorted(self.rss_samples)
        return ordered[len(ordered) // 2] if ordered else float("nan")


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of the process (its threads included)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class Controller:
    name: str
    user: str

    @property
    def pid(self) -> int:
        raise NotImplementedError

    def alive(self) -> bool:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class Canary(Controller):
    def __init__(self, box: Sandbox, name: str, user: str, namespace: str, log: Path) -> None:
        self.name, self.user = name, user
        self.process = ControllerProcess(
            box,
            log,
            ["--kubeconfig", box.users[user], "--no-leader-elect", "-n", namespace],
        )

    @property
    def pid(self) -> int:
        return self.process.popen.pid

    def alive(self) -> bool:
        return self.process.popen.poll() is None

    def stop(self) -> None:
        self.process.stop()


class Jailed(Controller):
    """A peer's binary in its own network namespace, relaying the API server's
    and Prometheus' loopback ports."""

    def __init__(
        self, box: Sandbox, name: str, user: str, argv: list[str], workdir: Path, log: Path
    ) -> None:
        self.name, self.user = name, user
        workdir.mkdir(parents=True, exist_ok=True)
        self.pid_file = workdir / "pid"
        self.pid_file.unlink(missing_ok=True)
        ports = [urlparse(box.apiserver).port, urlparse(box.prometheus_url).port]
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.peers.jail",
                    f"--dir={workdir}",
                    f"--pid-file={self.pid_file}",
                    *(f"--port={port}" for port in ports),
                    "--",
                    *argv,
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while not self.pid_file.exists():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} did not start; see {log}")
            time.sleep(0.05)
        self._pid = int(self.pid_file.read_text())

    @property
    def pid(self) -> int:
        return self._pid

    def alive(self) -> bool:
        return self.popen.poll() is None and Path(f"/proc/{self._pid}").exists()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()


def argo_rollouts(
    box: Sandbox, bins: Path, user: str, instance_id: str, workdir: Path, log: Path
) -> Jailed:
    """instance_id "" takes the Rollouts without an instance-id label."""
    return Jailed(
        box,
        user,
        user,
        [
            str(bins / "rollouts-controller"),
            f"--kubeconfig={box.users[user]}",
            f"--instance-id={instance_id}",
            # Off for every controller here: a Lease renewal every 2 s would
            # dwarf the writes a rollout makes (canary runs --no-leader-elect).
            "--leader-elect=false",
            "--loglevel=info",
        ],
        workdir,
        log,
    )


def flagger(box: Sandbox, bins: Path, namespace: str, workdir: Path, log: Path) -> Jailed:
    return Jailed(
        box,
        "flagger",
        "flagger",
        [
            str(bins / "flagger"),
            f"-kubeconfig={box.users['flagger']}",
            "-mesh-provider=kubernetes",
            f"-metrics-server={box.prometheus_url}",
            f"-namespace={namespace}",
            "-log-level=info",
        ],
        workdir,
        log,
    )
