"""`canary wait` while the Service is replaced (kubectl replace
--force, Argo CD `Replace=true`): DELETED then ADDED a moment later, the
rollout going on (README: a recreate within 10 s is not a hand-back)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from canary import wait as waiting
from canary.release_outcome import Outcome
from tests.unit.test_dashboard_bad_day import IN_FLIGHT as DASHBOARD_IN_FLIGHT

REV = "bbbbbbbbbb"
IN_FLIGHT = {**DASHBOARD_IN_FLIGHT, "canary_revision": REV}
PROMOTED = {
    **IN_FLIGHT,
    "stable": "green",
    "stable_revision": REV,
    "canary": None,
    "canary_revision": "",
    "phase": "Healthy",
}


def svc(status: dict[str, Any], rv: str) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "shop",
            "name": "web",
            "resourceVersion": rv,
            "annotations": {"canary.io/strategy": "canary", "canary.io/status": json.dumps(status)},
        }
    }


RECREATED = [
    {"type": "DELETED", "object": svc(IN_FLIGHT, "11")},
    {"type": "ADDED", "object": svc(IN_FLIGHT, "12")},  # recreated, rollout goes on
    {"type": "MODIFIED", "object": svc(PROMOTED, "13")},
]


class FakeKube:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.service_events = events

    async def get(self, path: str, **_: Any) -> dict[str, Any]:
        items = [svc(IN_FLIGHT, "10")] if path.endswith("/services") else []
        return {"items": items, "metadata": {"resourceVersion": "10"}}

    async def watch(self, path: str, rv: str, timeout: int, **_: Any) -> AsyncIterator[Any]:
        if path.endswith("/services"):
            events, self.service_events = self.service_events, []
            for event in events:
                yield event
        await asyncio.sleep(3600)


async def test_wait_outlives_a_replace_force_of_the_service() -> None:
    request = waiting.Request("shop", "web", revision=REV, timeout_s=5)
    result = await waiting.wait(FakeKube(RECREATED), request)  # type: ignore[arg-type]
    assert result.settled.outcome is Outcome.PROMOTED


async def test_wait_gives_up_on_a_service_deleted_for_good(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting, "ORPHAN_GRACE_S", 0.2)
    request = waiting.Request("shop", "web", revision=REV, timeout_s=5)
    deleted = [{"type": "DELETED", "object": svc(IN_FLIGHT, "11")}]
    with pytest.raises(waiting.WaitError, match="deleted and not created again"):
        await waiting.wait(FakeKube(deleted), request)  # type: ignore[arg-type]
