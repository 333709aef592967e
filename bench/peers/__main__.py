"""canary against Argo Rollouts and Flagger: one sandbox, one run, the same
releases at the same moment.

    python -m bench.peers [--rounds 10] [--interval 5] [--seed 1] [--out DIR]

Copies of one app (4 replicas, the simulator's 50 requests/s), each in a
namespace of its own: canary's canary strategy and Argo Rollouts' basic
canary with inline analysis (steps 25/50/75), canary's blue-green and
Flagger's blue-green (provider kubernetes), and Argo with background analysis
(a check of the issue's note, not an equivalent setting). Each round releases,
to all at once: a bad release, a good
one right after it, a good one, one that turns bad during its first step, one
that gets no traffic (see releases.py). Each controller runs as a real
process under an API user of its own; the API server's audit log counts their
writes. Manifests: bench/peers/manifests/. Peers built by hack/build-peers.sh.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.peers import apps, controllers, releases, report
from bench.peers.apps import ANALYSIS_RUNS, APPS, ARGO_BACKGROUND, App
from bench.peers.observe import Observer
from canary.kube import Kube, KubeError, connect
from canary.kube.resources import CONFIGMAPS, NAMESPACES, Resource
from canary.sandbox import cluster
from canary.sandbox.binaries import binary_dir

ROOT = Path(__file__).resolve().parents[2]
USERS = tuple(app.user for app in APPS)
CRDS = Resource("apiextensions.k8s.io/v1", "customresourcedefinitions", namespaced=False)


@dataclasses.dataclass(frozen=True)
class Peers:
    bin: Path
    argo_crds: Path
    flagger_crds: Path


def build_peers() -> Peers:
    result = subprocess.run(
        ["bash", str(ROOT / "hack" / "build-peers.sh")],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    found = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return Peers(Path(found["bin"]), Path(found["argo-rollouts-crds"]), Path(found["flagger-crds"]))


def version(binary: Path, *args: str) -> str:
    out = subprocess.run([str(binary), *args], capture_output=True, text=True, check=False)
    return (out.stdout + out.stderr).strip().splitlines()[0] if out.stdout or out.stderr else "?"


@contextlib.contextmanager
def sandbox(directory: Path | None) -> Iterator[cluster.Sandbox]:
    options = cluster.Options(users=USERS, audit=True)
    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="peers-")))
        box = cluster.up(directory, nodes=3, say=lambda _: None, options=options)
        try:
            yield box
        finally:
            cluster.down(directory)


def install_crds(kubectl: str, kubeconfig: str, peers: Peers) -> None:
    files = [*sorted(peers.argo_crds.glob("*-crd.yaml")), peers.flagger_crds]
    for path in files:
        apps.kubectl_apply(kubectl, kubeconfig, "default", path.read_text())


async def established(kube: Kube, timeout_s: float = 120) -> None:
    """The peers' CRDs serve their kinds (a Rollout applied earlier fails)."""
    deadline = time.monotonic() + timeout_s
    for crd in ("rollouts.argoproj.io", "analysistemplates.argoproj.io", "canaries.flagger.app"):
        while True:
            with contextlib.suppress(KubeError):
                found = await kube.get(CRDS.path(name=crd))
                conditions = found.get("status", {}).get("conditions") or []
                if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {crd} not established in {timeout_s:.0f}s")
            await asyncio.sleep(0.5)


async def settled(kube: Kube, observer: Observer, app: App, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if observer.namespaces[app.namespace].at_rest(observer, releases.PRODUCTION, apps.REPLICAS):
            current = await apps.phase(kube, app)
            if apps.done(app, current):
                return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{app.label} did not settle in {timeout_s:.0f}s")


async def save_histories(kube: Kube, targets: tuple[App, ...], directory: Path, image: str) -> None:
    """canary's own record of each check (queries, windows, values) and Argo's
    AnalysisRuns, to read their timings and values afterwards (Flagger keeps
    no record beyond its log and Events)."""
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    for app in targets:
        path = directory / f"{app.user}-{image.rsplit(':', 1)[1]}.json"
        with contextlib.suppress(KubeError):
            if app.controller == "canary":
                cm = await kube.get(CONFIGMAPS.path(app.namespace, "web-canary-history"))
                await asyncio.to_thread(path.write_text, cm["data"]["history.json"])
            elif app.controller == "argo":
                # Argo's measurements (value, phase) live in its AnalysisRuns.
                runs = await kube.get(ANALYSIS_RUNS.path(app.namespace))
                await asyncio.to_thread(path.write_text, json.dumps(runs["items"], indent=1))


def append_outcomes(path: Path, results: list[releases.Outcome]) -> None:
    """Each release's outcomes as soon as it ends: they survive a crash mid-run."""
    with open(path, "a") as record:
        for o in results:
            record.write(json.dumps(dataclasses.asdict(o)) + "\n")


async def sample(usages: list[controllers.Usage]) -> None:
    while True:
        for usage in usages:
            usage.sample()
        await asyncio.sleep(1.0)


async def run(args: argparse.Namespace, peers: Peers, out: Path) -> dict[str, object]:
    rng = random.Random(args.seed)
    # SIGTERM (and SIGINT, ignored in a background job) cancel the run, so the
    # controllers stop and the sandbox comes down.
    main = asyncio.current_task()
    assert main is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, main.cancel)
    targets = tuple(a for a in APPS if args.apps == "all" or a.user in args.apps.split(","))
    kubectl = str(binary_dir() / "kubectl")
    with sandbox(args.sandbox_dir) as box:
        install_crds(kubectl, box.kubeconfig, peers)
        async with await connect(box.kubeconfig) as kube:
            await established(kube)
            for name in ("argo-rollouts", *(a.namespace for a in targets)):
                await kube.create(NAMESPACES.path(), {"metadata": {"name": name}})
            for app in targets:
                apps.kubectl_apply(
                    kubectl,
                    box.kubeconfig,
                    app.namespace,
                    app.render(box.prometheus_url, args.interval),
                )
            logs = out / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            running: list[controllers.Controller] = []
            try:
                for app in targets:
                    log = logs / f"{app.user}.log"
                    jail = out / f"jail-{app.user}"
                    if app.controller == "canary":
                        running.append(
                            controllers.Canary(box, app.label, app.user, app.namespace, log)
                        )
                    elif app.controller == "argo":
                        instance = "background" if app is ARGO_BACKGROUND else ""
                        running.append(
                            controllers.argo_rollouts(box, peers.bin, app.user, instance, jail, log)
                        )
                    else:
                        running.append(
                            controllers.flagger(box, peers.bin, app.namespace, jail, log)
                        )
                return await _releases(args, rng, box, kube, targets, running, out)
            finally:
                for controller in running:
                    controller.stop()
                if box.audit_log:
                    shutil.copy(box.audit_log, out / "audit.log")


