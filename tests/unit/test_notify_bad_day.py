"""Notifications (--notify-url, --slack-webhook) on a bad day: a receiver on
127.0.0.1 that fails, redirects or reads the body strictly. Each test
failed on the code before its fix."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web

from analysis.run import StepResult
from analysis.verdicts import Measurement, Verdict
from canary.model import Checked, Emit
from canary.notify import Notice, Notifier
from tests.unit.world import result

Handler = Callable[[web.Request], Any]


class _Receiver:
    """An HTTP server on 127.0.0.1 (port 0): each path answers as asked,
    and every request is kept (path, method, body)."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.seen: list[tuple[str, str, bytes]] = []
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _any(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.path, request.method, await request.read()))
        handler = self.routes.get(request.path)
        if handler is None:
            return web.Response(status=200)
        answer: web.StreamResponse = await handler(request)
        return answer


@pytest.fixture
async def receiver() -> AsyncIterator[_Receiver]:
    got = _Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", got._any)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    got.port = runner.addresses[0][1]
    try:
        yield got
    finally:
        await runner.cleanup()


def _notice(value: float | None = 50.0, reason: str = "RolledBack") -> Notice:
    failing = Measurement("latency-p99", "green", "q", 0.0, 1.0, value, "<= 0.5", Verdict.FAIL, 1.0)
    return Notice(
        "ns",
        "web",
        "r2",
        "RolledBack",
        Emit(reason, "revision r2 rolled back: latency-p99 failed", warning=True),
        StepResult(Verdict.FAIL, (failing,), "latency-p99 failed"),
    )


