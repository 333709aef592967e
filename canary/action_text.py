"""The canary.io/action annotation's text: how a request reads, and which
requests are remembered as taken. Shared by manual (which carries requests
out) and rollout (which finds one carried out by a decision whose status was
lost), so neither imports the other for it."""

from __future__ import annotations

REVISION_TOKEN = "revision="  # the revision the person saw: `promote revision=r2 <time>`
# A retry asked while its revision was in flight (`retry revision=r2 step=2
# <time>`): it judges that step again, and is never taken for a retry of the
# same revision once rolled back, which rolls it out again (manual._aimed_elsewhere).
STEP_TOKEN = "step="

# Requests remembered as taken. A GitOps tool whose manifest holds one
# (`canary.io/action: abort 1` committed as the way to abort) writes it back
# after every request made with the CLI, so it stays among the newest.
TAKEN_KEPT = 10


def parse_action(text: str) -> tuple[str, str, list[str]]:
    """(verb, the revision it was asked for or "", the other words)."""
    words = text.split()
    pinned = [w for w in words[1:] if w.startswith(REVISION_TOKEN)]
    rest = [w for w in words[1:] if not w.startswith(REVISION_TOKEN)]
    verb = words[0].lower() if words else ""
    return verb, pinned[0][len(REVISION_TOKEN) :] if pinned else "", rest


def of_a_step(text: str) -> bool:
    """The request was asked of a step in flight (STEP_TOKEN)."""
    return any(w.startswith(STEP_TOKEN) for w in text.split()[1:])


def taken(remembered: tuple[str, ...], action: str) -> tuple[str, ...]:
    """`remembered` with `action` as the newest taken request (once)."""
    kept = (*(a for a in remembered if a != action), action)
    return kept[-TAKEN_KEPT:]
