"""What a gate's webhook answers, and what opens the gate: a 2xx from the
gate's own URL, nothing else. A fake session stands in for aiohttp's (no
network): it answers as the configured server would, and follows a
redirect as aiohttp's session does unless asked not to."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, cast

import aiohttp

from analysis.gates import ask
from analysis.spec import GateKind, GateSpec


@dataclass
class _Response:
    status: int
    body: str = ""

    async def text(self) -> str:
        return self.body

    async def __aenter__(self) -> _Response:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        return None


@dataclass
class _RedirectingServer:
    """An approval service behind an auth proxy: a POST without a session
    is sent to the login page, which answers 200 to the GET that follows."""

    calls: list[tuple[str, str]] = field(default_factory=list)

    def post(self, url: str, **kwargs: Any) -> _Response:
        self.calls.append(("POST", url))
        if kwargs.get("allow_redirects", True):  # aiohttp's default
            # aiohttp turns a POST answered 302 into a GET of the Location.
            self.calls.append(("GET", "https://sso.internal/login"))
            return _Response(200, "<html>Sign in</html>")
        return _Response(302)


async def test_a_gate_redirected_to_a_login_page_stays_closed() -> None:
    # aiohttp follows redirects by default, turning the POST into a GET: the
    # login page's 200 opened the gate, and the step moved on (or the release
    # was promoted) with nobody having approved it.
    server = _RedirectingServer()
    gate = GateSpec(
        name="approve",
        when=GateKind.PRE_PROMOTION,
        url="https://approvals.internal/web",
        retries=0,
    )
    result = await ask(cast(aiohttp.ClientSession, server), [gate], {"service": "web"})
    assert not result.open, server.calls
    assert result.answers[0].reason == "HTTP 302"
    assert ("GET", "https://sso.internal/login") not in server.calls
