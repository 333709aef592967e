"""The shell on a bad day, found by review j: an API server that breaks
off an error's body, a watch refused with 410 again and again, Services
deleted over weeks, and a stop with a notification still out. Each test
failed on the code before its fix."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from canary.kube import ApiError, Gone, Kube
from canary.kube.resources import SERVICES
from canary.kube.watch import Informer


class _BrokenBody:
    """A 503 whose body breaks off: the API server restarting mid-answer."""

    status = 503

    async def text(self) -> str:
        raise aiohttp.ClientPayloadError("Response payload is not completed")

    def release(self) -> None:
        return None


class _Restarting:
    """kubernetes_asyncio's ApiClient, answering every call with _BrokenBody."""

    async def call_api(self, *_: Any, **__: Any) -> _BrokenBody:
        return _BrokenBody()


async def test_an_error_whose_body_breaks_off_is_an_api_error() -> None:
    # Before: the aiohttp error escaped untranslated; an informer retries
    # only KubeError, so its task crashed and took the controller with it
    # (and a lease attempt, which catches KubeError and OSError, the same).
    kube = Kube(_Restarting())
    with pytest.raises(ApiError) as raised:
        await kube.get("/api/v1/services")
    assert raised.value.status == 503
