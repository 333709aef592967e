"""Kubernetes' size limits over a long life: what the controller writes must
stay under them without losing what a rollback or an undo needs. Sizes are
measured on realistic states (a production pod template, real checks).
Each test failed on the code before its fix."""

from __future__ import annotations

import copy
import json
from typing import Any

from canary import history
from canary.model import JSON, Record, Source


def _template(image: str) -> JSON:
    """A production-sized pod template (about 9 KB as JSON): an app with its
    settings in env, a log shipper, probes, volumes, spreading rules."""
    env: list[JSON] = [
        {"name": f"CHECKOUT_SETTING_{i:02d}", "value": f"value-{i}-" + "x" * 60} for i in range(80)
    ]
    probe = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10}
    app = {
        "name": "checkout-api",
        "image": image,
        "env": env,
        "envFrom": [{"configMapRef": {"name": "checkout-config-1a2b3c4d5e"}}],
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}},
        "livenessProbe": probe,
        "readinessProbe": probe,
    }
    shipper = {"name": "log-shipper", "image": "registry.example.com/fluent-bit:2.2.0"}
    return {
        "metadata": {"labels": {"app": "checkout-api", "team": "payments"}},
        "spec": {
            "containers": [app, shipper],
            "volumes": [{"name": "config", "configMap": {"name": "checkout-files-1a2b3c4d5e"}}],
        },
    }


def _source(revision: str, image: str) -> Source:
    return Source(
        exists=True,
        revision=revision,
        images=(image,),
        template=_template(image),
        config={"ConfigMap/checkout-config": "1a2b3c4d5e"},
    )


def _size(records: list[JSON]) -> int:
    return len(json.dumps(records, separators=(",", ":")))


def test_a_config_churn_never_trims_the_serving_template_out_of_the_history() -> None:
    """history-limit 100, and a Secret that rotates faster than a rollout
    lasts (ConfigChurn): every release is superseded by the next, none is
    promoted, for a day (144 at one every 10 minutes). _trim keeps the
    serving entry (the only one holding the stable revision's template: the
    source is always on a newer revision), first among the 100 kept; the
    whole history passes dump's 900 KB, and dump dropped whole revisions
    oldest first: the serving one. Then a stable twin deleted (or edited by
    hand) mid-rollout could not be put back ("no template known"), and the
    Service had no pod."""
    image = "registry.example.com/payments/checkout-api:v2.31.4"
    serving = _source("r0", image)
    records = history.apply_record([], Record("r0", "adopted", "adopted"), serving, 0.0, 100)
    for n in range(1, 145):
        release = _source(f"r{n}", image)
        at = n * 600.0
        records = history.apply_record(
            records, Record(f"r{n}", "progressing", "release"), release, at, 100
        )
        for i in range(3):
            records = history.add_event(
                records, f"r{n}", at + i, "RolloutStarted", f"revision r{n}: " + "y" * 200
            )
        records = history.apply_record(
            records, Record(f"r{n}", "superseded", "a newer revision"), release, at + 590, 100
        )
    assert _size(records) > history.MAX_BYTES  # what dump must trim
    assert history.template_of(records, "r0") == serving.template

    kept = history.load({"data": history.dump(records)})

    assert history.template_of(kept, "r0") == serving.template
    assert kept[-1]["revision"] == "r144"  # the newest still there
    assert _size(kept) <= history.MAX_BYTES


def test_a_history_too_big_keeps_the_rollout_in_flight_and_the_serving_entry() -> None:
    """Even when the two alone are all that fits, they are what stays."""
    big: Any = {"x": "z" * 500_000}
    serving = {"number": 1, "revision": "r1", "outcome": "promoted", "template": big}
    older = {"number": 2, "revision": "r2", "outcome": "rolled-back", "template": big}
    flight = {"number": 3, "revision": "r3", "outcome": "progressing", "template": {}}
    kept = history.load({"data": history.dump([copy.deepcopy(serving), older, flight])})
    assert [r["revision"] for r in kept] == ["r1", "r3"]