async def _releases(
    args: argparse.Namespace,
    rng: random.Random,
    box: cluster.Sandbox,
    kube: Kube,
    targets: tuple[App, ...],
    running: list[controllers.Controller],
    out: Path,
) -> dict[str, object]:
    observer = Observer(kube, [a.namespace for a in targets])
    watches = [asyncio.create_task(observer.pods.run()), asyncio.create_task(observer.slices.run())]
    await asyncio.gather(*(settled(kube, observer, app, 180) for app in targets))
    print(f"{len(targets)} apps serve 4 pods each; releasing", flush=True)
    usages = [controllers.Usage(c.pid) for c in running]
    for usage in usages:
        usage.start()
    sampler = asyncio.create_task(sample(usages))
    budget = 30 * args.interval + 120
    outcomes: list[releases.Outcome] = []
    starts: list[float] = []
    kinds = args.kinds.split(",")
    for n in range(args.rounds):
        for kind in kinds:
            image = f"r.example/app:{n + 1}-{kind}"
            released, results = await releases.release_all(
                kube, observer, box.prometheus_url, targets, kind, image, args.interval, rng, budget
            )
            starts.append(released)
            outcomes.extend(results)
            await asyncio.to_thread(append_outcomes, out / "outcomes.jsonl", results)
            line = "  ".join(
                f"{o.app}: {o.result}"
                + (
                    f" out {o.out_of_slices - o.failure_visible:.1f}s"
                    if o.out_of_slices and o.failure_visible
                    else ""
                )
                + (f" new {o.all_traffic_new - o.released:.1f}s" if o.all_traffic_new else "")
                for o in results
            )
            print(f"round {n + 1} {kind:<10} {line}", flush=True)
            await save_histories(kube, targets, out / "history", image)
            dead = [c.name for c in running if not c.alive()]
            if dead:
                raise RuntimeError(f"controller exited: {', '.join(dead)}")
    end = time.time()
    for usage in usages:
        usage.stop()
    sampler.cancel()
    for task in watches:
        task.cancel()
    windows = list(zip(starts, [*starts[1:], end], strict=True))
    writes = report.audit_writes(Path(box.audit_log), USERS)
    columns, detail = {}, []
    for app, usage in zip(targets, usages, strict=True):
        mine = [o for o in outcomes if o.app == app.label]
        per_release = report.writes_per_release(writes, app.user, windows)
        columns[app.label] = report.column(mine, usage, per_release, app.steps)
        for result in ("promoted", "rolled-back"):
            chosen = [w for w, o in zip(windows, mine, strict=True) if o.result == result]
            detail.append(
                f"{app.label} ({app.user}) writes per {result} rollout: "
                + report.writes_by_resource(writes, app.user, chosen)
            )
    text = "\n\n".join(
        [
            f"{args.rounds} rounds x {len(kinds)} releases, interval {args.interval:g}s, "
            f"seed {args.seed}",
            report.comparison(targets, columns),
            "\n".join(detail),
            report.outcomes_table(outcomes),
        ]
    )
    return {
        "text": text,
        "markdown": report.comparison(targets, columns, markdown=True),
        "columns": {k: dataclasses.asdict(v) for k, v in columns.items()},
        "outcomes": [dataclasses.asdict(o) for o in outcomes],
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers")
    parser.add_argument("--rounds", type=int, default=10)
    # Flagger's floor: it never checks more often than every 10 s.
    parser.add_argument("--interval", type=float, default=10.0, help="check interval, seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kinds", default=",".join(releases.KINDS))
    parser.add_argument(
        "--apps", default="all", help="only these controllers' users, e.g. canary,flagger"
    )
    parser.add_argument("--sandbox-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("/tmp/canary-bench-peers"))
    args = parser.parse_args()
    peers = build_peers()
    args.out.mkdir(parents=True, exist_ok=True)
    versions = {
        "argo-rollouts": version(peers.bin / "rollouts-controller", "--version"),
        "flagger": version(peers.bin / "flagger", "-version"),
    }
    print(f"peers: {versions}", flush=True)
    result = asyncio.run(run(args, peers, args.out))
    result["versions"] = versions
    (args.out / "results.json").write_text(json.dumps(result, indent=2, default=str))
    (args.out / "report.txt").write_text(str(result["text"]) + "\n")
    (args.out / "report.md").write_text(str(result["markdown"]) + "\n")
    print("\n" + str(result["text"]))
    print(f"\nlogs, audit log and results.json in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
