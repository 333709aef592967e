"""KUBE_EDITOR for the `edit-twin` fault: what a person does by hand in
`kubectl edit deployment`, done to the file kubectl hands over."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from chaos.checker.facts import EDITED, ERROR_RATE


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mark", required=True, help="value of the edited annotation")
    parser.add_argument("--error-rate", help="also make the pods serve this share of 500s")
    parser.add_argument("--replicas", type=int)
    parser.add_argument("file")
    args = parser.parse_args()
    path = Path(args.file)
    obj = yaml.safe_load(path.read_text())
    spec = obj["spec"]
    meta = spec["template"].setdefault("metadata", {})
    annotations = meta.get("annotations") or {}
    annotations[EDITED] = args.mark
    if args.error_rate is not None:
        annotations[ERROR_RATE] = args.error_rate
    meta["annotations"] = annotations
    if args.replicas is not None:
        spec["replicas"] = args.replicas
    path.write_text(yaml.safe_dump(obj))


if __name__ == "__main__":
    main()
