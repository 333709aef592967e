"""Notifications to people: a generic JSON webhook and Slack-compatible
incoming webhooks, on rollout started, promoted, rolled back and halted.
Best effort: a notification that fails is logged, never retried forever,
and never holds up a rollout."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from analysis.run import StepResult
from canary.model import Emit

log = logging.getLogger(__name__)

# "Aborted" only without "RolledBack" (notified): see notified().
NOTIFY_ON = ("RolloutStarted", "Promoted", "RolledBack", "RolloutHalted", "Aborted")
TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Notice:
    namespace: str
    service: str
    revision: str
    phase: str
    event: Emit
    result: StepResult | None  # the analysis behind it, if any

    def failing(self) -> list[dict[str, Any]]:
        if self.result is None:
            return []
        return [
            {
                "metric": m.metric,
                "twin": m.twin,
                "value": _json_value(m.value),
                "threshold": m.threshold,
                "verdict": m.verdict.value,
            }
            for m in self.result.failing
            if not m.baseline
        ]

    def json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "service": self.service,
            "revision": self.revision,
            "phase": self.phase,
            "reason": self.event.reason,
            "message": self.event.message,
            "warning": self.event.warning,
            "failing": self.failing(),
        }

    def slack(self) -> dict[str, Any]:
        icon = ":rotating_light:" if self.event.warning else ":white_check_mark:"
        where = _mrkdwn(f"{self.namespace}/{self.service}")
        lines = [f"{icon} *{where}* {self.event.reason}: {_mrkdwn(self.event.message)}"]
        for f in self.failing():
            value = f["value"]
            value = (
                "no data" if value is None else value if isinstance(value, str) else f"{value:.4g}"
            )
            lines.append(f"• `{_mrkdwn(f['metric'])}` = {value} (want {_mrkdwn(f['threshold'])})")
        return {"text": "\n".join(lines)}


def notified(events: Sequence[tuple[str, Emit]]) -> list[tuple[str, Emit]]:
    """The (revision, Event) of one decision that people are told of. An
    abort mid-rollout says `Aborted` and `RolledBack`: the latter says it
    all. An abort right after a promotion (the flip back to the old twin)
    says `Aborted` alone: not notified, receivers held the release aborted
    for the one serving, told Promoted last."""
    rolled_back = {revision for revision, e in events if e.reason == "RolledBack"}
    return [
        (revision, e)
        for revision, e in events
        if e.reason in NOTIFY_ON and not (e.reason == "Aborted" and revision in rolled_back)
    ]


class Notifier:
    def __init__(self, webhooks: Sequence[str] = (), slack: Sequence[str] = ()) -> None:
        self._targets = [(url, False) for url in webhooks] + [(url, True) for url in slack]
        self._session: aiohttp.ClientSession | None = None
        # Told of each notification not delivered (receiver kind: webhook or
        # slack; why: status, redirect, error): nothing is retried, and a
        # log line alone let a Slack outage of hours go unseen (the run
        # wires it to canary_notifications_failed_total).
        self.failed: Callable[[str, str], None] = lambda kind, why: None

    async def send(self, notice: Notice) -> None:
        if not self._targets or notice.event.reason not in NOTIFY_ON:
            return
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))
        await asyncio.gather(
            *(
                self._post(url, notice.slack() if slack else notice.json(), slack)
                for url, slack in self._targets
            )
        )

    async def _post(self, url: str, body: dict[str, Any], slack: bool = False) -> None:
        assert self._session is not None
        where = _where(url)
        kind = "slack" if slack else "webhook"
        try:
            # Redirects are not followed (as gates): aiohttp turns a POST
            # answered 302 into a GET of the Location, so a moved webhook or
            # an auth proxy's login page answered 200 with nothing delivered,
            # and a 307 re-posted the payload to whatever host it named.
            async with self._session.post(url, json=body, allow_redirects=False) as response:
                if 300 <= response.status < 400:
                    log.warning(
                        "notification to %s answered %d, a redirect: not followed, nothing was "
                        "delivered; give the URL it points to",
                        where,
                        response.status,
                    )
                    self.failed(kind, "redirect")
                elif response.status >= 400:
                    log.warning("notification to %s answered %d", where, response.status)
                    self.failed(kind, "status")
        except aiohttp.InvalidURL:
            # Its text is the URL whole.
            log.warning("notification to %s failed: not a valid URL", where)
            self.failed(kind, "error")
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("notification to %s failed: %s", where, exc or type(exc).__name__)
            self.failed(kind, "error")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _mrkdwn(text: str) -> str:
    """Text as Slack shows it literally: it reads `<...>` as a link or a
    mention and `&` as an entity, and asks senders to escape the three.
    Raw, the text from one threshold's `<=` to a later `>=` can be taken
    for a link, and a `<!channel>` in a message would page everyone."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _json_value(value: float | None) -> float | str | None:
    """A metric's value as JSON can hold it: +Inf (histogram_quantile's
    answer when every request is slower than the top bucket, the worst
    release there is) as Prometheus's own API writes it, "+Inf". Sent as
    the float, it was `Infinity`, which is not JSON: a strict receiver
    refused the notification of the rollback it decided."""
    if value is None or math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else "+Inf" if value > 0 else "-Inf"


def _where(url: str) -> str:
    """The URL as logged: scheme, host and port only. A Slack incoming
    webhook's path is its credential, and a URL may carry a user and
    password or a token in its query: whoever reads the logs could post."""
    try:
        parsed = URL(url)
    except ValueError:
        return "a URL that does not parse"
    if not parsed.absolute or not parsed.host:
        return "a URL with no scheme or host"
    return str(parsed.origin())
