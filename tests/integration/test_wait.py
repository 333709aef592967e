"""`canary wait` as a pipeline runs it, right after `kubectl apply`, against
the real controller: the exit code must say what happened to THIS release.
Also the on-call commands' reading of the same release: why it was rolled
back, config-only revisions, RFC 3339 times."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from canary.kube import Kube
from canary.kube.resources import CONFIGMAPS, SERVICES
from canary.sandbox import cluster
from tests.integration.conftest import RunningController
from tests.integration.helpers import (
    eventually,
    kubeconfig_of,
    kubectl,
    managed_service,
    service_status,
)
from tests.integration.test_rollouts import BAD, deploy_app, release, wait_phase

ROOT = Path(__file__).resolve().parents[2]


async def canary(
    sandbox: cluster.Sandbox,
    namespace: str,
    *args: str,
    timeout_s: float = 120,
    said: asyncio.Event | None = None,
    kubeconfig: Path | None = None,
) -> tuple[int, str, str]:
    """The CLI as a child process, so the controller in this loop keeps
    running. `said` is set at its first line on stderr (a wait's first
    progress line: it knows which release it waits for)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "canary",
        *args,
        "-n",
        namespace,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "KUBECONFIG": str(kubeconfig or sandbox.kubeconfig)},
        cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stderr is not None
    err: list[bytes] = []

    async def read_err() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            err.append(line)
            if said is not None:
                said.set()

    out, _, _ = await asyncio.wait_for(
        asyncio.gather(proc.stdout.read(), read_err(), proc.wait()), timeout_s
    )
    assert proc.returncode is not None
    return proc.returncode, out.decode(), b"".join(err).decode()


def wait_account(sandbox: cluster.Sandbox, namespace: str, directory: Path) -> Path:
    """The ServiceAccount, Role and RoleBinding of manifests/examples/canary-wait.yaml
    (not its Job) in this namespace, and a kubeconfig that acts as it."""
    documents = yaml.safe_load_all((ROOT / "manifests/examples/canary-wait.yaml").read_text())
    wanted = []
    for document in documents:
        if document["kind"] == "Job":
            continue
        document["metadata"]["namespace"] = namespace
        for subject in document.get("subjects", []):
            subject["namespace"] = namespace
        wanted.append(document)
    kubectl(sandbox, "apply", "-f", "-", stdin=yaml.safe_dump_all(wanted))
    return kubeconfig_of(sandbox, namespace, "canary-wait", directory)


async def pause(kube: Kube, namespace: str, paused: bool) -> None:
    await kube.patch(
        SERVICES.path(namespace, "web"),
        {"metadata": {"annotations": {"canary.io/paused": str(paused).lower()}}},
    )


def rfc3339(text: Any) -> dt.datetime:
    assert isinstance(text, str) and text.endswith("Z"), text
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


CONFIGURED = {
    "containers": [
        {
            "name": "app",
            "image": "registry.example/web:v1",
            "envFrom": [{"configMapRef": {"name": "web-config"}}],
        }
    ]
}


async def test_a_good_release_waited_on_by_image_and_by_default_exits_zero_and_a_config_change_too(
    kube: Kube,
    sandbox: cluster.Sandbox,
    namespace: str,
    controller: RunningController,
    tmp_path: Path,
) -> None:
    await kube.create(
        CONFIGMAPS.path(namespace), {"metadata": {"name": "web-config"}, "data": {"a": "1"}}
    )
    await deploy_app(kube, namespace, template=CONFIGURED)
    await wait_phase(kube, namespace, "Healthy")
    # Started the moment the change is applied, before the controller saw it:
    # the stable revision's old promotion must not count for this one.
    # The pipeline's wait runs with the documented read-only Role.
    reader = await asyncio.to_thread(wait_account, sandbox, namespace, tmp_path)
    await release(kube, namespace, "registry.example/web:v2")
    by_default, by_image = await asyncio.gather(
        canary(sandbox, namespace, "wait", "web", "-o", "json", kubeconfig=reader),
        canary(sandbox, namespace, "wait", "web", "--image", "registry.example/web:v2"),
    )
    code, out, err = by_default
    assert code == 0, (out, err)
    result = json.loads(out)
    assert result["outcome"] == "promoted" and result["images"] == ["registry.example/web:v2"]
    assert rfc3339(result["ended"]) >= rfc3339(result["started"])
    status = await service_status(kube, namespace)
    assert result["revision"] == status["stable_revision"]
    assert by_image[0] == 0 and "promoted" in by_image[1], by_image

    await kube.patch(CONFIGMAPS.path(namespace, "web-config"), {"data": {"a": "2"}})
    code, out, err = await canary(sandbox, namespace, "wait", "web")
    assert code == 0, (out, err)
    code, table, _ = await canary(sandbox, namespace, "history", "web")
    assert code == 0
    last = table.splitlines()[-1]
    assert "config only: ConfigMap/web-config" in last and "promoted" in last, table
    code, out, _ = await canary(sandbox, namespace, "history", "web", "-o", "json")
    records = json.loads(out)
    assert records[-1]["change"] == {"kind": "config", "config": ["ConfigMap/web-config"]}
    # "first" until the history records the adopted baseline, then "image".
    assert records[-2]["change"]["kind"] in ("first", "image")
    rfc3339(records[-1]["started"])
    rfc3339(records[-1]["checks"][0]["measurements"][0]["end"])
    code, out, _ = await canary(sandbox, namespace, "status", "web", "-o", "json")
    rfc3339(json.loads(out)[0]["step_started"])


