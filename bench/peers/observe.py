"""What every app serves, seen the same way for all controllers: the pods'
images and the ready endpoints of every EndpointSlice, with the time each
change arrived on a watch. The controllers' own statuses only say when a
release is over; every number comes from the pods and EndpointSlices."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from canary.kube import Informer, Kube, WatchEvent
from canary.kube.resources import ENDPOINTSLICES, PODS


@dataclass(frozen=True, slots=True)
class Serving:
    """One namespace's ready endpoints per Service, at a moment."""

    at: float
    by_service: dict[str, frozenset[str]]

    def pods(self, service: str | None = None) -> frozenset[str]:
        if service is not None:
            return self.by_service.get(service, frozenset())
        return frozenset().union(*self.by_service.values())


@dataclass
class Namespace:
    name: str
    log: list[Serving] = field(default_factory=list)
    slices: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict)
    pods: set[str] = field(default_factory=set)  # not being deleted

    def at_rest(self, observer: Observer, production: str, replicas: int) -> bool:
        """Production serves `replicas` pods of one image and no other pod
        exists: nothing left over from the last release (canary's old twin
        after its scale-down delay, Flagger's canary, Argo's old ReplicaSet)."""
        serving = self.now()
        prod = serving.pods(production)
        images = {observer.image(ns, p) for ns, p in ((self.name, p) for p in serving.pods())}
        return len(prod) == replicas and len(images) == 1 and self.pods == set(prod)

    def now(self) -> Serving:
        return self.log[-1] if self.log else Serving(0.0, {})


class Observer:
    def __init__(self, kube: Kube, namespaces: list[str]) -> None:
        self.namespaces = {ns: Namespace(ns) for ns in namespaces}
        # (namespace, pod) -> image; kept after the pod is gone, so a release's
        # pods can be named afterwards.
        self.images: dict[tuple[str, str], str] = {}
        self.pods = Informer(kube, PODS, on_event=self._pod)
        self.slices = Informer(kube, ENDPOINTSLICES, on_event=self._slice)

    def _pod(self, event: WatchEvent) -> None:
        ns, name = event.key
        space = self.namespaces.get(ns)
        if space is None:
            return
        if event.type == "DELETED" or event.object["metadata"].get("deletionTimestamp"):
            space.pods.discard(name)
            return
        space.pods.add(name)
        containers = event.object.get("spec", {}).get("containers") or [{}]
        self.images[(ns, name)] = str(containers[0].get("image", ""))

    def _slice(self, event: WatchEvent) -> None:
        ns, name = event.key
        space = self.namespaces.get(ns)
        if space is None:
            return
        labels = event.object["metadata"].get("labels") or {}
        service = labels.get("kubernetes.io/service-name", "")
        if event.type == "DELETED":
            space.slices.pop(name, None)
        else:
            space.slices[name] = (service, _ready_pods(event.object))
        by_service: dict[str, set[str]] = {}
        for svc, pods in space.slices.values():
            by_service.setdefault(svc, set()).update(pods)
        serving = Serving(time.time(), {k: frozenset(v) for k, v in by_service.items()})
        if serving.by_service != space.now().by_service:
            space.log.append(serving)

    def image(self, ns: str, pod: str) -> str:
        return self.images.get((ns, pod), "")

    def with_image(self, ns: str, pods: frozenset[str], image: str) -> frozenset[str]:
        return frozenset(p for p in pods if self.image(ns, p) == image)

    def release_pods(self, ns: str, image: str) -> list[str]:
        return sorted(
            pod for (space, pod), im in self.images.items() if space == ns and im == image
        )


def _ready_pods(endpoint_slice: dict[str, Any]) -> frozenset[str]:
    found = set()
    for endpoint in endpoint_slice.get("endpoints") or []:
        ref = endpoint.get("targetRef") or {}
        if (
            ref.get("kind") == "Pod"
            and (endpoint.get("conditions") or {}).get("ready") is not False
        ):
            found.add(str(ref["name"]))
    return frozenset(found)
