"""The dashboard and the on-call CLI on a bad day.

aiohttp test-client tests against the real application, with a fake Kube
holding one Service; no API server.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from canary import oncall
from canary.dashboard import app as dashboard
from canary.dashboard.site import Site
from canary.dashboard.stream import Hub
from canary.kube.watch import WatchEvent

IN_FLIGHT = {
    "phase": "Progressing",
    "adopted": True,
    "stable": "blue",
    "stable_revision": "aaaaaaaaaa",
    "canary": "green",
    "canary_revision": "bbbbbbbbbb",
    "step": 1,
    "requested_weight": 25,
    "effective_weight": 25.0,
    "last_action": "",
    "message": "",
}


def svc(status: Any = IN_FLIGHT, raw: str | None = None) -> dict[str, Any]:
    annotations = {"canary.io/strategy": "canary", "canary.io/steps": "10,25,50"}
    annotations["canary.io/status"] = raw if raw is not None else json.dumps(status)
    return {
        "metadata": {
            "namespace": "shop",
            "name": "web",
            "resourceVersion": "7",
            "annotations": annotations,
        }
    }


class FakeKube:
    """Just enough Kube for the dashboard's pages and oncall.request."""

    def __init__(self, service: dict[str, Any]) -> None:
        self.service = service
        self.patches: list[dict[str, Any]] = []

    async def get(self, path: str, **_: Any) -> dict[str, Any]:
        if path.endswith("/services/web"):
            return copy.deepcopy(self.service)
        if path.endswith("/services"):
            return {"items": [copy.deepcopy(self.service)], "metadata": {}}
        return {"items": [], "metadata": {"resourceVersion": "1"}}

    async def patch(self, path: str, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.patches.append(body)
        return self.service


def loaded_site(kube: FakeKube) -> Site:
    site = Site(kube, "alice")  # type: ignore[arg-type]
    for feed in site.feeds.all_feeds():
        feed.settled.set()
        feed.informer.synced.set()
    informer = site.feeds.services[None].informer
    informer._cache[("shop", "web")] = kube.service
    return site


async def client_for(site: Site, bound: str) -> TestClient[web.Request, web.Application]:
    """The application as start() sets it up for `--address bound`."""
    application = dashboard.application(site)
    host, port = dashboard.split_address(bound)
    application[dashboard.HOSTS].allowed = dashboard.allowed_hosts(host, port)
    client = TestClient(TestServer(application))
    await client.start_server()
    return client


# -- 1. beyond loopback anyone could act as the operator: it refuses to listen there --------


@pytest.mark.parametrize("bound", ["0.0.0.0:0", "10.1.2.3:8484", "[::]:0", "dash.example:8484"])
async def test_the_dashboard_refuses_to_listen_beyond_loopback(bound: str) -> None:
    """It acts with the credentials of whoever started it and has no login:
    on 0.0.0.0 any peer, or any page whose DNS name rebinds to the address,
    could promote or abort as that person. It says so and does not start."""
    kube = FakeKube(svc())
    with pytest.raises(dashboard.StartupError, match="loopback only"):
        runner, _ = await dashboard.start(loaded_site(kube), bound)
        await runner.cleanup()


async def test_on_another_loopback_address_a_rebinding_page_is_still_refused() -> None:
    """127.0.0.2 is loopback too, so it may listen there, and it still
    answers only requests addressed to it (a page on evil.example pointed at
    127.0.0.2 gets 421 and writes nothing)."""
    import aiohttp

    kube = FakeKube(svc())
    try:
        runner, url = await dashboard.start(loaded_site(kube), "127.0.0.2:0")
    except dashboard.StartupError as exc:  # no 127.0.0.2 on this machine
        pytest.skip(str(exc))
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    try:
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.2:{port}"
            evil = {"Host": f"evil.example:{port}"}
            async with http.get(f"{base}/s/shop/web", headers=evil) as r:
                assert r.status == 421
            async with http.post(
                f"{base}/s/shop/web/actions",
                data={"token": "x", "verb": "abort"},
                headers=evil,
            ) as r:
                assert r.status == 421
            async with http.get(f"{base}/s/shop/web") as r:
                assert r.status == 200
        assert not kube.patches
    finally:
        await runner.cleanup()


# -- 2. a tab that outlives a dashboard restart stays stale and says "live" -------------------


def test_a_tab_reconnecting_to_a_restarted_dashboard_is_told_everything_changed() -> None:
    """The browser's EventSource reconnects with Last-Event-ID = the old
    process's generation (thousands after hours of Event churn). The new
    process's Hub starts at 0: `since < self.generation` is false, so the
    subscriber gets nothing, the page keeps what the old process rendered
    (e.g. a canary at 25% that was rolled back while the dashboard was down)
    and shows "live"."""
    old = Hub()
    for _ in range(5000):
        old.changed(("shop", "other"))
    last_event_id = old.generation

    new = Hub()  # the restarted dashboard; its feeds listed and synced
    for _ in range(40):
        new.changed(("shop", "other"))
    new.changed(None)
    tab = new.subscribe(last_event_id)
    keys, everything = tab.take()
    assert everything or ("shop", "web") in keys, "the reconnected tab is never refreshed"


def test_a_tab_reconnecting_after_a_restart_with_a_smaller_id_misses_changes() -> None:
    """The same with an old id lower than the new generation: it is taken as
    a position in the new process's log and only what the new process saw
    after that number is sent; shop/web, listed early, is never refreshed."""
    old = Hub()
    for _ in range(3):
        old.changed(("shop", "other"))
    last_event_id = old.generation  # 3

    new = Hub()
    new.changed(("shop", "web"))  # the initial list: ADDED shop/web (gen 1)
    for _ in range(10):
        new.changed(("shop", "other"))
    tab = new.subscribe(last_event_id)
    keys, everything = tab.take()
    assert everything or ("shop", "web") in keys


# -- 3. a status that is JSON but not an object crashes `canary status` and `canary abort` ----


@pytest.mark.parametrize("raw", ["null", "[1]", "5", "true"])
async def test_cli_status_and_abort_survive_a_status_that_is_not_an_object(raw: str) -> None:
    """oncall._status does dict(json.loads(raw)) and catches only ValueError:
    `null`, `5`, `true` or `[1]` raise TypeError, so `canary status -A`
    dies with a traceback for every Service (one bad one hides all), and
    `canary abort web` / the dashboard's Abort (500 page) cannot write the
    action. The dashboard's own reader handles these; the controller
    rebuilds from them."""
    kube = FakeKube(svc(raw=raw))
    items = await oncall.status(kube, "shop", None)  # type: ignore[arg-type]
    assert items[0]["service"] == "web"
    value = await oncall.request(kube, "shop", "web", "abort", None)  # type: ignore[arg-type]
    assert value.startswith("abort") and kube.patches


def test_cli_status_names_a_garbled_status_instead_of_showing_pending() -> None:
    """A status that is not valid JSON (truncated, hand-edited) is shown by
    `canary status` as phase Pending, stable '-@-', no message: the same as
    a Service the controller never touched. The dashboard names the damage
    ("canary.io/status is not valid JSON"); the CLI says nothing, and with
    the controller down nothing rewrites it."""
    service = svc(raw='{"phase": "Progressing", "canary": "gre')
    item = {"namespace": "shop", "service": "web", **oncall._status(service)}
    text = oncall.status_text([item], color=False)
    assert "Unreadable" in text and "not a JSON object" in text, text


# -- 4. the controller is down: `canary status` shows a stale Progressing -----------------------


def lease(holder: str | None, renewed: str | None, duration: int = 15) -> dict[str, Any]:
    return {
        "spec": {
            "holderIdentity": holder,
            "renewTime": renewed,
            "leaseDurationSeconds": duration,
        }
    }


NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def test_cli_warns_when_no_controller_holds_the_lease() -> None:
    """A rollout whose controller died an hour ago must not print like one
    checked a second ago: `canary status` and the actions read the
    controller's Lease and say nobody drives the statuses."""
    where = "canary-system/canary-controller"
    hour_ago = "2027-01-15T07:00:00.000000Z"
    died = oncall.lease_warning(lease("canary-abc", hour_ago), where, NOW)
    assert died and "60m00s ago by canary-abc" in died and "nothing acts" in died
    released = oncall.lease_warning(lease(None, None), where, NOW)
    assert released and "released" in released
    # Held and renewed 5 s ago; and a CLI clock 20 s ahead of the API server's.
    assert oncall.lease_warning(lease("canary-abc", "2027-01-15T07:59:55Z"), where, NOW) is None
    assert oncall.lease_warning(lease("canary-abc", "2027-01-15T07:59:25Z"), where, NOW) is None
    assert oncall.lease_warning(None, where, NOW) is None  # run without leader election


async def test_a_watch_event_reaches_the_service_page() -> None:
    """Sanity: the fixture works (a Service page renders from the cache)."""
    kube = FakeKube(svc())
    site = loaded_site(kube)
    site.feeds._service_event(WatchEvent("MODIFIED", ("shop", "web"), kube.service))
    client = await client_for(site, "127.0.0.1:8484")
    try:
        ok = await client.get("/s/shop/web", headers={"Host": "127.0.0.1:8484"})
        assert ok.status == 200 and "bbbbbbbbbb"[:10] in await ok.text()
        evil = await client.get("/s/shop/web", headers={"Host": "evil.example:8484"})
        assert evil.status == 421
    finally:
        await client.close()


# -- 5. a Service deleted (or handed back) while its page is open ------------------------------


def test_an_open_page_is_told_when_its_service_is_gone() -> None:
    """parts.html has "This Service is gone or no longer managed" for
    ServicePage.gone, and Site.service_page(..., last) sets it, but the
    stream's _update (app.py) never passes `last`: the page of a deleted or
    handed-back Service keeps its last head (Progressing, 25%, Abort and
    Promote buttons) under a "live" indicator; only the banners are sent."""
    kube = FakeKube(svc())
    site = loaded_site(kube)
    view = dashboard.StreamView("service", "shop", "web", "", None)
    assert "head" in dashboard._update(site, view, {("shop", "web")}, False)["parts"]
    del site.feeds.services[None].informer._cache[("shop", "web")]
    parts = dashboard._update(site, view, {("shop", "web")}, False)["parts"]
    assert "head" in parts and "gone" in parts["head"], sorted(parts)


OWN = {"Host": "127.0.0.1:8484"}


async def test_a_crafted_link_cannot_claim_an_action_was_requested() -> None:
    """`?asked=` showed "Requested: canary.io/action = ..." for any text in
    a link; only the dashboard's own redirect after a write carries a mark."""
    site = loaded_site(FakeKube(svc()))
    client = await client_for(site, "127.0.0.1:8484")
    try:
        crafted = await client.get("/s/shop/web?asked=abort+revision%3Dbbbbbbbbbb", headers=OWN)
        assert "Requested" not in await crafted.text()
        mark = site.token.sign("pause")
        own = await client.get(f"/s/shop/web?asked=pause&mark={mark}", headers=OWN)
        assert "Requested: canary.io/action = &#39;pause&#39;" in await own.text()
    finally:
        await client.close()


async def test_a_token_that_is_not_ascii_is_refused_not_an_error() -> None:
    kube = FakeKube(svc())
    client = await client_for(loaded_site(kube), "127.0.0.1:8484")
    try:
        posted = await client.post(
            "/s/shop/web/actions", data={"token": "jeton-\u00e9", "verb": "abort"}, headers=OWN
        )
        assert posted.status == 403 and not kube.patches
    finally:
        await client.close()
