"""A status another field manager wrote that holds the very value a rebuild
derives: a Service recreated with its current status (`kubectl replace
--force`, a Helm reinstall, a backup restored within the hand-back's grace)
at a steady state that was itself rebuilt or adopted. The controller's write
of that value is a no-op for the API server: an Update takes a field over
only when it changes it (managedFields), so the annotation stayed the other
manager's, was distrusted at every cycle, and rebuilt again: a StateRebuilt
Warning and a status write per watch event, for as long as nothing changed."""

from __future__ import annotations

import copy
import json
from typing import Any

from canary.model import JSON
from canary.spec import STATUS
from tests.unit.test_events_refused import _Cluster, _merge, _Shell

OWNED: JSON = {"f:metadata": {"f:annotations": {f"f:{STATUS}": {}}}}


class _Owners(_Cluster):
    """_Cluster, with the managedFields of the status annotation as the API
    server keeps them for an Update: a write that changes the value takes it
    over; one that leaves it as it is changes nothing (not even the version)."""

    def __init__(self, informers: list[Any]) -> None:
        super().__init__(informers)
        self.refusing = None
        self.status_writes = 0

    async def patch(self, path: str, body: JSON, *args: object, **kwargs: object) -> JSON:
        if "/services" not in path:
            return await super().patch(path, body, *args, **kwargs)
        current = self.informers[0].get("ns", path.rsplit("/", 1)[-1])
        assert current is not None
        meta = body.get("metadata") or {}
        if STATUS in (meta.get("annotations") or {}):
            self.status_writes += 1
        trial = _merge(
            copy.deepcopy(current),
            {**body, "metadata": {k: v for k, v in meta.items() if k != "resourceVersion"}},
        )
        if trial == current:
            return copy.deepcopy(current)  # a no-op: nothing stored, no new version
        before = (current["metadata"].get("annotations") or {}).get(STATUS)
        patched = await super().patch(path, body, *args, **kwargs)
        after = (patched["metadata"].get("annotations") or {}).get(STATUS)
        if after != before:
            manager = str(kwargs.get("fieldManager"))
            patched["metadata"]["managedFields"] = [
                {"manager": manager, "operation": "Update", "fieldsV1": OWNED}
            ]
        self.informers[0].remember(patched)
        return copy.deepcopy(patched)


def _steady() -> _Shell:
    """r2 promoted onto green, then its status rebuilt (removed by hand) and
    settled: a steady status as a rebuild writes it."""
    shell = _Shell(steps="25")
    shell.kube = _Owners(shell.informers)
    shell.reconciler.kube = shell.kube  # type: ignore[assignment]
    shell.reconciler.edges.kube = shell.kube  # type: ignore[assignment]
    for _ in range(10):
        if shell.checks.asked is None and shell.status().get("canary"):
            shell.ask_now()
        shell.cycle()
    assert shell.status()["stable"] == "green", shell.status()
    del shell.service()["metadata"]["annotations"][STATUS]
    for _ in range(6):
        shell.cycle()
    assert not shell.failures, shell.failures
    status = shell.status()
    assert status["stable"] == "green" and not status.get("canary"), status
    return shell


def test_a_status_recreated_as_it_was_is_rebuilt_once() -> None:
    shell = _steady()
    service = shell.service()
    raw = service["metadata"]["annotations"][STATUS]
    # `kubectl replace --force -f` of the Service as it is: created anew by
    # kubectl, which now owns every field, the status too.
    service["metadata"]["managedFields"] = [
        {"manager": "kubectl-replace", "operation": "Update", "fieldsV1": OWNED}
    ]
    shell.kube.events.clear()
    writes = shell.kube.status_writes  # type: ignore[attr-defined]
    for _ in range(5):
        shell.cycle()  # five watch events (a pod restarted, an HPA status...)
    assert not shell.failures, shell.failures
    assert json.loads(shell.service()["metadata"]["annotations"][STATUS]) == json.loads(raw)
    assert shell.kube.events.count("StateRebuilt") == 1, shell.kube.events
    assert shell.kube.status_writes - writes <= 1  # type: ignore[attr-defined]


def test_the_same_status_applied_again_after_we_wrote_another_is_rebuilt() -> None:
    """Vouched for, a value is ours only while the Service is unchanged: once
    we wrote another, the same value applied again is an old one."""
    shell = _steady()
    service = shell.service()
    vouched = service["metadata"]["annotations"][STATUS]
    service["metadata"]["managedFields"] = [
        {"manager": "kubectl-replace", "operation": "Update", "fieldsV1": OWNED}
    ]
    for _ in range(2):
        shell.cycle()
    # on-call pauses: the controller writes a status of its own
    shell.service()["metadata"]["annotations"]["canary.io/action"] = "pause t1"
    shell.cycle()
    assert shell.service()["metadata"]["annotations"][STATUS] != vouched
    # the Service applied again from the file it was recreated from
    service = shell.service()
    service["metadata"]["annotations"][STATUS] = vouched
    service["metadata"]["managedFields"] = [
        {"manager": "kubectl-client-side-apply", "operation": "Update", "fieldsV1": OWNED}
    ]
    service["metadata"]["resourceVersion"] = "999"
    shell.kube.events.clear()
    shell.cycle()
    assert not shell.failures, shell.failures
    assert shell.kube.events.count("StateRebuilt") == 1, shell.kube.events


def _replaced_and_vouched() -> _Shell:
    """A steady Service whose status kubectl replace wrote, rebuilt to the
    same value (and so vouched for) by two cycles."""
    shell = _steady()
    service = shell.service()
    service["metadata"]["managedFields"] = [
        {"manager": "kubectl-replace", "operation": "Update", "fieldsV1": OWNED}
    ]
    for _ in range(2):
        shell.cycle()
    return shell


def test_a_vouched_status_stays_trusted_across_our_own_writes_of_the_service() -> None:
    """A sync resets the selector (app: web): the controller puts it back, a
    write of the Service that leaves the status as it is. Vouched for at the
    version before, it was rebuilt again at the next cycle (a StateRebuilt
    Warning for each selector put back)."""
    shell = _replaced_and_vouched()
    shell.service()["spec"]["selector"] = {"app": "web"}  # the sync
    shell.kube.events.clear()
    for _ in range(3):
        shell.cycle()
    assert not shell.failures, shell.failures
    assert shell.service()["spec"]["selector"].get("canary.io/twin") == "green"
    assert "SelectorRestored" in shell.kube.events, shell.kube.events
    assert "StateRebuilt" not in shell.kube.events, shell.kube.events


def test_a_vouched_status_stays_trusted_when_someone_labels_the_service() -> None:
    shell = _replaced_and_vouched()
    service = shell.service()
    service["metadata"].setdefault("labels", {})["team"] = "payments"  # kubectl label
    service["metadata"]["resourceVersion"] = "999"
    shell.kube.events.clear()
    for _ in range(2):
        shell.cycle()
    assert not shell.failures, shell.failures
    assert "StateRebuilt" not in shell.kube.events, shell.kube.events
