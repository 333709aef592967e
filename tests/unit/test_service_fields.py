"""The Service's own fields as teams set and change them: dual-stack
(`ipFamilyPolicy: RequireDualStack`, one EndpointSlice per address family),
many EndpointSlices per Service, a second EndpointSlice controller, a
selector the team removes. Found by review; each test failed before its fix."""

from __future__ import annotations

from dataclasses import replace

from analysis.verdicts import Verdict
from canary.decide import decide
from canary.model import JSON, Color, Observed, SetSelector, Source
from canary.observe import observe, ready_endpoints, routed_endpoints, routing, twin_pods
from canary.spec import SERVICE_LABEL, TWIN_LABEL, RolloutSpec, SpecError
from canary.twins import twin_name
from tests.unit.objects import source_deployment
from tests.unit.world import World, result, spec

ONE_STEP = spec(steps="25")

READY = {"ready": True, "serving": True, "terminating": False}
NOT_READY = {"ready": False, "serving": False, "terminating": False}


def _slice(family: str, conditions: dict[str, JSON], name: str = "") -> JSON:
    """An EndpointSlice of `family` (IPv4, IPv6) listing these pods."""
    return {
        "metadata": {"name": name or f"web-{family.lower()}"},
        "addressType": family,
        "endpoints": [
            {
                "addresses": [f"{'fd00::' if family == 'IPv6' else '10.0.0.'}{i + 1}"],
                "targetRef": {"kind": "Pod", "name": pod},
                "conditions": c,
            }
            for i, (pod, c) in enumerate(conditions.items())
        ],
        "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
    }


def _dual_stack(conditions: dict[str, JSON]) -> list[JSON]:
    """What the EndpointSlice controller writes for a dual-stack Service:
    every pod once per address family, in a slice of each."""
    return [_slice("IPv4", conditions), _slice("IPv6", conditions)]


def _pods(color: Color, count: int, conditions: JSON, start: int = 0) -> dict[str, JSON]:
    return {f"{twin_name('web', color)}-5d4f-{i}": conditions for i in range(start, count)}


def _seen_through(observed: Observed, slices: list[JSON]) -> Observed:
    """`observed` with the endpoint counts observe() reads from these slices."""
    live = ready_endpoints(slices)
    twins = {
        c: replace(t, endpoints=len(twin_pods(live, "web", c))) for c, t in observed.twins.items()
    }
    return replace(observed, twins=twins, endpoints=len(live))


def test_a_pod_listed_in_both_address_families_is_one_endpoint() -> None:
    # A dual-stack Service has an IPv4 and an IPv6 EndpointSlice, each
    # listing every pod; kube-proxy programs each family from its own slices,
    # so a pod is one endpoint of either. Counted in both, every twin had
    # twice its pods as endpoints. (The same pod also shows in two slices of
    # one family for a moment when the controller rebalances a Service of
    # more than 100 endpoints, or when a second EndpointSlice controller
    # lists it: the API's consumers are told to de-duplicate.)
    service = {
        "metadata": {"name": "web", "namespace": "ns", "annotations": {}},
        "spec": {
            "selector": {"app": "web"},
            "ipFamilyPolicy": "RequireDualStack",
            "ipFamilies": ["IPv4", "IPv6"],
        },
    }
    objects = {("Deployment", "web"): source_deployment(rolled_out=True)}
    listed = _dual_stack({"web-6fbbcc66fb-7gchx": READY, "web-eu-7c9f4d5b6-ll8fp": READY})

    def lookup(kind: str, name: str) -> JSON | None:
        return objects.get((kind, name))

    observed, _ = observe(service, "web", lookup, lambda n: listed, lookup, "web-preview")
    assert observed.endpoints == 2
    assert observed.foreign_pods == ("web-eu-7c9f4d5b6-ll8fp",)
    assert ready_endpoints(listed) == ["web-6fbbcc66fb-7gchx", "web-eu-7c9f4d5b6-ll8fp"]
    assert routed_endpoints(listed) == ["web-6fbbcc66fb-7gchx", "web-eu-7c9f4d5b6-ll8fp"]


