"""Operating the controller itself on a bad day (its alerts, its probes, its
Deployment and PodDisruptionBudget, its stop), found by an adversarial
review; each test failed before its fix."""

from __future__ import annotations

import asyncio
import copy
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from analysis.prometheus import PrometheusConfig
from analysis.provider import QueryError
from analysis.verdicts import Verdict
from canary import run, telemetry
from canary.act import Actor
from canary.cli import build_parser
from canary.controller import Controller
from canary.decide import phase
from canary.kube import NotFound
from canary.model import Phase, Record
from canary.reconcile import Edges, Held, Reconciler
from canary.run import RunOptions
from canary.serve import listen_address, serve
from tests.unit.test_analysis_bad_day import _prometheus as _analysis_prometheus
from tests.unit.test_oncall_bad_night import CANARY, serving_canary, stable_short
from tests.unit.world import result

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ROOT / "manifests" / "components"


def _alerts() -> dict[str, dict[str, Any]]:
    rule = yaml.safe_load((COMPONENTS / "prometheus-rules" / "prometheus-rule.yaml").read_text())
    return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}


# -- 1. a halted rollout whose stable twin loses a pod pages no one ---------------------------


def test_a_halted_rollout_beneath_a_degradation_still_raises_the_halted_alert() -> None:
    """Halted on no data (the canary at its weight, nothing analysing it,
    waiting for `canary promote`, `abort` or `retry`), and a drain takes a
    stable pod (or the stable pods went first, and the halt came while
    Degraded). The phase reads Degraded, so canary_service_phase{phase=
    "Halted"} is 0 and CanaryRolloutHalted resolved (or never fired); its
    next decision is not exported either (halted: waits for a person), so
    CanaryRolloutStuck cannot fire, and no alert watches Degraded: the
    unanalysed canary paged no one for as long as the pod stayed Pending."""
    world = serving_canary()
    for _ in range(CANARY.analysis.no_data_limit + 2):
        world.step(CANARY, result(Verdict.NO_DATA), advance=10)
    before = world.state
    plan = stable_short(world)
    assert phase(CANARY, plan.state) is Phase.DEGRADED
    reconciler = Reconciler(Edges(kube=None, prometheus=None), None)  # type: ignore[arg-type]
    reconciler._report("ns", "web", CANARY, before, plan, None)
    exported = generate_latest(reconciler.metrics.registry).decode()
    assert 'canary_service_phase{namespace="ns",phase="Halted",service="web"} 0.0' in exported
    # What the alert reads beneath the degradation.
    assert 'canary_rollout_halted{namespace="ns",service="web"} 1.0' in exported
    expr = _alerts()["CanaryRolloutHalted"]["expr"]
    assert "canary_rollout_halted" in expr, expr
    # Gone once it moves again, and with the Service.
    reconciler._report("ns", "web", CANARY, before, plan, None)
    moving = replace(plan, state=replace(plan.state, halted="", halt_kind=""))
    reconciler._report("ns", "web", CANARY, before, moving, None)
    exported = generate_latest(reconciler.metrics.registry).decode()
    assert "canary_rollout_halted{" not in exported
    reconciler._report("ns", "web", CANARY, before, plan, None)
    reconciler.metrics.forget("ns", "web")
    exported = generate_latest(reconciler.metrics.registry).decode()
    assert "canary_rollout_halted{" not in exported


# -- 2. both replicas not ready block every drain of their nodes ------------------------------


def _evictable(pdb: dict[str, Any], ready: list[bool], pod: int) -> bool:
    """The eviction API's answer for pod `pod` of the controller's replicas
    (`ready`: each one's readiness, what /readyz says) under this
    PodDisruptionBudget, as the API server decides it (policy/v1: a pod
    counts as healthy when Ready; an unhealthy pod under the default policy
    IfHealthyBudget is evictable only while the budget is met)."""
    spec = pdb["spec"]
    healthy = sum(ready)
    if "minAvailable" in spec:
        desired = int(spec["minAvailable"])
    else:  # maxUnavailable: of the replicas expected (the Deployment's)
        desired = max(len(ready) - int(spec["maxUnavailable"]), 0)
    if not ready[pod]:
        if spec.get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
            return True
        return healthy >= desired
    return healthy - desired > 0


