"""The real kubectl (from the sandbox's binary cache), run asynchronously:
the fleet and the fault injector act the way people and tools do."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Done:
    code: int
    out: str
    err: str

    @property
    def ok(self) -> bool:
        return self.code == 0


class Kubectl:
    def __init__(self, binary: str, kubeconfig: str, timeout_s: float = 60.0) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig
        self.timeout_s = timeout_s
        self.calls = 0

    async def run(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> Done:
        self.calls += 1
        proc = await asyncio.create_subprocess_exec(
            self.binary,
            f"--kubeconfig={self.kubeconfig}",
            "--request-timeout=20s",
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(stdin.encode() if stdin is not None else None), self.timeout_s
            )
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return Done(-1, "", f"kubectl {args[0]} timed out after {self.timeout_s:g}s")
        return Done(
            proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")
        )

    async def apply(
        self, docs: Sequence[dict[str, Any]], manager: str, force: bool = False
    ) -> Done:
        """`kubectl apply --server-side` of the documents, as one file."""
        with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
            path = Path(tmp) / "manifests.json"
            path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": list(docs)}))
            args = ["apply", "--server-side", f"--field-manager={manager}", "-f", str(path)]
            if force:
                args.insert(2, "--force-conflicts")
            done = await self.run(*args)
        if not done.ok:
            raise KubectlError(f"kubectl apply failed: {done.err.strip()}")
        return done

    async def json(self, *args: str) -> Any:
        done = await self.run(*args, "-o", "json")
        if not done.ok:
            raise KubectlError(f"kubectl {' '.join(args)}: {done.err.strip()}")
        return json.loads(done.out)


class KubectlError(RuntimeError):
    pass
