"""`canary.io/preview-service` renamed (`web-preview` to `web-next`), mid
blue-green rollout or between rollouts. Each test failed on the code
before its fix."""

from __future__ import annotations

from typing import Any

from canary.spec import TWIN_LABEL
from tests.unit.test_events_refused import _Shell


def _cycle(shell: _Shell) -> None:
    """One reconcile, the namespace's Services indexed as the controller's
    watch indexes them."""
    names = {s["metadata"]["name"] for s in shell.informers[0].items()}
    shell.caches.services_by_namespace["ns"] = names
    shell.cycle()


def _blue_green() -> _Shell:
    """r2 previewed on green behind the controller's own `web-preview`."""
    shell = _Shell()
    shell.kube.refusing = None
    shell.service()["metadata"]["annotations"]["canary.io/strategy"] = "blue-green"
    for _ in range(3):
        _cycle(shell)
    preview = shell.informers[0].get("ns", "web-preview")
    assert preview is not None and preview["spec"]["selector"][TWIN_LABEL] == "green"
    return shell


def _selector(shell: _Shell, name: str) -> dict[str, str]:
    found: dict[str, Any] | None = shell.informers[0].get("ns", name)
    assert found is not None, f"{name} deleted"
    return dict(found["spec"]["selector"])


def test_the_previews_old_name_stops_selecting_a_twin() -> None:
    """Before, the preview the controller had made under the old name kept
    selecting the twin it last previewed, for good: whoever still used it
    (a QA job, a dashboard link) was sent to that twin, a release nobody
    had analysed when it next rolled out, no pod at all once scaled down.
    It now selects no pod (the controller may not delete Services: delete
    it yourself), said once with `PreviewRetired`; the new one previews."""
    shell = _blue_green()
    shell.service()["metadata"]["annotations"]["canary.io/preview-service"] = "web-next"
    for _ in range(3):
        _cycle(shell)
    assert not shell.failures, shell.failures
    assert _selector(shell, "web-next")[TWIN_LABEL] == "green"
    assert _selector(shell, "web-preview")[TWIN_LABEL] not in ("blue", "green")
    assert shell.kube.events.count("PreviewRetired") == 1, shell.kube.events


def test_a_preview_the_team_made_is_never_touched() -> None:
    """Only a Service the controller made for this one (owned by it) is
    retired: the team's own, or another Service's preview, stays as it is."""
    from canary.observe import old_previews

    web = {"metadata": {"name": "web", "uid": "u-web"}}

    def preview(name: str, owner: str, twin: str = "green") -> dict[str, Any]:
        refs = [{"kind": "Service", "name": "x", "uid": owner}] if owner else []
        return {
            "metadata": {"name": name, "ownerReferences": refs},
            "spec": {"selector": {"app": "web", TWIN_LABEL: twin}},
        }

    services = [
        web,
        preview("web-preview", "u-web"),
        preview("web-next", "u-web"),  # the one named now
        preview("team-preview", ""),
        preview("api-preview", "u-api"),
        preview("web-old", "u-web", twin="retired"),  # retired before
    ]
    assert old_previews(services, web, "web-next") == ("web-preview",)


def test_between_rollouts_too_and_not_on_annotations_that_do_not_parse() -> None:
    """Renamed after a promotion the old preview still selected the twin
    it previewed, now the stable one (then nothing once it scales down,
    then the next release); retired as mid-rollout. While the annotations
    cannot be read nothing is decided on them, the preview's name too."""
    from dataclasses import replace

    from canary.decide import decide
    from canary.model import RetirePreview
    from canary.spec import SpecError
    from tests.unit.world import World, spec

    bg = spec(strategy="blue-green", preview_service="web-next")
    world = World().adopted(bg)
    observed = replace(world.observed(), old_previews=("web-preview",))
    plan = decide(bg, world.state, observed, None, world.now)
    [retire] = [a for a in plan.actions if isinstance(a, RetirePreview)]
    assert retire.name == "web-preview" and "the preview is web-next" in retire.told
    invalid = SpecError("canary.io/steps", "x")
    plan = decide(invalid, world.state, observed, None, world.now)
    assert not [a for a in plan.actions if isinstance(a, RetirePreview)]


def test_a_retire_write_held_back_by_the_write_guard_is_not_told_as_done() -> None:
    """A tool that keeps putting the old preview's selector back (its
    manifest still has it) makes the write guard hold our write back for 5
    minutes. Before, every cycle told `PreviewRetired`, "now selects no
    pod", while it selected the twin: an Event saying what was not so, and
    one more each cycle. It is told once a write of it lands."""
    from canary.writeguard import _History

    shell = _blue_green()
    held = _History()
    held.blocked_until = float("inf")
    shell.reconciler.guard._objects[("Service", "ns", "web-preview", "selector")] = held
    shell.service()["metadata"]["annotations"]["canary.io/preview-service"] = "web-next"
    for _ in range(3):
        _cycle(shell)
    assert _selector(shell, "web-preview")[TWIN_LABEL] == "green"
    assert "PreviewRetired" not in shell.kube.events, shell.kube.events
