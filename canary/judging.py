"""A check's verdict on a step: passed (advance or promote), failed
(confirmed, then rolled back), inconclusive (no data, errors), or late.
Pure functions over a Draft."""

from __future__ import annotations

from analysis.run import StepResult, judged
from analysis.spec import GateKind, OnLimit
from analysis.verdicts import Verdict
from canary.ending import rollback
from canary.model import Checked, Observed, State
from canary.placement import await_analysis, effective_text, stages, step_in_place
from canary.plan import Draft
from canary.promotion import start_promotion
from canary.schedule import counts_young, next_fast, recheck_delay
from canary.spec import RolloutSpec, analysis_digest


def _newer_scrape(checked: Checked, state: State, observed: Observed) -> bool:
    """`checked` read a later scrape than the failing check of `fast_failed`
    did: their newest samples of the canary about an interval apart (several
    pods at offsets of their own step by less; it waits for the same pod's
    next). When either is not known, the times their queries went out: not
    by which landing each follows, since the timing is learned on the stable
    twin's pods and the canary's own pods may be scraped at another offset,
    where two looks closer than an interval can see the same sample. Those
    times alone took a failing look whose queries went out late (queued
    behind other Services' checks; a retry waiting for its scrape to land)
    for one closer to the next than it was, and the next scrape's look for
    the same scrape: a rollback a scrape later."""
    interval = 0.9 * observed.scrape_interval
    if checked.result.newest and state.failed_sample:
        return checked.result.newest - state.failed_sample >= interval
    return checked.at - state.fast_failed >= interval


def wake_for_next_scrape(draft: Draft, spec: RolloutSpec, observed: Observed, now: float) -> None:
    young = counts_young(spec, draft.state)
    due = next_fast(draft.state, observed.scrape_interval, observed.scrape_phase, young)
    draft.wake_in(due - now)


def wait_for_gate(draft: Draft, spec: RolloutSpec, kind: GateKind) -> bool:
    """Stop before a transition if gates of this kind exist; True if waiting."""
    if not spec.analysis.gates_on(kind):
        return False
    # Past a pass (pre-step, pre-promotion): what it answered, so an edit of
    # the analysis while the gate is asked takes it back (rollout._analysis_edited).
    passed = "" if kind is GateKind.PRE_ROLLOUT else analysis_digest(spec)
    draft.set(gate_wait=str(kind), gate_checked=0.0, gate_reason="", passed_under=passed)
    draft.say(f"asking the {kind} gates")
    draft.wake_in(0.0)
    return True


def answered_late(observed: Observed, at: float, now: float) -> bool:
    """A check whose data ends at `at`, decided `now`, leaves more than two
    scrapes of the canary's traffic unseen (the shell runs one check at a
    time, so no fast look ran while a slow one was in flight): a failure
    that began just after `at` could have shown in two scrapes, and
    counted, had Prometheus answered in time."""
    return now - at > 2 * observed.scrape_interval


