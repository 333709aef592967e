"""The chaos checker's rules, on hand-made observations: each rule fires on
the pattern it is for, and stays quiet on the look-alikes that are not
violations (blind periods, a deleted Service, a blue-green flip, a rollout
moving on, a release superseded by its own config change)."""

from __future__ import annotations

import json
from typing import Any

from chaos.checker import promotions, rules
from chaos.checker.blind import Blindness
from chaos.checker.facts import (
    EDITED,
    ERROR_RATE,
    RELEASE,
    Fingerprint,
    carried_start,
    content_key,
    queried_pods,
    ready_pods,
)


def eps(owner: str, *pods: tuple[str, bool | None]) -> dict[str, Any]:
    endpoints = []
    for pod, ready in pods:
        conditions = {} if ready is None else {"ready": ready}
        endpoints.append({"targetRef": {"kind": "Pod", "name": pod}, "conditions": conditions})
    return {"metadata": {"ownerReferences": [{"uid": owner}]}, "endpoints": endpoints}


def view(**changes: Any) -> rules.ServiceView:
    base: dict[str, Any] = {
        "namespace": "ns",
        "name": "web",
        "in_fleet": True,
        "served_before": True,
        "ready": frozenset({"web-blue-1"}),
        "status": {"phase": "Healthy", "stable": "blue", "replicas": 1, "stable_revision": "a"},
        "stable_twin": {"status": {"readyReplicas": 1}},
        "stable_fingerprint": Fingerprint("r1"),
    }
    return rules.ServiceView(**{**base, **changes})


R1, R2 = Fingerprint("r1"), Fingerprint("r2", error_rate=0.5)


def test_ready_endpoints_count_once_only_ready_pods_of_this_incarnation() -> None:
    slices = [
        eps("uid-new", ("a", True), ("b", False), ("c", None)),
        eps("uid-new", ("a", True)),
        eps("uid-old", ("d", True)),  # the deleted incarnation's slice, not yet collected
    ]
    assert ready_pods(slices, "uid-new") == {"a", "c"}


def test_an_outage_counts_only_for_a_fleet_app_that_served_before() -> None:
    assert rules.outage(view(ready=frozenset())) is not None
    waiting = rules.outage(view(ready=frozenset(), starting=2))
    assert waiting is not None and waiting.waiting  # holds, but the kubelet is the one late
    assert rules.outage(view(ready=frozenset(), served_before=False)) is None
    assert rules.outage(view(ready=frozenset(), in_fleet=False)) is None  # a claimer
    assert rules.outage(view()) is None


def test_a_condition_counts_after_the_grace_in_observable_time_only() -> None:
    finding = rules.Finding(rules.OUTAGE, "ns/web", "k", "zero ready endpoints")
    persistence = rules.Persistence(grace_s=10)
    assert persistence.update([finding], 0, 1, blind=False) == []
    for t in range(1, 30):  # the API server stopped: nothing concluded either way
        assert persistence.update([finding], t, 1, blind=True) == []
    assert persistence.update([], 30, 1, blind=True) == []  # absence while blind ends nothing
    due = []
    for t in range(31, 42):
        due += persistence.update([finding], t, 1, blind=False)
    assert due == [(finding, 0)]
    assert persistence.update([finding], 43, 1, blind=False) == []  # reported once
    persistence.update([], 44, 1, blind=False)  # over
    assert persistence.update([finding], 45, 1, blind=False) == []  # a new episode starts
    on_the_way = rules.Finding(rules.OUTAGE, "ns/web", "k", "starting", waiting=True)
    for t in range(46, 80):  # waiting on the kubelet neither counts nor ends the episode
        assert persistence.update([on_the_way], t, 1, blind=False) == []


def test_the_same_condition_on_two_services_is_two_episodes() -> None:
    persistence = rules.Persistence(grace_s=10)
    web = rules.Finding(rules.OUTAGE, "ns/web", "no-endpoints", "zero ready endpoints")
    api = rules.Finding(rules.OUTAGE, "ns/api", "no-endpoints", "zero ready endpoints")
    due = []
    for t in range(8):
        due += persistence.update([web, api], t, 1, blind=False)
    assert due == []  # 7 s each, not 14 s together


def test_status_healthy_with_no_endpoints_or_a_missing_stable_twin_contradicts() -> None:
    empty = rules.status_contradiction(view(ready=frozenset()), {})
    assert empty is not None and "zero ready endpoints" in empty.detail
    missing = rules.status_contradiction(view(stable_twin=None), {"web-blue-1": R1})
    assert missing is not None and "does not exist" in missing.detail
    short = rules.status_contradiction(
        view(status={"phase": "Progressing", "stable": "blue", "replicas": 3}),
        {"web-blue-1": R1},
    )
    assert short is not None and "1/3 ready" in short.detail


