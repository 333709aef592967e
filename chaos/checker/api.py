"""The checker's own clients: list-then-watch on the API server, instant
queries on Prometheus. Small on purpose, and separate from canary.kube, so
the checker does not share the controller's way of watching."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from chaos.checker.facts import JSON

log = logging.getLogger("chaos.checker")

Key = tuple[str, str]


class Unavailable(Exception):
    """The API server or Prometheus did not answer in time, or not with 2xx."""


class Api:
    def __init__(self, server: str, token: str) -> None:
        self.server = server.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Loopback only; the sandbox's serving certificate is self-signed.
            self._session = aiohttp.ClientSession(
                headers=self._headers, connector=aiohttp.TCPConnector(ssl=False)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def get(self, path: str, timeout_s: float = 5.0, **params: str) -> JSON:
        try:
            async with self._http().get(
                self.server + path,
                params=params,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response:
                if response.status >= 300:
                    raise Unavailable(f"GET {path}: {response.status} {await response.text()}")
                body: JSON = await response.json()
                return body
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"GET {path}: {type(exc).__name__} {exc}") from exc

    async def watch(self, path: str, resource_version: str) -> AsyncIterator[JSON]:
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "120",
        }
        try:
            async with self._http().get(
                self.server + path,
                params=params,
                # A stopped API server keeps the connection open but silent;
                # bookmarks arrive about once a minute.
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=150),
            ) as response:
                if response.status >= 300:
                    raise Unavailable(f"watch {path}: {response.status}")
                buffer = b""
                async for chunk in response.content.iter_any():
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if line.strip():
                            yield json.loads(line)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise Unavailable(f"watch {path}: {type(exc).__name__} {exc}") from exc


class Reflector:
    """Keeps the newest version of each object of one kind and reports every
    version it receives (on_event(type, object)); re-lists after any error."""

    def __init__(
        self,
        api: Api,
        path: str,
        on_event: Callable[[str, JSON], None],
        keep: Callable[[JSON], bool] = lambda _: True,
    ) -> None:
        self.api = api
        self.path = path
        self._on_event = on_event
        self._keep = keep
        self.cache: dict[Key, JSON] = {}
        self.synced = asyncio.Event()
        self.healthy = False  # listed and watching, no error since
        self.relists = 0

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                version = await self._relist()
                failures = 0
                while True:
                    version = await self._watch(version)
            except _Expired:
                continue
            except Unavailable as exc:
                self.healthy = False
                failures += 1
                log.info("checker watch %s: %s", self.path, exc)
                await asyncio.sleep(min(0.2 * 2**failures, 3.0))

    async def _relist(self) -> str:
        listing = await self.api.get(self.path, timeout_s=20.0)
        self.relists += 1
        fresh = {}
        for item in listing.get("items") or []:
            if self._keep(item):
                fresh[_key(item)] = item
        old, self.cache = self.cache, fresh
        for key, obj in fresh.items():
            if _rv(old.get(key)) != _rv(obj):
                self._on_event("ADDED" if key not in old else "MODIFIED", obj)
        for key, obj in old.items():
            if key not in fresh:
                self._on_event("DELETED", obj)
        self.synced.set()
        self.healthy = True
        return str((listing.get("metadata") or {}).get("resourceVersion", ""))

    async def _watch(self, version: str) -> str:
        async for event in self.api.watch(self.path, version):
            kind = event.get("type")
            obj: JSON = event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise _Expired
                raise Unavailable(f"watch {self.path}: {obj.get('message')}")
            version = _rv(obj) or version
            if kind == "BOOKMARK" or not self._keep(obj):
                continue
            key = _key(obj)
            if kind == "DELETED":
                self.cache.pop(key, None)
            else:
                self.cache[key] = obj
            self._on_event(str(kind), obj)
        return version


class _Expired(Exception):
    pass


def _key(obj: JSON) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def _rv(obj: JSON | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("resourceVersion", ""))


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def query(self, promql: str, at: float) -> list[dict[str, Any]]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.get(
                f"{self.url}/api/v1/query",
                params={"query": promql, "time": f"{at:.3f}"},
                timeout=aiohttp.ClientTimeout(total=10),
            ) as response:
                body = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise Unavailable(f"Prometheus: {type(exc).__name__} {exc}") from exc
        if body.get("status") != "success":
            raise Unavailable(f"Prometheus: {body.get('error')}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result