def judge_scheduled(
    draft: Draft,
    spec: RolloutSpec,
    observed: Observed,
    result: StepResult,
    now: float,
    decided: float | None = None,
) -> None:
    """`now`: the end of the check's data; `decided`: when it is judged,
    if that can be later (a check that moves the rollout on)."""
    state = draft.state
    step = f"step {state.step + 1}/{len(stages(spec))}"
    analysis = spec.analysis
    if result.invalid:
        draft.set(halted=f"a query is invalid: {result.reason}", halt_kind="invalid", checked=now)
        draft.emit(
            "InvalidSpec",
            f"canary.io/analysis: {result.reason}; fix the query, then `canary retry`",
            warning=True,
        )
        return
    if state.suspected and state.fast_failed and (result.verdict is Verdict.PASS or result.waiting):
        # The failure did not last (as a fast check would find): the step
        # still needs a whole interval of passing data from now. (A window
        # that passed whose promotion waits for a pod's first scrape passed
        # its newest scrape too.)
        draft.set(fast_failed=0.0, suspected="", no_data=0, errors=0, checked=now)
        draft.set(window_start=now)
        draft.say(f"{step}: the failure did not last; checking a full interval again")
        draft.wake_in(spec.interval)
        return
    if state.suspected and state.fast_failed:
        # A failing check waits for the next scrape to confirm it. This check
        # is that next look, and it fails too or cannot tell (too few
        # requests, no answer): the failure counts, as without fast checks.
        draft.set(fast_failed=0.0, suspected="")
        failed = state.suspected if result.verdict is not Verdict.FAIL else result.reason
        _failed_check(draft, spec, observed, failed, now, step)
        return
    match result.verdict:
        case Verdict.PASS if state.recheck:
            # The failure did not last. The step still needs one whole
            # interval of passing data before it may advance.
            draft.set(recheck=False, no_data=0, errors=0, checked=now, window_start=now)
            draft.say(f"{step}: re-check passed; checking the full interval again")
            draft.wake_in(spec.interval)
        case Verdict.PASS if decided is not None and answered_late(observed, now, decided):
            late = _late_detail(observed, now, decided)
            _too_slow(draft, spec, step, decided, late, said="passed, but ")
        case Verdict.ERROR if result.slow:
            # Each query answered within query-timeout, the whole took longer
            # than the shell waits (a relative metric and the newest-scrape
            # check chain up to ten): as an answer too late, never as the
            # errors on-limit acts on. Before, with on-limit: rollback, a
            # Prometheus taking 4 s a query rolled a good release back.
            _too_slow(draft, spec, step, now, f"Prometheus is too slow: {result.reason}", said="")
        case Verdict.PASS:
            draft.set(no_data=0, errors=0, checked=now)
            passed = f"revision {state.canary_revision} passed {step} ({result.reason})"
            last = state.step + 1 >= len(stages(spec))
            kind = GateKind.PRE_PROMOTION if last else GateKind.PRE_STEP
            if wait_for_gate(draft, spec, kind):
                draft.emit("StepPassed", f"{passed}; asking the {kind} gates")
            else:
                step_passed(draft, spec, observed, now, passed=passed)
        case Verdict.FAIL if _confirmable(spec, result):
            # Judged over the whole window, so a blip that is already over
            # may fail it: count it only if the next scrape fails too.
            draft.set(
                fast_failed=state.fast_failed or now,
                failed_sample=state.failed_sample if state.fast_failed else result.newest,
                fast_checked=min(state.fast_checked or now, now),
                checked=now,
                suspected=result.reason,
            )
            draft.say(f"{step}: check failed ({result.reason}); confirming on the next scrape")
            wake_for_next_scrape(draft, spec, observed, now)
        case Verdict.FAIL:
            _failed_check(draft, spec, observed, result.reason, now, step)
        case Verdict.NO_DATA if result.waiting:
            # The last step passed but for a pod Prometheus has not scraped
            # yet, still within its grace: not counted (discovery and a first
            # scrape, not the release), checked again an interval later; past
            # the grace canary-pods-never-scraped counts as no data. A re-check
            # stays one (its pass still asks a whole interval more).
            draft.set(checked=now)
            draft.say(f"{step}: {result.reason}")
            draft.wake_in(spec.interval)
        case Verdict.NO_DATA:
            # The window keeps its start, so requests keep adding up.
            _inconclusive(
                draft,
                spec,
                observed,
                now,
                "no_data",
                analysis.no_data_limit,
                "NoData",
                step,
                "no data yet",
                result.reason,
            )
        case Verdict.ERROR:
            _inconclusive(
                draft,
                spec,
                observed,
                now,
                "errors",
                analysis.error_limit,
                "AnalysisError",
                step,
                "analysis error",
                result.reason,
            )


def _late_detail(observed: Observed, at: float, now: float) -> str:
    return (
        f"Prometheus answered {now - at:.0f}s after the data it judged, more than two "
        f"scrapes ({2 * observed.scrape_interval:g}s) late: what the canary did since is unseen"
    )


