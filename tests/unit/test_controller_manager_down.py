"""kube-controller-manager down (a control-plane upgrade, its leader lost)
mid-rollout: the API server takes our writes, but no Deployment controller
acts on them, so the canary's next pods never come. That is no fault of the
release. Before, the progress deadline rolled a good release back
(`ProgressDeadlineExceeded`, kept out until someone retried) because the
Deployment controller was away; the twin's generation ahead of its
observedGeneration says so."""

from __future__ import annotations

from dataclasses import dataclass, replace

from analysis.verdicts import Verdict
from canary.model import Observed
from tests.unit.world import World, result, spec, with_twin

CANARY = spec(steps="25,50", progress_deadline="60s", failure_limit="0")


@dataclass
class _ControllerManager(World):
    down: bool = False
    # The canary pods that run while no more come (those of the step before).
    frozen: int | None = None

    def observed(self) -> Observed:
        observed = super().observed()
        if self.frozen is None or self.state.canary is None:
            return observed
        # The scale was taken by the API server; no more pods come.
        return with_twin(
            observed,
            self.state.canary,
            unobserved=self.down,
            ready=self.frozen,
            endpoints=self.frozen,
            updated=True,
        )


def _at_step_two_with_the_controller_manager_down() -> _ControllerManager:
    world = _ControllerManager().adopted(CANARY)
    assert isinstance(world, _ControllerManager)
    world.source = replace(world.source, revision="r2")
    world.settle(CANARY)
    assert world.state.canary == "green" and world.state.step_ready
    world.frozen, world.down = world.twins["green"].replicas, True
    world.step(CANARY, result(Verdict.PASS), advance=11)  # step 1 passes: scale to step 2
    assert world.state.step == 1 and not world.state.step_ready, world.reasons()
    assert world.twins["green"].replicas > world.frozen
    return world


def test_the_deadline_waits_while_the_deployment_controller_is_away() -> None:
    world = _at_step_two_with_the_controller_manager_down()
    for _ in range(30):  # 5 minutes, five deadlines
        world.step(CANARY, advance=10)
    assert world.state.canary == "green", world.reasons()
    assert "ProgressDeadlineExceeded" not in world.reasons()
    assert "has not observed Deployment web-green" in world.state.message, world.state.message
    world.down = False  # back; the pods take 50 s of the 60 s deadline to come
    for _ in range(5):
        world.step(CANARY, advance=10)
    assert world.state.canary == "green", world.reasons()
    world.frozen = None
    world.settle(CANARY)
    assert world.state.step == 1 and world.state.step_ready, world.reasons()


def test_without_the_lag_the_deadline_still_rolls_back() -> None:
    world = _at_step_two_with_the_controller_manager_down()
    world.down = False  # the Deployment controller acts, the pods just never get ready
    for _ in range(8):
        world.step(CANARY, advance=10)
    assert world.state.canary is None and "ProgressDeadlineExceeded" in world.reasons()


def test_a_failure_once_it_is_back_is_judged_as_ever() -> None:
    """While it is away, nothing moves traffic anyway (the EndpointSlice
    controller is away too); once back, the step's pods come and its checks
    judge the canary."""
    world = _at_step_two_with_the_controller_manager_down()
    for _ in range(12):
        world.step(CANARY, advance=10)
    world.down, world.frozen = False, None
    world.settle(CANARY)
    assert world.state.step == 1 and world.state.step_ready
    world.fail(CANARY)
    assert world.state.canary is None and world.state.failed_revision == "r2", world.reasons()


def test_a_restart_during_a_long_controller_manager_outage_does_not_roll_back() -> None:
    """lagging_since is volatile: lost with a restart (or a new leader), the
    first cycle after it sees a lag of 0 s, not past LAG_S, so not_ready_yet
    judges the whole outage against the deadline and rolls a good release back."""
    world = _at_step_two_with_the_controller_manager_down()
    for _ in range(12):  # 2 minutes, twice the deadline, still down
        world.step(CANARY, advance=10)
    assert world.state.canary == "green", world.reasons()
    world.state = replace(world.state, lagging_since=0.0)  # controller restarted
    world.step(CANARY, advance=10)
    assert world.state.canary == "green", world.reasons()
    assert "ProgressDeadlineExceeded" not in world.reasons()


def test_a_new_leader_that_never_saw_the_lag_does_not_roll_back_while_the_twin_is_unobserved() -> (
    None
):
    """kube-controller-manager has been down for two minutes (twice the
    deadline) at step 2, and the leader changes: the status the new leader
    reads has neither lagging_since (volatile) nor lag_from (the old
    leader's write of it did not land before it lost the Lease). Its first
    cycle sees a lag of 0 s, not past LAG_S; judged against the deadline
    from the step's start, the good release was rolled back for the
    cluster's outage. The canary twin is still unobserved: the pods the step
    asked for were never even asked of the cluster, so the deadline waits."""
    world = _at_step_two_with_the_controller_manager_down()
    for _ in range(12):  # 2 minutes, twice the deadline, still down
        world.step(CANARY, advance=10)
    assert world.state.canary == "green", world.reasons()
    world.state = replace(world.state, lagging_since=0.0, lag_from=0.0)  # a new leader
    world.step(CANARY, advance=1)
    assert world.state.canary == "green", world.reasons()
    assert "ProgressDeadlineExceeded" not in world.reasons()
