"""Kubernetes Events refused for good: RBAC without `create` on events in
the namespace (403), a policy capping Events (a webhook answering as a
quota does, 403), the EventRateLimit admission plugin (429). (A
ResourceQuota on count/events refuses nothing: Kubernetes' quota ignores
Events; tests/integration/test_events_refused.py checks it.)
Events are best effort (client-go's recorder drops them; the history has
them): refused, one is dropped, logged and counted, and the cycle goes on.
Before, it cut the cycle like a refused scale: the status and the history
after it were never written, the retry decided the same again and was
refused again, so a step that passed never advanced, a rollback's status
never said so, and on-call saw nothing (the ReconcileFailed Warning was an
Event too). Each test failed on the code before its fix."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from typing import Any

import pytest
from prometheus_client import generate_latest

from analysis.verdicts import Verdict
from canary import history, render
from canary.act import Actor, NotLeading, Target
from canary.kube import ApiError
from canary.model import JSON, Checked, Emit, State
from canary.reconcile import Caches, Edges, Reconciler, _ident
from canary.spec import STATUS
from canary.writeguard import WriteGuard
from tests.unit.in_flight import in_flight
from tests.unit.world import result

RBAC = (
    'events is forbidden: User "system:serviceaccount:canary:canary" cannot create '
    'resource "events" in API group "" in the namespace "ns"'
)
CAPPED = 'admission webhook "events.example.com" denied the request: exceeded quota: events'
KEY = ("ns", "web")


def _merge(target: JSON, patch: JSON) -> JSON:
    """A JSON merge patch (RFC 7386), as the API server applies ours."""
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict) and isinstance(target.get(k), dict):
            _merge(target[k], v)
        else:
            target[k] = copy.deepcopy(v)
    return target


class _Cluster:
    """Just enough API server: Service, Deployment and ConfigMap writes land
    in the informers (as the watches would bring them); Event creates are
    refused while `refusing` holds a status (403 quota, 429 rate limit), or
    fail with it when it is a server error."""

    def __init__(self, informers: list[Any]) -> None:
        self.informers = informers
        self.refusing: tuple[int, str] | None = (403, RBAC)
        self.events: list[str] = []
        self.refused = 0
        self.version = 10
        self.forbidden: str = ""  # a path whose writes RBAC refuses (403)

    def _informer(self, path: str) -> Any:
        for part, index in (("/services", 0), ("/deployments", 1), ("/configmaps", 3)):
            if part in path:
                return self.informers[index]
        raise AssertionError(path)

    def _stamp(self, obj: JSON, path: str) -> JSON:
        """A new version; a Deployment's pods all ready at once."""
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        kinds = {"/services": "Service", "/deployments": "Deployment", "/configmaps": "ConfigMap"}
        obj["kind"] = next(kind for part, kind in kinds.items() if part in path)
        if "/deployments" in path:
            replicas = obj["spec"].get("replicas", 1)
            generation = int(obj["metadata"].get("generation", 1)) + 1
            obj["metadata"]["generation"] = generation
            obj["status"] = {
                "observedGeneration": generation,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
            }
        return obj

    async def create(self, path: str, body: JSON, **_: object) -> JSON:
        if path.endswith("/events"):
            if self.refusing is not None:
                self.refused += 1
                status, message = self.refusing
                raise ApiError(status, "Forbidden" if status == 403 else "TooManyRequests", message)
            self.events.append(str(body["reason"]))
            return body
        obj = self._stamp(copy.deepcopy(body), path)
        self._informer(path).remember(obj)
        return copy.deepcopy(obj)

    async def patch(self, path: str, body: JSON, *_: object, **__: object) -> JSON:
        if self.forbidden and self.forbidden in path:
            raise ApiError(403, "Forbidden", f"{path} is forbidden")
        informer = self._informer(path)
        current = informer.get("ns", path.rsplit("/", 1)[-1])
        assert current is not None, path
        meta = body.get("metadata") or {}
        if "resourceVersion" in meta:
            assert meta["resourceVersion"] == current["metadata"]["resourceVersion"], path
        patched = copy.deepcopy(current)
        _merge(
            patched, {**body, "metadata": {k: v for k, v in meta.items() if k != "resourceVersion"}}
        )
        patched = self._stamp(patched, path)
        informer.remember(patched)
        return copy.deepcopy(patched)

    async def replace(self, path: str, body: JSON, **_: object) -> JSON:
        obj = self._stamp(copy.deepcopy(body), path)
        self._informer(path).remember(obj)
        return copy.deepcopy(obj)

    async def delete(self, path: str, **_: object) -> JSON:
        self._informer(path).forget("ns", path.rsplit("/", 1)[-1])
        return {}

    async def get(self, path: str, **_: object) -> JSON:
        return {"items": []}


