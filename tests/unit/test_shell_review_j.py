"""The shell on a bad day, found by review j: an API server that breaks
off an error's body, a watch refused with 410 again and again, Services
deleted over weeks, and a stop with a notification still out. Each test
failed on the code before its fix."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from analysis.spec import AnalysisSpec
from analysis.templates import Target
from canary.checks import Checks
from canary.controller import Controller
from canary.kube import ApiError, Gone, Kube, WatchEvent
from canary.kube.resources import SERVICES
from canary.kube.watch import Informer
from canary.reconcile import Caches, Edges, Outcome, Reconciler
from tests.unit.test_events_refused import KEY, _Shell


class _BrokenBody:
    """A 503 whose body breaks off: the API server restarting mid-answer."""

    status = 503

    async def text(self) -> str:
        raise aiohttp.ClientPayloadError("Response payload is not completed")

    def release(self) -> None:
        return None


class _Restarting:
    """kubernetes_asyncio's ApiClient, answering every call with _BrokenBody."""

    async def call_api(self, *_: Any, **__: Any) -> _BrokenBody:
        return _BrokenBody()


async def test_an_error_whose_body_breaks_off_is_an_api_error() -> None:
    # Before: the aiohttp error escaped untranslated; an informer retries
    # only KubeError, so its task crashed and took the controller with it
    # (and a lease attempt, which catches KubeError and OSError, the same).
    kube = Kube(_Restarting())
    with pytest.raises(ApiError) as raised:
        await kube.get("/api/v1/services")
    assert raised.value.status == 503


class _AlwaysGone:
    """Lists fine, but answers every watch with 410 at once: an API server
    behind a balancer whose watch cache lags the list, or a proxy."""

    def __init__(self) -> None:
        self.lists = 0

    async def get(self, path: str, **_: Any) -> dict[str, Any]:
        self.lists += 1
        await asyncio.sleep(0)
        return {"items": [], "metadata": {"resourceVersion": "7"}}

    async def watch(self, *_: Any, **__: Any) -> AsyncIterator[dict[str, Any]]:
        raise Gone(410, "Expired", "too old resource version: 7 (8)")
        yield {}


async def test_a_watch_gone_again_and_again_relists_with_backoff() -> None:
    # Before: every 410 relisted at once, a full list (all of a cluster's
    # Secrets, paged) as fast as the loop could go: thousands a second.
    kube = _AlwaysGone()
    cache = Informer(kube, SERVICES)  # type: ignore[arg-type]
    running = asyncio.create_task(cache.run())
    try:
        await asyncio.sleep(0.5)
        assert 2 <= kube.lists <= 4  # the first 410 relists at once, then 0.2 s, 0.5 s
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


def test_a_deleted_service_leaves_nothing_behind_in_the_reconciler() -> None:
    # Before: what paced its status writes (_status_at), its volatile state
    # and its last failure told stayed for good: memory that grows with
    # every Service ever deleted (preview environments, over weeks).
    shell = _Shell()
    shell.kube.refusing = None
    shell.cycle()
    reconciler = shell.reconciler
    reconciler._failure_told[KEY] = (0.0, "KeyError: 'x'")
    assert KEY in reconciler._volatile and KEY in reconciler._status_at
    # Deleted, its twins handed back and the team's Deployment with them.
    shell.informers[0].forget(*KEY)
    for name in ("web-blue", "web-green", "web"):
        shell.informers[1].forget("ns", name)
    outcome = asyncio.run(reconciler.reconcile(*KEY))
    assert outcome.requeue_after is None and outcome.deployment is None
    for kept in (
        reconciler._volatile,
        reconciler._status_at,
        reconciler._failure_told,
        reconciler._carrying,
        reconciler._events_refused,
        reconciler._missing,
        reconciler._wants,
    ):
        assert KEY not in kept


class _Quiet:
    """An API server never asked here."""

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}


def _slice(name: str, service: str) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": name,
            "labels": {"kubernetes.io/service-name": service},
        },
        "endpoints": [],
    }


def test_a_deleted_service_leaves_no_index_in_the_controller() -> None:
    # Before: every Service ever seen with an EndpointSlice (any Service of
    # the cluster: that watch is not filtered) kept an empty dict, and every
    # Service ever reconciled an empty list of what it depended on.
    controller = Controller(Edges(kube=_Quiet(), prometheus=None))  # type: ignore[arg-type]
    slice_ = _slice("ci-42-abcde", "ci-42")
    controller._on_slice(WatchEvent("ADDED", ("ns", "ci-42-abcde"), slice_))
    assert controller.caches.slices_by_service[("ns", "ci-42")]
    controller._on_slice(WatchEvent("DELETED", ("ns", "ci-42-abcde"), slice_))
    assert ("ns", "ci-42") not in controller.caches.slices_by_service
    controller._learn(KEY, Outcome(1.0, deployment="web", preview="web-preview"))
    controller._learn(KEY, Outcome(None))  # gone and handed back
    assert KEY not in controller._depends
    assert not controller._by_deployment and not controller._by_service_name


class _SlowPrometheus:
    """Answers the scrape-timing query once `answer` is set."""

    clock_offset = 0.0

    def __init__(self) -> None:
        self.answer = asyncio.Event()

    async def query_range_series(self, *_: Any) -> list[list[float]]:
        await self.answer.wait()
        return [[100.0, 101.0, 102.0, 103.0]]


async def test_a_service_forgotten_while_its_scrape_interval_is_learned_stays_forgotten() -> None:
    # Before: forget() left the learning task running; answered later, it
    # stored the interval for the Service gone for good and woke it.
    prometheus = _SlowPrometheus()
    woken: list[tuple[str, str]] = []
    checks = Checks(prometheus, None, woken.append)  # type: ignore[arg-type]
    target = Target("ns", "web", "green", "web-green-.*")
    checks.scrape_interval(KEY, AnalysisSpec(), target, 0.0)
    await asyncio.sleep(0)
    checks.forget(KEY)  # deleted and handed back
    prometheus.answer.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert not checks._learning and not checks._scrape and not woken
    await checks.close()


async def test_a_notification_still_out_at_stop_is_cancelled_after_the_grace() -> None:
    # Before: close() waited the grace, then returned with the task still
    # running; the stop then closed the HTTP sessions under it, and it was
    # left to be destroyed pending when the loop closed.
    other = Informer(None, SERVICES)  # type: ignore[arg-type]
    reconciler = Reconciler(
        Edges(kube=None, prometheus=None),  # type: ignore[arg-type]
        Caches(other, other, other, other, other),
    )

    async def hang() -> None:  # a receiver that never answers, its timeout aside
        await asyncio.Event().wait()

    reconciler._spawn(hang())
    (task,) = reconciler._background
    await reconciler.close(grace_s=0.05)
    assert task.cancelled()
