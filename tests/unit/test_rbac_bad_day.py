"""Each API call the controller makes, against what the ClusterRole it
ships (manifests/base/rbac.yaml) grants: a call outside it is a 403 on
every cluster installed as documented. Each test failed before its fix."""

from __future__ import annotations

import asyncio
import copy

from analysis.verdicts import Verdict
from canary.act import Actor, Target
from canary.kube import ApiError
from canary.kube.resources import CONFIGMAPS, SERVICES
from canary.model import JSON
from canary.spec import TWIN_LABEL
from canary.writeguard import WriteGuard
from tests.unit.granted import GrantedKube, granted
from tests.unit.test_events_refused import _Shell


def _actor(kube: GrantedKube, service: JSON) -> Actor:
    return Actor(
        kube,  # type: ignore[arg-type]
        Target("ns", "web", "web", service),
        written=lambda obj: None,
        cached=lambda kind, name: None,
        guard=WriteGuard(),
        progress="",
        now=1000.0,
    )


def test_a_recreated_service_takes_over_its_history_with_the_granted_verbs() -> None:
    """`kubectl replace --force` of a managed Service, or a delete with
    `--cascade=orphan` and an apply: the history left by the old Service is
    taken over after a live read of the Service. That read was a GET, and
    the ClusterRole grants Services list, watch, create and patch, not get:
    403 in every cycle before any write, so the selector the replace reset
    was never put back, nothing was rolled back or promoted, and the
    history went with the garbage collector (a rolled-back release rolled
    out again), or, orphaned, the Service's cycles failed for good."""
    service = {
        "metadata": {"name": "web", "namespace": "ns", "uid": "s-2", "resourceVersion": "7"},
        "spec": {"selector": {"app": "web"}},
    }
    history = {
        "metadata": {
            "name": "web-canary-history",
            "namespace": "ns",
            "resourceVersion": "5",
            "ownerReferences": [],  # orphaned with the old Service
        },
        "data": {},
    }
    kube = GrantedKube(
        (SERVICES.path("ns", "web"), service),
        (CONFIGMAPS.path("ns", "web-canary-history"), history),
    )
    adopted = asyncio.run(_actor(kube, service).adopt_history(history))
    assert adopted is not None
    assert [ref["uid"] for ref in adopted["metadata"]["ownerReferences"]] == ["s-2"]
    assert ("get", "services", "web") not in kube.asked


def test_a_service_being_deleted_is_not_handed_the_history() -> None:
    """The live read still tells a Service going (a finalizer holds it)."""
    service = {
        "metadata": {"name": "web", "namespace": "ns", "uid": "s-2", "resourceVersion": "7"},
    }
    going = {"metadata": {**service["metadata"], "deletionTimestamp": "2026-12-01T00:00:00Z"}}
    history = {"metadata": {"name": "web-canary-history", "namespace": "ns"}, "data": {}}
    kube = GrantedKube(
        (SERVICES.path("ns", "web"), going),
        (CONFIGMAPS.path("ns", "web-canary-history"), history),
    )
    assert asyncio.run(_actor(kube, service).adopt_history(history)) is None
    kube = GrantedKube((CONFIGMAPS.path("ns", "web-canary-history"), history))  # gone
    assert asyncio.run(_actor(kube, service).adopt_history(history)) is None


def test_a_failing_canary_of_a_recreated_service_is_rolled_back_under_the_shipped_role() -> None:
    """The cycle after `kubectl delete svc web --cascade=orphan` and an
    apply of the same manifest (a new uid; our status and keys kept, as an
    apply of a manifest exported mid-rollout keeps them), the canary
    failing its check: the history is taken over, and the rollback goes
    ahead. Before, the Service GET (not granted) failed every cycle first,
    and the failing canary kept its traffic for good."""
    shell = _Shell(verdict=Verdict.FAIL)
    shell.kube.refusing = None
    service = copy.deepcopy(shell.service())
    service["metadata"].update(uid="s-2", resourceVersion="100")
    shell.informers[0].remember(service)
    history = copy.deepcopy(shell.informers[3].get("ns", "web-canary-history"))
    history["metadata"].update(ownerReferences=[], resourceVersion="100")  # orphaned
    shell.informers[3].remember(history)
    rules = granted()

    async def get(path: str, **query: object) -> JSON:
        if "/services" not in path:
            return {"items": []}  # the config copies listed on a rollback
        verb = "list" if path.endswith("/services") else "get"
        if ("", "services", verb) not in rules:
            raise ApiError(403, "Forbidden", f'services is forbidden: cannot {verb} "services"')
        assert query.get("fieldSelector") == "metadata.name=web", query
        return {"items": [shell.service()]}

    shell.kube.get = get  # type: ignore[method-assign]
    for _ in range(6):
        if shell.checks.asked is None and shell.status().get("canary"):
            shell.ask_now()
        shell.cycle()
    assert not [f for f in shell.failures if getattr(f, "status", 0) == 403], shell.failures
    assert shell.service()["spec"]["selector"].get(TWIN_LABEL) == "blue"
    assert shell.informers[1].get("ns", "web-green")["spec"]["replicas"] == 0
    owners = shell.informers[3].get("ns", "web-canary-history")["metadata"]["ownerReferences"]
    assert [o["uid"] for o in owners] == ["s-2"]
