"""Our own error types for Kubernetes API failures."""

from __future__ import annotations


class KubeError(Exception):
    """Any failure talking to the Kubernetes API."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFound(KubeError):
    """The object does not exist (404)."""


class Conflict(KubeError):
    """Someone else wrote first, or the object already exists (409)."""


class Gone(KubeError):
    """The watch resourceVersion is too old; re-list (410)."""


class ApiError(KubeError):
    """Any other error status, or a transport failure (status 0)."""


def error_for(status: int, reason: str, message: str) -> KubeError:
    kind: type[KubeError] = {404: NotFound, 409: Conflict, 410: Gone}.get(status, ApiError)
    return kind(status, reason, message)


def namespace_terminating(exc: BaseException) -> bool:
    """The API server refused a create because the namespace is being
    deleted (the NamespaceLifecycle admission plugin: 403, a cause
    `NamespaceTerminating`, "... because it is being terminated"). Nothing
    can be made there any more, and a retry meets the same until the
    namespace's objects, ours with them, are gone."""
    if not isinstance(exc, KubeError) or exc.status != 403:
        return False
    return "NamespaceTerminating" in exc.message or "because it is being terminated" in exc.message
