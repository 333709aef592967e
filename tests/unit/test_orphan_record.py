"""The orphan hand-back and what a managed Service's status carried
(history.CARRIED): reviews of e2fb324 and 6c19dcb."""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

from canary import history
from tests.unit.test_events_refused import KEY
from tests.unit.test_record_carried import _Counted, _promoted, _release


def _reconcile(shell: _Counted) -> None:
    try:
        asyncio.run(shell.reconciler.reconcile(*KEY))
    except Exception as exc:
        shell.failures.append(exc)


def _unannotated_mid_rollout() -> tuple[_Counted, str]:
    """v3 in flight, its start and step 1's check carried in the status;
    then the Service re-applied without canary's annotations (`kubectl
    replace` of a plain manifest): its twins go back as orphans."""
    shell = _promoted("25,50,75")
    revision = _release(shell, "web:v3")
    shell.step()
    for deployment in shell.informers[1].items():
        deployment["metadata"].setdefault("uid", f"d-{deployment['metadata']['name']}")
    annotations = shell.service()["metadata"]["annotations"]
    for name in [k for k in annotations if k.startswith("canary.io/")]:
        del annotations[name]
    return shell, revision


def test_a_service_recreated_without_annotations_gets_no_history_of_the_deleted_ones_rollout() -> (
    None
):
    """The Service is deleted mid-rollout (its history goes with it) and
    recreated at once from a plain manifest (no canary annotations, a new
    uid). Its twins are handed back as orphans; the hand-back wrote what the
    deleted Service's status carried into a history ConfigMap made for the
    new, unmanaged Service: an entry `progressing` for ever, which the
    Service never rolled out, read by the adoption once the team annotates
    it again."""
    shell = _promoted("25,50")
    revision = _release(shell, "web:v3")
    shell.step()
    assert [i for i in shell.carried() if "start" in i]
    kept = copy.deepcopy(shell.service())
    for deployment in shell.informers[1].items():
        deployment["metadata"].setdefault("uid", f"d-{deployment['metadata']['name']}")
    shell.informers[0].forget("ns", "web")
    shell.informers[3].forget("ns", "web-canary-history")  # owned by the Service: collected
    _reconcile(shell)  # seen gone
    plain = copy.deepcopy(kept)
    plain["metadata"]["uid"] = "s-2"
    plain["metadata"]["annotations"] = {}
    plain["spec"]["selector"] = {"app": "web"}
    shell.informers[0].remember(plain)
    for _ in range(20):
        shell.reconciler._missing[KEY] = time.time() - 100
        _reconcile(shell)
    assert not [d for d in shell.informers[1].items() if d["metadata"]["name"] != "web"]
    made = shell.informers[3].get("ns", "web-canary-history")
    assert made is None or revision not in [r["revision"] for r in history.load(made)], (
        history.load(made)
    )


def test_an_orphan_hand_backs_history_write_that_fails_is_retried() -> None:
    """`kubectl replace` of the Service without canary's annotations mid-
    rollout; the hand-back's history write (what the status carried) fails
    once (a 503, a 409 on the ConfigMap). The items were taken out of memory
    before the write: the retry found nothing to write, and the release's
    start, check and Events were lost."""
    from canary.kube import ApiError

    shell, revision = _unannotated_mid_rollout()
    patch = shell.kube.patch
    failing = [1]

    async def flaky(path: str, *args: Any, **kwargs: Any) -> Any:
        if "/configmaps/" in path and failing[0]:
            failing[0] -= 1
            raise ApiError(503, "ServiceUnavailable", "etcd leader changed")
        return await patch(path, *args, **kwargs)

    shell.kube.patch = flaky  # type: ignore[method-assign]
    for _ in range(20):
        shell.reconciler._missing[KEY] = time.time() - 100
        _reconcile(shell)
    assert not failing[0], "the history write never failed"
    assert not [d for d in shell.informers[1].items() if d["metadata"]["name"] != "web"]
    entry = [r for r in shell.written() if r["revision"] == revision]
    assert entry and [c["step"] for c in entry[-1]["checks"]] == [1], shell.written()


def test_a_history_write_that_can_never_land_does_not_block_the_hand_back() -> None:
    """6c19dcb moved the orphan hand-back's history write before the hand-back
    and lets its failure fail the cycle (retried, so nothing carried is lost).
    A write that can never land (RBAC refuses that ConfigMap, or someone made it
    `immutable: true`: 403/422 at every try) then kept the twins and the team's
    Deployment from ever being handed back: a best-effort record blocked the
    safety path."""
    shell, _ = _unannotated_mid_rollout()
    shell.kube.forbidden = "/configmaps/web-canary-history"  # 403 at every write
    for _ in range(20):
        shell.reconciler._missing[KEY] = time.time() - 100
        _reconcile(shell)
    assert not [d for d in shell.informers[1].items() if d["metadata"]["name"] != "web"], [
        d["metadata"]["name"] for d in shell.informers[1].items()
    ]