def test_a_dual_stack_promotion_does_not_flip_onto_a_pod_that_just_turned_unready() -> None:
    # A new pod turns unready as the promotion is about to flip: its
    # EndpointSlices say so first (the event that wakes this cycle), the
    # Deployment's readyReplicas a controller hop later, so the endpoints
    # are what holds the flip. Counted once per family, 2 ready pods of 3
    # were 4 endpoints: the flip went onto them, and the old twin to 0 after
    # the scale-down delay, with a third of the capacity not serving.
    world = World().adopted(ONE_STEP)
    world.source = replace(world.source, revision="r2")
    world.settle(ONE_STEP)
    world.step(ONE_STEP, result(Verdict.PASS), advance=10)
    assert world.state.promoting, world.state
    blue = _pods("blue", 3, READY)
    green = {**_pods("green", 2, READY), **_pods("green", 3, NOT_READY, start=2)}
    observed = _seen_through(world.observed(), _dual_stack({**blue, **green}))
    plan = decide(ONE_STEP, world.state, observed, None, world.now + 1)
    assert SetSelector({"app": "web", TWIN_LABEL: "green"}) not in plan.actions, plan.actions
    assert plan.state.promoting and plan.state.stable == "blue"
    assert "promoting: 3/3 pods ready, 2/3 endpoints" in plan.state.message, plan.state.message


def test_a_dual_stack_stable_twin_short_of_a_pod_is_degraded() -> None:
    # A drain evicts one of the stable twin's 3 pods and no node has room:
    # 2 ready pods, listed in both families. Counted twice, they were 4
    # endpoints, "at least 3", and the Service read Healthy at two thirds of
    # its capacity: no Degraded Warning.
    world = World().adopted(ONE_STEP)
    observed = world.observed()
    observed = replace(
        observed, twins={**observed.twins, "blue": replace(observed.twins["blue"], ready=2)}
    )
    observed = _seen_through(observed, _dual_stack(_pods("blue", 2, READY)))
    plan = decide(ONE_STEP, world.state, observed, None, world.now + 1)
    assert plan.state.degraded == "2/3 pods of the blue twin (stable) ready", plan.state


def _specific(selector: dict[str, str]) -> bool:
    """A selector that names this app's pods: a key of the team's, or our
    Service label; the twin label alone names every managed app's twin of
    that colour in the namespace."""
    return bool(set(selector) - {TWIN_LABEL})


def _selectors(world: World, the_spec: RolloutSpec, cycles: int = 12) -> list[dict[str, str]]:
    """The selectors written over `cycles` cycles, a second apart."""
    written = []
    for _ in range(cycles):
        plan = world.step(the_spec, advance=1)
        written += [dict(a.selector) for a in plan.actions if isinstance(a, SetSelector)]
    return written


def test_a_selector_removed_by_a_sync_is_put_back_on_this_apps_stable_twin() -> None:
    # A sync of a manifest with no `selector` (a client-side apply of it
    # nulls the whole map, our keys too), or a hand `kubectl edit` that
    # deletes it. Put back as `canary.io/twin: blue` alone, the Service
    # selected every managed app's blue twin in the namespace: `api`'s pods
    # got `web`'s requests.
    world = World().adopted(ONE_STEP)
    world.selector = {}
    written = _selectors(world, ONE_STEP)
    assert written, "nothing put back"
    assert all(_specific(s) for s in written), written
    assert world.selector == {SERVICE_LABEL: "web", TWIN_LABEL: "blue"}
    told = [e.message for e in world.events if e.reason == "SelectorRestored"]
    assert len(told) == 1 and "which selects no pod" in told[0], told
    assert "names this Service's twins by canary.io/service=web" in told[0], told
    # A release then goes out and is promoted on this app's twins alone,
    # with no write undoing another (no fight with ourselves).
    world.events.clear()
    world.source = replace(world.source, revision="r2")
    written = _selectors(world, ONE_STEP)
    written += [
        dict(a.selector)
        for a in world.step(ONE_STEP, result(Verdict.PASS), advance=10).actions
        if isinstance(a, SetSelector)
    ]
    written += _selectors(world, ONE_STEP)
    assert all(_specific(s) for s in written), written
    assert world.state.stable == "green" and world.state.canary is None, world.state
    assert world.selector == {SERVICE_LABEL: "web", TWIN_LABEL: "green"}
    assert "SelectorRestored" not in world.reasons(), world.events


