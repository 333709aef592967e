"""The controller itself rolled back, forward, reconfigured or installed
twice while rollouts are in flight: what one version of it wrote, read by
another. Each test failed on the code before its fix."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import logging
from typing import Any

import pytest

from analysis.prometheus import PrometheusConfig
from analysis.provider import QueryError
from analysis.verdicts import Verdict
from canary import history, oncall, run
from canary.lease import ALL, SCOPE_ANNOTATION, LeaderElector, unwatched
from canary.model import JSON
from canary.observe import twin_of
from canary.run import RunOptions, _elect
from canary.spec import FIELD_MANAGER, STATUS, TEMPLATE_ANNOTATION
from canary.twins import template_digest
from tests.unit.test_events_refused import _Shell
from tests.unit.test_lease_bad_day import TIMINGS, Client, LeaseStore, _SlowSyncController
from tests.unit.test_record_carried import _promoted, _release

NOW = 1_800_000_000.0

# What another version of the controller would write on a twin: a digest
# computed its own way (of a template it shapes its own way).
OTHER_VERSION_DIGEST = "0123456789abcdef"
OURS = [
    {
        "manager": FIELD_MANAGER,
        "operation": "Update",
        "time": "2026-12-01T10:00:00Z",
        "fieldsV1": {"f:metadata": {"f:annotations": {}}, "f:spec": {"f:template": {}}},
    }
]


def _by_another_version(shell: _Shell, color: str) -> None:
    """The twin as a newer controller wrote it: a pod label this version
    does not write, and that version's digest of its template."""
    twin = shell.informers[1].get("ns", f"web-{color}")
    assert twin is not None
    twin = copy.deepcopy(twin)
    twin["spec"]["template"]["metadata"]["labels"]["canary.io/controller-version"] = "0.2.0"
    twin["metadata"]["annotations"][TEMPLATE_ANNOTATION] = OTHER_VERSION_DIGEST
    twin["metadata"]["managedFields"] = copy.deepcopy(OURS)
    twin["metadata"]["resourceVersion"] = "5"
    shell.informers[1].remember(twin)


def test_a_twin_another_version_of_the_controller_wrote_is_not_edited() -> None:
    """A digest that matches neither of this version's forms, on a template
    the controller wrote last (no one else's write since), is not a hand
    edit: it is another version's digest (the controller rolled back or
    forward), or what an upgraded API server now defaults."""
    shell = _Shell()
    _by_another_version(shell, "blue")
    twin = shell.informers[1].get("ns", "web-blue")
    assert twin_of(twin, []).edited_by == ""
    # A person's edit after it is still one.
    edited = copy.deepcopy(twin)
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "web:hotfix"
    edited["metadata"]["managedFields"].append(
        {
            "manager": "kubectl-edit",
            "time": "2026-12-01T11:00:00Z",
            "fieldsV1": {"f:spec": {"f:template": {"f:spec": {}}}},
        }
    )
    assert twin_of(edited, []).edited_by == "kubectl-edit"
    # ... also once a later write of ours (a scale) is the newest entry.
    edited["metadata"]["managedFields"][0]["time"] = "2026-12-01T12:00:00Z"
    assert twin_of(edited, []).edited_by == FIELD_MANAGER
    # A restart's stamp by someone else is no edit of what the pods run.
    restarted = copy.deepcopy(twin)
    restarted["spec"]["template"]["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/restartedAt": "2026-12-01T11:00:00Z"
    }
    restarted["metadata"]["managedFields"].append(
        {
            "manager": "kubectl-rollout",
            "time": "2026-12-01T11:00:00Z",
            "fieldsV1": {
                "f:spec": {
                    "f:template": {
                        "f:metadata": {
                            "f:annotations": {".": {}, "f:kubectl.kubernetes.io/restartedAt": {}}
                        }
                    }
                }
            },
        }
    )
    assert twin_of(restarted, []).edited_by == ""


