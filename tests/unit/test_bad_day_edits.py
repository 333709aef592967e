"""Bad-day sequences a review found (2026-11-30): a selector set to the
canary while the rollout stands still, an interval lengthened or a
failure-limit lowered under a check or a promotion in flight. Each test failed before its
fix. (The same review's fourth finding, a team's scale-up the cluster has no
room for yet rolling a good release back at its progress deadline, is open.)"""

from __future__ import annotations

from dataclasses import replace

import pytest

from analysis.verdicts import Verdict
from canary.model import Checked, Observed
from canary.spec import TWIN_LABEL, RolloutSpec
from tests.unit.world import World, result, spec

CANARY = spec(steps="25,50")
ONE = spec(steps="25")


def release(world: World, revision: str = "r2") -> None:
    world.source = replace(world.source, revision=revision)


def serving_canary(the_spec: RolloutSpec, world: World | None = None) -> World:
    world = (world or World()).adopted(the_spec)
    release(world)
    world.settle(the_spec)
    assert world.state.step_ready
    return world


def canary_share(world: World) -> float:
    """The canary twin's share of the Service's ready endpoints."""
    obs, c = world.observed(), world.state.canary
    total = sum(t.endpoints for t in obs.twins.values())
    return obs.twins[c].endpoints / total if c and total else 0.0


# 1 -- a selector pointed at the canary is never put back while the rollout stands still


@pytest.mark.parametrize("held_by", ["pause", "annotation", "halt", "gate", "kubectl-pause"])
def test_selector_edited_to_the_canary_while_the_rollout_stands_still_is_put_back(
    held_by: str,
) -> None:
    world = serving_canary(CANARY)  # r2 at 25 %: 1 green pod beside 3 blue
    held = CANARY
    if held_by == "pause":
        world.action = "pause t1"
    elif held_by == "annotation":
        held = spec(steps="25,50", paused="true")
    elif held_by == "halt":
        world.state = replace(world.state, halted="no data", halt_kind="no-data")
    elif held_by == "gate":
        world.state = replace(
            world.state, gate_wait="pre-step", gate_checked=world.now, gate_reason="closed"
        )
        held = spec(
            steps="25,50",
            analysis="gates: [{name: approve, when: pre-step, url: 'http://127.0.0.1:1/x'}]",
        )
    else:
        world.source = replace(world.source, paused=True, paused_by="kubectl-rollout")
    world.step(held, advance=1)
    # a hand `kubectl patch`, or a sync of a manifest exported while green was stable
    world.selector = {"app": "web", TWIN_LABEL: "green"}
    for _ in range(5):
        world.step(held, advance=5)
    assert canary_share(world) <= 0.25, (world.selector, world.state.message)
    assert "SelectorRestored" in world.reasons(), world.reasons()


# 2 -- a scale-up the cluster has no room for yet rolls the release back


class Capped(World):
    """Pods beyond `cap` per twin stay Pending (no node fits yet)."""

    def __init__(self) -> None:
        super().__init__()
        self.cap: dict[str, int] = {}

    def observed(self) -> Observed:
        obs = super().observed()
        twins = {
            c: replace(t, ready=min(t.ready, n), endpoints=min(t.endpoints, n))
            if (n := self.cap.get(c)) is not None
            else t
            for c, t in obs.twins.items()
        }
        return replace(obs, twins=twins, endpoints=sum(t.endpoints for t in twins.values()))


def test_a_scale_up_that_waits_for_nodes_does_not_roll_the_release_back() -> None:
    capped = Capped()
    world = serving_canary(CANARY, capped)
    assert world is capped
    capped.cap = {"blue": 3, "green": 1}  # no room for one more pod, of either twin
    world.source = replace(world.source, replicas=12)  # kubectl scale --replicas=12 (load)
    world.step(CANARY, advance=1)
    world.settle(CANARY)
    assert world.state.replicas == 12
    for _ in range(8):
        world.step(CANARY, advance=100)  # the cluster autoscaler takes 800 s
    assert "ProgressDeadlineExceeded" not in world.reasons(), world.state.message
    assert world.state.failed_revision != "r2"
    assert "the cluster has no room yet" in world.state.message, world.state.message
    # Nodes added: the stable twin grows; the canary still has none of its
    # new pods: it gets its deadline from then, not from the step's start.
    capped.cap = {"green": 1}
    world.step(CANARY, advance=1)
    world.step(CANARY, advance=1)
    assert "ProgressDeadlineExceeded" not in world.reasons(), world.state.message
    world.step(CANARY, advance=CANARY.progress_deadline + 1)
    assert "ProgressDeadlineExceeded" in world.reasons(), world.state.message


