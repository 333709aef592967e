"""Where each kind of object lives in the API, as plain path builders."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Resource:
    group_version: str  # "v1" for the core group, else "apps/v1" etc.
    plural: str
    namespaced: bool = True

    @property
    def _prefix(self) -> str:
        return "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"

    def path(self, namespace: str | None = None, name: str | None = None, sub: str = "") -> str:
        """The collection path (all namespaces when namespace is None) or an object's path."""
        parts = [self._prefix]
        if self.namespaced and namespace is not None:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name is not None:
            parts.append(name)
            if sub:
                parts.append(sub)
        return "/".join(parts)


SERVICES = Resource("v1", "services")
PODS = Resource("v1", "pods")
CONFIGMAPS = Resource("v1", "configmaps")
SECRETS = Resource("v1", "secrets")
EVENTS = Resource("v1", "events")
NAMESPACES = Resource("v1", "namespaces", namespaced=False)
DEPLOYMENTS = Resource("apps/v1", "deployments")
ENDPOINTSLICES = Resource("discovery.k8s.io/v1", "endpointslices")
LEASES = Resource("coordination.k8s.io/v1", "leases")
HPAS = Resource("autoscaling/v2", "horizontalpodautoscalers")
