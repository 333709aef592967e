"""Start and stop the sandbox's child processes, identified exactly.

Each process runs in its own session (so its whole group can be signalled) and
is recorded as pid plus kernel start time: `down` then never signals a process
that merely reused a recorded pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Proc:
    name: str
    pid: int
    start_ticks: int  # field 22 of /proc/<pid>/stat
    log: str

    def alive(self) -> bool:
        return _start_ticks(self.pid) == self.start_ticks


# Children started by this process, kept so they are reaped (no zombies, no
# ResourceWarning) when stopped; a sandbox started by another process is
# stopped by pid alone.
_handles: dict[int, subprocess.Popen[bytes]] = {}


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; fields after it are plain.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited; only its exit status remains
        return None
    return int(fields[19])


def start(
    name: str, argv: Sequence[str], *, log_dir: Path, cwd: Path, env: dict[str, str] | None = None
) -> tuple[Proc, subprocess.Popen[bytes]]:
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as log_file:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    _handles[popen.pid] = popen
    ticks = _start_ticks(popen.pid)
    return Proc(name, popen.pid, ticks if ticks is not None else -1, str(log_path)), popen


def stop(procs: Sequence[Proc], grace_s: float = 10.0) -> list[str]:
    """SIGTERM each live process group in order, then SIGKILL stragglers.

    Returns the names that had to be killed.
    """
    live = [p for p in procs if p.alive()]
    for proc in live:
        _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while proc.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
    killed = [p.name for p in live if p.alive()]
    for proc in live:
        if proc.alive():
            _signal_group(proc, signal.SIGKILL)
    for proc in live:
        deadline = time.monotonic() + 5
        while proc.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
    for proc in procs:
        handle = _handles.pop(proc.pid, None)
        if handle is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                handle.wait(timeout=1)
    return killed


def _signal_group(proc: Proc, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # pid == pgid: each child leads its own session
