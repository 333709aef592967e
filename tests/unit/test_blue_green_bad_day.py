"""Blue-green on a bad day (found by review; each test failed on the code
before its fix): a second Service annotated for the same Deployment and
then un-annotated, a selector reset while the annotations are invalid, a
Service that happens to bear the default preview name, and the analysis
of the preview twin's own pods."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from analysis.verdicts import Verdict
from canary.decide import decide
from canary.model import (
    ApplyPreview,
    Autoscaler,
    DeleteTwins,
    GateSource,
    Observed,
    ScaleTwin,
    SetSelector,
    State,
    Unclaim,
)
from canary.observe import observe
from canary.spec import REVISION_ANNOTATION, TWIN_LABEL, SpecError, parse
from canary.spec_checks import check_against_cluster
from tests.unit.world import World, result, spec

BG = spec(strategy="blue-green")


def previewing() -> World:
    world = World().adopted(BG)
    world.source = replace(world.source, revision="r2")
    world.settle(BG)
    assert world.state.canary == "green" and world.preview == {"app": "web", TWIN_LABEL: "green"}
    return world


def test_a_second_service_un_annotated_after_a_conflict_leaves_the_owners_twins_alone() -> None:
    # Before: removing canary.io/strategy from the preview Service (annotated
    # by mistake with web's annotations, so in Conflict) handed "its" app
    # back: web's twins deleted, web's claim and gate removed: an outage.
    world = previewing()
    twice = parse(
        "web-preview", {"canary.io/strategy": "blue-green", "canary.io/deployment": "web"}
    )
    observed = replace(world.observed(), service="web-preview", selector=dict(world.preview or {}))
    plan = decide(twice, State(), observed, None, world.now)
    assert plan.state.conflict and not plan.actions[1:], plan.actions  # only the Conflict Event
    released = decide(None, plan.state, observed, None, world.now + 1)
    harmful = (DeleteTwins, GateSource, Unclaim, SetSelector)
    assert [a for a in released.actions if isinstance(a, harmful)] == []
    assert released.release  # only its own status goes


def test_a_selector_reset_while_the_annotations_are_invalid_is_put_back() -> None:
    # Before: a sync with an annotation typo that also reset the selector to
    # the app's left the full-size preview twin serving production, unanalysed.
    world = previewing()
    world.selector = {"app": "web"}
    invalid = SpecError("canary.io/interval", "'30x' is not a duration")
    plan = world.step(invalid, advance=1)
    assert SetSelector({"app": "web", TWIN_LABEL: "blue"}) in plan.actions, plan.actions
    assert "SelectorRestored" in world.reasons()


def test_a_service_bearing_the_default_preview_name_is_no_concern_of_the_canary_strategy() -> None:
    # Before: an unrelated Service `web-preview` made a canary-strategy `web`
    # InvalidSpec (and froze a rollout in flight) over an annotation never set.
    service = {"metadata": {"name": "web", "uid": "u"}, "spec": {"selector": {"app": "web"}}}
    unrelated = {"metadata": {"name": "web-preview"}, "spec": {"selector": {"app": "other"}}}
    canary = spec(strategy="canary")
    assert check_against_cluster(canary, service, "web", unrelated) == canary
    assert isinstance(check_against_cluster(BG, service, "web", unrelated), SpecError)


def _deployment(name: str, replicas: int, revision: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "generation": 1, "annotations": {REVISION_ANNOTATION: revision}},
        "spec": {"replicas": replicas, "template": {"metadata": {"labels": {"app": "web"}}}},
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
        },
    }


def _slice(pods: list[str]) -> dict[str, Any]:
    endpoints = [
        {"targetRef": {"kind": "Pod", "name": p}, "conditions": {"ready": True}} for p in pods
    ]
    return {"endpoints": endpoints}


def _previewing(preview_pods: list[str]) -> Observed:
    """A blue-green Service serving from blue, its preview selecting green,
    and the pods the preview's EndpointSlice lists."""
    service = {
        "metadata": {"name": "web", "namespace": "ns", "annotations": {}},
        "spec": {"selector": {"app": "web", TWIN_LABEL: "blue"}},
    }
    objects = {
        ("Deployment", "web"): _deployment("web", 0, "r1"),
        ("Deployment", "web-blue"): _deployment("web-blue", 2, "r1"),
        ("Deployment", "web-green"): _deployment("web-green", 2, "r2"),
        ("Service", "web-preview"): {
            "metadata": {"name": "web-preview"},
            "spec": {"selector": {"app": "web", TWIN_LABEL: "green"}},
        },
    }
    slices = {
        "web": [_slice(["web-blue-5d4f-aaaaa", "web-blue-5d4f-bbbbb"])],
        "web-preview": [_slice(preview_pods)],
    }

    def lookup(kind: str, name: str) -> dict[str, Any] | None:
        return objects.get((kind, name))

    observed, _ = observe(
        service, "web", lookup, lambda n: slices.get(n, []), lookup, "web-preview"
    )
    return observed


