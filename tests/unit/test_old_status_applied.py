"""An old `canary.io/status` applied again: a Service manifest exported with
`kubectl get -o yaml` (status and selector of that moment) and applied by a
GitOps tool or `kubectl replace`, or the Service restored from a backup. The
status is valid and consistent, only old. Trusted, it put traffic back on the
twin that served then: that twin was scaled up again, the Service pointed at
it, and the revision that serves now rolled out anew through every step,
while the old revision took traffic nobody had analysed since (sandbox:
`tests/integration/test_outages.py`)."""

from __future__ import annotations

import json
from dataclasses import replace

from analysis.verdicts import Verdict
from canary.model import ScaleTwin, SetSelector, State
from canary.observe import observe
from canary.spec import STATUS, TWIN_LABEL
from canary.status_writes import read_state
from tests.unit.world import World, result, spec

CANARY = spec(steps="50", scale_down_delay="0s")


def _service(status: State, manager: str | None) -> dict[str, object]:
    meta: dict[str, object] = {
        "name": "web",
        "namespace": "ns",
        "annotations": {STATUS: json.dumps(status.to_json())},
    }
    if manager is not None:
        meta["managedFields"] = [
            {
                "manager": "canary-controller",
                "operation": "Update",
                "time": "2026-11-30T10:00:00Z",
                "fieldsV1": {"f:spec": {"f:selector": {}}},
            },
            {
                "manager": manager,
                "operation": "Update",
                "time": "2026-11-30T11:00:00Z",
                "fieldsV1": {"f:metadata": {"f:annotations": {f"f:{STATUS}": {}}}},
            },
        ]
    return {"metadata": meta, "spec": {}}


def test_a_status_another_manager_wrote_is_not_trusted() -> None:
    state = State(stable="blue", stable_revision="r1", replicas=3, adopted=True)
    kept, lost = read_state(_service(state, "canary-controller"))
    assert kept == state and lost == ""
    kept, lost = read_state(_service(state, None))  # managedFields stripped: unknown
    assert kept == state and lost == ""
    for manager in ("kubectl-client-side-apply", "argocd-controller", "velero-server"):
        kept, lost = read_state(_service(state, manager))
        assert kept == State() and manager in lost, lost


def promoted_r2() -> tuple[World, State]:
    """r2 promoted onto green, blue scaled down; and the status of before."""
    world = World().adopted(CANARY)
    exported = world.state
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    world.step(CANARY, result(Verdict.PASS), advance=20)
    world.settle(CANARY)
    assert world.state.stable == "green" and world.state.stable_revision == "r2"
    assert world.twins["blue"].replicas == 0 and world.selector[TWIN_LABEL] == "green"
    return world, exported


def test_an_old_status_applied_with_its_old_selector_never_brings_the_old_twin_back() -> None:
    world, exported = promoted_r2()
    world.state = exported  # stable: blue at r1, Healthy
    world.selector = {"app": "web", TWIN_LABEL: "blue"}  # the export's selector
    world.lost = "last written by kubectl-client-side-apply, not by the controller"
    world.events.clear()
    plan = world.step(CANARY, advance=1)
    assert world.state.stable == "green" and world.state.stable_revision == "r2"
    assert world.state.canary is None
    assert not any(isinstance(a, ScaleTwin) and a.color == "blue" for a in plan.actions)
    assert SetSelector({"app": "web", TWIN_LABEL: "green"}) in plan.actions
    rebuilt = [e.message for e in world.events if e.reason == "StateRebuilt"]
    assert rebuilt and "the Service selector named the blue twin" in rebuilt[0], rebuilt
    world.lost = ""
    world.settle(CANARY)
    assert world.twins["blue"].replicas == 0 and world.state.canary is None
    assert "RolloutStarted" not in [e.reason for e in world.events]


def test_a_status_an_applier_set_to_the_value_we_wrote_stays_trusted() -> None:
    """A server-side apply of the very value we wrote makes the applier a
    co-owner, not the writer: the controller still owns it (a plain write
    of another value would have taken it over)."""
    state = State(stable="blue", stable_revision="r1", replicas=3, adopted=True)
    service = _service(state, "argocd-controller")
    fields = service["metadata"]["managedFields"]  # type: ignore[index]
    fields[0]["fieldsV1"] = {"f:metadata": {"f:annotations": {f"f:{STATUS}": {}}}}
    kept, lost = read_state(service)
    assert kept == state and lost == ""


def test_a_claim_someone_else_wrote_is_no_evidence_of_what_serves() -> None:
    from canary.observe import claim_of
    from canary.spec import CLAIM_STABLE, MANAGED_BY

    deployment: dict[str, object] = {
        "metadata": {
            "name": "web",
            "annotations": {MANAGED_BY: "web", CLAIM_STABLE: "r1"},
            "managedFields": [
                {
                    "manager": "kubectl-client-side-apply",
                    "operation": "Update",
                    "fieldsV1": {"f:metadata": {"f:annotations": {f"f:{CLAIM_STABLE}": {}}}},
                }
            ],
        }
    }
    claim = claim_of(deployment)
    assert claim.service == "web" and claim.stable_revision == ""
    deployment["metadata"]["managedFields"][0]["manager"] = "canary-controller"  # type: ignore[index]
    assert claim_of(deployment).stable_revision == "r1"


