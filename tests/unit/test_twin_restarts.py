"""`kubectl rollout restart` on a twin: fresh pods of the same revision,
not a hand edit to put back (the put-back restarted every pod again)."""

from __future__ import annotations

import copy
from dataclasses import replace

from canary.model import JSON, Observed
from canary.observe import twin_of
from canary.spec import TEMPLATE_ANNOTATION, TWIN_LABEL
from canary.twins import template_digest, twin_deployment
from tests.unit.objects import source_deployment
from tests.unit.test_events_refused import _Shell
from tests.unit.world import World, spec, with_twin

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"  # what `kubectl rollout restart` stamps


def _twin(template: JSON | None = None) -> JSON:
    source = source_deployment()
    twin = twin_deployment(source, "web", "blue", "r1", 3, template or source["spec"]["template"])
    twin["metadata"]["managedFields"] = [
        {
            "manager": "kubectl-rollout",
            "time": "2026-11-30T15:00:00Z",
            "fieldsV1": {"f:spec": {"f:template": {}}},
        }
    ]
    return twin


def _restarted(twin: JSON, at: str = "2026-11-30T15:00:00Z") -> JSON:
    """What `kubectl rollout restart deployment/web-blue` writes."""
    twin = copy.deepcopy(twin)
    meta = twin["spec"]["template"].setdefault("metadata", {})
    meta.setdefault("annotations", {})[RESTARTED_AT] = at
    return twin


def test_a_restarted_twin_is_not_edited() -> None:
    twin = _restarted(_twin())
    assert twin_of(twin, []).edited_by == ""
    # Restarted again: still the same revision's pods.
    assert twin_of(_restarted(twin, "2026-11-30T16:00:00Z"), []).edited_by == ""


def test_a_twin_of_a_release_that_was_itself_a_restart_is_not_edited_when_restarted() -> None:
    """The team's `kubectl rollout restart deployment/web` is a release (a new
    revision, whose template carries restartedAt); on-call restarting its twin
    later changes only that stamp."""
    source = source_deployment()
    template = copy.deepcopy(source["spec"]["template"])
    template["metadata"]["annotations"] = {RESTARTED_AT: "2026-11-30T14:00:00Z"}
    twin = _twin(template)
    assert twin_of(twin, []).edited_by == ""
    assert twin_of(_restarted(twin), []).edited_by == ""


def test_any_other_edit_of_the_template_is_still_an_edit() -> None:
    twin = _restarted(_twin())
    twin["spec"]["template"]["spec"]["containers"][0]["image"] = "web:hotfix"
    assert twin_of(twin, []).edited_by == "kubectl-rollout"
    twin = _twin()
    twin["spec"]["template"]["metadata"]["annotations"] = {"other": "x"}
    assert twin_of(twin, []).edited_by == "kubectl-rollout"


def test_a_twin_written_before_restarts_were_left_out_is_not_taken_for_edited() -> None:
    """Its digest was of the whole template, restartedAt included: an upgrade
    of the controller must not put every such twin back (a false
    TwinRestored Warning, and a write per twin)."""
    source = source_deployment()
    template = copy.deepcopy(source["spec"]["template"])
    template["metadata"]["annotations"] = {RESTARTED_AT: "2026-11-30T14:00:00Z"}
    twin = _twin(template)
    twin["metadata"]["annotations"][TEMPLATE_ANNOTATION] = template_digest(
        twin["spec"]["template"], restarts=True
    )
    assert template_digest(twin["spec"]["template"]) != template_digest(
        twin["spec"]["template"], restarts=True
    )
    assert twin_of(twin, []).edited_by == ""


