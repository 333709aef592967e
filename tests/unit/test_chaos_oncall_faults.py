"""The soak's faults of a team's and on-call's ordinary bad day (chaos.faults:
oncall-action, edit-strategy, invalid-annotation, rollout-restart,
rollout-undo-source, handback-readopt), driven with kubectl and the CLI
faked, and the checker's exemptions for what they legitimately cause: an
abort right after a promotion, an undo to the revision serving, steps edited
just after a promotion was decided."""

from __future__ import annotations

import asyncio
import json
from random import Random
from typing import Any

import pytest

from chaos import fleet
from chaos.checker import promotions, rules
from chaos.checker.facts import RELEASE
from chaos.checker.loop import AppRules, Checker
from chaos.faults import APP, WEIGHTS, Injector
from chaos.kubectl import Done

NEW = (
    "oncall-action",
    "edit-strategy",
    "invalid-annotation",
    "rollout-restart",
    "rollout-undo-source",
    "handback-readopt",
)


class _Kubectl:
    """kubectl, faked: every call recorded; a Service's annotations kept."""

    kubeconfig = "/tmp/kubeconfig"

    def __init__(self, annotations: dict[str, str]) -> None:
        self.annotations = dict(annotations)
        self.calls: list[tuple[str, ...]] = []

    async def run(self, *args: str, **_: Any) -> Done:
        self.calls.append(args)
        if args[0] == "annotate":
            for pair in args[6:]:
                if pair.endswith("-") and "=" not in pair:
                    self.annotations.pop(pair[:-1], None)
                else:
                    key, value = pair.split("=", 1)
                    self.annotations[key] = value
        return Done(0, "", "")

    async def json(self, *args: str) -> Any:
        self.calls.append(args)
        return {"metadata": {"annotations": dict(self.annotations)}}


class _Proc:
    def __init__(self, out: str) -> None:
        self.returncode = 0
        self._out = out

    async def communicate(self) -> tuple[bytes, bytes]:
        return self._out.encode(), b""


def _injector(
    monkeypatch: pytest.MonkeyPatch, kubectl: _Kubectl, history: list[dict[str, Any]]
) -> tuple[Injector, list[tuple[str, ...]]]:
    ran: list[tuple[str, ...]] = []

    async def exec_(*argv: str, **_: Any) -> _Proc:
        ran.append(argv[3:])
        return _Proc(json.dumps(history) if argv[3] == "history" else "")

    async def no_wait(_: float) -> None:
        return None

    monkeypatch.setattr("chaos.faults.asyncio.create_subprocess_exec", exec_)
    monkeypatch.setattr("chaos.faults.asyncio.sleep", no_wait)
    injector = Injector(
        rng=Random(3),
        sandbox=None,  # type: ignore[arg-type]
        kubectl=kubectl,  # type: ignore[arg-type]
        apps=[],
        replicas=None,  # type: ignore[arg-type]
        blindness=None,  # type: ignore[arg-type]
    )
    return injector, ran


def test_the_new_faults_are_app_faults_of_modest_weight() -> None:
    for kind in NEW:
        assert kind in APP and 3 <= WEIGHTS[kind] <= 5, kind


def test_a_typo_is_fixed_with_the_value_it_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    app = fleet.plan(1, 7)[0]
    kubectl = _Kubectl(fleet.service_annotations(app))
    injector, _ = _injector(monkeypatch, kubectl, [])
    for seed in range(6):
        injector.rng = Random(seed)
        done = asyncio.run(injector._invalid_annotation(app))
        assert kubectl.annotations == fleet.service_annotations(app), done
        typed = [c for c in kubectl.calls if c[0] == "annotate"][-2]
        assert any(v in typed[-1] for v in ("25,abc", "4x", "one")), typed


def test_a_hand_back_puts_the_strategy_back(monkeypatch: pytest.MonkeyPatch) -> None:
    app = fleet.plan(2, 7)[1]
    kubectl = _Kubectl({**fleet.service_annotations(app), "canary.io/strategy": "canary"})
    injector, _ = _injector(monkeypatch, kubectl, [])
    asyncio.run(injector._handback_readopt(app))
    removed, back = [c[-1] for c in kubectl.calls if c[0] == "annotate"]
    assert removed == "canary.io/strategy-" and back == "canary.io/strategy=canary"
    assert kubectl.annotations["canary.io/strategy"] == "canary"


def test_an_edit_of_the_strategy_switches_it(monkeypatch: pytest.MonkeyPatch) -> None:
    app = fleet.plan(1, 7)[0]
    kubectl = _Kubectl(fleet.service_annotations(app))
    injector, _ = _injector(monkeypatch, kubectl, [])
    seen = set()
    for seed in range(12):
        injector.rng = Random(seed)
        before = dict(kubectl.annotations)
        asyncio.run(injector._edit_strategy(app))
        changed = {k for k in kubectl.annotations if kubectl.annotations[k] != before.get(k)}
        assert len(changed) == 1, changed
        seen |= changed
    assert seen == {"canary.io/steps", "canary.io/interval", "canary.io/strategy"}


