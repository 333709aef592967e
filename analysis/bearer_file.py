"""A bearer token read from a file that is replaced while the controller
runs (`--prometheus-token-file`), as Prometheus's own `bearer_token_file`:
requests' auth for the Prometheus adapter's session."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import requests
import requests.auth

log = logging.getLogger(__name__)


class TokenUnreadable(Exception):
    """The bearer token file cannot be read, and no token was read before."""


class TokenFile(requests.auth.AuthBase):
    """A bearer token from a file that is replaced while the controller runs:
    a projected ServiceAccount token (the kubelet swaps it well before its
    hour is up; OpenShift's thanos-querier and any kube-rbac-proxy take
    it), a Secret Vault rotates. Read once, as PROMETHEUS_TOKEN is, it
    expired and every query was a 401 until a restart: every rollout
    halted with its canary serving unanalysed. As Prometheus's own
    `bearer_token_file` does, the file is read for the requests: here in the
    pool thread that sends each one (never on the event loop), and only
    when stat() says it changed (its inode, mtime or size), or after a 401
    (a token rewritten in place, same size, within the mtime's granularity),
    which is then sent once more with the new token."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None  # (inode, mtime_ns, size) read
        self._token = ""
        self._failing = False  # the last read failed, and was logged

    def token(self, again: bool = False) -> str:
        with self._lock:
            try:
                stat = os.stat(self.path)
                seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
                if again or seen != self._seen:
                    with open(self.path, encoding="utf-8") as handle:
                        token = handle.read().strip()
                    # Empty: a writer that truncates, then writes, read in
                    # between. The last token is sent, and the file read
                    # again next time (its size will have changed).
                    if token:
                        self._token, self._seen = token, seen
                self._failing = False
            except OSError as exc:
                reason = f"cannot read the bearer token file {self.path}: {exc.strerror or exc}"
                if not self._token:
                    raise TokenUnreadable(reason) from exc
                if not self._failing:
                    log.warning("%s; the token read before is sent meanwhile", reason)
                    self._failing = True
            return self._token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        request.hooks["response"].append(self._again_on_401)
        return request

    def _again_on_401(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        """A 401: read the file again, and if it holds another token, send
        the request once more with it (as requests' digest auth re-sends)."""
        sent = response.request.headers.get("Authorization")
        if response.status_code != 401 or sent is None:
            return response
        token = self.token(again=True)
        if sent == f"Bearer {token}":
            return response
        response.content  # noqa: B018  (read the body: the connection is reused)
        response.close()
        again = response.request.copy()
        again.headers["Authorization"] = f"Bearer {token}"
        adapter = response.connection
        answered: requests.Response = adapter.send(again, **kwargs)
        answered.history.append(response)
        answered.request = again
        return answered