def test_the_preview_twins_replica_set_is_learned_from_the_preview() -> None:
    # Before: only the main Service's endpoints named it, so a preview twin's
    # analysis matched every pod the twin ever had, not its revision's own.
    observed = _previewing(["web-green-7c9f-ccccc", "web-green-7c9f-ddddd"])
    assert observed.preview_endpoints == 2 and observed.twins["green"].endpoints == 0
    assert observed.twins["blue"].replica_set == "web-blue-5d4f"
    assert observed.twins["green"].replica_set == "web-green-7c9f"


def test_while_invalid_the_size_follows_the_hpa_and_the_team_never_a_false_degraded() -> None:
    # What still runs while invalid must neither fight the HPA's copy nor
    # call the twin it sized short of pods.
    invalid = SpecError("canary.io/interval", "'30x' is not a duration")
    world = World(hpa=Autoscaler("web", min_replicas=2)).adopted(BG)
    assert world.copies == {"blue"}
    world.autoscale(6)
    world.step(invalid, advance=1)
    world.autoscale(3)
    plan = world.step(invalid, advance=1)
    assert not [a for a in plan.actions if isinstance(a, ScaleTwin)], plan.actions
    assert world.state.replicas == 3 and "Degraded" not in world.reasons()
    # Without an HPA, a sync that scales the source sets the team's size: the
    # stable twin follows it, and the Event says what runs.
    plain = World().adopted(BG)
    plain.source = replace(plain.source, replicas=5)
    for _ in range(3):
        plain.step(invalid, advance=1)
    assert plain.twins["blue"].replicas == 5 and "Degraded" not in plain.reasons()
    assert not plain.state.scaled_from


def test_a_preview_reset_by_a_sync_never_counts_the_stable_pods_as_the_previews() -> None:
    # A sync applies the team's own preview Service (selector app=web, as
    # the README allows) as the preview passes: its EndpointSlice lists the
    # stable twin's 3 pods, none of the canary's (one has just turned
    # unready; the Deployment's readyReplicas still says 3). Before, those
    # were counted as the preview's, and the flip put all production on the
    # green pods in the very cycle that put the preview back on them.
    world = previewing()
    reset = replace(world.observed(), preview_selector={"app": "web"}, preview_endpoints=3)
    plan = decide(BG, world.state, reset, result(Verdict.PASS), world.now + 10)
    assert ApplyPreview({"app": "web", TWIN_LABEL: "green"}) in plan.actions
    assert not [a for a in plan.actions if isinstance(a, SetSelector)], plan.actions
    assert plan.state.stable == "blue" and plan.state.canary == "green"
    # Back on the green twin with its 3 pods listed, it flips.
    world.step(BG, result(Verdict.PASS), advance=10)
    assert world.selector == {"app": "web", TWIN_LABEL: "green"}


