"""A Service with `spec.publishNotReadyAddresses: true` (headless Services,
apps that find their peers through DNS): its EndpointSlices list every pod
with an IP as `ready`, one that is not ready or is being deleted too; the
pod's own readiness is the `serving` condition. Found by review; each test
failed before the fix: the controller counted `ready`, so every pod of
such a Service was a ready endpoint."""

from __future__ import annotations

from dataclasses import replace

from analysis.verdicts import Verdict
from canary.decide import decide
from canary.model import JSON, Checked, Color, Emit, Observed, SetSelector
from canary.observe import observe, pod_serves, ready_endpoints, slim_pod, twin_pods
from canary.spec import TWIN_LABEL
from canary.twins import twin_name
from tests.unit.objects import source_deployment
from tests.unit.world import World, result, spec

ONE_STEP = spec(steps="25")
STRICT = spec(steps="25", failure_limit="0")  # the first confirmed failure rolls back

# What the EndpointSlice controller writes for a pod behind such a Service.
READY = {"ready": True, "serving": True, "terminating": False}
NOT_READY = {"ready": True, "serving": False, "terminating": False}
DELETING = {"ready": True, "serving": True, "terminating": True}


def _slice(conditions: dict[str, JSON]) -> JSON:
    return {
        "endpoints": [
            {"targetRef": {"kind": "Pod", "name": pod}, "conditions": c}
            for pod, c in conditions.items()
        ]
    }


def _pods(color: Color, count: int, conditions: JSON) -> dict[str, JSON]:
    return {f"{twin_name('web', color)}-5d4f-{i}": conditions for i in range(count)}


def _seen_through(observed: Observed, *slices: JSON) -> Observed:
    """`observed` with the endpoint counts observe() reads from these slices."""
    live = ready_endpoints(slices)
    twins = {
        c: replace(t, endpoints=len(twin_pods(live, "web", c))) for c, t in observed.twins.items()
    }
    return replace(observed, twins=twins, endpoints=len(live))


def test_a_pod_that_is_not_ready_or_is_being_deleted_is_no_ready_endpoint() -> None:
    listed = _slice(
        {
            "web-blue-5d4f-a": READY,
            "web-blue-5d4f-b": NOT_READY,  # publishNotReadyAddresses
            "web-blue-5d4f-c": DELETING,  # publishNotReadyAddresses keeps `ready`
            "web-blue-5d4f-d": {"ready": False, "serving": True, "terminating": True},
            "web-blue-5d4f-e": {"ready": True},  # an API server that sets no `serving`
            "web-blue-5d4f-f": {"ready": False},
            "web-blue-5d4f-g": {},  # nil conditions: "interpret as ready"
        }
    )
    assert ready_endpoints([listed]) == ["web-blue-5d4f-a", "web-blue-5d4f-e", "web-blue-5d4f-g"]


def test_another_workloads_pods_that_are_not_ready_are_still_foreign() -> None:
    # kube-proxy sends them requests (it routes by `ready`): adoption, which
    # narrows the selector to one twin, would take them out of the Service,
    # and, not ready yet, they would never be seen once they are. (These
    # were foreign before the fix too; the Service's one ready endpoint was 3.)
    service = {
        "metadata": {"name": "web", "namespace": "ns", "annotations": {}},
        "spec": {"selector": {"app": "web"}, "publishNotReadyAddresses": True},
    }
    objects = {("Deployment", "web"): source_deployment(rolled_out=True)}
    listed = _slice(
        {
            "web-6fbbcc66fb-7gchx": READY,
            "web-eu-7c9f4d5b6-ll8fp": NOT_READY,
            "web-eu-7c9f4d5b6-qx2zt": DELETING,
        }
    )

    def lookup(kind: str, name: str) -> JSON | None:
        return objects.get((kind, name))

    observed, _ = observe(service, "web", lookup, lambda n: [listed], lookup, "web-preview")
    assert observed.foreign_pods == ("web-eu-7c9f4d5b6-ll8fp", "web-eu-7c9f4d5b6-qx2zt")
    assert observed.endpoints == 1


