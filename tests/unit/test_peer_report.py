"""The peer comparison's bookkeeping: who wrote what when, and which
outcomes count as false rollbacks or false promotions."""

from __future__ import annotations

import json
from pathlib import Path

from bench.peers.controllers import Usage
from bench.peers.releases import Outcome, template_annotations
from bench.peers.report import (
    Write,
    audit_writes,
    column,
    writes_by_resource,
    writes_per_release,
)
from canary.sandbox.simulator import ERROR_RATE_ANNOTATION, NO_TRAFFIC_ANNOTATION


def audit_line(
    user: str, verb: str, resource: str, at: str, stage: str = "ResponseComplete"
) -> str:
    return json.dumps(
        {
            "stage": stage,
            "user": {"username": user},
            "verb": verb,
            "objectRef": {"resource": resource, "namespace": "ns", "name": "web"},
            "requestReceivedTimestamp": at,
            "responseStatus": {"code": 200},
        }
    )


def test_writes_are_counted_per_controller_user_and_release_window(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_text(
        "\n".join(
            [
                audit_line("canary", "patch", "services", "2026-01-01T00:00:01.000000Z"),
                audit_line("canary", "create", "events", "2026-01-01T00:00:02.500000Z"),
                audit_line("flagger", "update", "canaries", "2026-01-01T00:00:02.000000Z"),
                # Another user (the benchmark itself) and an unfinished stage: not counted.
                audit_line("canary-admin", "patch", "deployments", "2026-01-01T00:00:01.000000Z"),
                audit_line(
                    "canary", "patch", "services", "2026-01-01T00:00:01.500000Z", "ResponseStarted"
                ),
            ]
        )
        + "\n"
    )
    writes = audit_writes(log, ["canary", "flagger"])
    assert sorted((w.user, w.verb, w.resource) for w in writes) == [
        ("canary", "create", "events"),
        ("canary", "patch", "services"),
        ("flagger", "update", "canaries"),
    ]
    start = writes[0].at - 1.0  # 00:00:00
    windows = [(start, start + 2.0), (start + 2.0, start + 4.0)]
    assert writes_per_release(writes, "canary", windows) == [1, 1]
    assert writes_per_release(writes, "flagger", windows) == [0, 1]


def outcome(
    kind: str,
    result: str,
    first_endpoint: float | None = None,
    failure_visible: float | None = None,
    out_of_slices: float | None = None,
    all_traffic_new: float | None = None,
) -> Outcome:
    return Outcome(
        "canary",
        kind,
        f"r.example/app:1-{kind}",
        100.0,
        first_endpoint=first_endpoint,
        failure_visible=failure_visible,
        out_of_slices=out_of_slices,
        all_traffic_new=all_traffic_new,
        result=result,
    )


def test_good_not_promoted_is_a_false_rollback_and_no_data_promoted_a_false_promotion() -> None:
    assert outcome("good", "rolled-back").false_rollback
    assert outcome("good-after", "stuck").false_rollback
    assert not outcome("good", "promoted").false_rollback
    assert outcome("no-traffic", "promoted").false_promotion
    assert outcome("bad-late", "promoted").false_promotion
    assert not outcome("bad", "rolled-back").false_promotion


def test_the_table_column_measures_from_each_release_own_moments() -> None:
    outcomes = [
        outcome(
            "bad", "rolled-back", first_endpoint=101.0, failure_visible=102.0, out_of_slices=110.0
        ),
        outcome("good", "promoted", first_endpoint=102.0, all_traffic_new=130.0),
        outcome("no-traffic", "promoted", first_endpoint=101.5, all_traffic_new=140.0),
    ]
    usage = Usage(pid=1)
    col = column(outcomes, usage, [10, 20, 30], steps=5)
    assert col.detection_to_out == (8.0, 8.0)
    assert col.to_all_new == (30.0, 30.0)
    assert col.first_endpoint[0] == 1.5
    assert col.false_promotions == "1/2"
    assert col.false_rollbacks == "0/1"
    assert col.writes_promoted == 25.0
    assert col.writes_rolled_back == 10.0
    assert col.writes_per_step == 5.0  # the promoted rollouts' 25 writes over 5 steps


def test_each_release_kind_sets_and_clears_the_simulator_annotations() -> None:
    assert template_annotations("bad") == {
        ERROR_RATE_ANNOTATION: "0.5",
        NO_TRAFFIC_ANNOTATION: None,
    }
    assert template_annotations("no-traffic") == {
        ERROR_RATE_ANNOTATION: None,
        NO_TRAFFIC_ANNOTATION: "true",
    }
    # A late failure is written to the pods later, never into the template.
    assert template_annotations("bad-late") == {
        ERROR_RATE_ANNOTATION: None,
        NO_TRAFFIC_ANNOTATION: None,
    }


def test_writes_by_resource_averages_only_the_chosen_releases() -> None:
    writes = [
        Write(at=1.0, user="canary", verb="patch", resource="services", code=200),
        Write(at=1.5, user="canary", verb="patch", resource="services", code=200),
        Write(at=1.6, user="flagger", verb="patch", resource="services", code=200),
        Write(at=2.5, user="canary", verb="create", resource="events", code=201),
        Write(at=3.5, user="canary", verb="patch", resource="services", code=200),
    ]
    # Releases at 1, 2 and 3; the first and last were promoted.
    assert writes_by_resource(writes, "canary", [(1.0, 2.0), (3.0, 4.0)]) == "patch services 1.5"
    assert writes_by_resource(writes, "canary", []) == "-"
