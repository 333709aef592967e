"""Two on-call engineers and a GitOps tool at once: requests written back by a
sync, requests on a stale view, requests at awkward moments. Each test failed
on the code before its fix."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from analysis.verdicts import Verdict
from canary import oncall
from canary.model import State
from canary.status_writes import holdable
from tests.unit.test_dashboard_bad_day import IN_FLIGHT, FakeKube, svc
from tests.unit.world import World, result, spec

ONE = spec(steps="50")


def release(world: World, revision: str) -> None:
    world.source = replace(world.source, revision=revision)


def promoted_from_the_cli(world: World, revision: str) -> None:
    """`revision` released, then promoted by on-call with `canary promote`."""
    release(world, revision)
    world.settle(ONE)
    assert world.state.canary_revision == revision
    world.action = f"promote revision={revision} t-{revision}"
    world.step(ONE, advance=1)
    world.settle(ONE)
    assert world.state.stable_revision == revision and world.state.scale_down is not None


def assert_written_back_is_ignored(world: World, git_value: str, revision: str) -> None:
    world.events.clear()
    world.action = git_value  # the sync writes Git's value back
    world.step(ONE, advance=1)
    world.settle(ONE)
    assert world.state.stable_revision == revision, world.reasons()
    assert "Aborted" not in world.reasons()
    ignored = [e for e in world.events if e.reason == "ActionIgnored"]
    assert ignored and f"{git_value!r}" in ignored[0].message


def test_an_abort_in_git_from_the_first_apply_never_aborts_a_release_promoted_since() -> None:
    # The manifest GitOps applies holds `canary.io/action: abort 1` from the
    # start (copied from a runbook). Taken as done when the Service is first
    # seen; written back by the sync after on-call's promote, it is the same
    # old request, not a new one.
    world = World()
    world.action, world.lost = "abort 1", "missing"
    world.adopted(ONE)
    promoted_from_the_cli(world, "r2")
    assert_written_back_is_ignored(world, "abort 1", "r2")


def test_an_abort_in_git_never_aborts_a_release_promoted_after_the_status_was_rebuilt() -> None:
    # Argo CD's Replace=true (or a delete and create) drops the status and
    # puts Git's `abort 1` on the Service: the status is rebuilt and takes it
    # as done. The next ordinary sync after on-call's promote writes it back.
    world = World().adopted(ONE)
    world.action = "abort 1"
    world.step(ONE, advance=1)  # carried out (nothing to abort) and remembered
    world.state = State()
    world.lost = "missing"
    world.step(ONE, advance=1)
    world.settle(ONE)
    assert "StateRebuilt" in world.reasons()
    promoted_from_the_cli(world, "r2")
    assert_written_back_is_ignored(world, "abort 1", "r2")


def test_an_abort_of_an_undo_just_promoted_keeps_the_release_rolled_back_before_it_out() -> None:
    # r2 serves; r3 fails its analysis and is rolled back (the Deployment
    # still asks for it). On-call undoes to #1 (r1), which is promoted; they
    # then abort that promotion. Traffic goes back to r2, and r3, which
    # nobody retried, must not go out again on its own.
    world = World().adopted(ONE)
    _promoted(world, "r2")
    assert world.state.stable_revision == "r2" and world.state.canary is None
    release(world, "r3")
    world.settle(ONE)
    world.fail(ONE)
    world.fail(ONE)
    world.settle(ONE)
    assert world.state.failed_revision == "r3" and world.state.canary is None, world.reasons()
    world.revisions = {1: "r1", 2: "r2", 3: "r3"}
    world.action = "undo 1 t1"
    world.step(ONE, advance=1)
    world.settle(ONE)
    assert world.state.canary_revision == "r1"
    world.step(ONE, result(Verdict.PASS), advance=10)
    world.settle(ONE)
    assert world.state.stable_revision == "r1" and world.state.scale_down is not None
    world.events.clear()
    world.action = "abort revision=r1 t2"
    world.step(ONE, advance=1)
    world.settle(ONE)
    assert world.state.stable_revision == "r2" and "Aborted" in world.reasons()
    assert world.state.canary is None, world.reasons()
    assert "RolloutStarted" not in world.reasons()


def test_an_abort_of_an_undo_of_what_served_goes_back_to_it_and_keeps_the_undo_target_out() -> None:
    # r3 was promoted; on-call undoes to #1 (r1), promoted in turn, then
    # aborts that: r3 serves again, and r1 (aborted) is what is held back.
    world = World().adopted(ONE)
    for revision in ("r2", "r3"):
        _promoted(world, revision)
    assert world.state.stable_revision == "r3" and world.state.canary is None
    world.revisions = {1: "r1", 2: "r2", 3: "r3"}
    world.action = "undo 1 t1"
    world.step(ONE, advance=1)
    world.settle(ONE)
    world.step(ONE, result(Verdict.PASS), advance=10)
    world.settle(ONE)
    assert world.state.stable_revision == "r1" and world.state.scale_down is not None
    world.action = "abort revision=r1 t2"
    world.step(ONE, advance=1)
    world.settle(ONE)
    assert world.state.stable_revision == "r3" and world.state.canary is None
    assert world.state.failed_revision == "r1"


# -- a command typed on a view of a rollout that is no longer there ------------------------


def test_the_cli_never_writes_a_request_for_whatever_runs_when_it_sees_nothing_to_act_on() -> None:
    # On-call means to promote r2, which they saw at its last step. By the
    # time they type `canary promote web`, r2 was promoted and CI's r3 has
    # started, its status not written yet (a start is held while its pods
    # come up): the status read says nothing is rolling out. Written without
    # a revision, "promote <time>" was taken for r3 and shipped it with no
    # check of its own; the CLI printed "promote requested" (exit 0).
    healthy = {**IN_FLIGHT, "phase": "Healthy", "canary": None, "canary_revision": ""}
    for verb in ("promote", "abort", "retry"):
        kube = FakeKube(svc(healthy))
        with pytest.raises(oncall.UserError, match=f"nothing to {verb}") as refused:
            asyncio.run(oncall.request(kube, "shop", "web", verb, None))  # type: ignore[arg-type]
        assert "nothing requested" in str(refused.value) and not kube.patches
    # What the controller would do with such a request, for the record: r3
    # started, its status held (not written) while its pods come up.
    world = World().adopted(ONE)
    written = world.state
    release(world, "r3")
    world.pending = {"green"}  # the canary twin
    world.step(ONE, advance=1)
    assert world.state.canary_revision == "r3" and holdable(written, world.state)
    world.pending = set()
    world.action = "promote t1"
    world.step(ONE, advance=1)
    assert world.state.promoting  # (an unpinned request acts on whatever runs)
    # Pinned, the same request is refused by the controller too.
    world = World().adopted(ONE)
    release(world, "r3")
    world.step(ONE, advance=1)
    world.action = "promote revision=r2 t1"
    world.step(ONE, advance=1)
    assert not world.state.promoting and "ActionIgnored" in world.reasons()


def _promoted(world: World, revision: str) -> None:
    """`revision` released, passed and promoted, its scale-down window over."""
    release(world, revision)
    world.settle(ONE)
    world.step(ONE, result(Verdict.PASS), advance=10)
    world.settle(ONE)
    world.step(ONE, advance=400)
    world.settle(ONE)