def test_scale_down_delay_edited_within_the_window_is_the_windows_new_length() -> None:
    # On-call lengthens scale-down-delay right after a flip, to keep the
    # abort back to the old twin open while they watch. Before, the window
    # kept the length it had at the flip: the old twin went at 60 s, and the
    # abort at 120 s found nothing to flip back to.
    short = spec(strategy="blue-green", scale_down_delay="60s")
    world = previewing()
    world.step(short, result(Verdict.PASS), advance=10)
    assert world.selector[TWIN_LABEL] == "green" and world.state.scale_down == "blue"
    longer = spec(strategy="blue-green", scale_down_delay="10m")
    world.step(longer, advance=10)
    world.step(longer, advance=110)
    assert world.twins["blue"].replicas == 3 and world.state.scale_down == "blue"
    world.action = "abort t1"
    world.step(longer, advance=1)
    assert world.selector[TWIN_LABEL] == "blue" and world.state.failed_revision == "r2"
    # Shortened to 0, the old twin goes now, as after a promotion with no delay.
    world = previewing()
    world.step(short, result(Verdict.PASS), advance=10)
    none = spec(strategy="blue-green", scale_down_delay="0s")
    world.settle(none)
    assert world.twins["blue"].replicas == 0 and world.state.scale_down is None


def test_the_abort_window_is_not_rewritten_for_the_moment_its_record_took() -> None:
    """The history records the promotion a moment after the decision that set
    the window (the shell writes it): read back, that moment alone rewrote
    the window, one status write more per promotion (bench.peers: 17.5 ->
    19 writes per promoted rollout)."""
    short = spec(strategy="blue-green", scale_down_delay="60s")
    world = previewing()
    world.step(short, result(Verdict.PASS), advance=10)
    assert world.state.scale_down == "blue"
    for entry in world.records:
        if entry.get("outcome") == "promoted":
            entry["ended"] = float(entry["ended"]) + 0.05
    before = world.state
    world.step(short, advance=1)
    assert world.state.scale_down_at == before.scale_down_at


def test_a_stale_preview_slice_never_counts_the_stable_pods_as_the_previews() -> None:
    # The cycle after the preview was put back on the green twin (a sync, or
    # on-call pointing it at blue to compare): its selector names green, but
    # the EndpointSlice controller has not caught up and the slice still
    # lists the blue pods. Before, those 2 counted as the preview's ready
    # endpoints, and with the green Deployment's readyReplicas (stale too:
    # a pod just turned unready) the flip went on pods nobody saw serve.
    observed = _previewing(["web-blue-5d4f-aaaaa", "web-blue-5d4f-bbbbb"])
    assert observed.preview_endpoints == 0
    # Once the slice lists the green pods, they count.
    observed = _previewing(["web-green-7c9f-ccccc", "web-green-7c9f-ddddd"])
    assert observed.preview_endpoints == 2


def test_a_port_added_to_the_service_mid_preview_is_previewed_before_the_flip() -> None:
    # The team adds a port to the Service while the preview is analysed: our
    # own preview lacks it (observed as preview_ports_stale). Before, the flip
    # went on the preview's old ports, where a release whose pods lack the
    # new port's container port looks reachable (a port the preview lacks is
    # not asked for). Now the preview takes the Service's ports first, and
    # its endpoints count once it has them.
    world = previewing()
    stale = replace(world.observed(), preview_ports_stale=True)
    plan = decide(BG, world.state, stale, result(Verdict.PASS), world.now + 10)
    assert ApplyPreview({"app": "web", TWIN_LABEL: "green"}) in plan.actions, plan.actions
    assert not [a for a in plan.actions if isinstance(a, SetSelector)], plan.actions
    assert plan.state.stable == "blue" and plan.state.canary == "green"
    world.step(BG, result(Verdict.PASS), advance=10)
    assert world.selector == {"app": "web", TWIN_LABEL: "green"}


