"""`canary lint` on manifests as people write them."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from canary import commands

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web
  annotations:
    canary.io/strategy: canary
    canary.io/steps: "25,50"
{extra}
spec:
  selector: {{app: web}}
"""


def _lint(tmp_path: Path, extra: str) -> int:
    manifest = tmp_path / "web.yaml"
    manifest.write_text(SERVICE.format(extra=extra))
    return commands.lint(argparse.Namespace(file=str(manifest)))


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("    canary.io/paused: yes", "true"),
        ("    canary.io/paused: false", "false"),
        ("    canary.io/failure-limit: 2", "2"),
        ("    canary.io/interval: 30", "30"),
    ],
)
def test_an_unquoted_annotation_value_kubectl_refuses_is_a_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, shown: str
) -> None:
    # YAML reads an unquoted yes, false or 2 as a boolean or a number, and
    # the API server refuses a manifest whose annotation is not a string.
    # Read as str() it was "True", "2": lint said ok and the apply failed.
    assert _lint(tmp_path, line) == 1
    out = capsys.readouterr().out
    key = line.split(":", maxsplit=1)[0].strip()
    assert f"web: {key} is {shown}, not a string" in out
    assert "quote it" in out


def test_quoted_values_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _lint(tmp_path, '    canary.io/paused: "false"\n    canary.io/failure-limit: "2"') == 0
    assert "web: ok" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("    example.com/deployed-on: 2026-12-03", "2026-12-03 (a date)"),
        ("    example.com/at: 2026-12-03T10:00:00Z", "2026-12-03 10:00:00+00:00 (a datetime)"),
    ],
)
def test_an_unquoted_date_is_a_problem_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, shown: str
) -> None:
    # YAML reads an unquoted date as a date, which json cannot show: lint
    # died with a TypeError traceback on a Service with a deploy-date
    # annotation of another tool's, and checked nothing of the file.
    assert _lint(tmp_path, line) == 1
    key = line.split(":", maxsplit=1)[0].strip()
    assert f"web: {key} is {shown}, not a string" in capsys.readouterr().out
