"""Keeping the team's Deployment at 0 and gated runs first in every cycle
(decide._keep_source_at_zero). When the API server refuses that write for
good (a validating policy the old Deployment violates on any update, a
webhook that is down with failurePolicy: Fail), the cycle was cut there,
before the rollout's own writes: a canary judged failing kept its traffic
for as long as the refusal lasted. Found by review (suspicion), proven here."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from analysis.verdicts import Verdict
from canary.controller import ERROR_BACKOFF_S, Controller
from canary.kube import ApiError
from canary.model import JSON
from canary.reconcile import Edges, Outcome
from canary.spec import TWIN_LABEL
from tests.unit.test_events_refused import KEY, _Shell
from tests.unit.test_not_ready_why import _Quiet

SOURCE = "/apis/apps/v1/namespaces/ns/deployments/web"
POLICY = (
    'admission webhook "validate.kyverno.svc-fail" denied the request: '
    "resource Deployment/ns/web was blocked due to the following policies: require-team-label"
)


def _refusing_source(shell: _Shell, status: int) -> None:
    """Writes to the team's Deployment itself (not its twins) are refused."""
    patch = shell.kube.patch

    async def refused(path: str, body: JSON, *args: Any, **kwargs: Any) -> JSON:
        if path == SOURCE:
            raise ApiError(status, "Invalid" if status == 422 else "InternalError", POLICY)
        return await patch(path, body, *args, **kwargs)

    shell.kube.patch = refused  # type: ignore[method-assign]


def _scaled_up_by_a_sync(shell: _Shell) -> None:
    """A GitOps sync re-applied the Deployment: 3 replicas, no gate."""
    deployments = shell.informers[1]
    source = copy.deepcopy(deployments.get("ns", "web"))
    source["spec"]["replicas"] = 3
    source["spec"]["template"]["spec"].pop("schedulingGates", None)
    source["metadata"]["resourceVersion"] = "999"
    deployments.remember(source)


def test_a_refused_write_to_the_team_deployment_never_holds_a_failing_canarys_rollback() -> None:
    for status in (422, 500):
        shell = _Shell(verdict=Verdict.FAIL)
        shell.kube.refusing = None
        _scaled_up_by_a_sync(shell)
        _refusing_source(shell, status)
        for _ in range(8):
            if shell.checks.asked is None and shell.status().get("canary"):
                shell.ask_now()
            shell.cycle()
        assert shell.service()["spec"]["selector"].get(TWIN_LABEL) == "blue", status
        state = shell.status()
        assert not state.get("canary") and state["failed_revision"], (status, state)
        # Told all the same: the refusal is raised once the cycle's writes landed.
        assert shell.failures and all(getattr(f, "status", 0) == status for f in shell.failures), (
            shell.failures
        )


class _Landed:
    """A reconciler whose decisions land, a write they can do without
    refused each time (RBAC on the history, a policy on the source)."""

    def __init__(self, requeue: float | None) -> None:
        self.requeue = requeue
        self.told: list[Exception] = []

    async def reconcile(self, namespace: str, name: str) -> Outcome:
        return Outcome(self.requeue, refused=(ApiError(403, "Forbidden", "configmaps"),))

    async def report_failure(
        self, namespace: str, name: str, exc: Exception, landed: bool = False
    ) -> None:
        assert landed  # said as a write done without, not as a cycle that changed nothing
        self.told.append(exc)


def test_a_refusal_the_decision_did_without_keeps_the_rollouts_own_wake_up() -> None:
    """Told as a failure, but back when the rollout wants to be (a look due
    in 1 s): at the back-off alone (up to 30 s), each look, and so a
    rollback, came that late for as long as the refusal lasted."""

    async def run() -> tuple[list[float | None], int]:
        controller = Controller(Edges(kube=_Quiet(), prometheus=None))  # type: ignore[arg-type]
        landed = _Landed(requeue=1.0)
        controller.reconciler = landed  # type: ignore[assignment]
        delays = [await controller._reconcile_once(KEY) for _ in range(8)]
        landed.requeue = None  # nothing due: the back-off
        delays.append(await controller._reconcile_once(KEY))
        return delays, len(landed.told)

    delays, told = asyncio.run(run())
    assert delays[:8] == [0.5] + [1.0] * 7, delays
    assert delays[8] == ERROR_BACKOFF_S[-1], delays
    assert told == 8  # from the second in a row, as any refused write


def test_the_warning_says_the_decisions_go_ahead_without_the_refused_write() -> None:
    shell = _Shell()
    shell.kube.refusing = None
    said: list[str] = []
    create = shell.kube.create

    async def recorded(path: str, body: JSON, **kw: object) -> JSON:
        if path.endswith("/events"):
            said.append(str(body["message"]))
        return await create(path, body, **kw)

    shell.kube.create = recorded  # type: ignore[method-assign]
    refused = ApiError(422, "Invalid", POLICY)
    asyncio.run(shell.reconciler.report_failure(*KEY, refused, landed=True))
    assert len(said) == 1 and "each decision goes ahead without it" in said[0], said
    assert "changes nothing more" not in said[0]
