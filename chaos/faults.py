"""The seeded fault injector.

One random generator, seeded, draws every choice: the gap to the next fault
(exponential), its kind (weighted), its target and its parameters. Which
fault runs when still depends on timing (a kind is only drawn among those
eligible at that moment), so a seed fixes the sequence of draws, not the
wall-clock schedule.

Eligibility keeps the soak meaningful rather than gentle: at most one
process is stopped at a time and at most one leader kill per `leader_gap_s`
(a cluster whose API server never runs proves nothing); an app takes one
app-level fault at a time, plus `app_cooldown_s`, so each fault's effect can
be told apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from random import Random

from canary.history import history_name
from canary.sandbox.cluster import Sandbox
from chaos import fleet
from chaos.checker.blind import Blindness
from chaos.controllers import Replicas
from chaos.kubectl import Kubectl

PROCESS = ("stop-apiserver", "stop-etcd", "stop-prometheus", "stop-controller-manager")
APP = (
    "replace-source",
    "recreate-service",
    "gitops-apply",
    "claim-deployment",
    "scale-twin",
    "edit-twin",
    "restart-twin",
    "pause-twin",
    "old-export",
    "quota",
    "delete-twin",
    "undo-twin",
    "delete-history",
    "scale-source",
    "delete-pod",
    "pause-rollout",
    "oncall-action",
    "edit-strategy",
    "invalid-annotation",
    "rollout-restart",
    "rollout-undo-source",
    "handback-readopt",
)
WEIGHTS: dict[str, float] = {
    "stop-apiserver": 3,
    "stop-etcd": 3,
    "stop-prometheus": 4,
    "stop-controller-manager": 3,
    "kill-leader": 3,
    "replace-source": 8,
    "recreate-service": 8,
    "gitops-apply": 8,
    "claim-deployment": 6,
    "scale-twin": 12,
    "edit-twin": 10,
    "restart-twin": 6,
    "pause-twin": 4,
    "old-export": 6,
    "quota": 6,
    "delete-twin": 5,
    "undo-twin": 5,
    "delete-history": 4,
    "scale-source": 5,
    "delete-pod": 6,
    "pause-rollout": 4,
    "oncall-action": 5,
    "edit-strategy": 4,
    "invalid-annotation": 3,
    "rollout-restart": 4,
    "rollout-undo-source": 3,
    "handback-readopt": 3,
}
# What on-call asks of the canary CLI on a bad day, and how often of those.
ONCALL = {"abort": 3, "retry": 2, "pause-resume": 2, "undo": 2, "promote": 1}
# A team's edits of its Service's annotations mid-rollout (edit-strategy).
STEPS = ("25,50", "20,50,80", "50", "10,30,60,90")
INTERVALS = ("3s", "4s", "6s")
# A typo in one annotation (invalid-annotation): the key and what is typed.
TYPOS = {
    "canary.io/steps": "25,abc",
    "canary.io/interval": "4x",
    "canary.io/failure-limit": "one",
}
STRATEGY = "canary.io/strategy"
COMPONENT = {
    "stop-apiserver": "kube-apiserver",
    "stop-etcd": "etcd",
    "stop-prometheus": "prometheus",
    "stop-controller-manager": "kube-controller-manager",
}
# The controller-manager stopped past its ordinary pace (5 s: the progress
# deadline waits for it then), never past the checker's grace (30 s): while
# it is stopped no selector change reaches the EndpointSlices.
STOP_S = {
    "kube-apiserver": (0.5, 5.0),
    "etcd": (0.5, 5.0),
    "prometheus": (2.0, 15.0),
    "kube-controller-manager": (2.0, 20.0),
}
TWIN_LABEL = "canary.io/twin"
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Injected:
    kind: str
    target: str
    started: float
    ended: float = 0.0
    ok: bool = False
    detail: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "target": self.target,
            "started": self.started,
            "ended": self.ended,
            "ok": self.ok,
            "detail": self.detail,
        }


@dataclass
class Injector:
    rng: Random
    sandbox: Sandbox
    kubectl: Kubectl
    apps: list[fleet.App]
    replicas: Replicas
    blindness: Blindness
    per_minute: float = 60.0
    leader_gap_s: float = 45.0
    app_cooldown_s: float = 10.0
    process_gap_s: float = 4.0
    log: list[Injected] = field(default_factory=list)
    _busy_apps: dict[int, float] = field(default_factory=dict)  # index -> free again at
    _process_free_at: float = 0.0
    _leader_free_at: float = 0.0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _edits: int = 0

    @property
    def injected(self) -> Counter[str]:
        return Counter(f.kind for f in self.log if f.ok)

    @property
    def failed(self) -> Counter[str]:
        return Counter(f.kind for f in self.log if f.ended and not f.ok)

    async def run(self) -> None:
        try:
            while True:
                if self.per_minute <= 0:  # a calm soak: releases only, for calibration
                    await asyncio.sleep(3600)
                    continue
                await asyncio.sleep(self.rng.expovariate(self.per_minute / 60.0))
                self._launch_one(time.time())
        finally:
            await self.drain()

    def abort(self) -> None:
        """Cancel the faults in flight (each still continues what it stopped)."""
        for task in list(self._tasks):
            task.cancel()

    async def drain(self) -> None:
        """Let faults in flight finish (a stopped process is continued)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _eligible(self, now: float) -> list[str]:
        kinds: list[str] = []
        if now >= self._process_free_at:
            kinds += PROCESS
        if now >= self._leader_free_at and now >= self._process_free_at:
            kinds.append("kill-leader")
        if any(self._busy_apps.get(a.index, 0.0) <= now for a in self.apps):
            kinds += APP
        return kinds

    def _launch_one(self, now: float) -> None:
        kinds = self._eligible(now)
        if not kinds:
            return
        kind = self.rng.choices(kinds, weights=[WEIGHTS[k] for k in kinds])[0]
        if kind in APP:
            free = [a for a in self.apps if self._busy_apps.get(a.index, 0.0) <= now]
            app = self.rng.choice(free)
            self._busy_apps[app.index] = float("inf")
            work = self._app_fault(kind, app)
            target = f"{app.namespace}/{app.name}"
        elif kind == "kill-leader":
            self._process_free_at = self._leader_free_at = float("inf")
            work = self._kill_leader()
            target = "leader"
        else:
            self._process_free_at = float("inf")
            component = COMPONENT[kind]
            work = self._stop(component, self.rng.uniform(*STOP_S[component]))
            target = component
        record = Injected(kind, target, now)
        self.log.append(record)
        task = asyncio.create_task(self._record(record, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _record(self, record: Injected, work: Awaitable[str]) -> None:
        try:
            record.detail = await work
            record.ok = True
        except Exception as exc:  # a fault that could not be done is reported, not fatal
            record.detail = f"{type(exc).__name__}: {exc}"
        finally:
            record.ended = time.time()
            if record.kind in APP:
                index = next(a.index for a in self.apps if record.target.endswith(a.name))
                self._busy_apps[index] = record.ended + self.app_cooldown_s
            elif record.kind == "kill-leader":
                self._leader_free_at = record.ended + self.leader_gap_s
                self._process_free_at = record.ended + self.process_gap_s
            else:
                self._process_free_at = record.ended + self.process_gap_s

    # -- process faults ----------------------------------------------------------------

    async def _stop(self, component: str, seconds: float) -> str:
        proc = next((p for p in self.sandbox.procs if p.name == component), None)
        if proc is None or not proc.alive():
            raise RuntimeError(f"{component} is not running")
        blind = self.blindness.begin(f"{component} stopped") if component != "prometheus" else None
        try:
            os.killpg(proc.pid, signal.SIGSTOP)
            await asyncio.sleep(seconds)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGCONT)
            if blind is not None:
                self.blindness.end(blind)
        return f"SIGSTOP {component} (pid {proc.pid}) for {seconds:.1f}s, then SIGCONT"

    async def _kill_leader(self) -> str:
        return await self.replicas.kill_leader()

    # -- app faults -------------------------------------------------------------------

    def _app_fault(self, kind: str, app: fleet.App) -> Awaitable[str]:
        actions: dict[str, Callable[[fleet.App], Awaitable[str]]] = {
            "replace-source": self._replace_source,
            "recreate-service": self._recreate_service,
            "gitops-apply": self._gitops_apply,
            "claim-deployment": self._claim,
            "scale-twin": self._scale_twin,
            "edit-twin": self._edit_twin,
            "restart-twin": self._restart_twin,
            "pause-twin": self._pause_twin,
            "old-export": self._old_export,
            "quota": self._quota,
            "delete-twin": self._delete_twin,
            "undo-twin": self._undo_twin,
            "delete-history": self._delete_history,
            "scale-source": self._scale_source,
            "delete-pod": self._delete_pod,
            "pause-rollout": self._pause_rollout,
            "oncall-action": self._oncall_action,
            "edit-strategy": self._edit_strategy,
            "invalid-annotation": self._invalid_annotation,
            "rollout-restart": self._rollout_restart,
            "rollout-undo-source": self._rollout_undo_source,
            "handback-readopt": self._handback_readopt,
        }
        return actions[kind](app)

    async def _check(self, *args: str, env: dict[str, str] | None = None) -> str:
        done = await self.kubectl.run(*args, env=env)
        if not done.ok:
            raise RuntimeError(f"kubectl {args[0]}: {done.err.strip()[:300]}")
        return done.out.strip()

    async def _insist(self, *args: str, tolerate: str | tuple[str, ...]) -> None:
        """A step that undoes a fault (create the deleted Service again,
        remove the claimer or the quota) must happen even if the API server
        is stopped right then: retried for up to two minutes."""
        deadline = time.time() + 120.0
        while True:
            done = await self.kubectl.run(*args)
            tolerated = (tolerate,) if isinstance(tolerate, str) else tolerate
            if done.ok or any(t in done.err for t in tolerated):
                return
            if time.time() > deadline:
                raise RuntimeError(f"kubectl {args[0]} kept failing: {done.err.strip()[:300]}")
            await asyncio.sleep(1.0)

    async def _replace_source(self, app: fleet.App) -> str:
        """`kubectl replace --force`: the Deployment is deleted and created
        again (Helm reinstall, a forced GitOps sync, a changed selector)."""
        with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
            path = Path(tmp) / "deployment.json"
            path.write_text(json.dumps(fleet.deployment(app, app.current)))
            await self._check("replace", "--force", "-f", str(path))
        return f"replaced deployment {app.name} at {app.current.id}"

    async def _recreate_service(self, app: fleet.App) -> str:
        gap = self.rng.uniform(2.0, 20.0)
        await self._check("delete", "service", app.name, "-n", app.namespace)
        await asyncio.sleep(gap)
        with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
            path = Path(tmp) / "service.json"
            path.write_text(json.dumps(fleet.service(app)))
            await self._insist("create", "-f", str(path), tolerate="AlreadyExists")
        return f"deleted service {app.name}, created it again {gap:.1f}s later"

    async def _gitops_apply(self, app: fleet.App) -> str:
        """A GitOps tool syncing the original manifests with force: the
        selector back to `app: <name>`, the source back to full size and to
        the first release, the config back to r0."""
        await self.kubectl.apply(fleet.original(app), manager=fleet.GITOPS, force=True)
        app.current = fleet.Release(0)
        return "server-side apply --force-conflicts of the original manifests (r0)"

    async def _claim(self, app: fleet.App) -> str:
        hold = self.rng.uniform(15.0, 45.0)
        name = f"{app.name}-claim"
        with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
            path = Path(tmp) / "claim.json"
            path.write_text(json.dumps(fleet.service(app, name=name, claims=True)))
            await self._insist("create", "-f", str(path), tolerate="AlreadyExists")
        await asyncio.sleep(hold)
        await self._insist("delete", "service", name, "-n", app.namespace, tolerate="NotFound")
        return f"service {name} claimed deployment {app.name} for {hold:.0f}s"

    async def _twin(self, app: fleet.App) -> str:
        listing = await self.kubectl.json(
            "get", "deployments", "-n", app.namespace, "-l", TWIN_LABEL
        )
        names = sorted(str(d["metadata"]["name"]) for d in listing.get("items", []))
        if not names:
            raise RuntimeError(f"no twin of {app.name} to touch")
        return self.rng.choice(names)

    async def _scale_twin(self, app: fleet.App) -> str:
        twin = await self._twin(app)
        replicas = self.rng.randint(0, app.replicas + 2)
        await self._check(
            "scale", "deployment", twin, "-n", app.namespace, f"--replicas={replicas}"
        )
        return f"kubectl scale deployment {twin} --replicas={replicas}"

    async def _edit_twin(self, app: fleet.App) -> str:
        twin = await self._twin(app)
        self._edits += 1
        mark = f"e{self._edits}"
        bad = self.rng.random() < 0.3
        replicas = self.rng.choice((None, None, app.replicas + 1))
        editor = [sys.executable, "-m", "chaos.editor", "--mark", mark]
        if bad:
            editor += ["--error-rate", fleet.BAD_ERROR_RATE]
        if replicas is not None:
            editor += ["--replicas", str(replicas)]
        await self._check(
            "edit",
            "deployment",
            twin,
            "-n",
            app.namespace,
            env={"KUBE_EDITOR": " ".join(editor), "PYTHONPATH": str(ROOT)},
        )
        what = f"template annotation {mark}" + (" and error-rate 0.5" if bad else "")
        if replicas is not None:
            what += f", replicas {replicas}"
        return f"kubectl edit deployment {twin}: {what}"

    async def _restart_twin(self, app: fleet.App) -> str:
        """On-call's `kubectl rollout restart` of a twin: fresh pods, same revision."""
        twin = await self._twin(app)
        await self._check("rollout", "restart", "deployment", twin, "-n", app.namespace)
        return f"kubectl rollout restart deployment {twin}"

    async def _pause_twin(self, app: fleet.App) -> str:
        """On-call's `kubectl rollout pause` of a twin, resumed a while later."""
        twin = await self._twin(app)
        hold = self.rng.uniform(10.0, 40.0)
        await self._check("rollout", "pause", "deployment", twin, "-n", app.namespace)
        try:
            await asyncio.sleep(hold)
        finally:
            await self._insist(
                "rollout",
                "resume",
                "deployment",
                twin,
                "-n",
                app.namespace,
                tolerate=("not paused", "NotFound"),
            )
        return f"kubectl rollout pause deployment {twin} for {hold:.0f}s"

    async def _old_export(self, app: fleet.App) -> str:
        """`kubectl get service -o yaml` now, `kubectl apply` of that file a
        while later: the status and the selector of then come back (an
        export kept in a GitOps repository, a Service restored from a backup)."""
        exported = await self.kubectl.json("get", "service", app.name, "-n", app.namespace)
        age = self.rng.uniform(10.0, 60.0)
        await asyncio.sleep(age)
        meta = {
            key: value
            for key, value in exported["metadata"].items()
            if key in ("name", "namespace", "labels", "annotations")
        }
        body = {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": exported["spec"]}
        with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
            path = Path(tmp) / "service.json"
            path.write_text(json.dumps(body))
            await self._check("apply", "-f", str(path))
        phase = json.loads((meta.get("annotations") or {}).get("canary.io/status") or "{}").get(
            "phase", "none"
        )
        return f"kubectl apply of service {app.name} as exported {age:.0f}s before ({phase})"

    async def _quota(self, app: fleet.App) -> str:
        hold = self.rng.uniform(20.0, 60.0)
        pods = await self.kubectl.json("get", "pods", "-n", app.namespace)
        # No room for new pods beyond what runs, but never below the app's
        # own size. Seed 38: the stable twin scaled to 0 by hand while the
        # controller-manager was stopped; once resumed it deleted the pods,
        # and scaled up again 2 s later, to the controller's put-back. This
        # quota, counted in between, was 0 pods for 36 s: every pod refused,
        # an outage no controller could end, counted as the controller's.
        count = max(len(pods.get("items", [])), app.replicas)
        quota = {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "chaos-quota", "namespace": app.namespace},
            "spec": {"hard": {"pods": str(count)}},
        }
        with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
            path = Path(tmp) / "quota.json"
            path.write_text(json.dumps(quota))
            await self._insist("create", "-f", str(path), tolerate="AlreadyExists")
        try:
            await asyncio.sleep(hold)
        finally:
            await self._insist(
                "delete", "resourcequota", "chaos-quota", "-n", app.namespace, tolerate="NotFound"
            )
        return f"ResourceQuota pods={count} for {hold:.0f}s"

    async def _delete_twin(self, app: fleet.App) -> str:
        """On-call deletes the Deployment whose pods they see: with its pods
        (the default), or `--cascade=orphan` (its ReplicaSet and pods stay and
        keep serving, owned by nothing, until a Deployment adopts them)."""
        twin = await self._twin(app)
        cascade = self.rng.choice(("background", "orphan"))
        await self._check("delete", "deployment", twin, "-n", app.namespace, f"--cascade={cascade}")
        return f"kubectl delete deployment {twin} --cascade={cascade}"

    async def _undo_twin(self, app: fleet.App) -> str:
        """On-call's `kubectl rollout undo` of a twin: its previous ReplicaSet's
        template back (refused when the twin has only one revision)."""
        twin = await self._twin(app)
        await self._check("rollout", "undo", "deployment", twin, "-n", app.namespace)
        return f"kubectl rollout undo deployment {twin}"

    async def _delete_history(self, app: fleet.App) -> str:
        """Someone cleans up ConfigMaps: the Service's history goes mid-rollout."""
        name = history_name(app.name)
        await self._check("delete", "configmap", name, "-n", app.namespace)
        return f"kubectl delete configmap {name}"

    async def _scale_source(self, app: fleet.App) -> str:
        """The team sizes its app by hand (`kubectl scale deployment <app>`),
        under load or to save cost; the next release from Git sizes it back."""
        replicas = self.rng.randint(1, app.replicas + 2)
        await self._check(
            "scale", "deployment", app.name, "-n", app.namespace, f"--replicas={replicas}"
        )
        return f"kubectl scale deployment {app.name} --replicas={replicas}"

    async def _delete_pod(self, app: fleet.App) -> str:
        """On-call deletes one pod it sees misbehave (`kubectl delete pod`),
        of either twin, mid-step as often as not: its ReplicaSet makes a new
        one, which a check of that step sees appear in its window."""
        listing = await self.kubectl.json(
            "get", "pods", "-n", app.namespace, "-l", f"app={app.name},{TWIN_LABEL}"
        )
        names = sorted(
            str(p["metadata"]["name"])
            for p in listing.get("items", [])
            if not p["metadata"].get("deletionTimestamp")
        )
        if not names:
            raise RuntimeError(f"no pod of {app.name} to delete")
        pod = self.rng.choice(names)
        await self._check("delete", "pod", pod, "-n", app.namespace, "--wait=false")
        return f"kubectl delete pod {pod}"

    async def _pause_rollout(self, app: fleet.App) -> str:
        """On-call's `canary pause` of the Service (to look at something),
        then `canary resume` a while later: a bad canary standing paused in
        production must still be rolled back by its fast looks."""
        hold = self.rng.uniform(10.0, 40.0)
        paused = await self._canary("pause", app)
        try:
            await asyncio.sleep(hold)
        finally:
            resumed = await self._canary("resume", app)
        return f"canary {paused} {app.name}, canary {resumed} {hold:.0f}s later"

    async def _canary(self, verb: str, app: fleet.App, *extra: str) -> str:
        """The CLI as on-call runs it, under the soak's kubeconfig; retried
        for up to two minutes (a resume must land even with the API server
        stopped right then, or the pause not taken yet)."""
        deadline = time.time() + 120.0
        while True:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "canary",
                verb,
                app.name,
                *extra,
                "-n",
                app.namespace,
                f"--kubeconfig={self.kubectl.kubeconfig}",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            _, raw = await proc.communicate()
            err = raw.decode(errors="replace").strip()
            if proc.returncode == 0:
                return " ".join((verb, *extra))
            # Refused while an earlier request waits for the controller (a
            # resume while our pause is not taken yet: a leader just killed,
            # the API server stopped a while): asked again, or the pause,
            # taken later, held the app's rollouts for the rest of the soak.
            pending = "has not been taken by the controller yet" in err
            if not pending and "the API server said" not in err and "Traceback" not in err:
                return f"{verb} refused ({err[:120]})"  # nothing to resume, a rebuilt status
            if time.time() > deadline:
                raise RuntimeError(f"canary {verb}: {err[:300]}")
            await asyncio.sleep(1.0)

    async def _history(self, app: fleet.App) -> list[dict[str, object]]:
        """`canary history <app> -o json`, as on-call reads it before an undo."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "canary",
            "history",
            app.name,
            "-n",
            app.namespace,
            "-o",
            "json",
            f"--kubeconfig={self.kubectl.kubeconfig}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"canary history: {err.decode(errors='replace').strip()[:300]}")
        entries = json.loads(out.decode() or "[]")
        return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []

    async def _oncall_action(self, app: fleet.App) -> str:
        """On-call at the canary CLI, on the app in whatever state it is:
        `abort`, `retry`, `pause` then `resume`, `undo --to N` (N a revision
        that served, read from `canary history`), now and then `promote`.
        The CLI refuses what the status shows it cannot do (nothing to
        retry, nothing in flight to promote): reported, as on-call sees it."""
        verbs = list(ONCALL)
        verb = self.rng.choices(verbs, weights=[ONCALL[v] for v in verbs])[0]
        if verb == "pause-resume":
            return await self._pause_rollout(app)
        if verb != "undo":
            return f"canary {await self._canary(verb, app)} {app.name}"
        served = [
            int(str(e["number"]))
            for e in await self._history(app)
            if e.get("outcome") in ("promoted", "adopted") and str(e.get("number", "")).isdigit()
        ]
        if not served:
            raise RuntimeError(f"no revision of {app.name} that served to undo to")
        number = self.rng.choice(served)
        return f"canary {await self._canary('undo', app, '--to', str(number))} {app.name}"

    async def _annotations(self, app: fleet.App) -> dict[str, str]:
        service = await self.kubectl.json("get", "service", app.name, "-n", app.namespace)
        return {str(k): str(v) for k, v in (service["metadata"].get("annotations") or {}).items()}

    async def _annotate(self, app: fleet.App, *pairs: str, insist: bool = False) -> None:
        """`kubectl annotate --overwrite` of the Service (`key-` removes one)."""
        args = ("annotate", "service", app.name, "-n", app.namespace, "--overwrite", *pairs)
        if insist:
            await self._insist(*args, tolerate=("NotFound", "not found"))
        else:
            await self._check(*args)

    async def _edit_strategy(self, app: fleet.App) -> str:
        """The team edits its Service's annotations mid-rollout (`kubectl
        annotate --overwrite`): other steps, another interval, or the
        strategy switched canary <-> blue-green. It stays so until the next
        recreate or GitOps apply puts the original back."""
        now = await self._annotations(app)
        what = self.rng.choice(("steps", "interval", "strategy"))
        if what == "steps":
            steps = self.rng.choice([s for s in STEPS if s != now.get("canary.io/steps")])
            pair = f"canary.io/steps={steps}"
        elif what == "interval":
            interval = self.rng.choice([i for i in INTERVALS if i != now.get("canary.io/interval")])
            pair = f"canary.io/interval={interval}"
        else:
            switched = "blue-green" if now.get(STRATEGY) == "canary" else "canary"
            pair = f"{STRATEGY}={switched}"
        await self._annotate(app, pair)
        return f"kubectl annotate service {app.name} --overwrite {pair}"

    async def _invalid_annotation(self, app: fleet.App) -> str:
        """A typo in one annotation (`canary.io/steps: 25,abc`), fixed again
        (the value before put back) a random 2-20 s later."""
        now = await self._annotations(app)
        key = self.rng.choice(sorted(TYPOS))
        gap = self.rng.uniform(2.0, 20.0)
        await self._annotate(app, f"{key}={TYPOS[key]}")
        try:
            await asyncio.sleep(gap)
        finally:
            fixed = f"{key}={now[key]}" if key in now else f"{key}-"
            await self._annotate(app, fixed, insist=True)
        return f"kubectl annotate service {app.name} {key}={TYPOS[key]}, {fixed} {gap:.1f}s later"

    async def _rollout_restart(self, app: fleet.App) -> str:
        """`kubectl rollout restart deployment/<app>` on the team's own
        Deployment: a new template (its restartedAt annotation), the same
        release, rolled out as any change of it."""
        await self._check("rollout", "restart", "deployment", app.name, "-n", app.namespace)
        return f"kubectl rollout restart deployment {app.name}"

    async def _rollout_undo_source(self, app: fleet.App) -> str:
        """`kubectl rollout undo deployment/<app>` on the team's own
        Deployment: its previous ReplicaSet's template back (maybe a release
        rolled back, maybe the one before the serving one), rolled out as
        any change of it; refused when it has only one revision. The fleet's
        idea of its current release is left: the next release replaces it."""
        await self._check("rollout", "undo", "deployment", app.name, "-n", app.namespace)
        return f"kubectl rollout undo deployment {app.name}"

    async def _handback_readopt(self, app: fleet.App) -> str:
        """The team removes `canary.io/strategy` (handing the app back to its
        Deployment), then thinks better of it and puts it back a random
        2-20 s later: the controller hands back, then adopts again."""
        strategy = (await self._annotations(app)).get(STRATEGY) or app.strategy
        gap = self.rng.uniform(2.0, 20.0)
        await self._annotate(app, f"{STRATEGY}-")
        try:
            await asyncio.sleep(gap)
        finally:
            await self._annotate(app, f"{STRATEGY}={strategy}", insist=True)
        return (
            f"kubectl annotate service {app.name} {STRATEGY}-, back to {strategy} {gap:.1f}s later"
        )


def continue_all(sandbox: Sandbox) -> None:
    """Whatever happens to the soak, no process of the sandbox stays stopped."""
    for proc in sandbox.procs:
        if proc.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGCONT)
