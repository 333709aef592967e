"""Interactions between the changes merged together (the Service's own
fields, controller version skew, clocks, RBAC refusals, the per-pod
analysis check): found by the combined review. Each test failed before its
fix."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from canary import controller as controller_module
from canary.controller import Controller
from canary.kube import ApiError, Conflict
from canary.model import JSON, Action, Observed, SetSelector
from canary.reconcile import Edges
from canary.spec import FIELD_MANAGER, SERVICE_LABEL, TWIN_LABEL
from tests.unit.test_controller_skew import STATUS_OWNED
from tests.unit.test_events_refused import _Shell
from tests.unit.test_rbac_bad_day import LB_POLICY, record_reconciles
from tests.unit.test_service_fields import ONE_STEP, _Labelled
from tests.unit.world import spec


class _Written(_Labelled):
    """A World that tells who last wrote the selector (managedFields), as
    observe does: the controller once it has, the team's tool before."""

    manager: str = "gitops"

    def observed(self) -> Observed:
        return replace(super().observed(), selector_manager=self.manager)

    def _land(self, action: Action) -> None:
        super()._land(action)
        if isinstance(action, SetSelector):
            self.manager = FIELD_MANAGER


def test_a_pause_while_the_first_steps_pods_wait_to_be_listed_keeps_the_steps_selector() -> None:
    # The first step put the canary in the Service as its pods got ready
    # (placement._placed); they are listed as endpoints an instant later,
    # or, lacking a key of the selector (a chart refactor), never: the step
    # waits, and on-call pauses it to look. Both twins was then taken for a
    # sync of an exported manifest (test_service_fields): the pause moved the
    # Service off the canary with a SelectorRestored Warning saying the
    # controller's own write was someone else's ("canary-controller set the
    # Service selector ... it is back on the blue twin, as the step had it"),
    # and the resume moved it back: two selector writes and a false Warning.
    labels = {"app": "web", "tier": "frontend"}
    world = _Written(selector=dict(labels))
    world.source = replace(world.source, pod_labels=dict(labels))
    world.adopted(ONE_STEP)
    world.source = replace(world.source, revision="r2", pod_labels={"app": "web"})
    world.settle(ONE_STEP)
    both = {**labels, SERVICE_LABEL: "web"}
    assert world.selector == both and not world.state.step_ready, world.selector
    world.events.clear()
    paused = spec(steps="25", paused="true")
    for _ in range(3):
        plan = world.step(paused, advance=1)
        assert not any(isinstance(a, SetSelector) for a in plan.actions), plan.actions
    assert world.selector == both, world.selector
    assert "SelectorRestored" not in world.reasons(), world.events
    world.step(ONE_STEP, advance=1)
    assert world.selector == both and TWIN_LABEL not in world.selector


class _TwoNamespacesRefused:
    """`--namespace shop,pay,tax`: the controller's RoleBinding exists in
    shop only; pay's is made later, tax's never (yet)."""

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}
        self.bound = {"shop"}

    def _refused(self, path: str) -> bool:
        return not any(f"/namespaces/{ns}/" in path for ns in self.bound)

    async def get(self, path: str, **_: object) -> JSON:
        if self._refused(path):
            raise ApiError(403, "Forbidden", f"{path} is forbidden: no RoleBinding")
        namespace = path.split("/namespaces/")[1].split("/", maxsplit=1)[0]
        meta = {"name": "web", "namespace": namespace, "uid": namespace, "resourceVersion": "1"}
        service = {
            "metadata": {**meta, "annotations": {"canary.io/strategy": "canary"}},
            "spec": {"selector": {"app": "web"}},
        }
        items = [service] if path.endswith("/services") else []
        return {"items": items, "metadata": {"resourceVersion": "1"}}

    async def watch(self, path: str, *_: object, **__: object) -> AsyncIterator[JSON]:
        if self._refused(path):
            raise ApiError(403, "Forbidden", f"{path} is forbidden: no RoleBinding")
        await asyncio.sleep(3600)
        yield {}


