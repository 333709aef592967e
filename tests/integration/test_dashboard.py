"""`canary dashboard` over HTTP against the real sandbox: bad input, damaged
status and history, what a user may not read, the anti-forgery token, and
one set of watches shared by every tab. The browser tests are in
test_dashboard_browser.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from canary.dashboard.app import Options, serving
from canary.dashboard.site import Site
from canary.kube import Kube
from canary.kube.resources import CONFIGMAPS, SERVICES, Resource
from canary.sandbox import cluster
from tests.integration.helpers import eventually, managed_service

ROOT = Path(__file__).resolve().parents[2]
SERVICEACCOUNTS = Resource("v1", "serviceaccounts")
ROLES = Resource("rbac.authorization.k8s.io/v1", "roles")
ROLEBINDINGS = Resource("rbac.authorization.k8s.io/v1", "rolebindings")


@contextlib.asynccontextmanager
async def dashboard(
    kubeconfig: str, *namespaces: str
) -> AsyncIterator[tuple[Site, str, aiohttp.ClientSession]]:
    options = Options(kubeconfig, None, tuple(namespaces), "127.0.0.1:0")
    async with serving(options) as (site, url, _), aiohttp.ClientSession(url) as http:
        yield site, url, http


async def get(http: aiohttp.ClientSession, path: str) -> tuple[int, str]:
    async with http.get(path, allow_redirects=False) as response:
        return response.status, await response.text()


def history_configmap(name: str, text: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{name}-canary-history",
            "labels": {"canary.io/service": name, "canary.io/history": "true"},
        },
        "data": {"history.json": text},
    }


GOOD_RECORD = {
    "number": 1,
    "revision": "abc123",
    "images": ["registry.example/web:v1"],
    "outcome": "promoted",
    "reason": "all steps passed",
    "started": 1_700_000_000.0,
    "ended": 1_700_000_030.0,
    "checks": [],
    "actions": [],
}


async def test_unknown_service_or_revision_is_a_404_page_that_lists_what_exists(
    kube: Kube, sandbox: cluster.Sandbox, namespace: str
) -> None:
    await kube.create(SERVICES.path(namespace), managed_service("web"))
    await kube.create(SERVICES.path(namespace), managed_service("api"))
    await kube.create(
        CONFIGMAPS.path(namespace), history_configmap("web", json.dumps([GOOD_RECORD]))
    )
    async with dashboard(sandbox.kubeconfig, namespace) as (_, _, http):
        status, body = await get(http, f"/s/{namespace}/nope")
        assert status == 404 and "no managed Service nope" in body
        assert f'href="/s/{namespace}/web"' in body and f'href="/s/{namespace}/api"' in body
        status, body = await get(http, f"/s/{namespace}/web/r/7")
        assert status == 404 and "no revision #7" in body
        assert f'href="/s/{namespace}/web/r/1"' in body
        status, body = await get(http, f"/s/{namespace}/web/r/x")
        assert status == 404
        status, body = await get(http, "/s/elsewhere/web")
        assert status == 404 and f"namespace {namespace}" in body
        status, body = await get(http, f"/s/{namespace}/web/confirm/explode")
        assert status == 404 and "promote, abort" in body
        status, body = await get(http, f"/s/{namespace}/web/r/1")
        assert status == 200 and "abc123" in body


async def test_corrupt_status_and_history_show_what_can_be_read_never_a_500(
    kube: Kube, sandbox: cluster.Sandbox, namespace: str
) -> None:
    broken = managed_service("web")
    broken["metadata"]["annotations"]["canary.io/status"] = '{"phase": "Progressing", "step": '
    await kube.create(SERVICES.path(namespace), broken)
    await kube.create(
        CONFIGMAPS.path(namespace),
        history_configmap("web", json.dumps(["garbage", GOOD_RECORD, {"number": "two"}])),
    )
    odd = managed_service("api")
    odd["metadata"]["annotations"]["canary.io/status"] = json.dumps(
        {"phase": "Conflict", "canary": 7, "step": "two", "stable": "blue"}
    )
    await kube.create(SERVICES.path(namespace), odd)
    await kube.create(CONFIGMAPS.path(namespace), history_configmap("api", "{not json"))
    async with dashboard(sandbox.kubeconfig, namespace) as (_, _, http):
        status, body = await get(http, "/")
        assert status == 200
        assert "is not valid JSON" in body and "Conflict" in body
        status, body = await get(http, f"/s/{namespace}/web")
        assert status == 200
        assert "canary.io/status is not valid JSON" in body
        assert "1 of 3 history entries are not objects" in body
        assert "registry.example/web:v1" in body  # the readable record still shows
        status, body = await get(http, f"/s/{namespace}/web/r/1")
        assert status == 200 and "abc123" in body
        status, body = await get(http, f"/s/{namespace}/api")
        assert status == 200 and "history.json is not valid JSON" in body
        assert 'class="badge neutral">Conflict' in body
        assert "Traceback" not in body


async def test_an_action_without_the_pages_token_is_refused_and_changes_nothing(
    kube: Kube, sandbox: cluster.Sandbox, namespace: str
) -> None:
    await kube.create(SERVICES.path(namespace), managed_service("web"))
    async with dashboard(sandbox.kubeconfig, namespace) as (site, _, http):
        path = f"/s/{namespace}/web/actions"
        for form in ({"verb": "abort"}, {"verb": "abort", "token": "guessed"}):
            async with http.post(path, data=form, allow_redirects=False) as response:
                assert response.status == 403
                assert "anti-forgery token" in await response.text()
        live = await kube.get(SERVICES.path(namespace, "web"))
        assert "canary.io/action" not in live["metadata"]["annotations"]
        # A page elsewhere reaching us by a DNS name that points at 127.0.0.1.
        async with http.get("/", headers={"Host": "evil.example:80"}) as response:
            assert response.status == 421
        status, body = await get(http, f"/s/{namespace}/web/confirm/pause")
        assert status == 200 and "canary-dashboard-canary-admin" in body
        token = re.search(r'name="token" value="([^"]+)"', body)
        assert token and token.group(1) == site.token.value
        async with http.post(
            path, data={"verb": "pause", "token": token.group(1)}, allow_redirects=False
        ) as response:
            assert response.status == 303 and response.headers["Location"].startswith(
                f"/s/{namespace}/web?asked=pause"
            )
        live = await kube.get(SERVICES.path(namespace, "web"))
        assert live["metadata"]["annotations"]["canary.io/action"].startswith("pause ")
        managers = [
            m["manager"]
            for m in live["metadata"]["managedFields"]
            if "f:canary.io/action" in json.dumps(m.get("fieldsV1", {}))
        ]
        assert managers == ["canary-dashboard-canary-admin"]


async def _sse_until(
    http: aiohttp.ClientSession, path: str, wanted: str, timeout_s: float = 20
) -> None:
    async with asyncio.timeout(timeout_s), http.get(path) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        async for line in response.content:
            if line.startswith(b"data:") and wanted.encode() in line:
                return


async def test_every_tab_shares_one_set_of_watches_and_gets_live_updates(
    kube: Kube, sandbox: cluster.Sandbox, namespace: str
) -> None:
    await kube.create(SERVICES.path(namespace), managed_service("web"))
    async with dashboard(sandbox.kubeconfig, namespace) as (site, _, http):
        assert (await get(http, "/"))[0] == 200
        before = dict(site.kube.requests)
        stream = f"/stream?view=overview&namespace=&phase=&since={site.hub.generation}"
        tabs = [asyncio.create_task(_sse_until(http, stream, "Halted")) for _ in range(5)] + [
            asyncio.create_task(
                _sse_until(http, f"/stream?view=service&namespace={namespace}&name=web", "Halted")
            )
        ]
        await eventually(lambda: _count(site), lambda n: n == len(tabs), timeout_s=10)
        status = {"phase": "Halted", "canary": "green", "canary_revision": "r2", "step": 0}
        await kube.patch(
            SERVICES.path(namespace, "web"),
            {"metadata": {"annotations": {"canary.io/status": json.dumps(status)}}},
        )
        await asyncio.gather(*tabs)
        for _ in range(10):
            assert (await get(http, f"/s/{namespace}/web"))[0] == 200
        # Pages and streams read the caches: not one more request to the API server.
        assert site.kube.requests == before


async def _count(site: Site) -> int:
    return len(site.hub)


async def _viewer_kubeconfig(
    kube: Kube, sandbox: cluster.Sandbox, namespace: str, tmp_path: Path
) -> str:
    """A ServiceAccount that may read Services in `namespace` and nothing else."""
    await kube.create(SERVICEACCOUNTS.path(namespace), {"metadata": {"name": "viewer"}})
    await kube.create(
        ROLES.path(namespace),
        {
            "metadata": {"name": "services-only"},
            "rules": [
                {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch"]}
            ],
        },
    )
    await kube.create(
        ROLEBINDINGS.path(namespace),
        {
            "metadata": {"name": "viewer"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "services-only",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": namespace}],
        },
    )
    issued = await kube.create(
        SERVICEACCOUNTS.path(namespace, "viewer", "token"),
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    return _with_token(sandbox.kubeconfig, issued["status"]["token"], tmp_path / "viewer")


def _with_token(kubeconfig: str, token: str, path: Path) -> str:
    config = yaml.safe_load(Path(kubeconfig).read_text())
    config["users"] = [{"name": "canary-admin", "user": {"token": token}}]
    path.write_text(yaml.safe_dump(config))
    return str(path)


async def test_what_the_user_may_not_read_is_said_on_the_page_not_a_crash(
    kube: Kube, sandbox: cluster.Sandbox, namespace: str, tmp_path: Path
) -> None:
    await kube.create(SERVICES.path(namespace), managed_service("web"))
    await kube.create(
        CONFIGMAPS.path(namespace), history_configmap("web", json.dumps([GOOD_RECORD]))
    )
    viewer = await _viewer_kubeconfig(kube, sandbox, namespace, tmp_path)
    async with dashboard(viewer) as (_, _, http):
        status, body = await get(http, "/")
        assert status == 200
        assert "you may not list Services in all namespaces" in body
        assert f"system:serviceaccount:{namespace}:viewer" in body  # who it reads as
    async with dashboard(viewer, namespace) as (_, _, http):
        status, body = await get(http, "/")
        assert status == 200 and f'href="/s/{namespace}/web"' in body
        status, body = await get(http, f"/s/{namespace}/web")
        assert status == 200
        assert f"you may not list history ConfigMaps in namespace {namespace}" in body
        assert f"you may not list Events in namespace {namespace}" in body
        # Reading is not acting: the patch is refused by the API server, and said so.
        _, confirm = await get(http, f"/s/{namespace}/web/confirm/pause")
        token = re.search(r'name="token" value="([^"]+)"', confirm)
        assert token
        async with http.post(
            f"/s/{namespace}/web/actions", data={"verb": "pause", "token": token.group(1)}
        ) as response:
            assert response.status == 403
            assert "The API server refused the request" in await response.text()


def test_the_command_serves_on_loopback_and_says_when_its_port_is_taken(
    sandbox: cluster.Sandbox, tmp_path: Path
) -> None:
    port = cluster.free_port()
    command = [sys.executable, "-m", "canary", "dashboard", "--kubeconfig", sandbox.kubeconfig]
    first = subprocess.Popen(
        [*command, "--address", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert first.stdout is not None
        line = first.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line and "all namespaces" in line, line
        second = subprocess.run(
            [*command, "--address", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
        assert second.returncode == 1 and "--address" in second.stderr, second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        code = first.wait(timeout=30)
        if first.stdout is not None:
            first.stdout.close()
    assert code == 0
