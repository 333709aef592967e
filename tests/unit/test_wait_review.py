"""Adversarial review of `canary wait` (the CI gate): sequences of statuses,
histories and Deployments a real controller and real people produce, for
which the wait told CI the wrong outcome (a false pass above all)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from canary import wait as waiting
from canary.history import DATA_KEY
from canary.observe import source_of
from canary.release_outcome import Outcome, Pending, judge, stale_after
from canary.spec import ACTION
from canary.wait import waiting_request
from tests.unit.test_release_outcome import record
from tests.unit.test_wait_recreated import svc

S, T = "5555555555", "7777777777"  # S served before; T is the release CI waits for


def _status(**fields: Any) -> dict[str, Any]:
    return {
        "phase": "Healthy",
        "adopted": True,
        "stable": "green",
        "stable_revision": S,
        "canary": None,
        "canary_revision": "",
        "failed_revision": "",
        "undo_of": "",
        "message": "",
        "last_action": "",
        "taken_actions": [],
        **fields,
    }


def _service(**annotations: str) -> dict[str, Any]:
    return {"metadata": {"name": "web", "annotations": annotations}}


def test_an_abort_asked_in_the_promotions_abort_window_is_not_a_pass() -> None:
    """On-call saw the last step go bad and ran `canary abort web` just as the
    controller promoted T: the status says T serves, with the old twin kept
    up for an abort (scale_down, previous_revision), and the abort waits on
    the Service for the next cycle, which flips traffic back (manual._abort).
    The wait exited 0 on that status: CI shipped a release taken out a
    moment later (README: exit 4 for an abort, also right after the
    promotion)."""
    records = [record(1, S, "promoted"), record(2, T, "promoted", "all steps passed")]
    promoted = _status(stable="blue", stable_revision=T, scale_down="green", previous_revision=S)
    abort = f"abort revision={T} 2027-01-15T03:00:00.000000Z"
    asked = waiting_request(_service(**{ACTION: abort}), promoted)
    assert asked == abort
    verdict = judge(T, promoted, records, T, asked=asked)
    assert isinstance(verdict, Pending), verdict
    # Taken: traffic is back on S and T is recorded aborted, exit 4.
    records[-1] = record(2, T, "aborted", "aborted by ann after promotion")
    flipped = _status(failed_revision=T, last_action=abort, taken_actions=[abort])
    taken = judge(
        T, flipped, records, T, asked=waiting_request(_service(**{ACTION: abort}), flipped)
    )
    assert getattr(taken, "outcome", None) is Outcome.ABORTED, taken


def test_an_abort_with_no_window_left_or_for_another_release_changes_no_promotion() -> None:
    """The abort window over (no old twin kept), or the abort pinned to
    another revision: the controller ignores the abort, so T is promoted."""
    records = [record(1, S, "promoted"), record(2, T, "promoted")]
    abort = f"abort revision={T} t1"
    over = _status(stable="blue", stable_revision=T)
    verdict = judge(T, over, records, T, asked=waiting_request(_service(**{ACTION: abort}), over))
    assert getattr(verdict, "outcome", None) is Outcome.PROMOTED, verdict
    window = _status(stable="blue", stable_revision=T, scale_down="green", previous_revision=S)
    other = "abort revision=9999999999 t1"
    verdict = judge(
        T, window, records, T, asked=waiting_request(_service(**{ACTION: other}), window)
    )
    assert getattr(verdict, "outcome", None) is Outcome.PROMOTED, verdict


@pytest.mark.parametrize("started_landed", [True, False])
def test_a_rollback_whose_record_the_history_refused_is_a_rollback(started_landed: bool) -> None:
    """T was promoted long ago (#1), S since (#2); the team reverts to T and
    `canary wait` starts before the controller does (stale_after: 2). T is
    rolled back, but the history write is refused (a ConfigMap quota, an
    admission policy, the 1 MiB limit): the controller writes the status all
    the same (reconcile._write_records), RolledBack with failed_revision T,
    and the history keeps T's start (#3, still 'progressing') or not even
    that. The wait took #3 for an ending ('superseded', exit 7) or #1's old
    promotion for this attempt's ('promoted, then undone', exit 7): CI read
    'a newer change replaced it' for a release the analysis rolled back.
    The same when the Service's watch event comes before the history's
    (two watch streams, no order between them)."""
    records = [record(1, T, "promoted"), record(2, S, "promoted")]
    if started_landed:
        records.append(record(3, T, "progressing"))
    stale = stale_after(_status(), records[:2], T, T)
    assert stale == 2
    rolled_back = _status(
        phase="RolledBack",
        failed_revision=T,
        message="rolled back: step 1/3: success-rate = 50 (want >= 99)",
    )
    verdict = judge(T, rolled_back, records, T, stale)
    assert getattr(verdict, "outcome", None) is Outcome.ROLLED_BACK, verdict


# -- a wait driven end to end: the three objects listed, then watched ---------------------

DEPLOYMENT = {
    "metadata": {"namespace": "shop", "name": "web", "resourceVersion": "5"},
    "spec": {
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "registry.example/web:v1"}]},
        }
    },
}
# The revision the controller computes for DEPLOYMENT (it reads no config).
ASKED = source_of(DEPLOYMENT, lambda kind, name: None)[0].revision


def _svc(status: dict[str, Any], rv: str, writer: str = "canary-controller") -> dict[str, Any]:
    """The Service with `status`, its annotation last written by `writer`
    (managedFields, as the API server returns them)."""
    owned: dict[str, Any] = {"f:metadata": {"f:annotations": {"f:canary.io/status": {}}}}
    service = svc(status, rv)
    service["metadata"]["managedFields"] = [
        {"manager": writer, "operation": "Update", "fieldsV1": owned}
    ]
    return service


def _history(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "shop", "name": "web-canary-history", "resourceVersion": "3"},
        "data": {DATA_KEY: json.dumps(records)},
    }


class _Kube:
    """Lists the Service as `first`, the history and the Deployment as given;
    the Service's watch then sends `then`, one MODIFIED each."""

    def __init__(
        self,
        first: dict[str, Any],
        then: list[dict[str, Any]],
        records: list[dict[str, Any]],
        deployment: dict[str, Any] | None = DEPLOYMENT,
    ) -> None:
        self.objects = {"services": first, "configmaps": _history(records)}
        self.objects["deployments"] = deployment  # type: ignore[assignment]
        self.then = then

    async def get(self, path: str, **_: Any) -> dict[str, Any]:
        found = self.objects.get(path.rsplit("/", 1)[-1])
        return {"items": [found] if found else [], "metadata": {"resourceVersion": "10"}}

    async def watch(self, path: str, rv: str, timeout: int, **_: Any) -> AsyncIterator[Any]:
        if path.endswith("/services"):
            events, self.then = self.then, []
            for event in events:
                await asyncio.sleep(0.01)
                yield {"type": "MODIFIED", "object": event}
        await asyncio.sleep(3600)


async def test_a_status_another_tool_wrote_is_no_pass() -> None:
    """A `git revert` to the commit of release T, whose manifests hold the
    Service as once exported (`kubectl get -o yaml`), canary.io/status
    included: Argo CD applies both, the Deployment asking for T again and
    the Service's status saying what it said then, T stable. The controller
    never trusts a status it did not write (status_writes.read_state): it
    rebuilds S as stable and rolls T out, which fails its analysis. The
    PostSync `canary wait` read the old status and exited 0 at once."""
    records = [record(1, ASKED, "promoted"), record(2, S, "promoted")]
    old = _status(stable="blue", stable_revision=ASKED)
    rebuilt = _status()
    rolling = _status(phase="Progressing", canary="blue", canary_revision=ASKED)
    rolled_back = _status(phase="RolledBack", failed_revision=ASKED, message="rolled back")
    then = [_svc(s, str(11 + i)) for i, s in enumerate((rebuilt, rolling, rolled_back))]
    kube = _Kube(_svc(old, "10", writer="argocd-controller"), then, records)
    request = waiting.Request("shop", "web", timeout_s=5)
    result = await waiting.wait(kube, request)  # type: ignore[arg-type]
    assert result.settled.outcome is Outcome.ROLLED_BACK, result.settled


async def test_a_status_another_tool_wrote_that_our_history_agrees_with_is_read() -> None:
    """Argo CD's Replace=true recreates the Service from an export whose
    status says what serves now: the controller rebuilds that very value,
    and its write of it leaves the field Argo CD's (reconcile._vouched). The
    history (ours alone) names T serving: the wait says promoted, not
    `timed out` half an hour later."""
    records = [record(1, S, "promoted"), record(2, ASKED, "promoted")]
    serving = _status(stable="blue", stable_revision=ASKED)
    kube = _Kube(_svc(serving, "10", writer="argocd-controller"), [], records)
    told: list[str] = []
    result = await waiting.wait(kube, waiting.Request("shop", "web", timeout_s=2), told.append)  # type: ignore[arg-type]
    assert result.settled.outcome is Outcome.PROMOTED, result.settled
    assert not told, told


class _Script:
    """The three watches send `events` (kind, type, object) in this order
    across them, a few milliseconds apart, as an API server would."""

    def __init__(
        self,
        first: dict[str, dict[str, Any] | None],
        events: list[tuple[str, str, dict[str, Any]]],
    ) -> None:
        self.first, self.events = first, events
        self.watched: set[str] = set()

    async def get(self, path: str, **_: Any) -> dict[str, Any]:
        found = self.first.get(path.rsplit("/", 1)[-1])
        return {"items": [found] if found else [], "metadata": {"resourceVersion": "10"}}

    async def watch(self, path: str, rv: str, timeout: int, **_: Any) -> AsyncIterator[Any]:
        kind = path.rsplit("/", 1)[-1]
        if kind not in self.watched:
            self.watched.add(kind)
            for slot, (which, type_, obj) in enumerate(self.events):
                if which == kind:
                    await asyncio.sleep(0.05 * (slot + 1) - 0.05 * getattr(self, kind, 0))
                    setattr(self, kind, slot + 1)
                    yield {"type": type_, "object": obj}
        await asyncio.sleep(3600)


async def test_a_rollout_cut_by_a_replace_force_of_the_deployment_is_waited_through() -> None:
    """Argo CD's Replace=true (or `kubectl replace --force`, a Helm
    reinstall) deletes the team's Deployment and creates it again a second
    later, mid-rollout. The controller takes the canary out at once,
    recording the attempt 'superseded' (RolloutCancelled: the Deployment
    was deleted mid-rollout, never marked failed), and rolls the same
    revision out again from its first step once the Deployment is back
    (README, chaos seed 46). The wait exited 7 ('superseded') on the cut
    attempt, while the release went on, and was promoted."""
    rolling = _status(phase="Progressing", canary="blue", canary_revision=ASKED)
    cut = _status(message="the green twin keeps serving")
    promoted = _status(stable="blue", stable_revision=ASKED)
    first = [record(1, S, "promoted"), record(2, ASKED, "progressing")]
    reason = "RolloutCancelled: Deployment web was deleted mid-rollout"
    ended = [record(1, S, "promoted"), record(2, ASKED, "superseded", reason)]
    again = [*ended, record(3, ASKED, "progressing")]
    done = [*ended, record(3, ASKED, "promoted", "all steps passed")]
    kube = _Script(
        {"services": _svc(rolling, "10"), "configmaps": _history(first), "deployments": DEPLOYMENT},
        [
            ("deployments", "DELETED", DEPLOYMENT),
            ("configmaps", "MODIFIED", _history(ended)),
            ("services", "MODIFIED", _svc(cut, "12")),
            ("deployments", "ADDED", DEPLOYMENT),
            ("configmaps", "MODIFIED", _history(again)),
            ("services", "MODIFIED", _svc(rolling, "14")),
            ("configmaps", "MODIFIED", _history(done)),
            ("services", "MODIFIED", _svc(promoted, "16")),
        ],
    )
    result = await waiting.wait(kube, waiting.Request("shop", "web", timeout_s=5))  # type: ignore[arg-type]
    assert result.settled.outcome is Outcome.PROMOTED, result.settled


def test_the_wait_reads_the_record_decide_writes_when_the_deployment_is_deleted() -> None:
    """The wait tells a cut attempt by its reason: the text decide records,
    not a copy of it (a reworded detail made every such wait exit 7 again)."""
    from dataclasses import replace

    from canary import release_outcome
    from tests.unit.test_drain_bad_day import CANARY, _serving_a_step

    world = _serving_a_step()
    revision = world.state.canary_revision
    world.source = replace(world.source, exists=False)
    world.step(CANARY, advance=1)
    cut = next(r for r in reversed(world.records) if r.get("revision") == revision)
    assert cut.get("outcome") == "superseded" and cut.get("ended"), cut
    assert isinstance(release_outcome._cut_and_again(revision, cut, None), Pending), cut
