"""`canary status` on a laptop whose clock is minutes off the API
server's (a clock that drifted while it slept, a WSL VM after a suspend):
the Lease's renewal and the status's write are stamped by the API server,
so they are aged by its clock (clocks review)."""

from __future__ import annotations

import argparse
import asyncio
import copy
import datetime as dt
import time
from typing import Any

import pytest

import canary.kube
from canary import commands
from canary.kube import Kube
from canary.spec import STATUS
from tests.unit.test_dashboard_bad_day import FakeKube, svc
from tests.unit.test_oncall_bad_night import lease, stamp

MINUTE = 60.0


class _ServerKube(FakeKube):
    """The Service (its status written 3 s before the API server's now) and
    the controller's Lease (renewed 1 s before), with the server's clock on
    every answer."""

    def __init__(self, served: float) -> None:
        service = svc()
        service["metadata"]["managedFields"] = [
            {
                "manager": "canary-controller",
                "operation": "Update",
                "time": stamp(served - 3),
                "fieldsV1": {"f:metadata": {"f:annotations": {f"f:{STATUS}": {}}}},
            }
        ]
        super().__init__(service)
        self.served = served
        self.lease = lease("canary-abc", served - 1, written=served - 1)

    async def get(self, path: str, **query: Any) -> dict[str, Any]:
        if "/leases/" in path:
            return copy.deepcopy(self.lease)
        return await super().get(path, **query)

    async def get_dated(self, path: str) -> tuple[dict[str, Any], float | None]:
        return await self.get(path), self.served

    async def __aenter__(self) -> _ServerKube:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None


def test_canary_status_on_a_laptop_whose_clock_is_ahead_tells_ages_by_the_api_server(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: the Lease's renewal and the status's write, stamped by the API
    # server, were aged by the laptop's clock: 5 minutes ahead (a clock that
    # drifted while it slept, a WSL VM's after a suspend), `canary status`
    # said "no controller holds lease ... (last renewed 5m01s ago): nothing
    # acts" of a live controller, and on-call would act by hand beside it.
    served = 1_800_000_000.0
    kube = _ServerKube(served)

    async def connect(*_: Any) -> _ServerKube:
        return kube

    monkeypatch.setattr(canary.kube, "connect", connect)
    monkeypatch.setattr(time, "time", lambda: served + 5 * MINUTE)
    args = argparse.Namespace(
        kubeconfig=None,
        context=None,
        namespace="shop",
        output="table",
        command="status",
        all_namespaces=False,
        service="web",
        controller_namespace="canary-system",
    )
    assert commands.oncall(args) == 0
    out, err = capsys.readouterr()
    assert "no controller holds lease" not in err, err
    assert "3s ago" in out and "5m" not in out, out


class _Answer:
    """An API server's answer as aiohttp gives it."""

    status = 200

    def __init__(self) -> None:
        self.headers = {"Date": "Wed, 15 Jan 2027 08:00:00 GMT"}

    async def read(self) -> bytes:
        return b'{"kind": "Lease"}'

    def release(self) -> None:
        return None


class _Client:
    async def call_api(self, *_: Any, **__: Any) -> _Answer:
        return _Answer()


def test_a_get_tells_the_api_servers_clock_from_its_date_header() -> None:
    body, served = asyncio.run(Kube(_Client()).get_dated("/apis/coordination.k8s.io/v1/x"))
    assert body == {"kind": "Lease"}
    assert served == dt.datetime(2027, 1, 15, 8, 0, tzinfo=dt.UTC).timestamp()
