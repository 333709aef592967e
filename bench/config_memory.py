"""Controller memory against a cluster full of ConfigMaps and Secrets it has
no business with (Helm release Secrets, other teams' config).

    python -m bench.config_memory [--services 100] [--objects 5000] [--size-kib 50]

A real `canary run` manages N Services, each reading a ConfigMap of its own.
Its RSS is read (from /proc) once they are all adopted, then again after
`--objects` ConfigMaps and as many Secrets of `--size-kib` each appear in
another namespace, and again after a restart (the initial list is the
moment a cache of everything would peak).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import time
from pathlib import Path

from bench import harness
from canary.kube import Kube
from canary.kube.resources import CONFIGMAPS, DEPLOYMENTS, SECRETS, SERVICES


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def managed(kube: Kube, ns: str, count: int) -> None:
    async def one(i: int) -> None:
        name = f"app{i}"
        await kube.create(
            CONFIGMAPS.path(ns), {"metadata": {"name": f"{name}-config"}, "data": {"k": str(i)}}
        )
        deployment, service = harness.app(
            name,
            1,
            {"canary.io/strategy": "canary", "canary.io/interval": "10s"},
            simulate=False,
        )
        deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"] = [
            {"configMapRef": {"name": f"{name}-config"}}
        ]
        await kube.create(DEPLOYMENTS.path(ns), deployment)
        await kube.create(SERVICES.path(ns), service)

    for start in range(0, count, 20):
        await asyncio.gather(*(one(i) for i in range(start, min(start + 20, count))))


async def adopted(kube: Kube, ns: str, count: int, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listing = await kube.get(SERVICES.path(ns))
        done = sum(
            1
            for s in listing.get("items", [])
            if '"adopted":true'
            in (s["metadata"].get("annotations") or {}).get("canary.io/status", "")
        )
        if done >= count:
            return
        await asyncio.sleep(2)
    raise TimeoutError("not all Services adopted")


async def unrelated(kube: Kube, ns: str, objects: int, size_kib: int) -> None:
    blob = base64.b64encode(os.urandom(size_kib * 768)).decode()  # ~size_kib KiB of text

    async def one(i: int) -> None:
        await kube.create(
            CONFIGMAPS.path(ns), {"metadata": {"name": f"other-{i}"}, "data": {"blob": blob}}
        )
        await kube.create(
            SECRETS.path(ns),
            {
                "metadata": {"name": f"sh.helm.release.v1.other-{i}"},
                "type": "helm.sh/release.v1",
                "data": {"release": base64.b64encode(blob.encode()[: size_kib * 768]).decode()},
            },
        )

    for start in range(0, objects, 25):
        await asyncio.gather(*(one(i) for i in range(start, min(start + 25, objects))))


async def run(services: int, objects: int, size_kib: int, log: Path) -> list[list[str]]:
    rows: list[list[str]] = []
    with harness.sandbox() as box:
        async with (
            await harness.client(box) as kube,
            harness.namespace(kube, "bench-mem-apps"),
            harness.namespace(kube, "bench-mem-other"),
        ):
            controller = harness.Controller(box, None, log)
            try:
                await controller.ready()
                await managed(kube, "bench-mem-apps", services)
                await adopted(kube, "bench-mem-apps", services)
                await asyncio.sleep(5)
                pid = controller.popen.pid
                rows.append([f"{services} Services adopted", f"{rss_mib(pid):.0f}", "-"])
                began = time.monotonic()
                await unrelated(kube, "bench-mem-other", objects, size_kib)
                made = time.monotonic() - began
                await asyncio.sleep(10)
                rows.append(
                    [
                        f"+ {objects} ConfigMaps and {objects} Secrets of {size_kib} KiB "
                        f"(created in {made:.0f} s)",
                        f"{rss_mib(pid):.0f}",
                        f"{peak_mib(pid):.0f}",
                    ]
                )
            finally:
                controller.stop()
            controller = harness.Controller(box, None, log)
            try:
                began = time.monotonic()
                await controller.ready()
                await asyncio.sleep(10)
                pid = controller.popen.pid
                rows.append(
                    [
                        f"restarted: lists all of it again (ready in "
                        f"{time.monotonic() - began:.1f} s)",
                        f"{rss_mib(pid):.0f}",
                        f"{peak_mib(pid):.0f}",
                    ]
                )
            finally:
                controller.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--objects", type=int, default=5000)
    parser.add_argument("--size-kib", type=int, default=50)
    parser.add_argument("--log", default="/tmp/canary-bench-memory.log")
    args = parser.parse_args()
    rows = asyncio.run(run(args.services, args.objects, args.size_kib, Path(args.log)))
    print(harness.table(["controller", "RSS MiB", "peak RSS MiB"], rows))


if __name__ == "__main__":
    main()
