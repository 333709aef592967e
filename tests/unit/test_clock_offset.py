"""The clock offset estimate (analysis.clock) and the query times the
adapter derives from it: pure, no transport."""

from __future__ import annotations

import pytest

from analysis.clock import KEEP, ClockOffset, ClockProbe, worth_telling
from analysis.prometheus import instant_params, range_params


def _offset(*probes: ClockProbe) -> ClockOffset:
    estimate = ClockOffset()
    for probe in probes:
        estimate = estimate.with_probe(probe)
    return estimate


def test_the_offset_is_prometheus_time_less_the_middle_of_the_round_trip() -> None:
    probe = ClockProbe(sent=1000.0, received=1000.2, remote=1060.1)
    assert probe.round_trip == pytest.approx(0.2)
    assert probe.offset == pytest.approx(60.0)
    assert ClockOffset().offset == 0.0  # never probed: no shift


def test_the_fastest_recent_probe_sets_the_offset_as_ntp_does() -> None:
    # The answer to the second probe queued 0.8 s inside Prometheus after it
    # read its clock: the midpoint is 0.4 s off. The fastest probe bounds the
    # offset best (to +- half its round trip).
    fast = ClockProbe(1000.0, 1000.02, 1060.01)  # 60.0 +- 0.01
    slow = ClockProbe(1060.0, 1060.9, 1120.05)  # 59.6 +- 0.45
    assert _offset(fast, slow).offset == pytest.approx(60.0)
    assert _offset(slow, fast).offset == pytest.approx(60.0)


def test_only_the_last_few_probes_are_kept() -> None:
    fastest = ClockProbe(1000.0, 1000.01, 1060.005)
    later = [ClockProbe(1060.0 * i, 1060.0 * i + 0.1, 1060.0 * i + 60.06) for i in range(1, KEEP)]
    kept = _offset(fastest, *later)
    assert kept.offset == pytest.approx(60.0)  # the fastest is among the last KEEP
    newer = ClockProbe(9000.0, 9000.1, 9060.06)
    aged = kept.with_probe(newer)
    assert len(aged.probes) == KEEP and fastest not in aged.probes
    assert aged.offset == pytest.approx(60.01)


def test_a_host_clock_that_steps_is_followed_at_the_next_probe() -> None:
    # A VM resumed from suspend: its clock is a minute behind. The old fast
    # probes bound a clock that is gone; a slower new one must win anyway.
    before = [ClockProbe(1000.0 + i, 1000.0 + i + 0.002, 1000.0 + i + 0.001) for i in range(3)]
    after = ClockProbe(2000.0, 2000.3, 2060.15)
    estimate = _offset(*before, after)
    assert estimate.offset == pytest.approx(60.0) and estimate.probes == (after,)


def test_a_probe_across_a_local_clock_step_is_dropped() -> None:
    good = ClockProbe(1000.0, 1000.1, 1000.05)
    stepped = ClockProbe(1010.0, 950.0, 1010.0)  # received before sent
    assert _offset(good, stepped).probes == (good,)


def test_on_call_hears_of_an_offset_of_a_second_or_a_change_of_one() -> None:
    assert not worth_telling(0.0, 0.4)
    assert worth_telling(0.0, 1.2) and worth_telling(0.0, -60.0)
    assert not worth_telling(60.0, 60.5)  # told already: jitter is not news
    assert worth_telling(60.0, 0.1)  # back in step


def test_query_times_are_shifted_and_a_range_never_reaches_back() -> None:
    assert instant_params(1000.0, 60.25) == {"time": "1060.250"}
    assert instant_params(1000.0, -60.0) == {"time": "940.000"}
    # The judge asks for whole seconds, so the first sample's own window
    # starts at the step; shifted by a fraction, the start is rounded up.
    assert range_params(1005.0, 1030.4, 5.0, 0.3) == {"start": "1006", "end": "1031", "step": "5s"}
    assert range_params(1005.0, 1030.4, 5.0, 0.0)["start"] == "1005"
    assert range_params(1005.0, 1030.4, 5.0, -0.7)["start"] == "1005"
    # A window shorter than a second, shifted: the end is not before the start.
    shifted = range_params(1005.0, 1005.2, 5.0, 0.1)
    assert int(shifted["end"]) >= int(shifted["start"]) == 1006


def test_clocks_that_agree_within_what_a_probe_can_measure_are_not_shifted() -> None:
    # Loopback, NTP in step: Prometheus's millisecond reading lands 0.4 ms
    # off the midpoint. Shifting by that would move every query's time by a
    # millisecond of noise, and a sample on a window's edge with it.
    in_step = ClockProbe(1000.0, 1000.0002, 1000.0005)
    assert in_step.offset == pytest.approx(0.0004)
    assert _offset(in_step).offset == 0.0
    # A few milliseconds more than the probe's own uncertainty: shifted.
    assert _offset(ClockProbe(1000.0, 1000.0002, 1000.005)).offset == pytest.approx(0.0049)