class _Checks:
    """The analyses: every check asked for passes, handed to the next cycle
    (what Checks does once Prometheus answers)."""

    def __init__(self, verdict: Verdict = Verdict.PASS) -> None:
        self.verdict = verdict
        self.asked: tuple[Any, Checked] | None = None
        self.kept: tuple[Any, Checked] | None = None

    def take_analysis(self, key: Any, ident: Any) -> Checked | None:
        found, self.asked = self.asked, None
        return found[1] if found is not None and found[0] == ident else None

    def put_back(self, key: Any, ident: Any, checked: Checked | None, *_: Any) -> None:
        if checked is not None and self.asked is None:
            self.asked = (ident, checked)

    def start_analysis(
        self, key: Any, ident: Any, kind: str, spec: Any, ctx: Any, interval: Any = None
    ) -> None:
        self.asked = (ident, Checked(kind, result(self.verdict), time.time()))

    def analysing(self, key: Any) -> bool:
        return self.asked is not None

    def finish_by(self, key: Any) -> float | None:
        return None  # answered at once

    def take_gate(self, *_: Any) -> None:
        return None

    def asking(self, key: Any) -> bool:
        return False

    def scrape_interval(self, *_: Any) -> tuple[float, str]:
        return 1.0, "analysis"

    def scrape_known(self, *_: Any) -> bool:
        return True

    def scrape_phase(self, key: Any) -> float:
        return 0.0

    def searchable_after(self) -> float:
        return 0.0  # Prometheus

    def forget(self, key: Any) -> None:
        self.asked = None

    async def close(self) -> None:
        return None


def _rollout(steps: str = "25,50") -> tuple[list[Any], State]:
    """Service web with r2 in flight on green at its first step (25%, its
    pods ready and serving since 30 s), r1 stable on blue, and its history."""
    started = time.time() - 30
    informers, _, state = in_flight(
        started,
        lambda state, _: {
            "canary.io/strategy": "canary",
            "canary.io/steps": steps,
            "canary.io/interval": "10s",
            "canary.io/analysis": "metrics:\n  - name: success-rate\n    min: 99\n"
            "scrape-interval: 1s\n",
            STATUS: json.dumps({"phase": "Progressing", "deployment": "web", **state.to_json()}),
        },
        step_ready=started,
        window_start=started,
        checked=started,
    )
    return informers, state


class _Shell:
    """The real reconciler over _Cluster, its EndpointSlices kept from the
    twins the Service selects (every pod ready)."""

    def __init__(self, steps: str = "25,50", verdict: Verdict = Verdict.PASS) -> None:
        self.informers, self.started = _rollout(steps)
        self.kube = _Cluster(self.informers)
        self.caches = Caches(*self.informers)
        self.reconciler = Reconciler(Edges(kube=self.kube, prometheus=None), self.caches)  # type: ignore[arg-type]
        self.checks = _Checks(verdict)
        self.reconciler.checks = self.checks  # type: ignore[assignment]
        self.failures: list[Exception] = []

    def service(self) -> JSON:
        found: JSON | None = self.informers[0].get("ns", "web")
        assert found is not None
        return found

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.service()["metadata"]["annotations"][STATUS]))

    def records(self) -> list[JSON]:
        """As on-call reads it: the ConfigMap, with what the status carries."""
        written = history.load(self.informers[3].get("ns", "web-canary-history"))
        return history.with_carried(written, self.status())

    def _slices(self) -> None:
        selector = self.service()["spec"]["selector"]
        pods = []
        for color in ("blue", "green"):
            twin = self.informers[1].get("ns", f"web-{color}")
            if twin is None:
                continue
            labels = twin["spec"]["template"]["metadata"]["labels"]
            if all(labels.get(k) == v for k, v in selector.items()):
                pods += [f"web-{color}-rs{color}-{i}" for i in range(twin["spec"]["replicas"])]
        endpoints = [
            {"targetRef": {"kind": "Pod", "name": p}, "conditions": {"ready": True}} for p in pods
        ]
        self.caches.slices_by_service[KEY] = {"s": {"endpoints": endpoints}}

    def cycle(self) -> None:
        self._slices()
        try:
            outcome = asyncio.run(self.reconciler.reconcile(*KEY))
        except Exception as exc:  # what the controller retries with its back-off
            self.failures.append(exc)
        else:  # landed, but a write it could do without was refused: told as a failure
            self.failures.extend(outcome.refused)
        self._slices()

    def ask_now(self) -> None:
        """The check of the step as it stands now, answered (pass)."""
        state = self.reconciler._unwritten.get(KEY)
        current = state.state if state is not None else State.from_json(self.status())
        self.checks.asked = (
            _ident(current),
            Checked("scheduled", result(self.checks.verdict), time.time()),
        )


