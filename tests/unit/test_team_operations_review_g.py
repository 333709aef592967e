"""What ordinary team operations on their Deployment and its config do to a
rollout (an adversarial review, rev-g): each test failed before its fix."""

from __future__ import annotations

import functools
from typing import Any

from canary.decide import decide
from canary.model import ApplyTwin, Emit, State
from canary.observe import observe, source_of
from canary.revisions import TRACKING
from canary.spec import TWIN_LABEL
from canary.twins import twin_deployment
from tests.unit.objects import source_deployment
from tests.unit.world import spec


def _secret(tracking: str | None, password: str = "b25l") -> dict[str, Any]:
    annotations = {TRACKING: tracking} if tracking is not None else {}
    return {"metadata": {"name": "creds", "annotations": annotations}, "data": {"p": password}}


def _config(password: str, kind: str, name: str) -> dict[str, Any] | None:
    return _secret(None, password) if (kind, name) == ("Secret", "creds") else None


def test_tracking_turned_on_again_after_a_live_release_was_promoted_is_a_release() -> None:
    """Secret `creds` had `canary.io/config-tracking: disabled`; that release
    (its twin reads `creds` by its own name) was promoted. The team removes
    the annotation: tracking on again, a release (README), so the twin reads
    a frozen copy and the next edit of `creds` is analysed. The source's
    template equals the stable twin's less our labels, which observe took
    for a hand-back's copy ("the same pods"): no release, then or at any
    later edit of `creds` (each a new revision, the template still equal),
    and every edit reached the serving pods live, unanalysed, with no
    rollback possible."""
    deployment = source_deployment(
        [{"name": "creds", "secret": {"secretName": "creds"}}], rolled_out=True, generation=1
    )
    live, _ = source_of(deployment, lambda kind, name: _secret("disabled"))
    twin = twin_deployment(deployment, "web", "green", live.revision, 3, live.template)
    twin["status"] = {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 3}
    service = {
        "metadata": {"name": "web", "namespace": "ns"},
        "spec": {"selector": {"app": "web", TWIN_LABEL: "green"}},
    }
    objects = {("Deployment", "web"): deployment, ("Deployment", "web-green"): twin}
    state = State(adopted=True, stable="green", stable_revision=live.revision, replicas=3)
    for password in ("b25l", "dHdv"):  # tracking on again; then the Secret edited
        observed, _ = observe(
            service,
            "web",
            lambda kind, name: objects.get((kind, name)),
            lambda name: [],
            functools.partial(_config, password),
            "web-preview",
        )
        assert observed.source.revision != live.revision
        plan = decide(spec(), state, observed, None, 1000.0)
        told = [a.reason for a in plan.actions if isinstance(a, Emit)]
        assert "RolloutStarted" in told, plan.actions
        assert plan.state.canary_revision == observed.source.revision
        # The canary reads a copy of its own: the next edit is analysed.
        assert ApplyTwin("blue", observed.source.revision, 1) in plan.actions
