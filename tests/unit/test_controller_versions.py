"""The controller itself upgraded, rolled back or run twice mid-rollout: a
status or a history written by another version of it (fields or values this
one does not know), read back by this one. Each test failed on the code
before its fix."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

from analysis.verdicts import Verdict
from canary import history
from canary.kube import Conflict
from canary.model import JSON, SetSelector
from canary.reconcile import Edges, Reconciler
from canary.spec import STATUS, TWIN_LABEL
from canary.status_writes import read_state
from tests.unit.test_config_bad_day import _Informer
from tests.unit.test_events_refused import _revision, _Shell
from tests.unit.world import World, spec

STRICT = spec(steps="25,50", failure_limit="0")


def _service(status: dict[str, object]) -> dict[str, object]:
    meta = {"name": "web", "namespace": "ns", "annotations": {STATUS: json.dumps(status)}}
    return {"metadata": meta, "spec": {}}


def test_a_gate_kind_this_version_does_not_know_never_sticks_the_rollout() -> None:
    """A newer controller waits on a gate kind of its own (or on-call
    mistypes one by hand) and is rolled back to this version mid-step.
    Before, every cycle raised ValueError (`GateKind(state.gate_wait)`):
    ReconcileFailed for good, the unanalysed canary kept its 25 %, and a
    failing one was never rolled back."""
    world = World().adopted(STRICT)
    world.source = replace(world.source, revision="r2")
    world.settle(STRICT)
    assert world.state.canary == "green" and world.state.requested_weight == 25
    newer = {**world.state.to_json(), "gate_wait": "pre-step-approval"}
    state, lost = read_state(_service(newer))
    world.state, world.lost = state, lost
    plan = world.step(STRICT, advance=1)  # raised ValueError before
    # Not a status this version can go on from: rebuilt, the canary is
    # taken out and its revision analysed again from the first step.
    assert "gate" in lost, lost
    assert SetSelector({"app": "web", TWIN_LABEL: "blue"}) in plan.actions
    world.settle(STRICT)
    assert world.state.canary == "green" and world.state.step == 0 and not world.state.gate_wait


def test_a_history_the_upgraded_rbac_refuses_never_keeps_a_failing_canary_serving() -> None:
    """An upgrade's ClusterRole (or a Role edited mid-rollout) no longer
    lets the controller patch ConfigMaps, or the history was made
    `immutable: true`: its write is refused (403/422) at every try. A
    rollback writes its record before its traffic moves, so before, the
    failing canary kept its 25 % for good (ReconcileFailed every cycle).
    Traffic moves first now, the status says so, and a new leader (the
    next pod of that upgrade) does not give the canary its traffic back."""
    shell = _Shell(verdict=Verdict.FAIL)
    shell.kube.refusing = None
    shell.kube.forbidden = "/configmaps/web-canary-history"
    r2 = _revision(shell, "green")
    for _ in range(8):
        if shell.checks.asked is None and shell.status().get("canary"):
            shell.ask_now()
        shell.cycle()
    assert shell.failures and all(getattr(f, "status", 0) == 403 for f in shell.failures)
    assert shell.service()["spec"]["selector"].get(TWIN_LABEL) == "blue"
    assert _replicas(shell, "green") == 0
    status = shell.status()
    assert not status.get("canary") and status["failed_revision"] == r2, status
    shell.reconciler = Reconciler(Edges(kube=shell.kube, prometheus=None), shell.caches)  # type: ignore[arg-type]
    shell.reconciler.checks = shell.checks  # type: ignore[assignment]
    for _ in range(4):
        shell.cycle()
    assert shell.service()["spec"]["selector"].get(TWIN_LABEL) == "blue"
    assert _replicas(shell, "green") == 0


def _replicas(shell: _Shell, color: str) -> int:
    twin = shell.informers[1].get("ns", f"web-{color}")
    return int(twin["spec"]["replicas"]) if twin else 0


def test_a_new_leader_whose_cache_lags_never_writes_an_older_history_over_a_newer() -> None:
    """A rolling upgrade hands the Lease over in about a second; the new
    leader's ConfigMap watch may not have brought the last history write of
    the old one yet (or a second install writes it too). Its history write
    is the whole record, and carried no precondition: the API server took
    it over the newer one, and what the old leader recorded was gone. Now
    it carries the resourceVersion it was read at: a 409, and the retry
    writes over the history as it is."""
    shell = _Shell(verdict=Verdict.FAIL)
    shell.kube.refusing = None
    r2 = _revision(shell, "green")
    server = shell.informers[3]  # what the API server holds
    stale = copy.deepcopy(server.get("ns", "web-canary-history"))
    stale["metadata"]["resourceVersion"] = "1"
    newer = copy.deepcopy(stale)
    records = history.add_event(
        history.load(newer), r2, 1.0, "StepAdvanced", "recorded by the previous leader"
    )
    newer["data"], newer["metadata"]["resourceVersion"] = history.dump(records), "2"
    server.remember(newer)
    lagging = _Informer(stale)
    shell.caches = replace(shell.caches, configmaps=lagging)  # type: ignore[arg-type]
    shell.reconciler.caches = shell.caches
    patch = shell.kube.patch

    async def checked(path: str, body: JSON, *args: Any, **kwargs: Any) -> JSON:
        if "/configmaps/" in path:
            sent = (body.get("metadata") or {}).get("resourceVersion")
            held = server.get("ns", path.rsplit("/", 1)[-1])
            if sent is not None and sent != held["metadata"]["resourceVersion"]:
                raise Conflict(409, "Conflict", "the object has been modified")
            body = {
                **body,
                "metadata": {
                    k: v for k, v in (body.get("metadata") or {}).items() if k != "resourceVersion"
                },
            }
        return await patch(path, body, *args, **kwargs)

    shell.kube.patch = checked  # type: ignore[method-assign]
    for i in range(8):
        if i == 4:  # the watch catches up, after the rollback was decided
            lagging.remember(copy.deepcopy(server.get("ns", "web-canary-history")))
        if shell.checks.asked is None and shell.status().get("canary"):
            shell.ask_now()
        shell.cycle()
    entry = [r for r in history.load(server.get("ns", "web-canary-history")) if r["revision"] == r2]
    assert entry[-1]["outcome"] == "rolled-back", entry
    told = [a["message"] for a in entry[-1]["actions"]]
    assert "recorded by the previous leader" in told, told