def test_a_canary_short_of_pods_while_the_app_is_whole_is_still_rolled_back() -> None:
    capped = Capped()
    world = serving_canary(CANARY, capped)
    capped.cap = {"green": 1}
    world.source = replace(world.source, replicas=12)
    world.step(CANARY, advance=1)
    world.settle(CANARY)
    for _ in range(8):
        world.step(CANARY, advance=100)
    assert "ProgressDeadlineExceeded" in world.reasons(), world.state.message


def test_a_crashing_canary_is_rolled_back_though_the_app_never_finishes_growing() -> None:
    # (Found by review of the fix above: only the pods the growth added are
    # waited for.)
    capped = Capped()
    world = serving_canary(CANARY, capped)  # r2 at 25 %: 1 green pod beside 3 blue
    # r2's pod starts crash-looping; the team scales 3 -> 4 and the 4th
    # stable pod never fits (a full ResourceQuota, a crash-looping stable pod).
    capped.cap = {"blue": 3, "green": 0}
    world.source = replace(world.source, replicas=4)
    world.step(CANARY, advance=1)
    world.settle(CANARY)
    for _ in range(60):
        world.step(CANARY, advance=100)  # 6000 s: ten progress deadlines
    assert "ProgressDeadlineExceeded" in world.reasons(), world.state.message


def test_growth_while_the_step_serves_in_full_writes_no_deadline_fields() -> None:
    capped = Capped()
    world = serving_canary(CANARY, capped)
    capped.cap = {"blue": 3}  # the stable's new pods take a while; the canary is fine
    world.source = replace(world.source, replicas=4)
    world.step(CANARY, advance=1)
    world.settle(CANARY)
    before = world.state
    for _ in range(6):
        world.step(CANARY, advance=5)
    assert world.state.lag_from == 0.0, "a durable write for growth the canary does not wait on"
    capped.cap = {}
    world.step(CANARY, advance=1)
    assert (world.state.lag_from, world.state.deadline_from) == (
        before.lag_from,
        before.deadline_from,
    ), (before, world.state)


# 3 -- a check in flight while `interval` is lengthened still passes the step


def test_a_pass_over_less_than_an_interval_lengthened_meanwhile_moves_nothing() -> None:
    world = serving_canary(ONE)  # interval 10s; a check of 10 s is in flight
    longer = spec(steps="25", interval="10m")  # on-call: judge each step for 10 minutes
    ran = Checked("scheduled", result(Verdict.PASS), world.now + 10, interval=10.0)
    world.step(longer, ran, advance=10)
    assert not world.state.promoting, world.reasons()
    assert "PromotionStarted" not in world.reasons()
    # A check scheduled under the new interval passes the step.
    ran = Checked("scheduled", result(Verdict.PASS), world.now + 600, interval=600.0)
    world.step(longer, ran, advance=600)
    assert world.state.promoting or world.state.stable_revision == "r2", world.reasons()


def test_a_pass_under_the_interval_still_asked_moves_the_step() -> None:
    world = serving_canary(ONE)
    ran = Checked("scheduled", result(Verdict.PASS), world.now + 10, interval=10.0)
    world.step(ONE, ran, advance=10)
    assert world.state.promoting or world.state.stable_revision == "r2", world.reasons()


# 4 -- failure-limit lowered below the failures counted, while promoting


def test_failure_limit_lowered_below_the_failures_counted_while_promoting_rolls_back() -> None:
    tolerant = spec(steps="25", failure_limit="1")
    world = serving_canary(tolerant)
    world.state = replace(world.state, failed=1)  # one failed check, tolerated
    world.step(tolerant, result(Verdict.PASS), advance=10)
    assert world.state.promoting  # its new pods come up
    strict = spec(steps="25", failure_limit="0")
    world.step(strict, advance=1)
    world.settle(strict)
    assert "Promoted" not in world.reasons(), world.reasons()
    assert world.state.stable_revision == "r1" and world.state.failed_revision == "r2"