def test_an_undo_goes_to_a_revision_that_served(monkeypatch: pytest.MonkeyPatch) -> None:
    app = fleet.plan(1, 7)[0]
    history = [
        {"number": 1, "outcome": "adopted"},
        {"number": 2, "outcome": "rolled-back"},
        {"number": 3, "outcome": "promoted"},
        {"number": 4, "outcome": "progressing"},
    ]
    injector, ran = _injector(monkeypatch, _Kubectl({}), history)
    undone = set()
    for seed in range(40):
        injector.rng = Random(seed)
        asyncio.run(injector._oncall_action(app))
        if ran[-1][0] == "undo":
            assert ran[-2][0] == "history", ran
            undone.add(ran[-1][ran[-1].index("--to") + 1])
    assert undone == {"1", "3"}, undone
    assert {r[0] for r in ran} >= {"abort", "retry", "pause", "resume", "promote", "undo"}


def test_the_team_s_deployment_is_restarted_and_undone_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = fleet.plan(1, 7)[0]
    kubectl = _Kubectl({})
    injector, _ = _injector(monkeypatch, kubectl, [])
    asyncio.run(injector._rollout_restart(app))
    asyncio.run(injector._rollout_undo_source(app))
    assert kubectl.calls == [
        ("rollout", "restart", "deployment", app.name, "-n", app.namespace),
        ("rollout", "undo", "deployment", app.name, "-n", app.namespace),
    ]


# -- the checker's exemptions ----------------------------------------------------------


def entry(number: int, revision: str, outcome: str, reason: str = "", **extra: Any) -> Any:
    return {
        "number": number,
        "revision": revision,
        "outcome": outcome,
        "reason": reason,
        "template": {"metadata": {"annotations": {RELEASE: f"r{number}"}}},
        **extra,
    }


def test_an_abort_right_after_a_promotion_is_not_a_changed_outcome() -> None:
    """`canary abort` within the scale-down delay flips traffic back: the
    controller rewrites that one entry promoted -> aborted (README, Manual
    control). Any other change, and any change after it, still counts."""
    book = rules.HistoryBook()
    book.observe("cm", "ns/web", [entry(1, "a", "promoted")], 0)
    after = entry(1, "a", "aborted", "aborted by canary-cli-sre after promotion")
    found, _ = book.observe("cm", "ns/web", [after], 1)
    assert found == []
    assert book.latest("cm")[0].terminal_seen == 1
    found, _ = book.observe("cm", "ns/web", [entry(1, "a", "promoted")], 2)
    assert len(found) == 1 and "was aborted, now promoted" in found[0].detail
    # Without that reason (or from another outcome) it is a changed outcome.
    other = rules.HistoryBook()
    other.observe("cm", "ns/web", [entry(1, "a", "promoted")], 0)
    found, _ = other.observe("cm", "ns/web", [entry(1, "a", "aborted", "aborted by x")], 1)
    assert len(found) == 1
    rolled = rules.HistoryBook()
    rolled.observe("cm", "ns/web", [entry(1, "a", "rolled-back")], 0)
    found, _ = rolled.observe("cm", "ns/web", [after], 1)
    assert len(found) == 1


def test_an_undo_to_the_revision_serving_needs_no_check_but_any_other_does() -> None:
    undo = entry(
        3, "a", "promoted", "UndoRequested: undo to #1 ...", actions=[{"reason": "UndoRequested"}]
    )
    _, verdict = promotions.plan(undo, 2, serving_before="a")
    assert verdict.problems == [] and "already serving" in verdict.unverifiable[0]
    # An undo to an earlier revision than the one serving rolls out: checked.
    _, verdict = promotions.plan(undo, 2, serving_before="b")
    assert verdict.problems == ["no passing check recorded for step(s) 1, 2 of 2"]
    # Not an undo: the same revision promoted again with no check is a violation.
    _, verdict = promotions.plan(entry(3, "a", "promoted"), 2, serving_before="a")
    assert verdict.problems


def test_steps_are_those_in_force_when_the_promotion_was_decided(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checker = Checker(
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        {("ns", "web"): AppRules()},
        None,  # type: ignore[arg-type]
    )
    now = [100.0]
    monkeypatch.setattr("chaos.checker.loop.time.time", lambda: now[0])

    def svc(steps: str, strategy: str = "canary") -> Any:
        annotations = {"canary.io/strategy": strategy, "canary.io/steps": steps}
        return {
            "metadata": {"namespace": "ns", "name": "web", "uid": "u", "annotations": annotations}
        }

    # Each judged as the checker does, a moment after the entry ended.
    checker._on_service("ADDED", svc("25,50"))
    now[0] = 120.0
    assert checker.steps_for("ns", "web", 120.0) == 2
    now[0] = 150.0
    checker._on_service("MODIFIED", svc("20,50,80"))
    # Promoted at 148 under 2 steps, a third added 2 s after: 2 steps.
    assert checker.steps_for("ns", "web", 148.0) == 2
    now[0] = 170.0
    assert checker.steps_for("ns", "web", 170.0) == 3  # in force well before: 3
    now[0] = 200.0
    checker._on_service("MODIFIED", svc("20,50,80", "blue-green"))
    now[0] = 210.0
    assert checker.steps_for("ns", "web", 210.0) == 1
