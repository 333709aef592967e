"""The status message of a Degraded Service: the degradation first (what
is observed of health wins the phase), then the line of the rollout
beneath it, so a rollout halted for a person still says so."""

from __future__ import annotations

# Between a degradation (with why its pods do not come) and the line of the
# cycle beneath it. A mark of its own: why is quoted from the pods and the
# API server (a restart count, a quota's message), so the line beneath
# cannot be told from it by the reason alone, and one taken for the other
# grew the message by a copy of it at every cycle.
BENEATH = " | "


def degraded_message(reason: str, why: str, beneath: str) -> str:
    # The mark never inside what is quoted, so the first one is ours.
    why = why.replace(BENEATH, " / ")
    return f"degraded: {reason}{why}{BENEATH + beneath if beneath else ''}"


def beneath_degraded(message: str, degraded: str) -> str:
    """The line beneath a degradation in a message degraded_message wrote
    ("" when none); a message that does not start with it, whole."""
    head = f"degraded: {degraded}"
    if not degraded or not message.startswith(head):
        return message
    return message[len(head) :].partition(BENEATH)[2]
