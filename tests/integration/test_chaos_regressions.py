"""Violations the chaos soak (`make chaos`) found, each made deterministic on
the sandbox. Each test fails on the code the soak found it on; the docstring
names the soak's rule, the seed and commit, and what the careful behaviour is.

Like the soak's checker, the tests judge what is observed (endpoints, the
pods behind them, what those pods run) against what the status claims."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from canary.kube import Kube, NotFound
from canary.kube.resources import CONFIGMAPS, DEPLOYMENTS, ENDPOINTSLICES, PODS, SERVICES
from canary.sandbox import cluster, configs
from canary.sandbox.runner import ControllerProcess
from tests.integration.conftest import RunningController
from tests.integration.helpers import (
    admission_refusal,
    eventually,
    history_of,
    managed_service,
    service_status,
    status_of,
)
from tests.integration.test_outages import argocd_apply
from tests.integration.test_rollouts import (
    BAD,
    deploy_app,
    release,
    serving_first_step,
    wait_phase,
)

EDITED = "chaos.canary.io/edited"
STEADY = ("Healthy", "RolledBack")


async def serving(kube: Kube, namespace: str, name: str = "web") -> dict[str, dict[str, str]]:
    """The Service's ready endpoint pods and each pod's own annotations."""
    listing = await kube.get(
        ENDPOINTSLICES.path(namespace), labelSelector=f"kubernetes.io/service-name={name}"
    )
    names = {
        str(e["targetRef"]["name"])
        for s in listing.get("items", [])
        for e in s.get("endpoints") or []
        if (e.get("conditions") or {}).get("ready") is not False
        and (e.get("targetRef") or {}).get("kind") == "Pod"
    }
    pods = await kube.get(PODS.path(namespace))
    return {
        p["metadata"]["name"]: dict(p["metadata"].get("annotations") or {})
        for p in pods.get("items", [])
        if p["metadata"]["name"] in names
    }


async def claims_and_pods(kube: Kube, namespace: str) -> tuple[str, dict[str, dict[str, str]]]:
    service = await kube.get(SERVICES.path(namespace, "web"))
    return str(status_of(service).get("phase", "")), await serving(kube, namespace)


def tells_the_truth(observed: tuple[str, dict[str, dict[str, str]]]) -> bool:
    """Healthy (or RolledBack) may only be claimed while no pod nobody
    released serves, and something serves at all."""
    phase, pods = observed
    edited = [p for p, annotations in pods.items() if EDITED in annotations]
    return phase not in STEADY or (bool(pods) and not edited)


async def test_a_hand_edited_stable_twin_is_not_called_healthy(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """Soak rule `status` (c), seed 1 on 3e32b2f (main): `kubectl edit` of the
    stable twin's pod template (here: pods that fail half their requests)
    rolled the twin to pods nobody released or analysed, and the status kept
    saying `Healthy: serving revision <r> from the blue twin` for as long as
    the soak ran. The twin's revision is read from its annotation, which the
    edit leaves alone. Careful: put the twin back to its recorded template (or
    at least stop calling it Healthy and say why)."""
    await deploy_app(kube, namespace)
    await wait_phase(kube, namespace, "Healthy")
    edited = await kube.patch(
        DEPLOYMENTS.path(namespace, "web-blue"),
        {
            "spec": {
                "template": {
                    "metadata": {
                        "annotations": {EDITED: "by-hand", "sandbox.canary.io/error-rate": "0.5"}
                    }
                }
            }
        },
        patch_type="strategic",
        fieldManager="kubectl-edit",
    )

    await eventually(
        lambda: kube.get(DEPLOYMENTS.path(namespace, "web-blue")),
        lambda twin: undone(twin) or rolled_out(twin, edited["metadata"]["generation"]),
        timeout_s=60,
    )
    await eventually(lambda: claims_and_pods(kube, namespace), tells_the_truth, timeout_s=30)
    for _ in range(10):  # and it stays true
        observed = await claims_and_pods(kube, namespace)
        assert tells_the_truth(observed), observed
        await asyncio.sleep(1)


async def hand_edit(kube: Kube, namespace: str, twin: str, **annotations: str) -> dict[str, Any]:
    """What `kubectl edit deployment <twin>` of its pod template does."""
    edited: dict[str, Any] = await kube.patch(
        DEPLOYMENTS.path(namespace, twin),
        {"spec": {"template": {"metadata": {"annotations": {EDITED: "by-hand", **annotations}}}}},
        patch_type="strategic",
        fieldManager="kubectl-edit",
    )
    return edited


async def test_a_canary_twin_edited_by_hand_mid_rollout_is_never_promoted_as_the_release(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """Soak rule `unverified-promotion`, seed 1 on e5cbae2 (main + the soak):
    the canary twin of app-05 was edited by hand (`kubectl edit`, one
    annotation) at 02:48:22, mid-rollout; the check of step 1 passed on a
    query whose pod regex selected the edited ReplicaSet's pods, and the
    revision was promoted: 87 of the window's requests went to pods of a
    template nobody released, none to the release's own. Careful: the pods a
    check judges (and the pods promoted) run the revision's recorded
    template; put the twin back, or start the step again once it is."""
    await deploy_app(
        kube, namespace, service=managed_service(steps="50", interval="8s", scale_down_delay="5s")
    )
    await wait_phase(kube, namespace, "Healthy")
    await release(kube, namespace, "registry.example/web:v2")
    await eventually(
        lambda: service_status(kube, namespace),
        lambda s: s.get("phase") == "Progressing" and bool(s.get("step_ready")),
        timeout_s=60,
    )
    await hand_edit(kube, namespace, "web-green")
    entry = await eventually(
        lambda: history_of(kube, namespace),
        lambda records: records[-1].get("outcome") not in (None, "progressing", "adopted"),
        timeout_s=120,
    )
    record = entry[-1]
    pods = await kube.get(PODS.path(namespace))
    edited = {
        p["metadata"]["name"]
        for p in pods.get("items", [])
        if EDITED in (p["metadata"].get("annotations") or {})
    }
    judged = [
        regex
        for check in record.get("checks") or []
        if check.get("verdict") == "pass"
        for m in check.get("measurements") or []
        if (regex := _pod_regex(str(m.get("query", ""))))
    ]
    wrongly = sorted({p for p in edited for regex in judged if re.fullmatch(regex, p)})
    assert not (record["outcome"] == "promoted" and wrongly), (record["outcome"], wrongly)
    await eventually(lambda: claims_and_pods(kube, namespace), tells_the_truth, timeout_s=30)


def _pod_regex(query: str) -> str | None:
    found = re.search(r'pod=~"([^"]+)"', query)
    return found.group(1).replace("\\\\", "\\") if found else None


async def test_a_recorded_outcome_is_never_rewritten_when_the_status_write_fails(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """Soak rule `outcomes` (a), seed 1 on e5cbae2: history entries of app-09,
    app-10, app-17, app-01, app-07 and app-11 went from `rolled-back` to
    `superseded` (app-09 #6 right after an API server stop of 4.2 s and an
    etcd stop of 3.0 s): the cycle that rolled back wrote the history, then
    its status write failed; the next cycles decided again from the old
    status (canary still in flight), and the next release recorded the same
    revision as `superseded`. Here the status write of the rollback (and only
    that one) is made to fail by an admission policy, deterministically.
    Careful: a decision is recorded once; a redo after a failed status write
    finds the outcome already in the history and keeps it."""
    await deploy_app(kube, namespace, service=managed_service(failure_limit="0"))
    await wait_phase(kube, namespace, "Healthy")
    # Released once the policy refuses the rollback's status, not before: a
    # release made before it (the same template again inside changes
    # nothing) raced the policy's loading against its own rollback.
    async with rollback_unwritable(kube, namespace):
        await release(kube, namespace, "registry.example/web:v2", BAD)
        bad = await wait_phase(kube, namespace, "Progressing")
        entry = await eventually(
            lambda: _entry(kube, namespace, bad["canary_revision"]),
            lambda e: e.get("outcome") == "rolled-back",
            timeout_s=60,
        )
        assert (await service_status(kube, namespace))["phase"] == "Progressing"  # not written
        await release(kube, namespace, "registry.example/web:v3")
        for _ in range(20):
            now = await _entry(kube, namespace, bad["canary_revision"], entry["number"])
            assert now.get("outcome") == "rolled-back", now.get("outcome")
            await asyncio.sleep(1)


async def _entry(
    kube: Kube, namespace: str, revision: str, number: int | None = None
) -> dict[str, Any]:
    for record in reversed(await history_of(kube, namespace)):
        if record.get("revision") == revision and number in (None, record.get("number")):
            return dict(record)
    return {}


async def test_a_bad_canary_loses_its_traffic_while_its_status_cannot_be_written(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """Seen while reproducing the `outcomes` finding above (seed 1 on
    e5cbae2): while web's status could not be written, every cycle decided
    again from the older status: it re-ran the check it had just judged,
    appended it to the history again (60 identical checks a minute), never
    counted past the first failure and gave the canary its traffic back, so
    a bad canary kept its weight for as long as the status write failed.
    Careful: a decision whose traffic changes landed is a fact, whether or
    not its status could be written; the failures add up, the bad canary
    loses its traffic, the history holds each check once, and the status
    says RolledBack as soon as it can be written again."""
    await deploy_app(kube, namespace, service=managed_service(failure_limit="1"))
    await wait_phase(kube, namespace, "Healthy")
    # The policy is in force before the release, and freezes the status at
    # the write that says the canary serves: every failed check lands while
    # the status cannot be written. Before, the policy was created once that
    # write was seen, and two failures before the API server loaded it (up
    # to 30 s allowed) wrote RolledBack: a failed test, nothing wrong.
    async with status_unwritable_once_serving(kube, namespace):
        await release(kube, namespace, "registry.example/web:v2", BAD)
        bad = await eventually(
            lambda: service_status(kube, namespace),
            lambda s: s.get("phase") == "Progressing" and bool(s.get("step_ready")),
            timeout_s=60,
        )
        revision, stable, canary = bad["canary_revision"], bad["stable"], bad["canary"]

        async def traffic() -> tuple[str, int]:
            """(the twin the Service selects alone, "" for both; canary replicas)."""
            service = await kube.get(SERVICES.path(namespace, "web"))
            twin = await kube.get(DEPLOYMENTS.path(namespace, f"web-{canary}"))
            selector = service["spec"].get("selector") or {}
            return str(selector.get("canary.io/twin", "")), int(twin["spec"]["replicas"])

        assert bad["failed"] == 0, bad  # no failure written: each is counted unwritten
        await eventually(traffic, lambda t: t == (stable, 0), timeout_s=90)
        entry = await eventually(
            lambda: _entry(kube, namespace, revision),
            lambda e: e.get("outcome") == "rolled-back",
            timeout_s=30,
        )
        checks = len(entry.get("checks") or [])
        assert checks >= 2, entry.get("checks")  # failure-limit 1: two failed checks
        for _ in range(20):  # and it stays so, with nothing recorded twice
            assert await traffic() == (stable, 0)
            now = await _entry(kube, namespace, revision)
            assert now.get("outcome") == "rolled-back", now.get("outcome")
            assert len(now.get("checks") or []) == checks, now.get("checks")
            await asyncio.sleep(1)
        assert (await service_status(kube, namespace))["phase"] == "Progressing"  # not written
    await wait_phase(kube, namespace, "RolledBack", timeout_s=60)
    assert len((await _entry(kube, namespace, revision)).get("checks") or []) == checks


async def uid_of(kube: Kube, path: str) -> str:
    try:
        return str((await kube.get(path))["metadata"]["uid"])
    except NotFound:
        return ""


async def owners_of(kube: Kube, path: str) -> set[str]:
    try:
        found = await kube.get(path)
    except NotFound:
        return set()
    return {str(ref.get("uid")) for ref in found["metadata"].get("ownerReferences") or []}


async def recreate_service(
    kube: Kube, namespace: str, service: dict[str, Any], orphan: bool = False
) -> None:
    """What `kubectl replace --force -f web-service.yaml` does (or a GitOps
    tool's forced replace): the Service is deleted and created again. Its
    history ConfigMap (owned by the old Service) is either collected with
    the old one or, when the controller is first, kept by the new one; with
    `orphan` (kubectl delete --cascade=orphan) it is always left behind.
    Returns once the history belongs to the new Service."""
    history = CONFIGMAPS.path(namespace, "web-canary-history")
    if orphan:
        await kube.request(
            "DELETE",
            SERVICES.path(namespace, "web"),
            body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Orphan"},
        )
        await eventually(
            lambda: uid_of(kube, SERVICES.path(namespace, "web")), lambda uid: uid == "", 60
        )
    else:
        await kube.delete(SERVICES.path(namespace, "web"))
    created = await kube.create(SERVICES.path(namespace), service)
    await eventually(
        lambda: owners_of(kube, history),
        lambda owners: owners == {created["metadata"]["uid"]},
        timeout_s=60,
    )


async def test_a_stable_twin_edited_after_the_service_was_recreated_is_put_back(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """Soak rule `status` (c), seed 1 on 77fca05 (app-04 at 03:57:54, app-06
    at 04:05:00, app-05 at 04:06:59): after a `recreate-service` fault the
    status was rebuilt and the history started anew, without the serving
    revision; the Deployment held a newer (rolled back) revision. A hand
    edit of the stable twin was then "put back" from the only template left,
    the twin's own, edited one: TwinRestored was said, the edit stayed, its
    digest was taken for ours, and RolledBack was claimed while every pod
    behind the Service ran the edit. Careful: never copy an edited twin;
    record what serves when the status is rebuilt, and restore from that."""
    await deploy_app(kube, namespace, service=managed_service(failure_limit="0"))
    await wait_phase(kube, namespace, "Healthy")
    await release(kube, namespace, "registry.example/web:v2", BAD)
    await wait_phase(kube, namespace, "RolledBack")
    await recreate_service(kube, namespace, managed_service(failure_limit="0"))
    await wait_phase(kube, namespace, "Healthy", "RolledBack")
    await eventually(  # settled (v2 tried again when its history was gone)
        lambda: service_status(kube, namespace),
        lambda s: s.get("phase") in STEADY and not s.get("canary"),
        timeout_s=90,
    )
    await hand_edit(kube, namespace, "web-blue", **{"sandbox.canary.io/error-rate": "0.5"})
    await eventually(
        lambda: kube.get(DEPLOYMENTS.path(namespace, "web-blue")), undone, timeout_s=60
    )
    await eventually(lambda: claims_and_pods(kube, namespace), tells_the_truth, timeout_s=60)
    for _ in range(10):  # and it stays so
        assert undone(await kube.get(DEPLOYMENTS.path(namespace, "web-blue")))
        observed = await claims_and_pods(kube, namespace)
        assert tells_the_truth(observed), observed
        await asyncio.sleep(1)


async def test_a_recreated_service_keeps_the_history_left_behind(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """CI on 8f4a04a: the history a recreated Service read still belonged to
    the deleted one, and the garbage collector removed it a moment later,
    with the stable revision's template; a hand edit of the stable twin was
    then never put back ("no template known"). Deleted with
    --cascade=orphan, the old history stays for sure: the new Service keeps
    it (owned by the new Service, same object), so the rolled-back release
    stays out, and an edited stable twin is put back from its record."""
    await deploy_app(kube, namespace, service=managed_service(failure_limit="0"))
    await wait_phase(kube, namespace, "Healthy")
    await release(kube, namespace, "registry.example/web:v2", BAD)
    await wait_phase(kube, namespace, "RolledBack")
    history = CONFIGMAPS.path(namespace, "web-canary-history")
    before = await uid_of(kube, history)
    rolled_back = [r["revision"] for r in await history_of(kube, namespace)][-1]
    await recreate_service(kube, namespace, managed_service(failure_limit="0"), orphan=True)
    assert await uid_of(kube, history) == before
    await wait_phase(kube, namespace, "RolledBack")
    for _ in range(5):  # the rolled-back release is not tried again
        status = await service_status(kube, namespace)
        assert status.get("phase") == "RolledBack" and not status.get("canary"), status
        await asyncio.sleep(1)
    outcomes = {r["revision"]: r["outcome"] for r in await history_of(kube, namespace)}
    assert outcomes[rolled_back] == "rolled-back"
    await hand_edit(kube, namespace, "web-blue", **{"sandbox.canary.io/error-rate": "0.5"})
    await eventually(
        lambda: kube.get(DEPLOYMENTS.path(namespace, "web-blue")), undone, timeout_s=60
    )
    await eventually(lambda: claims_and_pods(kube, namespace), tells_the_truth, timeout_s=60)


async def test_a_hand_back_cut_short_by_a_recreated_service_rolls_nothing_out(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """Soak rule `outcomes` (b), seed 1 on 77fca05 (app-18, 03:55:34-03:57:34):
    the Service was deleted; the hand-back wrote the stable twin's template
    (reading the per-revision config copy) into the Deployment and waited
    for its pods; the Service came back first. The rebuilt status served the
    stable revision, but the Deployment's template (the same pods, another
    hash because of the copy's name) looked like a new release: it was
    rolled out to the other twin, superseded by the next release, and the
    history said `superseded` for what every endpoint ran. Careful: a source
    holding the stable twin's own template has nothing to roll out."""
    await kube.create(
        CONFIGMAPS.path(namespace),
        {"metadata": {"name": "web-config"}, "data": {"greeting": "hello"}},
    )
    reads_config = {
        "containers": [
            {
                "name": "app",
                "image": "registry.example/web:v1",
                "envFrom": [{"configMapRef": {"name": "web-config"}}],
            }
        ]
    }
    await deploy_app(
        kube, namespace, service=managed_service(failure_limit="0"), template=reads_config
    )
    stable = (await wait_phase(kube, namespace, "Healthy"))["stable_revision"]
    await release(kube, namespace, "registry.example/web:v2", BAD)
    await wait_phase(kube, namespace, "RolledBack")
    quotas = f"/api/v1/namespaces/{namespace}/resourcequotas"
    # No new pod may start: the hand-back waits for the Deployment's pods.
    await kube.create(quotas, {"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}})
    try:
        await kube.delete(SERVICES.path(namespace, "web"))

        def copied(source: dict[str, Any]) -> bool:
            container = source["spec"]["template"]["spec"]["containers"][0]
            refs = [r["configMapRef"]["name"] for r in container.get("envFrom") or []]
            return refs == [f"web-config-{stable}"]

        await eventually(lambda: kube.get(DEPLOYMENTS.path(namespace, "web")), copied, timeout_s=60)
        await kube.create(SERVICES.path(namespace), managed_service(failure_limit="0"))
        await wait_phase(kube, namespace, "Healthy", "Progressing", "Degraded", timeout_s=60)
        for _ in range(15):
            status = await service_status(kube, namespace)
            assert status.get("phase") == "Healthy" and not status.get("canary"), status
            await asyncio.sleep(1)
        assert status["stable_revision"] == stable
    finally:
        await kube.delete(f"{quotas}/no-pods")


async def test_a_stable_twin_short_of_pods_mid_rollout_is_called_degraded(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """Soak rule `status` (b), seed 1 on 9010f9e (app-11, 04:18:44-04:19:20):
    a ResourceQuota kept the stable twin at 2 of its 3 pods during a
    rollout; the phase said Progressing for 36 s, because only a steady
    phase looked at the stable twin's pods. Careful: the stable twin is kept
    at its size in every phase; short of pods, it is Degraded."""
    status = await serving_first_step(kube, namespace)
    quotas = f"/api/v1/namespaces/{namespace}/resourcequotas"
    await kube.create(quotas, {"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}})
    try:
        pods = await kube.get(
            PODS.path(namespace), labelSelector=f"canary.io/twin={status['stable']}"
        )
        await kube.delete(PODS.path(namespace, pods["items"][0]["metadata"]["name"]))
        degraded = await eventually(
            lambda: service_status(kube, namespace),
            lambda s: s.get("phase") == "Degraded",
            timeout_s=30,
        )
        assert f"2/3 pods of the {status['stable']} twin (stable)" in degraded["degraded"]
    finally:
        await kube.delete(f"{quotas}/no-pods")
    await wait_phase(kube, namespace, "Progressing", "Promoting", "Healthy", timeout_s=60)


async def rolled_back(kube: Kube, namespace: str) -> int:
    return sum(r.get("outcome") == "rolled-back" for r in await history_of(kube, namespace))


async def test_bad_releases_rolled_back_in_a_row_leave_the_selector_repairable(
    kube: Kube, namespace: str, controller: RunningController
) -> None:
    """Soak rule `outcomes` (b), seed 1 on 4779e9e (app-07, 05:15:22-05:16:06):
    bad releases rolled back one after another each wrote the same selector
    (the stable twin only) at what the write guard took for the same rollout
    position, so it called it a loop and blocked the selector for 5 minutes;
    a GitOps re-apply then left every pod selected, a superseded bad
    canary's included, and the controller could only say so. Careful: one
    rollout is not the next; repeated rollbacks are not a fight."""
    await deploy_app(kube, namespace, service=managed_service(failure_limit="0"))
    await wait_phase(kube, namespace, "Healthy")
    for n in range(2, 6):
        await release(kube, namespace, f"registry.example/web:v{n}", BAD)
        await eventually(lambda: rolled_back(kube, namespace), (n - 1).__eq__, timeout_s=60)
    body = {"apiVersion": "v1", "kind": "Service", **managed_service(failure_limit="0")}
    await argocd_apply(kube, SERVICES.path(namespace, "web"), body)

    async def selected() -> dict[str, str]:
        service = await kube.get(SERVICES.path(namespace, "web"))
        return dict(service["spec"].get("selector") or {})

    await eventually(selected, lambda s: s.get("canary.io/twin") == "blue", timeout_s=30)


@contextlib.asynccontextmanager
async def rollback_unwritable(kube: Kube, namespace: str) -> AsyncIterator[None]:
    """A write of web's canary.io/status that says RolledBack is refused by a
    ValidatingAdmissionPolicy (the API server's own CEL admission): that one
    status write fails, every other write goes through."""
    async with status_refused(kube, namespace, lambda new, _: f"{new}.contains('{ROLLED_BACK}')"):
        yield


@contextlib.asynccontextmanager
async def status_unwritable_once_serving(kube: Kube, namespace: str) -> AsyncIterator[None]:
    """Once web's written status says its canary serves its step (step_ready
    set), every change of it is refused; before that, only a RolledBack one
    (none is due before the canary serves; it is what the policy's loading
    is probed with). Other writes pass."""

    def refuse(new: str, old: str) -> str:
        return f"{old}.matches('{SERVING}') || {new}.contains('{ROLLED_BACK}')"

    async with status_refused(kube, namespace, refuse):
        yield


ROLLED_BACK = '"phase":"RolledBack"'
SERVING = '"step_ready":[1-9]'  # the window's start, epoch seconds; 0 before the canary serves


@contextlib.asynccontextmanager
async def status_refused(
    kube: Kube, namespace: str, refuse: Callable[[str, str], str]
) -> AsyncIterator[None]:
    """A ValidatingAdmissionPolicy (the API server's own CEL admission) that
    refuses a change of web's canary.io/status where refuse(new, old), a CEL
    condition on the new and old values, holds; every other write goes
    through. A RolledBack status must be refused: the policy's loading is
    probed with one."""
    status = "canary.io/status"
    current = (
        f"(has(object.metadata.annotations) && '{status}' in object.metadata.annotations"
        f" ? object.metadata.annotations['{status}'] : '')"
    )
    old = current.replace("object.", "oldObject.")

    async def probe() -> Any:
        """A status change of our own (a dry run: nothing is written)."""
        return await kube.patch(
            SERVICES.path(namespace, "web"),
            {"metadata": {"annotations": {status: '{"phase":"RolledBack"}'}}},
            dryRun="All",
        )

    async with admission_refusal(
        kube,
        namespace,
        f"no-status-{namespace}"[:63],
        ("UPDATE", "services"),
        f"object.metadata.name != 'web' || {current} == {old} || !({refuse(current, old)})",
        "this status is refused by the test",
        probe,
    ):
        yield


def undone(twin: dict[str, Any]) -> bool:
    return EDITED not in (twin["spec"]["template"]["metadata"].get("annotations") or {})


def rolled_out(twin: dict[str, Any], generation: int) -> bool:
    """The Deployment controller finished rolling the twin to that generation."""
    status, replicas = twin.get("status") or {}, twin["spec"]["replicas"]
    return (
        int(status.get("observedGeneration", 0)) >= generation
        and status.get("updatedReplicas") == replicas
        and status.get("readyReplicas") == replicas
        and status.get("replicas") == replicas
    )


@contextlib.asynccontextmanager
async def slow_api(server: str, delay_s: float) -> AsyncIterator[str]:
    """A loopback TCP proxy in front of the API server that holds every chunk
    a client sends for `delay_s` before passing it on (TLS passes through):
    an API server that answers, but slowly, as a busy or stalling one does."""
    target = urlsplit(server)
    pipes: set[asyncio.Task[None]] = set()

    async def pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float
    ) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, chunk = await queue.get()
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if not chunk:
                    break
                writer.write(chunk)
                await writer.drain()

        sender = asyncio.create_task(send())
        try:
            while chunk := await reader.read(65536):
                queue.put_nowait((time.monotonic() + delay, chunk))
            queue.put_nowait((time.monotonic() + delay, b""))
            await sender
        finally:
            sender.cancel()
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await sender
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(target.hostname, target.port)
        for task in (
            asyncio.create_task(pump(client_r, server_w, delay_s)),
            asyncio.create_task(pump(server_r, client_w, 0.0)),
        ):
            pipes.add(task)
            task.add_done_callback(pipes.discard)

    proxy = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = proxy.sockets[0].getsockname()[1]
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        proxy.close()
        for task in list(pipes):
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)


async def test_a_leader_keeps_the_lease_while_the_api_server_answers_within_its_deadline(
    sandbox: cluster.Sandbox, namespace: str, tmp_path: Path
) -> None:
    """Found through the soak's `outage` and `status` counts on 3e32b2f: on a
    busy machine (load ~24 on 2 cores) with the injector's API server and
    etcd stops, the leader lost the lease every ~40 s (18 replica exits in
    16 min) and no replica led for 790 s of 1,000; every fault that needs the
    controller to react then went unrepaired. Each lease request is bounded
    by the retry period (2 s), so an API server that answers in 2.3 s fails
    every attempt, although a renew sent then would land well inside the
    10 s renew deadline, and the fence (counted from when the renew was
    *sent*) keeps a slow renew safe. Careful: bound an attempt by the time
    the fence has left, not by the retry period, as client-go bounds a
    renew by the renew deadline."""
    async with slow_api(sandbox.apiserver, delay_s=2.3) as server:
        kubeconfig = tmp_path / "slow-kubeconfig"
        configs.kubeconfig(kubeconfig, server, sandbox.token, Path(sandbox.ca))
        slow = dataclasses.replace(sandbox, kubeconfig=str(kubeconfig))
        replica = ControllerProcess(
            slow, tmp_path / "controller.log", ["-n", namespace, "--lease-namespace", namespace]
        )
        try:
            await eventually(
                lambda: replica.value("canary_leader"), lambda v: v == 1.0, timeout_s=90
            )
            for _ in range(30):  # and keeps it
                assert replica.popen.poll() is None, (tmp_path / "controller.log").read_text()
                assert await replica.value("canary_leader") == 1.0
                await asyncio.sleep(1)
        finally:
            replica.stop()
