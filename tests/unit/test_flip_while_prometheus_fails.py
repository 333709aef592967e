"""The last step passed and the canary grows to full size; the Service flips
to it once its pods are up. Meanwhile Prometheus fails: every fast look
errors and the looks pause an interval each. The automatic flip must not go
over more than two scrapes that no look has read (a canary that turned bad
during the outage was promoted), as an open gate does not
(test_slow_prometheus); a person's `canary promote` goes, and says so.

The driver is the shell with checks answered at once: a look is started
when analysis_due asks for one and handed in the same cycle."""

from __future__ import annotations

from dataclasses import dataclass

from analysis.run import StepResult
from analysis.verdicts import Measurement, Verdict
from canary.looks import clock_text
from canary.model import Checked, Emit
from canary.schedule import analysis_due
from canary.spec import RolloutSpec
from canary.status_writes import durable
from tests.unit.test_decide import release
from tests.unit.test_standing_still import SlowCanary
from tests.unit.world import World, result, spec

# One step at 25 %: one canary pod of three; the promotion grows it to three.
ONE_STEP = spec(steps="25", failure_limit="0")


@dataclass
class Drove:
    looks: list[float]  # when each look was asked for
    waits: list[float | None]  # each cycle's requeue_after


def _drive(
    the_spec: RolloutSpec,
    world: World,
    seconds: float,
    down: bool,
    bad: bool = False,
    tick: float = 0.5,
) -> Drove:
    """Reconcile every `tick` for `seconds` (or until the rollout ends):
    every look errors while Prometheus is `down`, else fails (`bad`) or
    passes."""
    drove = Drove([], [])
    end = world.now + seconds
    while world.now < end and world.state.canary is not None:
        due = analysis_due(the_spec, world.state, world.now, world.scrape, world.phase)
        checked = None
        if due is not None:
            drove.looks.append(world.now)
            verdict = Verdict.ERROR if down else Verdict.FAIL if bad else Verdict.PASS
            reason = "Prometheus: connection refused" if down else "success-rate = 50"
            checked = Checked(due.kind, result(verdict, reason), due.end)
        drove.waits.append(world.step(the_spec, checked).requeue_after)
        world.now += tick
    return drove


def _slow_canary(the_spec: RolloutSpec) -> SlowCanary:
    world = SlowCanary()
    world.adopted(the_spec)
    release(world)
    world.settle(the_spec)
    return world


def _promoting(the_spec: RolloutSpec = ONE_STEP) -> SlowCanary:
    """The last step has passed; the new pods are slow to come up (only the
    one that served the step is ready)."""
    world = _slow_canary(the_spec)
    assert world.state.requested_weight == 25 and world.twins["green"].replicas == 1
    world.cap = 1
    world.step(the_spec, result(Verdict.PASS), advance=10)
    assert world.state.promoting and "PromotionStarted" in world.reasons(), world.reasons()
    return world


def _held_by_an_outage(down_before: float = 60.0, down_after: float = 120.0) -> SlowCanary:
    """Prometheus goes down while the pods come up; they are all ready
    `down_before` seconds later, and it stays down `down_after` more."""
    world = _promoting()
    _drive(ONE_STEP, world, down_before, down=True)
    world.cap = 0
    _drive(ONE_STEP, world, down_after, down=True)
    return world


def _event(world: World, reason: str) -> Emit:
    return next(e for e in world.events if e.reason == reason)


def test_the_automatic_flip_waits_while_prometheus_fails_and_says_why() -> None:
    # Before: the flip went the moment the pods were ready, over a minute
    # and more that no look had read.
    world = _held_by_an_outage()
    assert "Promoted" not in world.reasons(), world.reasons()
    assert world.state.promoting and world.state.stable == "blue"
    message = world.state.message
    assert "no check has read the canary since" in message and "Prometheus failing" in message
    # Since when, not for how long: a count of seconds changed the message,
    # and wrote the status, every 5 s of the wait.
    started = clock_text(world.state.flip_waits)
    assert f"the flip has waited since {started}" in message, message


def test_the_flip_goes_once_prometheus_answers_again() -> None:
    world = _held_by_an_outage()
    back = world.now
    _drive(ONE_STEP, world, 10, down=False)
    assert world.state.stable == "green" and world.state.canary is None, world.reasons()
    promoted = _event(world, "Promoted")
    assert "the flip waited" in promoted.message and not promoted.warning
    assert world.records[-1]["outcome"] == "promoted"
    assert world.now - back <= 12  # the first look answered is at most an interval away


