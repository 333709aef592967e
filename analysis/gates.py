"""Gates: webhooks asked before a transition, or told after one.

POST a JSON body (namespace, service, revision, phase, step, weight, gate);
a 2xx answer opens the gate. Anything else, a timeout or a refused connection
is retried with backoff, then the gate stays closed with the reason recorded.
A closed gate never lets a rollout advance or promote."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, RetryError, stop_after_attempt, wait_exponential

from analysis.gate_results import GateAnswer, GateResult
from analysis.spec import GateSpec


class _Closed(Exception):
    def __init__(self, status: int | None, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def ask(
    session: aiohttp.ClientSession, gates: Sequence[GateSpec], payload: dict[str, Any]
) -> GateResult:
    answers = await asyncio.gather(*(_ask_one(session, gate, payload) for gate in gates))
    kind = str(gates[0].when) if gates else ""
    return GateResult(kind, tuple(answers), tuple(gates))


async def _ask_one(
    session: aiohttp.ClientSession, gate: GateSpec, payload: dict[str, Any]
) -> GateAnswer:
    began = time.perf_counter()
    body = {**payload, "gate": gate.name, "when": str(gate.when)}
    attempts = 0
    last = _Closed(None, "not asked")

    async def once() -> int:
        nonlocal attempts
        attempts += 1
        try:
            # Redirects are not followed: aiohttp turns a POST answered 302
            # into a GET of the Location, and a gate behind an auth proxy
            # then opened on its login page's 200. Only the gate's own 2xx
            # opens it.
            async with session.post(
                gate.url,
                json=body,
                timeout=aiohttp.ClientTimeout(total=gate.timeout),
                allow_redirects=False,
            ) as response:
                if 200 <= response.status < 300:
                    return response.status
                text = (await response.text())[:200].strip()
                raise _Closed(
                    response.status, f"HTTP {response.status}" + (f": {text}" if text else "")
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Closed(
                None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            ) from exc

    retrying = AsyncRetrying(
        stop=stop_after_attempt(gate.retries + 1),
        wait=wait_exponential(multiplier=0.2, max=2.0),
    )
    try:
        async for attempt in retrying:
            with attempt:
                status = await once()
        elapsed = round((time.perf_counter() - began) * 1000, 3)
        return GateAnswer(
            gate.name, str(gate.when), True, status, f"HTTP {status}", attempts, elapsed
        )
    except RetryError as exc:
        error = exc.last_attempt.exception()
        last = error if isinstance(error, _Closed) else _Closed(None, str(error))
    elapsed = round((time.perf_counter() - began) * 1000, 3)
    return GateAnswer(gate.name, str(gate.when), False, last.status, last.reason, attempts, elapsed)


class Webhooks:
    """One HTTP session for every gate call of a controller."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def ask(self, gates: Sequence[GateSpec], payload: dict[str, Any]) -> GateResult:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return await ask(self._session, gates, payload)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
