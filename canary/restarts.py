"""Container restarts of the new version as a rollback signal
(max-restarts). A crash killed the requests in flight, which never reach
the app's own counters, so its success rate reads clean; and a pod back
within two scrapes does not start the step's window again. A restart is a
fact, not a noisy measurement: one pod past the limit rolls back at once,
not through failure-limit, and no later look clears it. Pure, over a Draft."""

from __future__ import annotations

from canary.ending import rollback
from canary.model import Observed, Restarted, State, Twin
from canary.placement import canary_autoscaler, paused_deployment
from canary.plan import Draft
from canary.schedule import watched
from canary.spec import RolloutSpec, Strategy


def watched_for_restarts(state: State, spec: RolloutSpec, observed: Observed) -> bool:
    """Where a failed check would roll back, so does a restart. Moving
    through the steps (or at a gate: a person's approval is asked of a
    release that does not crash) the new version is under analysis. Standing
    still (paused, halted, held by a paused Deployment or an HPA on the
    canary twin) a failed check counts only while the canary serves
    production at its step (schedule.watched: not a blue-green preview, nor
    a halt over query errors, which waits for a person or for Prometheus);
    the restarts stay on the pods, judged once it moves again. A promotion
    (a person's `promote` included) is judged throughout: it ends in the
    flip, after which nothing judges the release, so a restart left for
    later would be forgiven (before, a blue-green preview that crash-looped
    while its promotion waited for its pods was flipped into production)."""
    if state.canary is None:
        return False
    held = bool(paused_deployment(observed)) or (
        not state.promoting and bool(canary_autoscaler(observed, state.stable))
    )
    standing = held or state.paused or spec.paused or bool(state.halted)
    return watched(state) if standing else True


def crash_looping(draft: Draft, spec: RolloutSpec, observed: Observed) -> bool:
    """Rolls back when a live pod of the revision under analysis restarted
    more than max-restarts times; True if it did. Per container, not summed
    over containers or pods: a node reboot restarts every container on it
    once and must not roll back a good release; a crash loop restarts the
    same container again within seconds."""
    _read_late(draft, observed)
    state = draft.state
    if not watched_for_restarts(state, spec, observed):
        return False
    twin = observed.twin(state.canary)
    if not twin.exists or twin.revision != state.canary_revision:
        return False  # its pods are not the revision under analysis (yet)
    limit = spec.analysis.max_restarts
    before = dict(state.restarts_before)
    over = [
        (count - had, pod.pod, container, count, had)
        for pod in twin.restarted
        for container, count in _containers(pod)
        if count - (had := before.get(_key(pod.pod, container), 0)) > limit
    ]
    if not over:
        return False
    _, name, container, count, had = max(over)
    [pod] = [p for p in twin.restarted if p.pod == name]
    if container != pod.container:  # its last exit is known of the most restarted alone
        pod = Restarted(pod.pod, count, container)
    role = "preview" if spec.strategy is Strategy.BLUE_GREEN else "canary"
    text = restart_text(pod, role, limit, had)
    rollback(draft, observed, "PodRestarts", text)
    return True


def _read_late(draft: Draft, observed: Observed) -> None:
    """A rollout begun while the pods cache could not be trusted (not
    listed yet after a start: it is not waited for; its watch failing)
    takes what its pods had from the first cycle that can read them.
    Before, it took "none": a revert onto the twin kept for abort begun
    in a new leader's first cycle was rolled back seconds later for the
    restarts its pods had from days of serving. A restart in between is
    forgiven, as one before the rollout is."""
    state = draft.state
    if not state.restarts_unread or not observed.pods_known or state.canary is None:
        return
    twin = observed.twin(state.canary)
    draft.set(restarts_before=restarts_before(twin, state.canary_revision), restarts_unread=False)


def _containers(pod: Restarted) -> tuple[tuple[str, int], ...]:
    return pod.containers or ((pod.container, pod.restarts),)


def _key(pod: str, container: str) -> str:
    return f"{pod}/{container}"


def restarts_before(twin: Twin, revision: str) -> tuple[tuple[str, int], ...]:
    """What the twin's pods of `revision` had restarted as a rollout of it
    begins (State.restarts_before); none when its pods are all new. Read
    whatever revision the twin is at: an undo onto it while another
    release's pods never got ready reuses the pods of `revision` its
    rolling update kept (before, only a twin already at `revision` was
    read, and an undo to the known-good revision was rolled back for the
    restarts its pods had from days of serving)."""
    pods = [pod for rev, pod in twin.restarts_of if rev == revision]
    if twin.revision == revision:
        pods += twin.restarted
    # Per container: a sidecar's restarts over weeks (the mesh's upgrades)
    # must not hide the app's crash loop. Before, a pod was kept at its
    # most-restarted container's count, and an app restarting under a
    # proxy restarted 3 times rolled back only at its 5th restart.
    found = {_key(pod.pod, c): count for pod in pods for c, count in _containers(pod)}
    return tuple(sorted(found.items()))


def may_reuse_pods(twin: Twin, revision: str) -> bool:
    """Whether a rollout of `revision` onto `twin` may find pods of it up
    already, told without the pods cache (for State.restarts_unread): the
    twin at `revision`, or still keeping pods of an older template (an undo
    while a hotfix's pods never got ready). A twin at 0 has none; one wholly
    at another revision neither: a hotfix replacing the release on its twin
    brings only new pods (before, a hotfix begun while the cache was out
    read its own pods' restarts late, as if reused, and its crash loop
    during the outage was forgiven)."""
    return twin.replicas > 0 and (twin.revision == revision or not twin.updated)


def restart_text(pod: Restarted, role: str, limit: int, before: int = 0) -> str:
    """e.g. `canary pod web-green-7d9-abc: container app restarted 2 times
    (max-restarts 1; last exit OOMKilled, code 137)`."""
    what = f"container {pod.container} restarted {_times(pod.restarts)}"
    if before:
        what += f", {pod.restarts - before} of them since the rollout began"
    exit_parts = [p for p in (pod.exit_reason, _code(pod.exit_code)) if p]
    last = f"; last exit {', '.join(exit_parts)}" if exit_parts else ""
    return f"{role} pod {pod.pod}: {what} (max-restarts {limit}{last})"


def _times(count: int) -> str:
    return f"{count} time" if count == 1 else f"{count} times"


def _code(code: int | None) -> str:
    return "" if code is None else f"code {code}"
