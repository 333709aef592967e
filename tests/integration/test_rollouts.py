"""The controller against the real sandbox: one scenario per behaviour
on-call cares about. Real API server, controllers, kwok pods, Prometheus and
simulated traffic; nothing mocked."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from canary import oncall
from canary import reconcile as reconcile_module
from canary.decide import decide
from canary.kube import Informer, Kube, NotFound, WatchEvent
from canary.kube.resources import CONFIGMAPS, DEPLOYMENTS, ENDPOINTSLICES, PODS, SERVICES
from canary.observe import ready_endpoints
from tests.integration.conftest import RunningController
from tests.integration.helpers import (
    deployment,
    event_reasons,
    eventually,
    first_ready_pod,
    history_of,
    managed_service,
    moved_on,
    service,
    service_status,
    told,
    watched,
)
from tests.integration.helpers import ready_endpoints as helper_endpoints

BAD = {"sandbox.canary.io/error-rate": "0.5"}
ALWAYS_PASSES = (
    'scrape-interval: 1s\nmin-requests: 0\nmetrics: [{name: up, query: "vector(1)", max: 2}]\n'
)


async def deploy_app(
    kube: Kube,
    namespace: str,
    replicas: int = 3,
    service: dict[str, Any] | None = None,
    template: dict[str, Any] | None = None,
) -> None:
    body = deployment("web", replicas, {"app": "web"})
    if template:
        body["spec"]["template"]["spec"].update(template)
    await kube.create(DEPLOYMENTS.path(namespace), body)
    await kube.create(SERVICES.path(namespace), service or managed_service())


async def wait_phase(
    kube: Kube, namespace: str, *phases: str, timeout_s: float = 90
) -> dict[str, Any]:
    return await eventually(
        lambda: service_status(kube, namespace),
        lambda status: status.get("phase") in phases,
        timeout_s=timeout_s,
    )


async def release(
    kube: Kube, namespace: str, image: str, annotations: dict[str, str] | None = None
) -> None:
    await kube.patch(
        DEPLOYMENTS.path(namespace, "web"),
        {
            "spec": {
                "template": {
                    "metadata": {"annotations": annotations or {}},
                    "spec": {"containers": [{"name": "app", "image": image}]},
                }
            }
        },
        patch_type="strategic",
    )


async def serving_first_step(kube: Kube, namespace: str) -> dict[str, Any]:
    """The app adopted (a check every 60 s: nothing moves on its own during
    a test), v2 released and serving its first step; the status then."""
    await deploy_app(kube, namespace, service=managed_service(interval="60s"))
    await wait_phase(kube, namespace, "Healthy")
    await release(kube, namespace, "registry.example/web:v2")
    return await eventually(
        lambda: service_status(kube, namespace),
        lambda s: s.get("phase") == "Progressing" and bool(s.get("step_ready")),
        timeout_s=60,
    )


async def selector(kube: Kube, namespace: str) -> dict[str, str]:
    return dict((await kube.get(SERVICES.path(namespace, "web")))["spec"]["selector"])


async def test_adoption_never_leaves_the_service_without_ready_endpoints(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    await controller.stop()
    await deploy_app(kube, namespace)
    await eventually(lambda: _ready(kube, namespace), lambda n: n == 3)
    seen: list[list[str]] = []  # the ready pods after each EndpointSlice event
    slices: dict[str, Any] = {}

    def record(event: WatchEvent) -> None:
        if event.object["metadata"].get("labels", {}).get("kubernetes.io/service-name") != "web":
            return
        if event.type == "DELETED":
            slices.pop(event.key[1], None)
        else:
            slices[event.key[1]] = event.object
        seen.append(ready_endpoints(slices.values()))

    async def serving() -> list[str]:
        return seen[-1] if seen else []

    watcher = Informer(kube, ENDPOINTSLICES, namespace=namespace, on_event=record)
    watching = asyncio.create_task(watcher.run())
    await watcher.synced.wait()
    await controller.start()
    status = await wait_phase(kube, namespace, "Healthy")
    # The watch has delivered the end of the adoption: the blue twin's 3 pods alone.
    await eventually(
        serving, lambda pods: len(pods) == 3 and all(p.startswith("web-blue-") for p in pods)
    )
    watching.cancel()
    assert status["adopted"] and status["stable"] == "blue"
    counts = [len(pods) for pods in seen]
    assert counts and min(counts) > 0, counts
    source = await kube.get(DEPLOYMENTS.path(namespace, "web"))
    assert source["spec"]["replicas"] == 0
    assert await selector(kube, namespace) == {"app": "web", "canary.io/twin": "blue"}
    assert "Adopted" in await event_reasons(kube, namespace)


async def _ready(kube: Kube, namespace: str) -> int:
    listing = await kube.get(
        ENDPOINTSLICES.path(namespace), labelSelector="kubernetes.io/service-name=web"
    )
    return len(ready_endpoints(listing.get("items", [])))


async def test_good_release_is_promoted_with_a_decision_record(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    await deploy_app(kube, namespace)
    before = await wait_phase(kube, namespace, "Healthy")
    await release(kube, namespace, "registry.example/web:v2")
    progressing = await wait_phase(kube, namespace, "Progressing")
    promoted = await eventually(
        lambda: service_status(kube, namespace),
        lambda s: (
            s["stable_revision"] == progressing["canary_revision"] and s["phase"] == "Healthy"
        ),
        timeout_s=90,
    )
    assert promoted["stable"] == "green" and before["stable"] == "blue"
    assert await selector(kube, namespace) == {"app": "web", "canary.io/twin": "green"}
    reasons = await event_reasons(kube, namespace)
    for reason in ("RolloutStarted", "StepAdvanced", "Promoted"):
        assert reason in reasons
    record = (await history_of(kube, namespace))[-1]
    assert record["outcome"] == "promoted" and record["images"] == ["registry.example/web:v2"]
    # When the first step began serving: in the history, not an Event (as
    # for every later step: its StepAdvanced names the weight it served).
    assert "StepReady" not in reasons
    assert "StepReady" in [a["reason"] for a in record["actions"]]
    checks = record["checks"]
    # A check may find too few requests yet (no-data) and come again; it never passes on it.
    # Only the passes that moved on (a late one moves nothing: moved_on).
    assert [c["step"] for c in moved_on(checks)] == [1, 2]
    assert all(c["verdict"] in ("pass", "no-data") for c in checks)
    passed = [c for c in checks if c["verdict"] == "pass"]
    measured = passed[0]["measurements"]
    # The newest sample's age is read once the scrape interval is learned
    # (in the background, so not necessarily for the first check).
    assert {m["metric"] for m in measured} - {"newest-sample-age-s"} == {"requests", "success-rate"}
    assert all(m["verdict"] == "pass" and m["query"] and m["end"] > m["start"] for m in measured)
    assert passed[0]["weight"] == 25 and passed[0]["effective_weight"] == 25.0


async def test_bad_release_is_rolled_back_and_the_failing_value_is_recorded(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    await deploy_app(kube, namespace, service=managed_service(failure_limit="0"))
    await wait_phase(kube, namespace, "Healthy")
    await release(kube, namespace, "registry.example/web:v2", BAD)
    status = await wait_phase(kube, namespace, "RolledBack")
    assert status["stable"] == "blue" and status["failed_revision"]
    assert await selector(kube, namespace) == {"app": "web", "canary.io/twin": "blue"}
    canary = await kube.get(DEPLOYMENTS.path(namespace, "web-green"))
    assert canary["spec"]["replicas"] == 0
    record = (await history_of(kube, namespace))[-1]
    assert record["outcome"] == "rolled-back" and "success-rate" in record["reason"]
    failing = [m for m in record["checks"][-1]["measurements"] if m["verdict"] == "fail"]
    assert failing and failing[0]["value"] < 95 and failing[0]["threshold"] == ">= 95"
    # Not retried on its own: only a new change or `retry` rolls it out again,
    # not a timer and not an unrelated edit that makes the controller look.
    assert controller.controller is not None
    looked = controller.controller.reconciles
    await kube.patch(SERVICES.path(namespace, "web"), {"metadata": {"labels": {"team": "shop"}}})
    # Absence window: one interval (3 s), the cadence of every timed look at a
    # rollout, plus a second; the edit's reconcile takes milliseconds.
    await asyncio.sleep(4)
    assert controller.controller.reconciles > looked  # it did look again
    assert (await service_status(kube, namespace))["phase"] == "RolledBack"
    assert (await event_reasons(kube, namespace)).count("RolloutStarted") == 1


async def test_idle_service_gets_no_data_and_halts_instead_of_promoting(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    await deploy_app(kube, namespace, service=managed_service(simulate=False))
    await wait_phase(kube, namespace, "Healthy")
    await release(kube, namespace, "registry.example/web:v2")
    status = await wait_phase(kube, namespace, "Halted")
    assert status["canary"] == "green" and "requests" in status["halted"]
    assert "Promoted" not in await event_reasons(kube, namespace)


async def test_blue_green_flips_after_preview_analysis_and_abort_flips_back(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    await deploy_app(kube, namespace, service=managed_service(strategy="blue-green"))
    await wait_phase(kube, namespace, "Healthy")
    await release(kube, namespace, "registry.example/web:v2")
    await wait_phase(kube, namespace, "Progressing")
    preview = await eventually(
        lambda: kube.get(SERVICES.path(namespace, "web-preview")), bool, timeout_s=30
    )
    assert preview["spec"]["selector"] == {"app": "web", "canary.io/twin": "green"}
    assert await selector(kube, namespace) == {"app": "web", "canary.io/twin": "blue"}
    await eventually(
        lambda: selector(kube, namespace),
        lambda s: s.get("canary.io/twin") == "green",
        timeout_s=60,
    )
    await eventually(lambda: service_status(kube, namespace), lambda s: s.get("stable") == "green")
    # Abort inside the scale-down window: one patch back to the old twin.
    await kube.patch(
        SERVICES.path(namespace, "web"),
        {"metadata": {"annotations": {"canary.io/action": "abort"}}},
    )
    status = await eventually(
        lambda: service_status(kube, namespace), lambda s: s.get("stable") == "blue", timeout_s=30
    )
    assert status["failed_revision"]
    assert await selector(kube, namespace) == {"app": "web", "canary.io/twin": "blue"}
    assert "Aborted" in await event_reasons(kube, namespace)


async def test_an_abort_while_a_step_advance_is_held_for_its_pods_is_carried_out(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """On-call aborts just as a step advances: the advance's status write is
    held for its pods (a quota keeps them out), and the abort still lands on
    the rollout in flight, not on the older status."""
    # Every check passes at once: a no-data look first (a fresh sandbox) would
    # make the advance a counted change, written at once, never held.
    service = managed_service(analysis=ALWAYS_PASSES)
    await deploy_app(kube, namespace, service=service)  # steps 25,50: 1 canary pod, then 3
    await wait_phase(kube, namespace, "Healthy")
    quota = f"/api/v1/namespaces/{namespace}/resourcequotas"
    await kube.create(quota, {"metadata": {"name": "pods"}, "spec": {"hard": {"pods": "5"}}})
    await release(kube, namespace, "registry.example/web:v2")
    await eventually(
        lambda: event_reasons(kube, namespace), lambda r: "StepAdvanced" in r, every_s=0.1
    )
    held = await service_status(kube, namespace)
    assert held["step"] == 0 and held["canary_revision"], held  # the advance is held
    await kube.patch(
        SERVICES.path(namespace, "web"),
        {"metadata": {"annotations": {"canary.io/action": "abort"}}},
    )
    status = await eventually(
        lambda: service_status(kube, namespace), lambda s: s.get("canary") is None, timeout_s=30
    )
    assert status["failed_revision"] == held["canary_revision"], status
    assert await selector(kube, namespace) == {"app": "web", "canary.io/twin": "blue"}
    reasons = await event_reasons(kube, namespace)
    assert "Aborted" in reasons and "ActionIgnored" not in reasons, reasons


async def test_a_promote_meant_for_a_replaced_release_never_promotes_the_new_one(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """On-call means to promote v2; CI released v3 a moment before. The CLI
    refuses (it names the revision it would act on), and an action pinned to
    v2 that reaches the controller anyway is ignored with a Warning: v3
    promoted without a check of its own was the outcome before."""
    service = managed_service(interval="60s", analysis=ALWAYS_PASSES)
    await deploy_app(kube, namespace, service=service)
    await wait_phase(kube, namespace, "Healthy")
    await release(kube, namespace, "registry.example/web:v2")
    v2 = await eventually(
        lambda: service_status(kube, namespace), lambda s: bool(s.get("step_ready"))
    )
    await release(kube, namespace, "registry.example/web:v3")
    v3 = await eventually(
        lambda: service_status(kube, namespace),
        lambda s: s.get("canary_revision") not in (None, "", v2["canary_revision"]),
    )
    with pytest.raises(oncall.UserError, match="asked for revision"):
        await oncall.request(
            kube, namespace, "web", "promote", None, revision=v2["canary_revision"]
        )
    pinned = f"promote revision={v2['canary_revision']} t1"  # by hand, or a CLI a moment early
    await kube.patch(
        SERVICES.path(namespace, "web"),
        {"metadata": {"annotations": {"canary.io/action": pinned}}},
    )
    await eventually(lambda: event_reasons(kube, namespace), lambda r: "ActionIgnored" in r)
    # The Event is written before the status of the same cycle: the request
    # counts as taken (and the CLI takes a new one) once the status says so.
    status = await eventually(
        lambda: service_status(kube, namespace), lambda s: s.get("last_action") == pinned
    )
    assert status["canary_revision"] == v3["canary_revision"] and not status["promoting"], status
    assert status["stable_revision"] == v2["stable_revision"], status
    # Asked again for what runs now (the CLI's default): promoted.
    await oncall.request(kube, namespace, "web", "promote", None)
    done = await wait_phase(kube, namespace, "Healthy", timeout_s=60)
    assert done["stable_revision"] == v3["canary_revision"], done
    assert "PromoteRequested" in await event_reasons(kube, namespace)


async def test_steps_shortened_mid_rollout_go_on_at_the_new_last_step(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """On-call cuts a slow rollout short by editing the steps while it is at
    step 3 of 3: before, every cycle failed (an IndexError) and the Service
    was stuck with no Event saying why. Now it goes on at the new last step,
    judged afresh at its own weight, and is promoted only after passing it."""
    service = managed_service(steps="10,20,30", interval="6s", analysis=ALWAYS_PASSES)
    await deploy_app(kube, namespace, replicas=4, service=service)
    await wait_phase(kube, namespace, "Healthy")
    await release(kube, namespace, "registry.example/web:v2")
    at_three = await eventually(
        lambda: service_status(kube, namespace),
        lambda s: s.get("step") == 2,
        timeout_s=60,
        every_s=0.1,
    )
    await kube.patch(
        SERVICES.path(namespace, "web"),
        {"metadata": {"annotations": {"canary.io/steps": "50"}}},
    )
    reasons = await eventually(
        lambda: event_reasons(kube, namespace), lambda r: "StepsChanged" in r, timeout_s=30
    )
    assert "Promoted" not in reasons, reasons
    status = await eventually(
        lambda: service_status(kube, namespace),
        lambda s: s.get("stable_revision") == at_three["canary_revision"],
        timeout_s=60,
    )
    assert status["phase"] == "Healthy" and status["stable"] == "green", status
    record = (await history_of(kube, namespace))[-1]
    assert record["outcome"] == "promoted", record
    passed = moved_on(record["checks"])
    # Steps 1 and 2 at 10 and 20 %, then the new last step at its own 50 %.
    assert [(c["step"], c["weight"]) for c in passed] == [(1, 10), (2, 20), (1, 50)], passed


async def test_a_bug_on_one_service_is_told_on_it_and_the_others_go_on(
    kube: Kube, namespace: str, controller: RunningController, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decision that raises (a bug, like the IndexError a shortened step
    list used to cause) used to leave its Service silently stuck: now one
    Warning Event on it names the error, repeated failures add no more, the
    other Services go on, and it moves again once cycles succeed."""
    for name in ("web", "other"):
        await kube.create(DEPLOYMENTS.path(namespace), deployment(name, 2, {"app": name}))
        await kube.create(SERVICES.path(namespace), managed_service(name, analysis=ALWAYS_PASSES))
    for name in ("web", "other"):
        await eventually(
            lambda n=name: service_status(kube, namespace, n),  # type: ignore[misc]
            lambda s: s.get("phase") == "Healthy",
            timeout_s=60,
        )
    real = decide

    def buggy(spec: Any, state: Any, observed: Any, *args: Any) -> Any:
        if observed.service == "web":
            raise RuntimeError("a bug in the decision")
        return real(spec, state, observed, *args)

    monkeypatch.setattr(reconcile_module, "decide", buggy)
    for name in ("web", "other"):
        await kube.patch(
            DEPLOYMENTS.path(namespace, name),
            {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "v2"}]}}}},
            patch_type="strategic",
        )
    await eventually(
        lambda: event_reasons(kube, namespace, "other"), lambda r: "Promoted" in r, timeout_s=60
    )
    reasons = await event_reasons(kube, namespace)
    assert reasons.count("ReconcileFailed") == 1 and "RolloutStarted" not in reasons, reasons
    listing = await kube.get(
        f"/api/v1/namespaces/{namespace}/events",
        fieldSelector="involvedObject.name=web,reason=ReconcileFailed",
    )
    [event] = listing["items"]
    assert event["type"] == "Warning" and "RuntimeError: a bug in the decision" in event["message"]
    monkeypatch.setattr(reconcile_module, "decide", real)
    await eventually(
        lambda: event_reasons(kube, namespace), lambda r: "Promoted" in r, timeout_s=90
    )


