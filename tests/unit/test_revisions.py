"""The revision hash ignores our hold gate, and only ours."""

from __future__ import annotations

from canary.revisions import clean_template, gated, revision_of
from canary.spec import HOLD_GATE


def template(*gates: str) -> dict[str, object]:
    spec: dict[str, object] = {"containers": [{"name": "app", "image": "r.example/app:1"}]}
    if gates:
        spec["schedulingGates"] = [{"name": g} for g in gates]
    return {"metadata": {"labels": {"app": "web"}}, "spec": spec}


def test_our_gate_is_not_part_of_the_revision() -> None:
    plain, held = template(), template(HOLD_GATE)
    assert gated(held) and not gated(plain)
    assert clean_template(held) == clean_template(plain)
    assert revision_of(clean_template(held), {}) == revision_of(clean_template(plain), {})


def test_the_teams_own_gates_stay_in_the_revision() -> None:
    theirs = template("example.com/quota", HOLD_GATE)
    assert clean_template(theirs)["spec"]["schedulingGates"] == [{"name": "example.com/quota"}]
    assert revision_of(clean_template(theirs), {}) != revision_of(clean_template(template()), {})
