"""6c19dcb moved the orphan hand-back's history write before the hand-back
and lets its failure fail the cycle (retried, so nothing carried is lost).
A write that can never land (RBAC refuses that ConfigMap, or someone made it
`immutable: true`: 403/422 at every try) then kept the twins and the team's
Deployment from ever being handed back: a best-effort record blocked the
safety path."""

from __future__ import annotations

import time

from tests.unit.test_adversary_review import _reconcile
from tests.unit.test_events_refused import KEY
from tests.unit.test_record_carried import _promoted, _release


def test_a_history_write_that_can_never_land_does_not_block_the_hand_back() -> None:
    shell = _promoted("25,50,75")
    _release(shell, "web:v3")
    shell.step()
    for deployment in shell.informers[1].items():
        deployment["metadata"].setdefault("uid", f"d-{deployment['metadata']['name']}")
    annotations = shell.service()["metadata"]["annotations"]
    for name in [k for k in annotations if k.startswith("canary.io/")]:
        del annotations[name]
    shell.kube.forbidden = "/configmaps/web-canary-history"  # 403 at every write
    for _ in range(20):
        shell.reconciler._missing[KEY] = time.time() - 100
        _reconcile(shell)
    assert not [d for d in shell.informers[1].items() if d["metadata"]["name"] != "web"], [
        d["metadata"]["name"] for d in shell.informers[1].items()
    ]