def test_a_controller_rolled_back_mid_rollout_puts_no_twin_back() -> None:
    """On-call rolls the controller back to the previous version mid-rollout.
    Before, every twin the newer one had written read as edited by hand
    ("canary-controller changed the pod template"): the stable twin was put
    back (TwinRestored; every pod of every managed app restarted, all at once
    with `strategy: Recreate`) and the canary's step judged afresh. Now the
    twins keep their pods and their digest is written as this version
    computes it."""
    shell = _Shell()
    shell.kube.refusing = None
    _by_another_version(shell, "blue")
    _by_another_version(shell, "green")
    before = {
        color: copy.deepcopy((shell.informers[1].get("ns", f"web-{color}") or {})["spec"])
        for color in ("blue", "green")
    }
    for _ in range(3):
        shell.cycle()
    assert not shell.failures, shell.failures
    assert "TwinRestored" not in shell.kube.events, shell.kube.events
    for color in ("blue", "green"):
        twin = shell.informers[1].get("ns", f"web-{color}")
        assert twin is not None
        template = twin["spec"]["template"]
        assert template == before[color]["template"], color  # no pod restarted
        assert twin["metadata"]["annotations"][TEMPLATE_ANNOTATION] == template_digest(template)


# -- `canary run --namespace` shrunk across a restart -----------------------------------------