def _too_slow(
    draft: Draft, spec: RolloutSpec, step: str, checked: float, detail: str, said: str
) -> None:
    """A pass that came back too late to move the rollout on (answered_late),
    or a check that did not finish in time. Before, the first advanced the
    step or promoted over whatever the canary did since. The window keeps
    its start, so the next check, an interval from now (a slow Prometheus
    gets no flood), covers that gap too. Prometheus's trouble, not the
    release's: counted with the query errors, and past error-limit the
    rollout halts (whatever on-limit says: a good release is never rolled
    back for it) and resumes by itself once answers come in time (probe)."""
    count = draft.state.errors + 1
    draft.set(errors=count, no_data=0, checked=checked, recheck=False)
    draft.wake_in(spec.interval)
    if count <= spec.analysis.error_limit:
        draft.say(f"{step}: {said}{detail}; checking again")
        return
    draft.set(halted=f"{step}: {detail}", halt_kind="errors")
    draft.say(f"halted: {step}: {detail}; checking Prometheus again every {spec.interval:g}s")
    draft.emit(
        "RolloutHalted",
        f"revision {draft.state.canary_revision} halted, traffic unchanged: {step}: {detail}. "
        "It resumes by itself once Prometheus answers in time; or run `canary promote`, "
        "`abort` or `retry`",
        warning=True,
    )


def _confirmable(spec: RolloutSpec, result: StepResult) -> bool:
    """Whether fast checks can confirm this failure: every failing metric is
    one they look at, and no failure is a statistical judge's (never run
    fast). A judge's failure under the name of a metric whose threshold is
    checked fast was left to the next look, which ran the threshold alone,
    passed, and cleared it: check after check, a release the judge found
    worse served at its step for good, never rolled back."""
    fast = {m.name for m in spec.analysis.fast_metrics}
    failing = [m for m in result.measurements if m.verdict is Verdict.FAIL and not m.baseline]
    return (
        bool(failing)
        and all(m.metric in fast for m in failing)
        and not any(judged(m) for m in failing)
    )


def _failed_check(
    draft: Draft, spec: RolloutSpec, observed: Observed, reason: str, at: float, step: str
) -> None:
    """One failed check, scheduled or a confirmed fast one: past the limit
    roll back; within it check again as soon as fresh data can show it."""
    state = draft.state
    failed = state.failed + 1
    draft.set(failed=failed, checked=at, window_start=at, no_data=0, errors=0)
    if failed > spec.failure_limit:
        rollback(draft, observed, "AnalysisFailed", f"{step}: {reason}")
        return
    draft.emit(
        "AnalysisFailed",
        f"revision {state.canary_revision} {step}: "
        f"{reason} (failure {failed} of {spec.failure_limit} tolerated)",
        warning=True,
    )
    delay = recheck_delay(spec, observed.scrape_interval, observed.searchable_after)
    draft.set(recheck=True)
    draft.say(
        f"{step}: check failed ({failed}/{spec.failure_limit} tolerated); re-checking in {delay:g}s"
    )
    draft.wake_in(delay)