def test_the_team_deployment_exported_too_still_never_brings_the_old_twin_back() -> None:
    """The team's Deployment manifest was exported at the same moment (our
    claim on it names r1) and applied with the Service's: the claim is not
    ours any more (claim_of leaves it out), and the old selector names a
    twin at 0 while the other serves."""
    world, exported = promoted_r2()
    world.state = exported
    world.selector = {"app": "web", TWIN_LABEL: "blue"}
    world.source = replace(world.source, claim=replace(world.source.claim, stable_revision=""))
    world.lost = "last written by kubectl-client-side-apply, not by the controller"
    plan = world.step(CANARY, advance=1)
    assert world.state.stable == "green" and world.state.stable_revision == "r2"
    assert not any(isinstance(a, ScaleTwin) and a.color == "blue" for a in plan.actions)
    assert SetSelector({"app": "web", TWIN_LABEL: "green"}) in plan.actions


def test_an_old_export_recreated_after_its_history_went_with_the_service_is_not_followed() -> None:
    """`kubectl delete svc web` then `kubectl apply -f` of an old export (a
    backup of the Service restored): the history is owned by the Service, so
    the garbage collector took it with it (or the same backup brought back
    its old self), and the claim and history no longer agree. The selector
    is the old export's too: kubectl, not the controller, wrote its twin
    key. Followed, it made r1 stable again (blue 0 -> 3, the Service on blue
    with no pod), recorded r1 as serving, wrote r1 into the claim, and rolled
    r2 out anew; the claim on the team's Deployment named r2."""
    for history_left in ("gone", "old"):
        world, exported = promoted_r2()
        if history_left == "old":  # the backup's history: r1 the last served
            world.records = [r for r in world.records if r["revision"] == "r1"]
        else:
            world.records = []
        world.state = exported
        world.selector = {"app": "web", TWIN_LABEL: "blue"}
        world.selector_ours = False
        world.lost = "last written by kubectl-client-side-apply, not by the controller"
        world.events.clear()
        plan = world.step(CANARY, advance=1)
        assert world.state.stable == "green" and world.state.stable_revision == "r2", history_left
        assert not any(isinstance(a, ScaleTwin) and a.color == "blue" for a in plan.actions)
        assert SetSelector({"app": "web", TWIN_LABEL: "green"}) in plan.actions
        assert world.source.claim.stable_revision == "r2"
        world.lost = ""
        world.selector_ours = True
        world.settle(CANARY)
        assert world.twins["blue"].replicas == 0 and world.state.canary is None
        assert "RolloutStarted" not in world.reasons()


def test_a_selector_the_controller_wrote_still_outranks_a_claim_alone() -> None:
    """The flip landed and the claim's update after it did not, then the
    status was lost: the selector, ours, names the promoted twin."""
    world, _ = promoted_r2()
    world.source = replace(world.source, claim=replace(world.source.claim, stable_revision="r1"))
    world.records = []
    world.state = State()
    world.lost = "missing"
    world.step(CANARY, advance=1)
    assert world.state.stable == "green" and world.state.stable_revision == "r2"


def test_who_wrote_the_selectors_twin_key_is_read_from_managed_fields() -> None:
    def ours(*managers: str) -> bool:
        selector: dict[str, object] = {f"f:{TWIN_LABEL}": {}, "f:app": {}}
        twin_key: dict[str, object] = {"f:spec": {"f:selector": selector}}
        service = {
            "metadata": {
                "name": "web",
                "namespace": "ns",
                "managedFields": [{"manager": m, "fieldsV1": twin_key} for m in managers],
            },
            "spec": {"selector": {"app": "web", TWIN_LABEL: "blue"}},
        }
        observed, _ = observe(service, "web", lambda *_: None, lambda _: [], lambda *_: None, "p")
        return observed.selector_ours

    assert ours("canary-controller")
    assert ours()  # managedFields stripped: unknown
    assert ours("argocd-controller", "canary-controller")  # an applier of the same value
    assert not ours("kubectl-client-side-apply")


def test_a_status_whose_owner_the_api_server_merged_away_stays_trusted() -> None:
    """Past 10 Update managers on an object, the API server merges the oldest
    entries into one named `ancient-changes`: a rollout paused for a week on a
    Service that ten other tools and people wrote meanwhile (labels, LB
    annotations, kubectl edit) had our entry merged there. Distrusted, the
    status was rebuilt: the pause was lost, and the rollout started again
    from its first step, on its way to a promotion nobody had asked for."""
    state = State(
        stable="blue",
        stable_revision="r1",
        replicas=3,
        adopted=True,
        canary="green",
        canary_revision="r2",
        step=2,
        paused=True,
    )
    kept, lost = read_state(_service(state, "ancient-changes"))
    assert kept == state and lost == "", lost
    service = {
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "managedFields": [
                {
                    "manager": "ancient-changes",
                    "fieldsV1": {"f:spec": {"f:selector": {f"f:{TWIN_LABEL}": {}}}},
                }
            ],
        },
        "spec": {"selector": {"app": "web", TWIN_LABEL: "green"}},
    }
    observed, _ = observe(service, "web", lambda *_: None, lambda _: [], lambda *_: None, "p")
    assert observed.selector_ours
