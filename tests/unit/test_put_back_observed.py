"""A put-back of the stable twin (TwinRestored) whose status is lost: the
controller killed between the twin's write and the status's, the status
write refused, or the status deleted. The next cycle read a twin of the
stable revision, not edited, rolling, and no remembered `put_back`: a twin
rolling is no degradation by itself (a scale, a restart), so it said
`Healthy` while pods of the edited template still served. The put-back is
marked on the twin in the same write as its template, and observed."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import replace
from typing import Any

from canary.decide import decide
from canary.model import JSON, ApplyTwin, State
from canary.observe import twin_of
from canary.spec import PUT_BACK_ANNOTATION
from canary.twins import twin_deployment
from tests.unit.objects import cached_actor, source_deployment
from tests.unit.test_source_bad_day import _Kube as _RecordingKube
from tests.unit.world import World, spec, with_twin

CANARY = spec(steps="25,50")
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def test_a_put_back_cut_before_its_status_is_degraded_until_it_rolled() -> None:
    world = World().adopted(CANARY)
    world.twins["blue"] = replace(world.twins["blue"], edited_by="kubectl-edit")
    world.step(CANARY, advance=1, cut_after=ApplyTwin)  # killed before the status write
    assert world.state.put_back == "" and world.state.degraded == ""  # the old status
    # The template is back; pods of the edited one serve until it has rolled.
    world.twins["blue"] = replace(world.twins["blue"], updated=False, put_back=True)
    world.step(CANARY, advance=1)
    assert "being put back" in world.state.degraded, world.state.degraded
    assert "Degraded" in world.reasons()
    world.twins["blue"] = replace(world.twins["blue"], updated=True, put_back=False)
    world.step(CANARY, advance=1)
    assert not world.state.degraded and "Recovered" in world.reasons()


def test_a_put_back_is_planned_as_one() -> None:
    world = World().adopted(CANARY)
    world.twins["blue"] = replace(world.twins["blue"], edited_by="kubectl-edit")
    plan = world.step(CANARY, advance=1)
    assert ApplyTwin("blue", "r1", 3, put_back=True) in plan.actions, plan.actions


def test_a_status_rebuilt_mid_put_back_is_degraded() -> None:
    """The status deleted while the put-back rolls: rebuilt from what runs."""
    world = World().adopted(CANARY)
    world.twins["blue"] = replace(world.twins["blue"], updated=False, put_back=True)
    world.state = State()
    world.lost = "missing"
    world.step(CANARY, advance=1)
    assert "being put back" in world.state.degraded, world.state.degraded


def _put_back(replicas: int, updated: int, generation: int = 2, observed: int = 2) -> JSON:
    source = source_deployment()
    twin = twin_deployment(
        source, "web", "blue", "r1", 3, source["spec"]["template"], put_back=True
    )
    twin["metadata"]["generation"] = generation
    twin["status"] = {
        "observedGeneration": observed,
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": replicas - 1,
    }
    return twin


def test_the_twin_says_its_put_back_rolls_while_pods_of_the_edited_template_are_left() -> None:
    assert twin_of(_put_back(4, 1), []).put_back
    assert not twin_of(_put_back(3, 3), []).put_back  # rolled
    # A scale written later, not yet observed: nothing of an older template.
    assert not twin_of(_put_back(3, 3, generation=3, observed=2), []).put_back
    # `kubectl rollout restart` after the put-back: the same revision's pods.
    restarted = _put_back(4, 1)
    meta = restarted["spec"]["template"].setdefault("metadata", {})
    meta.setdefault("annotations", {})[RESTARTED_AT] = "2026-11-30T15:00:00Z"
    assert not twin_of(restarted, []).put_back
    # A twin written without the mark (made, or re-templated for a release).
    plain = copy.deepcopy(_put_back(4, 1))
    source = source_deployment()
    plain["metadata"]["annotations"] = twin_deployment(
        source, "web", "blue", "r1", 3, source["spec"]["template"]
    )["metadata"]["annotations"]
    assert not twin_of(plain, []).put_back


class _Kube(_RecordingKube):
    """Keeps the bodies written."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[dict[str, Any]] = []

    async def replace(self, path: str, body: dict[str, Any], **kw: object) -> dict[str, Any]:
        self.bodies.append(copy.deepcopy(body))
        return await super().replace(path, body, **kw)


def test_the_put_back_mark_goes_with_the_template_and_leaves_with_a_release() -> None:
    source = source_deployment()
    serving = twin_deployment(source, "web", "blue", "r1", 3, source["spec"]["template"])
    serving["metadata"]["resourceVersion"] = "7"
    cache = {("Deployment", "web-blue"): serving, ("Deployment", "web"): source}
    kube = _Kube()
    service = {"metadata": {"name": "web", "namespace": "ns", "resourceVersion": "1"}}
    actor = cached_actor(kube, cache, service)
    template = source["spec"]["template"]
    asyncio.run(actor.apply_twin("blue", "r1", 3, source, template, {}, put_back=True))
    marked = kube.bodies[-1]
    assert PUT_BACK_ANNOTATION in marked["metadata"]["annotations"], marked["metadata"]
    cache[("Deployment", "web-blue")] = marked
    asyncio.run(actor.apply_twin("blue", "r3", 1, source, template, {}))
    assert PUT_BACK_ANNOTATION not in kube.bodies[-1]["metadata"]["annotations"]


def _rolling(world: World, **twin: Any) -> None:
    """The put-back decided and written (its status too), then observed as
    `twin` says."""
    world.twins["blue"] = replace(world.twins["blue"], edited_by="kubectl-edit")
    world.step(CANARY, advance=1)
    assert world.state.put_back == "blue"
    observed = with_twin(world.observed(), "blue", updated=False, **twin)
    plan = decide(CANARY, world.state, observed, None, world.now + 1)
    world.state = plan.state


def test_a_put_back_short_of_ready_pods_says_both() -> None:
    """Rolling, with one pod ready of three (a surge that waits for room):
    the reason said only that the put-back rolls, not that the app was
    short of pods."""
    world = World().adopted(CANARY)
    _rolling(world, ready=0, ready_mixed=1, endpoints=1, put_back=True)
    assert "being put back" in world.state.degraded, world.state.degraded
    assert "1/3 pods of the blue twin (stable) ready" in world.state.degraded


def test_a_put_back_whose_edited_pods_are_gone_does_not_say_they_serve() -> None:
    """`strategy: Recreate` (copied from the team's Deployment): every pod of
    the edited template is stopped before the put-back's start. None serves;
    the reason said they still did, and not that none was ready."""
    world = World().adopted(CANARY)
    _rolling(world, ready=0, ready_mixed=0, endpoints=0)
    reason = world.state.degraded
    assert "being put back" in reason and "edited template still serve" not in reason, reason
    assert "0/3 pods of the blue twin (stable) ready" in reason, reason