def test_only_our_own_previews_ports_are_stale() -> None:
    http = {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    grpc = {"name": "grpc", "port": 9090, "targetPort": "grpc", "protocol": "TCP"}
    service = {
        "metadata": {"name": "web", "namespace": "ns", "uid": "u", "annotations": {}},
        "spec": {"selector": {"app": "web", TWIN_LABEL: "blue"}, "ports": [http, grpc]},
    }

    def seen(owner: str, ports: list[dict[str, Any]]) -> bool:
        preview = {
            "metadata": {"name": "web-preview", "ownerReferences": [{"uid": owner}]},
            "spec": {"selector": {"app": "web", TWIN_LABEL: "green"}, "ports": ports},
        }
        objects = {
            ("Deployment", "web-blue"): _deployment("web-blue", 2, "r1"),
            ("Service", "web-preview"): preview,
        }
        observed, _ = observe(
            service,
            "web",
            lambda k, n: objects.get((k, n)),
            lambda n: [],
            lambda k, n: objects.get((k, n)),
            "web-preview",
        )
        return observed.preview_ports_stale

    assert seen("u", [http])
    assert not seen("u", [http, grpc])
    assert not seen("u", [{**http, "nodePort": 30080}, grpc])  # on-call made it a NodePort
    assert not seen("someone-else", [http])  # a team's own preview keeps its ports


class _PreviewNotTaking(World):
    """The preview Service's write never takes: its creation refused (a
    namespace quota on Services, an admission policy), or its selector put
    back each time by another writer. Everything else lands."""

    def _land(self, action: Any) -> None:
        if not isinstance(action, ApplyPreview):
            super()._land(action)


def test_a_preview_that_never_takes_is_rolled_back_at_the_deadline_not_waited_on_for_good() -> None:
    # Before: once the green pods were ready, every cycle decided the preview
    # write again and, "pointing the preview at them in this very decision",
    # skipped the progress deadline: 330 s past a 60 s deadline the rollout
    # still said "waiting for the canary's endpoints", woke every second, and
    # kept a full-size twin nobody could preview, for good.
    deadline = spec(strategy="blue-green", progress_deadline="60s")
    world = _PreviewNotTaking().adopted(deadline)
    world.source = replace(world.source, revision="r2")
    for _ in range(12):
        world.step(deadline, advance=30)
    assert world.state.canary is None and world.state.failed_revision == "r2", world.state.message
    assert world.twins["green"].replicas == 0
    assert world.selector == {"app": "web", TWIN_LABEL: "blue"}
    rolled = [e for e in world.events if e.reason == "RolledBack"]
    assert rolled and "web-preview" in rolled[0].message, rolled
    # A write that takes is still waited on as its endpoints follow, just
    # past the deadline: the pods got ready late, as the preview was deleted.
    world = World().adopted(deadline)
    world.source = replace(world.source, revision="r2")
    world.stall(True)
    world.step(deadline, advance=1)
    world.step(deadline, advance=58)
    world.stall(False)
    world.preview = None
    plan = world.step(deadline, advance=3)
    assert ApplyPreview({"app": "web", TWIN_LABEL: "green"}) in plan.actions, plan.actions
    assert world.state.canary == "green", world.state.message
    world.step(deadline, advance=1)
    assert world.state.canary == "green" and world.state.step_ready, world.state.message


def test_a_preview_not_taking_is_not_blamed_for_pods_that_never_got_ready() -> None:
    # The preview's write fails as the green pods crash: what is missing is
    # pods, and the rollback says so. Blaming the preview Service (a quota,
    # a policy) sent on-call after a Service for a release that crashes.
    deadline = spec(strategy="blue-green", progress_deadline="60s")
    world = _PreviewNotTaking().adopted(deadline)
    world.source = replace(world.source, revision="r2")
    world.pending = {"green"}
    for _ in range(12):
        world.step(deadline, advance=30)
    assert world.state.canary is None and world.state.failed_revision == "r2", world.state.message
    rolled = [e for e in world.events if e.reason == "RolledBack"]
    assert rolled and "pods ready" in rolled[0].message, rolled
    assert "does not take" not in rolled[0].message, rolled


class _SelectorNotTaking(World):
    """The Service's selector write never takes (another writer puts it
    back each time, a policy refuses it) once `refusing`. Everything else
    lands."""

    refusing = False

    def _land(self, action: Any) -> None:
        if not (self.refusing and isinstance(action, SetSelector)):
            super()._land(action)


def test_a_canary_whose_selector_never_takes_blames_no_preview() -> None:
    # A canary rollout has no preview Service: its rollback at the deadline
    # (ready pods, the selector write never taking) names none.
    quick = spec(steps="25,50", progress_deadline="60s")
    world = _SelectorNotTaking()
    world.adopted(quick)
    world.refusing = True
    world.source = replace(world.source, revision="r2")
    for _ in range(12):
        world.step(quick, advance=30)
    assert world.state.canary is None and world.state.failed_revision == "r2", world.state.message
    rolled = [e for e in world.events if e.reason == "RolledBack"]
    assert rolled and "preview" not in rolled[0].message, rolled
