"""The carried record (history.CARRIED) on a bad day, found by review; each
test failed at e61c892: a status whose write after a rollout's end failed,
read back by a new process, gave a retry of that revision a second copy of
the first rollout's checks and rewrote the status at every look; a graceful
stop of a process that read a start back wrote its entry without the
template (not undoable); a hand-back mid-rollout lost what the status
carried; a hand-edited record or history number stopped the readers; a
retry whose start only the status carried was held back as rolled back
again when that status was lost (the rebuild reads the history)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from analysis.verdicts import Verdict
from canary import history
from canary.spec import STATUS
from tests.unit.test_events_refused import KEY
from tests.unit.test_record_carried import _Counted, _entry, _promoted, _release, _steps


class _EndCut(_Counted):
    """The shell, whose Service write right after a history write fails once:
    the rollout's end is recorded (record first), its status is not."""

    def __init__(self, steps: str = "25,50") -> None:
        super().__init__(steps)
        self.cut_after_history = False
        self.service_writes = 0
        write = self.kube.patch

        async def patch(path: str, *args: Any, **kwargs: Any) -> Any:
            if "/services/" in path:
                self.service_writes += 1
            return await write(path, *args, **kwargs)

        self.kube.patch = patch  # type: ignore[method-assign]
        for verb in ("create", "patch", "replace"):
            setattr(self.kube, verb, self._cutting(getattr(self.kube, verb)))

    def _cutting(self, write: Any) -> Any:
        async def cut(path: str, *args: Any, **kwargs: Any) -> Any:
            result = await write(path, *args, **kwargs)
            if "/configmaps" in path and self.cut_after_history:
                self.cut_after_history = False
                self.fail_service_writes = 1
            return result

        return cut


def _rolled_back_then_restarted() -> tuple[_EndCut, str]:
    """r2 passes step 1, then fails step 2 and is rolled back: the history
    takes the outcome (and everything carried), the status write after it
    fails, and the controller restarts (a kill, a new leader)."""
    shell = _EndCut("25,50")
    revision = shell.status()["canary_revision"]
    shell.step()
    shell.checks.verdict = Verdict.FAIL
    shell.cut_after_history = True
    for _ in range(6):
        shell.ask_now()
        shell.cycle()
        if history.ended(shell.written()).get(revision):
            break
    assert _entry(shell.written(), revision)["outcome"] == "rolled-back"
    assert shell.status()["canary_revision"] == revision  # its status write failed
    shell.restart()
    for _ in range(3):
        shell.cycle()
    assert not shell.status().get("canary_revision"), shell.status()
    return shell, revision


def test_a_retry_after_an_end_whose_status_was_lost_gets_no_record_of_the_rollout_before() -> None:
    shell, revision = _rolled_back_then_restarted()
    first = _entry(shell.written(), revision)
    shell.checks.verdict = Verdict.PASS
    shell.service()["metadata"]["annotations"]["canary.io/action"] = "retry t9"
    for _ in range(3):
        shell.cycle()
    assert shell.status()["canary_revision"] == revision, shell.status()
    shell.step()
    shell.step()
    assert shell.status().get("stable_revision") == revision, shell.status()
    entries = [r for r in shell.written() if r["revision"] == revision]
    assert [r["outcome"] for r in entries] == ["rolled-back", "promoted"]
    assert entries[0]["checks"] == first["checks"]
    retried = entries[1]
    # Only the retry's own two checks and one StepAdvanced: the first
    # rollout's checks and StepAdvanced were put on it a second time.
    assert _steps(retried) == [(1, "pass"), (2, "pass")], _steps(retried)
    reasons = [a["reason"] for a in retried["actions"]]
    assert reasons.count("StepAdvanced") == 1, reasons