def test_a_step_that_passes_advances_while_events_are_refused() -> None:
    shell = _Shell()
    shell.ask_now()
    for _ in range(6):
        shell.cycle()
    assert shell.kube.refused >= 1  # StepAdvanced was refused
    assert not shell.failures, shell.failures
    status = shell.status()
    assert status["step"] == 1 and status["requested_weight"] == 50, status
    reasons = [a["reason"] for a in shell.records()[-1]["actions"]]
    assert "StepAdvanced" in reasons, reasons  # the history has it


def _revision(shell: _Shell, color: str) -> str:
    twin = shell.informers[1].get("ns", f"web-{color}")
    assert twin is not None
    return str(twin["metadata"]["annotations"]["canary.io/revision"])


def test_an_abort_finishes_and_its_status_says_so_while_events_are_refused() -> None:
    """Before: the abort's record was written first, its selector and the
    canary's scale-down landed, then its Events were refused; the retry
    found the outcome in the history (already_ended) and its StateRebuilt
    was refused too, again and again: the status said r2 Progressing for
    good, and on-call saw no Event saying why."""
    shell = _Shell()
    r2 = _revision(shell, "green")
    service = shell.service()
    service["metadata"]["annotations"]["canary.io/action"] = f"abort revision={r2} t1"
    for _ in range(4):
        shell.cycle()
    assert shell.kube.refused >= 2
    assert not shell.failures, shell.failures
    status = shell.status()
    assert not status.get("canary") and status["failed_revision"] == r2, status
    assert status["phase"] != "Progressing", status
    assert shell.service()["spec"]["selector"].get("canary.io/twin") == "blue"
    green = shell.informers[1].get("ns", "web-green")
    assert green["spec"]["replicas"] == 0
    entry = [r for r in shell.records() if r["revision"] == r2][-1]
    assert entry["outcome"] == "aborted"
    assert {"RolledBack"} <= {a["reason"] for a in entry["actions"]}, entry["actions"]


def test_a_release_is_promoted_while_events_are_refused() -> None:
    shell = _Shell(steps="25")
    r2 = _revision(shell, "green")
    for _ in range(10):
        if shell.checks.asked is None and shell.status().get("canary"):
            shell.ask_now()
        shell.cycle()
    assert not shell.failures, shell.failures
    status = shell.status()
    assert status["stable"] == "green" and status["stable_revision"] == r2, status
    assert shell.service()["spec"]["selector"].get("canary.io/twin") == "green"
    assert [r for r in shell.records() if r["revision"] == r2][-1]["outcome"] == "promoted"


def _dropped(shell: _Shell) -> dict[str, float]:
    return {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1])
        for line in generate_latest(shell.reconciler.metrics.registry).decode().splitlines()
        if line.startswith("canary_events_dropped_total{") and not line.endswith(" 0.0")
    }


