"""Find the control-plane binaries built by hack/build-binaries.sh."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REQUIRED = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "prometheus",
    "promtool",
)

_BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "hack" / "build-binaries.sh"


class BinariesMissing(RuntimeError):
    pass


def binary_dir() -> Path:
    """$CANARY_BIN_DIR if set, else the cache that hack/build-binaries.sh fills
    (building what is missing, with its progress on stderr)."""
    explicit = os.environ.get("CANARY_BIN_DIR")
    if explicit:
        directory = Path(explicit)
    elif _BUILD_SCRIPT.exists():
        result = subprocess.run(
            ["bash", str(_BUILD_SCRIPT)],
            check=False,
            stdout=subprocess.PIPE,
            stderr=sys.stderr,
            text=True,
        )
        if result.returncode != 0:
            raise BinariesMissing(f"{_BUILD_SCRIPT} failed with exit code {result.returncode}")
        directory = Path(result.stdout.strip().splitlines()[-1])
    else:
        raise BinariesMissing(
            "set CANARY_BIN_DIR to a directory holding "
            + ", ".join(REQUIRED)
            + " (hack/build-binaries.sh in a source checkout builds them)"
        )
    missing = [name for name in REQUIRED if not (directory / name).exists()]
    if missing:
        raise BinariesMissing(f"{directory} lacks {', '.join(missing)}")
    return directory


def metrics_binary_dir() -> Path:
    """Where prometheus-adapter is: $CANARY_BIN_DIR if it holds one, else its
    own cache, which `hack/build-binaries.sh --metrics` fills on first use."""
    return _opt_in_dir("--metrics", "prometheus-adapter")


def victoria_metrics_dir() -> Path:
    """Where the single-node VictoriaMetrics is: $CANARY_BIN_DIR if it holds
    one, else its own cache (`hack/build-binaries.sh --victoria-metrics`)."""
    return _opt_in_dir("--victoria-metrics", "victoria-metrics")


def _opt_in_dir(flag: str, binary: str) -> Path:
    explicit = os.environ.get("CANARY_BIN_DIR")
    if explicit and (Path(explicit) / binary).exists():
        return Path(explicit)
    if not _BUILD_SCRIPT.exists():
        raise BinariesMissing(f"set CANARY_BIN_DIR to a directory holding {binary}")
    result = subprocess.run(
        ["bash", str(_BUILD_SCRIPT), flag],
        check=False,
        stdout=subprocess.PIPE,
        stderr=sys.stderr,
        text=True,
    )
    if result.returncode != 0:
        raise BinariesMissing(f"{_BUILD_SCRIPT} {flag} failed with exit code {result.returncode}")
    return Path(result.stdout.strip().splitlines()[-1])


def which(directory: Path, name: str) -> str:
    path = directory / name
    return str(path) if path.exists() else (shutil.which(name) or name)
