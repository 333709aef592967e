"""On-call commands and two actors at once: a request written on what the
status showed, carried out by the controller after something else changed
it (found by review b). Each test failed on the code before its fix."""

from __future__ import annotations

import json
import re
from dataclasses import replace

from analysis.verdicts import Verdict
from canary import oncall
from canary.decide import phase
from canary.model import Phase, State
from canary.spec import ACTION, STATUS
from tests.unit.world import World, result, spec

CANARY = spec(steps="25,50", failure_limit="0")


def _service(state: State, action: str = "") -> dict[str, object]:
    """The Service as the CLI reads it: this status, and a request on it."""
    annotations = {STATUS: json.dumps(state.to_json())}
    if action:
        annotations[ACTION] = action
    return {"metadata": {"name": "web", "namespace": "ns", "annotations": annotations}}


def _halted_canary() -> World:
    world = World().adopted(CANARY)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    world.state = replace(world.state, halted="no data for 3 checks", halt_kind="no-data")
    assert world.state.canary_revision == "r2"
    return world


def _retry_as_the_cli_writes_it(world: World) -> str:
    """`canary retry web`, on the status the CLI reads now."""
    service = _service(world.state)
    pinned = oncall.pin("retry", service, None)
    assert pinned == "r2"
    return oncall.action_value(service, "retry", None, pinned, "2026-12-03T21:00:00.000000Z")


def test_a_retry_of_a_halted_step_never_rolls_the_release_out_again_once_it_is_rolled_back() -> (
    None
):
    """On-call retries the halted step of r2 (traffic stays where it is);
    before the controller takes it, a fast look confirms r2 failing and it
    is rolled back. Before, the retry then matched r2 as the revision
    rolled back (the pin is the same hash) and rolled the release that had
    just failed out again from its first step: a rollout nobody asked for."""
    world = _halted_canary()
    asked = _retry_as_the_cli_writes_it(world)
    world.fail(CANARY)  # r2 fails before the request is taken
    assert world.state.canary is None and world.state.failed_revision == "r2"
    world.events.clear()
    world.action = asked
    world.settle(CANARY)
    assert world.state.canary is None, world.reasons()
    assert world.state.failed_revision == "r2"
    ignored = [e for e in world.events if e.reason == "ActionIgnored"]
    assert ignored and "rolled back" in ignored[0].message, world.reasons()
    # Asked again on what the status shows now, it rolls r2 out again.
    world.action = _retry_text_for_rolled_back(world)
    world.settle(CANARY)
    assert world.state.canary_revision == "r2", world.reasons()


def _retry_text_for_rolled_back(world: World) -> str:
    service = _service(world.state)
    pinned = oncall.pin("retry", service, None)
    assert pinned == "r2"
    return oncall.action_value(service, "retry", None, pinned, "2026-12-03T21:05:00.000000Z")


async def test_a_retry_confirmed_on_the_dashboard_for_a_step_is_refused_once_rolled_back() -> None:
    """The confirmation said "step 2 of r2 is analysed again; traffic stays
    as it is"; r2 was rolled back before the click. Before, the form's
    revision still matched (r2, now the one rolled back) and the click
    wrote a retry that rolled r2 out again from its first step."""
    from aiohttp.test_utils import TestClient, TestServer

    from canary.dashboard import app as dashboard
    from tests.unit.test_dashboard_bad_day import IN_FLIGHT, OWN, FakeKube, loaded_site, svc

    halted = {**IN_FLIGHT, "halted": "no data for 3 checks", "halt_kind": "no-data"}
    kube = FakeKube(svc(halted))
    site = loaded_site(kube)
    client = TestClient(TestServer(dashboard.application(site)))
    await client.start_server()
    try:
        page = await (await client.get("/s/shop/web/confirm/retry", headers=OWN)).text()
        form = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page))
        assert form["revision"] == "bbbbbbbbbb" and form["step"] == "2", form
        rolled_back = {
            **IN_FLIGHT,
            "canary": None,
            "canary_revision": "",
            "failed_revision": "bbbbbbbbbb",
        }
        kube.service = svc(rolled_back)  # a fast look confirmed it failing meanwhile
        posted = await client.post(
            "/s/shop/web/actions", data=form, headers=OWN, allow_redirects=False
        )
        assert posted.status == 404 and not kube.patches, kube.patches
        assert "no longer rolling out" in await posted.text()
    finally:
        await client.close()
    # Asked on what the status shows now (no step), it is written.
    value = await oncall.request(
        kube,  # type: ignore[arg-type]
        "shop",
        "web",
        "retry",
        None,
        "canary-cli-bob",
        "bbbbbbbbbb",
    )
    assert value.startswith("retry revision=bbbbbbbbbb 2") and "step=" not in value
    assert len(kube.patches) == 1


# -- an undo to the revision the Deployment holds ------------------------------------------------


def test_an_undo_to_the_release_rolled_back_that_is_promoted_is_not_said_rolled_back() -> None:
    """r2 is rolled back (a flaky metric); on-call asks `canary undo --to 2`
    to ship it anyway, and it passes and is promoted. Before, the undo took
    the Deployment's revision, r2 itself, as the one it moved away from:
    once promoted, r2 was kept out while it served, the status said "the
    undo to revision r2 was rolled back; serving revision r2", and `canary
    status -o json` gave a `rolled_back` block for a Healthy Service."""
    strict = spec(steps="50", failure_limit="0")
    world = World().adopted(strict)
    world.source = replace(world.source, revision="r2")
    world.settle(strict)
    world.fail(strict)
    assert world.state.failed_revision == "r2" and world.state.stable_revision == "r1"
    world.revisions = {1: "r1", 2: "r2"}
    world.action = "undo 2 t1"
    world.step(strict, advance=1)
    world.settle(strict)
    assert world.state.canary_revision == "r2"
    world.step(strict, result(Verdict.PASS), advance=10)
    world.settle(strict, cycles=20)
    world.step(strict, advance=400)
    world.settle(strict)
    assert world.state.stable_revision == "r2" and world.state.canary is None
    assert phase(strict, world.state) is Phase.HEALTHY
    assert world.state.failed_revision == "", world.state
    assert "rolled back" not in world.state.message, world.state.message
