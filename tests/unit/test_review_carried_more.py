"""The carried record (history.CARRIED) on a bad day, second review; each
test fails on 172298c."""

from __future__ import annotations

import asyncio
import copy
import time

from canary import history
from canary.spec import STATUS
from tests.unit.test_events_refused import KEY
from tests.unit.test_record_carried import _Counted, _promoted, _release


def _reconcile(shell: _Counted) -> None:
    """A cycle while the Service may be gone (the shell's own cycle reads it)."""
    try:
        asyncio.run(shell.reconciler.reconcile(*KEY))
    except Exception as exc:  # what the controller retries with its back-off
        shell.failures.append(exc)


def test_a_service_handed_back_and_created_again_starts_a_history_without_the_old_rollout() -> None:
    shell = _promoted("25,50")
    revision = _release(shell, "web:v3")
    shell.step()  # v3's start, step 1's check and Events ride in the status (and memory)
    assert [i for i in shell.carried() if "start" in i]
    kept = copy.deepcopy(shell.service())
    for deployment in shell.informers[1].items():  # Events of an orphan go to the Deployment
        deployment["metadata"].setdefault("uid", f"d-{deployment['metadata']['name']}")
    # The Service deleted: its history goes with it (garbage collection),
    # and past the grace its twins are handed back to the team's Deployment.
    shell.informers[0].forget("ns", "web")
    shell.informers[3].forget("ns", "web-canary-history")
    for _ in range(20):
        shell.reconciler._missing[KEY] = time.time() - 100
        _reconcile(shell)
    assert not [d for d in shell.informers[1].items() if d["metadata"]["name"] != "web"]
    # Days later the team manages the Service again (the same manifest,
    # without a status): it is adopted with a history of its own.
    del kept["metadata"]["annotations"][STATUS]
    kept["spec"]["selector"] = {"app": "web"}
    shell.informers[0].remember(kept)
    for _ in range(6):
        shell.cycle()
    assert shell.status().get("adopted"), shell.status()
    records = shell.written()
    # Before: v3's start, check and Events from the Service that was deleted
    # made an entry "progressing" for good (number 1, before the adoption),
    # which a later rollout of v3 would have been written into.
    assert revision not in [r["revision"] for r in records], records
    assert [r["outcome"] for r in records] == ["adopted"], records
    assert not history.carried(shell.status(), every=True)


def test_on_call_never_puts_an_earlier_rollouts_carried_check_on_a_retry() -> None:
    """r2 rolled back (its history took check c1), then retried (a new entry,
    written at once); the status read with them is one still carrying c1: the
    end's status write failed and the retry's is not written yet, or an
    export taken mid-rollout applied again (not trusted by the controller,
    read by on-call all the same)."""
    c1 = {"kind": "scheduled", "evaluated": 5.0, "step": 1, "verdict": "fail"}
    told = {"at": 5.0, "applied": 5.1, "reason": "AnalysisFailed", "message": "m"}
    records = [
        {"number": 1, "revision": "r1", "started": 0.5, "outcome": "adopted", "ended": 0.5},
        {
            "number": 2,
            "revision": "r2",
            "started": 1.0,
            "checks": [c1],
            "actions": [told],
            "outcome": "rolled-back",
            "ended": 6.0,
        },
        {
            "number": 3,
            "revision": "r2",
            "started": 9.0,
            "checks": [],
            "actions": [],
            "outcome": "progressing",
        },
    ]
    status = {
        "canary_revision": "r2",
        history.CARRIED: [
            {"revision": "r2", "start": {"at": 1.0, "reason": "started"}},
            history.check_item("r2", c1),
            {"revision": "r2", "event": told},
        ],
    }
    retry = history.with_carried(records, status)[-1]
    assert retry["number"] == 3
    assert retry["checks"] == [] and retry["actions"] == [], retry  # before: c1 and its Event


def test_a_hand_back_after_a_restart_keeps_the_releases_template() -> None:
    """A release started by a process that died (its start read back from the
    status, without its template), then management removed: the hand-back
    sets the team's Deployment back to the serving revision and deletes the
    twins in the cycle whose history write takes the start. Before, neither
    held the release's template any more when that write looked for it: its
    entry was written without one (not undoable), the one path that 172298c
    took for impossible."""
    shell = _promoted("25,50,75")
    revision = _release(shell, "web:v3")
    shell.step()
    shell.restart()  # killed: the start is read back from the status
    shell.cycle()
    del shell.service()["metadata"]["annotations"]["canary.io/strategy"]
    for _ in range(12):
        shell.cycle()
        if STATUS not in shell.service()["metadata"]["annotations"]:
            break
    assert STATUS not in shell.service()["metadata"]["annotations"] and not shell.failures
    entry = [r for r in shell.written() if r["revision"] == revision][-1]
    assert [c["step"] for c in entry["checks"]] == [1]
    assert entry["template"]["spec"]["containers"][0]["image"] == "web:v3", entry
    assert revision in history.undoable(shell.written()).values()


def test_a_service_applied_again_without_our_annotations_keeps_what_its_status_carried() -> None:
    """`kubectl replace` of a manifest with none of canary's annotations
    mid-rollout: the Service stays (and its history, which it owns), the
    twins are handed back as orphans. Before, what the status carried (the
    release's start, step 1's check, its Events) went with the status: the
    history had no entry of the release at all (before 805020e it had)."""
    shell = _promoted("25,50,75")
    revision = _release(shell, "web:v3")
    shell.step()
    for deployment in shell.informers[1].items():  # Events of an orphan go to the Deployment
        deployment["metadata"].setdefault("uid", f"d-{deployment['metadata']['name']}")
    annotations = shell.service()["metadata"]["annotations"]
    for name in [k for k in annotations if k.startswith("canary.io/")]:
        del annotations[name]
    for _ in range(20):
        shell.reconciler._missing[KEY] = time.time() - 100  # past the grace
        shell.cycle()
    assert not [d for d in shell.informers[1].items() if d["metadata"]["name"] != "web"]
    assert not shell.failures, shell.failures
    entry = [r for r in shell.written() if r["revision"] == revision][-1]
    assert [c["step"] for c in entry["checks"]] == [1], entry
    assert [a["reason"] for a in entry["actions"]][:1] == ["RolloutStarted"]
    assert entry["template"]["spec"]["containers"][0]["image"] == "web:v3"