def test_a_canary_that_turned_bad_during_the_outage_is_rolled_back_not_promoted() -> None:
    world = _held_by_an_outage()
    _drive(ONE_STEP, world, 30, down=False, bad=True)
    assert world.state.canary is None and world.state.stable == "blue", world.reasons()
    assert "Promoted" not in world.reasons() and "AnalysisFailed" in world.reasons()


def test_the_waiting_flip_asks_for_a_look_at_once_then_at_the_pace_of_a_failing_prometheus() -> (
    None
):
    world = _promoting()
    _drive(ONE_STEP, world, 60, down=True)
    world.cap = 0
    ready = world.now
    drove = _drive(ONE_STEP, world, 120, down=True)
    # At once: the looks had paused an interval after the last error.
    assert drove.looks and drove.looks[0] - ready <= 1.0, drove.looks
    # Then one look per interval (10 s), not one per cycle: no flood.
    gaps = [b - a for a, b in zip(drove.looks, drove.looks[1:], strict=False)]
    assert gaps and min(gaps) >= 10.0, gaps
    assert len(drove.looks) <= 13, drove.looks
    # And the shell is always told when to come back (nothing else wakes it).
    assert all(w is not None and w <= 11.0 for w in drove.waits), drove.waits


def test_a_controller_restarted_mid_promotion_flips_after_one_look_not_blind() -> None:
    # `looked` is volatile: a restart (or a new leader) has no look at all.
    world = _promoting()
    _drive(ONE_STEP, world, 5, down=False)
    world.state = durable(world.state)  # what the status annotation kept
    world.cap = 0
    world.step(ONE_STEP)  # the pods are ready, no look handed in yet
    assert "Promoted" not in world.reasons(), world.reasons()
    assert "since the controller started" in world.state.message
    due = analysis_due(ONE_STEP, world.state, world.now, world.scrape, world.phase)
    assert due is not None and due.kind == "fast"  # asked for at once: no standing still
    world.step(ONE_STEP, Checked("fast", result(Verdict.PASS), world.now), advance=0.5)
    assert world.state.stable == "green", world.reasons()


def test_an_hour_long_outage_rolls_nothing_back_and_a_pod_restart_then_is_no_deadline() -> None:
    # Prometheus's fault is not the release's: no error counts while the
    # rollout stands, and the progress deadline (600 s) does not count the
    # wait. Before the deadline's basis moved, a pod restarting after the
    # wait rolled back at once (ProgressDeadlineExceeded after 3600 s).
    world = _held_by_an_outage(down_after=3600.0)
    assert world.state.canary == "green" and "RolledBack" not in world.reasons()
    world.cap = 2  # one new pod restarts
    _drive(ONE_STEP, world, 20, down=True, tick=2.0)
    assert world.state.canary == "green", world.reasons()
    assert "RolledBack" not in world.reasons(), world.reasons()
    world.cap = 0
    _drive(ONE_STEP, world, 15, down=False)
    assert world.state.stable == "green", world.reasons()


def test_a_pod_lost_for_good_during_the_wait_still_rolls_back_at_the_deadline() -> None:
    world = _held_by_an_outage()
    world.cap = 2
    lost = world.now
    _drive(ONE_STEP, world, 700, down=True, tick=2.0)
    assert world.state.canary is None and world.state.stable == "blue"
    assert "ProgressDeadlineExceeded" in world.reasons(), world.reasons()
    # Counted from the loss, not from the promotion's start (180 s earlier).
    assert 598 <= world.now - lost <= 605, world.now - lost


def test_an_abort_during_the_wait_takes_the_canary_out_at_once() -> None:
    world = _held_by_an_outage()
    world.action = "abort 1"
    world.step(ONE_STEP, advance=0.5)
    assert world.state.canary is None and world.state.stable == "blue"
    assert world.selector.get("canary.io/twin") == "blue"
    assert "Promoted" not in world.reasons()


def test_a_person_who_promotes_during_the_outage_is_obeyed_and_told_what_was_unread() -> None:
    # `canary promote` overrides a closed gate; it overrides this wait too:
    # the person chose to ship. The Event (a Warning) says how long no look
    # had read the canary.
    world = _held_by_an_outage()
    world.action = "promote 1"
    world.step(ONE_STEP, advance=0.5)
    assert world.state.stable == "green", world.reasons()
    promoted = _event(world, "Promoted")
    assert promoted.warning
    assert "promoted by tester although no check had read the canary for 1" in promoted.message
    assert "the flip waited" in promoted.message


