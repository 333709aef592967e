"""The team's Deployment settings as the twins get them: a twin the API
server refuses is no twin at all (adoption, every release and every
put-back wait on it)."""

from __future__ import annotations

from canary.model import JSON
from canary.twins import twin_deployment
from tests.unit.objects import source_deployment

# apps/v1 defaults an absent progressDeadlineSeconds to this.
DEFAULT_PROGRESS_DEADLINE_S = 600


def refusal(deployment: JSON) -> str:
    """What the API server says of a Deployment's spec, as its validation
    (ValidateDeploymentSpec) does for this rule: "" when it takes it."""
    spec = deployment["spec"]
    deadline = spec.get("progressDeadlineSeconds", DEFAULT_PROGRESS_DEADLINE_S)
    ready = spec.get("minReadySeconds", 0)
    if deadline <= ready:
        return (
            f"spec.progressDeadlineSeconds: Invalid value: {deadline}: "
            "must be greater than minReadySeconds"
        )
    return ""


def slow_to_warm() -> JSON:
    """A team whose pods must stay ready 10 minutes before they count as
    available (a JVM that warms its caches), which the API server takes only
    with a progress deadline above it."""
    source = source_deployment()
    source["spec"].update(minReadySeconds=600, progressDeadlineSeconds=900)
    return source


def test_a_team_deployment_with_a_long_min_ready_gives_twins_the_api_server_takes() -> None:
    source = slow_to_warm()
    assert not refusal(source), "the team's own Deployment is valid"
    twin = twin_deployment(source, "web", "blue", "r1", 3, source["spec"]["template"])
    assert not refusal(twin), (
        f"the twin copies minReadySeconds {twin['spec'].get('minReadySeconds')} but not the "
        f"progress deadline above it: {refusal(twin)}; no twin is ever made"
    )


def test_a_twin_made_while_the_team_deployment_is_gone_is_one_the_api_server_takes() -> None:
    """The team's Deployment deleted (a `replace --force`, a Helm reinstall):
    the other twin is built from a stand-in read off the twin left, which
    must carry the settings that make it valid too."""
    from canary.reconcile import _pseudo_source
    from tests.unit.world import World

    source = slow_to_warm()
    left = twin_deployment(source, "web", "blue", "r1", 3, source["spec"]["template"])
    stand_in = _pseudo_source(
        World().observed(), lambda kind, name: left if name == "web-blue" else None
    )
    assert stand_in is not None
    twin = twin_deployment(stand_in, "web", "green", "r2", 1, source["spec"]["template"])
    assert not refusal(twin), refusal(twin)
