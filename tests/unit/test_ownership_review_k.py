"""Ownership and hand-back on a bad day (review k): each test failed on the
code before its fix."""

from __future__ import annotations

import time
from dataclasses import replace

from canary import handback
from canary.decide import decide
from canary.model import (
    Autoscaler,
    Claim,
    DeleteTwins,
    Emit,
    GateSource,
    Observed,
    ScaleSource,
    ScaleTwin,
    SetSelector,
    Source,
    State,
    Twin,
    Unclaim,
)
from canary.spec import SERVICE_LABEL, TWIN_LABEL
from tests.unit.test_events_refused import KEY
from tests.unit.world import World, spec

CANARY = spec(steps="25,50")


def test_strategy_removed_while_adoption_waits_for_twin_pods_that_never_come_hands_back() -> None:
    # The team annotates its Service; adoption claims the Deployment and
    # creates the blue twin, whose pods never come (a ResourceQuota full:
    # adoption doubles the pods for a moment). The team gives up and
    # removes canary.io/strategy. The Service never left the source's pods
    # (it is switched only once the twin is ready), so they serve in full.
    # Before, the hand-back waited for the twin's pods to point the Service
    # at them first: for good, the twin, the claim and the status left.
    world = World(pending={"blue"})
    world.settle(CANARY)
    assert not world.state.adopted and "blue" in world.twins
    assert world.source.claim.service == "web" and world.selector == {"app": "web"}
    for _ in range(5):
        plan = world.step(None, advance=1)
        # Traffic is never moved onto the twin's (unready) pods on the way out.
        assert not any(
            isinstance(a, SetSelector) and TWIN_LABEL in a.selector for a in plan.actions
        ), plan.actions
        if world.released:
            break
    assert world.released, world.state.message
    assert world.twins == {} and world.selector == {"app": "web"}
    assert world.source.replicas == 3 and world.source.claim.service == ""


def test_strategy_removed_as_a_sync_resets_the_selector_mid_adoption_keeps_the_source_up() -> None:
    # Adoption switched the Service and scaled the source to 0 (not yet
    # flagged adopted); a GitOps sync puts the selector back to Git's and
    # the same commit removes canary.io/strategy. The source comes back at
    # the team's size, ready, before the twin goes.
    world = World()
    for _ in range(10):
        world.step(CANARY)
        if world.source.replicas == 0:
            break
    assert world.source.replicas == 0 and not world.state.adopted
    world.source = replace(world.source, ready=0)
    world.selector = {"app": "web"}
    world.step(None, advance=1)
    assert world.source.replicas == 3 and not world.released and "blue" in world.twins
    world.source = replace(world.source, ready=3)
    world.step(None, advance=1)
    assert world.released and world.twins == {}


def test_a_service_naming_another_services_twin_as_its_deployment_takes_nothing_over() -> None:
    # Service `web` manages Deployment `web` through its twins web-blue and
    # web-green. A second Service, `api`, is annotated with
    # canary.io/deployment: web-blue (the Deployment `kubectl get deploy`
    # shows with the pods). Nothing claims web-blue (the claim is on `web`)
    # and api has no twins of its own, so before it was adopted: claimed,
    # copied into web-blue-blue, then scaled to 0 and gated under web's
    # Service, which puts it back: two Services acting on one Deployment.
    world = World().adopted(CANARY)
    labels = dict(world.twins["blue"].labels)
    assert TWIN_LABEL not in labels  # (World's twins list the app's labels only)
    twin_as_source = Source(
        True,
        "r1",
        3,
        3,
        template={"metadata": {"annotations": {"rev": "r1"}}},
        pod_labels={**labels, TWIN_LABEL: "blue", SERVICE_LABEL: "web"},
    )
    observed = Observed(
        "ns",
        "api",
        "web-blue",
        {"app": "web"},
        twin_as_source,
        {"blue": Twin(), "green": Twin()},
        endpoints=3,
    )
    the_spec = spec(deployment="web-blue")
    plan = decide(the_spec, State(), observed, None, world.now)
    written = [a for a in plan.actions if not isinstance(a, Emit)]
    assert written == [], written
    assert "Service web" in plan.state.conflict, plan.state
    # Removing the strategy from it then drops its status alone.
    released = decide(None, plan.state, observed, None, world.now + 1)
    assert [a for a in released.actions if not isinstance(a, Emit)] == []
    assert released.release


def test_an_orphan_hand_back_finishes_within_the_teams_hpa_maximum() -> None:
    # One commit replaces the Service (its annotations and status gone: a
    # Helm reinstall, `kubectl replace` of a plain manifest) and lowers the
    # team HPA's maxReplicas below what served (7, now at most 5). The
    # orphan hand-back scaled the source to the claim's 7, the HPA cut it to
    # 5 at its next sync, the hand-back scaled it to 7 again: a fight ending
    # in WriteLoop, the twins, the claim and the gate kept for good. (The
    # hand-back of a Service still there, release(), already stayed within.)
    world = World(hpa=Autoscaler("web", min_replicas=2)).adopted(CANARY)
    world.autoscale(7)
    world.settle(CANARY)
    assert world.source.claim.replicas == 7
    team = replace(world.hpa, max_replicas=5)
    world.selector = {}  # the Service is gone
    for _ in range(10):
        observed = replace(world.observed(), autoscaler=team, endpoints=0)
        observed = replace(
            observed, twins={c: replace(t, endpoints=0) for c, t in observed.twins.items()}
        )
        plan = handback.orphan(observed, missing_for=60.0)
        for action in plan.actions:
            match action:
                case ScaleSource(replicas):
                    assert replicas <= 5, plan.actions
                    world.source = replace(world.source, replicas=replicas)
                case GateSource(on):
                    world.source = replace(world.source, gated=on)
                case ScaleTwin(color, replicas):
                    world.twins[color] = replace(world.twins[color], replicas=replicas)
                case DeleteTwins():
                    world.twins = {}
                case Unclaim():
                    world.source = replace(world.source, claim=Claim())
        if plan.release:
            break
        # Kubernetes' HPA controller: a target above maxReplicas is set back.
        world.source = replace(world.source, replicas=min(world.source.replicas, 5))
        world.source = replace(world.source, ready=world.source.replicas)
    assert plan.release and world.twins == {}, plan
    assert world.source.replicas == 5 and world.source.claim == Claim()


def test_the_orphan_hand_back_reads_the_teams_hpa() -> None:
    # The shell's side: the orphan cycle observes the team's HPA (before,
    # it handed back with none, whatever the team had).
    from tests.unit.test_orphan_record import _reconcile, _unannotated_mid_rollout

    shell, _ = _unannotated_mid_rollout()
    team = {
        "metadata": {"name": "web", "namespace": "ns", "labels": {}},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1,
            "maxReplicas": 2,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu"}}],
        },
    }
    shell.reconciler._hpas = lambda namespace: [team]  # type: ignore[method-assign]
    sizes = []
    for _ in range(20):
        shell.reconciler._missing[KEY] = time.time() - 100
        _reconcile(shell)
        source = shell.informers[1].get("ns", "web")
        assert source is not None
        sizes.append(source["spec"]["replicas"])
    assert max(sizes) == 2, sizes