def test_a_hand_edited_stable_twin_serving_contradicts_healthy_but_not_progressing() -> None:
    edited = {"web-blue-1": Fingerprint("r1", edited="e1")}
    found = rules.status_contradiction(view(), edited)
    assert found is not None and "hand-edit:e1" in found.detail
    progressing = view(status={"phase": "Progressing", "stable": "blue", "replicas": 1})
    assert rules.status_contradiction(progressing, edited) is None


def test_phases_without_a_serving_claim_are_not_judged_and_degraded_must_be_true() -> None:
    waiting = view(ready=frozenset(), status={"phase": "Waiting", "stable": "blue"})
    assert rules.status_contradiction(waiting, {}) is None
    assert rules.status_contradiction(view(status=None), {}) is None
    degraded = view(status={"phase": "Degraded", "stable": "blue", "replicas": 1})
    found = rules.status_contradiction(degraded, {"web-blue-1": R1})
    assert found is not None and "serves in full" in found.detail
    edited = {"web-blue-1": Fingerprint("r1", edited="e1")}
    assert rules.status_contradiction(degraded, edited) is None  # fair: a hand edit rolls
    truly = view(status={"phase": "Degraded", "stable": "blue", "replicas": 2})
    assert rules.status_contradiction(truly, {"web-blue-1": R1}) is None


def test_a_blue_green_flip_with_endpoints_throughout_is_quiet() -> None:
    after = view(
        ready=frozenset({"web-green-1"}),
        status={"phase": "Healthy", "stable": "green", "replicas": 1, "stable_revision": "b"},
        stable_fingerprint=R2,
    )
    assert rules.status_contradiction(after, {"web-green-1": R2}) is None


def record(number: int, revision: str, outcome: str, release: str) -> dict[str, Any]:
    return {
        "number": number,
        "revision": revision,
        "outcome": outcome,
        "template": {"metadata": {"annotations": {RELEASE: release}}},
    }


def test_an_entry_that_changes_its_terminal_outcome_is_a_violation() -> None:
    book = rules.HistoryBook()
    found, ended = book.observe("cm", "ns/web", [record(1, "a", "progressing", "r1")], 0)
    assert found == [] and ended == []
    found, ended = book.observe("cm", "ns/web", [record(1, "a", "promoted", "r1")], 1)
    assert found == [] and [o for o, _ in ended] == ["promoted"]
    found, _ = book.observe("cm", "ns/web", [record(1, "a", "rolled-back", "r1")], 2)
    assert len(found) == 1 and "was promoted, now rolled-back" in found[0].detail
    again, _ = book.observe("cm", "ns/web", [record(1, "a", "rolled-back", "r1")], 3)
    assert again == []  # one change, one violation, however often it is seen
    # trimmed away by the history limit: not a change of outcome
    assert book.observe("cm", "ns/web", [record(2, "b", "progressing", "r2")], 3)[0] == []


def test_a_history_number_reused_for_another_revision_is_a_violation() -> None:
    book = rules.HistoryBook()
    book.observe("cm", "ns/web", [record(1, "a", "promoted", "r1")], 0)
    found, _ = book.observe("cm", "ns/web", [record(1, "b", "promoted", "r1")], 1)
    assert found and "was revision a, now b" in found[0].detail


def test_a_rolled_back_release_still_serving_is_found_but_not_its_newer_retry() -> None:
    book = rules.HistoryBook()
    records = [record(1, "a", "adopted", "r0"), record(2, "b", "rolled-back", "r2")]
    book.observe("cm", "ns/web", records, 0)
    serving = {"web-blue-1": Fingerprint("r0"), "web-green-1": Fingerprint("r2")}
    found = rules.still_serving("ns/web", "cm", book.latest("cm"), serving, 10)
    assert len(found) == 1 and "ended rolled-back but still serves: web-green-1" in found[0].detail
    book.observe("cm", "ns/web", [*records, record(3, "c", "progressing", "r2")], 11)
    assert rules.still_serving("ns/web", "cm", book.latest("cm"), serving, 12) == []