@pytest.mark.parametrize(
    "refusal",
    [
        (403, RBAC),
        (403, CAPPED),
        (429, "events is forbidden: limit reached on type Namespace for key ns"),
    ],
)
def test_a_dropped_event_is_counted_and_the_status_says_why(refusal: tuple[int, str]) -> None:
    shell = _Shell()
    shell.kube.refusing = refusal
    shell.ask_now()
    shell.cycle()
    shell.cycle()  # its pods serve: the advance's status, held for them, is written
    assert not shell.failures, shell.failures
    assert _dropped(shell) == {"StepAdvanced": 1.0}, _dropped(shell)
    note = shell.status().get("events_refused", "")
    assert str(refusal[0]) in note and refusal[1][:40] in note, note
    written = shell.service()["metadata"]["resourceVersion"]
    for _ in range(3):  # waiting for the next check: no status write per cycle
        shell.cycle()
    assert shell.service()["metadata"]["resourceVersion"] == written
    # Events are created again: the next one clears the line.
    shell.kube.refusing = None
    r2 = _revision(shell, "green")
    shell.service()["metadata"]["annotations"]["canary.io/action"] = f"abort revision={r2} t1"
    shell.cycle()
    assert "RolledBack" in shell.kube.events, shell.kube.events
    assert "events_refused" not in shell.status(), shell.status()


def test_an_event_the_api_server_fails_to_store_still_cuts_the_cycle() -> None:
    """Not refused but failed (etcd, a timeout, no answer): the API server's
    bad day, not the Event's. The cycle is cut and retried as before."""
    shell = _Shell()
    shell.kube.refusing = (500, "etcdserver: leader changed")
    shell.ask_now()
    shell.cycle()
    assert [getattr(f, "status", None) for f in shell.failures] == [500]
    assert shell.status()["step"] == 0
    assert _dropped(shell) == {}


def test_canary_status_says_why_no_event_of_the_rollout_shows() -> None:
    status = {"phase": "Healthy", "message": "", "events_refused": "since 12:00 the API ..."}
    [row] = render.status_rows([("ns", "web", status)])
    assert row[-1] == "Events: since 12:00 the API ...", row


def test_a_refused_scale_still_cuts_the_cycle() -> None:
    """Only Events are best effort: a refused write of what serves is the
    decision not carried out, and the cycle is cut and retried as before."""
    shell = _Shell()
    shell.kube.refusing = None
    shell.kube.forbidden = "/deployments/web-green"
    shell.ask_now()
    shell.cycle()
    assert [getattr(f, "status", None) for f in shell.failures] == [403]
    assert shell.status()["step"] == 0
    assert "StepAdvanced" in shell.kube.events  # before the scale, as decided


def test_an_event_past_the_fence_is_not_dropped_but_stops_the_cycle() -> None:
    """The lease lost: nothing may be written, an Event no more than a scale."""
    actor = Actor(
        _Cluster([]),  # type: ignore[arg-type]
        Target("ns", "web", "web", {"metadata": {"name": "web", "uid": "s-1"}}),
        lambda obj: None,
        lambda kind, name: None,
        WriteGuard(),
        "",
        1000.0,
        fence=lambda: 0.0,
    )
    with pytest.raises(NotLeading):
        asyncio.run(actor.emit(Emit("StepAdvanced", "m")))


def _service_writes(shell: _Shell) -> list[JSON]:
    """Every PATCH of the Service from now on (a selector, a status)."""
    writes: list[JSON] = []
    patch = shell.kube.patch

    async def counted(path: str, body: JSON, *args: object, **kwargs: object) -> JSON:
        if "/services/web" in path:
            writes.append(body)
        return await patch(path, body, *args, **kwargs)

    shell.kube.patch = counted  # type: ignore[method-assign]
    return writes


def test_a_refusal_before_the_selector_adds_no_second_status_write() -> None:
    """The status rode along with the selector (status_writes.carriable); an Event before
    it refused in that very cycle must not have the status written again on
    its own: one status write per cycle at most. Before: the selector's
    write carried it, then a second PATCH wrote it again with the line."""
    shell = _Shell()
    green = shell.informers[1].get("ns", "web-green")
    green["spec"]["template"]["spec"]["containers"][0]["image"] = "web:hand-edit"
    writes = _service_writes(shell)
    shell.cycle()  # TwinRestored (refused), the twin put back, the Service on blue alone
    assert not shell.failures, shell.failures
    assert shell.kube.refused == 1
    assert shell.service()["spec"]["selector"].get("canary.io/twin") == "blue"
    assert len(writes) == 1, writes
    shell.cycle()  # the next cycle writes the line
    assert "events_refused" in shell.status(), shell.status()


