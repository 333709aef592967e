"""A step's check and Events ride in the status annotation (history.CARRIED),
written at every step anyway, instead of a write of the history ConfigMap of
their own (issue #12: two writes fewer per 3-step rollout, and the history,
up to 900 KB, no longer rewritten whole at each step). The ConfigMap takes
them with the rollout's end; on-call reads both (with_carried). Each test
drives the real reconciler over an in-memory API server (tests.unit.
test_events_refused); each would fail on the code before: there the check
was a ConfigMap write and the status carried nothing."""

from __future__ import annotations

import asyncio
import copy
import json
import math
from typing import Any

import pytest

from canary import history
from canary.kube import ApiError
from canary.model import JSON
from canary.reconcile import Edges, Reconciler
from canary.status_writes import new_check
from tests.unit.test_events_refused import KEY, _Shell


class _Counted(_Shell):
    """The shell, counting the writes to the history ConfigMap."""

    def __init__(self, steps: str = "25,50") -> None:
        super().__init__(steps)
        self.kube.refusing = None  # Events are created
        self.history_writes = 0
        self.fail_service_writes = 0
        for verb in ("create", "patch", "replace"):
            setattr(self.kube, verb, self._counting(getattr(self.kube, verb)))

    def _counting(self, write: Any) -> Any:
        async def counted(path: str, *args: Any, **kwargs: Any) -> Any:
            if "/configmaps/" in path or path.endswith("/configmaps"):
                self.history_writes += 1
            if "/services/" in path and self.fail_service_writes:
                self.fail_service_writes -= 1
                raise ApiError(503, "ServiceUnavailable", "etcd leader changed")
            return await write(path, *args, **kwargs)

        return counted

    def written(self) -> list[JSON]:
        """The ConfigMap alone, as the controller wrote it."""
        return history.load(self.informers[3].get("ns", "web-canary-history"))

    def carried(self) -> list[JSON]:
        return history.carried(self.status())

    def step(self) -> None:
        """The step's check asked and passed, and the cycles that follow."""
        self.ask_now()
        for _ in range(6):
            self.cycle()

    def restart(self) -> None:
        """A new process: nothing of the old one's memory."""
        reconciler = Reconciler(Edges(kube=self.kube, prometheus=None), self.caches)  # type: ignore[arg-type]
        reconciler.checks = self.checks  # type: ignore[assignment]
        self.reconciler = reconciler


def _entry(records: list[JSON], revision: str) -> JSON:
    return [r for r in records if r.get("revision") == revision][-1]


def _steps(entry: JSON) -> list[tuple[int, str]]:
    return [(c["step"], c["verdict"]) for c in entry.get("checks", [])]


def test_a_steps_check_rides_in_the_status_and_the_end_takes_it_into_the_history() -> None:
    shell = _Counted("25,50,75")
    revision = shell.status()["canary_revision"]
    shell.step()
    shell.step()
    assert shell.status()["step"] == 2 and not shell.failures, shell.failures
    assert shell.history_writes == 0  # before: one per step, for its check
    assert [i["check"]["step"] for i in shell.carried() if "check" in i] == [1, 2]
    on_call = _entry(shell.records(), revision)
    assert _steps(on_call) == [(1, "pass"), (2, "pass")]
    assert [a["reason"] for a in on_call["actions"]].count("StepAdvanced") == 2
    shell.step()  # the last step passes: promoted
    assert shell.status().get("stable_revision") == revision, shell.status()
    assert shell.history_writes == 1  # the outcome, with all it carried
    entry = _entry(shell.written(), revision)
    assert entry["outcome"] == "promoted"
    assert _steps(entry) == [(1, "pass"), (2, "pass"), (3, "pass")]
    assert history.CARRIED not in shell.status()
    assert shell.records() == shell.written()


def test_a_new_process_takes_what_the_status_carries_into_the_history() -> None:
    shell = _Counted("25,50")
    revision = shell.status()["canary_revision"]
    shell.step()
    assert shell.history_writes == 0 and shell.carried()
    shell.restart()  # killed: its memory is gone, the status is not
    shell.step()
    entry = _entry(shell.written(), revision)
    assert entry["outcome"] == "promoted"
    assert _steps(entry) == [(1, "pass"), (2, "pass")]  # step 1's check is not lost
    assert [a["reason"] for a in entry["actions"]].count("StepAdvanced") == 1


def test_a_check_whose_status_write_failed_is_carried_by_the_next_one() -> None:
    shell = _Counted("25,50,75")
    revision = shell.status()["canary_revision"]
    shell.fail_service_writes = 1  # the step's status write: 503
    shell.step()
    assert shell.failures and shell.status()["step"] == 1
    assert [i["check"]["step"] for i in shell.carried() if "check" in i] == [1]
    shell.step()
    shell.step()
    assert _steps(_entry(shell.written(), revision)) == [(1, "pass"), (2, "pass"), (3, "pass")]