async def test_a_namespace_listed_late_is_served_while_another_still_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two namespaces of --namespace refused at start; pay's RoleBinding is
    # made, tax's not yet. pay's Services were taken in only by the
    # enqueue of every Service once *every* cache had listed, which tax
    # held back: its caches listed one by one, the Service's own first
    # (its enqueue refused: the others had not listed pay yet), and nothing
    # enqueued it again but an event of its own. A canary mid-step there
    # served on, unanalysed, until one came.
    monkeypatch.setattr(controller_module, "UNLISTED_S", 0.3)
    kube = _TwoNamespacesRefused()
    controller = Controller(
        Edges(kube=kube, prometheus=None),  # type: ignore[arg-type]
        namespaces=("shop", "pay", "tax"),
    )
    reconciled = record_reconciles(controller)
    running = asyncio.create_task(controller.run())
    try:
        await asyncio.wait_for(controller.synced.wait(), 5)
        for _ in range(100):
            if reconciled:
                break
            await asyncio.sleep(0.01)
        assert reconciled == [("shop", "web")]
        kube.bound.add("pay")
        for _ in range(1000):
            if ("pay", "web") in reconciled:
                break
            await asyncio.sleep(0.01)
        assert ("pay", "web") in reconciled, reconciled
        assert ("tax", "web") not in reconciled
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


def _restarted_with_a_status_of_its_own() -> _Shell:
    """A rollout in flight, its status written by the controller before it
    restarted (or by the replica that led before: the same install), as
    managedFields tell: field manager canary-controller."""
    shell = _Shell()
    shell.kube.refusing = None
    service = shell.informers[0].get("ns", "web")
    assert service is not None
    service["metadata"]["managedFields"] = copy.deepcopy(STATUS_OWNED)
    shell.ask_now()
    return shell


def test_a_status_write_that_failed_after_a_restart_is_no_second_controller() -> None:
    # The first status this process sends fails (409: the Service changed
    # between the read and the write, the team's apply, the last write of
    # the replica that led before), and the Service still holds the status
    # the controller wrote before its restart. That status was taken for
    # another controller's, written "after one of this one's": a
    # ControllerConflict Warning told on-call that two controllers act on
    # the Service, on an ordinary restart or leader change.
    shell = _restarted_with_a_status_of_its_own()
    patch = shell.kube.patch
    failed: list[str] = []

    async def once(path: str, body: JSON, *args: object, **kwargs: object) -> JSON:
        if "/services/" in path and not failed:
            failed.append(path)
            raise Conflict(409, "Conflict", "the object has been modified")
        return await patch(path, body, *args, **kwargs)

    shell.kube.patch = once  # type: ignore[method-assign]
    for _ in range(4):
        shell.cycle()
    assert failed and shell.failures, shell.failures
    assert "StepAdvanced" in shell.kube.events, shell.kube.events
    assert "ControllerConflict" not in shell.kube.events, shell.kube.events


def test_a_status_refused_for_good_is_no_second_controller() -> None:
    # Every update of the Service refused by a policy it violates: the
    # status is told as a write done without, and the Service keeps the one
    # written before the policy. Taken for another controller's, a
    # ControllerConflict Warning came every 10 minutes for as long.
    shell = _restarted_with_a_status_of_its_own()
    patch = shell.kube.patch

    async def refusing(path: str, body: JSON, *args: object, **kwargs: object) -> JSON:
        if "/services/" in path:
            raise ApiError(403, "Forbidden", LB_POLICY)
        return await patch(path, body, *args, **kwargs)

    shell.kube.patch = refusing  # type: ignore[method-assign]
    for _ in range(4):
        shell.cycle()
    assert any(getattr(f, "status", 0) == 403 for f in shell.failures), shell.failures
    assert "ControllerConflict" not in shell.kube.events, shell.kube.events
