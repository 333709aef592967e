"""An API server that answers only what the shipped ClusterRole grants
(manifests/base/rbac.yaml): every other request is refused with a 403, as
the real one refuses the controller's service account. For unit tests of
code paths the in-cluster test (tests/integration/test_incluster.py) never
takes. Objects live in a dict by path; lists filter on metadata.name."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from canary.kube import ApiError, NotFound
from canary.model import JSON

RBAC = Path(__file__).resolve().parents[2] / "manifests" / "base" / "rbac.yaml"


def granted() -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) the ClusterRole grants."""
    docs = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def _parse(path: str) -> tuple[str, str, str | None]:
    """(apiGroup, resource, name) of an API path."""
    parts = path.strip("/").split("/")
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    if rest and rest[0] == "namespaces" and len(rest) > 2:
        rest = rest[2:]
    return group, rest[0], rest[1] if len(rest) > 1 else None


class GrantedKube:
    """Just enough API server, refusing what the ClusterRole does not grant."""

    def __init__(self, *objects: tuple[str, JSON]) -> None:
        self.rules = granted()
        self.objects: dict[str, JSON] = {path: copy.deepcopy(obj) for path, obj in objects}
        self.asked: list[tuple[str, str, str]] = []  # (verb, resource, name)
        self.requests: dict[str, int] = {}

    def _check(self, verb: str, path: str) -> tuple[str, str | None]:
        group, resource, name = _parse(path)
        self.asked.append((verb, resource, name or ""))
        if (group, resource, verb) not in self.rules:
            raise ApiError(
                403,
                "Forbidden",
                f'{resource} "{name or ""}" is forbidden: User '
                '"system:serviceaccount:canary-system:canary-controller" cannot '
                f'{verb} resource "{resource}" in API group "{group}"',
            )
        return resource, name

    async def get(self, path: str, **query: Any) -> JSON:
        _, name = self._check("get" if _parse(path)[2] else "list", path)
        if name is not None:
            if path not in self.objects:
                raise NotFound(404, "NotFound", path)
            return copy.deepcopy(self.objects[path])
        wanted = str(query.get("fieldSelector", "")).removeprefix("metadata.name=")
        items = [
            copy.deepcopy(obj)
            for key, obj in self.objects.items()
            if key.rsplit("/", 1)[0] == path and (not wanted or obj["metadata"]["name"] == wanted)
        ]
        return {"items": items, "metadata": {"resourceVersion": "1"}}

    async def patch(self, path: str, body: Any, *_: Any, **__: Any) -> JSON:
        self._check("patch", path)
        if path not in self.objects:
            raise NotFound(404, "NotFound", path)
        obj = self.objects[path]
        for key, value in (body.get("metadata") or {}).items():
            if key != "resourceVersion":
                obj["metadata"][key] = copy.deepcopy(value)
        return copy.deepcopy(obj)
