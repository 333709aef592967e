"""A release whose containers crash and come back quickly (OOMKilled under
load, a panic on some requests, a liveness probe failing): requests killed
in flight never reach the app's own counters, so its success rate reads
clean, and a pod back within two scrapes does not even start the step's
window again. Before `max-restarts`, such a canary passed its steps; now a
pod of the revision under analysis restarting more than max-restarts times
rolls it back at once, saying which pod, container and exit."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from analysis.verdicts import Verdict
from canary.model import Checked, Observed, Record, Restarted, State, Twin
from canary.observe import observe, restarted, slim_pod
from canary.spec import (
    REVISION_ANNOTATION,
    REVISION_LABEL,
    SERVICE_LABEL,
    TWIN_LABEL,
    SpecError,
    parse,
)
from tests.unit.world import World, result, spec

CANARY = spec(steps="25,50")
BG = spec(strategy="blue-green")
OOM = Restarted("web-green-7d9-abc", 2, "app", "OOMKilled", 137)
REASON = (
    "canary pod web-green-7d9-abc: container app restarted 2 times "
    "(max-restarts 1; last exit OOMKilled, code 137)"
)


def _rolling() -> World:
    """Revision r2 serving at step 1 (25%), its window begun."""
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    assert world.state.canary == "green" and world.state.step == 0, world.state
    assert world.state.step_ready == world.now, world.state
    world.events.clear()
    return world


def _promoted() -> World:
    """r2 rolled through every step and promoted: green serves, blue (r1)
    kept for the abort."""
    world = _rolling()
    for _ in range(4):
        world.step(CANARY, result(Verdict.PASS), advance=10)
        world.settle(CANARY)
    return world


def _restarts(world: World, *pods: Restarted) -> None:
    world.twins["green"] = replace(world.twins["green"], restarted=pods)


def test_a_canary_pod_restarting_twice_at_step_one_is_rolled_back_though_checks_pass() -> None:
    world = _rolling()
    _restarts(world, OOM)
    world.step(CANARY, result(Verdict.PASS), advance=10)
    assert world.state.canary is None and world.state.failed_revision == "r2", world.state
    assert world.selector == {"app": "web", TWIN_LABEL: "blue"}
    assert world.twins["green"].replicas == 0
    [event] = [e for e in world.events if e.reason == "PodRestarts"]
    assert event.warning and REASON in event.message, event.message
    [back] = [e for e in world.events if e.reason == "RolledBack"]
    assert REASON in back.message, back.message
    [record] = [r for r in world.records if r.get("revision") == "r2"]
    assert record["outcome"] == "rolled-back" and REASON in record["reason"], record


def test_once_is_tolerated_and_two_pods_once_each_is_a_node_reboot_not_a_rollback() -> None:
    world = _rolling()
    _restarts(world, replace(OOM, restarts=1))
    world.step(CANARY, result(Verdict.PASS), advance=10)
    assert world.state.canary == "green" and world.state.step == 1, world.state
    # A node reboot: every pod on it restarts once; not summed over pods.
    _restarts(
        world,
        replace(OOM, restarts=1),
        replace(OOM, pod="web-green-7d9-def", restarts=1),
    )
    world.step(CANARY, result(Verdict.PASS), advance=10)
    assert world.state.canary == "green", world.state
    assert "PodRestarts" not in world.reasons()


def test_max_restarts_zero_rolls_back_on_the_first_restart() -> None:
    strict = spec(steps="25,50", analysis="max-restarts: 0\n")
    world = _rolling()
    _restarts(world, replace(OOM, restarts=1))
    world.step(strict, advance=1)
    assert world.state.canary is None, world.state
    assert "max-restarts 0" in world.events[-1].message or any(
        "max-restarts 0" in e.message for e in world.events
    )


def test_a_blue_green_preview_crash_looping_is_rolled_back_before_the_switch() -> None:
    world = World().adopted(BG)
    world.source = replace(world.source, revision="r2")
    world.settle(BG)
    assert world.state.canary == "green" and world.preview == {"app": "web", TWIN_LABEL: "green"}
    _restarts(world, OOM)
    world.step(BG, result(Verdict.PASS), advance=10)
    assert world.state.canary is None and world.selector.get(TWIN_LABEL) == "blue", world.state
    [back] = [e for e in world.events if e.reason == "RolledBack"]
    assert REASON.replace("canary pod", "preview pod") in back.message, back.message


def test_a_pod_of_the_stable_twin_restarting_counts_for_nothing() -> None:
    world = _rolling()
    world.twins["blue"] = replace(world.twins["blue"], restarted=(replace(OOM, restarts=9),))
    world.step(CANARY, result(Verdict.PASS), advance=10)
    assert world.state.canary == "green" and world.state.step == 1, world.state


def test_after_promotion_nothing_happens() -> None:
    world = _promoted()
    assert world.state.canary is None and world.state.stable == "green", world.state
    _restarts(world, replace(OOM, restarts=5))
    world.events.clear()
    plan = world.step(CANARY, advance=10)
    assert not [a for a in plan.actions if isinstance(a, Record)], plan.actions
    assert world.state.stable == "green" and "PodRestarts" not in world.reasons()


def test_paused_canary_serving_is_rolled_back_as_a_failed_check_would_be() -> None:
    world = _rolling()
    world.action = "pause"
    world.step(CANARY, advance=1)
    assert world.state.paused
    _restarts(world, OOM)
    world.step(CANARY, Checked("fast", result(Verdict.PASS), world.now + 1), advance=1)
    assert world.state.canary is None, world.state


def test_paused_blue_green_preview_waits_as_a_failed_check_would() -> None:
    # A failed check of a paused preview (no production traffic) is not
    # judged until it is resumed (schedule.watched_standing); a restart
    # neither. Resumed, it rolls back.
    world = World().adopted(BG)
    world.source = replace(world.source, revision="r2")
    world.settle(BG)
    world.action = "pause"
    world.step(BG, advance=1)
    assert world.state.paused
    _restarts(world, OOM)
    world.step(BG, advance=10)
    assert world.state.canary == "green", world.state
    world.action = "resume"
    world.step(BG, advance=1)
    assert world.state.canary is None, world.state


def _pod(name: str, revision: str = "r2", **status: object) -> dict[str, object]:
    labels = {TWIN_LABEL: "green", SERVICE_LABEL: "web", REVISION_LABEL: revision}
    meta = {"name": name, "namespace": "ns", "resourceVersion": "1", "labels": labels}
    return {
        "metadata": meta,
        "status": {"conditions": [{"type": "Ready", "status": "True"}], **status},
    }


def _running(name: str, restarts: int, **last: object) -> dict[str, object]:
    return {
        "name": name,
        "ready": True,
        "restartCount": restarts,
        "state": {"running": {}},
        "lastState": {"terminated": last} if last else {},
    }


def test_the_pods_cache_keeps_a_ready_pods_most_restarted_container() -> None:
    pod = _pod(
        "web-green-7d9-abc",
        containerStatuses=[
            _running("app", 2, reason="OOMKilled", exitCode=137),
            _running("sidecar", 1, reason="Error", exitCode=1),
        ],
        initContainerStatuses=[_running("init", 3)],  # init: not counted
    )
    slim = slim_pod(pod)
    assert slim["status"]["restarts"] == 2
    assert restarted([slim], "r2") == (
        Restarted("web-green-7d9-abc", 2, "app", "OOMKilled", 137, (("app", 2), ("sidecar", 1))),
    )
    assert "restarts" not in slim_pod(_pod("web-green-7d9-z", containerStatuses=[]))["status"]


def test_a_pod_being_deleted_or_of_another_revision_does_not_count() -> None:
    leaving = slim_pod(_pod("web-green-7d9-a", containerStatuses=[_running("app", 5)]))
    leaving["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    old = slim_pod(_pod("web-green-0a1-b", "r1", containerStatuses=[_running("app", 5)]))
    assert restarted([leaving, old], "r2") == ()


def test_max_restarts_defaults_to_one_accepts_zero_and_refuses_the_rest() -> None:
    def parsed(analysis: str) -> int:
        the_spec = parse("web", {"canary.io/strategy": "canary", "canary.io/analysis": analysis})
        assert the_spec is not None
        return the_spec.analysis.max_restarts

    assert parsed("min-requests: 20\n") == 1
    assert parsed("max-restarts: 0\n") == 0
    for bad in ("-1", "x", "1.5"):
        with pytest.raises(SpecError) as caught:
            parsed(f"max-restarts: {bad}\n")
        assert caught.value.field == "canary.io/analysis"
        assert "max-restarts" in caught.value.message, caught.value.message


def test_a_canary_a_person_promotes_still_rolls_back_before_the_flip() -> None:
    # `canary promote` skips the steps, not the looks: a failed check before
    # the flip still counts (schedule.watched_standing), so does a restart.
    world = _rolling()
    world.ready = False  # the promotion waits for its new pods
    world.action = "promote"
    world.step(CANARY, advance=1)
    assert world.state.promoting and world.state.canary == "green", world.state
    _restarts(world, OOM)
    world.step(CANARY, advance=1)
    assert world.state.canary is None and world.selector.get(TWIN_LABEL) == "blue", world.state


def test_a_blue_green_preview_at_a_closed_gate_is_rolled_back() -> None:
    gated = spec(
        strategy="blue-green",
        analysis="gates:\n  - name: approve\n    when: pre-promotion\n    url: http://gate\n",
    )
    world = World().adopted(gated)
    world.source = replace(world.source, revision="r2")
    world.settle(gated)
    world.step(gated, result(Verdict.PASS), advance=10)
    assert world.state.gate_wait == "pre-promotion" and world.state.canary == "green", world.state
    _restarts(world, OOM)
    world.step(gated, advance=1)
    assert world.state.canary is None, world.state


def test_a_canary_halted_on_query_errors_waits_as_a_failed_check_would() -> None:
    # Halted over Prometheus errors, looks stop and a person or Prometheus
    # coming back decides (schedule.watched_standing); a restart waits too.
    world = _rolling()
    world.state = replace(world.state, halted="queries failing", halt_kind="errors")
    _restarts(world, OOM)
    world.step(CANARY, advance=1)
    assert world.state.canary == "green", world.state


def test_a_revert_onto_the_twin_kept_for_abort_is_not_rolled_back_for_its_old_restarts() -> None:
    # r2 promoted; the blue twin keeps r1's pods up for a fast abort. Those
    # pods served production for days: two node reboots restarted one twice.
    # The team reverts its Deployment to r1 (an emergency revert): the
    # rollout of r1 reuses those very pods. Restarts from before the rollout
    # are not the rollout's: only more than max-restarts since it began are.
    world = _promoted()
    assert world.state.stable == "green" and world.twins["blue"].replicas == 3, world.state
    old = Restarted("web-blue-5c1-xyz", 2, "app", "Error", 1)
    world.twins["blue"] = replace(world.twins["blue"], restarted=(old,))
    world.source = replace(world.source, revision="r1")
    world.events.clear()
    world.step(CANARY, advance=1)
    assert world.state.canary == "blue" and world.state.canary_revision == "r1", world.state
    assert not world.state.fresh_pods
    world.settle(CANARY)
    world.twins["blue"] = replace(world.twins["blue"], restarted=(old,))  # the pod kept
    world.step(CANARY, result(Verdict.PASS), advance=10)
    assert world.state.canary == "blue", world.state
    assert "PodRestarts" not in world.reasons()
    # One more restart of that pod since the rollout began is within the limit;
    # two more are a crash loop of the reverted release.
    world.twins["blue"] = replace(world.twins["blue"], restarted=(replace(old, restarts=3),))
    world.step(CANARY, advance=1)
    assert world.state.canary == "blue", world.state
    more = replace(old, restarts=4)
    world.twins["blue"] = replace(world.twins["blue"], restarted=(more,))
    world.step(CANARY, advance=1)
    assert world.state.canary is None and world.state.stable == "green", world.state
    [event] = [e for e in world.events if e.reason == "PodRestarts"]
    assert "restarted 4 times, 2 of them since the rollout began (max-restarts 1" in event.message


def test_observe_carries_each_twins_restarted_pods_of_its_revision_to_the_core() -> None:
    crashing = _pod("web-green-7d9-abc", containerStatuses=[_running("app", 2, exitCode=137)])
    assert _observed_twin("green", "r2", crashing).restarted == (
        Restarted("web-green-7d9-abc", 2, "app", "", 137, (("app", 2),)),
    )
    # A twin at another revision: the pod is not of it (its restarts_of has it).
    other = _observed_twin("green", "r1", crashing)
    assert other.restarted == () and [r for r, _ in other.restarts_of] == ["r2"]


def test_a_node_reboot_with_a_sidecar_counts_once_not_once_per_container() -> None:
    # A reboot restarts every container of the pod once: the app and an
    # injected sidecar (istio-proxy, a log shipper) are 2 restarts summed,
    # over a limit of 1, though no container restarted twice.
    pod = _pod(
        "web-green-7d9-abc",
        containerStatuses=[
            _running("app", 1, reason="Unknown", exitCode=255),
            _running("istio-proxy", 1, reason="Unknown", exitCode=255),
        ],
    )
    [found] = restarted([slim_pod(pod)], "r2")
    assert found.restarts == 1, found
    world = _rolling()
    _restarts(world, found)
    world.step(CANARY, result(Verdict.PASS), advance=10)
    assert world.state.canary == "green" and "PodRestarts" not in world.reasons(), world.state


def observed_with(color: str, revision: str, pods_of: Any) -> Observed:
    """What observe reads of twin `color` (its Deployment at `revision`)
    with this pods cache (`pods_of`; None: no cache)."""
    deployment = {
        "metadata": {
            "name": f"web-{color}",
            "generation": 1,
            "annotations": {REVISION_ANNOTATION: revision},
        },
        "spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "web"}}}},
        "status": {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3},
    }
    objects = {("Deployment", f"web-{color}"): deployment}
    service = {"metadata": {"name": "web", "namespace": "ns"}, "spec": {"selector": {}}}
    observed, _ = observe(
        service,
        "web",
        lambda k, n: objects.get((k, n)),
        lambda n: [],
        lambda k, n: objects.get((k, n)),
        "web-preview",
        pods_of=pods_of,
    )
    return observed


def _observed_twin(color: str, revision: str, *pods: dict[str, object]) -> Twin:
    """The twin `color` as observe reads it: its Deployment at `revision`,
    `pods` (any revision) in the pods cache."""
    slim = [slim_pod(pod) for pod in pods]
    return observed_with(color, revision, lambda c: slim if c == color else []).twins[color]  # type: ignore[index]


def test_an_undo_onto_the_twin_mid_update_keeps_out_its_old_pods_restarts() -> None:
    # r2 promoted; the blue twin keeps r1's pods up for a fast abort. A hotfix
    # r3 goes out on that twin and its pods never get ready, so the rolling
    # update keeps one of r1's pods (served for days: two node reboots
    # restarted it twice). On-call undoes to r1: the Deployment goes back to
    # r1's ReplicaSet, and that very pod serves the undo. Its restarts are
    # from before the rollout: before, the twin's revision read r3 when the
    # undo began, nothing of r1's pods was kept, and the known-good r1 was
    # rolled back as crash-looping (PodRestarts) in its first cycle.
    world = _promoted()
    assert world.state.stable == "green" and world.twins["blue"].revision == "r1"
    world.source = replace(world.source, revision="r3")
    world.pending = {"blue"}  # r3's pods never get ready (the stable twin's are)
    world.step(CANARY, advance=1)
    assert world.state.canary == "blue" and world.twins["blue"].revision == "r3", world.state
    kept = _pod("web-blue-5c1-xyz", "r1", containerStatuses=[_running("app", 2, exitCode=1)])
    kept["metadata"]["labels"][TWIN_LABEL] = "blue"  # type: ignore[index]
    world.twins["blue"] = replace(
        _observed_twin("blue", "r3", kept), replicas=world.twins["blue"].replicas
    )
    [number] = [n for n, r in world.observed().revisions.items() if r == "r1"]
    world.action = f"undo {number} t1"
    world.step(CANARY, advance=1)
    assert world.state.canary == "blue" and world.state.canary_revision == "r1", world.state
    world.pending = set()
    world.twins["blue"] = replace(
        _observed_twin("blue", "r1", kept), replicas=world.twins["blue"].replicas
    )
    world.events.clear()
    world.step(CANARY, result(Verdict.PASS), advance=10)
    assert world.state.canary == "blue", (world.state, world.events)
    assert "PodRestarts" not in world.reasons()
    # Two more since the undo began are the reverted release's own crash loop.
    again = _pod("web-blue-5c1-xyz", "r1", containerStatuses=[_running("app", 4, exitCode=1)])
    again["metadata"]["labels"][TWIN_LABEL] = "blue"  # type: ignore[index]
    world.twins["blue"] = replace(
        _observed_twin("blue", "r1", again), replicas=world.twins["blue"].replicas
    )
    world.step(CANARY, advance=1)
    assert world.state.canary is None and "PodRestarts" in world.reasons(), world.state


def test_a_reused_pods_sidecar_restarts_do_not_hide_its_apps_crash_loop() -> None:
    # A revert onto the twin kept for abort reuses r1's pods; one's injected
    # istio-proxy restarted 3 times over weeks (the mesh's upgrades), its app
    # never. r1 crash-loops now (r2 migrated the schema under it): its app
    # restarts twice. Before, the pod's most-restarted container was all
    # that was kept, 3 before and 3 still, and the crash loop went unseen
    # until the app passed the proxy's count (5 restarts, minutes of back-off).
    world = _promoted()

    def pod(app: int) -> dict[str, object]:
        found = _pod(
            "web-blue-5c1-xyz",
            "r1",
            containerStatuses=[
                _running("app", app, reason="Error", exitCode=1),
                _running("istio-proxy", 3),
            ],
        )
        found["metadata"]["labels"][TWIN_LABEL] = "blue"  # type: ignore[index]
        return found

    def observed(app: int) -> Twin:
        return replace(
            _observed_twin("blue", "r1", pod(app)), replicas=world.twins["blue"].replicas
        )

    world.twins["blue"] = observed(0)
    world.source = replace(world.source, revision="r1")
    world.step(CANARY, advance=1)
    assert world.state.canary == "blue" and world.state.canary_revision == "r1", world.state
    world.settle(CANARY)
    world.twins["blue"] = observed(1)
    world.step(CANARY, result(Verdict.PASS), advance=10)
    assert world.state.canary == "blue" and "PodRestarts" not in world.reasons(), world.state
    world.twins["blue"] = observed(2)
    world.step(CANARY, advance=1)
    assert world.state.canary is None and world.state.stable == "green", world.state
    [event] = [e for e in world.events if e.reason == "PodRestarts"]
    # (Its last exit is kept of the most-restarted container alone.)
    assert "pod web-blue-5c1-xyz: container app restarted 2 times (max-restarts 1)" in event.message


def test_a_revert_begun_before_the_pods_cache_lists_reads_its_old_restarts_once_it_does() -> None:
    # The controller restarted (a node drained under it) and the team
    # reverted to r1 meanwhile: the first cycle starts the revert onto the
    # twin kept for abort while the pods cache, not waited for at a start
    # (or its watch failing: a LIST of pods throttled by the API server),
    # shows no restart of any pod. Before, nothing was kept, and once the
    # cache listed, a pod that had restarted twice over days of serving
    # rolled the known-good r1 back (PodRestarts) a few seconds in.
    world = _promoted()
    old = Restarted("web-blue-5c1-xyz", 2, "app", "Error", 1)
    world.pods_known = False  # `restarted` is empty, whatever runs
    world.source = replace(world.source, revision="r1")
    world.step(CANARY, advance=1)
    assert world.state.canary == "blue" and world.state.canary_revision == "r1", world.state
    world.pods_known = True
    world.twins["blue"] = replace(world.twins["blue"], restarted=(old,))
    world.step(CANARY, result(Verdict.PASS), advance=10)
    assert world.state.canary == "blue" and "PodRestarts" not in world.reasons(), world.state
    world.twins["blue"] = replace(world.twins["blue"], restarted=(replace(old, restarts=4),))
    world.step(CANARY, advance=1)
    assert world.state.canary is None and "PodRestarts" in world.reasons(), world.state


def test_a_native_sidecar_crash_looping_counts_as_any_container() -> None:
    # A native sidecar (an init container with restartPolicy Always: Istio's
    # proxy in native-sidecar mode, a cloud SQL proxy) runs beside the app
    # for the pod's life, and its crash drops the requests in flight as the
    # app's would. The kubelet reports it among initContainerStatuses.
    # Before, it was taken for a classic init container and never counted:
    # a release whose proxy crash-looped passed its steps. A classic init
    # container's retries at start still count for nothing.
    pod = _pod(
        "web-green-7d9-abc",
        containerStatuses=[_running("app", 0)],
        initContainerStatuses=[
            _running("migrate", 4),
            _running("istio-proxy", 3, reason="Error", exitCode=1),
        ],
    )
    pod["spec"] = {
        "initContainers": [{"name": "migrate"}, {"name": "istio-proxy", "restartPolicy": "Always"}]
    }
    [found] = restarted([slim_pod(pod)], "r2")
    assert (found.container, found.restarts, found.exit_reason) == ("istio-proxy", 3, "Error")
    assert found.containers == (("istio-proxy", 3),), found


def test_a_release_onto_a_twin_at_zero_begun_while_the_pods_cache_is_out_counts_every_restart() -> (
    None
):
    # The pods watch failing (a LIST throttled) as a new release starts
    # onto the old twin scaled down to 0: no pod of it can be reused, so
    # nothing is "before". Before, its restarts were read late, when the
    # cache came back, and every restart of its crash loop during the
    # outage was forgiven as if the pods had brought it (mutation pass).
    world = World().adopted(CANARY)
    assert world.observed().twin("green").replicas == 0  # not made yet, or scaled down
    world.pods_known = False
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    assert world.state.canary == "green" and not world.state.restarts_unread, world.state
    world.pods_known = True
    _restarts(world, OOM)
    world.step(CANARY, result(Verdict.PASS), advance=10)
    assert world.state.canary is None and "PodRestarts" in world.reasons(), world.state


def test_a_blue_green_preview_crash_looping_while_its_promotion_waits_is_not_flipped() -> None:
    # `canary promote` of a preview whose pods are not ready yet: the
    # promotion waits for them, and meanwhile a container restarts twice
    # (its crash loop is why they are not ready). Once they are back, the
    # flip would put the crash loop in production, and after it nothing
    # judges the release again. Before, a promoting preview was judged as
    # a failed check is (only while it serves production: never), so the
    # restarts were not deferred, as at a pause, but forgiven.
    world = World().adopted(BG)
    world.source = replace(world.source, revision="r2")
    world.settle(BG)
    assert world.state.canary == "green" and world.preview == {"app": "web", TWIN_LABEL: "green"}
    world.pending = {"green"}  # the preview's pods not ready
    world.action = "promote"
    world.step(BG, advance=1)
    assert world.state.promoting and world.state.canary == "green", world.state
    _restarts(world, OOM)
    world.pending = set()
    world.step(BG, advance=1)
    assert world.state.canary is None and world.state.stable == "blue", world.state
    assert world.selector.get(TWIN_LABEL) == "blue" and "Promoted" not in world.reasons()
    [event] = [e for e in world.events if e.reason == "PodRestarts"]
    assert REASON.replace("canary pod", "preview pod") in event.message, event.message


def test_max_restarts_off_or_yes_is_refused_not_read_as_zero_or_one() -> None:
    # YAML 1.1 reads an unquoted `off` as False, which a lax int took as 0:
    # the team meant to turn the check off and got its strictest setting,
    # under which a node reboot rolls a good release back. Refused, as any
    # value that is not a whole number, naming the field; traffic untouched.
    for switch in ("off", "no", "false", "on", "yes", "true"):
        with pytest.raises(SpecError) as caught:
            parse(
                "web",
                {"canary.io/strategy": "canary", "canary.io/analysis": f"max-restarts: {switch}\n"},
            )
        assert caught.value.field == "canary.io/analysis", caught.value
        assert "max-restarts" in caught.value.message and "boolean" in caught.value.message
    world = _rolling()
    serving = (dict(world.selector), {c: t.replicas for c, t in world.twins.items()})
    world.step(parse_error("max-restarts: off\n"), advance=1)
    assert world.state.canary == "green", world.state
    assert (world.selector, {c: t.replicas for c, t in world.twins.items()}) == serving
    assert any(e.reason == "InvalidSpec" and e.warning for e in world.events), world.events
    assert "max-restarts" in world.events[-1].message, world.events


def parse_error(analysis: str) -> SpecError:
    try:
        parse("web", {"canary.io/strategy": "canary", "canary.io/analysis": analysis})
    except SpecError as error:
        return error
    raise AssertionError(f"{analysis!r} was accepted")


def test_a_hotfix_begun_while_the_pods_cache_is_out_counts_its_crash_loop_during_the_outage() -> (
    None
):
    # r2 at its first step on the green twin, every pod of it r2's; the pods
    # watch fails (a LIST throttled) as the hotfix r3 replaces r2 on that
    # twin. r3's pods are all new: the twin, fully at r2, keeps no pod of r3
    # to reuse. Before, its restarts were read late as "before" (the twin
    # was not at 0), and r3's crash loop during the outage was forgiven.
    world = _rolling()
    assert world.twins["green"].revision == "r2" and world.twins["green"].updated
    world.pods_known = False
    world.source = replace(world.source, revision="r3")
    world.step(CANARY, advance=1)
    assert world.state.canary_revision == "r3" and not world.state.restarts_unread, world.state
    world.settle(CANARY)
    world.pods_known = True
    _restarts(world, OOM)
    world.step(CANARY, result(Verdict.PASS), advance=10)
    assert world.state.canary is None and "PodRestarts" in world.reasons(), world.state


def test_an_undo_onto_a_twin_mid_update_begun_while_the_pods_cache_is_out_reads_late() -> None:
    # The twin still has pods of an older template (not `updated`): they may
    # be the undone-to revision's, reused; what they had is read once the
    # cache lists them.
    world = _promoted()
    world.source = replace(world.source, revision="r3")
    world.pending = {"blue"}  # r3's pods never get ready; r1's are kept (the stable twin's ready)
    world.step(CANARY, advance=1)
    assert world.state.canary == "blue" and world.twins["blue"].revision == "r3", world.state
    world.twins["blue"] = replace(world.twins["blue"], updated=False)
    world.pods_known = False
    [number] = [n for n, r in world.observed().revisions.items() if r == "r1"]
    world.action = f"undo {number} t1"
    world.step(CANARY, advance=1)
    assert world.state.canary_revision == "r1" and world.state.restarts_unread, world.state


def test_a_revert_whose_status_is_rebuilt_is_not_rolled_back_for_its_pods_old_restarts() -> None:
    # The status is lost mid-revert (the Service re-applied by Git): the
    # rebuilt state has no restarts_before, and the revert starts again from
    # the first step, which reads what the reused pods have then.
    world = _promoted()
    old = Restarted("web-blue-5c1-xyz", 2, "app", "Error", 1)
    world.twins["blue"] = replace(world.twins["blue"], restarted=(old,))
    world.source = replace(world.source, revision="r1")
    world.settle(CANARY)
    assert world.state.canary == "blue" and world.state.restarts_before, world.state
    world.state, world.lost = State(), "missing"
    world.settle(CANARY)
    assert "StateRebuilt" in world.reasons() and world.state.canary == "blue", world.state
    world.twins["blue"] = replace(world.twins["blue"], restarted=(old,))
    world.step(CANARY, result(Verdict.PASS), advance=10)
    assert world.state.canary == "blue" and "PodRestarts" not in world.reasons(), world.state


def test_the_restarts_remembered_at_a_revert_do_not_grow_as_its_pods_churn() -> None:
    # restarts_before rides in the status annotation (256 KiB for all of a
    # Service's annotations): it holds what the twin's pods had as the
    # rollout began, read once, and no pod started since is added to it,
    # however many come and go (crash loops under the limit, evictions,
    # a node drain) over a long rollout; the rollout's end clears it.
    world = _promoted()
    old = Restarted("web-blue-5c1-xyz", 2, "app", "Error", 1)
    world.twins["blue"] = replace(world.twins["blue"], restarted=(old,))
    world.source = replace(world.source, revision="r1")
    world.settle(CANARY)
    assert world.state.canary == "blue", world.state
    for cycle in range(200):
        churned = tuple(Restarted(f"web-blue-5c1-{cycle:03d}{k}", 1, "app") for k in range(3))
        world.twins["blue"] = replace(world.twins["blue"], restarted=(old, *churned))
        world.step(CANARY, advance=1)
        assert world.state.canary == "blue", world.state
        assert world.state.restarts_before == (("web-blue-5c1-xyz/app", 2),), world.state
    for _ in range(4):
        world.step(CANARY, result(Verdict.PASS), advance=10)
        world.settle(CANARY)
    assert world.state.canary is None and world.state.restarts_before == (), world.state
