"""A later step waits for its extra pods while the canary's pods already
serve at the weight of the step before: minutes for an image pull, and
without end while the kube-controller-manager is down (its lag holds the
progress deadline). A canary that turns bad in that wait used to serve its
errors unjudged until the step was ready (analysis_due asked nothing while
`step_ready` was 0). Fast looks now go on through the wait, failure-only.

The same for a step that served and then lost a pod (a crash is what bad
releases do): only a failure already waiting to be confirmed was looked at,
so the errors of the pods that kept serving went unjudged until the pod came
back or the progress deadline."""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

import pytest

from analysis.verdicts import Verdict
from canary.model import Checked
from canary.schedule import analysis_due
from canary.spec import RolloutSpec
from tests.unit.test_decide import release
from tests.unit.test_standing_still import SlowCanary, _drive
from tests.unit.world import result, spec

W = TypeVar("W", bound=SlowCanary)  # a SlowCanary world of any kind
STRICT = spec(steps="25,50", failure_limit="0")
TOLERANT = spec(steps="25,50", failure_limit="1")


def first_step_serving(the_spec: RolloutSpec, world: W) -> W:
    """`world` adopted, released, and its canary's first step serving."""
    world.adopted(the_spec)
    release(world)
    world.settle(the_spec)
    # The revision's ReplicaSet, which observe learns once its pods serve.
    world.twins["green"] = replace(world.twins["green"], replica_set="web-green-5d8f")
    world.settle(the_spec)
    assert world.state.canary_pods == "web-green-5d8f" and world.state.step_ready
    return world


def _growing(the_spec: RolloutSpec, pause: bool = False) -> SlowCanary:
    """Step 1 passed; step 2's extra pods never come up; the pods of step 1
    keep serving."""
    world = first_step_serving(the_spec, SlowCanary())
    assert world.state.requested_weight == 25
    world.cap = world.twins["green"].replicas
    world.step(the_spec, result(Verdict.PASS), advance=10)
    world.settle(the_spec)
    assert world.state.step == 1 and not world.state.step_ready, world.state
    assert world.twins["green"].replicas > world.cap  # asked for more than can come up
    if pause:
        world.action = "pause"
        world.step(the_spec, advance=1)
        assert world.state.paused
    return world


@pytest.mark.parametrize("pause", [False, True], ids=["moving", "paused"])
def test_a_canary_that_turns_bad_while_its_step_grows_is_rolled_back(pause: bool) -> None:
    world = _growing(STRICT, pause)
    started = world.now
    kinds = _drive(STRICT, world, Verdict.FAIL, 60)
    assert world.state.canary is None, "a failing canary served on while its step grew"
    assert "AnalysisFailed" in world.reasons() and world.state.stable == "blue"
    assert world.now - started <= 3 * world.scrape, world.now - started
    assert set(kinds) == {"fast"}  # failure-only: no step passes while it grows


def test_passing_looks_while_a_step_grows_pass_nothing() -> None:
    world = _growing(STRICT)
    kinds = _drive(STRICT, world, Verdict.PASS, 60)
    assert kinds and set(kinds) == {"fast"}
    assert world.state.canary == "green" and world.state.step == 1
    assert not world.state.step_ready and not world.state.promoting
    # Once the pods are there the step is judged as any step is: a whole
    # interval of its own from when it serves at its weight.
    world.cap = 0
    world.settle(STRICT)
    ready = world.state.step_ready
    assert ready and analysis_due(STRICT, world.state, world.now, world.scrape) is None
    world.step(STRICT, result(Verdict.PASS), advance=10)
    world.settle(STRICT)
    assert world.state.stable == "green" and "Promoted" in world.reasons()


