"""Wrong outcomes found by the second read of the day's changes (each test
failed on the code before its fix)."""

from __future__ import annotations

from canary import wait as waiting
from canary.release_outcome import Outcome, judge
from tests.unit.test_release_outcome import record
from tests.unit.test_wait_review import ASKED, S, T, _Kube, _status, _svc


async def test_an_old_status_during_a_retry_is_no_rollback() -> None:
    """Release T was rolled back (#2) while the Service's manifest in Git
    was exported: its status says S stable, T failed, nothing rolling out.
    `canary retry` rolls T out again (#3, in flight), and Argo CD's sync
    applies the old status once more. History agrees S is the last release
    serving and the old status names no canary, so trusted_status read it:
    failed_revision T with #3 not ended said 'rolled back' (exit 3) at
    once, while the controller rebuilt T's rollout and promoted it."""
    records = [
        record(1, S, "promoted"),
        record(2, ASKED, "rolled-back"),
        record(3, ASKED, "progressing"),
    ]
    old = _status(phase="RolledBack", failed_revision=ASKED, message="rolled back")
    rolling = _status(phase="Progressing", canary="blue", canary_revision=ASKED)
    promoted = _status(stable="blue", stable_revision=ASKED)
    then = [_svc(s, str(11 + i)) for i, s in enumerate((rolling, promoted))]
    kube = _Kube(_svc(old, "10", writer="argocd-controller"), then, records)
    result = await waiting.wait(kube, waiting.Request("shop", "web", timeout_s=5))  # type: ignore[arg-type]
    assert result.settled.outcome is Outcome.PROMOTED, result.settled


def test_an_undo_to_the_serving_revision_read_before_its_history_is_no_rollback() -> None:
    """`canary undo --to 1` while T is in flight, #1 being S, the stable
    revision (manual._back_to_serving): T is taken out at once, recorded
    superseded, and kept out (failed_revision T, `undone`). Nothing failed.
    The Service's watch event came before the history's (two streams, no
    order between them): T's entry still 'progressing' was set aside as
    no ending, and 'held back' told CI the release was rolled back (exit 3)
    where a person undid it (exit 7, as once the history is read)."""
    records = [record(1, S, "promoted"), record(2, T, "progressing")]
    undone = _status(failed_revision=T, undone=True, message="undo to #1 by alice")
    verdict = judge(T, undone, records, T, 0)
    assert getattr(verdict, "outcome", None) is Outcome.SUPERSEDED, verdict
    ended = [records[0], record(2, T, "superseded", "RolloutCancelled: undo to #1 by alice")]
    assert getattr(judge(T, undone, ended, T, 0), "outcome", None) is Outcome.SUPERSEDED
