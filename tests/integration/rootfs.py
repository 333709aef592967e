"""Run a command in a container-like root filesystem without a container
engine: a private mount namespace (util-linux `unshare`) in which an overlay
of this machine's root and one image layer is mounted and entered with
`chroot`, optionally read-only and as another uid (`setpriv`).

The host's root stands in for the base image (see dockerfile.py); what the
image adds lives in the layer's `upper` directory, so the host is never
written. Directories that must not leak from the host into the "image"
(/tmp, /root, /home, /work, /run) are masked with empty tmpfs mounts,
read-only too when the root is.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MASKED = ("/tmp", "/root", "/home", "/work", "/run")


@dataclass(frozen=True)
class Layer:
    directory: Path

    @property
    def upper(self) -> Path:
        return self.directory / "upper"

    @property
    def work(self) -> Path:
        return self.directory / "work"

    @property
    def mountpoint(self) -> Path:
        return self.directory / "root"

    def create(self) -> None:
        for path in (self.upper, self.work, self.mountpoint):
            path.mkdir(parents=True, exist_ok=True)

    def path(self, inside: str) -> Path:
        """Where a path of the image lives in this layer on the host."""
        return self.upper / inside.lstrip("/")


def command(
    layer: Layer,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str = "/",
    uid: int = 0,
    gid: int = 0,
    read_only: bool = False,
    binds: Mapping[str, Path] | None = None,
) -> list[str]:
    """The argv that runs `argv` inside the layer's root filesystem.

    Every step execs the next, so the pid a caller gets is the command's own
    and a signal sent to it reaches the command itself."""
    root = shlex.quote(str(layer.mountpoint))
    options = f"lowerdir=/,upperdir={layer.upper},workdir={layer.work}"
    lines = [
        "set -e",
        f"mount -t overlay overlay -o {'ro,' if read_only else ''}{options} {root}",
        *(f"mount --rbind /{d} {root}/{d}" for d in ("proc", "dev", "sys")),
    ]
    for masked in MASKED:
        mode = "1777" if masked == "/tmp" else "0755"
        lines.append(f"mount -t tmpfs -o mode={mode},size=1g tmpfs {root}{masked}")
    for inside, source in (binds or {}).items():
        # Resolved on the host, whose root is the image's lowest layer
        # (/var/run is a link to /run there, as in most images).
        target = f"{root}{shlex.quote(os.path.realpath(inside))}"
        lines.append(f"mkdir -p {target}")
        lines.append(f"mount --bind {shlex.quote(str(source))} {target}")
        lines.append(f"mount -o remount,ro,bind {target}")
    if read_only:
        lines.extend(f"mount -o remount,ro {root}{masked}" for masked in MASKED)
    drop = [] if uid == 0 else [
        "/usr/bin/setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
        "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all",
    ]  # fmt: skip
    enter = [
        "chroot", str(layer.mountpoint), *drop,
        "/usr/bin/env", "-i", f"--chdir={cwd}", *(f"{k}={v}" for k, v in env.items()),
        *argv,
    ]  # fmt: skip
    lines.append("exec " + shlex.join(enter))
    return ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", "\n".join(lines)]


def run(
    layer: Layer,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str = "/",
    uid: int = 0,
    gid: int = 0,
    read_only: bool = False,
    binds: Mapping[str, Path] | None = None,
    log: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run to completion; output captured (and appended to log when given)."""
    done = subprocess.run(
        command(layer, argv, env=env, cwd=cwd, uid=uid, gid=gid, read_only=read_only, binds=binds),
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if log is not None:
        with open(log, "a") as out:
            out.write(f"$ {shlex.join(argv)}\n{done.stdout}{done.stderr}[exit {done.returncode}]\n")
    return done
