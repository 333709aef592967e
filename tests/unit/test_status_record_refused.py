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