def test_what_an_ended_rollout_carried_is_not_rewritten_at_every_look() -> None:
    shell, revision = _rolled_back_then_restarted()
    shell.checks.verdict = Verdict.PASS
    _release(shell, "web:v3")  # the next release: its start is carried, no history write
    assert shell.status()["canary_revision"] not in ("", revision), shell.status()
    assert shell.status()["step_ready"] and not shell.failures[1:], shell.failures
    written = shell.service_writes
    for i in range(3):
        # A look (VOLATILE: never a status write of its own), 5 s apart.
        shell.reconciler._status_at.pop(KEY, None)
        shell.reconciler._volatile.setdefault(KEY, {})["looked"] = time.time() + i
        shell.cycle()
    assert shell.service_writes == written, shell.service_writes - written
    # The history took r2's checks with the rollback: the status of the
    # next rollout (no reader shows another revision's items) carries none.
    assert not [
        i for i in shell.status()[history.CARRIED] if i["revision"] == revision and "check" in i
    ]


def test_a_graceful_stop_after_a_restart_keeps_the_releases_template() -> None:
    shell = _promoted("25,50")
    revision = _release(shell, "web:v3")
    shell.restart()  # killed: the start is read back from the status, without its template
    shell.cycle()
    asyncio.run(shell.reconciler.close())  # then stopped gracefully (an upgrade)
    shell.restart()
    shell.step()
    shell.step()
    entry = _entry(shell.written(), revision)
    assert entry["outcome"] == "promoted"
    assert revision in history.undoable(shell.written()).values()  # `canary undo N` needs it
    assert entry["template"]["spec"]["containers"][0]["image"] == "web:v3"


def test_on_call_reads_a_hand_edited_carried_record_without_a_traceback() -> None:
    records = [{"revision": "r2", "number": 2, "started": 1.0, "checks": [], "actions": []}]
    status = {
        "canary_revision": "r2",
        history.CARRIED: [{"revision": "r2", "event": {"at": "yesterday", "reason": "X"}}],
    }
    assert history.with_carried(records, status)[0]["number"] == 2


def test_a_hand_back_mid_rollout_keeps_the_checks_the_status_carried() -> None:
    shell = _Counted("25,50,75")
    revision = shell.status()["canary_revision"]
    shell.step()  # step 1 passes: its check and StepAdvanced ride in the status
    assert [i for i in shell.carried() if "check" in i]
    del shell.service()["metadata"]["annotations"]["canary.io/strategy"]  # management removed
    for _ in range(12):
        shell.cycle()
        if STATUS not in shell.service()["metadata"]["annotations"]:
            break
    assert STATUS not in shell.service()["metadata"]["annotations"] and not shell.failures
    entry = _entry(shell.written(), revision)
    # Before the change the history had them (written at the step).
    assert _steps(entry) == [(1, "pass")], _steps(entry)
    assert [a["reason"] for a in entry["actions"]] == ["StepAdvanced"]


def test_the_dashboard_reads_a_carried_start_over_a_hand_edited_history_number() -> None:
    # The dashboard shows entries whose "number" is not a number
    # (dashboard.read.number_of); merging a carried start must not raise.
    records = [{"revision": "r1", "number": "one", "started": 1.0, "checks": [], "actions": []}]
    status = {"canary_revision": "r2", history.CARRIED: [{"revision": "r2", "start": {"at": 2.0}}]}
    assert [r["revision"] for r in history.with_carried(records, status)] == ["r1", "r2"]


def test_a_retry_survives_a_lost_status() -> None:
    shell = _Counted("25,50")
    r2 = shell.status()["canary_revision"]
    shell.checks.verdict = Verdict.FAIL
    for _ in range(12):
        if not shell.status().get("canary_revision"):
            break
        shell.ask_now()
        shell.cycle()
    assert shell.status()["failed_revision"] == r2, shell.status()
    shell.checks.verdict = Verdict.PASS
    shell.service()["metadata"]["annotations"]["canary.io/action"] = "retry t9"
    for _ in range(4):
        shell.cycle()
    assert shell.status()["canary_revision"] == r2, shell.status()
    # The status annotation is lost (deleted by hand, a Service recreated
    # from a manifest without it): rebuilt from the twins and the history.
    del shell.service()["metadata"]["annotations"][STATUS]
    for _ in range(6):
        shell.cycle()
    status = shell.status()
    assert status.get("failed_revision") != r2, status  # the retry is not undone
    assert status.get("canary_revision") == r2, status
    assert [r["outcome"] for r in shell.written() if r["revision"] == r2][-1] == "progressing"
