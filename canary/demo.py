"""`make demo`: the sandbox, the controller as a real process, the example
app, a good release promoted and a bad one rolled back, each shown live and
then as its timeline.

    python -m canary.demo [--keep] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from canary import oncall
from canary.kube import Informer, Kube, WatchEvent, connect
from canary.kube.resources import DEPLOYMENTS, SERVICES
from canary.sandbox import cluster, configs
from canary.sandbox.binaries import binary_dir
from canary.sandbox.runner import ControllerProcess
from canary.spec import STATUS

EXAMPLE = Path(__file__).resolve().parents[1] / "manifests" / "examples" / "canary.yaml"
NAMESPACE, SERVICE = "shop", "web"


def say(text: str) -> None:
    print(text, flush=True)


def show(event: WatchEvent, last: list[str]) -> None:
    """Print each status change of the Service as it happens."""
    if event.key != (NAMESPACE, SERVICE):
        return
    raw = (event.object["metadata"].get("annotations") or {}).get(STATUS)
    if not raw:
        return
    status = json.loads(raw)
    line = (
        f"{status['phase']:<12} step {status['step'] + 1 if status.get('canary') else '-':<2} "
        f"weight {status['requested_weight']:>3}%/{status['effective_weight']:>5.1f}%  "
        f"{status['message']}"
    )
    if last and last[-1] == line:
        return
    last.append(line)
    say(f"  {time.strftime('%H:%M:%S')}  {line}")


async def until(
    kube: Kube, what: str, check: Callable[[dict[str, Any]], bool], timeout_s: float = 120
) -> dict[str, Any]:
    """The demo waits on the status the controller writes (the live lines come
    from the watch above; this only decides when to tell the next part)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = (await oncall.status(kube, NAMESPACE, SERVICE))[0]
        if check(status):
            return status
        await asyncio.sleep(0.5)
    raise TimeoutError(f"demo: timed out after {timeout_s:.0f}s waiting for {what}")


async def release(kube: Kube, image: str, annotations: dict[str, str | None]) -> None:
    await kube.patch(
        DEPLOYMENTS.path(NAMESPACE, SERVICE),
        {
            "spec": {
                "template": {
                    "metadata": {"annotations": annotations},
                    "spec": {"containers": [{"name": "web", "image": image}]},
                }
            }
        },
        patch_type="strategic",
    )


async def story(sandbox: cluster.Sandbox, kubectl: str) -> None:
    env = {**os.environ, "KUBECONFIG": sandbox.kubeconfig}
    apply = await asyncio.create_subprocess_exec(
        kubectl, "apply", "-f", str(EXAMPLE), env=env, stdout=asyncio.subprocess.DEVNULL
    )
    if await apply.wait() != 0:
        raise RuntimeError(f"kubectl apply -f {EXAMPLE} failed")
    async with await connect(sandbox.kubeconfig) as kube:
        last: list[str] = []
        watcher = Informer(kube, SERVICES, namespace=NAMESPACE, on_event=lambda e: show(e, last))
        watching = asyncio.create_task(watcher.run())
        try:
            say("\n== adopting shop/web: twins created, Service moved, source scaled to 0")
            await until(kube, "adoption", lambda s: s.get("phase") == "Healthy")
            await asyncio.sleep(3)  # let the simulator's traffic reach Prometheus
            say("\n== release v2 (good): kubectl set image deployment/web web=.../web:v2")
            await release(kube, "registry.example/web:v2", {})
            good = await until(kube, "the rollout", lambda s: bool(s.get("canary_revision")))
            revision = good["canary_revision"]
            await until(kube, "promotion", lambda s: s.get("stable_revision") == revision)
            say("\n== release v3 (bad: 30% of its requests fail)")
            await release(kube, "registry.example/web:v3", {"sandbox.canary.io/error-rate": "0.3"})
            await until(kube, "rollback", lambda s: s.get("phase") == "RolledBack")
            await asyncio.sleep(1)
        finally:
            watching.cancel()
        records = await oncall.revisions(kube, NAMESPACE, SERVICE)
        color = sys.stdout.isatty()
        say("\n== canary history web -n shop\n" + oncall.history_text(records, color))
        for number in (records[-2]["number"], records[-1]["number"]):
            say(
                f"\n== canary timeline web -n shop --revision {number}\n"
                + oncall.timeline_text(records, int(number), color)
            )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m canary.demo")
    parser.add_argument("--dir", default=str(cluster.default_dir().with_name("demo")))
    parser.add_argument("--keep", action="store_true", help="leave the sandbox running")
    args = parser.parse_args()
    started = time.monotonic()
    directory = Path(args.dir)
    say(f"== sandbox up ({directory})")
    sandbox = cluster.up(directory, say=lambda s: say(f"  {s}"))
    controller = None
    try:
        subprocess.run(
            [
                str(binary_dir() / "kubectl"),
                "delete",
                "namespace",
                NAMESPACE,
                "--ignore-not-found",
                "--wait=true",
            ],
            check=False,
            env={**os.environ, "KUBECONFIG": sandbox.kubeconfig},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        log = directory / "logs" / "controller.log"
        say(f"== canary run (a real process; log: {log})")
        controller = ControllerProcess(sandbox, log, ["--lease-namespace", "default"])
        # Prometheus scrapes the controller's own metrics too (canary_* series).
        configs.scrape_target(
            directory / "prometheus-targets", "canary", f"127.0.0.1:{controller.port}"
        )
        asyncio.run(story(sandbox, str(binary_dir() / "kubectl")))
        say(f"\n== demo finished in {time.monotonic() - started:.0f}s")
    finally:
        if controller is not None:
            controller.stop()
        if args.keep:
            say(f'sandbox kept: eval "$(canary sandbox env --dir {directory})"')
        else:
            cluster.down(directory)


if __name__ == "__main__":
    main()
