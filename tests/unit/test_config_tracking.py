"""`canary.io/config-tracking: disabled` on a ConfigMap or Secret: read live by
every pod, never copied, never a release (Flagger's opt-out of the same name).
For a Secret an operator rotates faster than a rollout ends, the frozen
per-revision copy let the credentials expire on the serving pods."""

from __future__ import annotations

import copy
from typing import Any

from canary.observe import source_of
from canary.revisions import TRACKING
from canary.spec import SpecError
from canary.spec_checks import check_against_cluster
from tests.unit.objects import source_deployment
from tests.unit.world import spec


def _deployment(optional: bool = False) -> dict[str, Any]:
    creds = {"name": "creds", "secret": {"secretName": "creds", "optional": optional}}
    return source_deployment([creds], [{"configMapRef": {"name": "cfg"}}], generation=1)


def _objects(password: str, tracking: str | None = "disabled") -> dict[tuple[str, str], Any]:
    annotations = {TRACKING: tracking} if tracking is not None else {}
    return {
        ("ConfigMap", "cfg"): {"metadata": {"name": "cfg"}, "data": {"mode": "a"}},
        ("Secret", "creds"): {
            "metadata": {"name": "creds", "annotations": annotations},
            "data": {"password": password},
        },
    }


def _volume_name(template: dict[str, Any]) -> str:
    return str(template["spec"]["volumes"][0]["secret"]["secretName"])


def test_a_rotated_secret_with_tracking_disabled_is_no_release_and_is_read_live() -> None:
    for optional in (False, True):
        deployment = _deployment(optional)
        before, refs = source_of(deployment, lambda k, n: _objects("one").get((k, n)))
        after, _ = source_of(deployment, lambda k, n: _objects("two").get((k, n)))
        assert before.revision == after.revision  # a rotation is no release
        assert refs == {("ConfigMap", "cfg")}  # only the tracked one is copied
        assert _volume_name(before.template) == "creds"  # the pods read it live
        env = before.template["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"]
        assert env == f"cfg-{before.revision}"  # the tracked one still from its copy


def test_tracked_by_default_and_turning_tracking_off_is_a_release() -> None:
    deployment = _deployment()
    tracked_one, refs = source_of(deployment, lambda k, n: _objects("one", None).get((k, n)))
    tracked_two, _ = source_of(deployment, lambda k, n: _objects("two", None).get((k, n)))
    assert tracked_one.revision != tracked_two.revision
    assert ("Secret", "creds") in refs
    assert _volume_name(tracked_one.template) == f"creds-{tracked_one.revision}"
    live, _ = source_of(deployment, lambda k, n: _objects("one").get((k, n)))
    # Reading it live from now on goes out as a release like any other change.
    assert live.revision != tracked_one.revision


def test_a_tracking_value_it_cannot_read_is_an_invalid_spec_naming_the_object() -> None:
    secret = copy.deepcopy(_objects("one", "off")[("Secret", "creds")])
    service = {"metadata": {"name": "web", "uid": "u"}, "spec": {"selector": {"app": "web"}}}
    checked = check_against_cluster(spec(), service, None, None, ({"kind": "Secret", **secret},))
    assert isinstance(checked, SpecError) and checked.field == TRACKING
    assert "Secret creds" in checked.message and "'off'" in checked.message
    fine = _objects("one")[("Secret", "creds")]
    assert (
        check_against_cluster(spec(), service, None, None, ({"kind": "Secret", **fine},)) == spec()
    )