def test_a_promote_asked_at_a_step_while_prometheus_fails_flips_once_the_pods_are_ready() -> None:
    world = _slow_canary(ONE_STEP)
    world.cap = 1
    # Every check errors (counted, within error-limit): none has read the canary.
    _drive(ONE_STEP, world, 30, down=True)
    world.action = "promote"
    world.step(ONE_STEP, advance=0.5)
    assert world.state.promoting and world.state.promote_by == "tester"
    world.cap = 0
    world.step(ONE_STEP, advance=0.5)
    assert world.state.stable == "green", world.reasons()
    promoted = _event(world, "Promoted")
    assert promoted.warning and "no check had read the canary since" in promoted.message


def test_with_prometheus_healthy_the_flip_goes_as_soon_as_the_pods_are_ready() -> None:
    world = _promoting()
    _drive(ONE_STEP, world, 30, down=False)
    world.cap = 0
    world.step(ONE_STEP, advance=0.5)
    assert world.state.stable == "green", world.reasons()
    promoted = _event(world, "Promoted")
    assert "waited" not in promoted.message and "no check" not in promoted.message
    assert not promoted.warning


def test_a_blue_green_preview_is_not_looked_at_so_its_flip_waits_for_nothing() -> None:
    # The preview serves no production traffic and no look comes while it
    # stands (watched_standing): waiting for one would hold it for ever.
    blue_green = spec(strategy="blue-green", preview_service="web-preview", failure_limit="0")
    world = World().adopted(blue_green)
    release(world)
    world.settle(blue_green)
    world.step(blue_green, result(Verdict.PASS), advance=10)
    world.settle(blue_green)
    assert world.state.stable == "green", world.reasons()


def test_the_wait_survives_steps_edited_meanwhile() -> None:
    # A promotion has no step left to re-judge: an edit of the steps changes
    # nothing while it waits, and it still waits for a look.
    world = _held_by_an_outage()
    edited = spec(steps="10,20", failure_limit="0")
    _drive(edited, world, 30, down=True)
    assert world.state.promoting and "Promoted" not in world.reasons(), world.reasons()
    _drive(edited, world, 12, down=False)
    assert world.state.stable == "green", world.reasons()


def test_the_wait_is_written_once_not_every_cycle() -> None:
    # flip_waits is durable: set when the wait begins, then left alone.
    world = _promoting()
    _drive(ONE_STEP, world, 30, down=True)
    world.cap = 0
    world.step(ONE_STEP, advance=0.5)
    began = world.state.flip_waits
    assert began
    _drive(ONE_STEP, world, 60, down=True)
    assert world.state.flip_waits == began and "Promoted" not in world.reasons()


def test_a_promote_that_arrives_with_a_fresh_look_is_no_warning() -> None:
    # The Warning is for a flip over what no check read, not for a person
    # who promoted in the cycle a look answered again.
    world = _held_by_an_outage()
    world.action = "promote 2"
    world.step(ONE_STEP, Checked("fast", result(Verdict.PASS), world.now + 0.5), advance=0.5)
    assert world.state.stable == "green", world.reasons()
    promoted = _event(world, "Promoted")
    assert "the flip waited" in promoted.message and "no check" not in promoted.message
    assert not promoted.warning


def test_a_look_that_finds_a_query_invalid_ends_no_wait_with_a_flip() -> None:
    # Grown to full size, a custom query without sum() returns one series per
    # pod: the backend's answer is a query to fix (a halt), not a read. Before,
    # the cycle that halted went on to the flip: InvalidSpec, then Promoted,
    # over a canary no check had read for two minutes.
    world = _held_by_an_outage()
    invalid = result(Verdict.ERROR, "query returned 3 series; wrap it in sum()", invalid=True)
    world.step(ONE_STEP, Checked("fast", invalid, world.now), advance=0.5)
    assert "InvalidSpec" in world.reasons() and "Promoted" not in world.reasons()
    assert world.state.canary == "green" and world.state.halt_kind == "invalid"
    assert "a query is invalid" in world.state.message, world.state.message