async def test_a_write_the_api_server_refuses_is_told_on_the_service(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """A namespace quota that leaves no room for the twin (an ordinary
    ResourceQuota, enforced by the API server's admission): the create is
    refused with 403 at every retry. Before, only the controller's log said
    so, and on-call saw a Service Pending for good. Now a Warning on it
    names the refusal, once, and the app keeps serving from its Deployment."""
    quota = f"/api/v1/namespaces/{namespace}/resourcequotas"
    await kube.create(
        quota, {"metadata": {"name": "one"}, "spec": {"hard": {"count/deployments.apps": "1"}}}
    )
    await eventually(  # the quota controller has counted the namespace
        lambda: kube.get(f"{quota}/one"), lambda q: "used" in q.get("status", {}), timeout_s=60
    )
    await deploy_app(kube, namespace)
    await eventually(
        lambda: event_reasons(kube, namespace),
        lambda r: "ReconcileFailed" in r,
        timeout_s=60,
    )
    listing = await kube.get(
        f"/api/v1/namespaces/{namespace}/events",
        fieldSelector="involvedObject.name=web,reason=ReconcileFailed",
    )
    [event] = listing["items"]
    assert event["type"] == "Warning" and "exceeded quota" in event["message"], event["message"]
    assert "API server refused a write" in event["message"]
    source = await kube.get(DEPLOYMENTS.path(namespace, "web"))
    assert source["spec"]["replicas"] == 3  # nothing of it was taken away
    await kube.delete(f"{quota}/one")
    await wait_phase(kube, namespace, "Healthy")


async def test_pointing_a_managed_service_at_another_deployment_is_refused_and_touches_it_not(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """An SRE points web's canary.io/deployment at api (another app, serving
    through its own Service). Before: api was scaled to 0 and gated as if
    adopted (its Service lost every endpoint) and web's twins were left
    unowned. Now: an InvalidSpec naming the annotation and how to move, api
    untouched, web's traffic untouched; set back, it is fixed."""
    await deploy_app(kube, namespace, replicas=2)
    await kube.create(DEPLOYMENTS.path(namespace), deployment("api", 2, {"app": "api"}))
    await kube.create(SERVICES.path(namespace), service("api", {"app": "api"}))
    await wait_phase(kube, namespace, "Healthy")
    await eventually(lambda: helper_endpoints(kube, namespace, "api"), lambda pods: len(pods) == 2)
    web_before = await selector(kube, namespace)
    await kube.patch(
        SERVICES.path(namespace, "web"),
        {"metadata": {"annotations": {"canary.io/deployment": "api"}}},
    )
    await eventually(
        lambda: event_reasons(kube, namespace), lambda r: "InvalidSpec" in r, timeout_s=30
    )
    await asyncio.sleep(2)  # a few more cycles: nothing may move
    api = await kube.get(DEPLOYMENTS.path(namespace, "api"))
    assert api["spec"]["replicas"] == 2, api["spec"]
    assert not api["spec"]["template"]["spec"].get("schedulingGates"), api["spec"]["template"]
    assert not any(k.startswith("canary.io/") for k in api["metadata"].get("annotations") or {})
    assert len(await helper_endpoints(kube, namespace, "api")) == 2
    assert await selector(kube, namespace) == web_before
    listing = await kube.get(
        f"/api/v1/namespaces/{namespace}/events",
        fieldSelector="involvedObject.name=web,reason=InvalidSpec",
    )
    assert any("canary.io/deployment" in e["message"] for e in listing["items"]), listing
    await kube.patch(
        SERVICES.path(namespace, "web"),
        {"metadata": {"annotations": {"canary.io/deployment": None}}},
    )
    await eventually(
        lambda: event_reasons(kube, namespace), lambda r: "SpecFixed" in r, timeout_s=30
    )
    assert (await service_status(kube, namespace))["deployment"] == "web"


async def test_a_release_paused_longer_than_the_progress_deadline_goes_on_when_resumed(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """Released while paused (a change freeze), resumed after more than
    progress-deadline: before, it was rolled back the moment it moved
    (ProgressDeadlineExceeded, the pause counted as waiting for pods)."""
    service = managed_service(progress_deadline="8s", analysis=ALWAYS_PASSES)
    await deploy_app(kube, namespace, service=service)
    await wait_phase(kube, namespace, "Healthy")
    await kube.patch(
        SERVICES.path(namespace, "web"), {"metadata": {"annotations": {"canary.io/paused": "true"}}}
    )
    await release(kube, namespace, "registry.example/web:v2")
    await wait_phase(kube, namespace, "Paused")
    await asyncio.sleep(10)
    await kube.patch(
        SERVICES.path(namespace, "web"), {"metadata": {"annotations": {"canary.io/paused": None}}}
    )
    record = await eventually(
        lambda: history_of(kube, namespace),
        lambda records: records[-1].get("outcome") not in (None, "progressing"),
        timeout_s=60,
    )
    assert record[-1]["outcome"] == "promoted", record[-1]
    assert "ProgressDeadlineExceeded" not in await event_reasons(kube, namespace)


async def test_a_deployment_name_fixed_before_adoption_simply_takes_effect(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """A typo in canary.io/deployment (phase Waiting, the status names the
    typo) is fixed: that is not a move of a managed Deployment, so it is
    adopted, not refused."""
    await kube.create(DEPLOYMENTS.path(namespace), deployment("web", 2, {"app": "web"}))
    await kube.create(SERVICES.path(namespace), managed_service(deployment="wbe"))
    await wait_phase(kube, namespace, "Waiting")
    await kube.patch(
        SERVICES.path(namespace, "web"),
        {"metadata": {"annotations": {"canary.io/deployment": "web"}}},
    )
    await wait_phase(kube, namespace, "Healthy")
    assert "InvalidSpec" not in await event_reasons(kube, namespace)


async def test_configmap_change_rolls_out_and_abort_restores_the_old_config(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    await kube.create(
        CONFIGMAPS.path(namespace),
        {"metadata": {"name": "web-config"}, "data": {"greeting": "hello"}},
    )
    await deploy_app(
        kube,
        namespace,
        template={
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example/web:v1",
                    "envFrom": [{"configMapRef": {"name": "web-config"}}],
                }
            ]
        },
    )
    healthy = await wait_phase(kube, namespace, "Healthy")
    old = healthy["stable_revision"]
    blue = await kube.get(DEPLOYMENTS.path(namespace, "web-blue"))
    old_copy = blue["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"][
        "name"
    ]
    assert old_copy == f"web-config-{old}"
    await kube.patch(CONFIGMAPS.path(namespace, "web-config"), {"data": {"greeting": "bonjour"}})
    progressing = await wait_phase(kube, namespace, "Progressing")
    assert progressing["canary_revision"] != old
    new_copy = await kube.get(
        CONFIGMAPS.path(namespace, f"web-config-{progressing['canary_revision']}")
    )
    assert new_copy["data"] == {"greeting": "bonjour"}
    await kube.patch(
        SERVICES.path(namespace, "web"),
        {"metadata": {"annotations": {"canary.io/action": "abort"}}},
    )
    await wait_phase(kube, namespace, "RolledBack")
    blue = await kube.get(DEPLOYMENTS.path(namespace, "web-blue"))
    env_from = blue["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]
    assert env_from["configMapRef"]["name"] == old_copy
    kept = await kube.get(CONFIGMAPS.path(namespace, old_copy))
    assert kept["data"] == {"greeting": "hello"}


async def test_controller_restarted_at_every_phase_boundary_still_promotes(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    await deploy_app(kube, namespace)
    await wait_phase(kube, namespace, "Healthy")
    await release(kube, namespace, "registry.example/web:v2")
    seen: list[tuple[str, int]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while loop.time() < deadline:
        status = await service_status(kube, namespace)
        point = (status["phase"], status["step"])
        if not seen or seen[-1] != point:
            seen.append(point)
            # A new controller knows only what the API holds (status, history).
            await controller.restart()
        if status["phase"] == "Healthy" and status["stable"] == "green":
            break
        await asyncio.sleep(0.2)  # the poll period of this watch on the status
    assert seen[-1][0] == "Healthy", seen
    assert ("Progressing", 1) in seen
    reasons = await event_reasons(kube, namespace)
    assert reasons.count("RolloutStarted") == 1 and reasons.count("Promoted") == 1, (reasons, seen)


async def test_invalid_annotation_warns_and_leaves_traffic_alone_until_fixed(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    await deploy_app(kube, namespace)
    await wait_phase(kube, namespace, "Healthy")
    before = await selector(kube, namespace)
    assert controller.controller is not None
    # Adopted, and nothing else yet: a web-green at the watch's start (a
    # clean-clone run once found one there, ready, with no change after)
    # is then told apart from one made for the release below.
    names = {d["metadata"]["name"] for d in (await kube.get(DEPLOYMENTS.path(namespace)))["items"]}
    records = [(r.get("outcome"), r.get("reason")) for r in await history_of(kube, namespace)]
    assert names == {"web", "web-blue"} and len(records) == 1, (names, records)
    async with (
        watched(kube, DEPLOYMENTS, namespace) as deployments,
        watched(kube, SERVICES, namespace) as services,
    ):
        await kube.patch(
            SERVICES.path(namespace, "web"),
            {"metadata": {"annotations": {"canary.io/steps": "10,ten"}}},
        )
        await release(kube, namespace, "registry.example/web:v2")
        released = controller.controller.reconciles
        status = await wait_phase(kube, namespace, "Invalid")
        assert "canary.io/steps" in status["message"]
        # Absence window: the reconciles that see the new revision under the
        # invalid spec (milliseconds each) have time to act, if they would.
        await asyncio.sleep(2)
        assert controller.controller.reconciles > released  # the release was looked at
    # No canary twin was made for the new revision, not even for a moment,
    # and the Service's selector never moved.
    made = [(e.type, e.object.get("metadata", {}).get("creationTimestamp")) for e in deployments]
    assert not [e for e in deployments if e.key[1] == "web-green"], (made, deployments)
    assert {
        tuple(sorted(e.object["spec"]["selector"].items())) for e in services if e.key[1] == "web"
    } == {tuple(sorted(before.items()))}
    with pytest.raises(NotFound):
        await kube.get(DEPLOYMENTS.path(namespace, "web-green"))
    assert "InvalidSpec" in await event_reasons(kube, namespace)
    await kube.patch(
        SERVICES.path(namespace, "web"), {"metadata": {"annotations": {"canary.io/steps": "25,50"}}}
    )
    await wait_phase(kube, namespace, "Progressing", "Healthy")
    assert "SpecFixed" in await event_reasons(kube, namespace)


async def test_removing_the_strategy_hands_the_service_back_to_the_source(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    await deploy_app(kube, namespace)
    await wait_phase(kube, namespace, "Healthy")
    # Gated by the time the status says Healthy, not a cycle later.
    gates = await kube.get(DEPLOYMENTS.path(namespace, "web"))
    assert gates["spec"]["template"]["spec"]["schedulingGates"] == [{"name": "canary.io/held"}]
    await kube.patch(
        SERVICES.path(namespace, "web"), {"metadata": {"annotations": {"canary.io/strategy": None}}}
    )
    await eventually(
        lambda: kube.get(SERVICES.path(namespace, "web")),
        lambda s: "canary.io/status" not in (s["metadata"].get("annotations") or {}),
        timeout_s=60,
    )
    assert await selector(kube, namespace) == {"app": "web"}
    source = await kube.get(DEPLOYMENTS.path(namespace, "web"))
    assert source["spec"]["replicas"] == 3
    assert not source["spec"]["template"]["spec"].get("schedulingGates")  # its pods can run
    for color in ("blue", "green"):
        with pytest.raises(NotFound):
            await kube.get(DEPLOYMENTS.path(namespace, f"web-{color}"))
    # The twins' pods go with their Deployments; until the garbage collector
    # has marked them terminating they are still listed beside the source's.
    await eventually(lambda: _ready(kube, namespace), lambda n: n == 3, timeout_s=60)


async def test_one_controller_serves_a_list_of_namespaces(
    kube: Kube, sandbox: Any, namespace: str
) -> None:
    from analysis.prometheus import Prometheus, PrometheusConfig
    from canary.controller import Controller
    from canary.kube.resources import NAMESPACES
    from canary.reconcile import Edges

    other = f"{namespace}-b"
    await kube.create(NAMESPACES.path(), {"metadata": {"name": other}})
    provider = Prometheus(PrometheusConfig(sandbox.prometheus_url))
    controller = Controller(Edges(kube, provider), namespaces=[namespace, other])
    running = asyncio.create_task(controller.run())
    try:
        for ns in (namespace, other):
            await deploy_app(kube, ns)
        for ns in (namespace, other):
            assert (await wait_phase(kube, ns, "Healthy"))["stable"] == "blue"
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await controller.stop()
        provider.close()
        await kube.delete(NAMESPACES.path(name=other))


async def test_a_canary_whose_pods_a_quota_refuses_says_so_on_the_service(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """A pods quota with room for the stable twin only: the canary twin is
    accepted, its pods never created (FailedCreate on its ReplicaSet). The
    Service names the quota at once (PodsRefused), and the rollback at the
    progress deadline names it too; before, only "0/1 pods ready"."""
    await deploy_app(kube, namespace, service=managed_service(progress_deadline="15s"))
    await wait_phase(kube, namespace, "Healthy")
    quota = f"/api/v1/namespaces/{namespace}/resourcequotas"
    await kube.create(quota, {"metadata": {"name": "pods"}, "spec": {"hard": {"pods": "3"}}})
    await eventually(  # the quota controller has counted the namespace
        lambda: kube.get(f"{quota}/pods"), lambda q: "used" in q.get("status", {}), timeout_s=60
    )
    await release(kube, namespace, "registry.example/web:v2")

    [refused] = await eventually(lambda: told(kube, namespace, "PodsRefused"), bool, timeout_s=30)
    assert "exceeded quota" in refused and "canary" in refused, refused
    [deadline] = await eventually(
        lambda: told(kube, namespace, "ProgressDeadlineExceeded"), bool, timeout_s=60
    )
    assert "exceeded quota" in deadline, deadline
    assert await selector(kube, namespace) == {"app": "web", "canary.io/twin": "blue"}


async def test_a_canary_no_node_can_take_says_so_and_its_rollback_names_the_scheduler(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """A release asking for more CPU than any node has (the sandbox's nodes
    have 32): the real scheduler leaves its pod Pending, Unschedulable. The
    waiting status and the rollback at the progress deadline quote the
    scheduler; before, both said only "0/1 pods ready"."""
    await deploy_app(kube, namespace, service=managed_service(progress_deadline="15s"))
    await wait_phase(kube, namespace, "Healthy")
    await kube.patch(
        DEPLOYMENTS.path(namespace, "web"),
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "image": "registry.example/web:v2",
                                "resources": {"requests": {"cpu": "64"}},
                            }
                        ]
                    }
                }
            }
        },
        patch_type="strategic",
    )
    waiting = await eventually(
        lambda: service_status(kube, namespace),
        lambda s: "Unschedulable" in str(s.get("message")),
        timeout_s=30,
    )
    assert "Insufficient cpu" in waiting["message"], waiting["message"]
    [deadline] = await eventually(
        lambda: told(kube, namespace, "ProgressDeadlineExceeded"), bool, timeout_s=60
    )
    assert "Unschedulable" in deadline and "Insufficient cpu" in deadline, deadline
    assert await selector(kube, namespace) == {"app": "web", "canary.io/twin": "blue"}


async def test_a_release_renaming_the_named_target_port_never_takes_production(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """The Service's targetPort names the container port `http`; a blue-green
    release renames it `web`. The real EndpointSlice controller lists the new
    pods ready but without that port, so the Service could send them
    nothing: the preview counts no endpoint, and the release is rolled back
    at its deadline naming the port. Before, they counted: the flip put
    production on pods the Service could not reach."""
    ports = [{"name": "http", "containerPort": 8080}]
    template = {"containers": [{"name": "app", "image": "registry.example/web:v1", "ports": ports}]}
    body = managed_service(strategy="blue-green", progress_deadline="20s")
    body["spec"]["ports"] = [{"port": 80, "targetPort": "http"}]
    await deploy_app(kube, namespace, service=body, template=template)
    await wait_phase(kube, namespace, "Healthy")
    stable = (await service_status(kube, namespace))["stable"]
    renamed = [{"name": "web", "containerPort": 8080}]
    await kube.patch(
        DEPLOYMENTS.path(namespace, "web"),
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "app", "image": "registry.example/web:v2", "ports": renamed}
                        ]
                    }
                }
            }
        },
        patch_type="strategic",
    )
    [deadline] = await eventually(
        lambda: told(kube, namespace, "ProgressDeadlineExceeded"), bool, timeout_s=90
    )
    assert "targetPort http" in deadline, deadline
    assert await selector(kube, namespace) == {"app": "web", "canary.io/twin": stable}
    # What the real EndpointSlice controller did with the renamed pods.
    listing = await kube.get(
        ENDPOINTSLICES.path(namespace), labelSelector="kubernetes.io/service-name=web-preview"
    )
    assert listing["items"] and all(not s.get("ports") for s in listing["items"]), listing