def test_a_release_superseded_by_its_own_config_change_is_not_still_serving() -> None:
    """The fleet changes template then config: two revisions, one release."""
    book = rules.HistoryBook()
    records = [
        record(1, "a", "adopted", "r0"),
        record(2, "b", "superseded", "r1"),
        record(3, "c", "promoted", "r1"),
    ]
    book.observe("cm", "ns/web", records, 0)
    serving = {"web-green-1": Fingerprint("r1")}
    assert rules.still_serving("ns/web", "cm", book.latest("cm"), serving, 10) == []


def test_a_fight_over_a_twin_is_a_write_loop_and_a_rollout_is_not() -> None:
    log = rules.WriteLog()
    found = []
    for i in range(20):  # replicas 4 <-> 0, several writes a second
        found.append(log.record("Deployment", "u1", "Deployment ns/web-blue", f"r{i % 2}", i * 0.2))
    loops = [f for f in found if f is not None]
    assert len(loops) == 1 and "back to a content it already had" in loops[0].detail
    calm = rules.WriteLog()
    for i in range(40):  # 40 writes a minute, each a new content (statuses of a rollout)
        assert calm.record("Service", "u2", "Service ns/web", f"s{i}", i * 1.5) is None


def test_writes_that_change_only_the_status_are_not_writes_of_content() -> None:
    deployment: dict[str, Any] = {"metadata": {"labels": {"a": "b"}}, "spec": {"replicas": 3}}
    with_status = {**deployment, "status": {"readyReplicas": 2}}
    assert content_key("Deployment", deployment) == content_key("Deployment", with_status)
    status = json.dumps({"phase": "Healthy"})
    service = {"metadata": {"annotations": {"canary.io/status": status}}, "spec": {}}
    other = {"metadata": {"annotations": {"canary.io/status": "{}"}}, "spec": {}}
    assert content_key("Service", service) != content_key("Service", other)


def check(step: int, verdict: str, regex: str = "web-green-abc-[a-z0-9]+") -> dict[str, Any]:
    query = f'sum(increase(http_requests_total{{namespace="ns",pod=~"{regex}"}}[3000ms]))'
    return {
        "step": step,
        "verdict": verdict,
        "measurements": [{"metric": "requests", "query": query, "start": 10.0, "end": 13.0}],
    }


def promoted(*checks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "number": 2,
        "revision": "b",
        "outcome": "promoted",
        "checks": list(checks),
        "template": {"metadata": {"annotations": {RELEASE: "r2"}}},
        **extra,
    }


def test_a_promotion_needs_a_passing_check_at_every_step() -> None:
    windows, verdict = promotions.plan(promoted(check(1, "pass"), check(2, "fail")), steps=2)
    assert verdict.problems == ["no passing check recorded for step(s) 2 of 2"]
    assert [w.pod_regex for w in windows] == ["web-green-abc-[a-z0-9]+"]
    manual = promoted(actions=[{"reason": "PromoteRequested"}])
    assert promotions.plan(manual, steps=2)[1].problems == []


def test_steps_before_a_history_restored_afresh_are_unverifiable_not_a_violation() -> None:
    # The history deleted mid-rollout by a process that never read the
    # entry (a new leader): the controller says its earlier checks are not
    # recorded (history.ensure_entry); nothing to re-measure, nothing shown.
    afresh = {
        "reason": "EntryRestored",
        "message": "... its checks and Events before now are not recorded",
    }
    entry = promoted(check(2, "pass"), check(3, "pass"), actions=[afresh])
    _, verdict = promotions.plan(entry, steps=3)
    assert verdict.problems == [] and "EntryRestored" in verdict.unverifiable[0], verdict
    # Put back whole, it says so, and a step missing then is a violation;
    # nor does a note excuse a step after the earliest one recorded.
    whole = {"reason": "EntryRestored", "message": "... put back from the copy ..."}
    for actions in ([whole], [afresh]):
        gap = promoted(check(1, "pass"), check(3, "pass"), actions=actions)
        assert promotions.plan(gap, steps=3)[1].problems, actions


def test_a_passing_check_must_have_measured_the_release_s_own_pods_serving_well() -> None:
    window = promotions.plan(promoted(check(1, "pass")), steps=1)[0][0]
    entry = promoted(check(1, "pass"))

    def judge(served: dict[str, tuple[float, float]], fps: dict[str, Any]) -> list[str]:
        verdict = promotions.Verdict()
        promotions.judge_window(window, served, fps, entry, 95.0, verdict)
        return verdict.problems + verdict.unverifiable

    own = Fingerprint("r2")
    assert judge({"p1": (40, 0)}, {"p1": own}) == []
    assert "another release" in judge({"p1": (40, 0), "old": (9, 9)}, {"p1": own, "old": R1})[0]
    assert "served no request" in judge({"p1": (0, 0)}, {"p1": own})[0]
    assert "50.0% success" in judge({"p1": (40, 20)}, {"p1": own})[0]
    assert "never seen" in judge({"p9": (40, 0)}, {})[0]
    edited = Fingerprint("r2", edited="e1")
    assert "hand-edit" in judge({"p1": (40, 0)}, {"p1": edited})[0]


