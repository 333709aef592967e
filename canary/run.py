"""`canary run`: the controller process.

With leader election (the default) every replica lists and watches, so a
standby's caches are warm, but only the holder of the Lease reconciles. A
replica that loses the Lease exits (the kubelet restarts it as a standby)
rather than risk acting beside the new leader. On SIGTERM the reconciles in
flight finish and the Lease is released, so the standby takes over at its
next retry instead of waiting for the lease to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from analysis.prometheus import Prometheus, PrometheusConfig
from analysis.provider import QueryError
from canary.controller import Controller
from canary.kube import connect
from canary.lease import LeaderElector, LeaseTimings, scope_of
from canary.notify import Notifier
from canary.reconcile import Edges
from canary.serve import serve

log = logging.getLogger("canary")

TIMINGS = LeaseTimings(duration_s=15.0, renew_deadline_s=10.0, retry_s=2.0)


class StartupError(RuntimeError):
    pass


class LeadershipLost(RuntimeError):
    pass


@dataclass(frozen=True)
class RunOptions:
    prometheus: PrometheusConfig
    kubeconfig: str | None = None
    context: str | None = None
    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    leader_election: bool = True
    lease_namespace: str = "default"
    lease_name: str = "canary-controller"
    metrics_address: str = ":8080"  # every address, IPv4 and IPv6 (serve)
    notify_urls: tuple[str, ...] = ()
    slack_urls: tuple[str, ...] = ()
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}")


# While Prometheus has not answered since the start, it is asked again this often.
PROMETHEUS_RECHECK_S = 5.0


async def until_answered(
    provider: Prometheus,
    answered: asyncio.Event,
    every_s: float = PROMETHEUS_RECHECK_S,
    told: str = "",
) -> None:
    """Ask Prometheus (its start-up check: the clock, the dialect) until it
    answers, then set `answered`. Each new reason it does not is logged
    (`told`: the one logged already): before, only the first was, and a
    replica that started while Prometheus restarted ("Connection refused")
    said that for as long as it then stayed not ready on a refused token."""
    while True:
        try:
            await provider.check()
        except QueryError as exc:
            if str(exc) != told:
                told = str(exc)
                log.error("Prometheus still does not answer: %s; not ready until it does", told)
            await asyncio.sleep(every_s)
            continue
        answered.set()
        log.info("Prometheus answers: ready")
        return


def _provider(options: RunOptions) -> Prometheus:
    """The Prometheus adapter, once its URL is one."""
    url = urlsplit(options.prometheus.url)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise StartupError(
            f"--prometheus-url (or PROMETHEUS_URL) {options.prometheus.url!r} is not an http(s) "
            "URL, e.g. http://prometheus-operated.monitoring.svc:9090"
        )
    return Prometheus(options.prometheus)


async def _first_check(provider: Prometheus, answered: asyncio.Event, url: str) -> str:
    """Prometheus's start-up check: `answered` set if it answers now (else
    later: until_answered). Returns the reason it did not, as logged."""
    try:
        await provider.check()
        answered.set()
        return ""
    except QueryError as exc:
        # Not an exit: both replicas restarted during a Prometheus outage (a
        # node upgrade, an eviction, a controller upgrade) crash-looped until
        # it was back, and meanwhile nothing carried out an abort, put a
        # reset selector back or handed an app back, while canaries served
        # their weight. Checks fail and halt as they do when Prometheus fails
        # later; /readyz says 503 until it answers, so a rollout of the
        # controller with a wrong URL stalls on its first new pod, as the
        # exit made it.
        log.error(
            "cannot query Prometheus at %s: %s. Check --prometheus-url (or PROMETHEUS_URL) and "
            "its credentials; running without it (not ready) until it answers",
            url,
            exc,
        )
        return str(exc)


async def run_controller(options: RunOptions) -> None:
    provider = _provider(options)
    answered = asyncio.Event()  # Prometheus answered its start-up check
    kube = await connect(options.kubeconfig, options.context)
    notifier = Notifier(options.notify_urls, options.slack_urls)
    edges = Edges(kube, provider, notifier=notifier)
    notifier.failed = lambda kind, why: edges.metrics.notifications_failed.labels(kind, why).inc()
    elector = LeaderElector(
        kube,
        options.lease_namespace,
        options.lease_name,
        options.identity,
        TIMINGS,
        scope=scope_of(options.namespaces),
    )
    if options.leader_election:
        # Every write checks the fence: a leader that cannot prove it still
        # leads stops writing before another replica could take over.
        edges.fence = lambda: elector.fence.remaining
    controller = Controller(
        edges, namespaces=options.namespaces, active=not options.leader_election
    )

    def ready() -> bool:
        return answered.is_set() and controller.ready()

    # /readyz, and canary_ready for CanaryControllerNotReady: the same answer.
    edges.metrics.track_ready(ready)
    # /healthz answers before Prometheus is asked: its start-up check takes
    # up to 14 s when Prometheus answers slowly (three queries), and asked
    # first, with the imports of a busy node, it outlasted the liveness
    # probe's 20 s: the kubelet restarted the controller, which asked again.
    runner, port = await serve(options.metrics_address, edges.metrics.registry, ready)
    log.info("serving /metrics, /healthz and /readyz on port %d", port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    told = await _first_check(provider, answered, options.prometheus.url)
    tasks = [asyncio.create_task(controller.run(), name="controller")]
    if options.leader_election:
        tasks.append(asyncio.create_task(_elect(options, elector, controller), name="election"))
    else:
        edges.metrics.leader.set(1)
    stopping = asyncio.create_task(stop.wait())
    # Not among `tasks`: its end is no reason to stop.
    asking = (
        None
        if answered.is_set()
        else asyncio.create_task(until_answered(provider, answered, told=told))
    )
    try:
        done, _ = await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopping:
                task.result()  # a crash or a lost lease surfaces here
        log.info("stopping: letting reconciles in flight finish")
    finally:
        # The lease is renewed until the reconciles in flight have finished:
        # stopped first, its fence fell 10 s into their 30 s of grace and cut
        # a slow cycle between its writes.
        renewing = tasks[1:] if controller.active else []
        if asking is not None:
            asking.cancel()
            await _settle([asking])
        for task in (*tasks, stopping):
            if task not in renewing:
                task.cancel()
        await _settle([t for t in tasks if t not in renewing])
        # After a lost lease, nothing in flight may finish: the new leader acts.
        await controller.stop(grace_s=30.0 if controller.active else 0.0)
        for task in renewing:
            task.cancel()
        await _settle(renewing)
        if options.leader_election and controller.active:
            await elector.release()
        await runner.cleanup()
        await kube.close()
        provider.close()


async def _settle(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        # A crash was already raised from task.result(); here only the
        # cancellations land, and cleanup must go on regardless.
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await task


async def _elect(options: RunOptions, elector: LeaderElector, controller: Controller) -> None:
    # Caches first: nothing renews the lease between acquiring and hold(),
    # and a first list longer than the renew deadline lost an uncontested
    # lease (and again after every restart).
    await controller.synced.wait()
    await elector.acquire()
    log.info(
        "acquired lease %s/%s as %s", options.lease_namespace, options.lease_name, options.identity
    )
    if elector.left_unwatched:
        # `--namespace` shrunk across a restart: what was mid-rollout there
        # keeps its traffic, unanalysed, and nothing here can see it.
        log.warning(
            "the previous holder of lease %s/%s also watched %s, which this replica does not "
            "(--namespace %s): rollouts in flight there keep their traffic, unanalysed, and "
            "nothing acts on them or on a requested action until a controller watches them",
            options.lease_namespace,
            options.lease_name,
            elector.left_unwatched,
            elector.scope,
        )
    controller.edges.metrics.leader.set(1)
    controller.activate()
    await elector.hold()
    # Stop acting at once: another replica may lead soon.
    controller.active = False
    controller.edges.metrics.leader.set(0)
    raise LeadershipLost(
        f"lost lease {options.lease_namespace}/{options.lease_name}: could not renew it "
        f"within {TIMINGS.renew_deadline_s:g}s"
    )