def test_a_promotion_does_not_flip_onto_pods_that_are_not_ready() -> None:
    # The flip waits for every new pod to be a ready endpoint as well as
    # counted in the Deployment's readyReplicas: a pod that just turned
    # unready changes its EndpointSlice first (the event that wakes this
    # cycle) and the Deployment's status a controller hop later. Behind such
    # a Service that second guard was void: it flipped, and the old twin went
    # to 0 after the scale-down delay.
    world = World().adopted(ONE_STEP)
    world.source = replace(world.source, revision="r2")
    world.settle(ONE_STEP)
    world.step(ONE_STEP, result(Verdict.PASS), advance=10)
    assert world.state.promoting, world.state
    blue = _pods("blue", 3, READY)
    healthy = _seen_through(world.observed(), _slice({**blue, **_pods("green", 3, READY)}))
    flip = SetSelector({"app": "web", TWIN_LABEL: "green"})
    assert flip in decide(ONE_STEP, world.state, healthy, None, world.now + 1).actions
    unready = _seen_through(world.observed(), _slice({**blue, **_pods("green", 3, NOT_READY)}))
    plan = decide(ONE_STEP, world.state, unready, None, world.now + 1)
    assert flip not in plan.actions, plan.actions
    assert plan.state.promoting and plan.state.stable == "blue"
    assert "promoting: 3/3 pods ready, 0/3 endpoints" in plan.state.message, plan.state.message


def _pod(name: str, ready: str, **meta: str) -> JSON:
    return {
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": "7", **meta},
        "spec": {"containers": [{"name": "app", "image": "registry.example/web:v2"}]},
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "ContainersReady", "status": ready},
                {"type": "Ready", "status": ready},
            ],
        },
    }


def _observed_with(pods: dict[str, JSON] | None, listed: JSON) -> Observed:
    """observe() over one slice, with the twins' pods cache (None: not
    trusted, as while its watch fails)."""
    service = {
        "metadata": {"name": "web", "namespace": "ns", "annotations": {}},
        "spec": {"selector": {"app": "web"}},
    }
    objects = {("Deployment", "web"): source_deployment(rolled_out=True)}

    def lookup(kind: str, name: str) -> JSON | None:
        return objects.get((kind, name))

    pod_of = None if pods is None else pods.get
    observed, _ = observe(service, "web", lookup, lambda n: [listed], lookup, "", pod_of)
    return observed


def test_a_pod_that_says_it_is_not_ready_vetoes_its_endpoint() -> None:
    # After kube-controller-manager was frozen, its EndpointSlice controller
    # wrote a slice from its stale cache of pods: the pod the kubelet had
    # just marked not ready was `serving` again, and its Deployment's
    # readyReplicas said 1/1 too. The flip went onto it and the old twin was
    # scaled to 0 (tests/integration/test_publish_not_ready.py, ~1 run in
    # 18). The pod's own Ready condition vetoes such an endpoint.
    blue, green = _pods("blue", 3, READY), _pods("green", 3, READY)
    listed = _slice({**blue, **green, "web-6fbbcc66fb-7gchx": READY})  # and the team's own
    unready, deleting, fine = sorted(green)
    pods = {name: slim_pod(_pod(name, "True")) for name in [*blue, fine]}
    pods[unready] = slim_pod(_pod(unready, "False"))
    pods[deleting] = slim_pod(_pod(deleting, "True", deletionTimestamp="2026-11-30T21:00:00Z"))
    observed = _observed_with(pods, listed)
    assert observed.twin("green").endpoints == 1
    assert observed.twin("blue").endpoints == 3 and observed.endpoints == 5  # not its own pods
    pods[unready] = slim_pod(_pod(unready, "True"))
    assert _observed_with(pods, listed).twin("green").endpoints == 2


def test_a_twin_pod_gone_from_the_cache_is_not_counted_again() -> None:
    # (Found by review.) The same stale slice still lists a pod that has
    # been deleted: while it terminates its deletionTimestamp vetoes it;
    # once it is gone from the cache (which holds every twin's pod), it
    # must not count again.
    green = _pods("green", 1, READY)
    listed = _slice({**_pods("blue", 1, READY), **green})
    (gone,) = green
    pods = {gone: slim_pod(_pod(gone, "True", deletionTimestamp="2026-11-30T21:00:00Z"))}
    assert _observed_with(pods, listed).twin("green").endpoints == 0
    del pods[gone]
    assert _observed_with(pods, listed).twin("green").endpoints == 0
    # A twin-like name of another Deployment (web-blue-x) is not a twin's pod.
    other = _slice({"web-blue-x-5d4f-a": READY})
    assert _observed_with({}, other).endpoints == 1


