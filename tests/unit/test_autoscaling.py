"""Following a team's HPA onto the stable twin: which HPAs can be followed,
the copy the twin gets, and the sizes a canary and a hand-back use."""

from __future__ import annotations

from typing import Any

import pytest

from canary import autoscaling
from canary.spec import SERVICE_LABEL, TWIN_LABEL

SERVICE = {"metadata": {"name": "web", "namespace": "shop", "uid": "u-1"}}


def hpa(
    name: str = "web",
    target: str = "web",
    kind: str = "Deployment",
    metrics: list[dict[str, Any]] | None = None,
    low: int = 2,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "shop", "labels": labels or {}},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": target},
            "minReplicas": low,
            "maxReplicas": 10,
            "metrics": metrics
            if metrics is not None
            else [{"type": "Resource", "resource": {"name": "cpu"}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}},
        },
    }


def test_only_the_teams_hpas_on_the_source_are_followed_never_our_copies() -> None:
    ours = hpa("web-blue", "web-blue", labels={SERVICE_LABEL: "web"})
    other = hpa("api", "api")
    found = autoscaling.targeting([ours, other, hpa()], "web")
    assert [h["metadata"]["name"] for h in found] == ["web"]


@pytest.mark.parametrize(
    ("found", "reason"),
    [
        ([hpa(kind="StatefulSet")], "scaleTargetRef is a apps/v1 StatefulSet, not a Deployment"),
        ([hpa(metrics=[{"type": "External", "external": {}}])], "metric 1 is of type External"),
        (
            [hpa(metrics=[{"type": "Pods", "pods": {}}, {"type": "Object", "object": {}}])],
            "metric 2 is of type Object",
        ),
        ([hpa("a"), hpa("b")], "2 HPAs target the same Deployment: a, b"),
    ],
)
def test_an_hpa_that_cannot_follow_a_twin_is_refused_with_the_reason(
    found: list[dict[str, Any]], reason: str
) -> None:
    refused = autoscaling.check(found)
    assert refused is not None and reason in refused.reason


def test_per_pod_metrics_are_followed() -> None:
    metrics = [
        {"type": "Resource", "resource": {}},
        {"type": "ContainerResource", "containerResource": {}},
        {"type": "Pods", "pods": {}},
    ]
    assert autoscaling.check([hpa(metrics=metrics)]) is None
    assert autoscaling.check([]) is None


def test_the_stable_twins_copy_keeps_metrics_bounds_and_behaviour_aimed_at_the_twin() -> None:
    team = hpa()
    copy = autoscaling.mirror(team, "web-blue", "blue", SERVICE)
    assert copy["metadata"]["name"] == "web-blue"
    assert copy["metadata"]["labels"] == {SERVICE_LABEL: "web", TWIN_LABEL: "blue"}
    assert copy["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert copy["spec"]["scaleTargetRef"]["name"] == "web-blue"
    for key in ("metrics", "minReplicas", "maxReplicas", "behavior"):
        assert copy["spec"][key] == team["spec"][key]
    assert team["spec"]["scaleTargetRef"]["name"] == "web"  # the team's is untouched


def test_a_changed_team_hpa_or_an_edited_copy_is_written_again() -> None:
    wanted = autoscaling.mirror(hpa(), "web-blue", "blue", SERVICE)
    assert autoscaling.differs(None, wanted)
    assert not autoscaling.differs(wanted, wanted)
    edited = autoscaling.mirror(hpa(low=5), "web-blue", "blue", SERVICE)
    assert autoscaling.differs(edited, wanted)


@pytest.mark.parametrize(
    ("recorded", "live", "size"), [(3, None, 3), (3, 0, 3), (3, 7, 7), (9, 4, 4)]
)
def test_a_canary_is_weighed_against_the_stable_twins_live_size_when_autoscaled(
    recorded: int, live: int | None, size: int
) -> None:
    assert autoscaling.serving_size(recorded, live) == size


@pytest.mark.parametrize(
    ("served", "team", "size"), [(7, None, 7), (7, hpa(low=2), 7), (1, hpa(low=3), 3)]
)
def test_release_hands_back_no_less_than_what_served(
    served: int, team: dict[str, Any] | None, size: int
) -> None:
    assert autoscaling.handback_size(served, team) == size
