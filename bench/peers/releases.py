"""One release to every app at the same moment, followed to its end.

Kinds, in the order each round plays them:
  bad         the release fails half its requests from its first pod on
  good-after  a good release right after the bad one was rolled back
  good        a good release after a promoted one
  bad-late    good at first; a random time into its first step (the same
              delay for every controller, counted from its first canary
              endpoint) its pods start failing half their requests
  no-traffic  its pods are ready but no request reaches them
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field

import aiohttp

from bench.peers import apps
from bench.peers.apps import App
from bench.peers.observe import Observer
from canary.kube import Kube, KubeError
from canary.kube.resources import PODS
from canary.sandbox.simulator import ERROR_RATE_ANNOTATION, NO_TRAFFIC_ANNOTATION

KINDS = ("bad", "good-after", "good", "bad-late", "no-traffic")
BAD = ("bad", "bad-late")
GOOD = ("good", "good-after")
PRODUCTION = "web"  # every app's production Service


@dataclass
class Outcome:
    app: str
    kind: str
    image: str
    released: float
    first_endpoint: float | None = None
    turned_bad: float | None = None  # bad-late: when its pods started failing
    failure_visible: float | None = None  # Prometheus first shows a 5xx of the release
    out_of_slices: float | None = None  # no release pod left in any EndpointSlice
    all_traffic_new: float | None = None  # the production Service serves only the release
    failed_requests: float = 0.0  # 5xx the release's pods served
    result: str = "stuck"  # promoted | rolled-back | stuck
    phases: list[str] = field(default_factory=list)

    @property
    def false_rollback(self) -> bool:
        return self.kind in GOOD and self.result != "promoted"

    @property
    def false_promotion(self) -> bool:
        return self.kind not in GOOD and self.result == "promoted"


def template_annotations(kind: str) -> dict[str, str | None]:
    return {
        ERROR_RATE_ANNOTATION: "0.5" if kind == "bad" else None,
        NO_TRAFFIC_ANNOTATION: "true" if kind == "no-traffic" else None,
    }


class Release:
    def __init__(
        self,
        kube: Kube,
        observer: Observer,
        prometheus_url: str,
        app: App,
        kind: str,
        image: str,
        interval_s: float,
        bad_delay_s: float,
    ) -> None:
        self.kube, self.observer, self.app = kube, observer, app
        self.prometheus_url = prometheus_url
        self.kind, self.image = kind, image
        self.interval_s, self.bad_delay_s = interval_s, bad_delay_s
        self.outcome = Outcome(app.label, kind, image, 0.0)
        self._patched: set[str] = set()

    async def write(self) -> None:
        app = self.app
        await self.kube.patch(
            app.workload.path(app.namespace, "web"),
            apps.release_patch(app, self.image, template_annotations(self.kind)),
        )

    async def follow(self, released: float, budget_s: float) -> Outcome:
        """Until the controller is done with the release and the app is at rest
        (its production Service serves 4 pods of one image, no other pod left)."""
        out, ns = self.outcome, self.app.namespace
        out.released = released
        deadline = released + budget_s
        seen_new = False
        while time.time() < deadline:
            serving = self.observer.namespaces[ns].now()
            new = self.observer.with_image(ns, serving.pods(), self.image)
            seen_new = seen_new or bool(new)
            if self.kind == "bad-late" and seen_new:
                await self._turn_bad(released)
            prod = serving.pods(PRODUCTION)
            promoted = bool(prod) and prod <= new
            gone = seen_new and not new
            settled = self.observer.namespaces[ns].at_rest(self.observer, PRODUCTION, apps.REPLICAS)
            if (promoted or gone) and settled:
                current = await apps.phase(self.kube, self.app)
                if not out.phases or out.phases[-1] != current:
                    out.phases.append(current)
                if apps.done(self.app, current):
                    break
            await asyncio.sleep(0.1)
        await self._measure(released)
        return out

    async def _turn_bad(self, released: float) -> None:
        out, ns = self.outcome, self.app.namespace
        if out.turned_bad is None:
            first = self._first_endpoint(released)
            if first is None or time.time() < first + self.bad_delay_s:
                return
            out.turned_bad = time.time()
        # Every pod of the release, also those created after the turn.
        for pod in self.observer.release_pods(ns, self.image):
            if pod in self._patched:
                continue
            self._patched.add(pod)
            with contextlib.suppress(KubeError):
                await self.kube.patch(
                    PODS.path(ns, pod),
                    {"metadata": {"annotations": {ERROR_RATE_ANNOTATION: "0.5"}}},
                )

    def _first_endpoint(self, since: float) -> float | None:
        ns = self.app.namespace
        for serving in self.observer.namespaces[ns].log:
            if serving.at >= since and self.observer.with_image(ns, serving.pods(), self.image):
                return serving.at
        return None

    async def _measure(self, released: float) -> None:
        out, ns = self.outcome, self.app.namespace
        log = [s for s in self.observer.namespaces[ns].log if s.at >= released]
        out.first_endpoint = self._first_endpoint(released)
        for serving in log:
            prod = serving.pods(PRODUCTION)
            if prod and prod <= self.observer.with_image(ns, prod, self.image):
                out.all_traffic_new = serving.at
                break
        pods = self.observer.release_pods(ns, self.image)
        if pods and self.kind in BAD:
            out.failure_visible, out.failed_requests = await self._errors_seen(pods, released)
        if out.first_endpoint is not None:
            after = max(out.first_endpoint, out.failure_visible or 0.0)
            for serving in log:
                if serving.at >= after and not self.observer.with_image(
                    ns, serving.pods(), self.image
                ):
                    out.out_of_slices = serving.at
                    break
        if out.all_traffic_new is not None:
            out.result = "promoted"
        elif out.out_of_slices is not None:
            out.result = "rolled-back"

    async def _errors_seen(self, pods: list[str], since: float) -> tuple[float | None, float]:
        """(when Prometheus first held a 5xx of these pods, how many they served)."""
        selector = f'namespace="{self.app.namespace}",code="500",pod=~"{"|".join(pods)}"'
        params = {
            "query": f"sum(http_requests_total{{{selector}}})",
            "start": f"{since:.3f}",
            "end": f"{time.time():.3f}",
            "step": "0.1",
        }
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.prometheus_url}/api/v1/query_range", params=params) as response,
        ):
            body = await response.json()
        first, total = None, 0.0
        for series in body["data"]["result"]:
            for at, value in series["values"]:
                if float(value) > 0 and first is None:
                    first = float(at)
                total = max(total, float(value))
        return first, total


async def release_all(
    kube: Kube,
    observer: Observer,
    prometheus_url: str,
    targets: tuple[App, ...],
    kind: str,
    image: str,
    interval_s: float,
    rng: random.Random,
    budget_s: float,
) -> tuple[float, list[Outcome]]:
    """The same release written to every app at once; returns when it was
    written and each app's outcome."""
    bad_delay = rng.uniform(0, interval_s)
    releases = [
        Release(kube, observer, prometheus_url, app, kind, image, interval_s, bad_delay)
        for app in targets
    ]
    released = time.time()
    await asyncio.gather(*(r.write() for r in releases))
    outcomes = await asyncio.gather(*(r.follow(released, budget_s) for r in releases))
    return released, list(outcomes)
