"""The web application and `canary dashboard` itself.

Pages render from the shared caches; `/stream` is one server-sent event
stream per open tab, carrying re-rendered parts of its page when a watch
event touches what it shows. Every request must name this dashboard's own
address as its Host (a page elsewhere cannot reach it through DNS
rebinding), and every POST must carry the page's anti-forgery token.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from canary import oncall
from canary.dashboard import actions, pages
from canary.dashboard.read import managed
from canary.dashboard.site import ServicePage, Site
from canary.kube import KubeError, connect

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "127.0.0.1:8484"
STATIC = Path(__file__).with_name("static")
HEARTBEAT_S = 15.0
COALESCE_S = 0.15  # a burst of watch events becomes one update
FIRST_SYNC_S = 10.0  # how long the first page waits for the caches


@dataclass
class Hosts:
    """The Host headers this dashboard answers, filled in by start() once the
    port is bound (port 0 picks one); None only for an application that
    start() did not serve (the tests' own client)."""

    allowed: set[str] | None = None


SITE: web.AppKey[Site] = web.AppKey("site", Site)
HOSTS: web.AppKey[Hosts] = web.AppKey("hosts", Hosts)
CLOSING: web.AppKey[asyncio.Event] = web.AppKey("closing", asyncio.Event)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def html(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def error_page(
    site: Site,
    status: int,
    title: str,
    detail: str,
    links: list[tuple[str, str]] | None = None,
    links_title: str = "",
) -> web.Response:
    body = pages.render(
        "error.html",
        **site.base("/stream?view=none"),
        title=title,
        detail=detail,
        links=links or [],
        links_title=links_title,
    )
    return html(body, status)


# -- middleware ----------------------------------------------------------------------------


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str, port: int) -> set[str]:
    """The Host headers this dashboard answers: its own loopback address."""
    own = f"[{host.strip('[]')}]" if ":" in host else host
    return {f"{own}:{port}", f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    hosts = request.app[HOSTS].allowed
    if hosts is not None and request.host not in hosts:
        return web.Response(status=421, text="this dashboard answers only to its own address")
    site = request.app[SITE]
    try:
        response = await handler(request)
    except web.HTTPException:
        raise
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("rendering %s failed", request.path)
        response = error_page(
            site,
            500,
            "This page could not be shown",
            "The dashboard hit an error building it; its log has the details. "
            "Other pages still work.",
        )
    if not isinstance(response, web.StreamResponse) or response.prepared:
        return response
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if response.content_type == "text/html":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


# -- pages ------------------------------------------------------------------------------------


async def _settled(site: Site) -> None:
    await site.feeds.settled(FIRST_SYNC_S)


def _service_missing(site: Site, namespace: str, name: str) -> web.Response:
    """404 that lists what does exist."""
    if not site.feeds.in_scope(namespace):
        return error_page(
            site,
            404,
            f"Namespace {namespace} is not watched",
            f"This dashboard was started for {site.scope}.",
            [(f"/?namespace={quote(ns)}", ns) for ns in site.namespaces],
            "Namespaces it shows:",
        )
    denied = site.feeds.problem("services", namespace)
    if denied:
        return error_page(site, 403, f"Cannot show {namespace}/{name}", denied)
    rows = site.rows()
    here = [r for r in rows if r.namespace == namespace]
    service = site.feeds.service(namespace, name)
    detail = (
        f"Service {namespace}/{name} exists but is not managed: it has no canary.io/strategy "
        "annotation."
        if service is not None and not managed(service)
        else f"There is no managed Service {name} in namespace {namespace}."
    )
    if here:
        links = [(f"/s/{r.namespace}/{r.name}", r.name) for r in here]
        return error_page(site, 404, "No such Service", detail, links, f"Managed in {namespace}:")
    spaces = sorted({r.namespace for r in rows})
    links = [(f"/?namespace={quote(ns)}", ns) for ns in spaces]
    title = "Namespaces with managed Services:" if links else "No managed Service anywhere yet."
    return error_page(site, 404, "No such Service", detail, links, title)


async def overview(request: web.Request) -> web.Response:
    site = request.app[SITE]
    await _settled(site)
    namespace = request.query.get("namespace", "")
    phase = request.query.get("phase", "")
    stream = "/stream?" + urlencode({"view": "overview", "namespace": namespace, "phase": phase})
    return html(
        pages.render("overview.html", **site.base(stream), **site.overview(namespace, phase))
    )


async def service(request: web.Request) -> web.Response:
    site = request.app[SITE]
    await _settled(site)
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    page = site.service_page(namespace, name)
    if page is None:
        return _service_missing(site, namespace, name)
    stream = "/stream?" + urlencode({"view": "service", "namespace": namespace, "name": name})
    context = site.base(stream)
    asked = request.query.get("asked")
    if asked and site.token.signed(asked, request.query.get("mark")):
        context["flash"] = (
            f"Requested: canary.io/action = {asked!r}. The controller acts on its next cycle."
        )
    return html(pages.render("service.html", **context, v=page))


async def revision(request: web.Request) -> web.Response:
    site = request.app[SITE]
    await _settled(site)
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    if site.service_page(namespace, name) is None:
        return _service_missing(site, namespace, name)
    raw = request.match_info["number"]
    page = site.revision_page(namespace, name, int(raw)) if raw.isdigit() else None
    if page is None:
        history = site.history(namespace, name)
        links = [
            (f"/s/{namespace}/{name}/r/{r.number}", f"#{r.number} {r.revision[:10]} {r.outcome}")
            for r in site.service_page(namespace, name).revisions  # type: ignore[union-attr]
            if r.number is not None
        ]
        detail = f"{namespace}/{name} has no revision #{raw} in its history."
        if history.problem:
            detail += f" ({history.problem})"
        return error_page(site, 404, "No such revision", detail, links, "Revisions it has:")
    stream = "/stream?" + urlencode(
        {"view": "revision", "namespace": namespace, "name": name, "number": page.number}
    )
    return html(pages.render("revision.html", **site.base(stream), v=page))


def _to(request: web.Request, raw: str | None) -> int | None:
    return int(raw) if raw and raw.isdigit() else None


async def confirm(request: web.Request) -> web.Response:
    site = request.app[SITE]
    await _settled(site)
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    verb = request.match_info["verb"]
    svc = site.feeds.service(namespace, name)
    if svc is None or not managed(svc):
        return _service_missing(site, namespace, name)
    if verb not in actions.VERBS:
        return error_page(
            site,
            404,
            f"No action {verb!r}",
            "The actions are " + ", ".join(actions.VERBS) + ".",
            [(f"/s/{namespace}/{name}", f"back to {namespace}/{name}")],
        )
    to = _to(request, request.query.get("to"))
    if verb == "undo" and to is None:
        return error_page(
            site,
            400,
            "Undo to which revision?",
            "Pick a revision in the Service's history.",
            [(f"/s/{namespace}/{name}", f"{namespace}/{name}")],
        )
    offer = actions.offer(verb, svc, site.history(namespace, name), to)
    stream = "/stream?" + urlencode({"view": "none"})
    body = pages.render(
        "confirm.html",
        **site.base(stream),
        o=offer,
        namespace=namespace,
        name=name,
        token=site.token.value,
        manager=site.manager,
    )
    return html(body)


async def act(request: web.Request) -> web.StreamResponse:
    site = request.app[SITE]
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    form = await request.post()
    token = form.get("token") or request.headers.get("X-Canary-Token")
    if not site.token.accepts(token if isinstance(token, str) else None):
        return error_page(
            site,
            403,
            "Request refused",
            "It did not carry this dashboard's anti-forgery token, so it may come from "
            "another site. Nothing was changed. Use the buttons on the Service's page.",
            [(f"/s/{namespace}/{name}", f"{namespace}/{name}")],
        )
    verb = str(form.get("verb", ""))
    to = _to(request, str(form.get("to", "")))
    if verb not in actions.VERBS or (verb == "undo" and to is None):
        return error_page(site, 400, "Unknown action", f"{verb!r} with to={to} is not an action.")
    try:
        revision = str(form.get("revision", "")) or None
        step = _to(request, str(form.get("step", "")))
        value = await actions.request(
            site.kube, namespace, name, verb, to, site.user, revision, step
        )
    except oncall.UserError as exc:
        return error_page(site, 404, "Nothing was changed", str(exc))
    except KubeError as exc:
        status = 403 if exc.status == 403 else 502
        return error_page(
            site,
            status,
            "The API server refused the request" if status == 403 else "The request failed",
            f"Setting canary.io/action on {namespace}/{name} with your credentials: {exc}",
            [(f"/s/{namespace}/{name}", f"{namespace}/{name}")],
        )
    log.info("%s asked to %s %s/%s (%s)", site.user, verb, namespace, name, value)
    asked = {"asked": value, "mark": site.token.sign(value)}
    raise web.HTTPSeeOther(f"/s/{quote(namespace)}/{quote(name)}?" + urlencode(asked))


# -- the live stream ---------------------------------------------------------------------------


@dataclass
class StreamView:
    kind: str
    namespace: str
    name: str
    phase: str
    number: int | None
    # The Service page last sent: when the Service goes, the tab is told so
    # over what it shows (instead of keeping a live-looking Progressing).
    last: ServicePage | None = None


def _view(request: web.Request) -> StreamView:
    q = request.query
    raw = q.get("number", "")
    return StreamView(
        kind=q.get("view", "none"),
        namespace=q.get("namespace", ""),
        name=q.get("name", ""),
        phase=q.get("phase", ""),
        number=int(raw) if raw.isdigit() else None,
    )


def _update(
    site: Site, view: StreamView, keys: set[tuple[str, str]], everything: bool
) -> dict[str, Any]:
    banners = {"banners": pages.part("banners", site.feeds.problems())}
    if view.kind == "overview":
        return site.overview_update(keys, everything, view.namespace, view.phase)
    touched = everything or (view.namespace, view.name) in keys
    if view.kind == "service" and touched:
        page = site.service_page(view.namespace, view.name, view.last)
        view.last = page or view.last
        return {"parts": site.service_parts(page) if page else banners}
    if view.kind == "revision" and touched and view.number is not None:
        rpage = site.revision_page(view.namespace, view.name, view.number)
        return {"parts": site.revision_parts(rpage) if rpage else banners}
    return {"parts": banners} if everything else {}


async def stream(request: web.Request) -> web.StreamResponse:
    site = request.app[SITE]
    closing = request.app[CLOSING]
    view = _view(request)
    if view.kind == "service":
        view.last = site.service_page(view.namespace, view.name)
    last_id = request.headers.get("Last-Event-ID") or request.query.get("since", "")
    since = int(last_id) if last_id.isdigit() else None
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    subscriber = site.hub.subscribe(since)
    sent: dict[str, str] = {}
    try:
        await response.write(b"retry: 2000\nevent: hello\ndata: {}\n\n")
        while not closing.is_set():
            try:
                await asyncio.wait_for(subscriber.wake.wait(), HEARTBEAT_S)
            except TimeoutError:
                await response.write(b": still here\n\n")
                continue
            await asyncio.sleep(COALESCE_S)
            generation = site.hub.generation
            keys, everything = subscriber.take()
            update = _update(site, view, keys, everything)
            parts = {k: v for k, v in update.get("parts", {}).items() if sent.get(k) != v}
            sent.update(parts)
            update["parts"] = parts
            if not any(update.values()):
                continue
            payload = json.dumps(update, separators=(",", ":"))
            await response.write(f"id: {generation}\ndata: {payload}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        site.hub.unsubscribe(subscriber)
    return response


async def healthz(request: web.Request) -> web.Response:
    site = request.app[SITE]
    return web.Response(text="ok" if site.feeds.synced() else "syncing")


# -- assembling and running ---------------------------------------------------------------------


def application(site: Site) -> web.Application:
    app = web.Application(middlewares=[guard])
    app[SITE] = site
    app[HOSTS] = Hosts()
    app[CLOSING] = asyncio.Event()
    app.router.add_get("/", overview)
    app.router.add_get("/s/{namespace}/{name}", service)
    app.router.add_get("/s/{namespace}/{name}/r/{number}", revision)
    app.router.add_get("/s/{namespace}/{name}/confirm/{verb}", confirm)
    app.router.add_post("/s/{namespace}/{name}/actions", act)
    app.router.add_get("/stream", stream)
    app.router.add_get("/healthz", healthz)
    app.router.add_static("/static", STATIC)

    async def close_streams(app: web.Application) -> None:
        app[CLOSING].set()
        app[SITE].hub.changed(None)  # wakes every stream, which then sees CLOSING

    app.on_shutdown.append(close_streams)
    return app


@dataclass(frozen=True)
class Options:
    kubeconfig: str | None
    context: str | None
    namespaces: tuple[str, ...]  # empty: all namespaces
    address: str = DEFAULT_ADDRESS


class StartupError(RuntimeError):
    pass


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise StartupError(f"--address {address!r}: give host:port, e.g. {DEFAULT_ADDRESS}")
    return host.strip("[]") or "127.0.0.1", int(port)


async def start(site: Site, address: str) -> tuple[web.AppRunner, str]:
    """Serve the site; returns the runner and the URL it answers on."""
    host, port = split_address(address)
    if not loopback(host):
        # It acts with the credentials of whoever started it and has no login
        # of its own: reachable from the network, anyone (or any page that
        # points a DNS name at it) could promote or abort as that person.
        raise StartupError(
            f"--address {address!r}: the dashboard listens on loopback only (127.0.0.1, "
            "localhost or ::1); it acts with your credentials and has no login. "
            "To open it from another machine, forward the port: ssh -L 8484:127.0.0.1:8484 HOST"
        )
    app = application(site)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        app[HOSTS].allowed = allowed_hosts(host, port)
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise StartupError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
            "pick another with --address 127.0.0.1:PORT"
        ) from exc
    bound = int(runner.addresses[0][1]) if runner.addresses else port
    app[HOSTS].allowed = allowed_hosts(host, bound)
    shown = "127.0.0.1" if host in ("127.0.0.1", "localhost") else host
    return runner, f"http://{shown}:{bound}/"


@contextlib.asynccontextmanager
async def serving(options: Options) -> AsyncIterator[tuple[Site, str, asyncio.Task[None]]]:
    """The dashboard running in this event loop: (site, its URL, the feeds task)."""
    async with await connect(options.kubeconfig, options.context) as kube:
        site = Site(kube, await actions.whoami(kube), options.namespaces)
        feeds = asyncio.create_task(site.feeds.run(), name="feeds")
        try:
            runner, url = await start(site, options.address)
            try:
                yield site, url, feeds
            finally:
                await runner.cleanup()
        finally:
            feeds.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeds


async def main(options: Options, say: Callable[[str], None] = print) -> None:
    async with serving(options) as (site, url, feeds):
        say(f"canary dashboard for {site.scope} as {site.user}: {url} (Ctrl-C to stop)")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        waiting = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([feeds, waiting], return_when=asyncio.FIRST_COMPLETED)
            if feeds in done:
                feeds.result()  # a crash of the watches surfaces here
        finally:
            waiting.cancel()