async def test_an_unmanaged_service_selecting_the_apps_pods_is_named_when_a_rollout_starts(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """An internal Service for the same app, not annotated: its EndpointSlice
    lists the canary's pods as soon as they are ready, whatever the step.
    The rollout's start names it (PodsShared)."""
    await deploy_app(kube, namespace)
    await kube.create(SERVICES.path(namespace), service("web-internal", {"app": "web"}))
    await wait_phase(kube, namespace, "Healthy")
    await release(kube, namespace, "registry.example/web:v2")
    [shared] = await eventually(lambda: told(kube, namespace, "PodsShared"), bool, timeout_s=30)
    assert shared.startswith("Service web-internal (not managed by canary) also selects"), shared
    assert (await kube.get(SERVICES.path(namespace, "web-internal")))["spec"]["selector"] == {
        "app": "web"
    }  # told, never touched


async def test_an_abort_while_the_stable_twin_has_no_ready_pod_keeps_the_service_serving(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """A drain takes every pod of the stable twin and none can come back (a
    pods quota here; no node that fits, on a real cluster) while the canary
    serves a step; on-call aborts. Before, the Service was pointed at the
    stable twin at once and the canary scaled to 0: no endpoint at all. Now
    the canary's pods keep serving until the stable twin has a ready pod."""
    status = await serving_first_step(kube, namespace)
    stable, canary = status["stable"], status["canary"]
    quotas = f"/api/v1/namespaces/{namespace}/resourcequotas"
    await kube.create(quotas, {"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}})
    try:
        await eventually(
            lambda: kube.get(f"{quotas}/no-pods"),
            lambda q: "used" in q.get("status", {}),
            timeout_s=60,
        )
        pods = await kube.get(PODS.path(namespace), labelSelector=f"canary.io/twin={stable}")
        for pod in pods["items"]:
            await kube.delete(PODS.path(namespace, pod["metadata"]["name"]))
        await eventually(
            lambda: helper_endpoints(kube, namespace, "web"),
            lambda eps: bool(eps) and all(e.startswith(f"web-{canary}-") for e in eps),
            timeout_s=30,
        )
        await kube.patch(
            SERVICES.path(namespace, "web"),
            {"metadata": {"annotations": {"canary.io/action": "abort"}}},
        )
        await eventually(lambda: service_status(kube, namespace), lambda s: s.get("canary") is None)
        for _ in range(15):
            assert await helper_endpoints(kube, namespace, "web"), "the Service has no endpoint"
            await asyncio.sleep(0.2)
        assert "Aborted" in await event_reasons(kube, namespace)
    finally:
        await kube.delete(f"{quotas}/no-pods")
    # The stable twin's pods come back: traffic goes to them, the canary stops.
    # When is kube-controller-manager's: its ReplicaSet controller backs off
    # a pod creation the quota refused, doubling from 5 ms, and tries again
    # about as long after the quota went as the quota had held (7-38 s
    # here, past 60 s in a clean-clone run under load). Timed from then.
    await first_ready_pod(kube, namespace, f"web-{stable}")
    await eventually(
        lambda: selector(kube, namespace),
        lambda s: s == {"app": "web", "canary.io/twin": stable},
        timeout_s=30,
    )
    await eventually(
        lambda: kube.get(DEPLOYMENTS.path(namespace, f"web-{canary}")),
        lambda d: d["spec"]["replicas"] == 0,
        timeout_s=30,
    )
