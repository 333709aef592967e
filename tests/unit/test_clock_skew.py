"""The controller's host clock is off from Prometheus's (broken NTP, a VM
resumed from suspend). Every query is still asked at the same instant in
Prometheus's clock: behind, the canary's last seconds were never read.

The adapter runs against a fake transport (tests/unit/test_analysis_bad_day
_Answers) whose Prometheus is `ahead_s` ahead of this host's clock."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest

from analysis import prometheus as prometheus_module
from tests.unit.test_analysis_bad_day import _prometheus, _vector

MINUTE = 60.0
EPSILON = 0.05  # the fake answers on loopback in well under this


def _answers(value: str = "100") -> Any:
    def answer(url: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if url.split("?", maxsplit=1)[0].endswith("query_range"):
            values = [[float(params["start"]), value]]
            return 200, {
                "status": "success",
                "data": {"result": [{"metric": {}, "values": values}]},
            }
        return 200, {"status": "success", "data": {"result": _vector(value)}}

    return answer


def _sent(transport: Any) -> list[dict[str, str]]:
    return [p for p in transport.sent if p.get("query") != "time()"]


async def test_a_query_is_asked_at_the_same_instant_in_prometheus_clock() -> None:
    prom, transport = _prometheus(_answers(), ahead_s=MINUTE)
    try:
        now = time.time()
        await prom.query("up", now, 5.0)
        await prom.query_range("up", now - 30.4, now, 5.0, 5.0)
    finally:
        prom.close()
    instant, ranged = _sent(transport)
    assert float(instant["time"]) == pytest.approx(now + MINUTE, abs=EPSILON)
    # Whole seconds (the library rounds them), the start never before the window's.
    assert now - 30.4 + MINUTE - EPSILON <= float(ranged["start"]) <= now - 30.4 + MINUTE + 1
    assert float(ranged["end"]) == pytest.approx(now + MINUTE, abs=0.5 + EPSILON)
    assert prom.clock_offset == pytest.approx(MINUTE, abs=EPSILON)


async def test_the_clock_is_probed_at_most_once_a_minute_and_only_while_queried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monotonic = [1000.0]
    fake_time = SimpleNamespace(time=time.time, monotonic=lambda: monotonic[0])
    # raising=False: the same assertions fail, rather than the patch, on an
    # adapter that reads no clock at all.
    monkeypatch.setattr(prometheus_module, "time", fake_time, raising=False)
    prom, transport = _prometheus(_answers(), ahead_s=3.0)

    def probes() -> int:
        return sum(p.get("query") == "time()" for p in transport.sent)

    try:
        # A check's queries fall due together: they wait for one probe.
        await asyncio.gather(*(prom.query("up", time.time(), 5.0) for _ in range(10)))
        assert probes() == 1
        monotonic[0] += 59.0
        await prom.query("up", time.time(), 5.0)
        assert probes() == 1
        monotonic[0] += 3600.0  # an hour idle: nothing was probed meanwhile
        assert probes() == 1
        await prom.query("up", time.time(), 5.0)
        assert probes() == 2
    finally:
        prom.close()


async def test_a_clock_probe_that_fails_fails_no_query() -> None:
    prom, transport = _prometheus(_answers("42"), ahead_s=None)
    try:
        now = time.time()
        value = await prom.query("up", now, 5.0)
    finally:
        prom.close()
    assert value == 42.0
    assert [p.get("query") for p in transport.sent] == ["time()", "up"]
    assert float(_sent(transport)[0]["time"]) == pytest.approx(now, abs=0.001)
    assert prom.clock_offset == 0.0