def test_a_retry_during_the_wait_does_not_flip_over_what_no_check_read() -> None:
    # A retry judges a step afresh: a promotion has no step window to judge,
    # and nothing sets step_ready again (see the resume of a Deployment paused
    # while promoting). Cleared, no look came any more and the wait ended at
    # once: the very next cycle flipped a canary unread for two minutes.
    world = _held_by_an_outage()
    world.action = "retry 1"
    world.step(ONE_STEP, advance=0.5)
    assert "asked to retry the promotion of r2" in _event(world, "RetryRequested").message
    drove = _drive(ONE_STEP, world, 30, down=True)
    assert "Promoted" not in world.reasons(), world.reasons()
    assert drove.looks, "no look watched the promotion after the retry"
    _drive(ONE_STEP, world, 12, down=False)
    assert world.state.stable == "green", world.reasons()
    assert not _event(world, "Promoted").warning


def _requests(value: float | None) -> StepResult:
    """A fast look whose request guard found `value` requests (None: no
    sample of the canary at all in its two scrapes)."""
    guard = Measurement("requests", "green", "q", 0.0, 1.0, value, ">= 10", Verdict.NO_DATA, 1.0)
    return StepResult(Verdict.NO_DATA, (guard,), f"{value or 0:.0f} requests to the canary")


def _looks_answer(world: World, answer: StepResult, seconds: float) -> None:
    end = world.now + seconds
    while world.now < end and world.state.canary is not None:
        due = analysis_due(ONE_STEP, world.state, world.now, world.scrape, world.phase)
        checked = Checked(due.kind, answer, due.end) if due is not None else None
        world.step(ONE_STEP, checked)
        world.now += 0.5


def test_the_flip_does_not_go_over_looks_that_find_no_sample_of_the_canary() -> None:
    # Prometheus answers, but holds no sample of the canary's requests in the
    # look's two scrapes: its pods are not scraped (grown to full size, a
    # release thrashing under load stops answering them) or not stored yet.
    # That is missing data, not low traffic: before, each such look counted
    # as a read and the flip went over a canary no one could see.
    world = _promoting()
    _looks_answer(world, _requests(None), 20)
    world.cap = 0
    _looks_answer(world, _requests(None), 60)
    assert "Promoted" not in world.reasons(), world.reasons()
    assert world.state.promoting and world.state.canary == "green"
    assert "pods not scraped" in world.state.message, world.state.message
    # Scraped again: the flip goes.
    _looks_answer(world, result(Verdict.PASS), 12)
    assert world.state.stable == "green", world.reasons()


def test_a_look_at_a_canary_with_too_few_requests_still_counts_as_read() -> None:
    # Traffic too low to judge is judged no better by a healthy Prometheus:
    # waiting for more would hold a quiet app's flip for ever.
    world = _promoting()
    world.cap = 0
    _looks_answer(world, _requests(3.0), 30)
    assert world.state.stable == "green", world.reasons()


def _looks_in_turn(world: World, answers: list[StepResult], seconds: float) -> None:
    """Each look asked for gets the next answer, until they run out."""
    end = world.now + seconds
    while world.now < end and world.state.canary is not None:
        due = analysis_due(ONE_STEP, world.state, world.now, world.scrape, world.phase)
        checked = Checked(due.kind, answers.pop(0), due.end) if due and answers else None
        world.step(ONE_STEP, checked)
        world.now += 0.5


def test_a_failing_scrape_then_one_too_quiet_to_tell_holds_the_flip() -> None:
    # While it moves, a look that cannot tell (too few requests) drops the
    # suspicion and the scheduled check judges the whole window. While the
    # promotion stands no scheduled check comes: before, the suspicion went
    # and the flip with it, over a failing scrape nothing had judged.
    world = _promoting()
    world.cap = 0
    _looks_in_turn(world, [result(Verdict.FAIL, "success-rate = 50"), _requests(3.0)], 5)
    assert "Promoted" not in world.reasons(), world.reasons()
    assert world.state.fast_failed and "a failing scrape waits" in world.state.message
    _looks_in_turn(world, [result(Verdict.PASS)], 3)
    assert world.state.stable == "green", world.reasons()


def test_a_failing_scrape_then_a_quiet_one_then_a_failing_one_rolls_back() -> None:
    world = _promoting()
    world.cap = 0
    failing = result(Verdict.FAIL, "success-rate = 50")
    _looks_in_turn(world, [failing, _requests(3.0), failing], 5)
    assert world.state.canary is None and world.state.stable == "blue", world.reasons()
    assert "Promoted" not in world.reasons() and "AnalysisFailed" in world.reasons()
