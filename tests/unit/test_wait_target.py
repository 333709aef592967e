"""Which release `canary wait` waits for, by default, by image or by a
(shortened) revision hash."""

from __future__ import annotations

from typing import Any

import pytest

from canary.wait import Request, WaitError, resolve

V1, V2, V3 = "1111111111", "2222222222", "3333333333"


def request(**fields: Any) -> Request:
    return Request(namespace="shop", service="web", **fields)


def entry(number: int, revision: str, image: str, outcome: str) -> dict[str, Any]:
    return {"number": number, "revision": revision, "images": [image], "outcome": outcome}


def test_by_default_the_revision_the_deployment_asks_for() -> None:
    assert resolve(request(), {}, [], V2, ("web:v2",)) == V2


def test_by_image_the_deployments_revision_when_it_runs_that_image() -> None:
    assert resolve(request(image="web:v2"), {}, [], V2, ("web:v2", "sidecar:1")) == V2


def test_an_image_replaced_since_the_last_promotion_is_found_in_the_history() -> None:
    records = [
        entry(1, V1, "web:v1", "promoted"),
        entry(2, V2, "web:v2", "superseded"),
        entry(3, V3, "web:v3", "progressing"),
    ]
    status = {"stable_revision": V1, "canary_revision": V3}
    assert resolve(request(image="web:v2"), status, records, V3, ("web:v3",)) == V2


def test_an_image_from_before_the_release_that_serves_now_is_not_taken_for_a_new_one() -> None:
    # v2 was released long ago; v3 serves now; a GitOps sync of v2 again is
    # still to come: wait for the Deployment instead of reporting the old one.
    records = [entry(1, V2, "web:v2", "promoted"), entry(2, V3, "web:v3", "promoted")]
    status = {"stable_revision": V3}
    assert resolve(request(image="web:v2"), status, records, V3, ("web:v3",)) is None


def test_an_image_the_deployment_has_not_got_yet_is_waited_for() -> None:
    assert resolve(request(image="web:v9"), {"stable_revision": V1}, [], V1, ("web:v1",)) is None


def test_a_shortened_revision_is_expanded_and_an_ambiguous_one_refused() -> None:
    records = [entry(1, "abc1234567", "web:v1", "promoted")]
    assert resolve(request(revision="abc1"), {}, records, V2, ()) == "abc1234567"
    records.append(entry(2, "abc9999999", "web:v2", "promoted"))
    with pytest.raises(WaitError, match="give more characters"):
        resolve(request(revision="abc"), {}, records, V2, ())
    assert resolve(request(revision="fff"), {}, records, V2, ()) is None  # not seen yet
    assert resolve(request(revision="ffffffffff"), {}, records, V2, ()) == "ffffffffff"