def test_without_a_pods_cache_to_trust_the_slices_count_alone() -> None:
    listed = _slice(_pods("green", 2, READY))
    assert _observed_with(None, listed).twin("green").endpoints == 2
    assert _observed_with({}, listed).twin("green").endpoints == 0


def test_the_pod_cache_holds_a_pods_name_and_readiness_only() -> None:
    slim = slim_pod(_pod("web-green-5d4f-a", "True", uid="u1"))
    assert slim == {
        "metadata": {"name": "web-green-5d4f-a", "namespace": "ns", "resourceVersion": "7"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    assert pod_serves(slim) is True
    assert pod_serves(slim_pod({"metadata": {"name": "p"}})) is False  # no condition yet
    assert pod_serves(None) is False


def test_a_rollback_does_not_move_traffic_onto_a_stable_twin_whose_pods_are_being_deleted() -> None:
    # A drain deletes every stable pod while the canary serves its step:
    # such a Service lists them `ready` until they are gone, and the
    # Deployment's readyReplicas counts them until its status catches up.
    # Moved there, the Service was left with pods on their way out.
    world = World().adopted(STRICT)
    world.source = replace(world.source, revision="r2")
    world.settle(STRICT)
    assert world.state.canary == "green" and world.state.step_ready, world.state
    world.step(STRICT, result(Verdict.FAIL), advance=10)
    listed = _slice({**_pods("blue", 3, DELETING), **_pods("green", 1, READY)})
    observed = _seen_through(world.observed(), listed)
    confirmed = Checked("fast", result(Verdict.FAIL), world.now + 1)
    plan = decide(STRICT, world.state, observed, confirmed, world.now + 1)
    assert plan.state.canary is None, plan.state  # rolled back
    assert SetSelector({"app": "web", TWIN_LABEL: "blue"}) not in plan.actions, plan.actions
    [rolled_back] = [a for a in plan.actions if isinstance(a, Emit) and a.reason == "RolledBack"]
    assert "has no ready pod" in rolled_back.message, rolled_back


def test_a_stable_twin_whose_pods_are_not_ready_is_degraded() -> None:
    # Before: "Healthy" for as long as no stable pod was ready, and no
    # Degraded Event: its pods were all listed `ready`.
    world = World().adopted(ONE_STEP)
    world.pending = {"blue"}  # readyReplicas 0: the pods are up, not ready
    observed = _seen_through(world.observed(), _slice(_pods("blue", 3, NOT_READY)))
    plan = decide(ONE_STEP, world.state, observed, None, world.now + 1)
    assert "0/3 pods of the blue twin (stable) ready" in plan.state.degraded, plan.state
    assert "the Service has no ready endpoint" in plan.state.degraded
    assert "Degraded" in [a.reason for a in plan.actions if isinstance(a, Emit)]


def test_a_preview_service_of_the_teams_own_counts_only_ready_pods() -> None:
    # `canary.io/preview-service` may name a Service the team made, which
    # may publish not-ready addresses: the blue-green step and its flip
    # count the preview's endpoints as the canary strategy counts the
    # Service's.
    service = {
        "metadata": {"name": "web", "namespace": "ns", "annotations": {}},
        "spec": {"selector": {"app": "web", TWIN_LABEL: "blue"}},
    }
    preview = {
        "metadata": {"name": "web-preview"},
        "spec": {"selector": {"app": "web", TWIN_LABEL: "green"}, "publishNotReadyAddresses": True},
    }
    objects = {("Deployment", "web"): source_deployment(), ("Service", "web-preview"): preview}
    slices = {
        "web": [_slice(_pods("blue", 2, READY))],
        "web-preview": [
            _slice({"web-green-5d4f-a": READY, "web-green-5d4f-b": NOT_READY}),
            _slice({"web-green-5d4f-c": NOT_READY}),
        ],
    }

    def lookup(kind: str, name: str) -> JSON | None:
        return objects.get((kind, name))

    observed, _ = observe(
        service, "web", lookup, lambda n: slices.get(n, []), lookup, "web-preview"
    )
    assert observed.preview_endpoints == 1, observed.preview_endpoints