def judge_fast(
    draft: Draft,
    spec: RolloutSpec,
    observed: Observed,
    checked: Checked,
    now: float,
    standing: bool = False,
) -> None:
    """A fast check: the newest scrape only. A failure must show in two
    scrapes in a row to count (one bad scrape is not a rollback): the first
    makes the rollout suspect, each later failing scrape then counts as a
    failed check, with the same record as a scheduled one. A scrape that
    passes clears the suspicion, and if a scheduled check raised it, the
    step starts a whole passing interval again. Nothing else earns anything:
    passing needs the full interval, and no-data or errors are the scheduled
    check's business. After an error, fast checks pause until the next
    scheduled check, so a struggling Prometheus gets no flood."""
    state, result, at = draft.state, checked.result, checked.at
    step = f"step {state.step + 1}/{len(stages(spec))}"
    if result.invalid:
        judge_scheduled(draft, spec, observed, result, at)
        return
    if result.verdict is not Verdict.NO_DATA:
        draft.set(quiet_from=0.0)
    elif not state.quiet_from or at >= state.quiet_from + spec.interval:
        draft.set(quiet_from=at)  # (a run longer than an interval starts again)
    if result.verdict is Verdict.FAIL:
        if state.fast_failed and _newer_scrape(checked, state, observed):
            # Counted now; this scrape may begin the next failure, but no
            # scheduled check is waiting on it any more.
            draft.set(fast_failed=at, failed_sample=result.newest, fast_checked=at, suspected="")
            _failed_check(
                draft, spec, observed, result.reason, at, f"{step} (two scrapes in a row)"
            )
            if draft.state.canary is not None:
                wake_for_next_scrape(draft, spec, observed, now)
            return
        if not state.fast_failed:
            draft.set(fast_failed=at, failed_sample=result.newest)
        draft.set(fast_checked=at)
        draft.say(f"{step}: the latest scrape fails; confirming on the next one")
        wake_for_next_scrape(draft, spec, observed, now)
        return
    # A scheduled check's failure waiting for this scrape (not one a fast
    # check already counted: `checked` is set then too).
    scheduled = bool(state.fast_failed and state.suspected)
    if (
        scheduled
        and result.stalled
        and result.verdict is Verdict.NO_DATA
        and at < state.fast_failed + spec.interval
    ):
        # Read nothing because Prometheus stored no scrape of either twin
        # since (its scrapes stalled), not for the canary's sake: the next
        # look that reads a scrape confirms or clears the failure, for up
        # to an interval, then it counts as below. Counted at once, a
        # scheduled check judged on the part of its window before the stall
        # (a cleared blip 1.6 % of it) rolled a good release back.
        draft.set(fast_checked=at)
        draft.say(
            f"{step}: check failed ({state.suspected}); Prometheus has stored no scrape "
            "since, confirming on the next one it stores"
        )
        wake_for_next_scrape(draft, spec, observed, now)
        return
    if scheduled and result.verdict in (Verdict.NO_DATA, Verdict.ERROR):
        # The newest scrape cannot tell (too few requests in it, or no
        # answer): the failing scheduled check counts, as it would without
        # fast checks. Only a clean scrape clears it.
        draft.set(fast_failed=0.0, fast_checked=at, suspected="")
        _failed_check(draft, spec, observed, state.suspected or result.reason, at, step)
        return
    if result.verdict is Verdict.ERROR:
        # Fast looks pause until the next scheduled check, which counts the
        # errors (a failure waiting to be confirmed goes: kept, it would hold
        # the scheduled check back while Prometheus fails, and nothing would
        # count towards error-limit).
        resume = (state.checked or state.step_ready) + spec.interval
        if standing:
            # No scheduled check comes while it stands, and `checked` may be
            # as old as the pause: an interval from this look instead (else
            # the next look was due at once, back to back while it failed).
            resume = at + spec.interval
        draft.set(fast_failed=0.0, fast_checked=resume)
    elif state.fast_failed and result.verdict is Verdict.NO_DATA and standing:
        # Too few requests to confirm or clear it, and no scheduled check
        # comes while it stands: the suspicion stays for a look that can
        # tell (the scrape between told nothing). Dropped, an open gate or a
        # promotion's flip went over a failing scrape nothing had judged.
        draft.set(fast_checked=at)
    elif (
        state.fast_failed
        and result.verdict is Verdict.NO_DATA
        and at < state.fast_failed + spec.interval
    ):
        # Too few requests since the failing scrape to confirm or clear it:
        # the next look reads them with its own (schedule.fast_start), until
        # there are enough to tell.
        draft.set(fast_checked=at)
    elif state.fast_failed and result.verdict is Verdict.NO_DATA:
        # An interval since the failing scrape and still too few requests to
        # tell: the suspicion goes, and the scheduled check (held back while
        # it waited) judges the whole window, as it would without fast checks.
        draft.set(fast_failed=0.0, fast_checked=at)
    elif state.fast_failed and result.verdict is Verdict.PASS:
        draft.set(fast_failed=0.0, fast_checked=at, suspected="")
        if scheduled:
            # A scheduled check failed on a blip that is over: the step still
            # needs one whole interval of passing data from now.
            draft.set(checked=at, window_start=at)
            draft.say(f"{step}: the failure did not last; checking a full interval again")
    else:
        draft.set(fast_checked=at)
    if not standing:  # standing still, no scheduled check comes (the caller wakes)
        await_analysis(draft, spec, observed, now)


