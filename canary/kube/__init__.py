"""The Kubernetes adapter: the only package that imports kubernetes_asyncio.

Objects cross this boundary as plain JSON dicts, not generated models: the
model layer costs a json round trip per object and the controller only reads a
handful of fields (see ../shared/notes/performance.md).

Errors are translated into one small tree::

    KubeError
    ├── NotFound      (404)
    ├── Conflict      (409: resourceVersion mismatch or AlreadyExists)
    ├── Gone          (410: watch resourceVersion expired)
    └── ApiError      (any other non-2xx, or a transport failure)
"""

from canary.kube.api import Kube, connect
from canary.kube.errors import ApiError, Conflict, Gone, KubeError, NotFound, namespace_terminating
from canary.kube.watch import Informer, WatchEvent

__all__ = [
    "ApiError",
    "Conflict",
    "Gone",
    "Informer",
    "Kube",
    "KubeError",
    "NotFound",
    "WatchEvent",
    "connect",
    "namespace_terminating",
]