def test_a_server_side_apply_that_drops_the_teams_keys_is_put_back() -> None:
    # A server-side apply (Argo CD ServerSideApply=true, Flux) of a manifest
    # without the team's selector keys removes those it owned and leaves
    # ours: `canary.io/twin: blue` alone. Nothing put it back, since our keys
    # were there: the Service selected every managed app's blue twin.
    world = World().adopted(ONE_STEP)
    world.selector = {TWIN_LABEL: "blue"}
    written = _selectors(world, ONE_STEP)
    assert written and all(_specific(s) for s in written), written
    assert world.selector == {SERVICE_LABEL: "web", TWIN_LABEL: "blue"}
    assert "SelectorRestored" in world.reasons()


def test_a_hand_back_of_a_service_left_with_no_selector_of_its_own_keeps_none() -> None:
    # Removing canary.io/strategy then hands the Service back with the
    # selector the team left it (none), never with our Service label, which
    # no pod of the team's carries.
    world = World().adopted(ONE_STEP)
    world.selector = {}
    _selectors(world, ONE_STEP)
    for _ in range(10):
        world.step(None, advance=1)
        if world.released:
            break
    assert world.released
    assert world.selector == {}, world.selector


def test_a_selector_removed_while_the_annotations_are_invalid_names_this_app() -> None:
    # What needs no annotation still puts a reset selector back: on this
    # app's stable twin, not on every managed app's blue twin.
    world = World().adopted(ONE_STEP)
    world.selector = {}
    invalid = SpecError("canary.io/interval", "'30x' is not a duration")
    written = [
        dict(a.selector)
        for _ in range(3)
        for a in world.step(invalid, advance=1).actions
        if isinstance(a, SetSelector)
    ]
    assert written and all(_specific(s) for s in written), written
    assert world.selector == {SERVICE_LABEL: "web", TWIN_LABEL: "blue"}


def _service(spec_fields: JSON, annotations: dict[str, str] | None = None) -> JSON:
    return {
        "metadata": {"name": "web", "namespace": "ns", "annotations": annotations or {}},
        "spec": {"selector": {"app": "web"}, **spec_fields},
    }


def test_the_fields_that_route_requests_otherwise_than_by_pods_are_seen() -> None:
    assert routing(_service({"sessionAffinity": "None", "type": "ClusterIP"})) == ()
    assert routing(_service({"sessionAffinity": "ClientIP"})) == ("sessionAffinity: ClientIP",)
    assert routing(_service({"internalTrafficPolicy": "Local"})) == (
        "internalTrafficPolicy: Local",
    )
    # The API server keeps externalTrafficPolicy for LoadBalancer and NodePort only.
    assert routing(_service({"type": "LoadBalancer", "externalTrafficPolicy": "Local"})) == (
        "externalTrafficPolicy: Local",
    )
    assert routing(_service({"type": "NodePort", "externalTrafficPolicy": "Cluster"})) == ()
    assert routing(_service({"trafficDistribution": "PreferClose"})) == (
        "trafficDistribution: PreferClose",
    )
    auto = {"service.kubernetes.io/topology-mode": "Auto"}
    assert routing(_service({}, auto)) == ("service.kubernetes.io/topology-mode: Auto",)
    off = {"service.kubernetes.io/topology-mode": "Disabled"}
    assert routing(_service({}, off)) == ()
    # A headless Service's clients pick pods from DNS themselves; one that
    # publishes not-ready addresses routes to pods that are not ready.
    assert routing(_service({"clusterIP": "None", "publishNotReadyAddresses": True})) == (
        "clusterIP: None",
        "publishNotReadyAddresses: true",
    )
    assert routing(_service({"clusterIP": "10.96.0.12", "publishNotReadyAddresses": False})) == ()