def test_a_check_the_status_has_no_room_for_goes_into_the_history(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("canary.reconcile.CARRIED_MAX_BYTES", 10)
    shell = _Counted("25,50,75")
    revision = shell.status()["canary_revision"]
    shell.step()
    assert shell.history_writes == 1
    assert _steps(_entry(shell.written(), revision)) == [(1, "pass")]
    assert not [i for i in shell.carried() if "check" in i]


def test_a_graceful_stop_writes_what_only_memory_holds() -> None:
    shell = _Counted("25,50")
    revision = shell.status()["canary_revision"]
    shell.ask_now()
    shell.cycle()  # the check passes: the advance's status is held for its pods
    assert shell.reconciler._carrying[KEY] and not shell.carried()
    asyncio.run(shell.reconciler.close())
    on_call = _entry(shell.records(), revision)
    assert _steps(on_call) == [(1, "pass")]


def _release(shell: _Counted, image: str) -> str:
    """The team's Deployment changed (a new image), as its watch brings it,
    and the cycles that start its rollout: the status's canary revision."""
    source = copy.deepcopy(shell.informers[1].get("ns", "web"))
    source["spec"]["template"]["spec"]["containers"][0]["image"] = image
    source["metadata"]["generation"] += 1
    shell.informers[1].remember(source)
    for _ in range(4):
        shell.cycle()
    return str(shell.status().get("canary_revision") or "")


def _promoted(steps: str) -> _Counted:
    shell = _Counted(steps)
    for _ in steps.split(","):
        shell.step()
    assert shell.status().get("canary_revision") in ("", None), shell.status()
    shell.history_writes = 0
    return shell


def test_a_releases_start_rides_in_the_status_and_its_end_writes_its_entry() -> None:
    shell = _promoted("25,50")
    numbers = [r["number"] for r in shell.written()]
    revision = _release(shell, "web:v3")
    assert revision and shell.status()["step_ready"], shell.status()
    assert shell.history_writes == 0  # before: the start wrote the history
    assert revision not in [r["revision"] for r in shell.written()]
    on_call = _entry(shell.records(), revision)  # what `canary history` shows
    assert on_call["outcome"] == "progressing" and on_call["images"] == ["web:v3"]
    assert on_call["number"] == max(numbers) + 1
    assert [a["reason"] for a in on_call["actions"]][:2] == ["RolloutStarted", "StepReady"]
    # When the first step began serving is the history's: no Event of its
    # own, as for every later step (its StepAdvanced names the weight served).
    assert "RolloutStarted" in shell.kube.events and "StepReady" not in shell.kube.events
    assert "template" not in json.dumps(shell.carried())  # the twin has it; the status does not
    shell.step()
    shell.step()
    assert shell.history_writes == 1
    entry = _entry(shell.written(), revision)
    assert entry["outcome"] == "promoted" and entry["number"] == max(numbers) + 1
    assert entry["started"] == on_call["started"] and entry["images"] == ["web:v3"]
    assert entry["template"]["spec"]["containers"][0]["image"] == "web:v3"  # undo needs it
    assert [a["reason"] for a in entry["actions"]][:1] == ["RolloutStarted"]


def test_a_release_started_by_a_process_that_died_keeps_its_entry() -> None:
    shell = _promoted("25,50")
    revision = _release(shell, "web:v3")
    started = _entry(shell.records(), revision)["started"]
    shell.restart()
    shell.step()
    shell.step()
    entry = _entry(shell.written(), revision)
    assert entry["outcome"] == "promoted" and entry["started"] == started
    assert entry["template"]["spec"]["containers"][0]["image"] == "web:v3"  # from the source
    reasons = [a["reason"] for a in entry["actions"]]
    assert "EntryRestored" not in reasons and reasons[0] == "RolloutStarted", reasons


def test_a_nan_carried_is_no_change_of_the_status() -> None:
    # json.loads gives a NaN that is not equal to itself: compared as
    # objects, every cycle would have written the status again.
    item = history.check_item("r2", {"kind": "scheduled", "value": math.nan})
    assert not new_check([item], json.loads(json.dumps([item])))
    assert new_check([item], [])


def test_on_call_reads_a_carried_item_the_history_also_has_once() -> None:
    records = [{"revision": "r2", "number": 2, "started": 1.0, "checks": [], "actions": []}]
    check = {"kind": "scheduled", "evaluated": 5.0, "step": 1, "verdict": "pass"}
    items = [
        {"revision": "r2", "start": {"at": 1.0, "reason": "started: steps 25,50%"}},
        history.check_item("r2", check),
        history.event_item("r2", 5.0, 5.1, "StepAdvanced", "m"),
    ]
    status = {"canary_revision": "r2", history.CARRIED: items}
    once = history.with_carried(records, status)
    twice = history.with_carried(once, status)
    assert twice == once
    assert len(once) == 1 and len(once[0]["checks"]) == 1 and len(once[0]["actions"]) == 1
    # The rollout ended and its history took everything, but the status
    # write after it failed: still no second entry.
    ended = [{**once[0], "outcome": "promoted", "ended": 9.0}]
    assert history.with_carried(ended, status) == ended
    # A status whose rollout has ended carries nothing for on-call.
    assert history.with_carried(records, {history.CARRIED: items}) == records