async def test_a_leader_watching_fewer_namespaces_than_the_one_before_says_which(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The controller restarted with `--namespace shop` where it had `shop,pay`:
    a Service of `pay` mid-step keeps its canary's weight, unanalysed, and
    nothing watches it. Before, nothing said so (its series went with the
    old leader, so no alert fired either). The Lease carries the namespaces
    its holder watches, and the new leader logs those it leaves."""
    store = LeaseStore()
    old = LeaderElector(Client(store), "ops", "canary-controller", "old", TIMINGS, scope="pay,shop")  # type: ignore[arg-type]
    await old.acquire()
    await old.release()
    new = LeaderElector(Client(store), "ops", "canary-controller", "new", TIMINGS, scope="shop")  # type: ignore[arg-type]
    options = RunOptions(prometheus=None, lease_namespace="ops")  # type: ignore[arg-type]
    electing = asyncio.create_task(_elect(options, new, _SlowSyncController(sync_s=0.0)))  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="canary"):
        await asyncio.sleep(TIMINGS.retry_s * 3)
    electing.cancel()
    await asyncio.gather(electing, return_exceptions=True)
    assert new.left_unwatched == "pay"
    said = [r.getMessage() for r in caplog.records if "also watched pay" in r.getMessage()]
    assert said and "unanalysed" in said[0], [r.getMessage() for r in caplog.records]
    lease = store.objects["canary-controller"]
    assert lease["metadata"]["annotations"][SCOPE_ANNOTATION] == "shop"
    # From a holder that watched every namespace; and none left: nothing said.
    assert unwatched(ALL, "shop") == "every namespace but shop"
    assert unwatched("shop", ALL) == unwatched("", "shop") == unwatched("shop", "shop") == ""


def _lease(scope: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "canary-controller", "namespace": "canary-system"}
    if scope is not None:
        meta["annotations"] = {SCOPE_ANNOTATION: scope}
    return {
        "metadata": meta,
        "spec": {
            "holderIdentity": "canary-abc",
            "renewTime": dt.datetime.fromtimestamp(NOW - 2, dt.UTC).isoformat(),
            "leaseDurationSeconds": 15,
        },
    }


def test_the_cli_warns_of_a_service_in_a_namespace_the_leader_does_not_watch() -> None:
    """`canary abort web -n pay` (or `canary status`) with the controller now
    run with `--namespace shop`: before, the Lease read live, `abort
    requested` was printed and nothing took it while the canary served on,
    unanalysed."""
    where = "canary-system/canary-controller"
    warning = oncall.lease_warning(_lease("shop"), where, NOW, ["pay"])
    assert warning and "watches only namespace(s) shop, not pay" in warning, warning
    assert "nothing acts" in warning
    assert oncall.lease_warning(_lease("pay,shop"), where, NOW, ["pay", "shop"]) is None
    assert oncall.lease_warning(_lease(ALL), where, NOW, ["pay"]) is None
    # Written by a version that did not say: nothing guessed.
    assert oncall.lease_warning(_lease(None), where, NOW, ["pay"]) is None


# -- two controllers acting on the same Service ------------------------------------------------

STATUS_OWNED = [
    {
        "manager": FIELD_MANAGER,
        "operation": "Update",
        "time": "2026-12-01T10:00:00Z",
        "fieldsV1": {"f:metadata": {"f:annotations": {f"f:{STATUS}": {}}}},
    }
]


def _written_by_another_controller(shell: _Shell) -> None:
    """What a second install (or the old replicas of one whose Lease moved)
    writes: the status as the controller writes it, deciding on its own."""
    service = copy.deepcopy(shell.service())
    status = json.loads(service["metadata"]["annotations"][STATUS])
    status["message"] = "step 1/2: analysing (written by the other controller)"
    service["metadata"]["annotations"][STATUS] = json.dumps(status, separators=(",", ":"))
    service["metadata"]["managedFields"] = copy.deepcopy(STATUS_OWNED)
    shell.kube.version += 1
    service["metadata"]["resourceVersion"] = str(shell.kube.version)
    shell.informers[0].remember(service)


def test_a_second_controller_writing_the_status_is_told() -> None:
    """Two installs watching the same namespaces (or the Lease renamed or moved
    by an upgrade while the old replicas still lead): each leads its own
    Lease, and both act on every Service. Before, nothing said so: Events,
    gate calls and notifications came twice, and two versions undid each
    other's writes with at most a WriteLoop that named neither. Now the
    controller that finds a status it did not send, written as the
    controller writes it, after one of its own, says so (a Warning)."""
    shell = _Shell()
    shell.kube.refusing = None
    shell.ask_now()
    for _ in range(4):  # the step passes: a status of this controller's is written
        shell.cycle()
    assert not shell.failures, shell.failures
    assert "ControllerConflict" not in shell.kube.events, shell.kube.events  # alone: nothing
    _written_by_another_controller(shell)
    shell.cycle()
    assert shell.kube.events.count("ControllerConflict") == 1, shell.kube.events
    _written_by_another_controller(shell)
    shell.cycle()
    assert shell.kube.events.count("ControllerConflict") == 1  # not again for 10 minutes


def test_a_status_of_someone_else_is_no_second_controller() -> None:
    """An old export applied again (`kubectl apply`) is another manager's:
    rebuilt as before (StateRebuilt), not taken for a controller."""
    shell = _Shell()
    shell.kube.refusing = None
    shell.ask_now()
    for _ in range(4):
        shell.cycle()
    _written_by_another_controller(shell)
    service = shell.informers[0].get("ns", "web")
    assert service is not None
    service["metadata"]["managedFields"][0]["manager"] = "kubectl-client-side-apply"
    shell.cycle()
    assert "ControllerConflict" not in shell.kube.events, shell.kube.events
    assert "StateRebuilt" in shell.kube.events, shell.kube.events


# -- the controller restarted while Prometheus is down ----------------------------------------


class _Reached(Exception):
    """run_controller got past its start-up check (to the API server)."""


class _Down:
    """A Prometheus that does not answer (an outage), or answers later."""

    checks = 0
    up = False

    def __init__(self, config: object) -> None:
        self.metricsql = False

    async def check(self) -> None:
        _Down.checks += 1
        if not _Down.up:
            raise QueryError("Prometheus at http://prometheus:9090 unavailable: ConnectionError")

    def close(self) -> None:
        return None


async def _no_cluster(*_: object) -> None:
    raise _Reached


async def test_a_controller_restarted_while_prometheus_is_down_still_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both replicas restarted (a node upgrade, an eviction, a controller
    upgrade rolled out) while Prometheus is down: before, each exited at its
    start-up check and crash-looped until Prometheus was back, and nothing
    carried out an abort, put a reset selector back or handed an app back
    meanwhile, while a canary served its weight. A Prometheus that does not
    answer is logged; the controller runs (checks fail and halt as they do
    when Prometheus fails later), not ready until it answers."""
    monkeypatch.setattr(run, "Prometheus", _Down)
    monkeypatch.setattr(run, "connect", _no_cluster)
    options = RunOptions(prometheus=PrometheusConfig(url="http://prometheus:9090"))
    with pytest.raises(_Reached):
        await run.run_controller(options)


async def test_a_prometheus_url_that_is_not_one_still_stops_the_start() -> None:
    options = RunOptions(prometheus=PrometheusConfig(url="prometheus:9090"))
    with pytest.raises(run.StartupError, match="not an http"):
        await run.run_controller(options)


async def test_the_controller_is_ready_only_once_prometheus_answered() -> None:
    """Not ready while Prometheus has not answered since the start: a rollout
    of the controller with a wrong URL stalls on its first new pod (as the
    exit made it), where the replicas that serve stay."""
    _Down.up, _Down.checks = False, 0
    provider = _Down(None)
    answered = asyncio.Event()
    waiting = asyncio.create_task(run.until_answered(provider, answered, every_s=0.01))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    assert not answered.is_set() and _Down.checks >= 2
    _Down.up = True
    await asyncio.wait_for(waiting, 1.0)
    assert answered.is_set()


# -- a history written by a newer version -------------------------------------------------------


def _newer_shape(records: list[JSON]) -> list[JSON]:
    """The entries as a newer version might write them: each image with its
    container's name (a field of another type than this version reads)."""
    return [
        {**r, "images": [{"container": "web", "image": i} for i in r.get("images") or []]}
        for r in records
    ]


def test_a_history_a_newer_version_wrote_keeps_its_entries_for_an_older_one() -> None:
    """The controller rolled back to this version after a newer one wrote the
    history with another shape of a field in every entry, then the Service
    replaced by a sync (its status gone). Before, every such entry was left
    out of the history this version went on with (kept aside as corrupt),
    and with it what the rebuild reads: the release rolled back went out
    again as a new one, the serving revision's template (which puts a
    deleted stable twin back) was gone, and `canary undo` had no target.
    Now the entry is kept, less the field this version cannot read."""
    shell = _promoted("25,50")
    shell.kube.refusing = None
    bad = _release(shell, "web:v3")
    shell.checks.verdict = Verdict.FAIL
    for _ in range(6):
        shell.ask_now()
        shell.cycle()
    assert shell.status().get("failed_revision") == bad, shell.status()
    configmap = copy.deepcopy(shell.informers[3].get("ns", "web-canary-history"))
    assert configmap is not None
    records = history.load(configmap)
    serving = [r for r in records if r.get("outcome") == "promoted"][-1]
    configmap["data"][history.DATA_KEY] = json.dumps(_newer_shape(records))
    shell.kube.version += 1
    configmap["metadata"]["resourceVersion"] = str(shell.kube.version)
    shell.informers[3].remember(configmap)
    kept, corrupt = history.load_checked(configmap)
    assert corrupt  # still kept aside, and said
    assert history.outcomes(kept).get(bad) == "rolled-back", kept
    assert history.template_of(kept, serving["revision"]) == serving["template"]
    # The Service replaced without its status (Argo CD Replace=true).
    service = copy.deepcopy(shell.service())
    del service["metadata"]["annotations"][STATUS]
    shell.kube.version += 1
    service["metadata"]["resourceVersion"] = str(shell.kube.version)
    shell.informers[0].remember(service)
    shell.restart()
    shell.kube.events.clear()
    for _ in range(4):
        shell.cycle()
    assert not shell.failures, shell.failures
    assert "RolloutStarted" not in shell.kube.events, shell.kube.events
    status = shell.status()
    assert status.get("failed_revision") == bad and not status.get("canary_revision"), status
