"""Interactions between the changes merged together (the per-pod checks,
the combined review's fixes, the operations review): found by a second
combined review. Each test failed before its fix."""

from __future__ import annotations

import asyncio
import datetime
import time
from dataclasses import replace
from typing import Any

import pytest

from analysis.provider import QueryError
from analysis.run import StepContext
from analysis.verdicts import Verdict
from canary.checks import Checks
from canary.controller import Controller
from canary.kube import WatchEvent
from canary.model import Checked
from canary.observe import slim_pod
from canary.reconcile import Edges
from canary.spec import SERVICE_LABEL, TWIN_LABEL
from tests.unit.test_analysis_bad_day import CANARY_RS, analysis, ctx
from tests.unit.test_analysis_bad_day import _prometheus as _analysis_prometheus
from tests.unit.test_canary_pods_bad_day import PODS, _every
from tests.unit.test_canary_pods_bad_day import _checked as _pods_checked
from tests.unit.test_canary_pods_bad_day import _prometheus as _pods_prometheus
from tests.unit.test_oncall_bad_night import serving_canary
from tests.unit.world import spec

ONE = spec(steps="25")

KEY = ("shop", "web")


class _NoWebhooks:
    """No gate is asked here."""


async def _checked(checks: Checks, context: StepContext) -> Checked:
    spec = analysis({"min-requests": 1, "metrics": [{"name": "success-rate", "min": 99}]})
    checks.start_analysis(KEY, ("r2", 0), "scheduled", spec, context)
    for _ in range(500):
        await asyncio.sleep(0.01)
        if (done := checks.take_analysis(KEY, ("r2", 0))) is not None:
            return done
    raise AssertionError("the check never finished")


async def test_a_check_while_the_dialect_probe_is_unanswered_is_not_judged_as_promql() -> None:
    """VictoriaMetrics busy at the controller's start: vector(1) answered,
    the dialect probe (increase_prometheus) a 503. The start-up check fails
    and is asked again (run.until_answered), but the controller runs
    meanwhile, and its checks were judged in PromQL's dialect: rate() and
    increase(), which VictoriaMetrics reads one scrape further back, so one
    bad scrape counted twice (with failure-limit 0 a good release rolled
    back). Until the dialect is known a check is an error (counted as when
    the backend fails), never a verdict in a dialect guessed."""

    def victoriametrics(url: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if "increase_prometheus(canary_dialect_probe" in params["query"]:
            return 503, {"status": "error", "errorType": "unavailable", "error": "busy"}
        value = [1030.0, "120"]
        return 200, {"status": "success", "data": {"result": [{"metric": {}, "value": value}]}}

    prom, transport = _analysis_prometheus(victoriametrics)
    try:
        with pytest.raises(QueryError):
            await prom.check()
        transport.sent.clear()
        checks = Checks(prom, _NoWebhooks(), lambda key: None)  # type: ignore[arg-type]
        done = await _checked(checks, ctx())
        queries = [p.get("query", "") for p in transport.sent]
        assert not any("increase(" in q or "rate(" in q for q in queries), queries
        assert done.result.verdict is Verdict.ERROR, done.result
        assert "dialect" in done.result.reason, done.result.reason
    finally:
        prom.close()


class _Kube:
    """No request is sent here."""

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}


class _Asked:
    """Checks that keep the context each analysis was asked with."""

    def __init__(self) -> None:
        self.contexts: list[StepContext] = []

    def analysing(self, key: object) -> bool:
        return False

    def asking(self, key: object) -> bool:
        return True

    def scrape_known(self, *_: object) -> bool:
        return True

    def start_analysis(self, key: object, ident: object, kind: str, *args: object) -> None:
        context = args[1]
        assert isinstance(context, StepContext)
        self.contexts.append(context)


def _stamp(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pod(name: str, ready_stamped: float) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "resourceVersion": str(int(ready_stamped)),
            "labels": {TWIN_LABEL: "green", SERVICE_LABEL: "web"},
            "creationTimestamp": _stamp(0.0),
        },
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": _stamp(ready_stamped)}
            ]
        },
    }


def test_a_pod_back_from_a_restart_on_a_node_whose_clock_is_behind_is_not_unseen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The third canary pod's container crashed at 1088; it turned ready
    again at 1117 (this controller's clock, as its watch saw it), on a node
    whose clock is a minute behind: its kubelet stamped Ready at 1057. The
    check due as it came back runs at 1120, before its next scrape (1130).
    A pod that turned ready within three scrapes is left out (_settled),
    but by the node's stamp it had been ready for over a minute: no data,
    "1 of the canary's 3 serving pods had request samples earlier in the
    step but none in its newest two scrapes", for a restart, the very case
    567ecba leaves out (and the creationTimestamp of 41f9bc7 bounds only a
    new pod's). A turn the watch saw is timed when it saw it."""
    controller = Controller(Edges(kube=_Kube(), prometheus=None))  # type: ignore[arg-type]
    pods = controller.caches.pods
    assert pods is not None
    clock = [500.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])

    def seen(kind: Any, pod: dict[str, Any]) -> None:
        obj = slim_pod(pod)
        pods.remember(obj)
        controller._on_pod(WatchEvent(kind, ("ns", pod["metadata"]["name"]), obj))

    for name in PODS:  # the first list: ready since 400
        seen("ADDED", _pod(name, 400.0))
    pods.synced.set()
    clock[0] = 1117.0
    seen("MODIFIED", _pod(PODS[2], 1057.0))  # back from its restart

    world = serving_canary()
    world.twins["green"] = replace(world.twins["green"], replica_set=CANARY_RS, serving=PODS)
    world.step(ONE, advance=1)
    assert world.state.canary_pods == CANARY_RS
    asked = _Asked()
    controller.reconciler.checks = asked  # type: ignore[assignment]
    state = replace(world.state, checked=0.0, fast_checked=0.0)
    controller.reconciler._start_checks(("ns", "web"), ONE, state, world.observed(), 1200.0)
    assert asked.contexts, "no check was asked for"
    since = asked.contexts[-1].ready_since
    assert since[:2] == (400.0, 400.0) and since[2] >= 1117.0, since

    prometheus = _pods_prometheus(
        {
            PODS[0]: _every(15.0, 1003.0, 1120.0),
            PODS[1]: _every(15.0, 1009.0, 1120.0),
            PODS[2]: _every(15.0, 1010.0, 1085.0),
        }
    )
    verdict, reason = _pods_checked(prometheus, since=since)
    assert verdict is Verdict.PASS, reason
