"""A GitOps tool (Argo CD self-heal) syncing a Service manifest exported
while the canary twin was stable, again and again while the rollout is
paused: each sync sets the selector to the canary twin alone. Found by
review: the put-back onto both twins was not a move onto the stable twin,
so the write guard took the fight for a loop and held our write back after
four, leaving all traffic on the canary under a SelectorRestored that said
otherwise. A move off the other twin alone only takes traffic from the
canary: it is never held back. Runs the real reconciler against the
in-memory API of test_events_refused."""

from __future__ import annotations

from canary.spec import TWIN_LABEL
from tests.unit.test_events_refused import _Shell


def test_a_gitops_tool_resyncing_the_canary_selector_while_paused_never_wins() -> None:
    shell = _Shell()
    shell.kube.refusing = None
    service = shell.service()
    service["metadata"]["annotations"]["canary.io/paused"] = "true"
    shell.informers[0].remember(service)
    shell.cycle()
    on_canary = 0
    for _ in range(8):  # Argo CD self-heal: the exported manifest's selector, each sync
        service = shell.service()
        service["spec"]["selector"] = {"app": "web", TWIN_LABEL: "green"}
        shell.informers[0].remember(service)
        shell.cycle()
        on_canary += shell.service()["spec"]["selector"].get(TWIN_LABEL) == "green"
    assert not shell.failures, shell.failures
    assert shell.kube.events.count("SelectorRestored") == 8, shell.kube.events
    assert on_canary == 0, f"left on the canary alone after {on_canary} of 8 syncs"
