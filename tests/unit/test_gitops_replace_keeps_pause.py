"""On-call pauses a rollout (`canary pause web`: canary.io/action), then a
re-apply replaces the Service with Git's manifest: Argo CD with
`Replace=true`, `kubectl replace -f`, Helm's `--force`. The status and the
action go together, so nothing on the Service says the rollout was paused.
Before, the status was rebuilt unpaused, the release rolled out again from
its first step and was promoted a few checks later, against the pause of
the person holding it, under a StateRebuilt that did not mention it. The
pause is in the record (the RolloutPaused Event, in the history or carried
by the status the controller last wrote): a rebuild keeps it until someone
resumes or promotes. Runs the real reconciler against the in-memory API of
test_events_refused."""

from __future__ import annotations

import copy

from canary import history
from canary.spec import STATUS, TWIN_LABEL
from tests.unit.test_events_refused import _Shell

ACTION = "canary.io/action"


def _replaced(shell: _Shell) -> None:
    """Git's Service: no status, no action, the app's selector."""
    service = copy.deepcopy(shell.service())
    for key in (STATUS, ACTION):
        service["metadata"]["annotations"].pop(key, None)
    service["spec"]["selector"] = {"app": "web"}
    shell.informers[0].remember(service)


def _run(shell: _Shell, cycles: int) -> None:
    for _ in range(cycles):
        if shell.checks.asked is None and shell.status().get("canary"):
            shell.ask_now()  # every check passes
        shell.cycle()


def test_a_pause_survives_a_replace_of_the_service() -> None:
    shell = _Shell()
    shell.kube.refusing = None
    shell.service()["metadata"]["annotations"][ACTION] = "pause t1"
    shell.cycle()
    assert shell.status()["paused"], shell.status()
    _replaced(shell)
    _run(shell, 8)
    assert not shell.failures, shell.failures
    status = shell.status()
    assert "Promoted" not in shell.kube.events, shell.kube.events
    assert status["paused"] and status["phase"] == "Paused", status
    rebuilt = shell.kube.events.index("StateRebuilt")
    assert "StepAdvanced" not in shell.kube.events[rebuilt:], shell.kube.events
    # `canary resume` lifts it: the rollout goes on and is promoted.
    shell.service()["metadata"]["annotations"][ACTION] = "resume t2"
    _run(shell, 8)
    assert "Promoted" in shell.kube.events, shell.kube.events
    assert shell.service()["spec"]["selector"].get(TWIN_LABEL) == "green"


def test_a_pause_lifted_since_is_not_brought_back() -> None:
    def event(at: float, reason: str, message: str) -> dict[str, object]:
        return {"at": at, "reason": reason, "message": message}

    records = [{"revision": "r2", "actions": [event(1, "RolloutPaused", "paused by alice")]}]
    assert history.paused_by_hand(records, []) == "paused by alice"
    for lifted in (
        event(2, "RolloutResumed", "resumed by bob"),
        event(2, "ActionIgnored", "resume by bob: the rollout does not go on, because ..."),
        event(2, "PromoteRequested", "bob asked to promote r2: skipping the remaining steps"),
    ):
        carried = [{"revision": "r2", "event": lifted}]
        assert history.paused_by_hand(records, carried) == "", lifted
    # Not a person's pause: the Deployment paused, an HPA on the canary.
    held = [{"revision": "r2", "actions": [event(1, "RolloutPaused", "Deployment web is paused")]}]
    assert history.paused_by_hand(held, []) == ""
