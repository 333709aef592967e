"""What the rollout knows of its looks at Prometheus: the last one's
error, since when nothing was read, whether a look halted it. Pure."""

from __future__ import annotations

import datetime as dt

from analysis.run import no_sample, went_quiet
from analysis.verdicts import Verdict
from canary.model import Checked, Observed, State
from canary.plan import Draft
from canary.schedule import next_fast, watched
from canary.spec import RolloutSpec


def note_look(draft: Draft, analysis: Checked | None) -> None:
    """Prometheus answered about the canary's traffic up to `analysis.at`
    (see unlooked). A fast look with too few requests in the newest scrape
    counts (traffic that low is judged no better by a healthy Prometheus); a
    scheduled check's no-data may be data that stopped (_newest_sample in
    analysis/run.py). One that read nothing leaves its error for the waits
    to say (look_error): a fast look's is recorded nowhere else."""
    if analysis is None:
        return
    verdict = analysis.result.verdict
    if analysis.kind == "fast":
        # A look that found no sample of the canary at all (not scraped,
        # thrashing, not taken in yet) read nothing: counted, a promotion
        # once flipped over a canary no one could see. Nor one that found it
        # quiet (it hangs): counted, the flip sent all traffic to it.
        result = analysis.result
        read = verdict is not Verdict.ERROR and not no_sample(result) and not went_quiet(result)
    else:
        read = verdict in (Verdict.PASS, Verdict.FAIL)
    if read:
        draft.set(looked=max(draft.state.looked, analysis.at), look_error="")
    elif analysis.at >= draft.state.looked:
        error = analysis.result.reason
        if verdict is not Verdict.ERROR and no_sample(analysis.result):
            error = "no sample of the canary's requests in its window"
        draft.set(look_error=error[:LOOK_ERROR_CHARS])


# The annotation holds the status on-call reads: a long error (a query's
# text, several metrics' errors) is cut there; the timeline has it whole.
LOOK_ERROR_CHARS = 300


def last_look(state: State) -> str:
    """What the newest check that read nothing found, for a wait's message."""
    return f"; last look: {state.look_error}" if state.look_error else ""


def unlooked(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> bool:
    """An open gate moves on only over what a look has read: standing at it,
    fast looks watch the canary, but while Prometheus fails each look errors
    and they pause an interval, again and again. Before, a gate opening then
    advanced or promoted with no look at the canary for minutes, over
    whatever it did meanwhile. Over more than two scrapes unread, the answer
    waits: the next look is asked for at once, the gate again an interval
    later (neither floods a Prometheus or a webhook in trouble)."""
    state, answer = draft.state, observed.gate
    if answer is None or not answer.open or answer.kind != state.gate_wait:
        return False
    since = unread_for(spec, state, observed, now)
    if not since:
        return False
    scrape = observed.scrape_interval
    draft.set(gate_checked=now, fast_checked=min(state.fast_checked, now - scrape))
    draft.say(
        f"{state.gate_wait} gate open, but no check has read the canary {unread_since(state)} "
        "(Prometheus failing, or the canary's pods not scraped?): looking before moving on"
        + last_look(state)
    )
    draft.wake_in(next_fast(draft.state, scrape, observed.scrape_phase) - now)
    return True


def halted_by_a_look(draft: Draft) -> bool:
    """A look in this very cycle found a query invalid (judge_scheduled halts): the
    backend's answer read nothing, and no look comes while halted
    (watched_standing), so unread_for has nothing to wait for. Nothing moves on
    over it, neither an open gate nor the automatic flip: before, that cycle
    advanced the step, started the promotion or flipped right after its
    InvalidSpec Event. The next cycles hold it (rollout._while_halted), and a gate
    is not asked while halted (schedule.gate_due)."""
    halted = draft.state.halted
    if not halted:
        return False
    draft.say(f"halted: {halted}. Run `canary promote`, `abort` or `retry`")
    return True


def suspicion_holds(draft: Draft, spec: RolloutSpec) -> bool:
    """A failing scrape waits to be confirmed or cleared by the next look,
    which the rollout, standing still, will take. When no look will come (a
    blue-green preview is not looked at while it stands; no metric is
    checked fast since an edit), the suspicion is dropped instead: held, it
    held the flip or the gate for good, with nothing left to clear it."""
    state = draft.state
    if not state.fast_failed:
        return False
    if watched(state) and spec.analysis.fast_metrics:
        return True
    draft.set(fast_failed=0.0, suspected="")
    return False


def unread_for(spec: RolloutSpec, state: State, observed: Observed, now: float) -> str:
    """How long no check has read the canary, when that is more than two
    scrapes (and two flushes on VictoriaMetrics) while looks watch it
    standing ("" otherwise): "for 95s", or
    "since the controller started" (`looked` is volatile). A canary that
    no look watches while it stands (a blue-green preview, no metric checked
    fast) has nothing to wait for, as at a gate (unlooked)."""
    if not (watched(state) and spec.analysis.fast_metrics):
        return ""
    unread = now - state.looked
    # On VictoriaMetrics a look waits for the flush of its newest scrape
    # (canary/checks.py), and the next one's too: its data is read up to when
    # it was asked, up to a flush before it is answered. Two scrapes only,
    # an open gate at a 1 s scrape waited for good, saying no check had read
    # the canary (Prometheus failing?) while every look read it.
    if unread <= 2 * (observed.scrape_interval + observed.searchable_after):
        return ""
    return f"for {unread:.0f}s" if state.looked else "since the controller started"


def unread_since(state: State) -> str:
    """unread_for for a status that waits: since when, not for how long. A
    count of seconds changed the message every cycle, a status write every
    5 s (the progress pace) for as long as Prometheus failed, per waiting
    Service."""
    return f"since {clock_text(state.looked)}" if state.looked else "since the controller started"


def clock_text(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%H:%M:%SZ")
