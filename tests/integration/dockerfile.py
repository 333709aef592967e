"""Follow the project's Dockerfile without a Docker engine.

Each instruction is carried out as Docker would, in a layer per stage (see
rootfs.py): COPY copies from the build context or another stage, RUN runs the
shell command as root in that stage's root filesystem (with the network, as
`docker build` has), ENV/WORKDIR/USER/ENTRYPOINT/CMD/EXPOSE are recorded.
An instruction this does not know fails the build: a Dockerfile change is
never skipped silently.

What cannot be done here: pulling the base image. `FROM python:3.11-slim` is
stood in for by this machine's Debian python3.11 (with `python`/`python3` in
/usr/local/bin as in the official image); see BASE_IMAGES.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration import rootfs


@dataclass(frozen=True)
class BaseImage:
    """What a base image we can stand in for provides: its environment and
    the python it puts on PATH (links into this machine's Debian python)."""

    env: dict[str, str]
    links: dict[str, str]


BASE_IMAGES = {
    "python:3.11-slim": BaseImage(
        env={
            "PATH": "/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
        },
        links={
            "/usr/local/bin/python": "/usr/bin/python3.11",
            "/usr/local/bin/python3": "/usr/bin/python3.11",
        },
    ),
}


class UnsupportedInstruction(ValueError):
    pass


@dataclass
class Stage:
    name: str
    layer: rootfs.Layer
    env: dict[str, str]
    workdir: str = "/"
    user: str = "0"
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    exposed: list[str] = field(default_factory=list)

    def uid_gid(self) -> tuple[int, int]:
        uid, _, gid = self.user.partition(":")
        if not uid.isdigit() or (gid and not gid.isdigit()):
            raise UnsupportedInstruction(f"USER {self.user}: only numeric uid[:gid] is followed")
        return int(uid), int(gid or uid)

    def home(self) -> str:
        """HOME as the runtime sets it: from the image's /etc/passwd entry."""
        uid, _ = self.uid_gid()
        passwd = self.layer.path("/etc/passwd")
        text = passwd.read_text() if passwd.exists() else Path("/etc/passwd").read_text()
        for line in text.splitlines():
            fields = line.split(":")
            if len(fields) >= 6 and fields[2] == str(uid):
                return fields[5]
        return "/"


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction; continuations joined, comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    result = []
    for line in joined:
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), value)


def _resolve(workdir: str, path: str) -> str:
    return os.path.normpath(path if path.startswith("/") else f"{workdir}/{path}")


def _copy(sources: list[Path], dest: Path, into_dir: bool) -> None:
    for source in sources:
        if not source.exists():
            raise FileNotFoundError(f"COPY source {source} does not exist")
        target = dest / source.name if (into_dir and source.is_file()) else dest
        if source.is_dir():
            shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


class _Build:
    def __init__(self, context: Path, out: Path, log: Path) -> None:
        self.context, self.out, self.log = context, out, log
        self.stages: dict[str, Stage] = {}
        self.stage: Stage | None = None

    def do(self, keyword: str, args: str) -> None:
        began = time.monotonic()
        if keyword == "FROM":
            self.start_stage(args)
        elif self.stage is None:
            raise UnsupportedInstruction(f"{keyword} before FROM")
        else:
            self.follow(self.stage, keyword, args)
        with open(self.log, "a") as record:
            record.write(f"# {keyword} {args}  [{time.monotonic() - began:.1f} s]\n")

    def start_stage(self, args: str) -> None:
        match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", args, flags=re.IGNORECASE)
        if match is None:
            raise UnsupportedInstruction(f"FROM {args}")
        image, alias = match.group(1), match.group(2) or ""
        if image not in BASE_IMAGES:
            raise UnsupportedInstruction(f"FROM {image}: no stand-in for this base image")
        base = BASE_IMAGES[image]
        name = alias or str(len(self.stages))
        layer = rootfs.Layer(self.out / f"stage-{name}")
        shutil.rmtree(layer.directory, ignore_errors=True)
        layer.create()
        for link, target in base.links.items():
            layer.path(link).parent.mkdir(parents=True, exist_ok=True)
            layer.path(link).symlink_to(target)
        self.stage = Stage(name=name, layer=layer, env=dict(base.env))
        self.stages[name] = self.stage

    def follow(self, stage: Stage, keyword: str, args: str) -> None:
        if keyword == "WORKDIR":
            stage.workdir = _resolve(stage.workdir, _expand(args, stage.env))
            stage.layer.path(stage.workdir).mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            self.copy(stage, shlex.split(args))
        elif keyword == "RUN":
            if args.startswith("["):
                raise UnsupportedInstruction("RUN in exec form")
            uid, gid = stage.uid_gid()
            done = rootfs.run(
                stage.layer,
                ["/bin/sh", "-c", args],
                env={**stage.env, "HOME": stage.home()},
                cwd=stage.workdir,
                uid=uid,
                gid=gid,
                log=self.log,
            )
            if done.returncode != 0:
                raise RuntimeError(f"RUN {args!r} failed ({done.returncode}); see {self.log}")
        elif keyword == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                stage.env[key] = _expand(value, stage.env)
        elif keyword == "USER":
            stage.user = args
        elif keyword == "EXPOSE":
            stage.exposed.extend(args.split())
        elif keyword in ("ENTRYPOINT", "CMD"):
            if not args.startswith("["):
                raise UnsupportedInstruction(f"{keyword} in shell form")
            setattr(stage, keyword.lower(), list(json.loads(args)))
        else:
            raise UnsupportedInstruction(keyword)

    def copy(self, stage: Stage, words: list[str]) -> None:
        origin = self.context
        for flag in (w for w in words if w.startswith("--")):
            key, _, value = flag[2:].partition("=")
            if key != "from":
                raise UnsupportedInstruction(f"COPY {flag}")
            # The paths a later stage copies were made in that stage's own layer.
            origin = self.stages[value].layer.upper
        *sources, dest = [w for w in words if not w.startswith("--")]
        into_dir = dest.endswith("/") or len(sources) > 1
        target = stage.layer.path(_resolve(stage.workdir, dest))
        _copy([origin / s.lstrip("/") for s in sources], target, into_dir)


def build(dockerfile: Path, context: Path, out: Path, log: Path) -> Stage:
    """Carry out every instruction; returns the final stage (the image)."""
    builder = _Build(context, out, log)
    for keyword, args in instructions(dockerfile.read_text()):
        builder.do(keyword, args)
    if builder.stage is None:
        raise UnsupportedInstruction("no FROM")
    final = builder.stage
    saved = {k: v for k, v in vars(final).items() if k != "layer"}
    (out / "image.json").write_text(json.dumps({**saved, "layer": str(final.layer.directory)}))
    return final


def load(out: Path) -> Stage | None:
    """The image a previous build() left in out, if any."""
    try:
        saved = json.loads((out / "image.json").read_text())
    except FileNotFoundError:
        return None
    return Stage(**{**saved, "layer": rootfs.Layer(Path(saved["layer"]))})
