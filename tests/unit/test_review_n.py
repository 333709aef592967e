"""Interactions between the day's fixes (review n): each test failed on
the code before its fix."""

from __future__ import annotations

from dataclasses import replace

from analysis.verdicts import Verdict
from canary.model import ScaleTwin
from canary.spec import TWIN_LABEL
from tests.unit.test_looks_while_unready import first_step_serving
from tests.unit.test_scaling_bad_day import TEAM, _promoting_while_the_stable_hpa_scales_down
from tests.unit.test_timing_review_h import SlowCluster
from tests.unit.world import World, result, spec


def test_a_history_lost_within_the_abort_window_does_not_lengthen_it() -> None:
    # The history deleted 50 s into a 60 s window: the next cycle records
    # the serving revision again ('adopted', ended then). That end is not
    # the promotion's, and the window must not be taken from it (it was:
    # the old twin stayed up 50 s longer than scale-down-delay says).
    delay = spec(strategy="blue-green", scale_down_delay="60s")
    world = World().adopted(delay)
    world.source = replace(world.source, revision="r2")
    world.settle(delay)
    world.step(delay, result(Verdict.PASS), advance=10)
    assert world.selector[TWIN_LABEL] == "green" and world.state.scale_down == "blue"
    promoted = world.now
    world.records = []  # `kubectl delete configmap web-canary-history`
    world.step(delay, advance=50)
    assert world.state.scale_down_at == promoted + 60
    world.step(delay, advance=15)
    assert world.twins["blue"].replicas == 0 and world.state.scale_down is None


def test_a_step_whose_app_grew_keeps_its_window_whichever_twin_is_ready_first() -> None:
    # As test_a_step_whose_app_grew_keeps_its_window_while_the_new_pods_start,
    # with the stable twin's new pods ready a scrape before the canary's
    # (either comes first): the canary was short only because the app grew,
    # yet its window started again, as the growth (scaled_from) was over
    # by the time its own pods came.
    the_spec = spec(steps="50", interval="60s")
    world = first_step_serving(the_spec, SlowCluster())
    started = world.state.window_start
    world.cap = world.twins["green"].replicas
    world.stable_cap = world.twins["blue"].replicas
    world.source = replace(world.source, replicas=6)  # `kubectl scale deployment web`
    world.step(the_spec, advance=1)
    world.settle(the_spec)
    assert world.state.scaled_from and world.state.unready_since, world.state
    world.stable_cap = 0  # the stable twin's new pods are ready 4 s later,
    world.step(the_spec, advance=4)
    world.settle(the_spec)
    world.cap = 0  # the canary's a scrape after
    world.step(the_spec, advance=1)
    world.settle(the_spec)
    assert not world.state.unready_since and world.state.window_start == started


def test_a_hand_back_mid_promotion_never_sizes_the_stable_twin_above_its_hpa() -> None:
    # Promoting (16 chosen) when the team lowers its HPA's maximum to 10 and
    # removes the strategy: the stable twin takes the load back within the
    # HPA's bounds. Above them (promote_to, e3baacb, uncapped), the HPA set
    # it back at each sync and the hand-back scaled it up again, cycle after
    # cycle: a WriteLoop, the hand-back never done.
    world = _promoting_while_the_stable_hpa_scales_down()
    world.hpa = replace(TEAM, max_replicas=10)
    world.ready = True
    above = []
    for _ in range(6):
        plan = world.step(None, advance=1)
        above += [a for a in plan.actions if isinstance(a, ScaleTwin) and a.replicas > 10]
        world.autoscale(min(world.twins["blue"].replicas, 10))  # the HPA's sync
    assert not above, above
