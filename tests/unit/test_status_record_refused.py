"""The status's carried record (history.CARRIED) when the history write
is refused for good (RBAC without patch on ConfigMaps, the ConfigMap made
immutable: HISTORY_REFUSED), found by review; drives the real reconciler
over the in-memory API server (tests.unit.test_events_refused)."""

from __future__ import annotations

import json

import pytest

from canary import history
from tests.unit.test_record_carried import _Counted, _entry, _steps


def test_checks_past_the_status_room_stay_in_the_status_while_the_history_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Step 1's check rides in the status. The history is refused (403)
    and step 2's check takes the carried record past CARRIED_MAX_BYTES:
    its write into the ConfigMap is refused, yet the status written with
    the advance dropped both checks. On-call (`canary history`) saw none of
    the rollout's checks, and a restart lost them for good: the history
    kept only the last step's."""
    shell = _Counted("25,50,75")
    revision = shell.status()["canary_revision"]
    shell.step()
    assert _steps(_entry(shell.records(), revision)) == [(1, "pass")]
    shell.kube.forbidden = "/configmaps/"
    monkeypatch.setattr("canary.reconcile.CARRIED_MAX_BYTES", 10)
    shell.step()
    assert shell.status()["step"] == 2 and shell.failures  # the refusal, told
    on_call = _entry(shell.records(), revision)
    assert _steps(on_call) == [(1, "pass"), (2, "pass")], _steps(on_call)
    shell.restart()  # killed while the history is still refused
    shell.kube.forbidden = ""
    monkeypatch.setattr("canary.reconcile.CARRIED_MAX_BYTES", 16_000)
    shell.step()
    assert shell.status().get("stable_revision") == revision, shell.status()
    entry = _entry(shell.written(), revision)
    assert entry["outcome"] == "promoted"
    assert _steps(entry) == [(1, "pass"), (2, "pass"), (3, "pass")], _steps(entry)
    assert history.CARRIED not in shell.status()


def test_what_stays_carried_while_the_history_is_refused_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kept past CARRIED_MAX_BYTES, the status must not grow past what an
    annotation may hold: the oldest checks go first."""
    shell = _Counted("25,50,75")
    revision = shell.status()["canary_revision"]
    shell.step()
    # Room for one step's check and Event (step 1's, as carried), not two.
    room = len(json.dumps(history.slim(shell.carried()), separators=(",", ":"))) + 50
    shell.kube.forbidden = "/configmaps/"
    monkeypatch.setattr("canary.reconcile.CARRIED_MAX_BYTES", 10)
    monkeypatch.setattr("canary.reconcile.CARRIED_REFUSED_MAX_BYTES", room)
    shell.step()
    assert shell.status()["step"] == 2
    assert _steps(_entry(shell.records(), revision)) == [(2, "pass")]


def test_cycles_while_the_history_is_refused_do_not_pile_up_history_edits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kept in the status past CARRIED_MAX_BYTES, the carried record made
    every later cycle (a look, a requeue, nothing new at all) a history
    write of all of it again, refused again, and its edits joined those
    waiting (Unwritten) for the next try: some 4 more a cycle, each with
    the whole record, all applied again at every cycle. An RBAC slip left
    for a day grew them by the thousand, and every cycle of the controller
    (one event loop for every Service) slower. While the history is
    refused, what is new waits in the status (up to
    CARRIED_REFUSED_MAX_BYTES); the decision's own edits wait once."""
    shell = _Counted("25,50,75,90")
    revision = shell.status()["canary_revision"]
    shell.step()
    shell.kube.forbidden = "/configmaps/"
    monkeypatch.setattr("canary.reconcile.CARRIED_MAX_BYTES", 10)
    shell.step()
    assert shell.status()["step"] == 2

    def waiting() -> int:
        unwritten = shell.reconciler._unwritten.get(("ns", "web"))
        return len(unwritten.edits) if unwritten is not None else 0

    first = waiting()
    for _ in range(20):
        shell.cycle()
    assert waiting() == first, f"{waiting() - first} edits more after 20 cycles with nothing new"
    shell.step()  # step 3's check: carried, not another write of it all
    assert shell.status()["step"] == 3
    assert waiting() == first, f"{waiting() - first} edits more after a check"
    assert _steps(_entry(shell.records(), revision)) == [(1, "pass"), (2, "pass"), (3, "pass")]
    shell.kube.forbidden = ""
    shell.step()
    assert shell.status().get("stable_revision") == revision, shell.status()
    entry = _entry(shell.written(), revision)
    assert entry["outcome"] == "promoted"
    assert _steps(entry) == [(1, "pass"), (2, "pass"), (3, "pass"), (4, "pass")], _steps(entry)
    assert [a["reason"] for a in entry["actions"]].count("StepAdvanced") == 3
    assert history.CARRIED not in shell.status()