def test_a_canary_behind_a_service_that_routes_by_client_or_zone_says_its_weight_is_of_pods() -> (
    None
):
    # `sessionAffinity: ClientIP` keeps each client on the pod it reached
    # first, `trafficDistribution: PreferClose` keeps it in its zone: a
    # canary pod alone in a zone takes that zone's every request, one that
    # only new clients reach may take none. The status read "25% effective"
    # all the same, and nothing said the steps did not hold.
    world = World(routing=("sessionAffinity: ClientIP", "trafficDistribution: PreferClose"))
    world.adopted(ONE_STEP)
    world.source = replace(world.source, revision="r2")
    world.settle(ONE_STEP)
    told = [e for e in world.events if e.reason == "SplitNotByPods"]
    assert len(told) == 1 and told[0].warning, world.events
    assert "`sessionAffinity: ClientIP`, `trafficDistribution: PreferClose`" in told[0].message
    assert "share of the ready pods" in told[0].message, told[0].message
    assert world.state.message == (
        "step 1/1 at 25% (25% of the ready pods; requests follow sessionAffinity: ClientIP, "
        "trafficDistribution: PreferClose): analysing"
    ), world.state.message


def test_a_step_passed_behind_such_a_service_names_the_share_of_pods_it_served() -> None:
    two = spec(steps="25,50")
    world = World(routing=("internalTrafficPolicy: Local",)).adopted(two)
    world.source = replace(world.source, revision="r2")
    world.settle(two)
    world.step(two, result(Verdict.PASS), advance=10)
    [advanced] = [e.message for e in world.events if e.reason == "StepAdvanced"]
    assert (
        "served at 25% (25% of the ready pods; requests follow internalTrafficPolicy: Local)"
        in advanced
    ), advanced


def test_a_headless_service_is_told_how_its_clients_choose_pods() -> None:
    world = World(routing=("clusterIP: None", "publishNotReadyAddresses: true"))
    world.adopted(ONE_STEP)
    world.source = replace(world.source, revision="r2")
    world.settle(ONE_STEP)
    [told] = [e.message for e in world.events if e.reason == "SplitNotByPods"]
    assert "the Service is headless: its clients resolve the pods through DNS" in told, told
    assert "a canary pod still starting, or failing its readiness probe" in told, told


def test_a_service_that_routes_by_pods_is_told_nothing_more() -> None:
    world = World().adopted(ONE_STEP)
    world.source = replace(world.source, revision="r2")
    world.settle(ONE_STEP)
    assert "SplitNotByPods" not in world.reasons()
    assert world.state.message == "step 1/1 at 25% (25% effective): analysing"


def test_a_blue_green_rollout_behind_such_a_service_is_told_nothing() -> None:
    # Its preview carries no production traffic and the flip moves it all.
    blue_green = spec(strategy="blue-green")
    world = World(routing=("sessionAffinity: ClientIP",)).adopted(blue_green)
    world.source = replace(world.source, revision="r2")
    world.settle(blue_green)
    assert "RolloutStarted" in world.reasons()
    assert "SplitNotByPods" not in world.reasons()