def _inconclusive(
    draft: Draft,
    spec: RolloutSpec,
    observed: Observed,
    now: float,
    counter: str,
    limit: int,
    reason: str,
    step: str,
    label: str,
    detail: str,
) -> None:
    """No-data and errors: counted in a row; past their limit the on-limit
    policy applies, before it the step simply checks again an interval later."""
    count = int(getattr(draft.state, counter)) + 1
    draft.set(**{counter: count}, checked=now, recheck=False)
    if count > limit:
        _limit(draft, spec, observed, reason, f"{step}: {detail}")
        return
    draft.say(f"{step}: {label} ({detail})")
    draft.wake_in(spec.interval)


def step_passed(
    draft: Draft,
    spec: RolloutSpec,
    observed: Observed,
    now: float,
    passed: str = "",
    asked: GateKind | None = None,
) -> None:
    """A step passed (and the gates `asked` opened): on to the next step, or
    promotion after the last. The steps may have been edited while a gate was
    asked: the gates of what comes now are asked first."""
    last = draft.state.step + 1 >= len(stages(spec))
    kind = GateKind.PRE_PROMOTION if last else GateKind.PRE_STEP
    if asked is not None and asked != kind and wait_for_gate(draft, spec, kind):
        return
    if last:
        start_promotion(draft, spec, observed, now, passed)
    else:
        _advance(draft, spec, observed, now, passed)


def _advance(
    draft: Draft, spec: RolloutSpec, observed: Observed, now: float, passed: str = ""
) -> None:
    """On to the next step: one Event says what passed and where it goes."""
    state = draft.state
    draft.set(
        step=state.step + 1,
        step_started=now,
        step_ready=0.0,
        checked=0.0,
        window_start=0.0,
        recheck=False,
    )
    served = (
        f" at {state.requested_weight}% ({effective_text(state.effective_weight, observed, spec)})"
        if state.requested_weight
        else ""
    )
    moving = f"served{served}; moving to step {state.step + 2}/{len(stages(spec))}"
    draft.emit(
        "StepAdvanced",
        f"{passed}; {moving}" if passed else f"revision {state.canary_revision} {moving}",
    )
    if step_in_place(draft, spec, observed, now):
        await_analysis(draft, spec, observed, now)


def _limit(draft: Draft, spec: RolloutSpec, observed: Observed, reason: str, detail: str) -> None:
    if spec.analysis.on_limit is OnLimit.ROLLBACK:
        rollback(draft, observed, reason, detail)
        return
    kind = "errors" if reason == "AnalysisError" else "no-data"
    draft.set(halted=detail, halt_kind=kind)
    if kind == "errors":
        # Come back to ask Prometheus again: nothing else would wake us.
        draft.say(f"halted: {detail}; checking Prometheus again every {spec.interval:g}s")
        draft.wake_in(spec.interval)
    then = (
        "It resumes by itself once queries succeed again; or run `canary promote`, `abort` "
        "or `retry`"
        if kind == "errors"
        else "Run `canary promote`, `abort` or `retry`"
    )
    draft.emit(
        "RolloutHalted",
        f"revision {draft.state.canary_revision} halted, traffic unchanged: {detail}. {then}",
        warning=True,
    )