async def test_a_bad_release_exits_non_zero_naming_success_rate_and_status_says_why(
    kube: Kube, sandbox: cluster.Sandbox, namespace: str, controller: RunningController
) -> None:
    await deploy_app(kube, namespace)
    await wait_phase(kube, namespace, "Healthy")
    await release(kube, namespace, "registry.example/web:v2", BAD)
    code, out, err = await canary(sandbox, namespace, "wait", "web")
    assert code == 3, (out, err)
    assert out.startswith("rolled-back:")
    assert "success-rate" in out and "want >= 95" in out, out
    # The failing measurement with its value, e.g. "success-rate (green) = 52.3".
    assert any(line.strip().startswith("success-rate (") for line in out.splitlines()), out
    # Waiting again later says the same, at once: the history remembers.
    code, again, _ = await canary(sandbox, namespace, "wait", "web", "-o", "json")
    assert code == 3 and json.loads(again)["failing"][0]["metric"] == "success-rate"

    code, table, _ = await canary(sandbox, namespace, "status", "web")
    assert "RolledBack" in table and "success-rate" in table and "want >= 95" in table, table
    code, out, _ = await canary(sandbox, namespace, "status", "web", "-o", "json")
    why = json.loads(out)[0]["rolled_back"]
    assert why["outcome"] == "rolled-back" and why["failing"][0]["metric"] == "success-rate"
    rfc3339(why["ended"])


async def test_a_wait_times_out_with_its_own_exit_code_when_nothing_acts(
    kube: Kube, sandbox: cluster.Sandbox, namespace: str, controller: RunningController
) -> None:
    await deploy_app(kube, namespace)
    await wait_phase(kube, namespace, "Healthy")
    await controller.stop()  # the controller is down: nobody will roll v2 out
    await release(kube, namespace, "registry.example/web:v2")
    code, out, err = await canary(sandbox, namespace, "wait", "web", "--timeout", "3s")
    assert code == 8, (out, err)
    assert out.startswith("timed-out:") and "waiting for the controller to start" in out


@contextlib.asynccontextmanager
async def gate() -> AsyncIterator[tuple[str, list[bool]]]:
    """A gate webhook on loopback: closed (503) until open[0] is True."""
    open_ = [False]

    async def answer(_: web.Request) -> web.Response:
        return web.Response(status=200 if open_[0] else 503, text="held by the test")

    app = web.Application()
    app.router.add_post("/{path:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hold", open_
    finally:
        await runner.cleanup()


async def test_a_release_superseded_mid_rollout_ends_the_wait_with_its_own_code(
    kube: Kube, sandbox: cluster.Sandbox, namespace: str, controller: RunningController
) -> None:
    async with gate() as (url, open_):
        # A closed pre-rollout gate holds each release in flight (the wait goes
        # on: the gate is asked again), however slowly the waits start.
        analysis = (
            "scrape-interval: 1s\nmin-requests: 10\nmetrics:\n  - {name: success-rate, min: 95}\n"
            "gates:\n"
            f"  - {{name: hold, when: pre-rollout, url: '{url}', timeout: 1s, retries: 0}}\n"
        )
        await deploy_app(kube, namespace, service=managed_service(analysis=analysis))
        await wait_phase(kube, namespace, "Healthy")
        await release(kube, namespace, "registry.example/web:v2")
        said = asyncio.Event(), asyncio.Event()
        by_default = asyncio.create_task(canary(sandbox, namespace, "wait", "web", said=said[0]))
        by_image = asyncio.create_task(
            canary(
                sandbox,
                namespace,
                "wait",
                "web",
                "--image",
                "registry.example/web:v2",
                said=said[1],
            )
        )
        await eventually(
            lambda: service_status(kube, namespace),
            lambda s: bool(s.get("canary_revision") and s.get("gate_reason")),
            timeout_s=60,
        )
        await asyncio.wait_for(asyncio.gather(said[0].wait(), said[1].wait()), 120)
        assert not by_default.done() and not by_image.done()
        await release(kube, namespace, "registry.example/web:v3")
        for waited in (by_default, by_image):
            code, out, err = await waited
            assert code == 7, (out, err)
            assert out.startswith("superseded:"), out
        # Asked for after the fact (v3 held at the gate), v2 is known as
        # superseded, not awaited.
        code, out, err = await canary(
            sandbox, namespace, "wait", "web", "--image", "registry.example/web:v2"
        )
        assert code == 7, (out, err)
        open_[0] = True
        # And v3 itself is waited for, to its promotion.
        code, out, err = await canary(
            sandbox, namespace, "wait", "web", "--image", "registry.example/web:v3"
        )
        assert code == 0, (out, err)


async def test_paused_and_halted_rollouts_end_the_wait_with_distinct_codes(
    kube: Kube, sandbox: cluster.Sandbox, namespace: str, controller: RunningController
) -> None:
    # No simulated traffic: the analysis sees no data and halts.
    await deploy_app(kube, namespace, service=managed_service(simulate=False))
    await wait_phase(kube, namespace, "Healthy")
    await pause(kube, namespace, True)
    await release(kube, namespace, "registry.example/web:v2")
    code, out, err = await canary(sandbox, namespace, "wait", "web")
    assert code == 6 and out.startswith("paused:"), (out, err)
    await pause(kube, namespace, False)
    code, out, err = await canary(sandbox, namespace, "wait", "web")
    assert code == 5 and out.startswith("halted:"), (out, err)
    assert "no data" in out