async def test_a_failing_webhook_is_logged_without_its_secret_path_credentials_or_token(
    receiver: _Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    # A Slack incoming webhook's path is its credential: whoever reads the
    # controller's logs (a log pipeline, a support bundle) could post to the
    # channel. Before, every failure logged the URL whole.
    async def failing(_: web.Request) -> web.Response:
        return web.Response(status=500, text="server_error")

    receiver.routes["/services/T0/B0/PATHSECRET"] = failing
    slack = receiver.url("/services/T0/B0/PATHSECRET").replace("http://", "http://user:hunter2@")
    webhook = receiver.url("/services/T0/B0/PATHSECRET?token=QUERYSECRET")
    typo = "hooks.slack.com/services/T1/B1/TYPOSECRET"  # no scheme: aiohttp's InvalidURL
    notifier = Notifier([webhook], [slack, typo])
    with caplog.at_level(logging.WARNING, logger="canary.notify"):
        await notifier.send(_notice())
    await notifier.close()
    assert len(receiver.seen) == 2
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert len(caplog.records) == 3, logged
    for secret in ("PATHSECRET", "hunter2", "QUERYSECRET", "TYPOSECRET", "T0/B0"):
        assert secret not in logged, logged
    assert f"127.0.0.1:{receiver.port}" in logged and "500" in logged, logged


async def test_a_redirect_is_not_followed_and_is_said(
    receiver: _Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: a 302 (a webhook moved, an auth proxy's login page) became a
    # GET of the Location that answered 200: the notification was lost and
    # nothing said so. A 307 re-posted the payload to wherever it pointed (an
    # internal address, another host), unconfigured.
    for path, status in (("/moved", 302), ("/proxy", 307)):

        async def redirect(_: web.Request, status: int = status) -> web.Response:
            return web.Response(status=status, headers={"Location": receiver.url("/elsewhere")})

        receiver.routes[path] = redirect
    notifier = Notifier([receiver.url("/moved"), receiver.url("/proxy")])
    with caplog.at_level(logging.WARNING, logger="canary.notify"):
        await notifier.send(_notice())
    await notifier.close()
    assert [p for p, _, _ in receiver.seen if p == "/elsewhere"] == []
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "302" in logged and "307" in logged, logged


async def test_a_metric_at_infinity_is_sent_as_valid_json(receiver: _Receiver) -> None:
    # histogram_quantile answers +Inf when every request is slower than the
    # top bucket: the worst release there is. Before, its rollback was sent
    # as `"value": Infinity`, which is not JSON: a strict receiver (Go's
    # encoding/json, most) refused it with a 400 and the notification of the
    # rollback was lost.
    notifier = Notifier([receiver.url("/hook")], [receiver.url("/slack")])
    await notifier.send(_notice(value=math.inf))
    await notifier.close()

    def no_constants(name: str) -> Any:
        raise ValueError(f"not JSON: {name}")

    bodies = {p: json.loads(body, parse_constant=no_constants) for p, _, body in receiver.seen}
    assert bodies["/hook"]["failing"][0]["value"] == "+Inf", bodies
    assert "+Inf" in bodies["/slack"]["text"], bodies


class _Told:
    """A Notifier that keeps what it is asked to send."""

    def __init__(self) -> None:
        self.notices: list[Notice] = []

    async def send(self, notice: Notice) -> None:
        self.notices.append(notice)

    async def close(self) -> None:
        return None


def test_an_abort_while_the_annotations_are_invalid_is_notified() -> None:
    # The annotations are broken mid-rollout (a bad edit of canary.io/steps)
    # and on-call aborts: the abort needs no spec and is carried out (traffic
    # back on r1, the canary scaled down, RolledBack on the Service). Before,
    # nobody was notified: only a valid spec's decisions were.
    from tests.unit.test_events_refused import _revision, _Shell

    shell = _Shell()
    shell.kube.refusing = None
    told = _Told()
    shell.reconciler.notifier = told  # type: ignore[assignment]
    r2 = _revision(shell, "green")
    annotations = shell.service()["metadata"]["annotations"]
    annotations["canary.io/steps"] = "25,fifty"
    annotations["canary.io/action"] = f"abort revision={r2} t1"

    async def cycles() -> None:
        for _ in range(3):
            shell._slices()
            await shell.reconciler.reconcile("ns", "web")
            await asyncio.gather(*shell.reconciler._background)

    asyncio.run(cycles())
    assert shell.service()["spec"]["selector"].get("canary.io/twin") == "blue"
    assert "RolledBack" in shell.kube.events, shell.kube.events
    rolled = [n for n in told.notices if n.event.reason == "RolledBack"]
    assert len(rolled) == 1, [n.event.reason for n in told.notices]
    assert rolled[0].revision == r2, rolled[0]


async def test_an_undo_mid_rollout_notifies_the_rollback_with_the_revision_rolled_back() -> None:
    # `canary undo` to r1 while r3 is in flight ends r3 (RolledBack) and
    # starts r1 (RolloutStarted) in one decision. Before, both notices said
    # revision r1, the one now starting: a receiver keyed on `revision` (a
    # deploy tracker, a release bot) marked r1 rolled back and never r3.
    from canary.reconcile import Caches, Edges, Reconciler
    from tests.unit.test_history_record import _Empty
    from tests.unit.world import World, spec

    one = spec(steps="50")
    world = World().adopted(one)
    world.source = replace(world.source, revision="r2")
    world.settle(one)
    world.step(one, Checked("scheduled", result(Verdict.PASS), world.now + 10), advance=10)
    world.settle(one)
    assert world.state.stable_revision == "r2"
    world.source = replace(world.source, revision="r3")
    world.settle(one)
    assert world.state.canary_revision == "r3"
    number = next(int(r["number"]) for r in world.records if r["revision"] == "r1")
    world.revisions = {number: "r1"}
    world.action = f"undo {number} t1"
    before, observed = world.state, world.observed()
    plan = world.step(one, advance=1)
    assert world.state.canary_revision == "r1"
    empty: Any = _Empty()
    reconciler = Reconciler(Edges(kube=None, prometheus=None), Caches(*[empty] * 5))  # type: ignore[arg-type]
    told = _Told()
    reconciler.notifier = told  # type: ignore[assignment]
    await reconciler._notify(None, one, plan, observed, before, None)  # type: ignore[arg-type]
    by_reason = {n.event.reason: n.revision for n in told.notices}
    assert by_reason.get("RolledBack") == "r3", by_reason
    assert by_reason.get("RolloutStarted") == "r1", by_reason


async def _sent_for(the_spec: Any, world: Any, receiver: _Receiver) -> list[tuple[str, str]]:
    """(reason, revision) of each notification the next decision sends."""
    from canary.reconcile import Caches, Edges, Reconciler
    from tests.unit.test_history_record import _Empty

    before, observed = world.state, world.observed()
    plan = world.step(the_spec, advance=5)
    empty: Any = _Empty()
    reconciler = Reconciler(Edges(kube=None, prometheus=None), Caches(*[empty] * 5))  # type: ignore[arg-type]
    reconciler.notifier = Notifier([receiver.url("/hook")])
    receiver.seen.clear()
    await reconciler._notify(None, the_spec, plan, observed, before, None)  # type: ignore[arg-type]
    await reconciler.notifier.close()
    bodies = [json.loads(body) for _, _, body in receiver.seen]
    return [(b["reason"], b["revision"]) for b in bodies]


async def test_an_abort_right_after_a_promotion_is_notified(receiver: _Receiver) -> None:
    # The release promoted (notified: Promoted), on-call aborts within the
    # scale-down delay and traffic flips back to the old twin. Before,
    # nothing was notified: the flip back is said as `Aborted` alone, which
    # was not notified, so receivers held r2 for the release serving.
    from tests.unit.test_decide import CANARY, serving_canary

    world = serving_canary(CANARY)
    world.step(CANARY, result(Verdict.PASS), advance=10)
    world.settle(CANARY)
    world.step(CANARY, result(Verdict.PASS), advance=10)
    assert world.state.stable == "green"
    world.action = "abort"
    assert await _sent_for(CANARY, world, receiver) == [("Aborted", "r2")]
    assert str(world.state.stable) == "blue"  # the flip back landed


async def test_an_abort_mid_rollout_is_notified_once(receiver: _Receiver) -> None:
    # Mid-rollout, an abort says both Aborted and RolledBack: one notification.
    from tests.unit.test_decide import CANARY, serving_canary

    world = serving_canary(CANARY)
    world.action = "abort"
    assert await _sent_for(CANARY, world, receiver) == [("RolledBack", "r2")]


def test_slack_text_escapes_what_slack_reads_as_markup() -> None:
    # Slack reads `<...>` as a link or a mention and `&` as an entity, and
    # asks senders to escape all three. Before, every threshold went raw
    # (`<= 0.5`, `>= 99`): the text from one failing metric's `<` to the
    # next one's `>` could be taken for a link, and a `<!channel>` in the
    # text would page the whole channel.
    both = (
        Measurement("latency-p99", "green", "q", 0.0, 1.0, 0.8, "<= 0.5", Verdict.FAIL, 1.0),
        Measurement("<!channel>", "green", "q", 0.0, 1.0, 50.0, ">= 99", Verdict.FAIL, 1.0),
    )
    notice = Notice(
        "ns",
        "web",
        "r2",
        "RolledBack",
        Emit("RolledBack", "revision r2 rolled back: p99 0.8 > 0.5 & errors", warning=True),
        StepResult(Verdict.FAIL, both, "failed"),
    )
    text = notice.slack()["text"]
    assert "<" not in text and ">" not in text, text
    assert "&lt;= 0.5" in text and "&gt;= 99" in text and "&lt;!channel&gt;" in text, text
    assert "0.8 &gt; 0.5 &amp; errors" in text, text
    assert notice.json()["failing"][0]["threshold"] == "<= 0.5"  # JSON: as it is


async def test_a_notification_not_delivered_is_counted_for_an_alert(receiver: _Receiver) -> None:
    # Nothing is retried, and a failure was only a log line: a Slack outage
    # of hours, or a webhook URL gone stale, went unseen until someone
    # wondered why nobody had been told of a rollback (found by review).
    # Counted by receiver kind and why; CanaryNotificationsFailing reads it.
    async def failing(request: web.Request) -> web.StreamResponse:
        return web.Response(status=503)

    async def moved(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": "/elsewhere"})

    receiver.routes["/down"] = failing
    receiver.routes["/moved"] = moved
    counted: list[tuple[str, str]] = []
    notifier = Notifier(
        [receiver.url("/down"), "http://127.0.0.1:1/refused"], [receiver.url("/moved")]
    )
    notifier.failed = lambda kind, why: counted.append((kind, why))
    try:
        await notifier.send(_notice())
    finally:
        await notifier.close()
    assert sorted(counted) == [("slack", "redirect"), ("webhook", "error"), ("webhook", "status")]


def test_the_notifications_failing_alert_reads_the_counter() -> None:
    from tests.unit.test_operating_bad_day import _alerts

    rule = _alerts()["CanaryNotificationsFailing"]
    assert "canary_notifications_failed_total" in rule["expr"]
