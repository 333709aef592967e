"""Annotations that parse but name what this Service must not take over
(found by review: each of these took over or broke another object)."""

from __future__ import annotations

from typing import Any

from canary.spec import RolloutSpec, SpecError
from canary.spec_checks import check_against_cluster
from tests.unit.world import spec

SERVICE = {
    "metadata": {"name": "web", "uid": "u-web"},
    "spec": {"selector": {"app": "web", "canary.io/twin": "blue"}},
}


def preview(selector: dict[str, str], **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web-preview", **meta}, "spec": {"selector": selector}}


def refused(result: RolloutSpec | SpecError | None, field: str) -> str:
    assert isinstance(result, SpecError), result
    assert result.field == f"canary.io/{field}"
    return result.message


def test_a_deployment_renamed_after_adoption_is_refused_with_the_way_to_move() -> None:
    # Before: the new Deployment was scaled to 0 and gated as if adopted,
    # the old one left claimed at 0 and its twins unowned.
    moved = spec(deployment="api")
    message = refused(check_against_cluster(moved, SERVICE, "web", None), "deployment")
    assert "manages Deployment web" in message and "canary.io/strategy" in message
    assert check_against_cluster(moved, SERVICE, None, None) == moved  # not adopted yet
    assert check_against_cluster(spec(), SERVICE, "web", None) == spec()


def test_a_preview_that_is_the_service_itself_or_another_apps_is_refused() -> None:
    own = spec(strategy="blue-green", preview_service="web")
    assert "itself" in refused(check_against_cluster(own, SERVICE, "web", None), "preview-service")
    bg = spec(strategy="blue-green")
    other_app = preview({"app": "api"})
    message = refused(check_against_cluster(bg, SERVICE, "web", other_app), "preview-service")
    assert "selects other pods (app=api)" in message
    managed = preview({"app": "web"}, annotations={"canary.io/strategy": "canary"})
    assert "managed by canary" in refused(
        check_against_cluster(bg, SERVICE, "web", managed), "preview-service"
    )


def test_a_preview_this_service_created_or_one_for_the_same_app_is_used() -> None:
    bg = spec(strategy="blue-green")
    ours = preview({"app": "old", "canary.io/twin": "green"}, ownerReferences=[{"uid": "u-web"}])
    assert check_against_cluster(bg, SERVICE, "web", ours) == bg
    teams = preview({"app": "web"})  # pre-created by the team, as Argo Rollouts users do
    assert check_against_cluster(bg, SERVICE, "web", teams) == bg
    assert check_against_cluster(bg, SERVICE, "web", None) == bg  # created when needed