def test_a_twin_written_before_restarts_were_left_out_takes_a_restart_later() -> None:
    """A stable twin an earlier version made from a Deployment that carried
    restartedAt (any app once restarted with `kubectl rollout restart
    deployment/web`: the stamp stays in its template) holds a digest of that
    stamp. The stamp a later restart writes matched neither digest: the
    restart was taken for a hand edit and put back (TwinRestored), every
    pod restarted a second time, until a release re-templated the twin. The
    digest is renewed while the template is as written."""
    shell = _Shell()
    shell.kube.refusing = None
    blue = shell.informers[1].get("ns", "web-blue")
    assert blue is not None
    meta = blue["spec"]["template"].setdefault("metadata", {})
    meta.setdefault("annotations", {})[RESTARTED_AT] = "2026-01-01T00:00:00Z"
    blue["metadata"]["annotations"][TEMPLATE_ANNOTATION] = template_digest(
        blue["spec"]["template"], restarts=True
    )
    shell.cycle()  # the controller, upgraded, sees it once
    restarted = _restarted(shell.informers[1].get("ns", "web-blue") or {})
    restarted["metadata"]["managedFields"] = [
        {"manager": "kubectl-rollout", "fieldsV1": {"f:spec": {"f:template": {}}}}
    ]
    shell.informers[1].remember(restarted)
    shell.kube.events.clear()
    shell.cycle()
    assert not shell.failures, shell.failures
    assert "TwinRestored" not in shell.kube.events, shell.kube.events
    kept = shell.informers[1].get("ns", "web-blue")
    assert kept is not None
    assert kept["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT] == (
        "2026-11-30T15:00:00Z"
    )
    assert kept["spec"]["template"]["metadata"]["labels"][TWIN_LABEL] == "blue"


def test_a_canary_restarted_mid_step_is_judged_afresh_once_its_new_pods_serve() -> None:
    """`kubectl rollout restart` of the canary twin mid-step: its pods are a
    new ReplicaSet of the same revision. Judged on the window their
    predecessors began, the restarted pods' warm-up (or their few samples)
    counted against a step that was nearly over."""
    from dataclasses import replace

    from tests.unit.world import World, spec

    canary = spec(steps="25,50")
    world = World().adopted(canary)
    world.source = replace(world.source, revision="r2")
    world.settle(canary)
    world.twins["green"] = replace(world.twins["green"], replica_set="web-green-aaa")
    world.step(canary, advance=1)
    assert world.state.canary_pods == "web-green-aaa"
    began = world.state.step_ready
    world.twins["green"] = replace(world.twins["green"], replica_set="web-green-bbb")
    world.step(canary, advance=8)
    assert world.state.canary_pods == "web-green-bbb"
    assert world.state.step_ready == world.now > began, (world.state.step_ready, began)
    assert world.state.window_start == world.now


def _mid_restart(twin: JSON) -> JSON:
    """A RollingUpdate restart half-way: 3 old pods still ready, a 4th of the
    restarted template surging, not ready yet."""
    twin = _restarted(twin)
    twin["metadata"]["generation"] = 2
    twin["status"] = {
        "observedGeneration": 2,
        "replicas": 4,
        "updatedReplicas": 1,
        "readyReplicas": 3,
    }
    return twin


def test_a_twin_mid_restart_counts_its_ready_pods_of_either_template() -> None:
    pods = [f"web-blue-5d8f7c9b4-{s}" for s in ("aaaaa", "bbbbb", "ccccc")]
    twin = twin_of(_mid_restart(_twin()), pods)
    assert twin.ready == 0 and not twin.updated  # not yet its revision's count
    assert twin.ready_mixed == 3 and twin.endpoints == 3


class _StableMidRestart(World):
    """On-call restarts the stable twin (`kubectl rollout restart
    deployment/web-blue`: a leak, a Secret read at start) while a canary
    serves; its old pods serve until the new ones are ready."""

    restarting: bool = False

    def observed(self) -> Observed:
        observed = super().observed()
        if not self.restarting or self.state.stable is None:
            return observed
        blue = observed.twins[self.state.stable]
        return with_twin(
            observed, self.state.stable, ready=0, updated=False, ready_mixed=blue.ready
        )


def test_a_failing_canary_is_rolled_back_while_the_stable_twin_restarts() -> None:
    """Before, the stable twin counted no ready pod until its restart had
    rolled (pods of two templates), so the rollback was held as if a drain
    had taken every stable pod: the failing canary kept its share of the
    traffic for as long as the restart took."""
    the_spec = spec(steps="25,50", failure_limit="0")
    world = _StableMidRestart().adopted(the_spec)
    assert isinstance(world, _StableMidRestart)
    world.source = replace(world.source, revision="r2")
    world.settle(the_spec)
    assert world.state.canary == "green" and world.state.step_ready
    world.restarting = True
    world.fail(the_spec)
    assert world.state.canary is None and world.state.failed_revision == "r2"
    assert world.selector.get(TWIN_LABEL) == "blue", world.reasons()
    assert world.twins["green"].replicas == 0