def _paused_before_serving() -> tuple[World, RolloutSpec]:
    """r2's canary pod created, not ready yet, when on-call pauses; then it
    gets ready, out of the Service (the step puts it in once it runs)."""
    paused = spec(steps="25,50", paused="true")
    world = World().adopted(ONE_STEP)
    world.source = replace(world.source, revision="r2")
    world.stall(True)
    world.step(ONE_STEP, advance=1)
    world.step(ONE_STEP, advance=1)
    assert world.twins["green"].revision == "r2" and not world.state.step_ready
    world.step(paused, advance=1)
    world.stall(False)
    world.step(paused, advance=1)
    assert world.selector == {"app": "web", TWIN_LABEL: "blue"}
    assert world.observed().twins["green"].ready == 1
    return world, paused


def test_a_selector_synced_onto_both_twins_before_the_canary_served_is_put_back() -> None:
    # A manifest exported mid-step (`kubectl get svc -o yaml` while both twins
    # served: `canary.io/service: web` in its selector) synced while the
    # rollout stands still before its canary has served. Both twins was
    # taken for what the step had: the canary's pods, never judged, served
    # their share of the pods for as long as the pause lasted, and the step's
    # window began only at the resume.
    world, paused = _paused_before_serving()
    world.selector = {"app": "web", SERVICE_LABEL: "web"}
    for _ in range(3):
        world.step(paused, advance=1)
    assert world.selector == {"app": "web", TWIN_LABEL: "blue"}, world.selector
    assert world.observed().twins["green"].endpoints == 0
    told = [e.message for e in world.events if e.reason == "SelectorRestored"]
    assert told and "back on the blue twin" in told[-1], told


def test_a_canary_that_served_its_last_step_keeps_both_twins_while_paused_at_the_next() -> None:
    # The step moved on (its step_ready reset) and waits for its new pods
    # when on-call pauses: the canary's pods stay in the Service at the weight
    # they served, as the step keeps them (placement._placed).
    two = spec(steps="25,50")
    paused = spec(steps="25,50", paused="true")
    world = World().adopted(two)
    world.source = replace(world.source, revision="r2")
    world.settle(two)
    # Its pods' ReplicaSet, learned once they serve (observe.twin_of).
    world.twins["green"] = replace(world.twins["green"], replica_set="web-green-7c9f4d5b6")
    world.step(two, advance=1)
    assert world.state.canary_pods == "web-green-7c9f4d5b6"
    world.stall(True)
    world.step(two, result(Verdict.PASS), advance=10)
    assert world.state.step == 1 and not world.state.step_ready, world.state
    assert world.selector == {"app": "web", SERVICE_LABEL: "web"}
    world.events.clear()
    for _ in range(3):
        world.step(paused, advance=1)
    assert world.selector == {"app": "web", SERVICE_LABEL: "web"}
    assert "SelectorRestored" not in world.reasons(), world.events


class _Labelled(World):
    """A World whose Service selects a twin's pods only if they carry the
    team's selector keys, as the EndpointSlice controller does."""

    def observed(self) -> Observed:
        obs = super().observed()
        team = {k: v for k, v in self.selector.items() if k not in (TWIN_LABEL, SERVICE_LABEL)}
        twins = {
            c: t
            if all(dict(t.labels).get(k) == v for k, v in team.items())
            else replace(t, endpoints=0)
            for c, t in obs.twins.items()
        }
        return replace(obs, twins=twins, endpoints=sum(t.endpoints for t in twins.values()))


