"""Two on-call engineers and a GitOps tool at once: requests written back by a
sync, requests on a stale view, requests at awkward moments. Each test failed
on the code before its fix."""

from __future__ import annotations

from dataclasses import replace

from canary.model import State
from tests.unit.world import World, spec

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