def test_a_drain_can_evict_controller_replicas_that_are_not_ready() -> None:
    """Both replicas answer /readyz 503 for as long as a namespace of
    --namespace cannot be listed (its RoleBinding not made yet), a cache's
    list and watch are refused (an upgrade's ClusterRole), or Prometheus did
    not answer since they started (restarted during its outage). The
    PodDisruptionBudget (minAvailable: 1) then counted no healthy pod, and
    under the default IfHealthyBudget the eviction API refused to evict
    either: `kubectl drain` of their nodes retried for good, a node upgrade
    and the cluster autoscaler's scale-down stalled, for a controller that
    was not serving as ready anyway. A replica that is ready is still kept
    while it is the only one."""
    pdb = yaml.safe_load(
        (COMPONENTS / "pod-disruption-budget" / "pod-disruption-budget.yaml").read_text()
    )
    assert _evictable(pdb, [False, False], 0)  # a drain goes on
    assert _evictable(pdb, [True, False], 1)  # the one not ready goes
    assert not _evictable(pdb, [True, False], 0)  # the only ready one stays
    assert _evictable(pdb, [True, True], 0)  # one of two ready goes; the other takes over


# -- 3. an IPv6 cluster's kubelet probes an address nothing listens on ----------------------------


def _manifest_metrics_address() -> str:
    deployment = yaml.safe_load((ROOT / "manifests" / "base" / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (address,) = [a for a in container["args"] if a.startswith("--metrics-address=")]
    return str(address.split("=", 1)[1])


async def _answers(host: str, port: int) -> bool:
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://{host}:{port}/healthz"
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                return response.status == 200
    except aiohttp.ClientError:
        return False


async def test_the_probes_and_the_scrape_reach_the_controller_over_ipv6_too() -> None:
    """The kubelet probes /healthz and /readyz at the pod's IP, and
    Prometheus scrapes it there: on an IPv6 single-stack cluster (or a
    dual-stack one whose pods' first IP is IPv6) that is an IPv6 address.
    The manifests' --metrics-address=0.0.0.0:8080 (the default too) listened
    on IPv4 alone: every probe was refused, so the liveness probe restarted
    the controller every 30 s (a crash loop, nothing ever led) and nothing
    scraped its metrics. The manifests' address listens on both."""
    # Read, not bound: a test listens on loopback only. No host is the one
    # dual-stack socket on every address (serve._everywhere), as the
    # manifests and the default now say; 0.0.0.0 was IPv4 alone.
    for address in (_manifest_metrics_address(), RunOptions.metrics_address):
        assert listen_address(address) == ("", 8080), address
    assert listen_address("0.0.0.0:8080") == ("0.0.0.0", 8080)
    # An IPv6 address written as URLs and kubectl write it, served there.
    runner, port = await serve("[::1]:0", CollectorRegistry(), lambda: True)
    try:
        assert await _answers("[::1]", port)
    finally:
        await runner.cleanup()
    runner, port = await serve("127.0.0.1:0", CollectorRegistry(), lambda: True)
    try:
        assert await _answers("127.0.0.1", port)
    finally:
        await runner.cleanup()


# -- 4. a controller that is not ready, deciding on frozen caches, pages no one -----------------


def _run_controller(monkeypatch: pytest.MonkeyPatch, prometheus: type, serve: Any) -> Any:
    """run_controller on a fake cluster, this Prometheus adapter and this
    serve(), without leader election: the task running it."""

    async def connect(*_: object) -> _Cluster:
        return _Cluster()

    monkeypatch.setattr(run, "Prometheus", prometheus)
    monkeypatch.setattr(run, "connect", connect)
    monkeypatch.setattr(run, "serve", serve)
    options = RunOptions(
        prometheus=PrometheusConfig(url="http://prometheus:9090"), leader_election=False
    )
    return asyncio.create_task(run.run_controller(options))


class _Prometheus:
    up = True

    def __init__(self, config: object) -> None:
        self.metricsql = False
        self.clock_offset = 0.0

    async def check(self) -> None:
        if not _Prometheus.up:
            raise QueryError("Prometheus at http://prometheus:9090 unavailable")

    def close(self) -> None:
        return None


class _Cluster:
    """An API server that lists every kind (empty) and keeps watches open."""

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}

    async def get(self, path: str, **_: Any) -> dict[str, Any]:
        return {"items": [], "metadata": {"resourceVersion": "1"}}

    async def watch(self, *_: Any, **__: Any) -> AsyncIterator[dict[str, Any]]:
        await asyncio.Event().wait()  # open, quiet (no timer for _FastForward to jump to)
        yield {}

    async def close(self) -> None:
        return None


class _Runner:
    async def cleanup(self) -> None:
        return None


async def _exported(monkeypatch: pytest.MonkeyPatch, ready_expected: bool) -> str:
    """/metrics of `canary run` (as Prometheus scrapes it) once /readyz
    answers as expected, or after 3 s."""
    served: list[tuple[CollectorRegistry, Callable[[], bool]]] = []

    async def serve(_: str, registry: CollectorRegistry, ready: Callable[[], bool]) -> Any:
        served.append((registry, ready))
        return _Runner(), 0

    running = _run_controller(monkeypatch, _Prometheus, serve)
    try:
        for _ in range(300):
            await asyncio.sleep(0.01)
            if served and served[0][1]() == ready_expected:
                break
        ((registry, ready),) = served
        assert ready() == ready_expected
        return generate_latest(registry).decode()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_controller_that_is_not_ready_raises_an_alert(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """/readyz answers 503 when a cache has not been refreshed for 60 s (its
    list and watch refused: an upgrade's ClusterRole without a verb), a
    namespace of --namespace was never listed, or Prometheus has not
    answered since the start; the README's answer to each was "the replica
    shows not ready". Nothing read it: no alert watched readiness, the
    leader went on deciding on what its frozen caches last saw (promotions
    and rollbacks on stale endpoints), CanaryAPIErrors counts failed
    reconciles only, and CanaryControllerNotLeading saw a leader. Readiness
    is exported (canary_ready, the same answer as /readyz) and
    CanaryControllerNotReady fires after 5 minutes of it."""
    _Prometheus.up = True
    assert "canary_ready 1.0" in await _exported(monkeypatch, ready_expected=True)
    _Prometheus.up = False
    assert "canary_ready 0.0" in await _exported(monkeypatch, ready_expected=False)
    alert = _alerts()["CanaryControllerNotReady"]
    assert "canary_ready" in alert["expr"], alert


# -- 5. both replicas on one node: a node lost takes the controller for minutes -----------------


def test_the_two_replicas_are_kept_on_different_nodes() -> None:
    """Nothing spread the replicas: the scheduler may put both on one node
    (the least loaded one, often a fresh node after an upgrade). That node
    lost (a kernel panic, a spot reclaim, its network) took the leader and
    the standby at once, and their pods are evicted from an unreachable
    node only after the default toleration of 300 s: five minutes and more
    with no controller, while canaries served at their weight unanalysed.
    The PodDisruptionBudget keeps one through a drain, not through a loss.
    The replicas are spread over nodes, and still scheduled when only one
    node fits (a one-node cluster, a full one)."""
    deployment = yaml.safe_load((ROOT / "manifests" / "base" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    spread = [
        c
        for c in pod["spec"].get("topologySpreadConstraints", [])
        if c["topologyKey"] == "kubernetes.io/hostname"
        and c["labelSelector"]["matchLabels"].items() <= labels.items()
        and c["maxSkew"] == 1
    ]
    assert spread, pod["spec"]
    assert all(c["whenUnsatisfiable"] == "ScheduleAnyway" for c in spread), spread


# -- 6. a graceful stop that outlasts the pod's grace period ----------------------------------


class _FastForward(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer whenever nothing
    is ready to run: minutes of timeouts pass in milliseconds."""

    def __init__(self) -> None:
        super().__init__()
        self._skipped = 0.0

    def time(self) -> float:
        return super().time() + self._skipped

    def _run_once(self) -> None:
        ready, scheduled = self._ready, self._scheduled  # type: ignore[attr-defined]
        if not ready and scheduled:
            ahead = min(t.when() for t in scheduled) - self.time()
            if ahead > 0:
                self._skipped += ahead
        super()._run_once()  # type: ignore[misc]


class _SlowCluster(_Cluster):
    """Lists and watches as _Cluster; the Lease in memory. Once `slow` is
    set, every Lease request takes that long to answer (a busy API server,
    within each request's timeout)."""

    def __init__(self) -> None:
        super().__init__()
        self.lease: dict[str, Any] | None = None
        self.slow = 0.0
        self.released_at: float | None = None

    async def request(
        self, method: str, path: str, body: Any = None, timeout: float = 30.0, **_: Any
    ) -> Any:
        if self.slow:
            await asyncio.sleep(self.slow)
        if method == "GET":
            if self.lease is None:
                raise NotFound(404, "NotFound", "no lease")
            return copy.deepcopy(self.lease)
        self.lease = copy.deepcopy(body)
        if not (body.get("spec") or {}).get("holderIdentity"):
            self.released_at = asyncio.get_running_loop().time()
        return copy.deepcopy(body)


class _SlowActor:
    async def write_status(self, status: str) -> None:
        await asyncio.sleep(4.5)


def test_a_graceful_stop_hands_the_lease_back_within_the_pods_grace_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGTERM on the leader (a drain, a rollout of the controller) on a
    busy day: a reconcile in flight waits on a write (an admission webhook
    that answers slowly) and the API server answers in 4.5 s. The stop
    gives the reconciles 30 s, writes the status held back (up to 5 s, and
    the checks and Events still waiting for the history, up to 5 s more),
    then hands the Lease back (a GET and a PUT, up to 5 s each): past the
    40 s of terminationGracePeriodSeconds, so the kubelet killed it first.
    The standby then waited out the whole lease duration, and what a stop
    writes after the kill (the history's checks and Events) was lost. The
    grace period covers the stop's own bounds."""
    deployment = yaml.safe_load((ROOT / "manifests" / "base" / "deployment.yaml").read_text())
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    kube = _SlowCluster()
    controllers: list[Controller] = []

    class Recorded(Controller):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            controllers.append(self)

    async def connect(*_: object) -> _SlowCluster:
        return kube

    async def serve(*_: object) -> Any:
        return _Runner(), 0

    monkeypatch.setattr(run, "Prometheus", _Prometheus)
    monkeypatch.setattr(run, "connect", connect)
    monkeypatch.setattr(run, "serve", serve)
    monkeypatch.setattr(run, "Controller", Recorded)
    _Prometheus.up = True
    options = RunOptions(
        prometheus=PrometheusConfig(url="http://prometheus:9090"), lease_namespace="canary-system"
    )

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        running = asyncio.create_task(run.run_controller(options))
        for _ in range(600):
            if controllers and controllers[0].active:
                break
            await asyncio.sleep(0.5)
        assert controllers and controllers[0].active, "never led"
        controller = controllers[0]
        key = ("shop", "web")
        controller._workers[key] = asyncio.create_task(asyncio.sleep(3600))  # a slow write
        actor = cast(Actor, _SlowActor())
        controller.reconciler._held[key] = Held(loop.time(), actor, "{}")
        kube.slow = 4.5
        sigterm = loop.time()
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(running, 600)
        assert kube.released_at is not None, "the Lease was not handed back"
        return kube.released_at - sigterm

    with asyncio.Runner(loop_factory=_FastForward) as runner:
        took = runner.run(scenario())
    assert took < grace, f"the Lease was handed back {took:.1f}s after SIGTERM; killed at {grace}s"


# -- 7. a rollback counted in a new leader's first cycle never alerts -----------------------------


def _promtool() -> Path | None:
    """promtool from the sandbox's binaries, if this machine has them (not built here)."""
    explicit = os.environ.get("CANARY_BIN_DIR")
    found = [Path(explicit) / "promtool"] if explicit else []
    found += sorted(Path.home().glob(".cache/canary/bin/*/promtool"))
    return next((p for p in found if p.is_file()), None)


def test_a_rollback_in_a_new_leaders_first_cycle_of_its_service_raises_the_alert(
    tmp_path: Path,
) -> None:
    """canary_rollouts_total exists at 0 "from a Service's first reconcile",
    so increase() sees the first rollback: but when that first reconcile
    itself records the rollback (a new leader after a drain, an upgrade or
    a crash finds a rollout past its progress deadline, or a check it
    judges at once), the series is made and counted in one cycle, its first
    scrape already reads 1, and increase() over a series born at 1 is
    nothing: CanaryRolledBack never fired. The rule now reads when the
    rollback ended (canary_rollout_ended_timestamp_seconds; promtool case
    in tests/alerts/)."""
    world = serving_canary()
    for _ in range(CANARY.failure_limit + 3):
        before = world.state
        plan = world.step(CANARY, result(Verdict.FAIL), advance=10)
        if world.state.canary is None:
            break
    # The decision of the cycle that rolled back, as a fresh process's first
    # reconcile of the Service: the first scrape reads 1.
    assert any(isinstance(a, Record) and a.outcome == "rolled-back" for a in plan.actions)
    reconciler = Reconciler(Edges(kube=None, prometheus=None), None)  # type: ignore[arg-type]
    reconciler._report("shop", "web", CANARY, before, plan, None)
    first = generate_latest(reconciler.metrics.registry).decode()
    assert (
        'canary_rollouts_total{namespace="shop",outcome="rolled-back",service="web"} 1.0' in first
    )
    _promtool_case(tmp_path, "new leader's first cycle")


def _promtool_case(tmp_path: Path, name: str) -> None:
    """The promtool unit tests of tests/alerts/ named `name`, against the
    shipped rules, when this machine has promtool."""
    promtool = _promtool()
    if promtool is None:
        pytest.skip("no promtool here; tests/integration/test_install.py runs tests/alerts/")
    rule = yaml.safe_load((COMPONENTS / "prometheus-rules" / "prometheus-rule.yaml").read_text())
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    tests = yaml.safe_load((ROOT / "tests" / "alerts" / "canary-alerts.test.yaml").read_text())
    tests["tests"] = [t for t in tests["tests"] if name in t["name"]]
    assert tests["tests"]
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tests))
    assert_promtool_passes(promtool, tmp_path / "test.yaml")


def assert_promtool_passes(promtool: Path, tests: Path) -> None:
    """`promtool test rules` on the file, which must pass (its output told if not)."""
    ran = subprocess.run(
        [str(promtool), "test", "rules", str(tests)], capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr


# -- 8. a backend busy at the controller's start is taken for Prometheus for good ---------------


async def test_a_dialect_probe_that_fails_at_start_is_asked_again_not_taken_for_promql() -> None:
    """The controller tells VictoriaMetrics from Prometheus once, at its
    start, by asking for increase_prometheus(): Prometheus rejects it as an
    unknown function (400 bad_data), VictoriaMetrics answers. Any failure
    was taken for the rejection: restarted (a drain, an upgrade) while
    vmselect was busy or restarting (a 503, a timeout on that one probe,
    vector(1) having answered), the controller read VictoriaMetrics as
    Prometheus for the rest of its life, and its builtins there count one
    bad scrape twice (see the VictoriaMetrics row: with failure-limit 0 a
    good release rolled back). A probe that fails otherwise than by a
    rejection fails the start-up check: the controller runs not ready and
    asks again (run.until_answered) until VictoriaMetrics answers."""
    busy = {"probe": True}

    def victoriametrics(url: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if "increase_prometheus" in params["query"] and busy["probe"]:
            return 503, {"status": "error", "errorType": "unavailable", "error": "busy"}
        return 200, {"status": "success", "isPartial": False, "data": {"result": []}}

    prom, _ = _analysis_prometheus(victoriametrics)
    try:
        with pytest.raises(QueryError):
            await prom.check()
        busy["probe"] = False
        await prom.check()  # asked again
        assert prom.metricsql
    finally:
        prom.close()


async def test_a_backend_that_refuses_the_probe_otherwise_than_bad_data_is_promql() -> None:
    """A rejection without `bad_data` (a gateway in front of Mimir answering
    422 in its own words) is still a rejection: PromQL, and ready, not asked
    again for good."""

    def gateway(url: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if "increase_prometheus" in params["query"]:
            return 422, {"status": "error", "errorType": "execution", "error": "unknown function"}
        return 200, {"status": "success", "data": {"resultType": "vector", "result": []}}

    prom, _ = _analysis_prometheus(gateway)
    try:
        await prom.check()
        assert not prom.metricsql
    finally:
        prom.close()


# -- 9. a slow Prometheus at the start outlasts the liveness probe ------------------------------


class _SlowPrometheus(_Prometheus):
    """Answers its start-up check only once `answers` is set (its three
    queries, each just within its 5 s timeout: an overloaded Prometheus)."""

    answers = asyncio.Event()

    async def check(self) -> None:
        await _SlowPrometheus.answers.wait()


async def test_healthz_answers_while_prometheus_is_still_asked_at_the_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The start-up check asks Prometheus three times (vector(1), its clock,
    its dialect), up to 14 s when it answers slowly, and it ran before
    /healthz was served: with a busy node's imports (seconds at the 100m the
    pod requests) that outlasted the liveness probe's three failures 10 s
    apart, the kubelet restarted the controller, and the next start asked
    the same slow Prometheus again: a restart loop for as long as
    Prometheus was slow. /healthz is served first."""
    served: list[str] = []
    _SlowPrometheus.answers = asyncio.Event()

    async def serve(address: str, *_: object) -> Any:
        served.append(address)
        return _Runner(), 0

    running = _run_controller(monkeypatch, _SlowPrometheus, serve)
    try:
        for _ in range(100):
            await asyncio.sleep(0.01)
            if served:
                break
        assert served, "nothing served while Prometheus was asked"
        assert not running.done()
        _SlowPrometheus.answers.set()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


# -- 10. `--namespace` written with spaces: a namespace never watched ------------------------------


def test_namespaces_written_with_spaces_are_the_namespaces_meant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`--namespace=team-a, team-b` (how a list is written in a YAML args
    line or a Helm value) named the namespace " team-b": its lists were
    refused (no such namespace) for good, so team-b's Services were never
    decided, a rollout in flight there kept its canary at its weight with
    nothing analysing it, and the Lease's scope named " team-b"."""
    seen: list[RunOptions] = []

    async def run_controller(options: RunOptions) -> None:
        seen.append(options)

    monkeypatch.setattr(run, "run_controller", run_controller)
    monkeypatch.setattr(telemetry, "configure_logging", lambda _: None)  # the test's own
    monkeypatch.setenv("PROMETHEUS_URL", "http://prometheus:9090")
    args = build_parser().parse_args(["run", "--namespace=team-a, team-b ,"])
    assert args.func(args) == 0
    assert seen[0].namespaces == ("team-a", "team-b")


def test_a_drain_can_evict_the_controller_scaled_to_one_replica() -> None:
    """An overlay that runs one replica (a small cluster, a staging one):
    under minAvailable: 1 the eviction API refused to evict it, ready, for
    good, and every drain of its node (a node upgrade, the cluster
    autoscaler's scale-down) hung until someone deleted the budget. One
    replica at a time may go, whatever the count: two still keep one."""
    pdb = yaml.safe_load(
        (COMPONENTS / "pod-disruption-budget" / "pod-disruption-budget.yaml").read_text()
    )
    assert _evictable(pdb, [True], 0)
    assert _evictable(pdb, [True, True], 0)
    assert not _evictable(pdb, [True, False], 0)  # the other one is not back yet


# -- 11. two installs: one without a leader hides behind the other ------------------------------


def test_an_install_without_a_leader_is_alerted_beside_another_that_leads(
    tmp_path: Path,
) -> None:
    """A controller per group of teams (`--namespace`, each install in its
    own namespace with its own Lease, as the README's rows on a shrunk
    scope describe): CanaryControllerNotLeading took max(canary_leader)
    over every replica Prometheus scrapes, so one install leading hid the
    other's having no leader at all, and its teams' rollouts sat unanalysed
    with no page. Grouped by the controller's namespace (promtool case in
    tests/alerts/)."""
    _promtool_case(tmp_path, "two installs, one of them without a leader")
