"""Operating the controller itself on a bad day (its alerts, its probes, its
Deployment and PodDisruptionBudget, its stop), found by an adversarial
review; each test failed before its fix."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import generate_latest

from analysis.verdicts import Verdict
from canary.decide import phase
from canary.model import Phase
from canary.reconcile import Edges, Reconciler
from tests.unit.test_oncall_bad_night import CANARY, serving_canary, stable_short
from tests.unit.world import result

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ROOT / "manifests" / "components"


def _alerts() -> dict[str, dict[str, Any]]:
    rule = yaml.safe_load((COMPONENTS / "prometheus-rules" / "prometheus-rule.yaml").read_text())
    return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}


# -- 1. a halted rollout whose stable twin loses a pod pages no one ---------------------------


def test_a_halted_rollout_beneath_a_degradation_still_raises_the_halted_alert() -> None:
    """Halted on no data (the canary at its weight, nothing analysing it,
    waiting for `canary promote`, `abort` or `retry`), and a drain takes a
    stable pod (or the stable pods went first, and the halt came while
    Degraded). The phase reads Degraded, so canary_service_phase{phase=
    "Halted"} is 0 and CanaryRolloutHalted resolved (or never fired); its
    next decision is not exported either (halted: waits for a person), so
    CanaryRolloutStuck cannot fire, and no alert watches Degraded: the
    unanalysed canary paged no one for as long as the pod stayed Pending."""
    world = serving_canary()
    for _ in range(CANARY.analysis.no_data_limit + 2):
        world.step(CANARY, result(Verdict.NO_DATA), advance=10)
    before = world.state
    plan = stable_short(world)
    assert phase(CANARY, plan.state) is Phase.DEGRADED
    reconciler = Reconciler(Edges(kube=None, prometheus=None), None)  # type: ignore[arg-type]
    reconciler._report("ns", "web", CANARY, before, plan, None)
    exported = generate_latest(reconciler.metrics.registry).decode()
    assert 'canary_service_phase{namespace="ns",phase="Halted",service="web"} 0.0' in exported
    # What the alert reads beneath the degradation.
    assert 'canary_rollout_halted{namespace="ns",service="web"} 1.0' in exported
    expr = _alerts()["CanaryRolloutHalted"]["expr"]
    assert "canary_rollout_halted" in expr, expr
    # Gone once it moves again, and with the Service.
    reconciler._report("ns", "web", CANARY, before, plan, None)
    moving = replace(plan, state=replace(plan.state, halted="", halt_kind=""))
    reconciler._report("ns", "web", CANARY, before, moving, None)
    exported = generate_latest(reconciler.metrics.registry).decode()
    assert "canary_rollout_halted{" not in exported
    reconciler._report("ns", "web", CANARY, before, plan, None)
    reconciler.metrics.forget("ns", "web")
    exported = generate_latest(reconciler.metrics.registry).decode()
    assert "canary_rollout_halted{" not in exported


# -- 2. both replicas not ready block every drain of their nodes ------------------------------


def _evictable(pdb: dict[str, Any], ready: list[bool], pod: int) -> bool:
    """The eviction API's answer for pod `pod` of the controller's replicas
    (`ready`: each one's readiness, what /readyz says) under this
    PodDisruptionBudget, as the API server decides it (policy/v1: a pod
    counts as healthy when Ready; an unhealthy pod under the default policy
    IfHealthyBudget is evictable only while the budget is met)."""
    spec = pdb["spec"]
    healthy = sum(ready)
    desired = int(spec["minAvailable"])
    if not ready[pod]:
        if spec.get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
            return True
        return healthy >= desired
    return healthy - desired > 0


def test_a_drain_can_evict_controller_replicas_that_are_not_ready() -> None:
    """Both replicas answer /readyz 503 for as long as a namespace of
    --namespace cannot be listed (its RoleBinding not made yet), a cache's
    list and watch are refused (an upgrade's ClusterRole), or Prometheus did
    not answer since they started (restarted during its outage). The
    PodDisruptionBudget (minAvailable: 1) then counted no healthy pod, and
    under the default IfHealthyBudget the eviction API refused to evict
    either: `kubectl drain` of their nodes retried for good, a node upgrade
    and the cluster autoscaler's scale-down stalled, for a controller that
    was not serving as ready anyway. A replica that is ready is still kept
    while it is the only one."""
    pdb = yaml.safe_load(
        (COMPONENTS / "pod-disruption-budget" / "pod-disruption-budget.yaml").read_text()
    )
    assert _evictable(pdb, [False, False], 0)  # a drain goes on
    assert _evictable(pdb, [True, False], 1)  # the one not ready goes
    assert not _evictable(pdb, [True, False], 0)  # the only ready one stays
    assert _evictable(pdb, [True, True], 0)  # one of two ready goes; the other takes over
