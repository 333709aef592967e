"""Config copies (`<name>-<revision>`) on a bad day, from what SREs and their
tools do to ConfigMaps and Secrets: each test failed on the code before its fix."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from canary.act import COPY_OF
from canary.config_copies import CopyKeeper
from canary.model import JSON, Color, Observed, Twin
from canary.observe import source_of
from canary.revisions import copy_name
from canary.spec import REVISION_ANNOTATION, SERVICE_LABEL
from canary.twins import twin_deployment
from tests.unit.objects import cached_actor, source_deployment
from tests.unit.test_config_bad_day import _Kube, _restore, _Restorer


def _configmap(value: str) -> dict[str, Any]:
    return {"metadata": {"name": "cfg", "namespace": "ns"}, "data": {"mode": value}}


def _deployment(image: str) -> dict[str, Any]:
    deployment = source_deployment(env_from=[{"configMapRef": {"name": "cfg"}}], generation=2)
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = image
    return deployment


def test_a_stable_copy_deleted_while_down_mid_rollout_is_put_back_from_the_unchanged_original() -> (
    None
):
    """An image release (v2, revision R2) is in flight; ConfigMap `cfg` has
    not changed since the stable revision R1. A namespace janitor deleted
    `cfg-R1`, which the stable twin's pods read, while the controller was
    down (a rolling upgrade of it, a lost lease). The team's `cfg` holds
    exactly R1's content (the history has its hash), but it was used only
    when the source ran R1 itself: a `ConfigCopyMissing` Warning instead,
    and every new stable pod (a drain, an HPA scale-up) could not start,
    the very pods a rollback of v2 goes back to."""
    cfg = _configmap("old")
    stable, _ = source_of(_deployment("web:v1"), lambda kind, name: cfg)
    release, _ = source_of(_deployment("web:v2"), lambda kind, name: cfg)
    assert stable.revision != release.revision and stable.config == release.config
    v1 = _deployment("web:v1")
    blue = twin_deployment(v1, "web", "blue", stable.revision, 3, stable.template)
    green = twin_deployment(
        _deployment("web:v2"), "web", "green", release.revision, 1, release.template
    )
    cache: dict[tuple[str, str], JSON] = {
        ("Deployment", "web-blue"): blue,
        ("Deployment", "web-green"): green,
        ("ConfigMap", "cfg"): cfg,
        ("ConfigMap", copy_name("cfg", release.revision)): copy.deepcopy(cfg),
    }
    twins: dict[Color, Twin] = {
        "blue": Twin(True, stable.revision, 3, 3, service="web"),
        "green": Twin(True, release.revision, 1, 1, service="web"),
    }
    observed = Observed("ns", "web", "web", {"app": "web"}, release, twins)
    records = [
        {"revision": stable.revision, "config": dict(stable.config)},
        {"revision": release.revision, "config": dict(release.config)},
    ]
    actor = _Restorer()
    _restore(actor, observed, cache, records)
    assert [(c[1], c[2], c[3]["data"]) for c in actor.restored] == [
        ("cfg", stable.revision, {"mode": "old"})
    ], (actor.restored, actor.events)
    assert "ConfigCopyMissing" not in actor.events
    # Edited since R1 (the release changed the config too): not R1's content,
    # so it is never put back under R1's name; told how to recover instead.
    cache[("ConfigMap", "cfg")] = _configmap("new")
    edited = _Restorer()
    _restore(edited, observed, cache, records)
    assert edited.restored == [] and edited.events == ["ConfigCopyMissing"], edited.restored


def test_a_copy_cannot_be_edited_in_place_under_the_serving_pods() -> None:
    """On-call sees the stable pods mount `cfg-R1` (`kubectl describe pod`)
    and, mid-incident, edits that one (`kubectl edit cm cfg-R1`), or a
    tool rewrites it. The copies were plain ConfigMaps: the kubelet handed
    the edit to every serving pod within a minute, with no rollout, and
    the history still said R1 served its recorded config; a rollback to R1
    later "restored" the edited content. A copy's content is fixed by its
    name, so it is made `immutable`: the API server refuses such an edit
    (the config is changed through the team's object, a release), and the
    kubelet need not watch it."""
    cfg = _configmap("old")
    deployment = _deployment("web:v1")
    source, refs = source_of(deployment, lambda kind, name: cfg)
    kube = _Kube()
    service = {"metadata": {"name": "web", "namespace": "ns", "resourceVersion": "1", "uid": "u"}}
    actor = cached_actor(kube, {("Deployment", "web"): deployment}, service)
    config = {ref: cfg for ref in refs}
    asyncio.run(actor.apply_twin("blue", source.revision, 3, deployment, source.template, config))
    made = kube.created[copy_name("cfg", source.revision)]
    assert made.get("immutable") is True and made["data"] == cfg["data"], made
    # So is one put back after a deletion, from whatever it was made of.
    kube.created.clear()
    asyncio.run(actor.restore_config_copy("ConfigMap", "cfg", "r0", {"data": {"mode": "x"}}))
    assert kube.created[copy_name("cfg", "r0")].get("immutable") is True, kube.created


def test_an_undo_target_s_copy_deleted_by_a_janitor_is_put_back_when_the_undo_runs_it() -> None:
    """A janitor deletes ConfigMaps no pod mounts (k8s-cleaner's "unused
    ConfigMaps" rule, a cleanup script): among them `cfg-R0`, the copy of
    revision R0, which the history keeps for `canary undo` but no twin
    runs now. The watch delivered its content, and the copy keeper dropped
    it at once (no twin read it). In the incident that follows, on-call
    runs `canary undo` to R0: the twin is templated from the history, its
    pods read `cfg-R0`, which is gone (the team's `cfg` has changed since),
    so they could not start (`ConfigCopyMissing`), and the undo went
    nowhere until the progress deadline."""
    zero, _ = source_of(_deployment("web:v0"), lambda kind, name: _configmap("zero"))
    one, _ = source_of(_deployment("web:v1"), lambda kind, name: _configmap("one"))
    v1 = _deployment("web:v1")
    blue = twin_deployment(v1, "web", "blue", one.revision, 3, one.template)
    cache: dict[tuple[str, str], JSON] = {
        ("Deployment", "web"): v1,
        ("Deployment", "web-blue"): blue,
        ("ConfigMap", "cfg"): _configmap("one"),
        ("ConfigMap", copy_name("cfg", one.revision)): _configmap("one"),
    }
    records = [
        {"revision": zero.revision, "config": dict(zero.config)},
        {"revision": one.revision, "config": dict(one.config)},
    ]
    keeper = CopyKeeper()
    deleted = {
        "metadata": {
            "name": copy_name("cfg", zero.revision),
            "labels": {SERVICE_LABEL: "web"},
            "annotations": {REVISION_ANNOTATION: zero.revision, COPY_OF: "cfg"},
        },
        "data": {"mode": "zero"},
        "immutable": True,
    }
    keeper.deleted("ns", "ConfigMap", deleted, "web")
    steady = Observed(
        "ns",
        "web",
        "web",
        {"app": "web"},
        one,
        {"blue": Twin(True, one.revision, 3, 3, service="web")},
    )

    def lookup(kind: str, name: str) -> JSON | None:
        return cache.get((kind, name))

    actor: Any = _Restorer()
    asyncio.run(keeper.restore(actor, steady, lookup, records))  # (nothing reads it yet)
    # `canary undo` to R0: the green twin runs R0's template from the history.
    green = twin_deployment(_deployment("web:v0"), "web", "green", zero.revision, 1, zero.template)
    cache[("Deployment", "web-green")] = green
    undoing = Observed(
        "ns",
        "web",
        "web",
        {"app": "web"},
        one,
        {
            "blue": Twin(True, one.revision, 3, 3, service="web"),
            "green": Twin(True, zero.revision, 1, 0, service="web"),
        },
    )
    asyncio.run(keeper.restore(actor, undoing, lookup, records))
    assert [(c[1], c[2], c[3]["data"]) for c in actor.restored] == [
        ("cfg", zero.revision, {"mode": "zero"})
    ], (actor.restored, actor.events)
    assert "ConfigCopyMissing" not in actor.events
