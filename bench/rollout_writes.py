"""One rollout's API writes, request by request, from the API server's audit log.

    python -m bench.rollout_writes [--replicas 1]

A sandbox with the audit log on and the controller under a user of its own;
one app (steps 25,50,75, an always-passing query, the scale benchmark's
settings) adopted, then released once. Prints every write the controller
made from the release until the promotion settled (seconds after the
release, verb, resource, name, HTTP code), the total, and the Events in
order, so each write can be put to its phase (issue #12's count per step).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import harness
from bench.scale import ANALYSIS, INTERVAL_S, wait_all
from canary.kube.resources import DEPLOYMENTS, EVENTS
from canary.sandbox import cluster
from canary.sandbox.runner import ControllerProcess

USER = "canary-controller-bench"


async def one_rollout(box: cluster.Sandbox, replicas: int, log: Path) -> tuple[float, float, Any]:
    """(release time, settled time, the namespace's Events)."""
    controller_box = dataclasses.replace(box, kubeconfig=box.users[USER])
    async with await harness.client(box) as kube, harness.namespace(kube, "writes") as ns:
        controller = ControllerProcess(controller_box, log, ["--no-leader-elect", "-n", ns])
        await controller.ready()
        annotations = {
            "canary.io/strategy": "canary",
            "canary.io/steps": "25,50,75",
            "canary.io/interval": f"{INTERVAL_S}s",
            "canary.io/analysis": ANALYSIS,
            "canary.io/scale-down-delay": "0s",
        }
        await harness.create_app(kube, ns, "app", replicas, annotations, simulate=False)
        await wait_all(kube, ns, 1, lambda s: s.get("phase") == "Healthy", 300)
        await asyncio.sleep(5)  # adoption's last writes settle
        released = time.time()
        image = {"containers": [{"name": "app", "image": "r.example/app:1"}]}
        await kube.patch(
            DEPLOYMENTS.path(ns, "app"),
            {"spec": {"template": {"spec": image}}},
            patch_type="strategic",
        )
        await wait_all(
            kube, ns, 1, lambda s: s.get("phase") == "Healthy" and s.get("stable") == "green", 300
        )
        await asyncio.sleep(8)  # the old twin's scale-down and its status
        settled = time.time()
        events = await kube.get(EVENTS.path(ns))
        controller.stop()
    return released, settled, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=1)
    args = parser.parse_args()
    options = cluster.Options(users=(USER,), audit=True)
    with tempfile.TemporaryDirectory(prefix="writes-") as tmp:
        box = cluster.up(Path(tmp), nodes=3, say=lambda _: None, options=options)
        try:
            released, settled, events = asyncio.run(
                one_rollout(box, args.replicas, Path(tmp) / "controller.log")
            )
            writes = 0
            with open(box.audit_log) as audit:
                for line in audit:
                    entry = json.loads(line)
                    if entry.get("user", {}).get("username") != USER:
                        continue
                    if entry.get("stage") != "ResponseComplete" or entry.get("verb") not in (
                        "create",
                        "update",
                        "patch",
                        "delete",
                    ):
                        continue
                    at = dt.datetime.fromisoformat(entry["requestReceivedTimestamp"]).timestamp()
                    if not released <= at <= settled:
                        continue
                    ref = entry.get("objectRef") or {}
                    resource = ref.get("resource", "") + (
                        f"/{ref['subresource']}" if ref.get("subresource") else ""
                    )
                    code = (entry.get("responseStatus") or {}).get("code")
                    writes += 1
                    print(
                        f"{at - released:7.2f} s  {entry['verb']:6}  {resource:12}  "
                        f"{ref.get('name', '')}  {code}"
                    )
        finally:
            cluster.down(Path(tmp))
    print(f"writes: {writes} ({args.replicas} replicas, steps 25,50,75)")
    ours = [e for e in events["items"] if (e.get("source") or {}).get("component") == "canary"]
    for event in sorted(ours, key=lambda e: e["metadata"]["creationTimestamp"]):
        print(f"  {event['metadata']['creationTimestamp']}  {event['reason']}")


if __name__ == "__main__":
    main()
