"""The team deletes the whole namespace (`kubectl delete namespace shop`,
a preview environment torn down by CI), often with a rollout in flight.
While it terminates, the API server refuses every create there (403
Forbidden, "unable to create new content in namespace shop because it is
being terminated") and its objects go in any order; a Service of `type:
LoadBalancer` stays, `deletionTimestamp` set, until its cloud load balancer
is gone (the `service.kubernetes.io/load-balancer-cleanup` finalizer).
Each test failed on the code before its fix."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import generate_latest

from canary.controller import Controller
from canary.kube import ApiError, NotFound, namespace_terminating
from canary.model import JSON
from canary.reconcile import Edges, Outcome
from tests.unit.test_events_refused import KEY, _Cluster, _Shell
from tests.unit.test_not_ready_why import _Quiet

TERMINATING = (
    '{"kind":"Status","apiVersion":"v1","status":"Failure","message":"configmaps '
    '\\"web-canary-history\\" is forbidden: unable to create new content in namespace ns '
    'because it is being terminated","reason":"Forbidden","details":{"name":"web-canary-'
    'history","kind":"configmaps","causes":[{"reason":"NamespaceTerminating","message":'
    '"namespace ns is being terminated","field":"metadata.namespace"}]},"code":403}'
)


class _Terminating(_Cluster):
    """The namespace being deleted: every create refused, as the
    NamespaceLifecycle admission plugin refuses it; a write to an object
    already gone is a 404."""

    def __init__(self, informers: list[Any]) -> None:
        super().__init__(informers)
        self.refusing = None
        self.creates: list[str] = []

    async def create(self, path: str, body: JSON, **_: object) -> JSON:
        self.creates.append(path)
        raise ApiError(403, "Forbidden", TERMINATING)

    async def patch(self, path: str, body: JSON, *args: object, **kwargs: object) -> JSON:
        if self._informer(path).get("ns", path.rsplit("/", 1)[-1]) is None:
            raise NotFound(404, "NotFound", path)
        return await super().patch(path, body, *args, **kwargs)


def _terminating() -> tuple[_Shell, _Terminating]:
    shell = _Shell()
    kube = _Terminating(shell.informers)
    shell.kube = kube
    shell.reconciler.kube = kube  # type: ignore[assignment]
    shell.reconciler.edges.kube = kube  # type: ignore[assignment]
    return shell, kube


def _outcomes(shell: _Shell) -> dict[str, float]:
    return {
        line.split('outcome="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in generate_latest(shell.reconciler.metrics.registry).decode().splitlines()
        if line.startswith("canary_rollouts_total{")
    }


def test_a_load_balancer_service_left_by_a_namespace_deletion_is_not_rolled_out() -> None:
    """The namespace is deleted mid-rollout: the twins, the team's
    Deployment and the history go at once, the Service (a LoadBalancer)
    stays a while, being deleted. Before, it was decided on as a live
    Service: the rollout cancelled (`superseded` counted), `RolledBack`,
    `SourceMissing` and `Degraded` told and notified, and at every cycle the
    history created again, refused (403), each refusal a failed reconcile
    (ReconcileFailed counted from the second: CanaryReconcileFailing paged)
    until the load balancer was gone. A Service being deleted is as good
    as gone, as a twin or the team's Deployment being deleted is: nothing
    is left to hand back, so nothing is written and nothing is kept."""
    shell, kube = _terminating()
    service = shell.service()
    service["metadata"].update(
        deletionTimestamp="2026-12-02T00:20:00Z",
        finalizers=["service.kubernetes.io/load-balancer-cleanup"],
    )
    shell.informers[3].forget("ns", "web-canary-history")
    for deployment in list(shell.informers[1].items()):
        shell.informers[1].forget("ns", deployment["metadata"]["name"])
    for _ in range(3):
        shell.cycle()
    assert not shell.failures, shell.failures
    assert kube.creates == [], kube.creates
    assert not any(_outcomes(shell).values()), _outcomes(shell)
    assert KEY not in shell.reconciler._volatile and KEY not in shell.reconciler._carrying


class _Going:
    """A reconciler over a namespace being deleted: its cycles meet the
    NamespaceLifecycle refusal, as a failure (a twin made again, a config
    copy put back) or as a write the decision did without (the history)."""

    def __init__(self, landed: bool) -> None:
        self.landed = landed
        self.told: list[Exception] = []

    async def reconcile(self, namespace: str, name: str) -> Outcome:
        refusal = ApiError(403, "Forbidden", TERMINATING)
        if not self.landed:
            raise refusal
        return Outcome(None, refused=(refusal,))

    async def report_failure(self, namespace: str, name: str, exc: Exception, *_: Any) -> None:
        self.told.append(exc)


@pytest.mark.parametrize("landed", [False, True], ids=["cut", "landed"])
def test_a_namespace_being_deleted_pages_nobody(landed: bool) -> None:
    """`kubectl delete namespace shop` mid-rollout: its ConfigMaps go before
    its Service (the namespace's objects go in any order), and the cycles
    the deletion's own events wake create the history or a config copy
    again, each refused because the namespace is being terminated. Before,
    from the second in a row a `ReconcileFailed` Warning was counted (and
    dropped: Events are refused there too), and CanaryReconcileFailing
    paged on-call for a namespace the team deleted on purpose. Nothing can
    be made there any more and nothing serves from it: it is logged, and
    retried with the back-off until its objects are gone, not told."""

    assert _told_in_four_cycles(_Going(landed)) == 0


def test_a_create_refused_otherwise_is_still_told() -> None:
    """Only the namespace's termination: a 403 of RBAC or a quota is still
    told from the second refusal in a row."""

    class _Refused(_Going):
        async def reconcile(self, namespace: str, name: str) -> Outcome:
            raise ApiError(403, "Forbidden", 'configmaps "web-canary-history" is forbidden')

    assert _told_in_four_cycles(_Refused(False)) == 3


@pytest.mark.parametrize("landed", [False, True], ids=["cut", "landed"])
def test_a_namespace_being_deleted_counts_no_api_error(landed: bool) -> None:
    """The same refusals are not Kubernetes API errors to alert on either:
    CanaryAPIErrors pages on more than 5 of one status in 10 minutes, and
    a namespace of a few managed Services, deleted on purpose, makes that
    many in its first seconds (every deletion event of its Deployments and
    ConfigMaps wakes another refused cycle). Before, each was counted in
    canary_api_errors_total{status="403"}, and on-call was paged for it as
    for an RBAC change. An RBAC 403 still counts, each one."""

    class _Refused(_Going):
        async def reconcile(self, namespace: str, name: str) -> Outcome:
            raise ApiError(403, "Forbidden", 'configmaps "web-canary-history" is forbidden')

    assert _api_errors_in_four_cycles(_Going(landed)) == 0
    assert _api_errors_in_four_cycles(_Refused(False)) == 4


def _told_in_four_cycles(reconciler: _Going) -> int:
    """Failures told (ReconcileFailed) over four cycles of one Service whose
    every reconcile meets `reconciler`'s refusal."""
    return len(_four_cycles(reconciler)[0].told)


def _api_errors_in_four_cycles(reconciler: _Going) -> float:
    """canary_api_errors_total{status="403"} after four such cycles."""
    _, controller = _four_cycles(reconciler)
    return (
        controller.metrics.registry.get_sample_value("canary_api_errors_total", {"status": "403"})
        or 0.0
    )


def _four_cycles(reconciler: _Going) -> tuple[_Going, Controller]:
    async def run() -> Controller:
        controller = Controller(Edges(kube=_Quiet(), prometheus=None))  # type: ignore[arg-type]
        controller.reconciler = reconciler  # type: ignore[assignment]
        for _ in range(4):
            await controller._reconcile_once(KEY)
        return controller

    return reconciler, asyncio.run(run())


def test_the_refusal_is_known_as_the_api_server_answers_it() -> None:
    """As the adapter translates it (the Status' message alone) and as the
    client library hands it over (the whole body); an RBAC 403 is not it."""
    from canary.kube.api import _status_error

    assert namespace_terminating(_status_error(403, TERMINATING))
    assert namespace_terminating(ApiError(403, "Forbidden", TERMINATING))
    rbac = '{"kind":"Status","message":"configmaps is forbidden: User cannot create","code":403}'
    assert not namespace_terminating(_status_error(403, rbac))


def test_a_service_gone_with_its_namespace_leaves_nothing_of_its_refused_history() -> None:
    """The history went first and its creation was refused (the namespace
    being terminated), then everything went. Before, the Service was still
    marked as one whose history is refused (and what a refused write took
    was kept): memory kept for good per preview environment deleted
    mid-rollout, and a Service of that name made again carried up to 64 KB
    in its status, not 16 KB, until its first history write."""
    shell, kube = _terminating()
    shell.informers[3].forget("ns", "web-canary-history")
    shell.ask_now()
    for _ in range(2):
        shell.cycle()
    reconciler = shell.reconciler
    assert kube.creates and KEY in reconciler._history_refused
    shell.informers[0].forget(*KEY)
    for deployment in list(shell.informers[1].items()):
        shell.informers[1].forget("ns", deployment["metadata"]["name"])
    outcome = asyncio.run(reconciler.reconcile(*KEY))
    assert outcome.requeue_after is None and outcome.deployment is None
    assert KEY not in reconciler._history_refused
    assert KEY not in reconciler._into_history


def test_only_a_403_naming_the_namespace_termination_is_it() -> None:
    """The cause alone (a client that keeps the Status' causes in the
    message) is enough; the same words on another status (a 409 of an
    object being deleted, a webhook's 500 quoting it) are not: told, not
    silenced."""
    cause = '{"causes":[{"reason":"NamespaceTerminating"}]}'
    assert namespace_terminating(ApiError(403, "Forbidden", cause))
    words = "unable to create new content in namespace ns because it is being terminated"
    assert not namespace_terminating(ApiError(500, "InternalError", words))
    assert not namespace_terminating(ApiError(409, "Conflict", words))


def test_a_service_gone_forgets_the_corrupt_histories_it_kept_aside() -> None:
    """The marks of histories copied aside go with their Service (one per
    preview environment deleted with a corrupt history, kept for good);
    another Service's stay."""
    shell, _ = _terminating()
    reconciler = shell.reconciler
    other = ("ns", "api", "7")
    reconciler._kept_aside = {(*KEY, "5"), other}
    reconciler._forget_gone(KEY)
    assert reconciler._kept_aside == {other}
