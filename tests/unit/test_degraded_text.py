"""The Degraded status message: the degradation (with why its pods do not
come, quoted from the pods and the API server), then the rollout's line."""

from __future__ import annotations

from canary.degraded_text import beneath_degraded, degraded_message


def test_the_line_beneath_is_found_whatever_the_quoted_why_says() -> None:
    # A pod's or a quota's message may hold the mark itself: quoted as is,
    # its second half was taken for the rollout's line.
    why = '; pods "web-blue-x" is forbidden: a | b'
    message = degraded_message("2/3 pods of the blue twin (stable) ready", why, "halted: x")
    assert beneath_degraded(message, "2/3 pods of the blue twin (stable) ready") == "halted: x"


def test_a_message_with_nothing_beneath_has_no_line_and_others_are_whole() -> None:
    reason = "the Service has no ready endpoint"
    assert beneath_degraded(degraded_message(reason, "", ""), reason) == ""
    assert beneath_degraded("halted: y", reason) == "halted: y"
    assert beneath_degraded("degraded: z | w", "") == "degraded: z | w"