def test_the_pods_a_query_selected_are_read_from_the_query_as_sent() -> None:
    query = 'sum(rate(http_requests_total{namespace="shop",pod=~"web-blue-[a-z0-9]+"}[5s]))'
    assert queried_pods(query) == ("shop", "web-blue-[a-z0-9]+")
    assert queried_pods("up") is None


def test_blindness_lasts_a_settle_margin_after_a_stopped_api_server() -> None:
    now = [100.0]
    blindness = Blindness(settle_s=5, clock=lambda: now[0])
    token = blindness.begin("kube-apiserver stopped")
    now[0] = 103.0
    assert blindness.blind()
    blindness.end(token)
    assert blindness.blind(107.0) and not blindness.blind(108.5)
    assert blindness.total_s() == 3.0


def test_fingerprints_name_release_hand_edit_and_error_rate() -> None:
    from chaos.checker.facts import fingerprint_of

    found = fingerprint_of({RELEASE: "r3", EDITED: "e2", ERROR_RATE: "0.5"})
    assert found == Fingerprint("r3", "e2", 0.5)
    assert str(found) == "r3+hand-edit:e2 (error-rate 0.5)"
    assert fingerprint_of({}) is None


def test_a_retry_whose_start_the_status_still_carries_is_not_the_ended_release_serving() -> None:
    """Chaos seed 28: a release (#6, r12) superseded when its Deployment was
    replaced, then rolled out again as #7 (the recreated Deployment, the same
    pods). #7's start rode in the Service's status, not yet in the history
    ConfigMap, for the 30 s Prometheus was stopped and no leader led: the
    checker took #6's pods as still serving. The status's carried start of
    the canary in flight counts as the newer entry it is."""
    book = rules.HistoryBook()
    records = [record(5, "a", "adopted", "r11"), record(6, "b", "superseded", "r12")]
    book.observe("cm", "ns/web", records, 0)
    serving = {"web-blue-1": Fingerprint("r11"), "web-green-1": Fingerprint("r12")}
    status = {"canary_revision": "c", "record": [{"revision": "c", "start": {"at": 1.0}}]}
    flight = frozenset({Fingerprint("r12")} if carried_start(status) == {"c"} else ())
    assert rules.still_serving("ns/web", "cm", book.latest("cm"), serving, 40, flight) == []
    # Only the canary in flight: a start carried for another revision, or
    # none carried, leaves the finding.
    assert carried_start({"canary_revision": "d", "record": status["record"]}) == frozenset()
    assert carried_start({"canary_revision": "c"}) == frozenset()
    found = rules.still_serving("ns/web", "cm", book.latest("cm"), serving, 40)
    assert len(found) == 1 and "ended superseded but still serves" in found[0].detail


def test_a_pod_created_in_the_step_is_measured_with_its_first_samples() -> None:
    """Chaos seed 41: pods first scraped 4.6 s into a 5.3 s step held 110
    requests each in their first samples; the controller judged them
    (a pod created in the step counts whole), the checker's increase()
    read one sample and nothing: "served no request in the window"."""
    window = promotions.Window(1, "ns", "web-green-abc-[a-z0-9]+", 1000.0, 1005.3)

    def labels(pod: str, code: str) -> tuple[tuple[str, str], ...]:
        return (("code", code), ("namespace", "ns"), ("pod", pod))

    increases = {labels("web-green-abc-old", "200"): 20.0, labels("web-green-abc-old", "500"): 0.0}
    born = {
        labels("web-green-abc-new", "200"): 110.0,
        labels("web-green-abc-new", "500"): 10.0,
        # A series of a pod that served long before, first sampled now (a
        # 5xx series created at its first error): its whole value is not
        # the window's.
        labels("web-green-abc-old", "503"): 7.0,
        labels("web-green-abc-unknown", "200"): 50.0,
    }
    created = {"web-green-abc-new": 998.0, "web-green-abc-old": 100.0}
    served = promotions.served_in(window, increases, born, created)
    assert served == {"web-green-abc-old": (20.0, 0.0), "web-green-abc-new": (120.0, 10.0)}
