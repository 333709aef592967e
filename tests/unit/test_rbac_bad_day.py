"""Each API call the controller makes, against what the ClusterRole it
ships (manifests/base/rbac.yaml) grants: a call outside it is a 403 on
every cluster installed as documented. Each test failed before its fix."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator

import pytest

from analysis.verdicts import Verdict
from canary import controller as controller_module
from canary.act import Actor, Target
from canary.controller import Controller
from canary.kube import ApiError
from canary.kube.resources import CONFIGMAPS, PODS, SERVICES
from canary.kube.watch import Informer, Informers
from canary.model import JSON
from canary.observe import slim_pod
from canary.reconcile import Caches, Edges, Outcome, Reconciler
from canary.spec import CLAIM_REPLICAS, TWIN_LABEL
from canary.writeguard import WriteGuard
from tests.unit.granted import RBAC, GrantedKube, granted
from tests.unit.test_config_bad_day import _Informer
from tests.unit.test_events_refused import _Shell
from tests.unit.test_not_ready_why import _Quiet
from tests.unit.test_publish_not_ready import _pod
from tests.unit.test_source_writes_refused import _refusing_source


def record_reconciles(controller: Controller) -> list[tuple[str, str]]:
    """The Services the controller reconciles, in order; none is decided."""
    reconciled: list[tuple[str, str]] = []

    async def reconcile(namespace: str, name: str) -> Outcome:
        reconciled.append((namespace, name))
        return Outcome(None)

    controller.reconciler.reconcile = reconcile  # type: ignore[method-assign]
    return reconciled


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


class _OneNamespaceRefused:
    """`--namespace shop,pay`: the controller's RoleBinding exists in shop
    but not (yet) in pay, so every list and watch in pay is a 403."""

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}
        self.bound = False  # the RoleBinding in pay is made

    async def get(self, path: str, **_: object) -> JSON:
        if "/namespaces/pay/" in path and not self.bound:
            raise ApiError(403, "Forbidden", f"{path} is forbidden: no RoleBinding in pay")
        namespace = "shop" if "/namespaces/shop/" in path else "pay"
        meta = {"name": "web", "namespace": namespace, "uid": namespace, "resourceVersion": "1"}
        service = {
            "metadata": {**meta, "annotations": {"canary.io/strategy": "canary"}},
            "spec": {"selector": {"app": "web"}},
        }
        items = [service] if path.endswith("/services") else []
        return {"items": items, "metadata": {"resourceVersion": "1"}}

    async def watch(self, path: str, *_: object, **__: object) -> AsyncIterator[JSON]:
        if "/namespaces/pay/" in path and not self.bound:
            raise ApiError(403, "Forbidden", f"{path} is forbidden: no RoleBinding in pay")
        await asyncio.sleep(3600)
        yield {}


async def test_a_namespace_refused_at_start_does_not_stop_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: the controller waited for every cache of every namespace
    before its first decision (and before it took the Lease), so one
    namespace the controller may not list held back every other one, for
    good: no rollback, promotion or put-back anywhere, while /readyz said
    only "not synced". Now a namespace whose lists have failed for a while
    (and never listed) waits alone: the others are served, and it is taken
    in once it lists."""
    monkeypatch.setattr(controller_module, "UNLISTED_S", 0.3)
    kube = _OneNamespaceRefused()
    controller = Controller(
        Edges(kube=kube, prometheus=None),  # type: ignore[arg-type]
        namespaces=("shop", "pay"),
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
        # Nothing in pay is decided on caches that never listed it.
        controller.enqueue(("pay", "api"))
        await asyncio.sleep(0.05)
        assert ("pay", "api") not in reconciled
        assert not controller.ready()  # /readyz still says a cache is not listed
        kube.bound = True  # then pay's Services are taken in as soon as it lists
        for _ in range(1000):
            if ("pay", "web") in reconciled:
                break
            await asyncio.sleep(0.01)
        assert ("pay", "web") in reconciled
        assert controller.ready()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


QUOTA = (
    'horizontalpodautoscalers.autoscaling "web-blue" is forbidden: exceeded quota: objects, '
    "requested: count/horizontalpodautoscalers.autoscaling=1, "
    "used: count/horizontalpodautoscalers.autoscaling=1, "
    "limited: count/horizontalpodautoscalers.autoscaling=1"
)


def _team_hpa() -> JSON:
    return {
        "metadata": {"name": "web", "namespace": "ns", "uid": "h-1", "resourceVersion": "1"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 3,
            "maxReplicas": 6,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
        },
    }


def _copy_refused(shell: _Shell, status: int, message: str) -> list[str]:
    """The team's HPA on its Deployment, and every write of our copy refused."""
    shell.caches.hpas = _Informer(_team_hpa())  # type: ignore[assignment]
    create = shell.kube.create
    tried: list[str] = []

    async def refusing(path: str, body: JSON, **kwargs: object) -> JSON:
        if path.endswith("/horizontalpodautoscalers"):
            tried.append(str(body["metadata"]["name"]))
            raise ApiError(status, "Forbidden", message)
        return await create(path, body, **kwargs)

    shell.kube.create = refusing  # type: ignore[method-assign]
    return tried


def test_a_step_that_passes_advances_while_the_hpa_copy_is_refused() -> None:
    """The stable twin's copy of the team's HPA refused for good: a quota on
    the count of HPAs in the namespace (403, the team's own HPA uses it), a
    policy (422), the ClusterRole of a release before HPAs (403). The copy
    is what the decision can best do without: the twins then keep a fixed
    size (as for an HPA that cannot be followed). Before, it was the last
    write of every cycle and cut each one: the status and the history
    after it were never written, so a step that passed scaled the canary
    up to its next weight and the retry, deciding from the step before,
    judged and advanced it again from there, for good (the status read
    the first step, 25 %, while the canary ran the pods of 50 %)."""
    for status, message in ((403, QUOTA), (422, "denied by policy require-hpa-owner")):
        shell = _Shell()
        shell.kube.refusing = None
        tried = _copy_refused(shell, status, message)
        shell.ask_now()
        for _ in range(6):
            shell.cycle()
            if shell.status()["step"] == 1:
                break
            if shell.checks.asked is None:
                shell.ask_now()
        assert tried  # asked for, and refused
        state = shell.status()
        assert state["step"] == 1 and state["requested_weight"] == 50, state
        green = shell.informers[1].get("ns", "web-green")
        assert green["spec"]["replicas"] == 3  # 50 % beside the stable 3, as the status says
        assert any(getattr(f, "status", 0) == status for f in shell.failures)  # told
        # Nothing says a copy follows the HPA, neither an Event nor the history.
        reasons = [a["reason"] for r in shell.records() for a in r.get("actions", [])]
        assert "AutoscalerFollowed" not in shell.kube.events + reasons


COUNT_QUOTA = (
    'configmaps "web-canary-history-corrupt-20261201" is forbidden: exceeded quota: objects, '
    "requested: count/configmaps=1, used: count/configmaps=20, limited: count/configmaps=20"
)


def _rolls_back(shell: _Shell) -> None:
    for _ in range(8):
        if shell.checks.asked is None and shell.status().get("canary"):
            shell.ask_now()
        shell.cycle()
    assert shell.service()["spec"]["selector"].get(TWIN_LABEL) == "blue"
    green = shell.informers[1].get("ns", "web-green")
    assert green["spec"]["replicas"] == 0


def test_a_failing_canary_is_rolled_back_when_its_corrupt_history_cannot_be_kept_aside() -> None:
    """The history edited by hand into something that is not JSON, in a
    namespace whose ConfigMap count quota is full (or a policy refusing
    our ConfigMaps): the copy aside is refused, and it ran first in every
    cycle, before any action. Like every history write it is best effort:
    the history is left as it is (never overwritten: it is not written at
    all while it cannot be kept aside) and the decision goes ahead.
    Before, a canary judged failing kept its traffic for as long as the
    quota was full."""
    shell = _Shell(verdict=Verdict.FAIL)
    shell.kube.refusing = None
    configmap = copy.deepcopy(shell.informers[3].get("ns", "web-canary-history"))
    configmap["data"] = {"history.json": "[{not json"}
    shell.informers[3].remember(configmap)
    create = shell.kube.create

    async def refusing(path: str, body: JSON, **kwargs: object) -> JSON:
        if path.endswith("/configmaps"):
            raise ApiError(403, "Forbidden", COUNT_QUOTA)
        return await create(path, body, **kwargs)

    shell.kube.create = refusing  # type: ignore[method-assign]
    _rolls_back(shell)
    assert shell.status()["phase"] == "RolledBack", shell.status()
    # Left as it was, not overwritten with a new history.
    left = shell.informers[3].get("ns", "web-canary-history")
    assert left["data"] == {"history.json": "[{not json"}
    assert any(getattr(f, "status", 0) == 403 for f in shell.failures)  # told


def test_a_failing_canary_is_rolled_back_when_taking_over_its_history_is_refused() -> None:
    """The Service recreated (its history owned by the old one) and the
    takeover's patch refused (a policy on ConfigMaps, 422): it ran first
    in every cycle, before any action. Now best effort, as the history
    is: the rollback goes ahead."""
    shell = _Shell(verdict=Verdict.FAIL)
    shell.kube.refusing = None
    service = copy.deepcopy(shell.service())
    service["metadata"].update(uid="s-2", resourceVersion="100")
    shell.informers[0].remember(service)

    async def get(path: str, **_: object) -> JSON:
        return {"items": [shell.service()] if path.endswith("/services") else []}

    shell.kube.get = get  # type: ignore[method-assign]
    patch = shell.kube.patch

    async def refusing(path: str, body: JSON, *args: object, **kwargs: object) -> JSON:
        if "/configmaps/" in path and "ownerReferences" in (body.get("metadata") or {}):
            raise ApiError(422, "Invalid", "denied by policy: configmaps are immutable here")
        return await patch(path, body, *args, **kwargs)

    shell.kube.patch = refusing  # type: ignore[method-assign]
    _rolls_back(shell)
    assert any(getattr(f, "status", 0) == 422 for f in shell.failures)  # told


def test_a_step_that_passes_advances_while_the_claim_on_the_team_deployment_is_refused() -> None:
    """A validating policy the team's Deployment violates on any update
    (Kyverno, Gatekeeper, a ValidatingAdmissionPolicy added after it was
    created), or a webhook on Deployments that is down: keeping it at 0 is
    let pass (On a bad day), and so now is updating our claim on it (the
    size and stable revision a hand-back reads, written again after every
    promotion and, autoscaled, at every step). Before, the claim was the
    last write of the cycle and cut each one before its status: once the
    claim was behind (the first promotion under the policy), a step that
    passed scaled the canary to its next weight while the status stayed at
    the step before, and each retry judged and advanced it again from
    there, for good."""
    for status in (422, 500):
        shell = _Shell()
        shell.kube.refusing = None
        source = copy.deepcopy(shell.informers[1].get("ns", "web"))
        source["metadata"]["annotations"][CLAIM_REPLICAS] = "2"  # behind: its update refused
        shell.informers[1].remember(source)
        _refusing_source(shell, status)
        shell.ask_now()
        for _ in range(6):
            shell.cycle()
            if shell.status()["step"] == 1:
                break
            if shell.checks.asked is None:
                shell.ask_now()
        state = shell.status()
        assert state["step"] == 1 and state["requested_weight"] == 50, state
        green = shell.informers[1].get("ns", "web-green")
        assert green["spec"]["replicas"] == 3
        assert any(getattr(f, "status", 0) == status for f in shell.failures)  # told


class _NoSecrets(_OneNamespaceRefused):
    """The ClusterRole with its Secrets rule dropped, as its comment and the
    README said a policy forbidding Secret reads could do."""

    def __init__(self) -> None:
        super().__init__()
        self.bound = True

    async def get(self, path: str, **query: object) -> JSON:
        if path.endswith("/secrets"):
            raise ApiError(403, "Forbidden", 'cannot list resource "secrets"')
        return await super().get(path, **query)

    async def watch(self, path: str, *args: object, **kwargs: object) -> AsyncIterator[JSON]:
        if path.endswith("/secrets"):
            raise ApiError(403, "Forbidden", 'cannot watch resource "secrets"')
        async for event in super().watch(path, *args, **kwargs):
            yield event


async def test_without_the_secrets_rule_nothing_is_decided_and_the_log_says_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The docs offered to drop the Secrets rule ("Secret references then
    do not take part in revisions"): the controller cannot do that. Every
    revision reads the Secrets its template references (a rollback brings
    the old one back), so without them no Service is decided; the docs now
    say the rule is needed, and the log names the caches never listed and
    the rule to grant. Before the fix above, it never even led."""
    monkeypatch.setattr(controller_module, "UNLISTED_S", 0.3)
    controller = Controller(Edges(kube=_NoSecrets(), prometheus=None))  # type: ignore[arg-type]
    reconciled = record_reconciles(controller)
    running = asyncio.create_task(controller.run())
    try:
        await asyncio.wait_for(controller.synced.wait(), 5)
        await asyncio.sleep(0.1)
        assert reconciled == []
        assert not controller.ready()
        said = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert any("/api/v1/secrets" in m and "list and watch" in m for m in said), said
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    docs = RBAC.read_text() + (RBAC.parents[2] / "README.md").read_text()
    assert "drop the rule" not in docs


def test_a_namespace_whose_pods_are_refused_keeps_the_veto_of_the_others() -> None:
    """`--namespace ns,pay`, the twins' pods refused in pay (its RoleBinding
    made from the release before the pods rule): the slices count alone
    there, as documented, and only there. Before, the pods cache of every
    namespace was set aside with it (it had never listed them all, and one
    of its watches was failing): the kubelet's word no longer vetoed a
    stale EndpointSlice anywhere, and a promotion in ns could flip onto a
    pod kube-controller-manager still listed as serving."""
    pods = Informers(None, PODS, ["ns", "pay"], slim=slim_pod)  # type: ignore[arg-type]
    pods.remember(_pod("web-green-5d4f-a", "False"))
    other = Informer(None, PODS)  # type: ignore[arg-type]
    caches = Caches(other, other, other, other, other, None, pods)
    reconciler = Reconciler(Edges(kube=None, prometheus=None), caches)  # type: ignore[arg-type]
    listed, refused = (pods._by_namespace[n] for n in ("ns", "pay"))
    listed.synced.set()
    refused.failing_since = 0.0  # every list in pay refused, never listed
    pod_of = reconciler._pods("ns")
    assert pod_of is not None and pod_of("web-green-5d4f-a") is not None
    assert reconciler._pods("pay") is None
    listed.failing_since = 0.0  # its own watch failing: set aside too
    assert reconciler._pods("ns") is None


class _WebhookDown:
    """Decisions land; a write they do without (keeping the source down,
    the claim, the HPA copy) meets a validating webhook that is down with
    failurePolicy: Fail, which the API server answers with a 500."""

    def __init__(self) -> None:
        self.told: list[tuple[Exception, bool]] = []

    async def reconcile(self, namespace: str, name: str) -> Outcome:
        down = ApiError(
            500,
            "InternalError",
            'Internal error occurred: failed calling webhook "validate.kyverno.svc-fail": '
            "failed to call webhook: connection refused",
        )
        return Outcome(1.0, refused=(down,))

    async def report_failure(
        self, namespace: str, name: str, exc: Exception, landed: bool = False
    ) -> None:
        self.told.append((exc, landed))


async def test_a_write_let_pass_on_a_webhook_that_is_down_is_told_on_the_service() -> None:
    """On a bad day says such a write (400, 403, 422, 500) is let pass and
    then told (ReconcileFailed names it). A 500 never was: only 400, 403
    and 422 were taken for refusals to tell, so with the webhook down the
    Service said nothing while its source stayed up (or its claim behind)
    for as long as the webhook was down; only the log did."""
    controller = Controller(Edges(kube=_Quiet(), prometheus=None))  # type: ignore[arg-type]
    landed = _WebhookDown()
    controller.reconciler = landed  # type: ignore[assignment]
    for _ in range(3):
        await controller._reconcile_once(("ns", "web"))
    assert landed.told and all(told for _, told in landed.told), landed.told


LB_POLICY = (
    'admission webhook "validation.gatekeeper.sh" denied the request: '
    "[block-loadbalancer] Services of type LoadBalancer are not allowed"
)


def test_a_failing_canary_stops_serving_when_every_write_to_the_service_is_refused() -> None:
    """A policy added after the Service was made, that it violates (a
    Gatekeeper or Kyverno rule against `type: LoadBalancer`, a required
    label), refuses every update of it: the rollback's selector patch (and
    the status) with it. The canary's pods are what serve its share (the
    Service selects both twins), so scaling it to 0 still takes its
    traffic away. Before, the refused selector patch cut the rollback
    first, and the canary judged failing kept its share for as long as the
    policy stood."""
    shell = _Shell(verdict=Verdict.FAIL)
    shell.kube.refusing = None
    patch = shell.kube.patch

    async def refusing(path: str, body: JSON, *args: object, **kwargs: object) -> JSON:
        if "/services/" in path:
            raise ApiError(403, "Forbidden", LB_POLICY)
        return await patch(path, body, *args, **kwargs)

    shell.kube.patch = refusing  # type: ignore[method-assign]
    for _ in range(8):
        if shell.checks.asked is None and shell.status().get("canary"):
            shell.ask_now()
        shell.cycle()
    assert TWIN_LABEL not in shell.service()["spec"]["selector"]  # never written
    green = shell.informers[1].get("ns", "web-green")
    assert green["spec"]["replicas"] == 0
    assert any(getattr(f, "status", 0) == 403 for f in shell.failures)  # told


def test_a_config_copy_put_back_refused_keeps_the_rollouts_own_wake_up() -> None:
    """A config copy a twin reads deleted by hand (a janitor) while the
    namespace's ConfigMap count quota is full: putting it back is refused
    (403) in every cycle. It runs after the decision landed, so it is told
    as a write done without (landed) and the cycle keeps its own wake-up
    (the next look). Before, it failed the cycle after the fact: back at
    the error back-off only (up to 30 s) instead of at the look due, so a
    rollback came up to 30 s late for as long as the quota stayed full,
    and the Warning said the controller changed nothing more there."""
    shell = _Shell()
    shell.kube.refusing = None

    async def refused(*_: object) -> None:
        raise ApiError(403, "Forbidden", COUNT_QUOTA)

    shell.reconciler.copies.restore = refused  # type: ignore[method-assign,assignment]
    shell.ask_now()
    shell._slices()
    outcome = asyncio.run(shell.reconciler.reconcile("ns", "web"))
    assert [e.status for e in outcome.refused] == [403]
    assert outcome.requeue_after is not None


def test_a_status_refused_for_good_keeps_the_rollouts_own_wake_up() -> None:
    """Every update of the Service refused by a policy it violates (above):
    the status cannot be written either. The decision (here a failure seen
    by a look, to be confirmed on the next scrape) is kept in memory, so
    the refusal is told as a write done without and the cycle keeps its
    own wake-up: the next look. Before, the cycle failed after the fact and
    came back at the error back-off only (up to 30 s): each look, and so
    the rollback it leads to, that late for as long as the policy stood."""
    shell = _Shell(verdict=Verdict.FAIL)
    shell.kube.refusing = None
    patch = shell.kube.patch

    async def refusing(path: str, body: JSON, *args: object, **kwargs: object) -> JSON:
        if "/services/" in path:
            raise ApiError(403, "Forbidden", LB_POLICY)
        return await patch(path, body, *args, **kwargs)

    shell.kube.patch = refusing  # type: ignore[method-assign]
    shell.ask_now()
    shell._slices()
    outcome = asyncio.run(shell.reconciler.reconcile("ns", "web"))
    assert [e.status for e in outcome.refused] == [403]
    # A failure suspected, to be confirmed on the next scrape (1 s): kept in
    # memory, and the look that confirms it is due in about a scrape.
    kept = shell.reconciler._unwritten[("ns", "web")].state
    assert kept.suspected == "fail" and kept.canary == "green"
    assert outcome.requeue_after is not None and outcome.requeue_after <= 2, outcome
