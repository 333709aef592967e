"""The revision history stays within what a ConfigMap can hold."""

from __future__ import annotations

import json

from canary.history import DATA_KEY, MAX_BYTES, dump


def test_a_huge_history_is_trimmed_oldest_checks_first() -> None:
    check = {"step": 1, "measurements": [{"query": "x" * 2000}]}
    records = [{"revision": f"r{i}", "checks": [check] * 100} for i in range(10)]
    text = dump(records)[DATA_KEY]
    assert len(text) <= MAX_BYTES
    kept = json.loads(text)
    assert [r["revision"] for r in kept] == [f"r{i}" for i in range(10)]
    assert len(kept[-1]["checks"]) == 100  # the newest revision keeps everything
    assert len(kept[0]["checks"]) < 100