def test_a_release_whose_pods_lack_a_selector_label_says_so_while_it_waits() -> None:
    # A chart refactor drops `tier: frontend` from the pod template while the
    # Service selector keeps it: the canary's pods are ready and never
    # selected. Held (a flip would leave the Service with no pod) and rolled
    # back at the deadline, rightly, but the status and the rollback said
    # only "1/1 pods ready, 0/1 endpoints" for 10 minutes.
    labels = {"app": "web", "tier": "frontend"}
    world = _Labelled(selector=dict(labels))
    world.source = replace(world.source, pod_labels=dict(labels))
    world.adopted(ONE_STEP)
    world.source = replace(world.source, revision="r2", pod_labels={"app": "web"})
    world.settle(ONE_STEP)
    assert not world.state.step_ready
    why = (
        "its pods lack the Service selector's tier=frontend (not in the release's pod "
        "template), so the Service never selects them"
    )
    assert "1/1 pods ready, 0/1 endpoints; " + why in world.state.message, world.state.message
    world.step(ONE_STEP, advance=ONE_STEP.progress_deadline + 1)
    [rolled] = [e.message for e in world.events if e.reason == "ProgressDeadlineExceeded"]
    assert why in rolled, rolled


def _addresses(family: str, *ips: str) -> JSON:
    """A slice another controller (or a team) writes for the Service: VMs
    still serving it during a migration, listed by address, no pod."""
    return {
        "metadata": {
            "name": "web-vms",
            "labels": {"endpointslice.kubernetes.io/managed-by": "vm-migration.example.com"},
        },
        "addressType": family,
        "endpoints": [{"addresses": [ip], "conditions": READY} for ip in ips]
        + [{"addresses": ["10.1.0.99"], "conditions": {"ready": False, "serving": False}}],
        "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
    }


def test_endpoints_another_controller_lists_by_address_count_in_the_services_total() -> None:
    # kube-proxy routes to every EndpointSlice labelled for the Service,
    # whoever manages it: a slice of VMs kept beside the pods during a
    # migration takes its share of the requests. Left out, a canary pod
    # beside 3 stable pods and 2 VMs read "25% effective" for 1 in 6.
    service = _service({})
    objects = {("Deployment", "web"): source_deployment(rolled_out=True)}
    pods = {**_pods("blue", 3, READY), **_pods("green", 1, READY)}
    listed = [_slice("IPv4", pods), _addresses("IPv4", "10.1.0.7", "10.1.0.8")]

    def lookup(kind: str, name: str) -> JSON | None:
        return objects.get((kind, name))

    observed, _ = observe(service, "web", lookup, lambda n: listed, lookup, "web-preview")
    assert observed.other_endpoints == 2
    assert observed.endpoints == 6
    assert observed.foreign_pods == ()  # no pod: a narrowed selector does not drop them
    world = World().adopted(ONE_STEP)
    world.source = replace(world.source, revision="r2")
    world.settle(ONE_STEP)
    assert world.state.effective_weight == 25.0
    seen = world.observed()
    seen = replace(seen, other_endpoints=2, endpoints=seen.endpoints + 2)
    plan = decide(ONE_STEP, world.state, seen, None, world.now + 1)
    assert plan.state.effective_weight == 16.7, plan.state


def test_a_selector_removed_while_the_deployment_is_gone_names_this_app() -> None:
    # The team's Deployment is away (`kubectl replace --force`, a Helm
    # reinstall) in the sync that drops the Service's selector: the stable
    # twin keeps serving, by this app's labels.
    world = World().adopted(ONE_STEP)
    world.source = Source()
    world.selector = {}
    written = _selectors(world, ONE_STEP, cycles=3)
    assert written and all(_specific(s) for s in written), written
    assert world.selector == {SERVICE_LABEL: "web", TWIN_LABEL: "blue"}


def test_a_selector_removed_with_the_strategy_is_handed_back_by_this_apps_labels() -> None:
    # One commit drops both canary.io/strategy and the selector. The
    # hand-back keeps the stable twin serving until the team's pods are
    # ready: by this app's labels meanwhile, and with no selector after.
    world = World().adopted(ONE_STEP)
    world.selector = {}
    written = []
    for _ in range(10):
        plan = world.step(None, advance=1)
        written += [dict(a.selector) for a in plan.actions if isinstance(a, SetSelector)]
        if world.released:
            break
    assert world.released
    assert all(_specific(s) for s in written[:-1]) and written[-1] == {}, written
