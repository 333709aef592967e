"""A thin JSON client over kubernetes_asyncio's transport and auth.

kubernetes_asyncio gives us kubeconfig and in-cluster loading, TLS and token
refresh; we keep its ApiClient for that and speak plain JSON paths on top, so
the rest of the controller never sees a generated model.
"""

from __future__ import annotations

import email.utils
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

import aiohttp
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException

from canary.kube.errors import ApiError, KubeError, error_for

JSON = dict[str, Any]
PatchType = Literal["merge", "strategic", "json", "apply"]

_PATCH_CONTENT_TYPES: dict[PatchType, str] = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}

# Requests that are not watches get a bounded time: a hung API server must
# turn into an error the reconcile loop can retry, not a stuck worker.
REQUEST_TIMEOUT_S = 30.0


async def connect(kubeconfig: str | None = None, context: str | None = None) -> Kube:
    """A client from a kubeconfig file, or from the in-cluster service account."""
    configuration = k8s_client.Configuration()
    if kubeconfig is None:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException:
            await k8s_config.load_kube_config(context=context, client_configuration=configuration)
    else:
        await k8s_config.load_kube_config(
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
    # No cap on the connections: kubernetes_asyncio's default (100) is shared
    # by every watch, each holding a connection for as long as it runs (7
    # kinds in each namespace of --namespace), the reconciles and the Lease
    # renewals. At 15 namespaces the watches alone wanted more (the last
    # ones waited for good, the caches never synced); at 10, slow writes
    # of 32 reconciles took the rest, and the renewal waited for one past
    # its renew deadline. The controller bounds its own requests.
    configuration.connection_pool_maxsize = 0  # aiohttp: no limit
    return Kube(k8s_client.ApiClient(configuration=configuration))


class Kube:
    """JSON in, JSON out; every failure becomes a KubeError."""

    def __init__(self, api_client: Any) -> None:
        self._api = api_client
        # Requests by method (GET also counts watches), for the metrics and the
        # API-calls-per-step benchmark.
        self.requests: dict[str, int] = {}

    @property
    def api_client(self) -> Any:
        """kubernetes_asyncio's ApiClient, for its helpers (leader election)."""
        return self._api

    async def close(self) -> None:
        await self._api.close()

    async def __aenter__(self) -> Kube:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | bool] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | aiohttp.ClientTimeout = REQUEST_TIMEOUT_S,
    ) -> aiohttp.ClientResponse:
        self.requests[method] = self.requests.get(method, 0) + 1
        params = [(k, _query_value(v)) for k, v in (query or {}).items()]
        try:
            response: aiohttp.ClientResponse = await self._api.call_api(
                path,
                method,
                query_params=params,
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout,
            )
        except ApiException as exc:
            raise error_for(exc.status or 0, str(exc.reason), str(exc.body)) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiError(0, type(exc).__name__, str(exc) or "transport failure") from exc
        if response.status >= 300:
            try:
                text = await response.text()
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                # The body broke off (an API server restarting mid-answer) or
                # is not text: still this status. Untranslated, it escaped an
                # informer's retry and ended the controller.
                text = f"{type(exc).__name__} reading the answer's body"
            finally:
                response.release()
            raise _status_error(response.status, text)
        return response

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | bool] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = REQUEST_TIMEOUT_S,
    ) -> JSON:
        response = await self._send(
            method, path, query=query, body=body, content_type=content_type, timeout=timeout
        )
        return await _body(response)

    async def get(self, path: str, **query: str | int | bool) -> JSON:
        return await self.request("GET", path, query=query)

    async def get_dated(self, path: str) -> tuple[JSON, float | None]:
        """The object, and the API server's clock when it answered (its
        `Date` header, whole seconds; None without one): what a time the
        server stamped (managedFields) is compared with, not the clock of
        the machine that asks, which may be minutes off."""
        response = await self._send("GET", path)
        return await _body(response), _http_date(response.headers.get("Date"))

    async def create(self, path: str, body: JSON, **query: str | int | bool) -> JSON:
        return await self.request("POST", path, query=query, body=body)

    async def replace(self, path: str, body: JSON, **query: str | int | bool) -> JSON:
        return await self.request("PUT", path, query=query, body=body)

    async def patch(
        self, path: str, body: Any, patch_type: PatchType = "merge", **query: str | int | bool
    ) -> JSON:
        return await self.request(
            "PATCH", path, query=query, body=body, content_type=_PATCH_CONTENT_TYPES[patch_type]
        )

    async def delete(self, path: str, **query: str | int | bool) -> JSON:
        return await self.request("DELETE", path, query=query)

    async def watch(
        self, path: str, resource_version: str, timeout_s: int, **query: str | int | bool
    ) -> AsyncIterator[JSON]:
        """Raw watch events ({"type", "object"}) until the server closes the stream."""
        params: dict[str, str | int | bool] = {
            **query,
            "watch": True,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": True,
            "timeoutSeconds": timeout_s,
        }
        # No total timeout: the server ends the watch after timeout_s; the read
        # timeout only catches a connection that went silent without closing.
        timeout = aiohttp.ClientTimeout(total=None, sock_read=timeout_s + 30)
        response = await self._send("GET", path, query=params, timeout=timeout)
        # Lines are split here, not with readline(): aiohttp caps a line at
        # 128 KiB and one object (a big ConfigMap) can be larger.
        pending = bytearray()
        try:
            while True:
                try:
                    chunk = await response.content.readany()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise ApiError(0, type(exc).__name__, str(exc) or "watch broke") from exc
                if not chunk:
                    return
                pending.extend(chunk)
                while (end := pending.find(b"\n")) >= 0:
                    line = bytes(pending[:end])
                    del pending[: end + 1]
                    if line.strip():
                        yield _watch_event(line)
        finally:
            response.release()


async def _body(response: aiohttp.ClientResponse) -> JSON:
    try:
        data = await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ApiError(0, type(exc).__name__, str(exc) or "transport failure") from exc
    finally:
        response.release()
    result: JSON = json.loads(data) if data else {}
    return result


def _http_date(text: str | None) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(text).timestamp() if text else None
    except (TypeError, ValueError):
        return None


def _watch_event(line: bytes) -> JSON:
    event: JSON = json.loads(line)
    if event.get("type") == "ERROR":
        status = event.get("object", {})
        raise error_for(
            int(status.get("code", 0)),
            str(status.get("reason", "")),
            str(status.get("message", "")),
        )
    return event


def _query_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _status_error(status: int, text: str) -> KubeError:
    try:
        body = json.loads(text)
        return error_for(status, str(body.get("reason", "")), str(body.get("message", text)))
    except (ValueError, AttributeError):
        return error_for(status, "", text)