def test_a_tolerated_failure_while_a_step_grows_counts_and_the_step_is_checked_again() -> None:
    world = _growing(TOLERANT)
    failing = result(Verdict.FAIL, "success-rate = 50")
    world.step(TOLERANT, Checked("fast", failing, world.now + 1), advance=1)
    assert world.state.fast_failed and world.state.failed == 0  # one scrape: suspect
    world.step(TOLERANT, Checked("fast", failing, world.now + world.scrape), advance=world.scrape)
    assert world.state.failed == 1 and world.state.canary == "green"
    assert "AnalysisFailed" in world.reasons()
    world.cap = 0
    world.settle(TOLERANT)
    assert world.state.step_ready and world.state.recheck  # re-checked soon once it serves


def test_the_first_step_is_not_looked_at_before_its_pods_serve() -> None:
    # Its pods have served nothing yet: a look could only read no data.
    world = _growing(STRICT)
    later = world.now + 30
    assert analysis_due(STRICT, world.state, later, world.scrape) is not None
    first = replace(world.state, step=0)
    assert analysis_due(STRICT, first, later, world.scrape) is None
    # Nor a blue-green preview (no production traffic), nor a halted rollout.
    assert analysis_due(STRICT, replace(world.state, requested_weight=0), later, 5.0) is None
    halted = replace(world.state, halted="no data", halt_kind="no-data")
    assert analysis_due(STRICT, halted, later, world.scrape) is None


def test_a_step_that_lost_a_pod_has_the_pods_that_serve_looked_at() -> None:
    one_step = spec(steps="50", failure_limit="0")
    world = first_step_serving(one_step, SlowCanary())
    world.cap = world.twins["green"].replicas - 1  # one canary pod crashes
    world.step(one_step, advance=1)
    assert world.state.unready_since and "waiting for the canary" in world.state.message
    started = world.now
    kinds = _drive(one_step, world, Verdict.FAIL, 60)
    assert world.state.canary is None and "AnalysisFailed" in world.reasons()
    assert world.now - started <= 3 * world.scrape and set(kinds) == {"fast"}


def test_passing_looks_at_a_step_that_lost_a_pod_pass_nothing_and_keep_its_message() -> None:
    world = _growing(STRICT)
    world.cap = 0
    world.settle(STRICT)
    assert world.state.step == 1 and world.state.step_ready
    world.cap = world.twins["green"].replicas - 1
    world.step(STRICT, advance=1)
    assert world.state.unready_since
    kinds = _drive(STRICT, world, Verdict.PASS, 60)
    assert kinds and set(kinds) == {"fast"}
    assert world.state.canary == "green" and not world.state.promoting
    assert "waiting for the canary" in world.state.message, world.state.message


def test_a_promote_asked_while_a_step_grows_keeps_its_failures_looked_at() -> None:
    # `canary promote` during the wait: the promotion waits for its pods too,
    # with the canary serving at the step before's weight (found by review:
    # no look was due while it waited).
    world = _growing(STRICT)
    world.action = "promote"
    world.step(STRICT, advance=1)
    assert world.state.promoting and not world.state.step_ready
    kinds = _drive(STRICT, world, Verdict.FAIL, 30)
    assert world.state.canary is None, ("unjudged through the promotion's wait", kinds)
    assert "AnalysisFailed" in world.reasons() and set(kinds) == {"fast"}


def test_a_step_that_serves_after_a_failure_counted_in_its_wait_says_it_analyses() -> None:
    # A failure counted in the wait sets `checked` before the step serves;
    # the status then said "waiting for the canary" while every pod served.
    world = _growing(TOLERANT)
    failing = result(Verdict.FAIL, "success-rate = 50")
    world.step(TOLERANT, Checked("fast", failing, world.now + 1), advance=1)
    world.step(TOLERANT, Checked("fast", failing, world.now + world.scrape), advance=world.scrape)
    assert world.state.failed == 1 and world.state.checked
    world.step(TOLERANT, advance=1)
    world.cap = 0
    world.settle(TOLERANT)
    world.step(TOLERANT, advance=0.5)
    assert world.state.step_ready and world.state.canary == "green"
    assert "waiting for the canary" not in world.state.message, world.state.message
