"""Review of the held status write (HOLD_S) and the progress pacing, driving
the real reconciler over the in-memory API server (tests.unit.
test_events_refused). Each test fails on 172298c."""

from __future__ import annotations

import asyncio
import copy
import time

import pytest

from canary import history
from canary.spec import STATUS
from tests.unit.test_events_refused import KEY
from tests.unit.test_record_carried import _Counted


def _push(shell: _Counted, image: str, cycles: int = 1) -> None:
    """The team's Deployment changed (a new image), and `cycles` cycles."""
    source = copy.deepcopy(shell.informers[1].get("ns", "web"))
    source["spec"]["template"]["spec"]["containers"][0]["image"] = image
    source["metadata"]["generation"] += 1
    shell.informers[1].remember(source)
    for _ in range(cycles):
        shell.cycle()


def _healthy() -> _Counted:
    """r2 promoted, its old twin gone at once (no abort window): the next
    release's start is holdable."""
    shell = _Counted("25,50")
    shell.service()["metadata"]["annotations"]["canary.io/scale-down-delay"] = "0s"
    shell.informers[1].get("ns", "web")["metadata"]["uid"] = "d-1"
    shell.step()
    shell.step()
    assert shell.status()["phase"] == "Healthy" and not shell.failures, shell.status()
    return shell


def test_a_release_replaced_while_its_start_is_held_is_written_at_once() -> None:
    """v3's start is held for its pods; v4 replaces it a moment later. The
    end of v3 (superseded) is in the history (record first), and v4's start
    with it, yet the status went on saying Healthy with no rollout: the hold
    compared against the status as written, which had no canary revision
    yet, so "a release replaced mid-rollout: written at once" never held.
    Killed then, the successor started v4 again: a second RolloutStarted in
    its history entry, under a rollout_started the entry does not have."""
    shell = _healthy()
    _push(shell, "web:v3")
    assert KEY in shell.reconciler._held  # the start waits for its pods
    _push(shell, "web:v4")
    outcomes = history.outcomes(shell.written())
    v3, v4 = list(outcomes)[-2:]
    assert outcomes[v3] == "superseded" and outcomes[v4] == "progressing"
    status = shell.status()
    assert status.get("canary_revision") == v4, (status["phase"], status.get("canary_revision"))
    shell.restart()  # killed
    for _ in range(3):
        shell.cycle()
    entry = [r for r in shell.records() if r["revision"] == v4][-1]
    reasons = [a["reason"] for a in entry["actions"]]
    assert reasons.count("RolloutStarted") == 1, reasons


def test_a_service_deleted_mid_rollout_leaves_nothing_to_the_one_created_after_it() -> None:
    """v3's start rides in memory (held, carried). The Service is deleted
    (its history goes with it), its twins are handed back, and a Service of
    that name is created again. The new Service's history got an entry for
    v3, `progressing` for ever, which it never rolled out: the deleted
    Service's carried items stayed in memory (_orphans forgot the hold, not
    what it carried) and went into the first history write of the new one."""
    shell = _healthy()
    _push(shell, "web:v3")
    v3 = next(i["revision"] for i in shell.reconciler._carrying[KEY] if "start" in i)
    old = copy.deepcopy(shell.service())
    shell.informers[0].forget("ns", "web")
    shell.informers[3].forget("ns", "web-canary-history")  # owned by the Service
    for _ in range(8):
        if KEY in shell.reconciler._missing:
            shell.reconciler._missing[KEY] = time.time() - 100  # past the grace
        asyncio.run(shell.reconciler.reconcile(*KEY))
    assert not [n for n in shell.informers[1].held if n != "web"], "twins not handed back"
    new = copy.deepcopy(old)
    new["metadata"]["uid"] = "s-2"
    new["metadata"]["annotations"].pop(STATUS)
    new["spec"]["selector"] = {"app": "web"}
    shell.informers[0].remember(new)
    for _ in range(6):
        shell.cycle()
    assert not shell.failures, shell.failures
    assert shell.status()["phase"] == "Healthy", shell.status()
    assert v3 not in [r["revision"] for r in shell.records()], shell.records()


def test_a_held_write_that_fails_at_its_deadline_is_not_held_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The step's advance is held; its pods are slow. At the deadline the
    write fails (a 503, or a 409 after someone's edit); the retry a moment
    later held it for a whole HOLD_S again (the hold's start was dropped
    before the write), and again after every failed write: the status said
    the step before for as long as the writes kept failing at the deadline."""
    monkeypatch.setattr("canary.reconcile.HOLD_S", 0.2)
    shell = _Counted("25,50")
    ready = shell._slices

    def slow() -> None:  # the canary's new pods never get ready in this test
        ready()
        slices = shell.caches.slices_by_service[KEY]["s"]["endpoints"]
        green = [e for e in slices if "-green-" in e["targetRef"]["name"]]
        for extra in green[1:]:
            slices.remove(extra)

    shell._slices = slow  # type: ignore[method-assign]
    shell.ask_now()
    shell.cycle()  # the check passes: step 2's status is held for its pods
    twin = shell.informers[1].get("ns", "web-green")
    twin["status"]["readyReplicas"] = 1
    assert KEY in shell.reconciler._held and shell.status()["step"] == 0
    time.sleep(0.25)
    shell.fail_service_writes = 1
    shell.cycle()  # the deadline: its write fails
    assert shell.failures and shell.status()["step"] == 0
    shell.cycle()  # the retry (CONFLICT_RETRY_S, or the first back-off)
    held = KEY in shell.reconciler._held
    assert shell.status()["step"] == 1, f"held again after its deadline (held: {held})"


def test_a_pod_back_then_lost_again_within_the_pace_moves_the_deadlines_basis(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The step serves; its canary pod is lost (unready_since written), back
    a moment later (the clear is paced: a write was just made), and lost
    again before the paced write. The cycle after the clear decided from the
    status as written, as if the pod had never come back: the deadline kept
    counting from the first loss. A pod that flaps faster than the pace
    never moves the basis, and the step is rolled back at the progress
    deadline counted from its first flap, though it served in between
    (unpaced, each loss restarts the count)."""
    monkeypatch.setattr("canary.reconcile.PROGRESS_WRITE_EVERY_S", 0.2)
    shell = _Counted("25,50")
    ready = shell._slices
    lost = [False]

    def flapping() -> None:
        ready()
        if lost[0]:
            slices = shell.caches.slices_by_service[KEY]["s"]["endpoints"]
            slices[:] = [e for e in slices if "-green-" not in e["targetRef"]["name"]]

    shell._slices = flapping  # type: ignore[method-assign]
    shell.checks.start_analysis = lambda *_, **__: None  # type: ignore[method-assign]
    for _ in range(2):  # the pods it analyses learned
        shell.cycle()
    time.sleep(0.25)
    lost[0] = True
    shell.cycle()  # lost: written at once (nothing written for long)
    first = shell.status()["unready_since"]
    assert first and not shell.failures, shell.failures
    lost[0] = False
    shell.cycle()  # back: the clear is paced
    back = time.time()
    assert shell.status()["unready_since"] == first
    lost[0] = True
    shell.cycle()  # lost again, before the paced write
    time.sleep(0.25)
    shell.cycle()  # still lost: the pace is over, written
    assert not shell.failures, shell.failures
    assert shell.status()["unready_since"] >= back, "the basis is still the first loss"