def _refused_and_written() -> _Shell:
    """Events refused, and the status saying so (as in the test above)."""
    shell = _Shell()
    shell.ask_now()
    shell.cycle()
    shell.cycle()
    assert "events_refused" in shell.status(), shell.status()
    return shell


def test_a_restart_keeps_the_line_until_an_event_is_created() -> None:
    """A new controller (a restart, a new leader) has seen no Event yet:
    what the status says of them stands until it does. Before: its first
    cycle wrote the line away (a status write saying Events were no longer
    refused, unobserved), and its first refused Event wrote it back."""
    shell = _refused_and_written()
    note = shell.status()["events_refused"]
    written = shell.service()["metadata"]["resourceVersion"]
    shell.reconciler = Reconciler(Edges(kube=shell.kube, prometheus=None), shell.caches)  # type: ignore[arg-type]
    shell.reconciler.checks = shell.checks  # type: ignore[assignment]
    for _ in range(3):  # waiting for the next check: nothing to write
        shell.cycle()
    assert not shell.failures, shell.failures
    assert shell.service()["metadata"]["resourceVersion"] == written
    assert shell.status()["events_refused"] == note
    # Still refused: the line (its "since") is not written again.
    r2 = _revision(shell, "green")
    shell.service()["metadata"]["annotations"]["canary.io/action"] = f"abort revision={r2} t1"
    shell.cycle()
    assert shell.kube.refused >= 2
    assert shell.status()["events_refused"] == note, shell.status()


def test_a_service_deleted_takes_its_line_with_it() -> None:
    """A Service deleted with its twins and made again (a Helm reinstall):
    the new one's status says nothing of Events refused to the old one.
    Before: the old one's line was kept in memory and written on the new."""
    shell = _Shell()
    fresh = copy.deepcopy(shell.service())
    kept = [copy.deepcopy(d) for d in shell.informers[1].items()]
    history_cm = copy.deepcopy(shell.informers[3].get("ns", "web-canary-history"))
    shell.ask_now()
    shell.cycle()
    shell.cycle()
    assert "events_refused" in shell.status()
    shell.informers[0].forget("ns", "web")
    for d in kept:
        shell.informers[1].forget("ns", d["metadata"]["name"])
    asyncio.run(shell.reconciler.reconcile(*KEY))  # gone, nothing of it runs: forgotten
    shell.kube.refusing = None
    shell.informers[0].remember(fresh)
    for d in kept:
        shell.informers[1].remember(d)
    shell.informers[3].remember(history_cm)
    shell.checks.asked = None
    shell.cycle()
    assert not shell.failures, shell.failures
    assert "events_refused" not in shell.status(), shell.status()


def test_a_429_of_api_priority_and_fairness_is_load_not_a_refusal() -> None:
    """API priority and fairness (and max-in-flight) answer 429 in plain
    text with a Retry-After: the API server's load, not a "no" to Events
    (EventRateLimit's 429 is a Status). As a 5xx, it cuts the cycle, which
    is retried, and the Event with it. Before: the Event was dropped for
    good and the status said the API server refuses this Service's Events
    (a status write now, another at the next Event)."""
    shell = _Shell()
    shell.kube.refusing = None
    busy = ApiError(429, "", "Too many requests, please try again later.\n")
    create = shell.kube.create
    throttled = [busy]

    async def once(path: str, body: JSON, **kwargs: object) -> JSON:
        if path.endswith("/events") and throttled:
            raise throttled.pop()
        return await create(path, body, **kwargs)

    shell.kube.create = once  # type: ignore[method-assign]
    shell.ask_now()
    shell.cycle()
    assert [getattr(f, "status", None) for f in shell.failures] == [429]
    assert _dropped(shell) == {}
    shell.cycle()  # the retry: the step advances, its Event created
    shell.cycle()
    assert "StepAdvanced" in shell.kube.events, shell.kube.events
    assert shell.status()["step"] == 1, shell.status()
    assert "events_refused" not in shell.status(), shell.status()
